//! The one controller builder. Every reconciler runs through [`drive`] (concurrency, graceful
//! shutdown, how its run stream is logged); both pull-Secret kinds are started by [`start`],
//! which gives them the same wiring around [`sync`]: triggers, the finalizer where the kind has
//! one, reconcile metrics, the error policy and its backoff, Events, and housekeeping.

use std::{fmt::Debug, future::Future, sync::Arc, time::Instant};

use futures::{StreamExt, future, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    runtime::{
        Controller,
        controller::{self, Action},
        events::EventType,
        finalizer::{self, Event as Finalizer},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tracing::{debug, info, instrument, warn};

use super::{
    Backoff, Inputs, Settings, Shared, alongside, housekeeping,
    kinds::{Namespaces, PullSecretKind, cluster_owner_selector},
    secret_io::SecretIo,
    sync::sync,
};
use crate::{
    Error,
    admin::{
        http::Health,
        metrics::{Metrics, Reconciled},
    },
    crd::PullSecretSettings,
    k8s::{
        events::{Publisher, Repeats},
        status::StatusWriter,
        synced::Synced,
    },
    pull_secret::Owner,
};

/// What the reconciles of one kind share.
pub struct Reconciler<K: PullSecretKind> {
    pub client: Client,
    /// The Secrets: their cache (shared by both kinds), reads, conditional writes, deletion.
    pub secrets: SecretIo,
    pub status: StatusWriter<K>,
    pub events: Publisher,
    pub settings: Settings,
    pub backoff: Backoff<ObjectRef<K>>,
    pub metrics: Arc<Metrics>,
    pub namespaces: Namespaces,
    /// Every cache this kind reads has listed once.
    pub synced: Synced,
    resources: Store<K>,
}

impl<K: PullSecretKind> Reconciler<K> {
    /// Publishes an Event about `obj`; a failure is logged, never fatal to the reconcile.
    pub async fn publish(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
        repeats: Repeats,
    ) {
        let regarding = obj.object_ref(&());
        self.events
            .publish(&regarding, type_, reason, note, repeats)
            .await;
    }

    /// Says on the Ready condition what a resource asks for that this operator does not do.
    pub fn hint_ignored_fields(&self, spec: &PullSecretSettings, conditions: &mut [Condition]) {
        if let Some(hint) = self.settings.ignored_service_accounts(spec) {
            conditions.iter_mut().for_each(|c| c.message.push_str(hint));
        }
    }

    /// Drops what is kept for resources that are gone: retry delays of those that failed, our
    /// own writes the watch never showed to a reconcile (the resource was deleted first).
    fn tidy(&self) {
        self.backoff.retain(|key| self.resources.get(key).is_some());
        self.secrets.prune();
        self.status.prune();
    }
}

/// Runs a kube-runtime controller the way every reconciler here does: with `config` (the
/// `--concurrency` bound, and the caller's debounce), each reconcile counted as running for
/// `/livez` while it runs, stopping gracefully on `shutdown`, its run stream logged (reconcile
/// errors aside: the error policy logs each once).
pub fn drive<K, Ctx, ReconcilerFut, E>(
    controller: Controller<K>,
    config: controller::Config,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    mut reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> ReconcilerFut + Send + 'static,
    error_policy: impl Fn(Arc<K>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    ctx: Arc<Ctx>,
) -> impl Future<Output = ()> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    ReconcilerFut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    // One config: `with_config` replaces the whole of it, a debounce set before included.
    controller
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(
            move |obj, ctx| health.track(reconcile(obj, ctx)),
            error_policy,
            ctx,
        )
        .for_each(|result| async move { log_result(result) })
}

/// Starts the controller of kind `K` over the shared watches (subscribing to what it reads);
/// the returned future runs it until `shutdown`.
pub fn start<K, S>(
    inputs: &Inputs,
    shared: &mut Shared,
    shutdown: S,
) -> (impl Future<Output = ()> + Send + use<K, S>, Synced)
where
    K: PullSecretKind,
    S: Future<Output = ()> + Send + Sync + 'static,
{
    let synced = Synced::default();
    let resources = K::watch(shared).expect("the kind's watch is started with it");
    let store = resources.store();
    // Triggered by references rather than objects (see `Watch::subscribe_refs`).
    let triggers = resources.subscribe_refs().applied(&synced);
    let secrets = shared.secrets.subscribe().touched(&synced);
    let by_secret = store.clone();
    let secret_triggers = secrets.filter_map(move |s| future::ready(K::owner_of(&s, &by_secret)));
    let labels = inputs.settings.role_permissions.selects_by_label();
    // The Namespace cache: for the cluster kind's selection, and for role rules by label.
    let needs_namespaces = K::FINALIZER.is_some() || labels;
    let (namespaces, namespace_triggers) =
        match shared.namespaces.as_mut().filter(|_| needs_namespaces) {
            Some(watch) => {
                let events = watch.subscribe().touched(&synced);
                let all = store.clone();
                let triggers = events.flat_map(move |_| stream::iter(K::on_namespace_change(&all)));
                (Some(watch.store()), triggers.boxed())
            }
            None => (None, stream::empty().boxed()),
        };
    let ctx = Arc::new(Reconciler {
        client: inputs.client.clone(),
        secrets: SecretIo::new(
            inputs.client.clone(),
            shared.secrets.store(),
            inputs.tokens.clone(),
            inputs.settings.role_permissions.clone(),
            namespaces.clone(),
        ),
        status: StatusWriter::new(inputs.client.clone()),
        events: Publisher::new(inputs.client.clone(), inputs.settings.instance.clone()),
        settings: inputs.settings.clone(),
        backoff: inputs.settings.backoff(),
        metrics: inputs.metrics.clone(),
        namespaces,
        synced: synced.clone(),
        resources: store.clone(),
    });
    let tidied = ctx.clone();
    let tidy = housekeeping(move || tidied.tidy());
    let controller = Controller::for_shared_stream(stream::empty(), store)
        .reconcile_on(triggers)
        .reconcile_on(secret_triggers)
        .reconcile_on(namespace_triggers);
    let config = inputs.settings.controller_config().debounce(K::DEBOUNCE);
    let controller = drive(
        controller,
        config,
        inputs.health.clone(),
        shutdown,
        reconcile::<K>,
        error_policy::<K>,
        ctx,
    );
    let run = async move {
        info!(kind = K::NAME, "controller starting");
        alongside(controller, vec![tidy]).await;
        info!(kind = K::NAME, "controller stopped");
    };
    (run, synced)
}

#[instrument(skip_all, fields(kind = K::NAME, name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default()))]
async fn reconcile<K: PullSecretKind>(
    obj: Arc<K>,
    ctx: Arc<Reconciler<K>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let outcome = finalized(obj, &ctx).await;
    let result = outcome.as_ref().map_or(Reconciled::Error, |(r, _)| *r);
    ctx.metrics
        .reconciled(result, started.elapsed().as_secs_f64());
    outcome.map(|(_, action)| action)
}

/// The sync, within the kind's finalizer when it has one; nothing for a resource being deleted
/// whose Secrets the garbage collector removes.
async fn finalized<K: PullSecretKind>(
    obj: Arc<K>,
    ctx: &Reconciler<K>,
) -> Result<(Reconciled, Action), Error> {
    let Some(name) = K::FINALIZER else {
        if obj.meta().deletion_timestamp.is_some() {
            return Ok((Reconciled::Skipped, Action::await_change()));
        }
        return sync(&*obj, ctx).await;
    };
    let api = Api::<K>::all(ctx.client.clone());
    let mut result = Reconciled::Skipped;
    let action = finalizer::finalizer(&api, name, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => sync(&*obj, ctx).await.map(|(r, action)| {
                result = r;
                action
            }),
            Finalizer::Cleanup(obj) => cleanup(&*obj, ctx).await,
        }
    })
    .await
    .map_err(Error::from_finalizer)?;
    Ok((result, action))
}

/// Deletes every Secret a resource with a finalizer wrote; the finalizer goes once all are
/// gone. Lists from the API server rather than the cache: a deletion seen right after a restart
/// must not remove the finalizer before the Secret watch has caught up.
async fn cleanup<K: PullSecretKind>(obj: &K, ctx: &Reconciler<K>) -> Result<Action, Error> {
    let Owner::Label(uid) = obj.owner()? else {
        return Ok(Action::await_change());
    };
    let selector = ListParams::default().labels(&cluster_owner_selector(&uid));
    let api = Api::<k8s_openapi::api::core::v1::Secret>::all(ctx.client.clone());
    let current = ctx.status.current(obj);
    for meta in api.list_metadata(&selector).await?.items {
        let name = meta.metadata.name.as_deref().unwrap_or_default();
        if obj.may_remove(current.as_ref(), name) {
            ctx.secrets.delete(&meta.into()).await?;
        }
    }
    info!("deleted the Secrets of a deleted {}", K::NAME);
    Ok(Action::await_change())
}

#[instrument(skip_all, fields(kind = K::NAME, name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default()))]
fn error_policy<K: PullSecretKind>(obj: Arc<K>, error: &Error, ctx: Arc<Reconciler<K>>) -> Action {
    warn!(reason = error.label(), %error, "reconcile error");
    Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(&*obj)))
}

/// Logs what a controller's run stream reports, except reconcile errors: the error policy has
/// logged each of those once already.
pub fn log_result<K, E>(
    result: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>,
) where
    K: Resource,
    K::DynamicType: Debug,
    E: std::error::Error + 'static,
{
    match result {
        Ok((obj, _)) => debug!(object = %obj, "reconciled"),
        Err(controller::Error::ReconcilerFailed(..)) => {}
        // A trigger for a resource deleted meanwhile (its Secret's deletion, say) or a requeue
        // that outlived it: kube-runtime keeps both until they fire
        // (<https://github.com/kube-rs/kube/issues/712>).
        Err(controller::Error::ObjectNotFound(obj)) => debug!(object = %obj, "resource gone"),
        Err(error) => warn!(%error, "controller error"),
    }
}
