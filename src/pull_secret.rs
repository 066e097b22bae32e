//! The Secret the operator writes: docker config JSON, labels, annotations and the bookkeeping that
//! lets a restarted operator know, from metadata alone, whether a Secret is fresh.
//!
//! Building is pure; the reconcilers do the I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    aws::token::Token,
    crd::{MANAGER, PullSecretSettings, Registry},
};

/// Secret type the kubelet reads for `imagePullSecrets`.
pub const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Data key of the docker config.
pub const DATA_KEY: &str = ".dockerconfigjson";
/// Label on every Secret the operator writes; the Secret watch is filtered on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// When the token in the Secret expires (RFC 3339). Absent when the Secret holds no token.
pub const EXPIRES_AT: &str = "ecrpublic.pullsecrets.dev/expires-at";
/// When the token in the Secret was obtained (RFC 3339).
pub const REFRESHED_AT: &str = "ecrpublic.pullsecrets.dev/refreshed-at";
/// Hash of the non-token content, so a spec change is noticed without reading the data.
pub const CONFIG_HASH: &str = "ecrpublic.pullsecrets.dev/config-hash";
/// Annotation prefix reserved for the operator.
pub const RESERVED_PREFIX: &str = "ecrpublic.pullsecrets.dev/";
/// Label on every Secret a `ClusterEcrPublicPullSecret` writes: the resource's UID.
pub const CLUSTER_OWNER_LABEL: &str = "ecrpublic.pullsecrets.dev/cluster-owner";

/// Label selector matching every Secret the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

/// The docker config JSON for `registries` with `token`, or `{"auths":{}}` without a token.
pub fn docker_config(registries: &[Registry], token: Option<&Token>) -> Vec<u8> {
    let mut auths = serde_json::Map::new();
    if let Some(token) = token {
        for registry in registries {
            auths.insert(
                registry.host().to_owned(),
                json!({"username": "AWS", "password": token.password(), "auth": token.auth()}),
            );
        }
    }
    serde_json::to_vec(&json!({ "auths": auths })).unwrap_or_default()
}

/// Fingerprint of everything in the Secret except the token itself, and of the identity asked
/// for (so switching roles or ServiceAccounts fetches a token of the new identity right away).
pub fn config_hash(settings: &PullSecretSettings, service_account: Option<&str>) -> String {
    let template = settings.secret_template.clone().unwrap_or_default();
    let mut registries: Vec<&str> = settings.registries.iter().map(|r| r.host()).collect();
    registries.sort_unstable();
    registries.dedup();
    let mut canonical = json!({
        "registries": registries,
        "labels": template.labels,
        "annotations": template.annotations,
    });
    // Only when set, so the hash of Secrets written with the operator's identity stays as it was.
    if settings.role_arn.is_some() || service_account.is_some() {
        canonical["identity"] = json!([settings.role_arn, service_account]);
    }
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the operator knows about a Secret from its metadata alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretState {
    /// Expiry of the token in the Secret, if it holds one.
    pub expires_at: Option<DateTime<Utc>>,
    /// When that token was obtained.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Fingerprint of the settings it was written with.
    pub config_hash: Option<String>,
}

impl SecretState {
    /// The state of a Secret written with `token` and settings fingerprint `config_hash`.
    pub fn of(token: &Token, config_hash: &str) -> SecretState {
        SecretState {
            expires_at: Some(token.expires_at),
            refreshed_at: Some(token.issued_at),
            config_hash: Some(config_hash.to_owned()),
        }
    }

    /// Reads the operator's annotations; anything unparsable counts as absent (and so as due).
    pub fn from_meta(meta: &ObjectMeta) -> SecretState {
        let annotations = meta.annotations.as_ref();
        let get = |k: &str| annotations.and_then(|a| a.get(k));
        let time = |k: &str| {
            get(k)
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        SecretState {
            expires_at: time(EXPIRES_AT),
            refreshed_at: time(REFRESHED_AT),
            config_hash: get(CONFIG_HASH).cloned(),
        }
    }
}

/// How a Secret belongs to the resource that writes it. A Secret that does not is never touched.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// An `EcrPublicPullSecret`: a controller ownerReference, so Kubernetes garbage-collects the
    /// Secret with the resource.
    Reference(OwnerReference),
    /// A `ClusterEcrPublicPullSecret`: [`CLUSTER_OWNER_LABEL`] holding its UID (a cluster-scoped
    /// owner cannot be an ownerReference of a namespaced Secret; a finalizer cleans up instead).
    Label(String),
}

impl Owner {
    /// The owning resource's UID.
    pub fn uid(&self) -> &str {
        match self {
            Owner::Reference(owner) => &owner.uid,
            Owner::Label(uid) => uid,
        }
    }

    /// The Secret `name` in `namespace` as this owner writes it.
    pub fn spec<'a>(
        &self,
        name: &'a str,
        namespace: &'a str,
        settings: &'a PullSecretSettings,
        service_account: Option<&'a str>,
    ) -> SecretSpec<'a> {
        let (owner, extra_labels) = match self {
            Owner::Reference(owner) => (Some(owner.clone()), BTreeMap::new()),
            Owner::Label(uid) => (
                None,
                BTreeMap::from([(CLUSTER_OWNER_LABEL.to_owned(), uid.clone())]),
            ),
        };
        SecretSpec {
            name,
            namespace,
            settings,
            service_account,
            owner,
            extra_labels,
        }
    }
}

/// Everything needed to render a Secret.
pub struct SecretSpec<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub settings: &'a PullSecretSettings,
    /// `spec.serviceAccountName`, part of the settings fingerprint.
    pub service_account: Option<&'a str>,
    pub owner: Option<OwnerReference>,
    pub extra_labels: BTreeMap<String, String>,
}

/// The full Secret to server-side apply. With `token: None` it holds `{"auths":{}}`.
pub fn build(spec: &SecretSpec<'_>, token: Option<&Token>) -> Secret {
    let template = spec.settings.secret_template.clone().unwrap_or_default();
    // The schema refuses the operator's own keys; an old CRD might not. A forged owner label
    // would make another resource's Secret look like this one's.
    let mut labels: BTreeMap<String, String> = template
        .labels
        .into_iter()
        .filter(|(k, _)| !reserved_label(k))
        .collect();
    labels.extend(spec.extra_labels.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGER.into());
    let mut annotations: BTreeMap<String, String> = template
        .annotations
        .into_iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .collect();
    annotations.insert(
        CONFIG_HASH.into(),
        config_hash(spec.settings, spec.service_account),
    );
    if let Some(token) = token {
        annotations.insert(EXPIRES_AT.into(), rfc3339(token.expires_at));
        annotations.insert(REFRESHED_AT.into(), rfc3339(token.issued_at));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(spec.name.to_owned()),
            namespace: Some(spec.namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: spec.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.into()),
        data: Some(BTreeMap::from([(
            DATA_KEY.to_owned(),
            ByteString(docker_config(&spec.settings.registries, token)),
        )])),
        ..Secret::default()
    }
}

/// A label key only the operator sets.
fn reserved_label(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX) || key == MANAGED_BY_LABEL
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{aws::token::test_token, crd::SecretTemplate};
    use chrono::Duration;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn docker_config_has_the_shape_the_kubelet_reads() {
        let token = test_token("pw", now(), Duration::hours(12));
        let json: serde_json::Value = serde_json::from_slice(&docker_config(
            &[Registry::PublicEcrAws, Registry::DualStack],
            Some(&token),
        ))
        .unwrap();
        for host in ["public.ecr.aws", "ecr-public.aws.com"] {
            assert_eq!(json["auths"][host]["username"], "AWS");
            assert_eq!(json["auths"][host]["password"], "pw");
            assert_eq!(json["auths"][host]["auth"], token.auth());
        }
        assert_eq!(
            docker_config(&[Registry::PublicEcrAws], None),
            br#"{"auths":{}}"#
        );
    }

    #[test]
    fn built_secret_is_typed_labelled_owned_and_annotated() {
        let settings = PullSecretSettings {
            secret_template: Some(SecretTemplate {
                labels: BTreeMap::from([
                    ("team".into(), "a".into()),
                    (MANAGED_BY_LABEL.into(), "me".into()),
                    (CLUSTER_OWNER_LABEL.into(), "another-resource".into()),
                ]),
                annotations: BTreeMap::from([
                    ("note".into(), "x".into()),
                    (EXPIRES_AT.into(), "forged".into()),
                ]),
            }),
            ..PullSecretSettings::default()
        };
        let owner = OwnerReference {
            uid: "u1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let spec = SecretSpec {
            name: "pull",
            namespace: "ns",
            settings: &settings,
            service_account: None,
            owner: Some(owner),
            extra_labels: BTreeMap::new(),
        };
        let token = test_token("pw", now(), Duration::hours(12));
        let secret = build(&spec, Some(&token));
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        let labels = secret.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGER);
        assert_eq!(labels["team"], "a");
        assert!(
            !labels.contains_key(CLUSTER_OWNER_LABEL),
            "a template cannot forge the cluster kind's owner label"
        );
        let controllers: Vec<_> = (secret.metadata.owner_references.iter().flatten())
            .filter(|o| o.controller == Some(true))
            .map(|o| o.uid.as_str())
            .collect();
        assert_eq!(controllers, ["u1"], "controlled by its resource alone");
        let state = SecretState::from_meta(&secret.metadata);
        assert_eq!(
            state,
            SecretState::of(&token, &config_hash(&settings, None)),
            "annotations round-trip exactly"
        );
        assert_eq!(secret.metadata.annotations.as_ref().unwrap()["note"], "x");

        let empty = build(&spec, None);
        assert_eq!(SecretState::from_meta(&empty.metadata).expires_at, None);
        assert_eq!(empty.data.unwrap()[DATA_KEY].0, br#"{"auths":{}}"#);
    }

    #[test]
    fn config_hash_tracks_content_not_order() {
        let a = PullSecretSettings {
            registries: vec![Registry::PublicEcrAws, Registry::DualStack],
            ..Default::default()
        };
        let b = PullSecretSettings {
            registries: vec![Registry::DualStack, Registry::PublicEcrAws],
            ..Default::default()
        };
        let c = PullSecretSettings::default();
        assert_eq!(config_hash(&a, None), config_hash(&b, None));
        assert_ne!(config_hash(&a, None), config_hash(&c, None));
        let role = PullSecretSettings {
            role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
            ..Default::default()
        };
        assert_ne!(config_hash(&role, None), config_hash(&c, None));
        assert_ne!(config_hash(&c, Some("sa")), config_hash(&c, None));
    }

    #[test]
    fn unparsable_annotations_count_as_absent() {
        let meta = ObjectMeta {
            annotations: Some(BTreeMap::from([(EXPIRES_AT.into(), "yesterday".into())])),
            ..ObjectMeta::default()
        };
        assert_eq!(SecretState::from_meta(&meta).expires_at, None);
    }
}
