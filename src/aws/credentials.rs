//! AWS credentials per [`Identity`], and an ECR Public client for each.
//!
//! Every identity gets exactly one [`SharedCredentialsProvider`], built once and reused by every
//! client of that identity. This matters: the SDK's identity cache is partitioned per
//! `SharedCredentialsProvider` value, and `Builder::credentials_provider(p)` wraps `p` in a new
//! one (a new partition) each time, so building clients afresh would fetch credentials afresh.
//! Credentials are refreshed by the cache a configurable margin before they expire.

use std::{collections::HashMap, time::SystemTime};

use aws_config::{Region, SdkConfig, sts::AssumeRoleProvider};
use aws_credential_types::{
    Credentials,
    provider::{
        self, ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
    },
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, api::PostParams};

use super::{ECR_PUBLIC_REGION, identity::Identity};
use crate::Error;

/// Audience of ServiceAccount tokens exchanged with STS, as the EKS pod identity webhook uses.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// Lifetime requested for ServiceAccount tokens: the API server's minimum; used once, right away.
const SA_TOKEN_SECONDS: i64 = 600;
/// Role session name prefix, visible in CloudTrail.
const SESSION_PREFIX: &str = "ecr-public-pull-secret-operator";

/// One identity's credentials and its ECR Public client.
#[derive(Clone, Debug)]
pub struct IdentityClients {
    pub credentials: SharedCredentialsProvider,
    pub ecr: aws_sdk_ecrpublic::Client,
}

/// Builds and keeps [`IdentityClients`] per identity. Entries are never evicted: their number is
/// bounded by the distinct roles and ServiceAccounts in use.
pub struct Clients {
    sdk: SdkConfig,
    kube: Option<kube::Client>,
    by_identity: tokio::sync::Mutex<HashMap<Identity, IdentityClients>>,
}

impl Clients {
    /// `kube` is needed only for ServiceAccount identities.
    pub fn new(sdk: &SdkConfig, kube: Option<kube::Client>) -> Self {
        Self {
            sdk: sdk.clone(),
            kube,
            by_identity: Default::default(),
        }
    }

    /// Clients whose operator identity uses `ecr` as it is (for example a client with mocked
    /// responses); other identities are built from an empty configuration.
    pub fn for_client(ecr: aws_sdk_ecrpublic::Client) -> Self {
        let mut clients = Self::new(&SdkConfig::builder().build(), None);
        // Only the token subcommand reads this provider; such a client never reaches it.
        let credentials =
            SharedCredentialsProvider::new(Credentials::new("", "", None, None, "none"));
        clients
            .by_identity
            .get_mut()
            .insert(Identity::Operator, IdentityClients { credentials, ecr });
        clients
    }

    /// The clients of `identity`, built on first use.
    pub async fn get(&self, identity: &Identity) -> Result<IdentityClients, Error> {
        let mut map = self.by_identity.lock().await;
        if let Some(c) = map.get(identity) {
            return Ok(c.clone());
        }
        let credentials = self.provider(identity).await?;
        let mut conf = aws_sdk_ecrpublic::config::Builder::from(&self.sdk)
            .region(Region::from_static(ECR_PUBLIC_REGION));
        // `set_` takes the shared provider as it is, keeping its identity-cache partition.
        conf.set_credentials_provider(Some(credentials.clone()));
        let conf = conf.build();
        let clients = IdentityClients {
            credentials,
            ecr: aws_sdk_ecrpublic::Client::from_conf(conf),
        };
        map.insert(identity.clone(), clients.clone());
        Ok(clients)
    }

    async fn provider(&self, identity: &Identity) -> Result<SharedCredentialsProvider, Error> {
        Ok(match identity {
            Identity::Operator => {
                self.sdk
                    .credentials_provider()
                    .ok_or_else(|| Error::NoCredentials {
                        detail: "the SDK configuration has no credentials provider".into(),
                    })?
            }
            Identity::Role { role_arn } => SharedCredentialsProvider::new(
                AssumeRoleProvider::builder(role_arn)
                    .session_name(SESSION_PREFIX)
                    .configure(&self.sdk)
                    .build()
                    .await,
            ),
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
                    session_name: session_name(namespace, name),
                    sts: aws_sdk_sts::Client::new(&self.sdk),
                })
            }
        })
    }
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
    session_name: String,
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
        let issued = self
            .api
            .create_token_request(&self.name, &PostParams::default(), &request)
            .await
            .map_err(|e| CredentialsError::provider_error(self.token_request_error(e)))?;
        let token = issued.status.map(|s| s.token).ok_or_else(|| {
            CredentialsError::provider_error(Error::KubeRefused {
                detail: "TokenRequest returned no token".into(),
                source: None,
            })
        })?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token)
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        let c = out.credentials.ok_or_else(|| {
            CredentialsError::unhandled("STS AssumeRoleWithWebIdentity returned no credentials")
        })?;
        let expiry = SystemTime::try_from(c.expiration)
            .map_err(|_| CredentialsError::unhandled("STS credentials expiry is out of range"))?;
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "ServiceAccountToken",
        ))
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
