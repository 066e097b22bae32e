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
    aws::{source::Source, token::Token},
    crd::{MANAGER, PullSecretSettings, Registry},
    hosts,
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
/// Each source's token times, in a Secret holding more than ECR Public's token alone (JSON:
/// `{"ecr/us-west-2":{"refreshedAt":"…","expiresAt":"…"},…}`). The two annotations above then
/// describe the entry that expires first, which is when the Secret as a whole stops working.
pub const SOURCES: &str = "ecrpublic.pullsecrets.dev/sources";
/// Annotation prefix reserved for the operator.
pub const RESERVED_PREFIX: &str = "ecrpublic.pullsecrets.dev/";
/// Label on every Secret a `ClusterEcrPublicPullSecret` writes: the resource's UID.
pub const CLUSTER_OWNER_LABEL: &str = "ecrpublic.pullsecrets.dev/cluster-owner";

/// Label selector matching every Secret the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

/// The tokens a Secret holds or is to hold, one per source.
pub type Entries = BTreeMap<Source, Token>;

/// The sources `settings` asks for: ECR Public unless `registries` is empty, and each private
/// registry region.
pub fn sources(settings: &PullSecretSettings) -> Vec<Source> {
    let public = (!settings.registries.is_empty()).then_some(Source::Public);
    let private = settings.private_registries.iter();
    let mut all: Vec<Source> = public
        .into_iter()
        .chain(private.map(|r| Source::private(&r.region)))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The `auths` host names and the token each gets, for what `settings` asks and `entries` holds.
fn auths<'a>(settings: &PullSecretSettings, entries: &'a Entries) -> Vec<(String, &'a Token)> {
    let mut out = Vec::new();
    if let Some(token) = entries.get(&Source::Public) {
        out.extend(
            settings
                .registries
                .iter()
                .map(|r| (r.host().to_owned(), token)),
        );
    }
    for registry in &settings.private_registries {
        if let Some(token) = entries.get(&Source::private(&registry.region)) {
            let own = token.account.as_deref();
            out.extend(
                hosts::private_hosts(registry, own)
                    .into_iter()
                    .map(|h| (h, token)),
            );
        }
    }
    out
}

/// The docker config JSON for what `settings` asks, with the tokens in `entries`; a source
/// without a token has no entry (`{"auths":{}}` when none has).
pub fn docker_config(settings: &PullSecretSettings, entries: &Entries) -> Vec<u8> {
    let mut auths_json = serde_json::Map::new();
    for (host, token) in auths(settings, entries) {
        auths_json.insert(
            host,
            json!({"username": "AWS", "password": token.password(), "auth": token.auth()}),
        );
    }
    serde_json::to_vec(&json!({ "auths": auths_json })).unwrap_or_default()
}

/// The `auth` value of `source`'s entry in a docker config the operator wrote, and the account
/// its host names (to write it again beside fresh ones while its source fails). Any host form of
/// the source will do: the spec may have changed the forms since.
pub fn held_auth(config: &[u8], source: &Source) -> Option<(String, Option<String>)> {
    let config: serde_json::Value = serde_json::from_slice(config).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let auth_of = |host: &str| auths.get(host)?.get("auth")?.as_str().map(str::to_owned);
    match source {
        Source::Public => {
            let registries = [Registry::PublicEcrAws, Registry::DualStack];
            Some((registries.iter().find_map(|r| auth_of(r.host()))?, None))
        }
        Source::Private { region } => auths.keys().find_map(|host| {
            let account = host.split('.').next()?;
            let ours = hosts::is_private_host(host, account, region);
            let auth = ours.then(|| auth_of(host))??;
            Some((auth, Some(account.to_owned())))
        }),
    }
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
    // Only when set, so the hash of Secrets written before private registries existed stays.
    if !settings.private_registries.is_empty() {
        let mut private: Vec<_> = (settings.private_registries.iter())
            .map(|r| {
                let mut ids = r.registry_ids.clone();
                ids.sort_unstable();
                ids.dedup();
                let mut forms = r.endpoints.clone();
                forms.sort_unstable();
                forms.dedup();
                json!([r.region, ids, forms])
            })
            .collect();
        private.sort_unstable_by_key(|p| p.to_string());
        canonical["private"] = json!(private);
    }
    // Only when set, so the hash of Secrets written with the operator's identity stays as it was.
    if settings.role_arn.is_some() || service_account.is_some() {
        canonical["identity"] = json!([settings.role_arn, service_account]);
    }
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// When one source's token in a Secret was obtained, and when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What the operator knows about a Secret from its metadata alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretState {
    /// Expiry of the token in the Secret (the first to expire, when it holds several).
    pub expires_at: Option<DateTime<Utc>>,
    /// When that token was obtained.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Fingerprint of the settings it was written with.
    pub config_hash: Option<String>,
    /// Each source's times when the Secret holds more than ECR Public's token alone; empty
    /// otherwise (the two times above are then that token's), which costs a cached Secret nothing.
    pub sources: Box<[(Source, Stamp)]>,
}

impl SecretState {
    /// The state of a Secret written with `entries` and settings fingerprint `config_hash`.
    pub fn of(entries: &Entries, config_hash: &str) -> SecretState {
        let stamps = entries.iter().map(|(source, t)| {
            let stamp = Stamp {
                refreshed_at: t.issued_at,
                expires_at: t.expires_at,
            };
            (source.clone(), stamp)
        });
        Self::from_stamps(stamps.collect(), config_hash)
    }

    /// The state of a Secret holding tokens of these times, written with `config_hash`.
    pub fn from_stamps(mut stamps: Vec<(Source, Stamp)>, config_hash: &str) -> SecretState {
        stamps.sort_by(|a, b| a.0.cmp(&b.0));
        let first = stamps.iter().map(|(_, s)| *s).min_by_key(|s| s.expires_at);
        let public_only = stamps.iter().all(|(s, _)| *s == Source::Public);
        SecretState {
            expires_at: first.map(|s| s.expires_at),
            refreshed_at: first.map(|s| s.refreshed_at),
            config_hash: Some(config_hash.to_owned()),
            sources: if public_only {
                Box::default()
            } else {
                stamps.into_boxed_slice()
            },
        }
    }

    /// Each source's token times, without copying anything: a plan reads them for every Secret
    /// on every reconcile.
    pub fn stamps(&self) -> impl Iterator<Item = (&Source, Stamp)> {
        // ECR Public's token alone is described by the two times.
        let alone = match (self.sources.is_empty(), self.refreshed_at, self.expires_at) {
            (true, Some(refreshed_at), Some(expires_at)) => Some((
                &Source::Public,
                Stamp {
                    refreshed_at,
                    expires_at,
                },
            )),
            _ => None,
        };
        let listed = self.sources.iter().map(|(s, t)| (s, *t));
        listed.chain(alone)
    }

    /// `source`'s token times, if the Secret holds its token.
    pub fn stamp(&self, source: &Source) -> Option<Stamp> {
        self.stamps().find(|(s, _)| *s == source).map(|(_, t)| t)
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
            sources: get(SOURCES).map(|v| parse_sources(v)).unwrap_or_default(),
        }
    }
}

/// The `sources` annotation's value.
fn sources_annotation(sources: &[(Source, Stamp)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = sources
        .iter()
        .map(|(source, stamp)| {
            let times = json!({
                "refreshedAt": rfc3339(stamp.refreshed_at),
                "expiresAt": rfc3339(stamp.expires_at),
            });
            (source.key(), times)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Reads the `sources` annotation; entries that do not parse are left out (their source is then
/// due, as an unparsable time makes the whole Secret due).
fn parse_sources(value: &str) -> Box<[(Source, Stamp)]> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(value) else {
        return Box::default();
    };
    let time = |v: &serde_json::Value, k: &str| {
        let parsed = DateTime::parse_from_rfc3339(v.get(k)?.as_str()?).ok()?;
        Some(parsed.with_timezone(&Utc))
    };
    let mut stamps: Vec<(Source, Stamp)> = (map.iter())
        .filter_map(|(key, times)| {
            let stamp = Stamp {
                refreshed_at: time(times, "refreshedAt")?,
                expires_at: time(times, "expiresAt")?,
            };
            Some((Source::from_key(key)?, stamp))
        })
        .collect();
    stamps.sort_by(|a, b| a.0.cmp(&b.0));
    stamps.into_boxed_slice()
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

/// The full Secret to server-side apply, holding `entries` (`{"auths":{}}` when empty).
pub fn build(spec: &SecretSpec<'_>, entries: &Entries) -> Secret {
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
    let hash = config_hash(spec.settings, spec.service_account);
    let state = SecretState::of(entries, &hash);
    annotations.insert(CONFIG_HASH.into(), hash);
    if let (Some(expires), Some(refreshed)) = (state.expires_at, state.refreshed_at) {
        annotations.insert(EXPIRES_AT.into(), rfc3339(expires));
        annotations.insert(REFRESHED_AT.into(), rfc3339(refreshed));
    }
    if !state.sources.is_empty() {
        annotations.insert(SOURCES.into(), sources_annotation(&state.sources));
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
            ByteString(docker_config(spec.settings, entries)),
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
    use crate::{
        aws::token::test_token,
        crd::{PrivateEndpoint, PrivateRegistry, SecretTemplate},
    };
    use chrono::Duration;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn public(token: &Token) -> Entries {
        Entries::from([(Source::Public, token.clone())])
    }

    #[test]
    fn docker_config_has_the_shape_the_kubelet_reads() {
        let token = test_token("pw", now(), Duration::hours(12));
        let settings = PullSecretSettings {
            registries: vec![Registry::PublicEcrAws, Registry::DualStack],
            ..Default::default()
        };
        let json: serde_json::Value =
            serde_json::from_slice(&docker_config(&settings, &public(&token))).unwrap();
        for host in ["public.ecr.aws", "ecr-public.aws.com"] {
            assert_eq!(json["auths"][host]["username"], "AWS");
            assert_eq!(json["auths"][host]["password"], "pw");
            assert_eq!(json["auths"][host]["auth"], token.auth());
        }
        assert_eq!(
            docker_config(&settings, &Entries::new()),
            br#"{"auths":{}}"#
        );
    }

    #[test]
    fn the_most_hosts_a_secret_may_hold_fit_in_a_secret_with_tokens_of_8_kib() {
        use crate::controller::spec::MAX_HOSTS;
        let ids: Vec<String> = (0..MAX_HOSTS - 1)
            .map(|i| format!("{:012}", i + 1))
            .collect();
        let settings = PullSecretSettings {
            private_registries: vec![PrivateRegistry {
                region: "us-west-2".into(),
                registry_ids: ids,
                endpoints: vec![PrivateEndpoint::Standard],
            }],
            ..Default::default()
        };
        // base64("AWS:" + password) of 8 KiB.
        let token = test_token(&"p".repeat(6140), now(), Duration::hours(12));
        assert!(token.auth().len() >= 8 * 1024);
        let entries = Entries::from([
            (Source::Public, token.clone()),
            (Source::private("us-west-2"), token),
        ]);
        let config = docker_config(&settings, &entries);
        let hosts = serde_json::from_slice::<serde_json::Value>(&config).unwrap()["auths"]
            .as_object()
            .unwrap()
            .len();
        assert_eq!(hosts, MAX_HOSTS);
        assert!(config.len() < 1024 * 1024, "{} bytes", config.len());
    }

    fn mixed() -> PullSecretSettings {
        PullSecretSettings {
            private_registries: vec![
                PrivateRegistry {
                    region: "us-west-2".into(),
                    registry_ids: vec!["111111111111".into(), "222222222222".into()],
                    endpoints: vec![PrivateEndpoint::Standard, PrivateEndpoint::DualStack],
                },
                PrivateRegistry {
                    region: "cn-north-1".into(),
                    registry_ids: Vec::new(),
                    endpoints: vec![PrivateEndpoint::Standard],
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn private_registries_join_the_same_config_each_with_its_regions_token() {
        let settings = mixed();
        assert_eq!(
            sources(&settings),
            [
                Source::Public,
                Source::private("cn-north-1"),
                Source::private("us-west-2")
            ]
        );
        let public_token = test_token("public-pw", now(), Duration::hours(12));
        let west = test_token("west-pw", now(), Duration::hours(12));
        let china = test_token("china-pw", now(), Duration::hours(12))
            .with_account(Some("333333333333".into()));
        let entries = Entries::from([
            (Source::Public, public_token),
            (Source::private("us-west-2"), west.clone()),
            (Source::private("cn-north-1"), china),
        ]);
        let json: serde_json::Value =
            serde_json::from_slice(&docker_config(&settings, &entries)).unwrap();
        let passwords: BTreeMap<&str, &str> = (json["auths"].as_object().unwrap().iter())
            .map(|(host, e)| (host.as_str(), e["password"].as_str().unwrap()))
            .collect();
        assert_eq!(
            passwords,
            BTreeMap::from([
                ("111111111111.dkr-ecr.us-west-2.on.aws", "west-pw"),
                ("111111111111.dkr.ecr.us-west-2.amazonaws.com", "west-pw"),
                ("222222222222.dkr-ecr.us-west-2.on.aws", "west-pw"),
                ("222222222222.dkr.ecr.us-west-2.amazonaws.com", "west-pw"),
                (
                    "333333333333.dkr.ecr.cn-north-1.amazonaws.com.cn",
                    "china-pw"
                ),
                ("public.ecr.aws", "public-pw"),
            ])
        );
        // A failing source's entry is found again, under any of its hosts.
        let config = docker_config(&settings, &entries);
        assert_eq!(
            held_auth(&config, &Source::private("us-west-2")),
            Some((west.auth().to_owned(), Some("111111111111".into())))
        );
        assert_eq!(held_auth(&config, &Source::private("eu-west-1")), None);
    }

    #[test]
    fn each_sources_times_round_trip_through_the_annotations() {
        let settings = mixed();
        let spec = SecretSpec {
            name: "pull",
            namespace: "ns",
            settings: &settings,
            service_account: None,
            owner: None,
            extra_labels: BTreeMap::new(),
        };
        let later = now() + Duration::hours(1);
        let entries = Entries::from([
            (Source::Public, test_token("a", later, Duration::hours(12))),
            (
                Source::private("us-west-2"),
                test_token("b", now(), Duration::hours(12)),
            ),
        ]);
        let secret = build(&spec, &entries);
        let state = SecretState::from_meta(&secret.metadata);
        assert_eq!(
            state,
            SecretState::of(&entries, &config_hash(&settings, None))
        );
        assert_eq!(
            state.expires_at,
            Some(now() + Duration::hours(12)),
            "the first to expire"
        );
        assert_eq!(state.stamps().count(), 2);
        assert_eq!(
            state.stamp(&Source::Public).map(|s| s.refreshed_at),
            Some(later)
        );
        // A Secret of ECR Public alone keeps its annotations as before: no sources annotation.
        let plain = PullSecretSettings::default();
        let spec = SecretSpec {
            settings: &plain,
            ..spec
        };
        let token = test_token("a", now(), Duration::hours(12));
        let annotations = build(&spec, &public(&token)).metadata.annotations.unwrap();
        assert!(!annotations.contains_key(SOURCES));
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
        let secret = build(&spec, &public(&token));
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
            SecretState::of(&public(&token), &config_hash(&settings, None)),
            "annotations round-trip exactly"
        );
        assert_eq!(secret.metadata.annotations.as_ref().unwrap()["note"], "x");

        let empty = build(&spec, &Entries::new());
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
        assert_ne!(config_hash(&mixed(), None), config_hash(&c, None));
        let mut reordered = mixed();
        reordered.private_registries.reverse();
        reordered.private_registries[1].registry_ids.reverse();
        assert_eq!(config_hash(&reordered, None), config_hash(&mixed(), None));
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
