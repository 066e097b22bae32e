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

use std::{collections::BTreeSet, future::Future, sync::Arc, time::Duration};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};
use tracing::{info, instrument, warn};

use super::{
    Backoff, Inputs, Shared, alongside,
    builder::drive,
    housekeeping,
    image_pull_secrets::{self, ADDED_ANNOTATION},
    scoped,
    spec::selects,
};
use crate::{
    Error,
    crd::{ClusterEcrPublicPullSecret, EcrPublicPullSecret, MANAGER, PullSecretSettings},
    k8s::{memo::Memo, synced::Synced, watch::Watch},
};

/// ServiceAccounts holding an entry of ours are planned again this often (plus up to a tenth),
/// without any API call unless something is off: a resource deleted while its watch was
/// relisting produces no event of its own.
const RESYNC: Duration = Duration::from_secs(3600);

struct Context {
    client: kube::Client,
    crs: Store<EcrPublicPullSecret>,
    /// The cluster kind's resources and the Namespaces they select, when it runs.
    cluster: Option<(
        Store<ClusterEcrPublicPullSecret>,
        Store<PartialObjectMeta<Namespace>>,
    )>,
    synced: Synced,
    /// Our own last patch result per ServiceAccount until the watch shows it: a reconcile
    /// triggered by something else in between must not plan (and fail) from the older copy.
    written: Memo<ObjectRef<ServiceAccount>, ServiceAccount>,
    /// Retries after a failed patch, as `--retry-backoff-base/-max` say (a 422 means the list
    /// changed since it was read; the watch event for that change usually retriggers sooner).
    backoff: Backoff<ObjectRef<ServiceAccount>>,
}

/// Subscribes to the watches this reconciler reads; it runs until `shutdown`. ServiceAccounts
/// and resources are watched in `--watch-namespace` only; `ClusterEcrPublicPullSecret`s and
/// Namespaces only with the cluster kind.
pub fn start<S: Future<Output = ()> + Send + Sync + 'static>(
    inputs: &Inputs,
    shared: &mut Shared,
    shutdown: S,
) -> impl Future<Output = ()> + use<S> {
    let namespace = inputs.settings.watch_namespace.as_deref();
    let synced = Synced::default();
    let mut sas = Watch::new(
        scoped(&inputs.client, namespace),
        inputs.settings.watch_config(),
    );
    let cr_events = shared.crs.subscribe().touched(&synced);
    let by_cr = sas.store();
    let mut controller =
        Controller::for_shared_stream(sas.subscribe().applied(&synced), sas.store())
            .watches_shared_stream(cr_events, move |cr| {
                let ns = cr.namespace();
                concerned(&by_cr, &cr.spec.settings, ns.as_deref())
            });
    let mut cluster = None;
    if let (Some(crs), Some(namespaces)) = (&mut shared.cluster, &mut shared.namespaces) {
        let (by_cluster, by_ns) = (sas.store(), sas.store());
        cluster = Some((crs.store(), namespaces.store()));
        controller = controller
            .watches_shared_stream(crs.subscribe().touched(&synced), move |c| {
                concerned(&by_cluster, &c.spec.settings, None)
            })
            // A relabelled namespace may join or leave a cluster resource's selection.
            .watches_shared_stream(namespaces.subscribe().touched(&synced), move |n| {
                let ns = n.name_any();
                let here = by_ns.state().into_iter();
                let here = here.filter(|sa| sa.namespace().as_deref() == Some(ns.as_str()));
                here.map(|sa| ObjectRef::from_obj(&*sa)).collect::<Vec<_>>()
            });
    }
    let ctx = Arc::new(Context {
        client: inputs.client.clone(),
        crs: shared.crs.store(),
        cluster,
        synced,
        written: Memo::default(),
        backoff: inputs.settings.backoff(),
    });
    let (tidied, accounts) = (ctx.clone(), sas.store());
    let tidy = housekeeping(move || {
        tidied.backoff.retain(|key| accounts.get(key).is_some());
        tidied.written.prune();
    });
    let controller = drive(
        controller,
        inputs.settings.controller_config(),
        inputs.health.clone(),
        shutdown,
        reconcile,
        error_policy,
        ctx,
    );
    async move {
        info!("service account controller starting");
        alongside(controller, vec![sas.run().boxed(), tidy]).await;
        info!("service account controller stopped");
    }
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

#[instrument(skip_all, fields(name = %sa.name_any(), namespace = %sa.namespace().unwrap_or_default()))]
fn error_policy(sa: Arc<ServiceAccount>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(reason = error.label(), %error, "could not update imagePullSecrets");
    Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(&*sa)))
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
        self.backoff.reset(key);
        self.written.forget(key);
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
        let Some((clusters, namespaces)) = &self.cluster else {
            return wanted;
        };
        let namespace = namespaces
            .get(&ObjectRef::new(&ns))
            .filter(|n| n.metadata.deletion_timestamp.is_none());
        if let Some(namespace) = namespace {
            wanted.extend(
                clusters
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

#[instrument(skip_all, fields(name = %sa.name_any(), namespace = %sa.namespace().unwrap_or_default()))]
async fn reconcile(sa: Arc<ServiceAccount>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.synced.wait().await;
    let key = ObjectRef::from_obj(&*sa);
    if sa.meta().deletion_timestamp.is_some() {
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    // Until the watch shows our write (or anything after it), plan from our copy.
    let current = ctx.written.unseen(&key, |ours| !newer(ours, &sa));
    let current = current.unwrap_or_else(|| (*sa).clone());
    let desired = ctx.desired(&current);
    let Some(ops) = image_pull_secrets::plan(&current, &desired) else {
        ctx.backoff.reset(&key);
        return Ok(resync(&current));
    };
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| Error::Internal(format!("building the imagePullSecrets patch: {e}")))?;
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    let ns = sa.namespace().unwrap_or_default();
    match Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns)
        .patch(&sa.name_any(), &params, &Patch::Json::<()>(patch))
        .await
    {
        Ok(patched) => {
            info!(secrets = ?desired, "updated imagePullSecrets");
            ctx.backoff.reset(&key);
            let next = resync(&patched);
            ctx.written.record(key, patched);
            Ok(next)
        }
        // Gone: nothing to remember about it.
        Err(kube::Error::Api(s)) if s.code == 404 => {
            ctx.forget(&key);
            Ok(Action::await_change())
        }
        Err(e) => {
            // Plan again from the cache next time (a 422 means our copy was outdated).
            ctx.written.forget(&key);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Settings;

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

    #[test]
    fn retries_follow_the_retry_backoff_flags() {
        // What `start` gives the reconciler: the flags' delays, not fixed ones.
        let settings = Settings {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            ..Settings::default()
        };
        let backoff: Backoff<ObjectRef<ServiceAccount>> = settings.backoff();
        let key = ObjectRef::new("sa").within("ns");
        assert_eq!(backoff.next(&key), Duration::from_millis(100));
        for _ in 0..10 {
            assert!(backoff.next(&key) <= Duration::from_millis(400));
        }
    }
}
