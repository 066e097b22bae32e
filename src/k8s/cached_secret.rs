//! What a Secret cache keeps of each Secret: the few fields the reconcilers read, projected out of
//! its metadata as the watch delivers it.
//!
//! At thousands of Secrets the cache is much of the operator's memory, and full metadata is
//! mostly what nobody reads: the labels and the annotations each take a `BTreeMap` node of about
//! half a KiB however few entries they have, and every annotation is a key and an RFC 3339 value
//! held as strings. A reconcile reads the token state (parsed here once, from the annotations),
//! which resource wrote the Secret, and its name, namespace, uid and resourceVersion.

use std::borrow::Cow;

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{Resource, api::PartialObjectMeta, core::NamespaceResourceScope};
use serde::Deserialize;

use crate::secret::{self, CLUSTER_OWNER_LABEL, Owner, SecretState};

/// One Secret as the caches hold it. It deserializes from a Secret's metadata, as
/// kube-runtime's `watches` bounds ask, though the watches build it with [`From`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "PartialObjectMeta<Secret>")]
pub struct CachedSecret {
    /// Name, namespace, uid, resourceVersion and the controller ownerReference, nothing else:
    /// kube-runtime finds the resource a Secret event concerns through that reference.
    metadata: ObjectMeta,
    /// The token state its annotations describe.
    pub state: SecretState,
    /// The UID in its cluster-owner label (Secrets of a `ClusterEcrPublicPullSecret`).
    cluster_owner: Option<String>,
}

impl CachedSecret {
    /// The UID in its cluster-owner label.
    pub fn cluster_owner(&self) -> Option<&str> {
        self.cluster_owner.as_deref()
    }

    /// Whether `owner` wrote this Secret.
    pub fn owned_by(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Reference(reference) => secret::is_controlled_by(&self.metadata, &reference.uid),
            Owner::Label(uid) => self.cluster_owner.as_ref() == Some(uid),
        }
    }
}

impl From<PartialObjectMeta<Secret>> for CachedSecret {
    fn from(secret: PartialObjectMeta<Secret>) -> Self {
        let meta = secret.metadata;
        let state = SecretState::from_meta(&meta);
        let cluster_owner = meta.labels.and_then(|mut l| l.remove(CLUSTER_OWNER_LABEL));
        let controller = meta
            .owner_references
            .into_iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        Self {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                owner_references: controller.map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            state,
            cluster_owner,
        }
    }
}

impl Resource for CachedSecret {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Secret::kind(&())
    }

    fn group(_: &()) -> Cow<'_, str> {
        Secret::group(&())
    }

    fn version(_: &()) -> Cow<'_, str> {
        Secret::version(&())
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Secret::plural(&())
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta as Meta;

    use super::*;
    use crate::{aws::token::test_token, crd::PullSecretSettings, secret::build};

    fn cached(secret: Secret) -> CachedSecret {
        CachedSecret::from(PartialObjectMeta {
            types: None,
            metadata: secret.metadata,
            _phantom: Default::default(),
        })
    }

    #[test]
    fn each_kind_recognises_only_its_own_secrets() {
        let settings = PullSecretSettings::default();
        let reference = Owner::Reference(OwnerReference {
            uid: "u1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        });
        let label = Owner::Label("u1".into());
        let by_reference = cached(build(&reference.spec("s", "ns", &settings, None), None));
        let by_label = cached(build(&label.spec("s", "ns", &settings, None), None));
        assert!(by_reference.owned_by(&reference));
        assert!(!by_label.owned_by(&reference), "same UID, other kind");
        assert!(by_label.owned_by(&label));
        assert!(!by_reference.owned_by(&label));
        assert!(!by_label.owned_by(&Owner::Label("u2".into())));
    }

    #[test]
    fn keeps_what_reconciles_read_and_nothing_else() {
        let owner = Owner::Reference(OwnerReference {
            uid: "u1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        });
        let settings = PullSecretSettings::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let token = test_token("pw", now, Duration::hours(12));
        let mut secret = build(&owner.spec("s", "ns", &settings, None), Some(&token));
        let full = secret.metadata.clone();
        secret.metadata.uid = Some("secret-uid".into());
        secret.metadata.resource_version = Some("42".into());
        secret.metadata.finalizers = Some(vec!["someone/else".into()]);
        let cached = cached(secret);
        assert_eq!(cached.state, SecretState::from_meta(&full), "token state");
        let meta = cached.meta();
        assert_eq!(meta.name.as_deref(), Some("s"));
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        assert_eq!(meta.uid.as_deref(), Some("secret-uid"));
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert_eq!(meta.owner_references, full.owner_references);
        let dropped = Meta {
            name: None,
            namespace: None,
            uid: None,
            resource_version: None,
            owner_references: None,
            ..meta.clone()
        };
        assert_eq!(
            dropped,
            Meta::default(),
            "labels, annotations and the rest are not kept"
        );
    }
}
