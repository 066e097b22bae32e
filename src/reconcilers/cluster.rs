//! The reconciler for `ClusterEcrPublicPullSecret`: one Secret per selected namespace, all from
//! one cached token per identity per rotation.
//!
//! One reconcile covers every namespace of one resource. It is triggered by the resource, by any
//! Namespace change (a namespace created or relabelled into the selection gets its Secret within
//! the debounce period) and by changes to the Secrets it wrote. Secrets are found through the
//! `ecrpublic.pullsecrets.dev/cluster-owner` label (the resource's UID), never by name alone, so a
//! Secret another resource wrote is never touched; a finalizer removes them all on deletion.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, Preconditions},
    core::{Selector, SelectorExt},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{EventType, Recorder},
        finalizer::{self, Event as Finalizer},
        reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tracing::{info, warn};

use crate::{
    Error,
    aws::{cache::TokenCache, identity::Identity, token::Token},
    crd::{
        ClusterEcrPublicPullSecret, ClusterEcrPublicPullSecretSpec,
        ClusterEcrPublicPullSecretStatus, MANAGER, NamespaceFailure, OnExpiry, PullSecretSettings,
    },
    k8s::{events, status, synced::Synced},
    reconcilers::namespaced::{self, ControllerSettings},
    schedule,
    secret::{self, SecretSpec, SecretState},
};

/// Label on every Secret a cluster resource writes: the resource's UID.
pub const OWNER_LABEL: &str = "ecrpublic.pullsecrets.dev/cluster-owner";
/// Finalizer that keeps the resource until its Secrets are deleted.
pub const FINALIZER: &str = "ecrpublic.pullsecrets.dev/cleanup";
/// Failures listed on the status; the counts cover the rest.
const MAX_LISTED_FAILURES: usize = 20;
/// Secret writes in flight per reconcile.
const WRITES_IN_FLIGHT: usize = 16;

/// Checks what the schema cannot: the selector and the refresh margin. Returns the margin.
fn validate(spec: &ClusterEcrPublicPullSecretSpec) -> Result<Option<Duration>, Error> {
    if let Some(sel) = &spec.namespace_selector {
        Selector::try_from(sel.clone())
            .map_err(|e| Error::InvalidSpec(format!("spec.namespaceSelector: {e}")))?;
    }
    spec.settings
        .refresh_before
        .as_deref()
        .map(namespaced::parse_refresh_before)
        .transpose()
}

/// Whether the resource selects a namespace with this name and these labels. Pure.
pub fn selects(
    spec: &ClusterEcrPublicPullSecretSpec,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, Error> {
    if spec.exclude_namespaces.iter().any(|n| n == name) {
        return Ok(false);
    }
    if spec.namespaces.iter().any(|n| n == name) {
        return Ok(true);
    }
    match &spec.namespace_selector {
        None => Ok(spec.namespaces.is_empty()),
        Some(sel) => {
            let selector = Selector::try_from(sel.clone())
                .map_err(|e| Error::InvalidSpec(format!("spec.namespaceSelector: {e}")))?;
            Ok(selector.matches(labels))
        }
    }
}

/// resourceVersion our write produced, and the state it holds.
type Written = (Option<String>, SecretState);

struct Context {
    client: Client,
    tokens: Arc<TokenCache>,
    settings: ControllerSettings,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    secrets: Store<PartialObjectMeta<Secret>>,
    /// Both caches above have listed once.
    synced: Synced,
    /// Our own last write per Secret, until the watch shows it (as in the namespaced controller).
    written: Mutex<HashMap<ObjectRef<Secret>, Written>>,
    attempts: Mutex<HashMap<String, u32>>,
    recorder: Recorder,
    statuses: status::LastWritten<ClusterEcrPublicPullSecretStatus>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the cluster controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    tokens: Arc<TokenCache>,
    settings: ControllerSettings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let synced = Synced::new(2);
    let (namespaces, ns_writer) = reflector::store();
    let ns_events = reflector(
        ns_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|n| n.managed_fields_mut().clear()),
    )
    .inspect(synced.observer())
    .touched_objects();
    let (secrets, secret_writer) = reflector::store();
    let secret_events = reflector(
        secret_writer,
        watcher(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default().labels(OWNER_LABEL),
        )
        .default_backoff()
        .modify(|s| s.managed_fields_mut().clear()),
    )
    .inspect(synced.observer())
    .touched_objects();
    let crs = Api::<ClusterEcrPublicPullSecret>::all(client.clone());
    let controller = Controller::new(crs, watcher::Config::default());
    let all = controller.store();
    let by_uid = controller.store();
    let concurrency = settings.concurrency;
    let ctx = Arc::new(Context {
        recorder: events::recorder(client.clone(), settings.instance.clone()),
        client,
        tokens,
        settings,
        namespaces,
        secrets,
        synced,
        written: Mutex::default(),
        attempts: Mutex::default(),
        statuses: Default::default(),
    });
    info!("cluster controller starting");
    controller
        // Any namespace change may change any resource's selection.
        .watches_stream(ns_events, move |_| {
            all.state()
                .iter()
                .map(|cr| ObjectRef::from_obj(&**cr))
                .collect::<Vec<_>>()
        })
        .watches_stream(secret_events, move |s| {
            let uid = s.labels().get(OWNER_LABEL).cloned();
            by_uid
                .state()
                .iter()
                .filter(|cr| cr.uid() == uid)
                .map(|cr| ObjectRef::from_obj(&**cr))
                .collect::<Vec<_>>()
        })
        .with_config(
            controller::Config::default()
                .concurrency(concurrency)
                // A burst of namespace or Secret events becomes one pass over all namespaces.
                .debounce(Duration::from_millis(200)),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "cluster reconcile failed");
            }
        })
        .await;
    info!("cluster controller stopped");
}

fn error_policy(
    cr: Arc<ClusterEcrPublicPullSecret>,
    error: &finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    warn!(name = %cr.name_any(), %error, "cluster reconcile error");
    Action::requeue(ctx.backoff(&cr.name_any()))
}

impl Context {
    /// The resource's current status: our own last write until the watch has caught up with it.
    fn status_of(
        &self,
        cr: &ClusterEcrPublicPullSecret,
    ) -> Option<ClusterEcrPublicPullSecretStatus> {
        self.statuses
            .current(cr.meta().uid.as_deref(), cr.status.as_ref())
    }

    fn backoff(&self, name: &str) -> Duration {
        let mut attempts = lock(&self.attempts);
        let n = attempts.entry(name.to_owned()).or_insert(0);
        let d = schedule::backoff(
            *n,
            self.settings.backoff_base,
            self.settings.backoff_max,
            fastrand::f64(),
        );
        *n = n.saturating_add(1);
        d
    }

    /// The Secrets this resource wrote, by namespace.
    fn owned(&self, uid: &str) -> Vec<Arc<PartialObjectMeta<Secret>>> {
        self.secrets
            .state()
            .into_iter()
            .filter(|s| s.labels().get(OWNER_LABEL).map(String::as_str) == Some(uid))
            .collect()
    }

    /// The token state of a Secret: the cache, or our own newer write.
    fn state_of(&self, meta: &PartialObjectMeta<Secret>) -> SecretState {
        let key = ObjectRef::<Secret>::new(&meta.name_any())
            .within(&meta.namespace().unwrap_or_default());
        let observed = SecretState::from_meta(&meta.metadata);
        let mut written = lock(&self.written);
        match written.get(&key) {
            Some((rv, state)) if *rv == meta.metadata.resource_version || *state == observed => {
                written.remove(&key);
                observed
            }
            Some((_, state)) => state.clone(),
            None => observed,
        }
    }

    async fn write(&self, spec: &SecretSpec<'_>, token: Option<&Token>) -> Result<(), Error> {
        let desired = secret::build(spec, token);
        let written = Api::<Secret>::namespaced(self.client.clone(), spec.namespace)
            .patch(
                spec.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
        lock(&self.written).insert(
            ObjectRef::new(spec.name).within(spec.namespace),
            (
                written.metadata.resource_version,
                SecretState::from_meta(&desired.metadata),
            ),
        );
        Ok(())
    }

    /// Deletes exactly the Secret that was read (by uid): one recreated since, by anyone, stays.
    async fn delete(&self, meta: &PartialObjectMeta<Secret>) -> Result<(), Error> {
        let ns = meta.namespace().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match Api::<Secret>::namespaced(self.client.clone(), &ns)
            .delete(&meta.name_any(), &params)
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced (409): the next reconcile looks at the new one.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

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
        .list_metadata(&ListParams::default().labels(&format!("{OWNER_LABEL}={uid}")))
        .await?;
    for meta in &owned.items {
        ctx.delete(meta).await?;
    }
    info!(name = %cr.name_any(), "deleted the Secrets of a deleted ClusterEcrPublicPullSecret");
    Ok(Action::await_change())
}

/// The Secret this resource writes as `name` in `namespace`.
fn owned_spec<'a>(
    name: &'a str,
    namespace: &'a str,
    settings: &'a PullSecretSettings,
    uid: &str,
) -> SecretSpec<'a> {
    SecretSpec {
        name,
        namespace,
        settings,
        service_account: None,
        owner: None,
        extra_labels: BTreeMap::from([(OWNER_LABEL.to_owned(), uid.to_owned())]),
    }
}

/// While the spec cannot be acted on, the Secrets stay as they are until their tokens expire; an
/// expired token is worse than none, so `onExpiry` still applies then. Returns when to look again.
async fn expire_owned(
    cr: &ClusterEcrPublicPullSecret,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let uid = cr.uid().unwrap_or_default();
    let settings = &cr.spec.settings;
    let mut next: Option<DateTime<Utc>> = None;
    for meta in ctx.owned(&uid) {
        let Some(expires) = ctx.state_of(&meta).expires_at else {
            continue;
        };
        if expires > now {
            next = Some(next.map_or(expires, |n| n.min(expires)));
        } else if settings.on_expiry == OnExpiry::RemoveAuth {
            let (name, ns) = (meta.name_any(), meta.namespace().unwrap_or_default());
            ctx.write(&owned_spec(&name, &ns, settings, &uid), None)
                .await?;
        }
    }
    Ok(next.map_or_else(Action::await_change, |n| {
        Action::requeue(schedule::until(now, n))
    }))
}

/// What happened in one namespace.
enum Outcome {
    Ready(SecretState),
    Failed(Error),
}

async fn apply(cr: &ClusterEcrPublicPullSecret, ctx: &Context) -> Result<Action, Error> {
    // Until both watches have listed once, an empty cache would read as "no namespace selected"
    // (and delete every Secret) or "Secret absent" (and report our own Secret as a conflict).
    ctx.synced.wait().await;
    let now = Utc::now();
    let uid = cr.uid().unwrap_or_default();
    let name = cr.secret_name();
    let settings = &cr.spec.settings;
    // A spec the schema let through but that cannot work is reported, and its Secrets are kept
    // as they are (they stay valid until they expire) until the resource is fixed.
    let requested = match validate(&cr.spec) {
        Ok(requested) => requested.or(ctx.settings.default_refresh_before),
        Err(error) => {
            let current = ctx.status_of(cr);
            let status = problem_status(cr, current.as_ref(), &error, now);
            write_status(cr, ctx, current.as_ref(), status).await?;
            return expire_owned(cr, ctx, now).await;
        }
    };
    let seed = schedule::jitter_seed(&uid);
    let due_at = |issued, expires| schedule::refresh_at(issued, expires, requested, seed);
    let hash = secret::config_hash(settings, None);

    // Terminating namespaces are skipped: writes there fail, and their Secrets go with them.
    let mut selected = Vec::new();
    for ns in ctx.namespaces.state() {
        if ns.metadata.deletion_timestamp.is_none()
            && selects(&cr.spec, &ns.name_any(), ns.labels())?
        {
            selected.push(ns.name_any());
        }
    }
    selected.sort();
    let owned = ctx.owned(&uid);
    let existing: HashMap<String, Arc<PartialObjectMeta<Secret>>> = ctx
        .secrets
        .state()
        .into_iter()
        .filter(|s| s.name_any() == name)
        .map(|s| (s.namespace().unwrap_or_default(), s))
        .collect();

    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut due = Vec::new();
    for ns in &selected {
        match existing.get(ns) {
            Some(meta) if meta.labels().get(OWNER_LABEL) != Some(&uid) => {
                outcomes.insert(ns.clone(), Outcome::Failed(conflict(ns, &name)));
            }
            Some(meta) => {
                let state = ctx.state_of(meta);
                let fresh = match (state.refreshed_at, state.expires_at) {
                    (Some(i), Some(e)) => due_at(i, e) > now,
                    _ => false,
                };
                if fresh && state.config_hash.as_deref() == Some(hash.as_str()) {
                    outcomes.insert(ns.clone(), Outcome::Ready(state));
                } else {
                    due.push((ns.clone(), Some(state)));
                }
            }
            // Not in the labelled cache: absent, or someone else's Secret of that name.
            None => match Api::<Secret>::namespaced(ctx.client.clone(), ns)
                .get_metadata_opt(&name)
                .await
            {
                Ok(None) => due.push((ns.clone(), None)),
                // Ours, but newer than the cache: compare it with the token like any other.
                Ok(Some(meta)) if meta.labels().get(OWNER_LABEL) == Some(&uid) => {
                    due.push((ns.clone(), Some(ctx.state_of(&meta))));
                }
                Ok(Some(_)) => {
                    outcomes.insert(ns.clone(), Outcome::Failed(conflict(ns, &name)));
                }
                Err(e) => {
                    outcomes.insert(ns.clone(), Outcome::Failed(e.into()));
                }
            },
        }
    }

    if !due.is_empty() {
        let identity = match settings.role_arn.as_deref() {
            None => Ok(Identity::Operator),
            Some(role_arn) => ctx
                .settings
                .allowed_roles
                .check(role_arn)
                .map(|()| Identity::Role {
                    role_arn: role_arn.into(),
                }),
        };
        let fetched = match identity {
            Ok(identity) => {
                ctx.tokens
                    .get(&identity, |t| due_at(t.issued_at, t.expires_at) > now)
                    .await
            }
            Err(e) => Err(e),
        };
        let results: Vec<(String, Outcome)> = stream::iter(due)
            .map(|(ns, state)| {
                let fetched = &fetched;
                let name = &name;
                let uid = &uid;
                let hash = &hash;
                async move {
                    let spec = owned_spec(name, &ns, settings, uid);
                    let outcome = match fetched {
                        Ok(f) => {
                            let same = SecretState::of(&f.token, hash);
                            if state.as_ref() == Some(&same) {
                                Outcome::Ready(same)
                            } else {
                                match ctx.write(&spec, Some(&f.token)).await {
                                    Ok(()) => Outcome::Ready(same),
                                    Err(e) => Outcome::Failed(e),
                                }
                            }
                        }
                        Err(error) => {
                            // An expired token is worse than none.
                            let expired = state
                                .as_ref()
                                .and_then(|s| s.expires_at)
                                .is_some_and(|e| e <= now);
                            if expired && settings.on_expiry == OnExpiry::RemoveAuth {
                                let _ = ctx.write(&spec, None).await;
                            }
                            Outcome::Failed(error.clone())
                        }
                    };
                    (ns, outcome)
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        outcomes.extend(results);
    }

    // Secrets in namespaces that left the selection (or under an old secretName) go.
    for meta in owned {
        let ns = meta.namespace().unwrap_or_default();
        if !outcomes.contains_key(&ns) || meta.name_any() != name {
            ctx.delete(&meta).await?;
        }
    }

    let current = ctx.status_of(cr);
    let (mut status, next) = summarize(cr, current.as_ref(), &outcomes, &due_at, now);
    if let Some(hint) = namespaced::ignored_service_accounts(settings, &ctx.settings) {
        for c in &mut status.conditions {
            c.message.push_str(hint);
        }
    }
    write_status(cr, ctx, current.as_ref(), status).await?;
    let failed = outcomes.values().any(|o| matches!(o, Outcome::Failed(_)));
    let wait = if failed {
        ctx.backoff(&cr.name_any())
    } else {
        lock(&ctx.attempts).remove(&cr.name_any());
        next.map_or(Duration::from_secs(3600), |n| schedule::until(now, n))
    };
    Ok(Action::requeue(wait))
}

fn conflict(namespace: &str, name: &str) -> Error {
    Error::SecretConflict {
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// The status for these outcomes, and the earliest refresh time.
fn summarize(
    cr: &ClusterEcrPublicPullSecret,
    current: Option<&ClusterEcrPublicPullSecretStatus>,
    outcomes: &BTreeMap<String, Outcome>,
    due_at: &dyn Fn(DateTime<Utc>, DateTime<Utc>) -> DateTime<Utc>,
    now: DateTime<Utc>,
) -> (ClusterEcrPublicPullSecretStatus, Option<DateTime<Utc>>) {
    let mut failures = Vec::new();
    let (mut expires, mut next): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    let mut ready = 0;
    for (ns, outcome) in outcomes {
        match outcome {
            Outcome::Ready(state) => {
                ready += 1;
                if let (Some(i), Some(e)) = (state.refreshed_at, state.expires_at) {
                    expires = Some(expires.map_or(e, |x| x.min(e)));
                    let d = due_at(i, e);
                    next = Some(next.map_or(d, |x| x.min(d)));
                }
            }
            Outcome::Failed(e) => failures.push(NamespaceFailure {
                namespace: ns.clone(),
                reason: e.label().into(),
                message: e.to_string(),
            }),
        }
    }
    let failed = failures.len();
    let (reason, message) = match failures.first() {
        None => (
            "TokenValid".to_owned(),
            format!(
                "{ready} of {} selected namespaces hold a valid token",
                outcomes.len()
            ),
        ),
        Some(first) => (
            first.reason.clone(),
            format!(
                "{failed} of {} selected namespaces failed; first: {}: {}",
                outcomes.len(),
                first.namespace,
                first.message
            ),
        ),
    };
    failures.truncate(MAX_LISTED_FAILURES);
    let report = status::Report {
        ready: failed == 0,
        reason,
        message,
        secret_name: cr.secret_name(),
        expires_at: expires,
        refreshed_at: None,
        next_refresh: next,
    };
    let common = common_status(cr, current, &report, now);
    let to_time = |t: Option<Time>| t;
    let status = ClusterEcrPublicPullSecretStatus {
        conditions: common.conditions,
        observed_generation: common.observed_generation,
        selected_namespaces: i32::try_from(outcomes.len()).unwrap_or(i32::MAX),
        ready_namespaces: ready,
        failed_namespaces: i32::try_from(failed).unwrap_or(i32::MAX),
        failures,
        expires_at: to_time(common.expires_at),
        next_refresh_time: to_time(common.next_refresh_time),
    };
    (status, next)
}

/// The fields both kinds report, carrying `lastTransitionTime` over from the current status.
fn common_status(
    cr: &ClusterEcrPublicPullSecret,
    current: Option<&ClusterEcrPublicPullSecretStatus>,
    report: &status::Report,
    now: DateTime<Utc>,
) -> crate::crd::EcrPublicPullSecretStatus {
    let previous = current.map(|s| crate::crd::EcrPublicPullSecretStatus {
        conditions: s.conditions.clone(),
        ..Default::default()
    });
    status::build(report, cr.meta().generation, previous.as_ref(), now)
}

/// Ready=False with the error's reason; the counts stay as last reported, since the Secrets are
/// left as they are.
fn problem_status(
    cr: &ClusterEcrPublicPullSecret,
    current: Option<&ClusterEcrPublicPullSecretStatus>,
    error: &Error,
    now: DateTime<Utc>,
) -> ClusterEcrPublicPullSecretStatus {
    let report = status::Report {
        ready: false,
        reason: error.label().into(),
        message: error.to_string(),
        secret_name: cr.secret_name(),
        expires_at: None,
        refreshed_at: None,
        next_refresh: None,
    };
    let common = common_status(cr, current, &report, now);
    ClusterEcrPublicPullSecretStatus {
        conditions: common.conditions,
        observed_generation: common.observed_generation,
        ..current.cloned().unwrap_or_default()
    }
}

async fn write_status(
    cr: &ClusterEcrPublicPullSecret,
    ctx: &Context,
    current: Option<&ClusterEcrPublicPullSecretStatus>,
    desired: ClusterEcrPublicPullSecretStatus,
) -> Result<(), Error> {
    if current == Some(&desired) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": ClusterEcrPublicPullSecret::api_version(&()),
        "kind": ClusterEcrPublicPullSecret::kind(&()),
        "status": desired,
    });
    Api::<ClusterEcrPublicPullSecret>::all(ctx.client.clone())
        .patch_status(
            &cr.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    if let Some(uid) = cr.uid() {
        ctx.statuses.record(uid, desired.clone());
    }
    // One Event per change of the Ready condition's reason (not per count change): what
    // `kubectl describe` shows next to the status. Cluster-scoped, so it lands in `default`.
    let before = current.and_then(|s| status::ready_condition(&s.conditions));
    if let Some(now) = status::ready_condition(&desired.conditions)
        && before.map(|c| (&c.status, &c.reason)) != Some((&now.status, &now.reason))
    {
        let type_ = if now.status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let note = now.message.clone();
        events::publish(&ctx.recorder, &cr.object_ref(&()), type_, &now.reason, note).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selection_follows_selector_names_and_exclusions() {
        let team = labels(&[("team", "a")]);
        let none = labels(&[]);
        let mut spec = ClusterEcrPublicPullSecretSpec::default();
        assert!(selects(&spec, "x", &none).unwrap(), "no selector: all");
        spec.namespaces = vec!["listed".into()];
        assert!(!selects(&spec, "x", &team).unwrap(), "names only");
        assert!(selects(&spec, "listed", &none).unwrap());
        spec.namespace_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("team", "a")])),
            ..Default::default()
        });
        assert!(selects(&spec, "x", &team).unwrap());
        assert!(!selects(&spec, "y", &none).unwrap());
        assert!(
            selects(&spec, "listed", &none).unwrap(),
            "names add to the selector"
        );
        spec.exclude_namespaces = vec!["x".into(), "listed".into()];
        assert!(!selects(&spec, "x", &team).unwrap(), "exclusion wins");
        assert!(!selects(&spec, "listed", &none).unwrap());
        spec.namespace_selector = Some(LabelSelector::default());
        assert!(selects(&spec, "z", &none).unwrap(), "{{}} selects all");
    }
}
