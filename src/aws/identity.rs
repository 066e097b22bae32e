//! Which IAM identity a resource's token comes from, and whether the operator allows it.
//!
//! A token belongs to an identity, not to a resource: every resource that resolves to the same
//! [`Identity`] shares one cached token and so one AWS call per rotation. Resources pick an
//! identity with `spec.roleArn` (assumed from the operator's own credentials) and/or
//! `spec.serviceAccountName` (a ServiceAccount in the resource's own namespace, whose projected
//! token is exchanged with STS). Both are refused unless the role matches the operator's
//! allow-list: without one, a tenant could borrow any role the operator's role can assume.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, Client};

use crate::Error;

/// The annotation the EKS pod identity webhook reads; the operator reads it the same way.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The IAM identity a token is issued to. Each one has its own cached token and credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// The operator pod's own credentials (IRSA, Pod Identity, or whatever the default chain finds).
    Operator,
    /// A role assumed with `sts:AssumeRole` from the operator's own credentials.
    Role { role_arn: String },
    /// A role assumed with `sts:AssumeRoleWithWebIdentity` using a token of this ServiceAccount.
    ServiceAccount {
        namespace: String,
        name: String,
        role_arn: String,
    },
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Operator => f.write_str("operator"),
            Identity::Role { role_arn } => write!(f, "role {role_arn}"),
            Identity::ServiceAccount {
                namespace,
                name,
                role_arn,
            } => write!(f, "serviceaccount {namespace}/{name} as {role_arn}"),
        }
    }
}

/// Role ARN patterns resources may ask for. `*` matches any run of characters (including `/`, so
/// `arn:aws:iam::123456789012:role/teams/*` covers role paths). Empty: no per-resource roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedRoles(Vec<String>);

impl AllowedRoles {
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        Self(
            patterns
                .into_iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    pub fn allows(&self, role_arn: &str) -> bool {
        self.0.iter().any(|p| glob_match(p, role_arn))
    }

    /// `Ok` when `role_arn` may be used, else the `RoleNotAllowed` error that says what to change.
    pub fn check(&self, role_arn: &str) -> Result<(), Error> {
        if self.allows(role_arn) {
            return Ok(());
        }
        Err(Error::RoleNotAllowed {
            role_arn: role_arn.into(),
            patterns: if self.0.is_empty() {
                "none".into()
            } else {
                self.0.join(", ")
            },
        })
    }
}

/// Glob with `*` as the only wildcard. Iterative with one backtrack point: linear in practice,
/// no recursion on input from the API server.
fn glob_match(pattern: &str, text: &str) -> bool {
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
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What a resource asks for, before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub role_arn: Option<&'a str>,
    pub service_account: Option<&'a str>,
}

/// Resolves a resource's identity. Reads the ServiceAccount (same namespace only) when one is named.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    request: Request<'_>,
    allowed: &AllowedRoles,
) -> Result<Identity, Error> {
    let Some(sa_name) = request.service_account else {
        return match request.role_arn {
            None => Ok(Identity::Operator),
            Some(role_arn) => {
                allowed.check(role_arn)?;
                Ok(Identity::Role {
                    role_arn: role_arn.into(),
                })
            }
        };
    };
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt(sa_name)
        .await
        .map_err(|e| {
            Error::refused_or(e, |reason| {
                format!(
                    "the operator may not read ServiceAccount {namespace}/{sa_name} ({reason}). \
                     Enable identity.serviceAccountTokens in the Helm chart to grant it"
                )
            })
        })?
        .ok_or_else(|| Error::ServiceAccountMissing {
            namespace: namespace.into(),
            name: sa_name.into(),
        })?;
    let annotated = sa
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROLE_ANNOTATION));
    let role_arn = service_account_role(request.role_arn, annotated.map(String::as_str))
        .ok_or_else(|| Error::ServiceAccountNotAnnotated {
            namespace: namespace.into(),
            name: sa_name.into(),
        })?;
    allowed.check(role_arn)?;
    Ok(Identity::ServiceAccount {
        namespace: namespace.into(),
        name: sa_name.into(),
        role_arn: role_arn.into(),
    })
}

/// `spec.roleArn` wins over the ServiceAccount's annotation; blank values count as absent.
fn service_account_role<'a>(spec: Option<&'a str>, annotation: Option<&'a str>) -> Option<&'a str> {
    spec.or(annotation).map(str::trim).filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_role_paths() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match(
            "arn:aws:iam::1:role/team-*",
            "arn:aws:iam::1:role/team-a"
        ));
        assert!(glob_match(
            "arn:aws:iam::1:role/*",
            "arn:aws:iam::1:role/p/q"
        ));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match(
            "arn:aws:iam::1:role/team-*",
            "arn:aws:iam::2:role/team-a"
        ));
        assert!(!glob_match("a*b", "aXXbY"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn empty_allow_list_refuses_every_role_with_a_fix() {
        let none = AllowedRoles::new(Vec::new());
        let err = none.check("arn:aws:iam::1:role/x").unwrap_err();
        assert_eq!(err.label(), "RoleNotAllowed");
        assert!(err.to_string().contains("--allowed-role-arns"));
        let some = AllowedRoles::new(vec![" arn:aws:iam::1:role/ok-* ".into(), "".into()]);
        assert!(some.check("arn:aws:iam::1:role/ok-1").is_ok());
        assert!(
            some.check("arn:aws:iam::1:role/other")
                .unwrap_err()
                .to_string()
                .contains("arn:aws:iam::1:role/ok-*")
        );
    }

    #[test]
    fn spec_role_wins_over_annotation() {
        assert_eq!(service_account_role(Some("a"), Some("b")), Some("a"));
        assert_eq!(service_account_role(None, Some("b")), Some("b"));
        assert_eq!(service_account_role(None, Some("  ")), None);
        assert_eq!(service_account_role(None, None), None);
    }

    #[test]
    fn identities_are_distinct_cache_keys() {
        let a = Identity::ServiceAccount {
            namespace: "a".into(),
            name: "sa".into(),
            role_arn: "r".into(),
        };
        let b = Identity::ServiceAccount {
            namespace: "b".into(),
            name: "sa".into(),
            role_arn: "r".into(),
        };
        assert_ne!(a, b);
        assert_ne!(
            Identity::Role {
                role_arn: "r".into()
            },
            Identity::Operator
        );
        assert_eq!(a.to_string(), "serviceaccount a/sa as r");
    }
}
