//! What a Secret cache keeps of each Secret: the few fields the reconcilers read, projected out of
//! its metadata as the watch delivers it.
//!
//! At thousands of Secrets the cache is much of the operator's memory, and full metadata is
//! mostly what nobody reads: the labels and the annotations each take a whole `BTreeMap` node
//! however few entries they have, and every annotation is a key and an RFC 3339 value held as
//! strings. A reconcile reads the token state (parsed here once, from the annotations),
//! which resource wrote the Secret, and its name, namespace, uid and resourceVersion.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Resource,
    api::PartialObjectMeta,
    runtime::reflector::{Lookup, ObjectRef},
};

use crate::{
    crd::{EcrPublicPullSecret, MANAGER},
    pull_secret::{CLUSTER_OWNER_LABEL, Owner, SecretState},
};

/// One Secret as the caches hold it: plain fields rather than an `ObjectMeta` (mostly empty
/// options, per Secret). Not a `Resource`, only what kube-runtime's store needs to key it
/// ([`Lookup`]); the controllers are triggered from its [`CachedSecret::controller`].
#[derive(Debug, Clone, PartialEq)]
pub struct CachedSecret {
    name: String,
    namespace: String,
    uid: Option<String>,
    resource_version: Option<String>,
    /// Name and UID of the `EcrPublicPullSecret` its controller ownerReference names.
    controller: Option<(String, String)>,
    /// The UID in its cluster-owner label (Secrets of a `ClusterEcrPublicPullSecret`).
    cluster_owner: Option<String>,
    /// The token state its annotations describe.
    pub state: SecretState,
}

impl CachedSecret {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// The UID in its cluster-owner label.
    pub fn cluster_owner(&self) -> Option<&str> {
        self.cluster_owner.as_deref()
    }

    /// The `EcrPublicPullSecret` that controls it, if one does.
    pub fn controller(&self) -> Option<ObjectRef<EcrPublicPullSecret>> {
        let (name, _) = self.controller.as_ref()?;
        Some(ObjectRef::new(name).within(&self.namespace))
    }

    /// The UID of the `EcrPublicPullSecret` that controls it, if one does.
    pub fn controller_uid(&self) -> Option<&str> {
        self.controller.as_ref().map(|(_, uid)| uid.as_str())
    }

    /// Whether `owner` wrote this Secret.
    pub fn owned_by(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Reference(reference) => {
                self.controller.as_ref().map(|(_, uid)| uid) == Some(&reference.uid)
            }
            Owner::Label(uid) => self.cluster_owner.as_ref() == Some(uid),
        }
    }
}

impl From<PartialObjectMeta<Secret>> for CachedSecret {
    fn from(secret: PartialObjectMeta<Secret>) -> Self {
        let meta = secret.metadata;
        let mut state = SecretState::from_meta(&meta);
        if data_edited_by_another(&meta) {
            // Forgets the settings it was written with, so the next sync writes it again (the
            // token from the cache, no AWS call), taking the field back.
            state.config_hash = None;
        }
        let cluster_owner = meta.labels.and_then(|mut l| l.remove(CLUSTER_OWNER_LABEL));
        let (kind, api_version) = (
            <EcrPublicPullSecret as Resource>::kind(&()),
            <EcrPublicPullSecret as Resource>::api_version(&()),
        );
        let controller = meta
            .owner_references
            .into_iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .filter(|o| o.kind == kind && o.api_version == api_version)
            .map(|o| (o.name, o.uid));
        Self {
            name: meta.name.unwrap_or_default(),
            namespace: meta.namespace.unwrap_or_default(),
            uid: meta.uid,
            resource_version: meta.resource_version,
            controller,
            cluster_owner,
            state,
        }
    }
}

/// Whether a field manager other than the operator owns the Secret's docker config: someone
/// edited it by hand (`kubectl edit`, a patch). Read from managedFields, which the metadata watch
/// carries, so no Secret data is ever cached. Only that key: another key someone added is left
/// to them (the operator's apply would never take it, so watching for it would rewrite forever).
fn data_edited_by_another(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    let managers = meta.managed_fields.iter().flatten();
    managers
        .filter(|m| m.manager.as_deref() != Some(MANAGER))
        .filter_map(|m| m.fields_v1.as_ref())
        .any(|f| f.0.pointer("/f:data/f:.dockerconfigjson").is_some())
}

/// What kube-runtime's store keys a Secret by. Without resourceVersion and UID: the store copies
/// them into each key, where nothing reads them (a key compares name and namespace only).
impl Lookup for CachedSecret {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::kind(&())
    }

    fn group(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::group(&())
    }

    fn version(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::version(&())
    }

    fn plural(_: &()) -> Cow<'_, str> {
        <Secret as Resource>::plural(&())
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.namespace))
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::{aws::source::Source, pull_secret::Entries};
    use crate::{aws::token::test_token, crd::PullSecretSettings, pull_secret::build};

    fn cached(secret: Secret) -> CachedSecret {
        CachedSecret::from(PartialObjectMeta {
            types: None,
            metadata: secret.metadata,
            _phantom: Default::default(),
        })
    }

    /// The ownerReference the namespaced kind writes.
    fn reference(name: &str, uid: &str) -> Owner {
        Owner::Reference(OwnerReference {
            api_version: <EcrPublicPullSecret as Resource>::api_version(&()).into(),
            kind: <EcrPublicPullSecret as Resource>::kind(&()).into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            ..OwnerReference::default()
        })
    }

    #[test]
    fn each_kind_recognises_only_its_own_secrets() {
        let settings = PullSecretSettings::default();
        let reference = reference("cr", "u1");
        let label = Owner::Label("u1".into());
        let by_reference = cached(build(
            &reference.spec("s", "ns", &settings, None),
            &Entries::new(),
        ));
        let by_label = cached(build(
            &label.spec("s", "ns", &settings, None),
            &Entries::new(),
        ));
        assert!(by_reference.owned_by(&reference));
        assert!(!by_label.owned_by(&reference), "same UID, other kind");
        assert!(by_label.owned_by(&label));
        assert!(!by_reference.owned_by(&label));
        assert!(!by_label.owned_by(&Owner::Label("u2".into())));
    }

    #[test]
    fn a_secret_triggers_the_resource_that_controls_it() {
        let settings = PullSecretSettings::default();
        let ours = cached(build(
            &reference("cr", "u1").spec("s", "ns", &settings, None),
            &Entries::new(),
        ));
        assert_eq!(ours.controller(), Some(ObjectRef::new("cr").within("ns")));
        let mut secret = build(
            &reference("cr", "u1").spec("s", "ns", &settings, None),
            &Entries::new(),
        );
        for o in secret.metadata.owner_references.iter_mut().flatten() {
            o.kind = "Deployment".into();
        }
        let foreign = cached(secret);
        assert_eq!(foreign.controller(), None, "a controller of another kind");
        assert!(!foreign.owned_by(&reference("cr", "u1")));
        let label = Owner::Label("u1".into());
        let cluster = cached(build(
            &label.spec("s", "ns", &settings, None),
            &Entries::new(),
        ));
        assert_eq!(cluster.controller(), None);
        assert_eq!(cluster.cluster_owner(), Some("u1"));
    }

    #[test]
    fn keeps_what_reconciles_read() {
        let settings = PullSecretSettings::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let token = test_token("pw", now, Duration::hours(12));
        let spec = reference("cr", "u1");
        let mut secret = build(
            &spec.spec("s", "ns", &settings, None),
            &Entries::from([(Source::Public, token.clone())]),
        );
        let full = secret.metadata.clone();
        secret.metadata.uid = Some("secret-uid".into());
        secret.metadata.resource_version = Some("42".into());
        let cached = cached(secret);
        assert_eq!(cached.state, SecretState::from_meta(&full), "token state");
        assert_eq!((cached.name(), cached.namespace()), ("s", "ns"));
        assert_eq!(cached.uid(), Some("secret-uid"));
        assert_eq!(cached.resource_version(), Some("42"));
        let key = ObjectRef::from_obj(&cached);
        assert_eq!(key, ObjectRef::new("s").within("ns"));
        assert_eq!(
            (key.extra.uid, key.extra.resource_version),
            (None, None),
            "store keys are name and namespace only"
        );
    }

    #[test]
    fn a_docker_config_edited_by_another_manager_makes_the_secret_due() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let settings = PullSecretSettings::default();
        let token = test_token(
            "pw",
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            Duration::hours(12),
        );
        let entries = Entries::from([(Source::Public, token)]);
        let written = build(
            &reference("cr", "u1").spec("s", "ns", &settings, None),
            &entries,
        );
        let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        };
        let ours = entry(
            MANAGER,
            serde_json::json!({"f:data": {"f:.dockerconfigjson": {}}}),
        );
        let with = |others: Vec<ManagedFieldsEntry>| {
            let mut secret = written.clone();
            secret.metadata.managed_fields = Some([vec![ours.clone()], others].concat());
            cached(secret).state
        };
        assert!(with(vec![]).config_hash.is_some(), "ours alone");
        let edited = entry(
            "kubectl-edit",
            serde_json::json!({"f:data": {"f:.dockerconfigjson": {}}}),
        );
        let state = with(vec![edited]);
        assert_eq!(state.config_hash, None, "due: written again");
        assert!(state.expires_at.is_some(), "its expiry still shown");
        let added = entry(
            "kubectl-edit",
            serde_json::json!({"f:data": {"f:note": {}}}),
        );
        assert!(
            with(vec![added]).config_hash.is_some(),
            "another key is left alone"
        );
    }
}
