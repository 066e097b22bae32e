//! The ServiceAccount reconciler: keeps each ServiceAccount's `imagePullSecrets` naming exactly the
//! Secrets that resources ask for in `spec.serviceAccounts`, among the entries this operator added.
//!
//! It is level-triggered per ServiceAccount rather than per resource: a ServiceAccount's wanted
//! entries are computed from every resource that names it, so a resource deleted (or edited, or a
//! namespace relabelled) while the operator was down is undone on the next start without a
//! finalizer, and a ServiceAccount created later is patched as soon as the watch shows it.
//! Planning is pure and costs no request when nothing is off, so every ServiceAccount holding an
//! entry of ours is also planned again about hourly.
//! Runs only with `--patch-service-accounts`.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::{info, warn};

use crate::{
    Error,
    crd::{ClusterEcrPublicPullSecret, EcrPublicPullSecret, MANAGER, PullSecretSettings},
    k8s::synced::Synced,
    reconcilers::{
        cluster::selects,
        image_pull_secrets::{self, ADDED_ANNOTATION},
    },
    schedule,
};

/// First retry after a failed patch, doubling up to [`RETRY_MAX`] (a 422 means the list changed
/// since it was read; the watch event for that change usually retriggers sooner).
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// ServiceAccounts holding an entry of ours are planned again this often (plus up to a tenth),
/// without any API call unless something is off: a resource deleted while its watch was
/// relisting produces no event of its own.
const RESYNC: Duration = Duration::from_secs(3600);

struct Context {
    client: Client,
    crs: Store<EcrPublicPullSecret>,
    clusters: Store<ClusterEcrPublicPullSecret>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    synced: Synced,
    /// Our own last patch result per ServiceAccount until the watch shows it: a reconcile
    /// triggered by something else in between must not plan (and fail) from the older copy.
    written: Mutex<HashMap<ObjectRef<ServiceAccount>, ServiceAccount>>,
    /// Failed attempts per ServiceAccount, for exponential backoff; cleared on success.
    attempts: Mutex<HashMap<ObjectRef<ServiceAccount>, u32>>,
}

/// Runs until `shutdown` resolves. `watch_namespace` scopes the ServiceAccount and resource
/// watches; `cluster` adds `ClusterEcrPublicPullSecret`s (cluster-wide only).
pub async fn run(
    client: Client,
    watch_namespace: Option<String>,
    cluster: bool,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (sas, crs) = match &watch_namespace {
        Some(ns) => (
            Api::<ServiceAccount>::namespaced(client.clone(), ns),
            Api::<EcrPublicPullSecret>::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let synced = Synced::new(if cluster { 3 } else { 1 });
    let (crs_store, writer) = reflector::store();
    let cr_events = reflector(
        writer,
        watcher(crs, watcher::Config::default())
            .default_backoff()
            .modify(|cr| cr.managed_fields_mut().clear()),
    )
    .inspect(synced.observer())
    .touched_objects();
    let (clusters, cluster_writer) = reflector::store();
    let (namespaces, ns_writer) = reflector::store();
    let controller = Controller::new(sas, watcher::Config::default());
    let by_cr = controller.store();
    let mut controller = controller.watches_stream(cr_events, move |cr| {
        let ns = cr.namespace();
        concerned(&by_cr, &cr.spec.settings, ns.as_deref())
    });
    if cluster {
        let cluster_events = reflector(
            cluster_writer,
            watcher(
                Api::<ClusterEcrPublicPullSecret>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .modify(|c| c.managed_fields_mut().clear()),
        )
        .inspect(synced.observer())
        .touched_objects();
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
        let by_cluster = controller.store();
        let by_ns = controller.store();
        controller = controller
            .watches_stream(cluster_events, move |c| {
                concerned(&by_cluster, &c.spec.settings, None)
            })
            // A relabelled namespace may join or leave a cluster resource's selection.
            .watches_stream(ns_events, move |n| {
                let ns = n.name_any();
                by_ns
                    .state()
                    .iter()
                    .filter(|sa| sa.namespace().as_deref() == Some(ns.as_str()))
                    .map(|sa| ObjectRef::from_obj(&**sa))
                    .collect::<Vec<_>>()
            });
    }
    let ctx = Arc::new(Context {
        client,
        crs: crs_store,
        clusters,
        namespaces,
        synced,
        written: Mutex::default(),
        attempts: Mutex::default(),
    });
    info!("service account controller starting");
    controller
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "service account reconcile failed");
            }
        })
        .await;
    info!("service account controller stopped");
}

/// The ServiceAccounts a resource's change may concern: those it names, and every one carrying
/// an entry this operator added. The latter is wider than the entries of this resource on
/// purpose: an edit that changes both `secretName` and the list leaves an entry under the old
/// name, and a resource deleted during a relist leaves no event, yet its entries must go.
fn concerned(
    sas: &Store<ServiceAccount>,
    settings: &PullSecretSettings,
    namespace: Option<&str>,
) -> Vec<ObjectRef<ServiceAccount>> {
    sas.state()
        .iter()
        .filter(|sa| namespace.is_none() || sa.namespace().as_deref() == namespace)
        .filter(|sa| {
            settings.patches_service_account(&sa.name_any())
                || sa.annotations().contains_key(ADDED_ANNOTATION)
        })
        .map(|sa| ObjectRef::from_obj(&**sa))
        .collect()
}

fn error_policy(sa: Arc<ServiceAccount>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %sa.name_any(), namespace = ?sa.namespace(), reason = error.label(), %error, "could not update imagePullSecrets");
    let mut attempts = lock(&ctx.attempts);
    let n = attempts.entry(ObjectRef::from_obj(&*sa)).or_insert(0);
    let wait = schedule::backoff(*n, RETRY_BASE, RETRY_MAX, fastrand::f64());
    *n = n.saturating_add(1);
    Action::requeue(wait)
}

/// Poisoning only follows a panic elsewhere; the map stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `ours` (a patch result) is newer than `cached`. Resource versions are opaque to
/// clients in general, but etcd's (and the emulator's) are increasing integers; anything else
/// reads as "not newer", which only costs a plan from the cache.
fn newer(ours: &ServiceAccount, cached: &ServiceAccount) -> bool {
    let rv = |sa: &ServiceAccount| {
        sa.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    matches!((rv(ours), rv(cached)), (Some(a), Some(b)) if a > b)
}

/// ServiceAccounts holding an entry of ours are planned again about hourly (spread, so they do
/// not all come due together); the others only when something changes.
fn resync(sa: &ServiceAccount) -> Action {
    if image_pull_secrets::added(sa).is_empty() {
        Action::await_change()
    } else {
        Action::requeue(RESYNC + Duration::from_secs(fastrand::u64(0..RESYNC.as_secs() / 10)))
    }
}

impl Context {
    /// Drops what is remembered about a ServiceAccount that is gone.
    fn forget(&self, key: &ObjectRef<ServiceAccount>) {
        lock(&self.attempts).remove(key);
        lock(&self.written).remove(key);
    }

    /// The Secret names resources want in this ServiceAccount's `imagePullSecrets`.
    fn desired(&self, sa: &ServiceAccount) -> BTreeSet<String> {
        let ours = image_pull_secrets::added(sa);
        let name = sa.name_any();
        let ns = sa.namespace().unwrap_or_default();
        let mut wanted: BTreeSet<String> = self
            .crs
            .state()
            .iter()
            .filter(|cr| cr.meta().deletion_timestamp.is_none())
            .filter(|cr| cr.namespace().as_deref() == Some(ns.as_str()))
            .filter(|cr| cr.spec.settings.patches_service_account(&name))
            .map(|cr| cr.secret_name())
            .collect();
        let namespace = self
            .namespaces
            .get(&ObjectRef::new(&ns))
            .filter(|n| n.metadata.deletion_timestamp.is_none());
        if let Some(namespace) = namespace {
            wanted.extend(
                self.clusters
                    .state()
                    .iter()
                    .filter(|c| c.meta().deletion_timestamp.is_none())
                    .filter(|c| c.spec.settings.patches_service_account(&name))
                    // A resource with an invalid selector reports that itself and keeps its
                    // Secrets as they are; its entries stay where they are too.
                    .filter(|c| {
                        selects(&c.spec, &ns, namespace.labels())
                            .unwrap_or_else(|_| ours.contains(&c.secret_name()))
                    })
                    .map(|c| c.secret_name()),
            );
        }
        wanted
    }
}

async fn reconcile(sa: Arc<ServiceAccount>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.synced.wait().await;
    let key = ObjectRef::from_obj(&*sa);
    if sa.meta().deletion_timestamp.is_some() {
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let current = {
        let mut written = lock(&ctx.written);
        match written.get(&key) {
            // Until the watch shows our write (or anything after it), plan from our copy.
            Some(ours) if newer(ours, &sa) => ours.clone(),
            _ => {
                written.remove(&key);
                (*sa).clone()
            }
        }
    };
    let desired = ctx.desired(&current);
    let Some(ops) = image_pull_secrets::plan(&current, &desired) else {
        lock(&ctx.attempts).remove(&key);
        return Ok(resync(&current));
    };
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| Error::Internal(format!("building the imagePullSecrets patch: {e}")))?;
    let (name, ns) = (sa.name_any(), sa.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    match Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &params, &Patch::Json::<()>(patch))
        .await
    {
        Ok(patched) => {
            info!(name, namespace = ns, secrets = ?desired, "updated imagePullSecrets");
            lock(&ctx.attempts).remove(&key);
            let next = resync(&patched);
            lock(&ctx.written).insert(key, patched);
            Ok(next)
        }
        Err(e) => {
            // Plan again from the cache next time (a 422 means our copy was outdated).
            lock(&ctx.written).remove(&key);
            match e {
                kube::Error::Api(s) if s.code == 404 => {
                    ctx.forget(&key);
                    Ok(Action::await_change())
                }
                e => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rv: Option<&str>) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.resource_version = rv.map(str::to_owned);
        sa
    }

    #[test]
    fn our_copy_is_used_only_while_the_cache_is_older() {
        assert!(
            newer(&at(Some("12")), &at(Some("9"))),
            "numeric, not textual"
        );
        assert!(
            !newer(&at(Some("12")), &at(Some("12"))),
            "the watch caught up"
        );
        assert!(
            !newer(&at(Some("12")), &at(Some("15"))),
            "someone wrote after us"
        );
        assert!(
            !newer(&at(Some("x")), &at(Some("1"))),
            "opaque: use the cache"
        );
        assert!(!newer(&at(None), &at(Some("1"))));
    }
}
