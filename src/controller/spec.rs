//! What the CRD schema cannot check, checked once per reconcile: the refresh margin, the
//! registries, the Secret name, the namespace selector; and which namespaces a cluster resource
//! selects. Pure.
//!
//! An API server that skipped the schema's CEL rules (an old CRD, a client that bypassed
//! validation) must not make the operator misbehave: what gets through is `InvalidSpec`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    ResourceExt,
    api::PartialObjectMeta,
    core::{Selector, SelectorExt},
};

use crate::{
    Error,
    crd::{ClusterEcrPublicPullSecretSpec, PullSecretSettings},
    hosts,
    schedule::{RefreshBefore, Rotation},
};

/// The most registry hosts one Secret may hold. Each entry holds its token twice (password and
/// `auth`, a few KiB each), and a Secret holds at most 1 MiB: the schema's own limits
/// (8 regions × 20 accounts × 4 forms) would allow a Secret too large to write. 64 entries of
/// 8 KiB tokens fit (a unit test builds them), and are more than one workload pulls from.
pub const MAX_HOSTS: usize = 64;

/// Registries a Secret can be written for: at least one, at most [`MAX_HOSTS`], each host form
/// existing in its region's partition.
pub fn registries(settings: &PullSecretSettings) -> Result<(), Error> {
    if settings.registries.is_empty() && settings.private_registries.is_empty() {
        return Err(Error::InvalidSpec(
            "registries is empty and privateRegistries lists none: the Secret would hold \
             nothing. Name public.ecr.aws in registries, or a region in privateRegistries"
                .into(),
        ));
    }
    let private: usize = (settings.private_registries.iter())
        .map(hosts::host_count)
        .sum();
    let count = settings.registries.len() + private;
    if count > MAX_HOSTS {
        return Err(Error::InvalidSpec(format!(
            "the Secret would hold {count} registry hosts ({private} from privateRegistries: \
             accounts × endpoints per region), more than the {MAX_HOSTS} one Secret may hold \
             (a Secret is limited to 1 MiB). Split the registries across resources (a pod may \
             list several imagePullSecrets), or list fewer endpoints"
        )));
    }
    hosts::check(&settings.private_registries)
}

/// The rotation schedule of the resource with `uid`: its `spec.refreshBefore`, else the
/// operator's default.
pub fn rotation(
    settings: &PullSecretSettings,
    default: Option<Duration>,
    uid: &str,
) -> Result<Rotation, Error> {
    let requested = match settings.refresh_before.as_deref() {
        Some(s) => Some(RefreshBefore::parse(s)?.get()),
        None => default,
    };
    Ok(Rotation::new(requested, uid))
}

/// A Secret name the API server accepts.
pub fn secret_name(name: &str) -> Result<(), Error> {
    if is_dns1123_subdomain(name) {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "secret name {name:?} is not a valid DNS-1123 subdomain"
    )))
}

/// A cluster resource's selector, parsed.
pub fn namespace_selector(
    spec: &ClusterEcrPublicPullSecretSpec,
) -> Result<Option<Selector>, Error> {
    spec.namespace_selector
        .clone()
        .map(|sel| {
            Selector::try_from(sel)
                .map_err(|e| Error::InvalidSpec(format!("spec.namespaceSelector: {e}")))
        })
        .transpose()
}

/// Whether the resource selects a namespace with this name and these labels.
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
    Ok(match namespace_selector(spec)? {
        None => spec.namespaces.is_empty(),
        Some(selector) => selector.matches(labels),
    })
}

/// The namespaces a cluster resource selects, by name. Terminating namespaces are skipped:
/// writes there fail, and their Secrets go with them.
pub fn selected(
    spec: &ClusterEcrPublicPullSecretSpec,
    namespaces: &[Arc<PartialObjectMeta<Namespace>>],
) -> Result<Vec<String>, Error> {
    let mut selected = Vec::new();
    for ns in namespaces {
        if ns.metadata.deletion_timestamp.is_none() && selects(spec, &ns.name_any(), ns.labels())? {
            selected.push(ns.name_any());
        }
    }
    selected.sort();
    Ok(selected)
}

/// DNS-1123 subdomain, as the API server checks Secret names.
fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_accounts(regions: usize, accounts: usize) -> PullSecretSettings {
        let ids: Vec<String> = (0..accounts).map(|i| format!("{:012}", i + 1)).collect();
        let registry = |r: usize| crate::crd::PrivateRegistry {
            region: format!("us-west-{}", r + 1),
            registry_ids: ids.clone(),
            endpoints: vec![crate::crd::PrivateEndpoint::Standard],
        };
        PullSecretSettings {
            private_registries: (0..regions).map(registry).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_secret_holds_at_most_max_hosts() {
        // ECR Public's one host + 7 regions × 9 accounts = 64.
        assert!(registries(&with_accounts(7, 9)).is_ok());
        let err = registries(&with_accounts(8, 9)).unwrap_err();
        assert_eq!(err.label(), "InvalidSpec");
        let message = err.to_string();
        assert!(message.contains("73 registry hosts"), "{message}");
        assert!(
            message.contains("Split the registries across resources"),
            "{message}"
        );
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

    #[test]
    fn terminating_namespaces_are_never_selected() {
        let ns = |name: &str, terminating: bool| {
            let mut meta = PartialObjectMeta::<Namespace>::default();
            meta.metadata.name = Some(name.into());
            if terminating {
                let epoch = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
                meta.metadata.deletion_timestamp = Some(Time(epoch));
            }
            Arc::new(meta)
        };
        let namespaces = [ns("b", false), ns("gone", true), ns("a", false)];
        let spec = ClusterEcrPublicPullSecretSpec::default();
        assert_eq!(selected(&spec, &namespaces).unwrap(), ["a", "b"]);
    }

    #[test]
    fn secret_names_follow_dns1123() {
        for ok in ["a", "pull-secret", "a.b-c.d", "0abc"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn an_invalid_margin_or_selector_is_invalid_spec() {
        let mut settings = PullSecretSettings {
            refresh_before: Some("13h".into()),
            ..Default::default()
        };
        assert_eq!(
            rotation(&settings, None, "u").unwrap_err().label(),
            "InvalidSpec"
        );
        settings.refresh_before = None;
        let default = Some(Duration::from_secs(60));
        assert_eq!(
            rotation(&settings, default, "u").unwrap(),
            Rotation::new(default, "u")
        );
        let spec = ClusterEcrPublicPullSecretSpec {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![Default::default()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            namespace_selector(&spec).unwrap_err().label(),
            "InvalidSpec"
        );
        assert_eq!(secret_name("A").unwrap_err().label(), "InvalidSpec");
    }
}
