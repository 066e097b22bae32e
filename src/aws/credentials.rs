//! AWS credentials per [`Identity`], and the ECR Public and STS clients they are used with.
//!
//! Identities come and go with the resources that name them, and a tenant may name many, so an
//! identity holds as little as possible: a credentials provider and an identity cache of its own.
//! Everything heavy is shared by all of them: one ECR Public client and one STS client, each with
//! one HTTP client, its connection pool and its TLS configuration (each SDK client builds its
//! own, root certificates included: BENCHMARKS.md "Hostile identities"). A call as another
//! identity than the operator's own overrides the shared client's credentials and identity cache
//! for that call.
//!
//! The identity cache is the identity's own because the SDK never drops a partition of a shared
//! one: each provider would leave its cached credentials behind for the life of the process. It
//! keeps the credentials a configurable margin before they expire, and is dropped with the
//! identity ([`Clients::forget`]). The provider is wrapped once: the override takes it with
//! `set_credentials_provider`, which keeps its cache partition, where `credentials_provider`
//! would wrap it anew and fetch credentials on every call.

use std::{collections::HashMap, time::SystemTime};

use aws_config::{Region, SdkConfig, identity::IdentityCache};
use aws_credential_types::{
    Credentials,
    credential_feature::AwsCredentialFeature,
    provider::{
        self, ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
    },
};
use aws_sdk_ecrpublic::config::SharedIdentityCache;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, api::PostParams};

use super::{AwsSettings, ECR_PUBLIC_REGION, identity::Identity};
use crate::Error;

/// Audience of ServiceAccount tokens exchanged with STS, as the EKS pod identity webhook uses.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// Lifetime requested for ServiceAccount tokens: the API server's minimum; used once, right away.
const SA_TOKEN_SECONDS: i64 = 600;
/// Role session name prefix, visible in CloudTrail.
const SESSION_PREFIX: &str = "ecr-public-pull-secret-operator";

/// One identity other than the operator's own: how its calls get their credentials.
#[derive(Clone, Debug)]
pub struct IdentityCredentials {
    pub provider: SharedCredentialsProvider,
    cache: SharedIdentityCache,
}

impl IdentityCredentials {
    /// The configuration a call as this identity overrides the shared client's with.
    pub fn ecr_override(&self) -> aws_sdk_ecrpublic::config::Builder {
        let mut conf = aws_sdk_ecrpublic::config::Builder::default();
        conf.set_credentials_provider(Some(self.provider.clone()));
        conf.identity_cache(self.cache.clone())
    }

    /// The same for a private ECR call (one region's, on the shared ECR client).
    pub fn apply_to(&self, conf: &mut aws_sdk_ecr::config::Builder) {
        conf.set_credentials_provider(Some(self.provider.clone()));
        conf.set_identity_cache(self.cache.clone());
    }
}

/// The shared clients, and the credentials of each identity other than the operator's, kept
/// until the token cache says no resource uses the identity any more ([`Clients::forget`]).
pub struct Clients {
    settings: AwsSettings,
    kube: Option<kube::Client>,
    /// ECR Public in us-east-1, as the operator's own identity.
    pub ecr: aws_sdk_ecrpublic::Client,
    /// Private ECR, as the operator's own identity; each call names its region.
    pub ecr_private: aws_sdk_ecr::Client,
    /// STS, as the operator's own identity: `AssumeRole` for roles, and the unsigned
    /// `AssumeRoleWithWebIdentity` for ServiceAccounts.
    sts: aws_sdk_sts::Client,
    by_identity: std::sync::Mutex<HashMap<Identity, IdentityCredentials>>,
}

impl Clients {
    /// `kube` is needed only for ServiceAccount identities.
    pub fn new(sdk: &SdkConfig, settings: &AwsSettings, kube: Option<kube::Client>) -> Self {
        let ecr = aws_sdk_ecrpublic::config::Builder::from(sdk)
            .region(Region::from_static(ECR_PUBLIC_REGION))
            .build();
        Self {
            settings: settings.clone(),
            kube,
            ecr: aws_sdk_ecrpublic::Client::from_conf(ecr),
            ecr_private: aws_sdk_ecr::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            by_identity: Default::default(),
        }
    }

    /// Clients whose operator identity uses `ecr` as it is (for example a client with mocked
    /// responses); other identities are built from an empty configuration.
    pub fn for_client(ecr: aws_sdk_ecrpublic::Client) -> Self {
        let mut clients = Self::new(&SdkConfig::builder().build(), &AwsSettings::default(), None);
        clients.ecr = ecr;
        clients
    }

    /// The credentials of `identity`: `None` for the operator's own (the shared clients have
    /// them), else built on first use. (The token cache fetches one identity's token at a
    /// time, so two callers never build the same identity's at once.)
    pub fn get(&self, identity: &Identity) -> Result<Option<IdentityCredentials>, Error> {
        if *identity == Identity::Operator {
            return Ok(None);
        }
        let mut map = crate::lock(&self.by_identity);
        if let Some(c) = map.get(identity) {
            return Ok(Some(c.clone()));
        }
        let credentials = IdentityCredentials {
            provider: self.provider(identity)?,
            cache: IdentityCache::lazy()
                .buffer_time(self.settings.credentials_refresh_before)
                // A ServiceAccount's load is a TokenRequest and an STS exchange: a load cut off
                // is started again, a second exchange for the same identity. One attempt's time
                // bounds it, as for the operator's own.
                .load_timeout(self.settings.attempt_timeout())
                .build(),
        };
        map.insert(identity.clone(), credentials.clone());
        Ok(Some(credentials))
    }

    /// Drops the credentials of `identity`.
    pub fn forget(&self, identity: &Identity) {
        crate::lock(&self.by_identity).remove(identity);
    }

    fn provider(&self, identity: &Identity) -> Result<SharedCredentialsProvider, Error> {
        Ok(match identity {
            Identity::Operator => {
                return Err(Error::Internal(
                    "the operator's own identity uses the shared clients".into(),
                ));
            }
            Identity::Role { role_arn } => SharedCredentialsProvider::new(RoleCredentials {
                role_arn: role_arn.clone(),
                sts: self.sts.clone(),
            }),
            Identity::ServiceAccount {
                namespace,
                name,
                role_arn,
            } => {
                let kube = self.kube.clone().ok_or_else(|| {
                    Error::Internal("ServiceAccount identities need a Kubernetes client".into())
                })?;
                SharedCredentialsProvider::new(ServiceAccountCredentials {
                    api: Api::namespaced(kube, namespace),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    role_arn: role_arn.clone(),
                    sts: self.sts.clone(),
                })
            }
        })
    }
}

/// A role assumed with `sts:AssumeRole` from the operator's own credentials, through the shared
/// STS client (what aws-config's `AssumeRoleProvider` does with an STS client of its own).
#[derive(Debug)]
struct RoleCredentials {
    role_arn: String,
    sts: aws_sdk_sts::Client,
}

impl RoleCredentials {
    async fn load(&self) -> provider::Result {
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(SESSION_PREFIX)
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        let mut credentials = issued(out.credentials, "AssumeRole", "AssumeRole")?;
        credentials
            .get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .push(AwsCredentialFeature::CredentialsStsAssumeRole);
        Ok(credentials)
    }
}

impl ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// The SDK's credentials from what STS issued (`operation` names the call in the error).
fn issued(
    c: Option<aws_sdk_sts::types::Credentials>,
    operation: &str,
    source: &'static str,
) -> provider::Result {
    let c = c.ok_or_else(|| {
        CredentialsError::unhandled(format!("STS {operation} returned no credentials"))
    })?;
    let expiry = SystemTime::try_from(c.expiration)
        .map_err(|_| CredentialsError::unhandled("STS credentials expiry is out of range"))?;
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        Some(expiry),
        source,
    ))
}

/// `<prefix>-<namespace>-<name>`, cut to STS's 64 characters (names are DNS labels, so the
/// character set is already valid).
fn session_name(namespace: &str, name: &str) -> String {
    let mut s = format!("{SESSION_PREFIX}-{namespace}-{name}");
    s.truncate(64);
    s
}

/// Credentials for a ServiceAccount's role: a short-lived token from the TokenRequest API with
/// audience `sts.amazonaws.com`, exchanged with `AssumeRoleWithWebIdentity` (the same exchange the
/// SDK performs inside an IRSA pod, without ever mounting the token).
#[derive(Debug)]
struct ServiceAccountCredentials {
    api: Api<ServiceAccount>,
    namespace: String,
    name: String,
    role_arn: String,
    sts: aws_sdk_sts::Client,
}

impl ServiceAccountCredentials {
    async fn load(&self) -> provider::Result {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![STS_AUDIENCE.into()],
                expiration_seconds: Some(SA_TOKEN_SECONDS),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let answered = self
            .api
            .create_token_request(&self.name, &PostParams::default(), &request)
            .await
            .map_err(|e| CredentialsError::provider_error(self.token_request_error(e)))?;
        let token = answered.status.map(|s| s.token).ok_or_else(|| {
            CredentialsError::provider_error(Error::KubeRefused {
                detail: "TokenRequest returned no token".into(),
                source: None,
            })
        })?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(session_name(&self.namespace, &self.name))
            .web_identity_token(token)
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        issued(
            out.credentials,
            "AssumeRoleWithWebIdentity",
            "ServiceAccountToken",
        )
    }

    fn token_request_error(&self, e: kube::Error) -> Error {
        let (ns, name) = (&self.namespace, &self.name);
        match e {
            kube::Error::Api(s) if s.code == 404 => Error::ServiceAccountMissing {
                namespace: ns.clone(),
                name: name.clone(),
            },
            e => Error::refused_or(e, |reason| {
                format!(
                    "the operator may not request tokens for ServiceAccount {ns}/{name} ({reason}). \
                     Enable identity.serviceAccountTokens in the Helm chart to grant \
                     serviceaccounts/token create"
                )
            }),
        }
    }
}

impl ProvideCredentials for ServiceAccountCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// The token file named in the environment (IRSA's or Pod Identity's) that cannot be read, if
/// any: the SDK's own error does not say which file it tried.
pub fn unreadable_token_file() -> Option<Error> {
    [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ]
    .into_iter()
    .find_map(|var| {
        let path = std::env::var_os(var)?;
        let e = std::fs::read(&path).err()?;
        Some(Error::TokenFileUnreadable {
            detail: format!("{var}={}: {e}", path.to_string_lossy()),
            cause: Some(crate::error::Cause::new(e)),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_limits() {
        assert_eq!(
            session_name("team-a", "puller"),
            "ecr-public-pull-secret-operator-team-a-puller"
        );
        assert_eq!(session_name(&"n".repeat(63), &"s".repeat(63)).len(), 64);
    }
}
