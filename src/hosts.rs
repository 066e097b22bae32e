//! The registry host names a Secret's `auths` keys are, per token source. Pure.
//!
//! ECR Public has two fixed hosts. A private ECR token is regional and covers every registry in
//! its region that the identity may read; the kubelet matches `auths` keys against the image's
//! host, so each account's registry is listed by its exact host name, in each form asked for.
//! (The kubelet's keyring also matches glob keys such as `*.dkr.ecr.us-west-2.amazonaws.com`, but
//! other clients reading the same docker config, `docker`, `crane` and `skopeo` among them, do
//! not; exact hosts work everywhere and send the token only to the registries the user named.)
//! Host forms, from the Amazon ECR endpoints reference:
//! - standard: `<account>.dkr.ecr.<region>.amazonaws.com`, `.amazonaws.com.cn` in China;
//! - dual-stack: `<account>.dkr-ecr.<region>.on.aws`;
//! - FIPS: `<account>.dkr.ecr-fips.<region>.amazonaws.com` and `<account>.dkr-ecr-fips.<region>.on.aws`
//!   (US and GovCloud Regions).

use crate::{
    Error,
    crd::{PrivateEndpoint, PrivateRegistry},
};

/// The AWS partition a region belongs to, as far as host names differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partition {
    /// Commercial and GovCloud Regions: `amazonaws.com`.
    Aws,
    /// Beijing and Ningxia: `amazonaws.com.cn`, standard hosts only.
    China,
}

fn partition(region: &str) -> Result<Partition, Error> {
    if region.starts_with("cn-") {
        Ok(Partition::China)
    } else if region.starts_with("us-iso") {
        // The isolated partitions have host suffixes of their own, not documented publicly.
        Err(Error::InvalidSpec(format!(
            "privateRegistries region {region}: the isolated AWS partitions are not supported"
        )))
    } else {
        Ok(Partition::Aws)
    }
}

/// Checks what the schema cannot: each region's host forms exist in its partition.
pub fn check(registries: &[PrivateRegistry]) -> Result<(), Error> {
    for registry in registries {
        let partition = partition(&registry.region)?;
        if partition == Partition::China
            && let Some(form) = registry
                .endpoints
                .iter()
                .find(|e| **e != PrivateEndpoint::Standard)
        {
            return Err(Error::InvalidSpec(format!(
                "privateRegistries region {}: {form:?} host names do not exist in the China \
                 Regions; use endpoints: [Standard]",
                registry.region
            )));
        }
    }
    Ok(())
}

/// The host of `account`'s registry in `region`, in `form` (its partition already checked).
pub fn private_host(account: &str, region: &str, form: PrivateEndpoint) -> String {
    let china = region.starts_with("cn-");
    match form {
        PrivateEndpoint::Standard if china => {
            format!("{account}.dkr.ecr.{region}.amazonaws.com.cn")
        }
        PrivateEndpoint::Standard => format!("{account}.dkr.ecr.{region}.amazonaws.com"),
        PrivateEndpoint::DualStack => format!("{account}.dkr-ecr.{region}.on.aws"),
        PrivateEndpoint::Fips => format!("{account}.dkr.ecr-fips.{region}.amazonaws.com"),
        PrivateEndpoint::FipsDualStack => format!("{account}.dkr-ecr-fips.{region}.on.aws"),
    }
}

/// Whether `host` is `account`'s registry in `region`, in any form.
pub fn is_private_host(host: &str, account: &str, region: &str) -> bool {
    use PrivateEndpoint::*;
    [Standard, DualStack, Fips, FipsDualStack]
        .into_iter()
        .any(|form| private_host(account, region, form) == host)
}

/// Every host written for `registry`: each listed account (or, with none listed, `own`: the
/// account of the identity the token was fetched with) in each form asked for.
pub fn private_hosts(registry: &PrivateRegistry, own: Option<&str>) -> Vec<String> {
    let accounts: Vec<&str> = if registry.registry_ids.is_empty() {
        own.into_iter().collect()
    } else {
        registry.registry_ids.iter().map(String::as_str).collect()
    };
    let mut hosts: Vec<String> = accounts
        .iter()
        .flat_map(|account| {
            (registry.endpoints.iter()).map(|form| private_host(account, &registry.region, *form))
        })
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

/// How many hosts [`private_hosts`] writes for `registry`: one account (the identity's own)
/// when none is listed.
pub fn host_count(registry: &PrivateRegistry) -> usize {
    let distinct = |v: Vec<String>| {
        v.into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let accounts = distinct(registry.registry_ids.clone()).max(1);
    let forms = (registry
        .endpoints
        .iter()
        .collect::<std::collections::BTreeSet<_>>())
    .len();
    accounts * forms
}

/// The account a private token's `proxyEndpoint` names (`https://<account>.dkr.ecr.<region>...`).
pub fn account_of_endpoint(endpoint: &str) -> Option<String> {
    let host = endpoint
        .strip_prefix("https://")
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()?;
    let account = host.split('.').next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(region: &str, ids: &[&str], endpoints: &[PrivateEndpoint]) -> PrivateRegistry {
        PrivateRegistry {
            region: region.into(),
            registry_ids: ids.iter().map(|s| s.to_string()).collect(),
            endpoints: endpoints.to_vec(),
        }
    }

    #[test]
    fn every_form_has_the_documented_host_name() {
        use PrivateEndpoint::*;
        let all = registry(
            "us-west-2",
            &["123456789012"],
            &[Standard, DualStack, Fips, FipsDualStack],
        );
        assert_eq!(
            private_hosts(&all, None),
            [
                "123456789012.dkr-ecr-fips.us-west-2.on.aws",
                "123456789012.dkr-ecr.us-west-2.on.aws",
                "123456789012.dkr.ecr-fips.us-west-2.amazonaws.com",
                "123456789012.dkr.ecr.us-west-2.amazonaws.com",
            ]
        );
        let china = registry("cn-north-1", &["123456789012"], &[Standard]);
        assert_eq!(
            private_hosts(&china, None),
            ["123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"]
        );
        let gov = registry("us-gov-west-1", &["123456789012"], &[Fips]);
        assert_eq!(
            private_hosts(&gov, None),
            ["123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"]
        );
    }

    #[test]
    fn listed_accounts_replace_the_identitys_own() {
        let listed = registry(
            "eu-west-1",
            &["111111111111", "222222222222"],
            &[PrivateEndpoint::Standard],
        );
        assert_eq!(
            private_hosts(&listed, Some("999999999999")),
            [
                "111111111111.dkr.ecr.eu-west-1.amazonaws.com",
                "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
            ]
        );
        let own = registry("eu-west-1", &[], &[PrivateEndpoint::Standard]);
        assert_eq!(
            private_hosts(&own, Some("999999999999")),
            ["999999999999.dkr.ecr.eu-west-1.amazonaws.com"]
        );
        assert!(
            private_hosts(&own, None).is_empty(),
            "no account known, no host"
        );
    }

    #[test]
    fn the_host_count_is_what_is_written() {
        use PrivateEndpoint::*;
        let cases = [
            registry("eu-west-1", &[], &[Standard]),
            registry("eu-west-1", &[], &[Standard, DualStack, Fips]),
            registry("us-west-2", &["111111111111", "222222222222"], &[Standard]),
            // An old CRD without the schema's set rules: duplicates write one host.
            registry(
                "us-west-2",
                &["111111111111", "111111111111"],
                &[Fips, Fips, Standard],
            ),
        ];
        for r in cases {
            assert_eq!(
                host_count(&r),
                private_hosts(&r, Some("999999999999")).len(),
                "{r:?}"
            );
        }
    }

    #[test]
    fn forms_a_partition_lacks_are_refused() {
        let fips_in_china = registry("cn-northwest-1", &[], &[PrivateEndpoint::Fips]);
        let err = check(&[fips_in_china]).unwrap_err();
        assert_eq!(err.label(), "InvalidSpec");
        assert!(err.to_string().contains("endpoints: [Standard]"));
        assert!(
            check(&[registry(
                "us-isob-east-1",
                &[],
                &[PrivateEndpoint::Standard]
            )])
            .is_err()
        );
        assert!(check(&[registry("cn-north-1", &[], &[PrivateEndpoint::Standard])]).is_ok());
    }

    #[test]
    fn the_account_comes_from_the_proxy_endpoint() {
        let endpoint = "https://123456789012.dkr.ecr.us-west-2.amazonaws.com";
        assert_eq!(
            account_of_endpoint(endpoint).as_deref(),
            Some("123456789012")
        );
        assert_eq!(
            account_of_endpoint("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn:443").as_deref(),
            Some("123456789012")
        );
        for odd in [
            "",
            "https://",
            "https://registry.example.com",
            "https://12345.dkr.ecr.x",
        ] {
            assert_eq!(account_of_endpoint(odd), None, "{odd:?}");
        }
    }
}
