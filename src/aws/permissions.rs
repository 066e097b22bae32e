//! Which IAM roles a resource may ask for (`spec.roleArn`, or the role of `spec.serviceAccountName`).
//!
//! The operator assumes every role with its own credentials, so whatever its role may assume, any
//! tenant could borrow, unless this says no: a confused deputy. Permissions are therefore per
//! namespace: a namespaced resource may use a role only if a pattern allowed *for its namespace*
//! matches; a cluster resource (created by cluster administrators) has its own list. Pure: no I/O.
//!
//! - `--allowed-role-arns`: patterns for every namespace. `{namespace}` stands for the resource's
//!   namespace, so `arn:aws:iam::123456789012:role/ecr-public-{namespace}` gives each namespace its
//!   own role and no other.
//! - `--role-rules`: rules that pair namespaces (by name or label selector) with patterns, the way
//!   external-secrets' ClusterSecretStore `conditions` do.
//! - `--cluster-allowed-role-arns`: patterns for `ClusterEcrPublicPullSecret`s.
//!
//! `*` matches within one segment of the ARN's resource part: never `:` or `/`. Patterns are
//! checked when the operator starts: the partition, service (`iam`), account (12 digits) and
//! `role/` are literal, so no pattern reaches into another account or another kind of resource.

use std::{collections::BTreeMap, fmt, str::FromStr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use serde::Deserialize;

use crate::Error;

/// The placeholder for the requesting resource's namespace.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

/// A validated role ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePattern(String);

impl RolePattern {
    /// Whether the pattern applies to every namespace alike (it has no `{namespace}`).
    pub fn is_namespace_independent(&self) -> bool {
        !self.0.contains(NAMESPACE_PLACEHOLDER)
    }

    /// Whether `role_arn` matches with `{namespace}` read as `namespace` (as nothing, when none).
    fn matches(&self, role_arn: &str, namespace: Option<&str>) -> bool {
        match namespace {
            // A namespace is a DNS label: substituting it adds no wildcard and no separator.
            Some(ns) => segment_glob(&self.0.replace(NAMESPACE_PLACEHOLDER, ns), role_arn),
            None => self.is_namespace_independent() && segment_glob(&self.0, role_arn),
        }
    }
}

impl fmt::Display for RolePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RolePattern {
    type Err = String;

    /// `arn:<partition>:iam::<account>:role/<path and name>`, where only the path and name may
    /// hold `*` and `{namespace}`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: &str| {
            Err(format!(
                "role ARN pattern {s:?} {why}; expected arn:<partition>:iam::<12-digit account>:role/<name>, \
                 where only the name (and path) may hold `*` or {NAMESPACE_PLACEHOLDER}"
            ))
        };
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return bad("does not have the six parts of an ARN");
        };
        let partition_ok = partition.starts_with("aws")
            && partition[3..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-');
        if arn != "arn" || !partition_ok || service != "iam" || !region.is_empty() {
            return bad("is not an IAM ARN");
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return bad("must name one account");
        }
        let Some(name) = resource.strip_prefix("role/") else {
            return bad("is not a role");
        };
        let literal = name.replace(NAMESPACE_PLACEHOLDER, "");
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_+=,.@/-*".contains(&b);
        if name.is_empty() || !literal.bytes().all(allowed) {
            return bad("has characters a role name cannot have");
        }
        Ok(Self(s.to_owned()))
    }
}

/// `*` matches any run of characters other than `:` and `/`. Iterative with one backtrack
/// point: linear in practice, no recursion on input from the API server.
fn segment_glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star
            && t[st] != b':'
            && t[st] != b'/'
        {
            // Let the star take one more character, within its segment.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A rule of `--role-rules`: namespaces, by name or by labels, and the roles they may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRule {
    /// Namespaces by name.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces by label (whoever may label namespaces decides, as with any selector).
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Patterns these namespaces may use.
    pub role_arns: Vec<String>,
}

/// One rule, checked and parsed.
#[derive(Debug, Clone)]
struct Rule {
    namespaces: Vec<String>,
    selector: Option<Selector>,
    patterns: Vec<RolePattern>,
}

impl Rule {
    fn parse(rule: RoleRule) -> Result<Self, String> {
        if rule.namespaces.is_empty() && rule.namespace_selector.is_none() {
            return Err(
                "a role rule must name namespaces or have a namespaceSelector (patterns \
                        for every namespace belong in --allowed-role-arns)"
                    .into(),
            );
        }
        let selector = rule
            .namespace_selector
            .map(|s| Selector::try_from(s).map_err(|e| format!("namespaceSelector: {e}")))
            .transpose()?;
        let patterns = rule
            .role_arns
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() {
            return Err("a role rule must list roleArns".into());
        }
        Ok(Self {
            namespaces: rule.namespaces,
            selector,
            patterns,
        })
    }

    fn selects(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
            || (self.selector.as_ref()).is_some_and(|s| labels.is_some_and(|l| s.matches(l)))
    }
}

/// `--role-rules`: a JSON list of [`RoleRule`]s (the chart renders its value with toJson).
#[derive(Debug, Clone, Default)]
pub struct RoleRules(pub Vec<RoleRule>);

/// Parses `--role-rules`, checking each rule.
pub fn parse_role_rules(json: &str) -> Result<RoleRules, String> {
    let rules: Vec<RoleRule> =
        serde_json::from_str(json).map_err(|e| format!("--role-rules is not valid JSON: {e}"))?;
    for rule in &rules {
        Rule::parse(rule.clone())?;
    }
    Ok(RoleRules(rules))
}

/// Who asks for a role.
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    /// A namespaced resource in `name`, whose labels are known when some rule selects by label.
    Namespace {
        name: &'a str,
        labels: Option<&'a BTreeMap<String, String>>,
    },
    /// A cluster-scoped resource.
    Cluster,
}

/// Every role permission the operator was started with.
#[derive(Debug, Clone, Default)]
pub struct RolePermissions {
    everywhere: Vec<RolePattern>,
    rules: Vec<Rule>,
    cluster: Vec<RolePattern>,
}

impl RolePermissions {
    /// From the flags; an invalid rule is an error for the operator's start-up to report.
    pub fn new(
        everywhere: Vec<RolePattern>,
        rules: Vec<RoleRule>,
        cluster: Vec<RolePattern>,
    ) -> Result<Self, String> {
        let rules = rules
            .into_iter()
            .map(Rule::parse)
            .collect::<Result<_, _>>()?;
        if let Some(p) = cluster.iter().find(|p| !p.is_namespace_independent()) {
            return Err(format!(
                "--cluster-allowed-role-arns pattern {p} uses {NAMESPACE_PLACEHOLDER}: a cluster \
                 resource writes one token into many namespaces, so there is no one namespace to \
                 put there"
            ));
        }
        Ok(Self {
            everywhere,
            rules,
            cluster,
        })
    }

    /// Whether some rule selects namespaces by label (the operator then watches Namespaces).
    pub fn selects_by_label(&self) -> bool {
        self.rules.iter().any(|r| r.selector.is_some())
    }

    /// Patterns of `--allowed-role-arns` without `{namespace}`: every namespace may use every
    /// role they match. Said in the operator's log at start-up.
    pub fn shared_patterns(&self) -> impl Iterator<Item = &RolePattern> {
        self.everywhere
            .iter()
            .filter(|p| p.is_namespace_independent())
    }

    /// The patterns that apply to `requester` (what the operator logs when it refuses one; never
    /// what a tenant is told, which would list other namespaces' roles).
    pub fn applicable(&self, requester: Requester<'_>) -> Vec<String> {
        match requester {
            Requester::Cluster => self.cluster.iter().map(ToString::to_string).collect(),
            Requester::Namespace { name, labels } => {
                let rules = self.rules.iter().filter(|r| r.selects(name, labels));
                let patterns = self
                    .everywhere
                    .iter()
                    .chain(rules.flat_map(|r| &r.patterns));
                patterns
                    .map(|p| p.0.replace(NAMESPACE_PLACEHOLDER, name))
                    .collect()
            }
        }
    }

    /// Whether `requester` may use `role_arn`.
    pub fn allows(&self, requester: Requester<'_>, role_arn: &str) -> bool {
        match requester {
            Requester::Cluster => self.cluster.iter().any(|p| p.matches(role_arn, None)),
            Requester::Namespace { name, labels } => {
                let ns = Some(name);
                self.everywhere.iter().any(|p| p.matches(role_arn, ns))
                    || (self.rules.iter())
                        .filter(|r| r.selects(name, labels))
                        .any(|r| r.patterns.iter().any(|p| p.matches(role_arn, ns)))
            }
        }
    }

    /// `Ok` when `requester` may use `role_arn`, else `RoleNotAllowed`, which says how an
    /// administrator allows it but not what other namespaces may use.
    pub fn check(&self, requester: Requester<'_>, role_arn: &str) -> Result<(), Error> {
        if self.allows(requester, role_arn) {
            return Ok(());
        }
        Err(Error::RoleNotAllowed {
            role_arn: role_arn.into(),
            namespace: match requester {
                Requester::Namespace { name, .. } => Some(name.into()),
                Requester::Cluster => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "arn:aws:iam::123456789012:role";

    fn pattern(s: &str) -> RolePattern {
        s.parse().unwrap()
    }

    fn role(name: &str) -> String {
        format!("{ACCOUNT}/{name}")
    }

    fn ns(name: &str) -> Requester<'_> {
        Requester::Namespace { name, labels: None }
    }

    #[test]
    fn a_star_stays_within_one_segment() {
        assert!(segment_glob("a*c", "abbc"));
        assert!(segment_glob("role/team-*", "role/team-a"));
        assert!(!segment_glob("role/*", "role/path/name"), "crosses /");
        assert!(!segment_glob("a*b", "a:b:b"), "crosses :");
        assert!(segment_glob("role/*/x", "role/p/x"));
        assert!(!segment_glob("exact", "exactly"));
        assert!(segment_glob("", ""));
        assert!(segment_glob("*", ""));
    }

    #[test]
    fn patterns_may_not_reach_another_account_or_resource() {
        for ok in [
            "arn:aws:iam::123456789012:role/ecr-public-{namespace}",
            "arn:aws-cn:iam::123456789012:role/teams/*",
            " arn:aws:iam::123456789012:role/x ",
        ] {
            assert!(ok.parse::<RolePattern>().is_ok(), "{ok}");
        }
        for bad in [
            "*",
            "arn:aws:iam::*:role/x",
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:*:iam::123456789012:role/x",
            "arn:aws:sts::123456789012:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a:b",
            "arn:aws:iam::123456789012:role/{name}",
        ] {
            let err = bad.parse::<RolePattern>().unwrap_err();
            assert!(err.contains("expected arn:"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_namespace_placeholder_gives_each_namespace_its_own_role() {
        let p = RolePermissions::new(
            vec![pattern(&role("ecr-public-{namespace}"))],
            Vec::new(),
            Vec::new(),
        )
        .unwrap();
        assert!(p.allows(ns("team-a"), &role("ecr-public-team-a")));
        assert!(!p.allows(ns("team-a"), &role("ecr-public-team-b")));
        assert!(!p.allows(ns("team"), &role("ecr-public-team-a")));
        assert!(!p.allows(Requester::Cluster, &role("ecr-public-team-a")));
        assert!(p.shared_patterns().next().is_none());
    }

    #[test]
    fn a_prefix_pattern_no_longer_reaches_into_paths_or_other_prefixes() {
        let p =
            RolePermissions::new(vec![pattern(&role("team-a*"))], Vec::new(), Vec::new()).unwrap();
        assert!(p.allows(ns("x"), &role("team-a-puller")));
        assert!(!p.allows(ns("x"), &role("team-a/admin")), "a path segment");
        assert_eq!(p.shared_patterns().count(), 1, "logged at start-up");
    }

    #[test]
    fn rules_apply_to_the_namespaces_they_select() {
        let rule = |namespaces: &[&str], selector: Option<(&str, &str)>, arn: &str| RoleRule {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            namespace_selector: selector.map(|(k, v)| LabelSelector {
                match_labels: Some(BTreeMap::from([(k.into(), v.into())])),
                ..Default::default()
            }),
            role_arns: vec![arn.into()],
        };
        let p = RolePermissions::new(
            Vec::new(),
            vec![
                rule(&["payments", "billing"], None, &role("shared-{namespace}")),
                rule(&[], Some(("tier", "prod")), &role("prod-puller")),
            ],
            vec![pattern(&role("platform"))],
        )
        .unwrap();
        assert!(p.selects_by_label());
        assert!(p.allows(ns("billing"), &role("shared-billing")));
        assert!(!p.allows(ns("other"), &role("shared-other")));
        let prod = BTreeMap::from([("tier".to_owned(), "prod".to_owned())]);
        let labelled = Requester::Namespace {
            name: "shop",
            labels: Some(&prod),
        };
        assert!(p.allows(labelled, &role("prod-puller")));
        assert!(
            !p.allows(ns("shop"), &role("prod-puller")),
            "labels unknown"
        );
        assert!(p.allows(Requester::Cluster, &role("platform")));
        assert!(!p.allows(ns("payments"), &role("platform")));
        assert_eq!(p.applicable(ns("payments")), [role("shared-payments")]);
    }

    #[test]
    fn a_refusal_names_the_fix_but_not_what_others_may_use() {
        let p = RolePermissions::new(
            vec![pattern(&role("ecr-public-{namespace}"))],
            Vec::new(),
            Vec::new(),
        )
        .unwrap();
        let err = p
            .check(ns("team-a"), &role("ecr-public-team-b"))
            .unwrap_err();
        assert_eq!(err.label(), "RoleNotAllowed");
        let message = err.to_string();
        assert!(message.contains("namespace team-a"), "{message}");
        assert!(message.contains("identity.allowedRoleArns"), "{message}");
        assert!(
            !message.contains("ecr-public-{namespace}"),
            "no pattern: {message}"
        );
        let err = p.check(Requester::Cluster, &role("x")).unwrap_err();
        assert!(err.to_string().contains("identity.clusterAllowedRoleArns"));
    }

    #[test]
    fn bad_rules_and_flags_stop_the_operator_from_starting() {
        assert!(parse_role_rules("not json").is_err());
        let no_namespaces = r#"[{"roleArns": ["arn:aws:iam::123456789012:role/x"]}]"#;
        assert!(
            parse_role_rules(no_namespaces)
                .unwrap_err()
                .contains("name namespaces")
        );
        let bad_pattern = r#"[{"namespaces": ["a"], "roleArns": ["*"]}]"#;
        assert!(parse_role_rules(bad_pattern).is_err());
        let typo = r#"[{"namespace": ["a"], "roleArns": ["arn:aws:iam::123456789012:role/x"]}]"#;
        assert!(
            parse_role_rules(typo).is_err(),
            "unknown fields are refused"
        );
        let ok = r#"[{"namespaces": ["a"], "roleArns": ["arn:aws:iam::123456789012:role/x"]}]"#;
        assert_eq!(parse_role_rules(ok).unwrap().0.len(), 1);
        let cluster = RolePermissions::new(
            Vec::new(),
            Vec::new(),
            vec![pattern(&role("r-{namespace}"))],
        );
        assert!(cluster.unwrap_err().contains("--cluster-allowed-role-arns"));
    }
}
