//! The `EcrPublicPullSecret` custom resource.
//!
//! Every field carries a doc comment: it becomes the CRD's `description` and so the text of
//! `kubectl explain ecrpublicpullsecret.spec`. Validation lives in the schema wherever it can
//! (patterns, enums, CEL) so that `kubectl apply` rejects bad input; what still gets through is
//! reported on the status by the reconciler.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the operator's resources.
pub const GROUP: &str = "ecrpublic.pullsecrets.dev";
/// Field manager for every write, and the `app.kubernetes.io/managed-by` value on Secrets.
pub const MANAGER: &str = "ecr-public-pull-secret-operator";

/// Keeps a `kubernetes.io/dockerconfigjson` Secret with a fresh Amazon ECR Public authorization token.
///
/// Reference the Secret in a Pod's `imagePullSecrets` to pull from public.ecr.aws as an
/// authenticated user (10 pulls/s instead of the anonymous 1 pull/s and 500 GB/month).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ecrpublic.pullsecrets.dev",
    version = "v1alpha1",
    kind = "EcrPublicPullSecret",
    plural = "ecrpublicpullsecrets",
    shortname = "epps",
    namespaced,
    status = "EcrPublicPullSecretStatus",
    derive = "PartialEq",
    doc = "Keeps a kubernetes.io/dockerconfigjson Secret with a fresh Amazon ECR Public token.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Next Refresh","type":"date","jsonPath":".status.nextRefreshTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EcrPublicPullSecretSpec {
    /// Name of the Secret to write in this resource's namespace. Defaults to the resource's own
    /// name. Must be a DNS-1123 subdomain. A Secret of that name that this resource does not
    /// control is never overwritten (the resource reports `SecretConflict` instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,

    /// A ServiceAccount in this resource's namespace whose IAM role fetches the token, instead of
    /// the operator's own. The operator requests a short-lived token for it (audience
    /// `sts.amazonaws.com`) and exchanges it with STS `AssumeRoleWithWebIdentity` for the role in
    /// the ServiceAccount's `eks.amazonaws.com/role-arn` annotation (or `roleArn` when set). The
    /// role must match the operator's `--allowed-role-arns` and trust this ServiceAccount, so each
    /// team uses its own role without lending it to the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: Option<String>,

    /// Everything about the Secret's content and rotation, shared with other kinds.
    #[serde(flatten)]
    pub settings: PullSecretSettings,
}

/// Secret content and rotation settings shared by every kind the operator serves.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PullSecretSettings {
    /// ECR Public host names written as keys under `auths` in the docker config. Allowed:
    /// `public.ecr.aws` and its dual-stack name `ecr-public.aws.com`. Default: `["public.ecr.aws"]`.
    /// `[]` writes no ECR Public entry (and fetches no ECR Public token): for a Secret of
    /// `privateRegistries` only.
    #[serde(default = "default_registries")]
    #[schemars(length(max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub registries: Vec<Registry>,

    /// Amazon ECR private registries written into the same Secret, one entry per region: the
    /// operator calls ECR `GetAuthorizationToken` once per identity per region (the token covers
    /// every registry there the identity may pull from) and rotates them with the ECR Public
    /// token, in one write. A region that fails is named in the `Ready` condition while the
    /// other entries stay fresh; its previous entry is kept until it expires. The identity needs
    /// `ecr:GetAuthorizationToken`, and pull permissions on the repositories. At most 8 regions,
    /// and at most 64 registry hosts in the Secret (accounts × endpoints of every region, plus
    /// `registries`): more is `InvalidSpec`, as a Secret holds at most 1 MiB.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["region"]))]
    pub private_registries: Vec<PrivateRegistry>,

    /// Rotate the token when less than this remains before it expires, as a duration such as
    /// `"6h"`, `"90m"` or `"1h30m"`. Must be shorter than the token's 12h lifetime. Default: half
    /// the token's lifetime (6h for ECR Public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) < duration('12h')").message("refreshBefore must be greater than 0s and shorter than the 12h token lifetime"))]
    pub refresh_before: Option<String>,

    /// What to do once the token in the Secret has really expired and renewal keeps failing.
    /// `RemoveAuth` (default) rewrites the Secret as `{"auths":{}}` so the kubelet falls back to
    /// anonymous pulls instead of failing with 403; `Keep` leaves the expired token in place.
    #[serde(default)]
    pub on_expiry: OnExpiry,

    /// Labels and annotations copied onto the Secret. Keys under `ecrpublic.pullsecrets.dev/` and
    /// the `app.kubernetes.io/managed-by` label are the operator's own and are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!has(self.labels) || self.labels.all(k, !k.startsWith('ecrpublic.pullsecrets.dev/') && k != 'app.kubernetes.io/managed-by')").message("secretTemplate.labels may not set the operator's own keys: ecrpublic.pullsecrets.dev/* and app.kubernetes.io/managed-by"))]
    #[x_kube(validation = Rule::new("!has(self.annotations) || self.annotations.all(k, !k.startsWith('ecrpublic.pullsecrets.dev/'))").message("secretTemplate.annotations may not set the operator's own keys: ecrpublic.pullsecrets.dev/*"))]
    pub secret_template: Option<SecretTemplate>,

    /// IAM role whose token is written, for example
    /// `arn:aws:iam::123456789012:role/ecr-public-team-a`. Without `serviceAccountName` the operator
    /// assumes it from its own identity (`sts:AssumeRole`); with it, this overrides the
    /// ServiceAccount's annotation. Must match one of the operator's `--allowed-role-arns`
    /// patterns. Default: the operator's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 20, max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$")
    )]
    pub role_arn: Option<String>,

    /// ServiceAccounts (in the Secret's namespace) whose `imagePullSecrets` should name the
    /// Secret, so pods running as them use it without editing their manifests; `"*"` means every
    /// ServiceAccount there. The operator adds only its own entry, keeps every other entry as it
    /// was, and removes only entries it added when the resource goes or a name leaves this list.
    /// Needs the operator's `--patch-service-accounts` (chart value
    /// `serviceAccountPatching.enabled`); ignored without it. Pods created before their
    /// ServiceAccount is patched do not get the Secret: create this resource before workloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            length(min = 1, max = 253),
            regex(
                pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$"
            )
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub service_accounts: Vec<String>,
}

impl PullSecretSettings {
    /// Whether `serviceAccounts` names this ServiceAccount (or `"*"`).
    pub fn patches_service_account(&self, name: &str) -> bool {
        self.service_accounts.iter().any(|n| n == "*" || n == name)
    }
}

impl Default for PullSecretSettings {
    fn default() -> Self {
        Self {
            registries: default_registries(),
            private_registries: Vec::new(),
            refresh_before: None,
            on_expiry: OnExpiry::default(),
            secret_template: None,
            role_arn: None,
            service_accounts: Vec::new(),
        }
    }
}

fn default_registries() -> Vec<Registry> {
    vec![Registry::PublicEcrAws]
}

/// Amazon ECR private registries of one region.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PrivateRegistry {
    /// AWS Region of the registries, for example `us-west-2`, `eu-central-1` or `cn-north-1`
    /// (China Regions use the `amazonaws.com.cn` host names).
    #[schemars(
        length(min = 9, max = 32),
        regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
    )]
    pub region: String,

    /// The 12-digit AWS account IDs whose registries in this region are written, one host name
    /// each (at most 20). Default: the account of the identity the token is fetched with. The
    /// identity still needs pull permission on each account's repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(regex(pattern = r"^[0-9]{12}$")))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub registry_ids: Vec<String>,

    /// Host name forms written for each account: `Standard`
    /// (`<account>.dkr.ecr.<region>.amazonaws.com`), `DualStack` (IPv4 and IPv6,
    /// `<account>.dkr-ecr.<region>.on.aws`), `Fips` (`<account>.dkr.ecr-fips.<region>.amazonaws.com`)
    /// and `FipsDualStack` (`<account>.dkr-ecr-fips.<region>.on.aws`). FIPS hosts exist in US and
    /// GovCloud Regions only; China Regions have `Standard` only. Default: `["Standard"]`.
    #[serde(default = "default_endpoints")]
    #[schemars(length(min = 1, max = 4))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub endpoints: Vec<PrivateEndpoint>,
}

fn default_endpoints() -> Vec<PrivateEndpoint> {
    vec![PrivateEndpoint::Standard]
}

/// A host name form of Amazon ECR private registries.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum PrivateEndpoint {
    /// `<account>.dkr.ecr.<region>.amazonaws.com` (`.amazonaws.com.cn` in China).
    Standard,
    /// `<account>.dkr-ecr.<region>.on.aws`.
    DualStack,
    /// `<account>.dkr.ecr-fips.<region>.amazonaws.com`.
    Fips,
    /// `<account>.dkr-ecr-fips.<region>.on.aws`.
    FipsDualStack,
}

/// A registry host name served by Amazon ECR Public.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum Registry {
    /// The classic endpoint, `public.ecr.aws`.
    #[serde(rename = "public.ecr.aws")]
    PublicEcrAws,
    /// The dual-stack (IPv4 and IPv6) endpoint, `ecr-public.aws.com`.
    #[serde(rename = "ecr-public.aws.com")]
    DualStack,
}

impl Registry {
    /// The host name written under `auths`.
    pub fn host(self) -> &'static str {
        match self {
            Registry::PublicEcrAws => "public.ecr.aws",
            Registry::DualStack => "ecr-public.aws.com",
        }
    }
}

/// Behaviour once the token has expired and renewal is failing.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum OnExpiry {
    /// Replace the Secret's content with `{"auths":{}}` so pulls fall back to anonymous.
    #[default]
    RemoveAuth,
    /// Leave the expired token in the Secret.
    Keep,
}

/// Metadata copied onto the generated Secret.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Labels added to the Secret (at most 64; values at most 63 characters, as Kubernetes
    /// allows).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Secret (at most 64, values at most 4096 characters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state, written by the operator only.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EcrPublicPullSecretStatus {
    /// `Ready` is True while the Secret holds a valid token; otherwise its reason says why
    /// (`NoCredentials`, `AccessDenied`, `Transient`, `AwsError`, `SecretConflict`, `InvalidSpec`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the Secret this resource writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// When the token currently in the Secret expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the token currently in the Secret was obtained from ECR Public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<Time>,
    /// When the operator plans to rotate the token next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,
}

/// Keeps a `kubernetes.io/dockerconfigjson` Secret with a fresh Amazon ECR Public token in every
/// selected namespace, from one token per identity per rotation.
///
/// Deleting it deletes every Secret it wrote: its finalizer stays until the operator has removed
/// them (they are found by the `ecrpublic.pullsecrets.dev/cluster-owner` label).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ecrpublic.pullsecrets.dev",
    version = "v1alpha1",
    kind = "ClusterEcrPublicPullSecret",
    plural = "clusterecrpublicpullsecrets",
    shortname = "cepps",
    status = "ClusterEcrPublicPullSecretStatus",
    derive = "PartialEq",
    doc = "Keeps an ECR Public pull Secret fresh in every selected namespace.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Selected","type":"integer","jsonPath":".status.selectedNamespaces"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failedNamespaces"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEcrPublicPullSecretSpec {
    /// Name of the Secret written in each selected namespace. Defaults to the resource's own name.
    /// A Secret of that name that this resource did not write is never overwritten (that namespace
    /// reports `SecretConflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,

    /// Namespaces whose labels match are selected, e.g. `{"matchLabels": {"team": "payments"}}`.
    /// `{}` selects every namespace. Omitted: every namespace, unless `namespaces` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces selected by name, in addition to those the selector matches (at most 1000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 1000),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub namespaces: Vec<String>,

    /// Namespaces never selected, whatever their labels (for example `kube-system`; at most
    /// 1000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 1000),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub exclude_namespaces: Vec<String>,

    /// Everything about the Secrets' content and rotation, shared with `EcrPublicPullSecret`.
    #[serde(flatten)]
    pub settings: PullSecretSettings,
}

/// One namespace whose Secret could not be written.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceFailure {
    /// The namespace.
    pub namespace: String,
    /// Stable reason, as in `Ready` conditions (`SecretConflict`, `KubeError`, ...).
    pub reason: String,
    /// What happened and what to do.
    pub message: String,
}

/// Observed state of a `ClusterEcrPublicPullSecret`, written by the operator only.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEcrPublicPullSecretStatus {
    /// `Ready` is True while every selected namespace holds a valid token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Namespaces currently selected (terminating namespaces are not counted).
    #[serde(default)]
    pub selected_namespaces: i32,
    /// Selected namespaces whose Secret holds a valid token.
    #[serde(default)]
    pub ready_namespaces: i32,
    /// Selected namespaces whose Secret could not be written.
    #[serde(default)]
    pub failed_namespaces: i32,
    /// The first failing namespaces (at most 20, by name) with their reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<NamespaceFailure>,
    /// When the token in the Secrets expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the operator plans to rotate the token next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,
    /// The name the Secrets were last written under. Besides the current `secretName`, only
    /// Secrets of this name are ever removed (a namespace left the selection, `secretName`
    /// changed, the resource was deleted), whatever labels anyone else puts on theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

impl ClusterEcrPublicPullSecret {
    /// Name of the Secret written in each namespace.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }
}

impl EcrPublicPullSecret {
    /// Name of the Secret this resource manages.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }
}

/// The namespaced CRD as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> String {
    // serde_yaml cannot fail on a value that serde_json can represent.
    serde_yaml::to_string(&EcrPublicPullSecret::crd()).expect("CRD serializes to YAML")
}

/// The cluster-scoped CRD as YAML, exactly as committed under `crds/`.
pub fn cluster_crd_yaml() -> String {
    serde_yaml::to_string(&ClusterEcrPublicPullSecret::crd()).expect("CRD serializes to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_fields_take_documented_defaults() {
        let spec: EcrPublicPullSecretSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.secret_name, None);
        assert_eq!(spec.settings.registries, vec![Registry::PublicEcrAws]);
        assert_eq!(spec.settings.on_expiry, OnExpiry::RemoveAuth);
    }

    #[test]
    fn schema_validates_in_the_api_server() {
        let crd = serde_json::to_value(EcrPublicPullSecret::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let props = &spec["properties"];
        assert_eq!(
            props["registries"]["items"]["enum"],
            serde_json::json!(["public.ecr.aws", "ecr-public.aws.com"])
        );
        assert_eq!(props["registries"]["x-kubernetes-list-type"], "set");
        assert_eq!(
            props["onExpiry"]["enum"],
            serde_json::json!(["RemoveAuth", "Keep"])
        );
        assert!(props["refreshBefore"]["pattern"].is_string());
        let rule = &props["refreshBefore"]["x-kubernetes-validations"][0]["rule"];
        assert!(rule.as_str().unwrap().contains("duration('12h')"));
        assert!(props["secretName"]["pattern"].is_string());
        for (name, field) in props.as_object().unwrap() {
            assert!(
                field["description"].is_string(),
                "spec.{name} needs a doc comment"
            );
        }
        let status =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(
            status["properties"]["conditions"]["x-kubernetes-list-type"],
            "map"
        );
    }

    #[test]
    fn secret_defaults_to_the_resource_name() {
        let mut cr = EcrPublicPullSecret::new("team-a", EcrPublicPullSecretSpec::default());
        assert_eq!(cr.secret_name(), "team-a");
        cr.spec.secret_name = Some("pull".into());
        assert_eq!(cr.secret_name(), "pull");
    }
}
