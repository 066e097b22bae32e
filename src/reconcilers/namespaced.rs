//! The reconciler for `EcrPublicPullSecret`.
//!
//! One reconcile decides, from the custom resource and the Secret's metadata alone, whether the
//! Secret is fresh. A fresh Secret costs nothing: no AWS call, no write, just a requeue at its
//! refresh time. A due Secret gets a token from the per-identity cache (one AWS call per identity
//! per rotation, however many resources share it) and is written with server-side apply.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{EventType, Recorder},
        reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    Error,
    admin::{http::Health, metrics::Metrics},
    aws::{
        cache::TokenCache,
        identity::{self, AllowedRoles},
        token::Token,
    },
    crd::{EcrPublicPullSecret, EcrPublicPullSecretStatus, MANAGER, OnExpiry, PullSecretSettings},
    duration,
    k8s::{
        events,
        status::{self, Report},
        synced::Synced,
    },
    schedule,
    secret::{self, SecretSpec, SecretState},
};

/// Settings of the reconciler itself (not of AWS or the process).
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Only watch this namespace (all namespaces when `None`).
    pub watch_namespace: Option<String>,
    /// Refresh margin for resources that do not set `spec.refreshBefore` (default: half lifetime).
    pub default_refresh_before: Option<Duration>,
    /// First retry delay after a failure; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Name of this instance in Events (`reportingInstance`), usually the pod name.
    pub instance: Option<String>,
    /// Roles resources may ask for with `spec.roleArn` or `spec.serviceAccountName`.
    pub allowed_roles: AllowedRoles,
    /// Whether `spec.serviceAccounts` is served (`--patch-service-accounts`).
    pub patch_service_accounts: bool,
    /// Whether a routine rotation publishes a Normal `Rotated` Event (`--rotation-events`).
    pub rotation_events: bool,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            watch_namespace: None,
            default_refresh_before: None,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 16,
            instance: None,
            allowed_roles: AllowedRoles::default(),
            patch_service_accounts: false,
            rotation_events: false,
        }
    }
}

/// State shared by all reconciles.
pub struct Context {
    client: Client,
    secrets: Store<PartialObjectMeta<Secret>>,
    tokens: Arc<TokenCache>,
    recorder: Recorder,
    settings: ControllerSettings,
    metrics: Arc<Metrics>,
    /// Failed attempts per resource, for exponential backoff; cleared on success.
    attempts: Mutex<HashMap<ObjectRef<EcrPublicPullSecret>, u32>>,
    /// What this process last wrote per Secret, with the resourceVersion the write produced, so a
    /// reconcile that runs before the watch delivers our own write does not write again.
    written: Mutex<HashMap<ObjectRef<Secret>, Written>>,
    /// The status this process last wrote per resource UID. Only the operator writes status, so
    /// this is newer than a cached object that the watch has not refreshed yet; using it avoids
    /// rewriting the same status from a stale copy.
    statuses: status::LastWritten<EcrPublicPullSecretStatus>,
}

/// Our own last write of a Secret: the resourceVersion it produced and the state it holds.
struct Written {
    resource_version: Option<String>,
    state: SecretState,
}

/// Why a Secret was written; it decides the Event reason and whether there is an Event at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// The Secret held no token (new, or emptied by `onExpiry: RemoveAuth`).
    First,
    /// The token was due.
    Rotation,
    /// The spec changed what the Secret must hold (registries, template, identity).
    Reconfigured,
}

impl Write {
    /// `spec_edited`: the resource's generation is not the one its status last reported. A
    /// content change without an edit (an annotation stripped by another tool, a new operator
    /// version hashing differently) is rewritten quietly, like a rotation: it may concern every
    /// resource at once.
    fn of(state: &SecretState, hash: &str, spec_edited: bool) -> Self {
        if state.expires_at.is_none() {
            Write::First
        } else if spec_edited && state.config_hash.as_deref() != Some(hash) {
            Write::Reconfigured
        } else {
            Write::Rotation
        }
    }

    /// Event reason and the verb of its note.
    fn reason(self) -> (&'static str, &'static str) {
        match self {
            Write::First => ("Written", "written"),
            Write::Rotation => ("Rotated", "rotated"),
            Write::Reconfigured => ("Updated", "updated for the changed spec"),
        }
    }
}

/// What one reconcile concluded.
enum Outcome {
    /// The Secret holds a token that is not due: nothing was done.
    Fresh {
        state: SecretState,
        next: DateTime<Utc>,
    },
    /// A token was written.
    Written {
        token: Token,
        next: DateTime<Utc>,
        why: Write,
    },
    /// No token could be obtained. `kept` is the token state left in the Secret.
    Failed {
        error: Error,
        kept: SecretState,
        next: Option<DateTime<Utc>>,
        removed: bool,
        has_secret: bool,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning only follows a panic elsewhere; the maps stay consistent enough to go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Context {
    fn next_backoff(&self, key: &ObjectRef<EcrPublicPullSecret>) -> Duration {
        let mut attempts = lock(&self.attempts);
        let n = attempts.entry(key.clone()).or_insert(0);
        let delay = schedule::backoff(
            *n,
            self.settings.backoff_base,
            self.settings.backoff_max,
            fastrand::f64(),
        );
        *n = n.saturating_add(1);
        delay
    }

    fn reset_backoff(&self, key: &ObjectRef<EcrPublicPullSecret>) {
        lock(&self.attempts).remove(key);
    }

    /// The Secret's metadata: from the watch cache, corrected by our own latest write, or from the
    /// API when the cache has not seen it (a Secret we do not manage is not in the cache at all).
    async fn secret_meta(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<(PartialObjectMeta<Secret>, SecretState)>, Error> {
        let key = ObjectRef::<Secret>::new(name).within(ns);
        let cached = self.secrets.get(&ObjectRef::new(name).within(ns));
        let meta = match cached {
            Some(m) => (*m).clone(),
            None => match Api::<Secret>::namespaced(self.client.clone(), ns)
                .get_metadata_opt(name)
                .await?
            {
                Some(m) => m,
                None => {
                    lock(&self.written).remove(&key);
                    return Ok(None);
                }
            },
        };
        let observed = SecretState::from_meta(&meta.metadata);
        let mut written = lock(&self.written);
        let state = match written.get(&key) {
            Some(w)
                if w.resource_version == meta.metadata.resource_version || w.state == observed =>
            {
                written.remove(&key);
                observed
            }
            Some(w) => w.state.clone(),
            None => observed,
        };
        Ok(Some((meta, state)))
    }

    /// The resource's current status: our own last write until the watch has caught up with it.
    fn status_of(&self, cr: &EcrPublicPullSecret) -> Option<EcrPublicPullSecretStatus> {
        self.statuses
            .current(cr.meta().uid.as_deref(), cr.status.as_ref())
    }

    async fn write_secret(
        &self,
        spec: &SecretSpec<'_>,
        token: Option<&Token>,
    ) -> Result<(), Error> {
        let desired = secret::build(spec, token);
        let api = Api::<Secret>::namespaced(self.client.clone(), spec.namespace);
        let written = api
            .patch(
                spec.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
        let key = ObjectRef::<Secret>::new(spec.name).within(spec.namespace);
        let state = SecretState::from_meta(&desired.metadata);
        let resource_version = written.metadata.resource_version;
        lock(&self.written).insert(
            key,
            Written {
                resource_version,
                state,
            },
        );
        Ok(())
    }

    async fn publish(
        &self,
        cr: &EcrPublicPullSecret,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        events::publish(&self.recorder, &cr.object_ref(&()), type_, reason, note).await;
    }
}

/// Builds the shared context and runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    tokens: Arc<TokenCache>,
    settings: ControllerSettings,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (crs, secrets_api) = match &settings.watch_namespace {
        Some(ns) => (
            Api::<EcrPublicPullSecret>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Both caches drop managedFields: the operator never reads them, and at thousands of objects
    // they are most of the memory a watch cache holds. Readiness is taken from the streams'
    // first InitDone rather than from `Store::wait_until_ready`: kube-runtime's own applier
    // already waits on the resource store, and a second concurrent waiter there can lose its
    // wake-up (its one-shot channel keeps a single waker), which made /readyz stay 503.
    let synced = Synced::new(2);
    let ready = synced.ready();
    tokio::spawn(async move {
        if ready.await {
            info!("caches synced");
            health.set_ready(true);
        }
    });
    let (reader, writer) = reflector::store();
    // Initial lists are paged (kube-runtime's 500 per page), which keeps the start-up peak down
    // at thousands of objects. kube never sends `resourceVersion=0` together with a page size,
    // so asking for `any_semantic` (a watch-cache read) would not change the request.
    let secret_config = watcher::Config::default().labels(&secret::managed_selector());
    let secret_events = reflector(
        writer,
        watcher(secrets_api, secret_config)
            .default_backoff()
            .modify(|s| s.managed_fields_mut().clear()),
    )
    .inspect(synced.observer())
    .touched_objects();
    let (crs_store, crs_writer) = reflector::store();
    let cr_events = reflector(
        crs_writer,
        watcher(crs, watcher::Config::default())
            .default_backoff()
            .modify(|cr| {
                cr.managed_fields_mut().clear();
                // `kubectl apply` keeps a full copy of the object here; never read, often large.
                cr.annotations_mut()
                    .remove("kubectl.kubernetes.io/last-applied-configuration");
            }),
    )
    .inspect(synced.observer())
    .applied_objects();
    let concurrency = settings.concurrency;
    metrics.watch_secrets(reader.clone());
    let ctx = Arc::new(Context {
        recorder: events::recorder(client.clone(), settings.instance.clone()),
        client,
        secrets: reader.clone(),
        tokens,
        settings,
        metrics,
        attempts: Mutex::default(),
        written: Mutex::default(),
        statuses: Default::default(),
    });
    info!("controller starting");
    Controller::for_stream(cr_events, crs_store)
        .owns_stream(secret_events)
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
    info!("controller stopped");
}

fn error_policy(cr: Arc<EcrPublicPullSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %cr.name_any(), namespace = ?cr.namespace(), reason = error.label(), %error, "reconcile error");
    Action::requeue(ctx.next_backoff(&ObjectRef::from_obj(&*cr)))
}

async fn reconcile(cr: Arc<EcrPublicPullSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let outcome = reconcile_once(cr, ctx.clone()).await;
    let result = outcome.as_ref().map_or("error", |(result, _)| *result);
    ctx.metrics
        .reconciled(result, started.elapsed().as_secs_f64());
    outcome.map(|(_, action)| action)
}

/// One reconcile; also names its result for metrics: fresh, written, failed or skipped.
async fn reconcile_once(
    cr: Arc<EcrPublicPullSecret>,
    ctx: Arc<Context>,
) -> Result<(&'static str, Action), Error> {
    if cr.meta().deletion_timestamp.is_some() {
        // The Secret carries an ownerReference: Kubernetes garbage-collects it.
        return Ok(("skipped", Action::await_change()));
    }
    let key = ObjectRef::from_obj(&*cr);
    let now = Utc::now();
    let outcome = match decide(&cr, &ctx, now).await {
        Ok(outcome) => outcome,
        Err(error) if error.is_kube() => {
            // Say so on the resource too (a 500 storm or a missing RBAC verb must not leave
            // "Ready" standing); the status write may fail as well while the API is down.
            if let Err(e) = report_problem(&cr, &ctx, &error, now).await {
                debug!(error = %e, "could not report the API error on the status");
            }
            return Err(error);
        }
        Err(error @ Error::InvalidSpec(_)) => {
            report_problem(&cr, &ctx, &error, now).await?;
            return Ok(("failed", expire_owned(&cr, &ctx, now).await?));
        }
        Err(error) => {
            report_problem(&cr, &ctx, &error, now).await?;
            return Ok(("failed", Action::requeue(ctx.next_backoff(&key))));
        }
    };
    let secret_name = cr.secret_name();
    let result = match &outcome {
        Outcome::Fresh { .. } => "fresh",
        Outcome::Written { .. } => "written",
        Outcome::Failed { .. } => "failed",
    };
    let (mut report, requeue) = match &outcome {
        Outcome::Fresh { state, next } => {
            ctx.reset_backoff(&key);
            (
                ready_report(&secret_name, state.expires_at, state.refreshed_at, *next),
                schedule::until(now, *next),
            )
        }
        Outcome::Written { token, next, why } => {
            ctx.reset_backoff(&key);
            let (reason, verb) = why.reason();
            let note = format!(
                "Secret {secret_name} {verb}; token valid until {}",
                token.expires_at.to_rfc3339()
            );
            info!(name = %cr.name_any(), namespace = ?cr.namespace(), secret = %secret_name, expires_at = %token.expires_at, "{reason}");
            let was_ready = status::is_ready(ctx.status_of(&cr).as_ref());
            if worth_an_event(*why, was_ready, ctx.settings.rotation_events) {
                ctx.publish(&cr, EventType::Normal, reason, note).await;
            }
            (
                ready_report(
                    &secret_name,
                    Some(token.expires_at),
                    Some(token.issued_at),
                    *next,
                ),
                schedule::until(now, *next),
            )
        }
        Outcome::Failed {
            error,
            kept,
            next,
            removed,
            has_secret,
        } => {
            let mut message = error.to_string();
            // Stable text per situation, so retries do not rewrite the status.
            match kept.expires_at {
                Some(exp) if exp > now => message.push_str(&format!(
                    ". The previous token stays in the Secret until it expires at {}",
                    exp.to_rfc3339()
                )),
                Some(exp) => message.push_str(&format!(
                    ". The token in the Secret expired at {} (onExpiry: Keep)",
                    exp.to_rfc3339()
                )),
                None if *has_secret => message.push_str(
                    ". The Secret holds no token (onExpiry: RemoveAuth), so pulls fall back to anonymous until renewal succeeds",
                ),
                None => {}
            }
            if status::ready_reason(ctx.status_of(&cr).as_ref()) != Some(error.label()) || *removed
            {
                ctx.publish(&cr, EventType::Warning, error.label(), message.clone())
                    .await;
            }
            warn!(name = %cr.name_any(), namespace = ?cr.namespace(), reason = error.label(), %error, "token refresh failed");
            let mut wait = ctx.next_backoff(&key);
            // Wake up at expiry so onExpiry is applied on time, not one backoff step late.
            if let Some(exp) = kept.expires_at.filter(|e| *e > now) {
                wait = wait.min(schedule::until(now, exp));
            }
            let report = Report {
                ready: false,
                reason: error.label().into(),
                message,
                secret_name: secret_name.clone(),
                expires_at: kept.expires_at,
                refreshed_at: kept.refreshed_at,
                next_refresh: *next,
            };
            (report, wait)
        }
    };
    if let Some(hint) = ignored_service_accounts(&cr.spec.settings, &ctx.settings) {
        report.message.push_str(hint);
    }
    write_status(&cr, &ctx, &report, now).await?;
    Ok((result, Action::requeue(requeue)))
}

/// Appended to the status message when a resource asks for something this operator does not do.
pub fn ignored_service_accounts(
    spec: &PullSecretSettings,
    settings: &ControllerSettings,
) -> Option<&'static str> {
    (!spec.service_accounts.is_empty() && !settings.patch_service_accounts).then_some(
        "; spec.serviceAccounts is ignored: the operator runs without --patch-service-accounts \
         (chart value serviceAccountPatching.enabled)",
    )
}

/// Whether the spec changed since the status last reported on it.
fn spec_edited(cr: &EcrPublicPullSecret, ctx: &Context) -> bool {
    ctx.status_of(cr).and_then(|s| s.observed_generation) != cr.meta().generation
}

/// Whether a Secret write deserves a Normal Event: the first write, a rewrite for a changed spec
/// and a recovery always; a routine rotation only when asked for. Those come for every resource
/// every rotation: at 10,000 resources, 10,000 Events for the API server to store, and
/// kube-runtime's `Recorder` keeps each in memory for six minutes (about 4 KiB apiece, measured).
/// The status and metrics show rotations.
fn worth_an_event(why: Write, was_ready: bool, rotation_events: bool) -> bool {
    why != Write::Rotation || !was_ready || rotation_events
}

fn ready_report(
    secret_name: &str,
    expires_at: Option<DateTime<Utc>>,
    refreshed_at: Option<DateTime<Utc>>,
    next: DateTime<Utc>,
) -> Report {
    let until = expires_at.map(|e| e.to_rfc3339()).unwrap_or_default();
    Report {
        ready: true,
        reason: "TokenValid".into(),
        message: format!(
            "Secret {secret_name} holds a token valid until {until}; next refresh at {}",
            next.to_rfc3339()
        ),
        secret_name: secret_name.into(),
        expires_at,
        refreshed_at,
        next_refresh: Some(next),
    }
}

async fn report_problem(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    error: &Error,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let current = ctx.status_of(cr);
    if status::ready_reason(current.as_ref()) != Some(error.label()) {
        ctx.publish(cr, EventType::Warning, error.label(), error.to_string())
            .await;
    }
    warn!(name = %cr.name_any(), namespace = ?cr.namespace(), reason = error.label(), %error, "cannot reconcile");
    // Keep what we knew about the token: a conflict or bad spec does not change the Secret.
    let known = |t: Option<&Time>| t.and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0));
    let report = Report {
        ready: false,
        reason: error.label().into(),
        message: error.to_string(),
        secret_name: cr.secret_name(),
        expires_at: known(current.as_ref().and_then(|s| s.expires_at.as_ref())),
        refreshed_at: known(current.as_ref().and_then(|s| s.last_refresh_time.as_ref())),
        next_refresh: None,
    };
    write_status(cr, ctx, &report, now).await
}

async fn write_status(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    report: &Report,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let current = ctx.status_of(cr);
    let desired = status::build(report, cr.meta().generation, current.as_ref(), now);
    if current.as_ref() == Some(&desired) {
        return Ok(());
    }
    let api = Api::<EcrPublicPullSecret>::namespaced(
        ctx.client.clone(),
        &cr.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": EcrPublicPullSecret::api_version(&()),
        "kind": EcrPublicPullSecret::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &cr.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    if let Some(uid) = cr.uid() {
        ctx.statuses.record(uid, desired);
    }
    Ok(())
}

/// Decides what to do and does the Secret side of it.
/// While the spec cannot be acted on, the resource's Secrets keep their tokens until those
/// expire; an expired token is worse than none, so `onExpiry` still applies then. Returns when to
/// look again.
async fn expire_owned(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let (Some(ns), Some(uid)) = (cr.namespace(), cr.uid()) else {
        return Ok(Action::await_change());
    };
    let owned: Vec<String> = ctx
        .secrets
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| secret::is_controlled_by(&s.metadata, &uid))
        .map(|s| s.name_any())
        .collect();
    let mut next: Option<DateTime<Utc>> = None;
    for name in owned {
        let Some(expires) = ctx
            .secret_meta(&ns, &name)
            .await?
            .and_then(|(_, state)| state.expires_at)
        else {
            continue;
        };
        if expires > now {
            next = Some(next.map_or(expires, |n| n.min(expires)));
        } else if cr.spec.settings.on_expiry == OnExpiry::RemoveAuth {
            let spec = SecretSpec {
                name: &name,
                namespace: &ns,
                settings: &cr.spec.settings,
                service_account: cr.spec.service_account_name.as_deref(),
                owner: cr.controller_owner_ref(&()),
                extra_labels: Default::default(),
            };
            ctx.write_secret(&spec, None).await?;
        }
    }
    Ok(next.map_or_else(Action::await_change, |n| {
        Action::requeue(schedule::until(now, n))
    }))
}

async fn decide(
    cr: &EcrPublicPullSecret,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let ns = cr
        .namespace()
        .ok_or_else(|| Error::Internal("EcrPublicPullSecret has no namespace".into()))?;
    let uid = cr
        .uid()
        .ok_or_else(|| Error::Internal("EcrPublicPullSecret has no uid yet".into()))?;
    let settings = &cr.spec.settings;
    let requested = match &settings.refresh_before {
        Some(s) => Some(parse_refresh_before(s)?),
        None => ctx.settings.default_refresh_before,
    };
    let name = cr.secret_name();
    if !is_dns1123_subdomain(&name) {
        return Err(Error::InvalidSpec(format!(
            "secret name {name:?} is not a valid DNS-1123 subdomain"
        )));
    }
    let existing = ctx.secret_meta(&ns, &name).await?;
    if let Some((meta, _)) = &existing
        && !secret::is_controlled_by(&meta.metadata, &uid)
    {
        return Err(Error::SecretConflict {
            namespace: ns,
            name,
        });
    }
    let has_secret = existing.is_some();
    let state = existing.map(|(_, s)| s).unwrap_or(SecretState {
        expires_at: None,
        refreshed_at: None,
        config_hash: None,
    });
    let seed = schedule::jitter_seed(&uid);
    let due_at = |issued, expires| schedule::refresh_at(issued, expires, requested, seed);
    let current_due = match (state.refreshed_at, state.expires_at) {
        (Some(issued), Some(expires)) => Some(due_at(issued, expires)),
        _ => None,
    };
    let service_account = cr.spec.service_account_name.as_deref();
    let hash = secret::config_hash(settings, service_account);
    if let Some(next) = current_due.filter(|d| *d > now)
        && state.config_hash.as_deref() == Some(hash.as_str())
    {
        return Ok(Outcome::Fresh { state, next });
    }

    let spec = SecretSpec {
        name: &name,
        namespace: &ns,
        settings,
        service_account,
        owner: cr.controller_owner_ref(&()),
        extra_labels: Default::default(),
    };
    // Resolved only when a token is needed: a fresh Secret costs no ServiceAccount read.
    let request = identity::Request {
        role_arn: settings.role_arn.as_deref(),
        service_account,
    };
    let fetched =
        match identity::resolve(&ctx.client, &ns, request, &ctx.settings.allowed_roles).await {
            Ok(identity) => {
                ctx.tokens
                    .get(&identity, |t| due_at(t.issued_at, t.expires_at) > now)
                    .await
            }
            Err(e) if e.is_kube() => return Err(e),
            Err(e) => Err(e),
        };
    match fetched {
        Ok(fetched) => {
            let token = fetched.token;
            let next = due_at(token.issued_at, token.expires_at);
            let same = SecretState::of(&token, &hash);
            if state == same {
                // The Secret already holds exactly this token and content: writing it again would
                // be a wasted (if idempotent) write.
                return Ok(Outcome::Fresh { state, next });
            }
            ctx.write_secret(&spec, Some(&token)).await?;
            Ok(Outcome::Written {
                token,
                next,
                why: Write::of(&state, &hash, spec_edited(cr, ctx)),
            })
        }
        Err(error) => {
            let expired = state.expires_at.is_some_and(|e| e <= now);
            let removed = expired && settings.on_expiry == OnExpiry::RemoveAuth;
            if removed {
                ctx.write_secret(&spec, None).await?;
            }
            let kept = if removed {
                SecretState {
                    expires_at: None,
                    refreshed_at: None,
                    config_hash: Some(hash),
                }
            } else {
                state
            };
            Ok(Outcome::Failed {
                error,
                next: current_due.filter(|_| !removed),
                kept,
                removed,
                has_secret,
            })
        }
    }
}

/// `spec.refreshBefore`, with the CRD's CEL rule re-checked: an API server that skipped it (an old
/// CRD, or a client that bypassed validation) must not make the operator misbehave.
pub(crate) fn parse_refresh_before(s: &str) -> Result<Duration, Error> {
    let d =
        duration::parse(s).map_err(|e| Error::InvalidSpec(format!("spec.refreshBefore: {e}")))?;
    if d.is_zero() || d >= Duration::from_secs(12 * 3600) {
        return Err(Error::InvalidSpec(format!(
            "spec.refreshBefore {s:?} must be greater than 0s and shorter than the 12h token lifetime"
        )));
    }
    Ok(d)
}

/// DNS-1123 subdomain, as the API server checks Secret names.
fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_named_for_what_made_it_necessary() {
        let t = |s: i64| DateTime::from_timestamp(s, 0);
        let held = |hash: &str| SecretState {
            expires_at: t(43_200),
            refreshed_at: t(0),
            config_hash: Some(hash.into()),
        };
        let empty = SecretState {
            expires_at: None,
            refreshed_at: None,
            config_hash: Some("h".into()),
        };
        assert_eq!(Write::of(&empty, "h", false), Write::First);
        assert_eq!(Write::of(&held("h"), "h", false), Write::Rotation);
        assert_eq!(
            Write::of(&held("h"), "h", true),
            Write::Rotation,
            "edit, same content"
        );
        assert_eq!(Write::of(&held("old"), "h", true), Write::Reconfigured);
        assert_eq!(
            Write::of(&held("old"), "h", false),
            Write::Rotation,
            "content differs without an edit"
        );
    }

    #[test]
    fn routine_rotations_are_quiet_unless_asked_for() {
        assert!(worth_an_event(Write::First, false, false), "first write");
        assert!(
            worth_an_event(Write::Reconfigured, true, false),
            "spec edit"
        );
        assert!(worth_an_event(Write::Rotation, false, false), "recovery");
        assert!(
            !worth_an_event(Write::Rotation, true, false),
            "routine rotation"
        );
        assert!(
            worth_an_event(Write::Rotation, true, true),
            "--rotation-events"
        );
    }

    #[test]
    fn refresh_before_outside_the_token_lifetime_is_reported() {
        assert_eq!(
            parse_refresh_before("6h").unwrap(),
            Duration::from_secs(6 * 3600)
        );
        for bad in ["12h", "13h", "0s", "soon"] {
            assert_eq!(
                parse_refresh_before(bad).unwrap_err().label(),
                "InvalidSpec",
                "{bad}"
            );
        }
    }

    #[test]
    fn secret_names_follow_dns1123() {
        for ok in ["a", "pull-secret", "a.b-c.d", "0abc"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }
}
