//! The reconciler for `ClusterEcrPublicPullSecret`: one Secret per selected namespace, all from
//! one cached token per identity per rotation.
//!
//! One reconcile covers every namespace of one resource. It is triggered by the resource, by any
//! Namespace change (a namespace created or relabelled into the selection gets its Secret within
//! the debounce period) and by changes to the Secrets it wrote. Secrets are found through the
//! `ecrpublic.pullsecrets.dev/cluster-owner` label (the resource's UID), never by name alone, so a
//! Secret another resource wrote is never touched; a finalizer removes them all on deletion.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, PartialObjectMeta},
    runtime::{
        Controller,
        controller::{self, Action},
        events::EventType,
        finalizer::{self, Event as Finalizer},
        reflector::{ObjectRef, Store},
    },
};
use tracing::{info, instrument, warn};

use super::{
    Inputs, Kind, alongside, housekeeping, log_result,
    plan::{self, Due, Plan},
    report::{self, Namespace as Selected},
    secrets::{At, Desired},
    spec,
};
use crate::{
    Error,
    crd::{ClusterEcrPublicPullSecret, ClusterEcrPublicPullSecretStatus},
    k8s::{events::Repeats, synced::Synced, watch::Watch},
    schedule::{self, Rotation},
    secret::{CLUSTER_OWNER_LABEL, Owner},
};

/// Finalizer that keeps the resource until its Secrets are deleted.
pub const FINALIZER: &str = "ecrpublic.pullsecrets.dev/cleanup";
/// Secret writes in flight per reconcile.
const WRITES_IN_FLIGHT: usize = 16;
/// When to look again at a resource that selects no namespace with a token.
const IDLE_RESYNC: Duration = Duration::from_secs(3600);

struct Context {
    kind: Kind<ClusterEcrPublicPullSecret>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The resource, Namespace and Secret caches have listed once.
    synced: Synced,
}

// The shared parts are used as `ctx.secrets`, `ctx.status`, ...: a reconcile reads as one thing.
impl std::ops::Deref for Context {
    type Target = Kind<ClusterEcrPublicPullSecret>;

    fn deref(&self) -> &Self::Target {
        &self.kind
    }
}

/// Subscribes to the watches this kind reads; the returned reconciler runs until `shutdown`.
pub fn start<S: Future<Output = ()> + Send + Sync + 'static>(
    inputs: &Inputs,
    crs: &mut Watch<ClusterEcrPublicPullSecret>,
    namespaces: &mut Watch<PartialObjectMeta<Namespace>>,
    shutdown: S,
) -> impl Future<Output = ()> + use<S> {
    let synced = Synced::new(3);
    let cr_events = crs.subscribe().applied(&synced);
    let ns_events = namespaces.subscribe().touched(&synced);
    let api = Api::all(inputs.client.clone());
    let (kind, mut secrets) = Kind::new(inputs, api, CLUSTER_OWNER_LABEL, None);
    let secret_events = secrets.subscribe().touched(&synced);
    let (all, by_uid) = (crs.store(), crs.store());
    let namespaces = namespaces.store();
    let ctx = Context {
        kind,
        namespaces,
        synced,
    };
    let config = controller::Config::default()
        .concurrency(inputs.settings.concurrency)
        // A burst of namespace or Secret events becomes one pass over all namespaces.
        .debounce(Duration::from_millis(200));
    let ctx = Arc::new(ctx);
    let (tidied, resources) = (ctx.clone(), crs.store());
    let tidy = housekeeping(move || tidied.tidy(&resources));
    let controller = Controller::for_shared_stream(cr_events, crs.store())
        // Any namespace change may change any resource's selection.
        .watches_shared_stream(ns_events, move |_| {
            let all = all.state().into_iter();
            all.map(|cr| ObjectRef::from_obj(&*cr)).collect::<Vec<_>>()
        })
        // A changed or deleted Secret reconciles the resource its owner label names.
        .reconcile_on(secret_events.flat_map(move |s| {
            let uid = s.cluster_owner();
            let mine = by_uid
                .state()
                .into_iter()
                .filter(|cr| cr.uid().as_deref() == uid);
            let refs = mine.map(|cr| ObjectRef::from_obj(&*cr));
            stream::iter(refs.collect::<Vec<_>>())
        }))
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move { log_result(result) });
    async move {
        info!("cluster controller starting");
        alongside(controller, vec![secrets.run().boxed(), tidy]).await;
        info!("cluster controller stopped");
    }
}

#[instrument(skip_all, fields(name = %cr.name_any()))]
fn error_policy(
    cr: Arc<ClusterEcrPublicPullSecret>,
    error: &finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    warn!(%error, "cluster reconcile error");
    Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(&*cr)))
}

#[instrument(skip_all, fields(name = %cr.name_any()))]
async fn reconcile(
    cr: Arc<ClusterEcrPublicPullSecret>,
    ctx: Arc<Context>,
) -> Result<Action, finalizer::Error<Error>> {
    let api = Api::<ClusterEcrPublicPullSecret>::all(ctx.client.clone());
    finalizer::finalizer(&api, FINALIZER, cr, |event| async {
        match event {
            Finalizer::Apply(cr) => apply(&cr, &ctx).await,
            Finalizer::Cleanup(cr) => cleanup(&cr, &ctx).await,
        }
    })
    .await
}

/// Deletes every Secret the resource wrote; the finalizer goes once all are gone.
///
/// Lists from the API server rather than the cache: a deletion seen right after a restart must
/// not remove the finalizer before the Secret watch has caught up.
async fn cleanup(cr: &ClusterEcrPublicPullSecret, ctx: &Context) -> Result<Action, Error> {
    let uid = cr.uid().unwrap_or_default();
    let owned = Api::<Secret>::all(ctx.client.clone())
        .list_metadata(&ListParams::default().labels(&format!("{CLUSTER_OWNER_LABEL}={uid}")))
        .await?;
    for meta in owned.items {
        ctx.secrets.delete(&meta.into()).await?;
    }
    info!("deleted the Secrets of a deleted ClusterEcrPublicPullSecret");
    Ok(Action::await_change())
}

async fn apply(cr: &ClusterEcrPublicPullSecret, ctx: &Context) -> Result<Action, Error> {
    // Until the watches have listed once, an empty cache would read as "no namespace selected"
    // (and delete every Secret) or "Secret absent" (and report our own Secret as a conflict).
    ctx.synced.wait().await;
    let now = Utc::now();
    let owner = Owner::Label(cr.uid().unwrap_or_default());
    let desired = Desired::new(&cr.name_any(), owner, &cr.spec.settings, None, None);
    // A spec the schema let through but that cannot work is reported, and its Secrets are kept
    // as they are (they stay valid until they expire) until the resource is fixed.
    let rotation = match validate(cr, ctx, &desired) {
        Ok(rotation) => rotation,
        Err(error) => return invalid(cr, ctx, &desired, &error, now).await,
    };
    let selected = spec::selected(&cr.spec, &ctx.namespaces.state())?;
    let owned = ctx.secrets.owned(&desired.owner, None);
    let name = cr.secret_name();
    let pass = Pass {
        ctx,
        desired,
        rotation,
        name,
        now,
    };
    let namespaces = keep(&pass, &selected).await;
    // Secrets in namespaces that left the selection (or under an old secretName) go.
    for meta in owned {
        if !namespaces.contains_key(meta.namespace()) || meta.name() != pass.name {
            ctx.secrets.delete(&meta).await?;
        }
    }
    let current = ctx.status.current(cr);
    let generation = cr.meta().generation;
    let (mut status, next) = report::cluster(generation, current.as_ref(), &namespaces, now);
    if let Some(hint) = ctx.settings.ignored_service_accounts(&cr.spec.settings) {
        let conditions = status.conditions.iter_mut();
        conditions.for_each(|c| c.message.push_str(hint));
    }
    write_status(cr, ctx, current.as_ref(), status).await?;
    let failed = namespaces
        .values()
        .any(|n| matches!(n, Selected::Failed(_)));
    let wait = if failed {
        ctx.backoff.next(&ObjectRef::from_obj(cr))
    } else {
        ctx.backoff.reset(&ObjectRef::from_obj(cr));
        next.map_or(IDLE_RESYNC, |n| schedule::until(now, n))
    };
    Ok(Action::requeue(wait))
}

/// Checks what the schema cannot: the selector and the refresh margin.
fn validate(
    cr: &ClusterEcrPublicPullSecret,
    ctx: &Context,
    desired: &Desired<'_>,
) -> Result<Rotation, Error> {
    spec::namespace_selector(&cr.spec)?;
    let default = ctx.settings.default_refresh_before;
    spec::rotation(&cr.spec.settings, default, desired.owner.uid())
}

/// Ready=False with the error; `onExpiry` still applies to the Secrets as their tokens expire.
async fn invalid(
    cr: &ClusterEcrPublicPullSecret,
    ctx: &Context,
    desired: &Desired<'_>,
    error: &Error,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let current = ctx.status.current(cr);
    let status = report::cluster_problem(error, cr.meta().generation, current.as_ref(), now);
    write_status(cr, ctx, current.as_ref(), status).await?;
    let owned = ctx.secrets.owned(&desired.owner, None);
    ctx.secrets.expire(desired, &owned, now).await
}

/// One pass over a resource's namespaces: what it wants, and when.
struct Pass<'a> {
    ctx: &'a Context,
    desired: Desired<'a>,
    rotation: Rotation,
    /// The Secret's name in every namespace.
    name: String,
    now: DateTime<Utc>,
}

/// Keeps the Secret in every selected namespace: fresh ones cost nothing; the due ones share
/// one token, fetched once.
async fn keep(pass: &Pass<'_>, selected: &[String]) -> BTreeMap<String, Selected> {
    let (mut namespaces, due) = plan(pass, selected).await;
    if !due.is_empty() {
        namespaces.extend(write_due(pass, due).await);
    }
    namespaces
}

/// Observes and plans each namespace's Secret: the fresh and the failed ones are settled, the
/// due ones returned.
async fn plan(
    pass: &Pass<'_>,
    selected: &[String],
) -> (BTreeMap<String, Selected>, Vec<(String, Due)>) {
    let (desired, name) = (&pass.desired, pass.name.as_str());
    let (mut settled, mut due) = (BTreeMap::new(), Vec::new());
    for ns in selected {
        let at = At {
            namespace: ns,
            name,
        };
        let observed = pass.ctx.secrets.observe(desired, at).await;
        let settle = match observed.map(|o| plan::plan(o, &desired.hash, &pass.rotation, pass.now))
        {
            Ok(Plan::Due(d)) => {
                due.push((ns.clone(), d));
                continue;
            }
            Ok(Plan::Fresh { state, next }) => Selected::ready(state.expires_at, next),
            Ok(Plan::Conflict) => Selected::Failed(Error::SecretConflict {
                namespace: ns.clone(),
                name: name.to_owned(),
            }),
            Err(error) => Selected::Failed(error),
        };
        settled.insert(ns.clone(), settle);
    }
    (settled, due)
}

/// Fetches the one token and writes the due Secrets with it, a few at a time (or applies
/// `onExpiry` to them without one).
async fn write_due(pass: &Pass<'_>, due: Vec<(String, Due)>) -> Vec<(String, Selected)> {
    let Pass {
        ctx,
        desired,
        rotation,
        name,
        now,
    } = pass;
    // Without a ServiceAccount, resolving the identity makes no API call: any failure is the
    // token's.
    let fetched = ctx
        .secrets
        .fetch(desired, rotation, *now)
        .await
        .and_then(|f| f);
    let fetched = &fetched;
    // Each namespace owned by its future: with borrowed names, rustc cannot prove the stream's
    // futures Send for every lifetime.
    stream::iter(due)
        .map(|(ns, due)| async move {
            let at = At {
                namespace: &ns,
                name,
            };
            let outcome = ctx.secrets.apply(desired, at, due, fetched, rotation, *now);
            let result = Selected::of(outcome.await, fetched);
            (ns, result)
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect()
        .await
}

/// Writes the status, with one Event per change of the Ready condition's reason (not per count
/// change): what `kubectl describe` shows next to the status. Cluster-scoped, so the Event
/// lands in `default`.
async fn write_status(
    cr: &ClusterEcrPublicPullSecret,
    ctx: &Context,
    current: Option<&ClusterEcrPublicPullSecretStatus>,
    desired: ClusterEcrPublicPullSecretStatus,
) -> Result<(), Error> {
    let before = current.map_or(&[][..], |s| &s.conditions);
    let changed = report::ready_changed(before, &desired.conditions).cloned();
    if !ctx.status.write(cr, current, desired).await? {
        return Ok(());
    }
    if let Some(ready) = changed {
        let type_ = if ready.status == report::TRUE {
            EventType::Normal
        } else {
            EventType::Warning
        };
        // One resource's Ready changes: few, and a flapping one is counted, not repeated.
        let (reason, note) = (&ready.reason, ready.message);
        ctx.publish(cr, type_, reason, note, Repeats::Counted).await;
    }
    Ok(())
}
