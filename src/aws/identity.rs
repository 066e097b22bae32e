//! Which IAM identity a resource's token comes from, and whether the operator allows it.
//!
//! A token belongs to an identity, not to a resource: every resource that resolves to the same
//! [`Identity`] shares one cached token and so one AWS call per rotation. Resources pick an
//! identity with `spec.roleArn` (assumed from the operator's own credentials) and/or
//! `spec.serviceAccountName` (a ServiceAccount in the resource's own namespace, whose projected
//! token is exchanged with STS). Both are refused unless the role is allowed for the resource's
//! namespace ([`super::permissions`]): otherwise a tenant could borrow any role the operator's role
//! can assume.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, Client};

use super::permissions::{Requester, RolePermissions};
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

/// What a resource asks for, before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub role_arn: Option<&'a str>,
    pub service_account: Option<&'a str>,
}

/// Resolves a resource's identity. Reads the ServiceAccount (the requester's own namespace only)
/// when one is named; a cluster resource names none.
pub async fn resolve(
    client: &Client,
    requester: Requester<'_>,
    request: Request<'_>,
    permissions: &RolePermissions,
) -> Result<Identity, Error> {
    let (
        Some(sa_name),
        Requester::Namespace {
            name: namespace, ..
        },
    ) = (request.service_account, requester)
    else {
        return match request.role_arn {
            None => Ok(Identity::Operator),
            Some(role_arn) => {
                checked(permissions, requester, role_arn)?;
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
    checked(permissions, requester, role_arn)?;
    Ok(Identity::ServiceAccount {
        namespace: namespace.into(),
        name: sa_name.into(),
        role_arn: role_arn.into(),
    })
}

/// [`RolePermissions::check`], with the patterns that applied in the operator's log (the
/// resource's status says only how to allow the role).
fn checked(
    permissions: &RolePermissions,
    requester: Requester<'_>,
    role_arn: &str,
) -> Result<(), Error> {
    permissions.check(requester, role_arn).inspect_err(|_| {
        let applicable = permissions.applicable(requester);
        tracing::info!(%role_arn, ?applicable, "role not allowed for this resource");
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
