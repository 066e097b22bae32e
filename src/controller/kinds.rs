//! What differs between the two kinds, and nothing else: where a resource's Secrets go, how they
//! belong to it, how it is finalized, and the shape of its status. Everything else (the sync,
//! metrics, Events, retries) is one code path for both ([`super::sync`], [`super::builder`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    Resource, ResourceExt,
    api::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

use super::{
    Shared,
    plan::Outcome,
    report::{self, Namespace as Selected},
    spec,
};
use crate::{
    Error,
    crd::{
        ClusterEcrPublicPullSecret, ClusterEcrPublicPullSecretStatus, EcrPublicPullSecret,
        EcrPublicPullSecretStatus, PullSecretSettings,
    },
    k8s::{cached_secret::CachedSecret, status::Reported, watch::Watch},
    pull_secret::{CLUSTER_OWNER_LABEL, Owner},
};

/// Finalizer that keeps a `ClusterEcrPublicPullSecret` until its Secrets are deleted.
pub const FINALIZER: &str = "ecrpublic.pullsecrets.dev/cleanup";

/// One sync's findings: each target namespace's Secret, planned, fetched for and written.
pub type Found = std::collections::BTreeMap<String, Result<Outcome, Error>>;

/// The Namespace cache (metadata), where a kind needs it.
pub type Namespaces = Option<Store<PartialObjectMeta<Namespace>>>;

/// A kind of resource that keeps pull Secrets.
pub trait PullSecretKind:
    Reported<Status: Default> + serde::Serialize + Send + Sync + 'static
{
    /// The finalizer that holds a deleted resource until the kind has removed its Secrets
    /// itself; `None` where Kubernetes' garbage collector does it (an ownerReference).
    const FINALIZER: Option<&'static str>;
    /// How long a burst of triggers is gathered into one sync.
    const DEBOUNCE: Duration;
    /// Its name in logs.
    const NAME: &'static str;

    /// Its watch among the shared ones.
    fn watch(shared: &mut Shared) -> Option<&mut Watch<Self>>;
    fn settings(&self) -> &PullSecretSettings;
    /// The name of the Secret it writes (in each target namespace).
    fn secret_name(&self) -> String;
    /// `spec.serviceAccountName` (namespaced only).
    fn service_account(&self) -> Option<&str> {
        None
    }
    /// How the Secrets it writes name it.
    fn owner(&self) -> Result<Owner, Error>;
    /// The namespaces it writes its Secret into, by name; what the schema cannot check is an
    /// `InvalidSpec` here.
    fn targets(&self, namespaces: &Namespaces) -> Result<Vec<String>, Error>;
    /// The resource a Secret's change concerns, if any of this kind wrote it.
    fn owner_of(secret: &CachedSecret, resources: &Store<Self>) -> Option<ObjectRef<Self>>;
    /// The resources whose targets a Namespace change may change.
    fn on_namespace_change(_resources: &Store<Self>) -> Vec<ObjectRef<Self>> {
        Vec::new()
    }
    /// Whether a Secret of this name, found carrying this resource's ownership, is one it may
    /// remove itself (kinds with a [`Self::FINALIZER`]): one it wrote, not merely one labelled so.
    fn may_remove(&self, _current: Option<&Self::Status>, _name: &str) -> bool {
        false
    }
    /// The status for what a sync found in each target namespace.
    fn status_for(
        &self,
        found: &Found,
        current: Option<&Self::Status>,
        now: DateTime<Utc>,
    ) -> Self::Status;
    /// The status for an error that stopped the sync before any Secret.
    fn problem(
        &self,
        error: &Error,
        current: Option<&Self::Status>,
        now: DateTime<Utc>,
    ) -> Self::Status;
    fn conditions(status: &Self::Status) -> &[Condition];
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition>;
    fn observed_generation(status: &Self::Status) -> Option<i64>;
}

impl PullSecretKind for EcrPublicPullSecret {
    const FINALIZER: Option<&'static str> = None;
    const DEBOUNCE: Duration = Duration::ZERO;
    const NAME: &'static str = "EcrPublicPullSecret";

    fn watch(shared: &mut Shared) -> Option<&mut Watch<Self>> {
        Some(&mut shared.crs)
    }

    fn settings(&self) -> &PullSecretSettings {
        &self.spec.settings
    }

    fn secret_name(&self) -> String {
        EcrPublicPullSecret::secret_name(self)
    }

    fn service_account(&self) -> Option<&str> {
        self.spec.service_account_name.as_deref()
    }

    fn owner(&self) -> Result<Owner, Error> {
        self.controller_owner_ref(&())
            .map(Owner::Reference)
            .ok_or_else(|| Error::Internal("EcrPublicPullSecret has no uid yet".into()))
    }

    fn targets(&self, _: &Namespaces) -> Result<Vec<String>, Error> {
        spec::secret_name(&self.secret_name())?;
        let ns = self.namespace();
        Ok(vec![ns.ok_or_else(|| {
            Error::Internal("EcrPublicPullSecret has no namespace".into())
        })?])
    }

    fn owner_of(secret: &CachedSecret, _: &Store<Self>) -> Option<ObjectRef<Self>> {
        secret.controller()
    }

    fn status_for(
        &self,
        found: &Found,
        current: Option<&Self::Status>,
        now: DateTime<Utc>,
    ) -> Self::Status {
        let name = self.secret_name();
        let report = match found.values().next() {
            Some(Ok(Outcome::Fresh { state, next })) => {
                report::ready(&name, state.expires_at, state.refreshed_at, *next)
            }
            Some(Ok(Outcome::Written { state, next, .. })) => {
                report::ready(&name, state.expires_at, state.refreshed_at, *next)
            }
            Some(Ok(Outcome::Failed(failure))) => report::failed(&name, failure, now),
            Some(Err(error)) => report::problem(error, &name, current),
            None => report::problem(&Error::Internal("no Secret planned".into()), &name, current),
        };
        report::build(&report, self.meta().generation, current, now)
    }

    fn problem(
        &self,
        error: &Error,
        current: Option<&Self::Status>,
        now: DateTime<Utc>,
    ) -> Self::Status {
        let report = report::problem(error, &self.secret_name(), current);
        report::build(&report, self.meta().generation, current, now)
    }

    fn conditions(status: &EcrPublicPullSecretStatus) -> &[Condition] {
        &status.conditions
    }

    fn conditions_mut(status: &mut EcrPublicPullSecretStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }

    fn observed_generation(status: &EcrPublicPullSecretStatus) -> Option<i64> {
        status.observed_generation
    }
}

impl PullSecretKind for ClusterEcrPublicPullSecret {
    const FINALIZER: Option<&'static str> = Some(FINALIZER);
    // A burst of namespace or Secret events becomes one pass over all namespaces.
    const DEBOUNCE: Duration = Duration::from_millis(200);
    const NAME: &'static str = "ClusterEcrPublicPullSecret";

    fn watch(shared: &mut Shared) -> Option<&mut Watch<Self>> {
        shared.cluster.as_mut()
    }

    fn settings(&self) -> &PullSecretSettings {
        &self.spec.settings
    }

    fn secret_name(&self) -> String {
        ClusterEcrPublicPullSecret::secret_name(self)
    }

    fn owner(&self) -> Result<Owner, Error> {
        let uid = self.uid();
        let uid = uid.ok_or_else(|| Error::Internal("resource has no uid yet".into()))?;
        Ok(Owner::Label(uid))
    }

    fn targets(&self, namespaces: &Namespaces) -> Result<Vec<String>, Error> {
        spec::namespace_selector(&self.spec)?;
        spec::secret_name(&self.secret_name())?;
        let namespaces = namespaces.as_ref().ok_or_else(|| {
            Error::Internal("ClusterEcrPublicPullSecret without the Namespace cache".into())
        })?;
        spec::selected(&self.spec, &namespaces.state())
    }

    fn owner_of(secret: &CachedSecret, resources: &Store<Self>) -> Option<ObjectRef<Self>> {
        let uid = secret.cluster_owner()?;
        let owner = resources.find(|cr| cr.uid().as_deref() == Some(uid))?;
        Some(ObjectRef::from_obj(&*owner))
    }

    /// Any Namespace change (created, relabelled, deleted) may change any selection.
    fn on_namespace_change(resources: &Store<Self>) -> Vec<ObjectRef<Self>> {
        let all = resources.state().into_iter();
        all.map(|cr| ObjectRef::from_obj(&*cr)).collect()
    }

    /// The current `secretName`, or the one the status says the Secrets were last written
    /// under: the owner label alone can be put on any Secret by whoever may patch it. A status
    /// written before it recorded the name knows no other, so the label decides, as it did then.
    fn may_remove(&self, current: Option<&Self::Status>, name: &str) -> bool {
        let last = current.and_then(|s| s.secret_name.as_deref());
        name == self.secret_name() || last.is_none_or(|last| last == name)
    }

    fn status_for(
        &self,
        found: &Found,
        current: Option<&Self::Status>,
        now: DateTime<Utc>,
    ) -> Self::Status {
        let namespaces = found
            .iter()
            .map(|(ns, outcome)| {
                let selected = match outcome {
                    Ok(Outcome::Fresh { state, next }) => Selected::ready(state.expires_at, *next),
                    Ok(Outcome::Written { state, next, .. }) => {
                        Selected::ready(state.expires_at, *next)
                    }
                    Ok(Outcome::Failed(failure)) => Selected::sources_failed(failure, now),
                    Err(error) => Selected::failed(error),
                };
                (ns.clone(), selected)
            })
            .collect();
        let name = self.secret_name();
        report::cluster(self.meta().generation, &name, current, &namespaces, now).0
    }

    fn problem(
        &self,
        error: &Error,
        current: Option<&Self::Status>,
        now: DateTime<Utc>,
    ) -> Self::Status {
        report::cluster_problem(error, self.meta().generation, current, now)
    }

    fn conditions(status: &ClusterEcrPublicPullSecretStatus) -> &[Condition] {
        &status.conditions
    }

    fn conditions_mut(status: &mut ClusterEcrPublicPullSecretStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }

    fn observed_generation(status: &ClusterEcrPublicPullSecretStatus) -> Option<i64> {
        status.observed_generation
    }
}

/// The label selector of the Secrets a cluster resource wrote (for its cleanup, which reads the
/// API rather than a cache that may not have caught up after a restart).
pub fn cluster_owner_selector(uid: &str) -> String {
    format!("{CLUSTER_OWNER_LABEL}={uid}")
}
