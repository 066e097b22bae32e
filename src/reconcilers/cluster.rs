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
    Api, Client, Resource, ResourceExt,
    api::{ListParams, PartialObjectMeta},
    runtime::{
        Controller,
        controller::{self, Action},
        events::{EventType, Recorder},
        finalizer::{self, Event as Finalizer},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::{info, instrument, warn};

use super::{
    Backoff, ClusterWatches, Inputs, Settings, alongside, log_result,
    plan::{self, Plan},
    report::{self, Namespace as Selected},
    secrets::{At, Desired, Outcome, Secrets},
    spec,
};
use crate::{
    Error,
    aws::token::Token,
    crd::{ClusterEcrPublicPullSecret, ClusterEcrPublicPullSecretStatus},
    k8s::{events, status::StatusWriter, synced::Synced, watch::Watch},
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
    client: Client,
    secrets: Secrets,
    settings: Settings,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The Namespace and Secret caches have listed once.
    synced: Synced,
    backoff: Backoff<String>,
    recorder: Recorder,
    status: StatusWriter<ClusterEcrPublicPullSecret>,
}

/// Subscribes to the watches this kind reads; the returned reconciler runs until `shutdown`.
pub fn start<S: Future<Output = ()> + Send + Sync + 'static>(
    inputs: &Inputs,
    shared: &mut ClusterWatches,
    shutdown: S,
) -> impl Future<Output = ()> + use<S> {
    let ClusterWatches {
        crs: clusters,
        namespaces,
    } = shared;
    let synced = Synced::new(3);
    let crs = clusters.subscribe().applied(&synced);
    let ns_events = namespaces.subscribe().touched(&synced);
    let mut secrets = Watch::new(
        Api::<PartialObjectMeta<Secret>>::all(inputs.client.clone()),
        watcher::Config::default().labels(CLUSTER_OWNER_LABEL),
    );
    let secret_events = secrets.subscribe().touched(&synced);
    let (all, by_uid) = (clusters.store(), clusters.store());
    let ctx = Arc::new(context(inputs, namespaces.store(), secrets.store(), synced));
    let config = controller::Config::default()
        .concurrency(inputs.settings.concurrency)
        // A burst of namespace or Secret events becomes one pass over all namespaces.
        .debounce(Duration::from_millis(200));
    let controller = Controller::for_shared_stream(crs, clusters.store())
        // Any namespace change may change any resource's selection.
        .watches_shared_stream(ns_events, move |_| {
            all.state()
                .iter()
                .map(|cr| ObjectRef::from_obj(&**cr))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(secret_events, move |s| {
            let uid = s.labels().get(CLUSTER_OWNER_LABEL).cloned();
            let mine = by_uid.state().into_iter().filter(|cr| cr.uid() == uid);
            mine.map(|cr| ObjectRef::from_obj(&*cr)).collect::<Vec<_>>()
        })
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move { log_result(result) });
    async move {
        info!("cluster controller starting");
        alongside(controller, vec![secrets.run().boxed()]).await;
        info!("cluster controller stopped");
    }
}

fn context(
    inputs: &Inputs,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    secrets: Store<PartialObjectMeta<Secret>>,
    synced: Synced,
) -> Context {
    let (client, settings) = (&inputs.client, &inputs.settings);
    let allowed = settings.allowed_roles.clone();
    Context {
        client: client.clone(),
        secrets: Secrets::new(client.clone(), secrets, inputs.tokens.clone(), allowed),
        settings: settings.clone(),
        namespaces,
        synced,
        backoff: settings.backoff(),
        recorder: events::recorder(client.clone(), settings.instance.clone()),
        status: StatusWriter::new(client.clone()),
    }
}

#[instrument(skip_all, fields(name = %cr.name_any()))]
fn error_policy(
    cr: Arc<ClusterEcrPublicPullSecret>,
    error: &finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    warn!(%error, "cluster reconcile error");
    Action::requeue(ctx.backoff.next(&cr.name_any()))
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
    for meta in &owned.items {
        ctx.secrets.delete(meta).await?;
    }
    info!("deleted the Secrets of a deleted ClusterEcrPublicPullSecret");
    Ok(Action::await_change())
}

async fn apply(cr: &ClusterEcrPublicPullSecret, ctx: &Context) -> Result<Action, Error> {
    // Until the watches have listed once, an empty cache would read as "no namespace selected"
    // (and delete every Secret) or "Secret absent" (and report our own Secret as a conflict).
    ctx.synced.wait().await;
    let now = Utc::now();
    let desired = Desired::new(owner(cr), &cr.spec.settings, None, None);
    // A spec the schema let through but that cannot work is reported, and its Secrets are kept
    // as they are (they stay valid until they expire) until the resource is fixed.
    let rotation = match validate(cr, ctx, &desired) {
        Ok(rotation) => rotation,
        Err(error) => return invalid(cr, ctx, &desired, &error, now).await,
    };
    let selected = selected(cr, ctx)?;
    let owned = ctx.secrets.owned(&desired.owner, None);
    let namespaces = keep(cr, ctx, &desired, &rotation, &selected, now).await;
    // Secrets in namespaces that left the selection (or under an old secretName) go.
    let name = cr.secret_name();
    for meta in owned {
        let ns = meta.namespace().unwrap_or_default();
        if !namespaces.contains_key(&ns) || meta.name_any() != name {
            ctx.secrets.delete(&meta).await?;
        }
    }
    let current = ctx.status.current(cr);
    let generation = cr.meta().generation;
    let (mut status, next) = report::cluster(generation, current.as_ref(), &namespaces, now);
    if let Some(hint) = ctx.settings.ignored_service_accounts(&cr.spec.settings) {
        status
            .conditions
            .iter_mut()
            .for_each(|c| c.message.push_str(hint));
    }
    write_status(cr, ctx, current.as_ref(), status).await?;
    let failed = namespaces
        .values()
        .any(|n| matches!(n, Selected::Failed(_)));
    let wait = if failed {
        ctx.backoff.next(&cr.name_any())
    } else {
        ctx.backoff.reset(&cr.name_any());
        next.map_or(IDLE_RESYNC, |n| schedule::until(now, n))
    };
    Ok(Action::requeue(wait))
}

fn owner(cr: &ClusterEcrPublicPullSecret) -> Owner {
    Owner::Label(cr.uid().unwrap_or_default())
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
    let next = ctx.secrets.expire(desired, &owned, now).await?;
    Ok(next.map_or_else(Action::await_change, |n| {
        Action::requeue(schedule::until(now, n))
    }))
}

/// The selected namespaces, by name. Terminating namespaces are skipped: writes there fail, and
/// their Secrets go with them.
fn selected(cr: &ClusterEcrPublicPullSecret, ctx: &Context) -> Result<Vec<String>, Error> {
    let mut selected = Vec::new();
    for ns in ctx.namespaces.state() {
        if ns.metadata.deletion_timestamp.is_none()
            && spec::selects(&cr.spec, &ns.name_any(), ns.labels())?
        {
            selected.push(ns.name_any());
        }
    }
    selected.sort();
    Ok(selected)
}

/// Keeps the Secret in every selected namespace: fresh ones cost nothing; the due ones share
/// one token, fetched once.
async fn keep(
    cr: &ClusterEcrPublicPullSecret,
    ctx: &Context,
    desired: &Desired<'_>,
    rotation: &Rotation,
    selected: &[String],
    now: DateTime<Utc>,
) -> BTreeMap<String, Selected> {
    let name = cr.secret_name();
    let mut namespaces = BTreeMap::new();
    let mut due = Vec::new();
    for ns in selected {
        let at = At {
            namespace: ns,
            name: &name,
        };
        let planned = match ctx.secrets.observe(desired, at).await {
            Ok(observed) => plan::plan(observed, &desired.hash, rotation, now),
            Err(error) => {
                namespaces.insert(ns.clone(), Selected::Failed(error));
                continue;
            }
        };
        match planned {
            Plan::Fresh { state, next } => {
                namespaces.insert(ns.clone(), ready(state.expires_at, next));
            }
            Plan::Conflict => {
                let conflict = Error::SecretConflict {
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                namespaces.insert(ns.clone(), Selected::Failed(conflict));
            }
            Plan::Due(d) => due.push((ns.clone(), d)),
        }
    }
    if !due.is_empty() {
        // Without a ServiceAccount, resolving the identity makes no API call: any failure is
        // the token's.
        let fetched = ctx
            .secrets
            .fetch(desired, rotation, now)
            .await
            .and_then(|f| f);
        let (name, fetched) = (&name, &fetched);
        // Each namespace owned by its future: with borrowed names, rustc cannot prove the
        // stream's futures Send for every lifetime.
        let written = stream::iter(due)
            .map(|(ns, due)| async move {
                let at = At {
                    namespace: &ns,
                    name,
                };
                let outcome = ctx.secrets.apply(desired, at, due, fetched, rotation, now);
                let result = namespace_result(outcome.await, fetched);
                (ns, result)
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        namespaces.extend(written);
    }
    namespaces
}

/// A namespace's result. A failed write fails that namespace; without a token the fetch's error
/// is the news (a failed attempt to empty an expired Secret is retried with the next pass).
fn namespace_result(outcome: Result<Outcome, Error>, fetched: &Result<Token, Error>) -> Selected {
    match outcome {
        Ok(Outcome::Fresh { state, next }) => ready(state.expires_at, next),
        Ok(Outcome::Written { token, next, .. }) => ready(Some(token.expires_at), next),
        Ok(Outcome::Failed(failure)) => Selected::Failed(failure.error),
        Err(error) => Selected::Failed(fetched.as_ref().err().cloned().unwrap_or(error)),
    }
}

fn ready(expires: Option<DateTime<Utc>>, next: DateTime<Utc>) -> Selected {
    Selected::Ready { expires, next }
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
    let after = report::ready_condition(&desired.conditions).cloned();
    if !ctx.status.write(cr, current, desired).await? {
        return Ok(());
    }
    let before = current.and_then(|s| report::ready_condition(&s.conditions));
    if let Some(after) = after
        && before.map(|c| (&c.status, &c.reason)) != Some((&after.status, &after.reason))
    {
        let type_ = if after.status == report::TRUE {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let regarding = cr.object_ref(&());
        events::publish(
            &ctx.recorder,
            &regarding,
            type_,
            &after.reason,
            after.message,
        )
        .await;
    }
    Ok(())
}
