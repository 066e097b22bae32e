//! What the operator does: the controllers, and what they share.
//!
//! A Secret's path, for either kind: a watch event triggers a reconcile, which the one
//! [`builder`] wraps the same way for both (finalizer, metrics, error policy, Events); the one
//! [`sync`] checks the spec ([`spec`], pure), observes each target Secret through [`secret_io`]
//! (cache, our own newer write, or the API), [`plan`]s it (pure: fresh, due, or someone
//! else's), fetches one token from the per-identity cache when any is due, writes the due
//! Secrets, and [`report`]s (pure) what the status writer applies. What differs between the
//! kinds is in [`kinds`]. The ServiceAccount reconciler ([`service_accounts`], pure planning in
//! [`image_pull_secrets`]) runs beside them through the same builder; all retry with one
//! [`Backoff`].

pub mod backoff;
pub mod builder;
pub mod image_pull_secrets;
pub mod kinds;
pub mod plan;
pub mod report;
pub mod secret_io;
pub mod service_accounts;
pub mod spec;
pub mod sync;

use std::{future::Future, hash::Hash, sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{reflector::ObjectRef, watcher},
};
use tracing::{debug, warn};

pub use backoff::Backoff;

use crate::{
    admin::{
        http::Health,
        metrics::{Metrics, Owned},
    },
    aws::{
        cache::{Liveness, TokenCache, User},
        permissions::RolePermissions,
    },
    crd::{ClusterEcrPublicPullSecret, EcrPublicPullSecret, PullSecretSettings},
    k8s::{cached_secret::CachedSecret, watch::Watch},
    pull_secret,
};

/// Settings of the controllers themselves (not of AWS or the process).
#[derive(Debug, Clone)]
pub struct Settings {
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
    pub role_permissions: RolePermissions,
    /// Distinct identities the resources of one namespace may use at a time.
    pub max_identities_per_namespace: usize,
    /// Whether `spec.serviceAccounts` is served (`--patch-service-accounts`).
    pub patch_service_accounts: bool,
    /// Whether a routine rotation publishes a Normal `Rotated` Event (`--rotation-events`).
    pub rotation_events: bool,
    /// How long one watch request lasts (`--watch-timeout`).
    pub watch_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            watch_namespace: None,
            default_refresh_before: None,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 16,
            instance: None,
            role_permissions: RolePermissions::default(),
            max_identities_per_namespace: 10,
            patch_service_accounts: false,
            rotation_events: false,
            watch_timeout: Duration::from_secs(60),
        }
    }
}

impl Settings {
    /// Every controller's configuration: at most `--concurrency` reconciles at once.
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.concurrency)
    }

    /// Every watch's configuration: its requests last `--watch-timeout`.
    pub fn watch_config(&self) -> watcher::Config {
        let seconds = u32::try_from(self.watch_timeout.as_secs()).unwrap_or(u32::MAX);
        watcher::Config::default().timeout(seconds.max(1))
    }

    /// The retry delays of `--retry-backoff-base` and `--retry-backoff-max`, per object.
    pub fn backoff<K: Eq + Hash + Clone>(&self) -> Backoff<K> {
        Backoff::new(self.backoff_base, self.backoff_max)
    }

    /// Appended to the status message when a resource asks for something this operator does
    /// not do.
    pub fn ignored_service_accounts(&self, spec: &PullSecretSettings) -> Option<&'static str> {
        (!spec.service_accounts.is_empty() && !self.patch_service_accounts).then_some(
            "; spec.serviceAccounts is ignored: the operator runs without --patch-service-accounts \
             (chart value serviceAccountPatching.enabled)",
        )
    }
}

/// The controllers that run beside the namespaced kind's.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// `ClusterEcrPublicPullSecret` (cluster-wide only).
    pub cluster: bool,
    /// `spec.serviceAccounts` patching.
    pub service_accounts: bool,
}

/// What every reconciler is started with.
pub struct Inputs {
    pub client: Client,
    pub tokens: Arc<TokenCache>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub health: Health,
}

/// The watches that more than one reconciler reads, each listed and watched once (see
/// [`crate::k8s::watch`] for why one slow reader cannot hold back the others).
pub struct Shared {
    /// `EcrPublicPullSecret`s: the namespaced kind, and the ServiceAccount reconciler.
    pub crs: Watch<EcrPublicPullSecret>,
    /// The Secrets the operator manages (by its label; what the cache keeps of each): both
    /// kinds, and the metrics.
    pub secrets: Watch<CachedSecret>,
    /// `ClusterEcrPublicPullSecret`s: only with the cluster kind.
    pub cluster: Option<Watch<ClusterEcrPublicPullSecret>>,
    /// Namespaces (metadata): with the cluster kind (its selection), and with role rules that
    /// select namespaces by label.
    pub namespaces: Option<Watch<PartialObjectMeta<Namespace>>>,
}

impl Shared {
    fn new(client: &Client, settings: &Settings, cluster: bool, labels: bool) -> Self {
        let watch_namespace = settings.watch_namespace.as_deref();
        let all = || settings.watch_config();
        let managed = all().labels(&pull_secret::managed_selector());
        let secrets = scoped::<PartialObjectMeta<Secret>>(client, watch_namespace);
        Self {
            crs: Watch::unversioned(scoped(client, watch_namespace), all()),
            secrets: Watch::projected(secrets, managed, CachedSecret::from),
            cluster: cluster.then(|| Watch::unversioned(Api::all(client.clone()), all())),
            namespaces: (cluster || labels).then(|| Watch::new(Api::all(client.clone()), all())),
        }
    }

    fn run(self) -> Vec<BoxFuture<'static, ()>> {
        let mut all = vec![self.crs.run().boxed(), self.secrets.run().boxed()];
        all.extend(self.cluster.map(|w| w.run().boxed()));
        all.extend(self.namespaces.map(|w| w.run().boxed()));
        all
    }
}

/// The API of a namespaced kind, in `namespace` or in all of them.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the namespaced kind's controller and the enabled optional ones until `shutdown`.
pub async fn run(
    inputs: Inputs,
    features: Features,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let settings = &inputs.settings;
    let mut shared = Shared::new(
        &inputs.client,
        settings,
        features.cluster,
        settings.role_permissions.selects_by_label(),
    );
    inputs.tokens.set_liveness(liveness(&shared));
    inputs
        .metrics
        .watch_secrets(shared.secrets.store(), owned(&shared));
    let mut all = Vec::new();
    let mut ready = Vec::new();
    if features.service_accounts {
        let sas = service_accounts::start(&inputs, &mut shared, shutdown.clone());
        all.push(sas.boxed());
    }
    if features.cluster {
        let (cluster, synced) =
            builder::start::<ClusterEcrPublicPullSecret, _>(&inputs, &mut shared, shutdown.clone());
        all.push(cluster.boxed());
        ready.push(synced.ready());
    }
    let grace_over = shutdown
        .clone()
        .then(|()| tokio::time::sleep(SHUTDOWN_GRACE));
    let (namespaced, synced) =
        builder::start::<EcrPublicPullSecret, _>(&inputs, &mut shared, shutdown);
    all.push(namespaced.boxed());
    ready.push(synced.ready());
    // Ready once every kind's caches have listed.
    let ready = futures::future::join_all(ready).map(|r| r.into_iter().all(|r| r));
    inputs.health.ready_when(ready);
    let tokens = inputs.tokens.clone();
    let sweeps = housekeeping(move || {
        let dropped = tokens.sweep();
        if dropped > 0 {
            debug!(dropped, "dropped identities no resource uses");
        }
    });
    let mut watches = shared.run();
    watches.push(sweeps);
    tokio::select! {
        () = alongside(futures::future::join_all(all), watches) => {}
        () = grace_over => warn!(
            grace = ?SHUTDOWN_GRACE,
            "a controller was still running after shutdown (its cache never synced); stopping it"
        ),
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

/// A resource uses an identity while it is in its watch cache (by name: one re-created under the
/// same name claims its identity again when it next fetches a token).
fn liveness(shared: &Shared) -> Liveness {
    let crs = shared.crs.store();
    let cluster = shared.cluster.as_ref().map(Watch::store);
    Arc::new(move |user: &User| match &user.namespace {
        Some(ns) => crs.get(&ObjectRef::new(&user.name).within(ns)).is_some(),
        None => (cluster.as_ref()).is_some_and(|c| c.get(&ObjectRef::new(&user.name)).is_some()),
    })
}

/// How often what is kept for deleted resources is dropped: their identities' credentials and
/// tokens (a namespace at its identity limit drops its departed ones' at once), retry delays,
/// writes the watch never showed to a reconcile. Each is little, but a tenant creating and
/// deleting resources without end must not grow the operator without end.
const HOUSEKEEPING: Duration = Duration::from_secs(30);

/// Runs `tidy` every [`HOUSEKEEPING`], beside a reconciler (never ends: dropped with it).
pub(crate) fn housekeeping(tidy: impl Fn() + Send + 'static) -> BoxFuture<'static, ()> {
    async move {
        let mut every = tokio::time::interval(HOUSEKEEPING);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            tidy();
        }
    }
    .boxed()
}

/// How long the reconcilers may take after shutdown to finish the reconciles in flight. A
/// kube-runtime controller waits for its cache to sync before it runs anything, also when asked
/// to shut down, so one whose list is refused (a Role missing a verb) or never answered would
/// hold the process until the kubelet's SIGKILL. Nothing of it is in flight then, and every
/// reconcile can be repeated, so the wait is bounded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs `main` with the watches it reads, until `main` ends; the watches never end on their own.
pub(crate) async fn alongside(
    main: impl Future<Output = impl Sized>,
    watches: Vec<BoxFuture<'static, ()>>,
) {
    tokio::select! {
        _ = main => {},
        _ = futures::future::join_all(watches) => {},
    }
}
