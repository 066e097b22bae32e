//! The reconciler for `EcrPublicPullSecret`: one Secret in the resource's namespace, owned by it
//! (Kubernetes garbage-collects the Secret with the resource).
//!
//! One reconcile decides, from the custom resource and the Secret's metadata alone, whether the
//! Secret is fresh. A fresh Secret costs nothing: no AWS call, no write, just a requeue at its
//! refresh time. A due Secret gets a token from the per-identity cache (one AWS call per identity
//! per rotation, however many resources share it) and is written with server-side apply.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt, future, stream};
use kube::{
    Resource, ResourceExt,
    runtime::{
        Controller,
        controller::{self, Action},
        events::EventType,
        reflector::ObjectRef,
    },
};
use tracing::{debug, info, instrument, warn};

use super::{
    Inputs, Kind, Shared, alongside, housekeeping, log_result,
    plan::{self, Plan, Write},
    report::{self, Report},
    scoped,
    secrets::{At, Desired, Failure, Outcome},
    spec,
};
use crate::{
    Error,
    admin::metrics::{Metrics, Owned, Reconciled},
    aws::token::Token,
    crd::{EcrPublicPullSecret, EcrPublicPullSecretStatus},
    k8s::{cached_secret::CachedSecret, events::Repeats, synced::Synced, watch::Watch},
    schedule,
    secret::{self, Owner},
};

/// State shared by all reconciles.
struct Context {
    kind: Kind<EcrPublicPullSecret>,
    metrics: Arc<Metrics>,
}

// The shared parts are used as `ctx.secrets`, `ctx.status`, ...: a reconcile reads as one thing.
impl std::ops::Deref for Context {
    type Target = Kind<EcrPublicPullSecret>;

    fn deref(&self) -> &Self::Target {
        &self.kind
    }
}

/// Subscribes to the watches this kind reads; the returned reconciler runs until `shutdown`.
pub fn start<S: Future<Output = ()> + Send + Sync + 'static>(
    inputs: Inputs,
    shared: &mut Shared,
    shutdown: S,
) -> impl Future<Output = ()> + use<S> {
    // Readiness is taken from the streams' first list rather than from
    // `Store::wait_until_ready`: kube-runtime's own applier already waits on the resource store,
    // and a second concurrent waiter there can lose its wake-up (its one-shot channel keeps a
    // single waker), which made /readyz stay 503.
    // Role rules that select namespaces by label need the Namespace cache listed too.
    let labels = (shared.namespaces.as_mut())
        .filter(|_| inputs.settings.role_permissions.selects_by_label());
    let synced = Synced::new(if labels.is_some() { 3 } else { 2 });
    inputs.health.ready_when(synced.ready());
    let crs = shared.crs.subscribe_refs().applied(&synced);
    let namespaces = labels.map(|watch| {
        let events = watch.subscribe().touched(&synced);
        (watch.store(), events.map(|_| ()))
    });
    let (namespaces, namespace_events) = match namespaces {
        Some((store, events)) => (Some(store), events.boxed()),
        None => (None, stream::empty().boxed()),
    };
    let api = scoped(&inputs.client, inputs.settings.watch_namespace.as_deref());
    let (kind, mut secrets) = Kind::new(&inputs, api, &secret::managed_selector(), namespaces);
    let secret_events = secrets.subscribe().touched(&synced);
    inputs.metrics.watch_secrets(secrets.store(), owned(shared));
    let config = controller::Config::default().concurrency(inputs.settings.concurrency);
    let metrics = inputs.metrics;
    // Triggered by references rather than objects (see `Watch::subscribe_refs`): a resource
    // added or changed reconciles itself.
    let ctx = Arc::new(Context { kind, metrics });
    let (tidied, resources) = (ctx.clone(), shared.crs.store());
    let tidy = housekeeping(move || tidied.tidy(&resources));
    let controller = Controller::for_shared_stream(stream::empty(), shared.crs.store())
        .reconcile_on(crs)
        // A changed or deleted Secret reconciles the resource that controls it.
        .reconcile_on(secret_events.filter_map(|s| future::ready(s.controller())))
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move { log_result(result) });
    // Namespace events only count towards `synced`: a label change takes effect when a
    // resource next needs a token.
    let namespace_events = namespace_events.for_each(|()| future::ready(()));
    async move {
        info!("controller starting");
        alongside(
            controller,
            vec![secrets.run().boxed(), namespace_events.boxed(), tidy],
        )
        .await;
        info!("controller stopped");
    }
}

/// Whether a Secret of the cache is one a live resource of either kind wrote: the metrics count
/// no other (the cache selects by a label anyone may set).
fn owned(shared: &Shared) -> Owned {
    let crs = shared.crs.store();
    let clusters = shared.cluster.as_ref().map(Watch::store);
    Arc::new(move |secret: &CachedSecret| {
        if let (Some(controller), Some(uid)) = (secret.controller(), secret.controller_uid()) {
            return crs
                .get(&controller)
                .is_some_and(|cr| cr.uid().as_deref() == Some(uid));
        }
        let (Some(clusters), Some(uid)) = (&clusters, secret.cluster_owner()) else {
            return false;
        };
        clusters
            .find(|cr| cr.uid().as_deref() == Some(uid))
            .is_some()
    })
}

#[instrument(skip_all, fields(name = %cr.name_any(), namespace = %cr.namespace().unwrap_or_default()))]
fn error_policy(cr: Arc<EcrPublicPullSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(reason = error.label(), %error, "reconcile error");
    Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(&*cr)))
}

#[instrument(skip_all, fields(name = %cr.name_any(), namespace = %cr.namespace().unwrap_or_default()))]
async fn reconcile(cr: Arc<EcrPublicPullSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let outcome = reconcile_once(&cr, &ctx).await;
    let result = outcome
        .as_ref()
        .map_or(Reconciled::Error, |(result, _)| *result);
    ctx.metrics
        .reconciled(result, started.elapsed().as_secs_f64());
    outcome.map(|(_, action)| action)
}

/// One reconcile; also names its result for metrics.
async fn reconcile_once(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
) -> Result<(Reconciled, Action), Error> {
    if cr.meta().deletion_timestamp.is_some() {
        // The Secret carries an ownerReference: Kubernetes garbage-collects it.
        return Ok((Reconciled::Skipped, Action::await_change()));
    }
    let now = Utc::now();
    let outcome = match decide(cr, ctx, now).await {
        Ok(outcome) => outcome,
        Err(error) => return cannot_reconcile(cr, ctx, error, now).await,
    };
    let (name, key) = (cr.secret_name(), ObjectRef::from_obj(cr));
    let (result, mut report, wait) = match outcome {
        Outcome::Fresh { state, next } => {
            ctx.backoff.reset(&key);
            let report = report::ready(&name, state.expires_at, state.refreshed_at, next);
            (Reconciled::Fresh, report, schedule::until(now, next))
        }
        Outcome::Written {
            token,
            next,
            before,
        } => {
            ctx.backoff.reset(&key);
            announce_write(cr, ctx, &token, &before).await;
            let report = report::ready(&name, Some(token.expires_at), Some(token.issued_at), next);
            (Reconciled::Written, report, schedule::until(now, next))
        }
        Outcome::Failed(failure) => {
            let (report, wait) = failed(cr, ctx, failure, now).await;
            (Reconciled::Failed, report, wait)
        }
    };
    if let Some(hint) = ctx.settings.ignored_service_accounts(&cr.spec.settings) {
        report.message.push_str(hint);
    }
    write_status(cr, ctx, &report, now).await?;
    Ok((result, Action::requeue(wait)))
}

/// Plans the resource's Secret and carries the plan out.
async fn decide(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let ns = namespace(cr)?;
    let desired = desired(cr, &ns)?;
    let default = ctx.settings.default_refresh_before;
    let rotation = spec::rotation(&cr.spec.settings, default, desired.owner.uid())?;
    let name = cr.secret_name();
    spec::secret_name(&name)?;
    let at = At {
        namespace: &ns,
        name: &name,
    };
    let observed = ctx.secrets.observe(&desired, at).await?;
    let due = match plan::plan(observed, &desired.hash, &rotation, now) {
        Plan::Fresh { state, next } => return Ok(Outcome::Fresh { state, next }),
        Plan::Conflict => {
            return Err(Error::SecretConflict {
                namespace: ns.clone(),
                name: name.clone(),
            });
        }
        Plan::Due(due) => due,
    };
    let fetched = ctx.secrets.fetch(&desired, &rotation, now).await?;
    let outcome = ctx
        .secrets
        .apply(&desired, at, due, &fetched, &rotation, now);
    outcome.await
}

fn namespace(cr: &EcrPublicPullSecret) -> Result<String, Error> {
    cr.namespace()
        .ok_or_else(|| Error::Internal("EcrPublicPullSecret has no namespace".into()))
}

/// What the resource wants its Secret to hold.
fn desired<'a>(cr: &'a EcrPublicPullSecret, ns: &'a str) -> Result<Desired<'a>, Error> {
    let owner = cr
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Internal("EcrPublicPullSecret has no uid yet".into()))?;
    let service_account = cr.spec.service_account_name.as_deref();
    let owner = Owner::Reference(owner);
    Ok(Desired::new(
        &cr.name_any(),
        owner,
        &cr.spec.settings,
        service_account,
        Some(ns),
    ))
}

/// A reconcile that did not get as far as a token: said on the resource. An API failure is
/// returned (and retried by the error policy); anything else is the resource's to fix.
async fn cannot_reconcile(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    error: Error,
    now: DateTime<Utc>,
) -> Result<(Reconciled, Action), Error> {
    if let Error::SecretChanged { .. } = error {
        // Not the resource's problem: its Secret's watch event brings it back with the new
        // version; the backoff bounds a race that keeps being lost.
        debug!(%error, "Secret changed since it was read");
        let wait = ctx.backoff.next(&ObjectRef::from_obj(cr));
        return Ok((Reconciled::Error, Action::requeue(wait)));
    }
    if error.is_kube() {
        // Said on the resource too (a 500 storm or a missing RBAC verb must not leave "Ready"
        // standing); the status write may fail as well while the API is down.
        if let Err(e) = report_problem(cr, ctx, &error, now).await {
            debug!(error = %e, "could not report the API error on the status");
        }
        return Err(error);
    }
    warn!(reason = error.label(), %error, "cannot reconcile");
    report_problem(cr, ctx, &error, now).await?;
    let action = match error {
        // While the spec cannot be acted on, the Secret keeps its token until it expires; an
        // expired token is worse than none, so onExpiry still applies then.
        Error::InvalidSpec(_) => expire_owned(cr, ctx, now).await?,
        _ => Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(cr))),
    };
    Ok((Reconciled::Failed, action))
}

async fn expire_owned(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let ns = namespace(cr)?;
    let desired = desired(cr, &ns)?;
    let owned = ctx.secrets.owned(&desired.owner, Some(&ns));
    ctx.secrets.expire(&desired, &owned, now).await
}

/// Publishes the Event a write deserves, if any, and logs it.
async fn announce_write(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    token: &Token,
    before: &secret::SecretState,
) {
    let current = ctx.status.current(cr);
    let reported = current
        .as_ref()
        .and_then(|s: &EcrPublicPullSecretStatus| s.observed_generation);
    let spec_edited = reported != cr.meta().generation;
    let hash = secret::config_hash(&cr.spec.settings, cr.spec.service_account_name.as_deref());
    let why = Write::of(before, &hash, spec_edited);
    let (reason, verb) = why.reason();
    let secret_name = cr.secret_name();
    info!(secret = %secret_name, expires_at = %token.expires_at, "{reason}");
    let was_ready = report::is_ready(current.as_ref());
    if plan::worth_an_event(why, was_ready, ctx.settings.rotation_events) {
        let until = token.expires_at.to_rfc3339();
        let note = format!("Secret {secret_name} {verb}; token valid until {until}");
        // Spec edits can come in a row; first writes and rotations come for every resource.
        let repeats = match why {
            Write::Reconfigured => Repeats::Counted,
            Write::First | Write::Rotation => Repeats::Rare,
        };
        ctx.publish(cr, EventType::Normal, reason, note, repeats)
            .await;
    }
}

/// The status and retry delay for a Secret that got no token.
async fn failed(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    failure: Failure,
    now: DateTime<Utc>,
) -> (Report, Duration) {
    let report = report::failed(&cr.secret_name(), &failure, now);
    let (error, reason) = (&failure.error, failure.error.label());
    if report::ready_reason(ctx.status.current(cr).as_ref()) != Some(reason) || failure.removed {
        let note = report.message.clone();
        ctx.publish(cr, EventType::Warning, reason, note, Repeats::Counted)
            .await;
    }
    warn!(reason, %error, "token refresh failed");
    let wait = ctx.backoff.next(&ObjectRef::from_obj(cr));
    // Wake up at expiry so onExpiry is applied on time, not one backoff step late.
    let wait = match failure.kept.expires_at.filter(|e| *e > now) {
        Some(expiry) => wait.min(schedule::until(now, expiry)),
        None => wait,
    };
    (report, wait)
}

/// Ready=False for an error that stopped the reconcile, with a Warning Event when the reason is
/// new.
async fn report_problem(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    error: &Error,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let current = ctx.status.current(cr);
    if report::ready_reason(current.as_ref()) != Some(error.label()) {
        let note = error.to_string();
        ctx.publish(
            cr,
            EventType::Warning,
            error.label(),
            note,
            Repeats::Counted,
        )
        .await;
    }
    let report = report::problem(error, &cr.secret_name(), current.as_ref());
    write_status(cr, ctx, &report, now).await
}

async fn write_status(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    report: &Report,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let current = ctx.status.current(cr);
    let desired = report::build(report, cr.meta().generation, current.as_ref(), now);
    ctx.status.write(cr, current.as_ref(), desired).await?;
    Ok(())
}
