//! The AWS boundary: the ECR Public client (pinned to us-east-1), the call that fetches a token,
//! and the classification of AWS failures into [`Error`] variants a user can act on.

use std::time::Duration;

use aws_config::{
    BehaviorVersion, Region, SdkConfig, meta::region::RegionProviderChain, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecrpublic::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::{Error, cache::Identity, token::Token};

/// ECR Public's API only exists in us-east-1, whatever region the cluster runs in.
pub const ECR_PUBLIC_REGION: &str = "us-east-1";

/// Timeouts and retries for every AWS call.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Bound on one whole operation including retries.
    pub operation_timeout: Duration,
    /// Attempts per operation for the SDK's standard retry mode (1 disables SDK retries).
    pub max_attempts: u32,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
            max_attempts: 3,
        }
    }
}

/// Loads the default credential chain once (env, IRSA web identity, EKS Pod Identity, ...), with
/// explicit timeouts and standard retries. Its credentials cache is shared by every client built
/// from it. STS uses the pod's region when there is one.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let region =
        RegionProviderChain::default_provider().or_else(Region::from_static(ECR_PUBLIC_REGION));
    let attempt_timeout = settings.operation_timeout / settings.max_attempts.max(1);
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
        .load()
        .await
}

/// An ECR Public client pinned to us-east-1. `AWS_ENDPOINT_URL_ECR_PUBLIC` (via the SDK config)
/// still overrides the endpoint, which is how tests point it at the in-repo fake.
pub fn ecr_public_client(sdk: &SdkConfig) -> aws_sdk_ecrpublic::Client {
    let conf = aws_sdk_ecrpublic::config::Builder::from(sdk)
        .region(Region::from_static(ECR_PUBLIC_REGION))
        .build();
    aws_sdk_ecrpublic::Client::from_conf(conf)
}

/// Where tokens come from. The cache calls this at most once per identity per rotation.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a fresh, validated token for `identity`.
    fn fetch<'a>(&'a self, identity: &'a Identity) -> BoxFuture<'a, Result<Token, Error>>;
}

/// The real source: ECR Public `GetAuthorizationToken` with the operator's credentials.
pub struct EcrPublic {
    client: aws_sdk_ecrpublic::Client,
}

impl EcrPublic {
    pub fn new(client: aws_sdk_ecrpublic::Client) -> Self {
        Self { client }
    }
}

impl TokenSource for EcrPublic {
    fn fetch<'a>(&'a self, identity: &'a Identity) -> BoxFuture<'a, Result<Token, Error>> {
        Box::pin(async move {
            match identity {
                Identity::Operator => {}
            }
            let out = self
                .client
                .get_authorization_token()
                .send()
                .await
                .map_err(|e| classify(&facts(&e)))?;
            let data = out.authorization_data();
            let expires = data
                .and_then(|d| d.expires_at())
                .and_then(|t| DateTime::from_timestamp(t.secs(), 0));
            Token::from_response(
                data.and_then(|d| d.authorization_token()),
                expires,
                Utc::now(),
            )
        })
    }
}

/// What kind of failure the SDK reported, reduced to what classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The service answered with an error.
    Service,
    /// The request timed out.
    Timeout,
    /// The request could not be sent (connection refused, DNS, TLS).
    Dispatch,
    /// The response could not be understood.
    Response,
    /// The request could not be built (includes missing credentials).
    Construction,
}

/// Which way credential resolution failed, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsFailure {
    NotLoaded,
    TimedOut,
    InvalidConfiguration,
    ProviderError,
    Other,
}

/// The facts of one failed call, free of SDK types so classification is a pure function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: FailureKind,
    pub code: Option<String>,
    pub message: String,
    pub http_status: Option<u16>,
    pub credentials: Option<CredentialsFailure>,
}

/// Extracts [`Facts`] from an SDK error, including a credentials failure buried in the source chain.
pub fn facts<E>(err: &SdkError<E, HttpResponse>) -> Facts
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let kind = match err {
        SdkError::ServiceError(_) => FailureKind::Service,
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(_) => FailureKind::Dispatch,
        SdkError::ResponseError(_) => FailureKind::Response,
        _ => FailureKind::Construction,
    };
    let http_status = err.raw_response().map(|r| r.status().as_u16());
    let mut credentials = None;
    let mut message = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            credentials = Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => CredentialsFailure::NotLoaded,
                CredentialsError::ProviderTimedOut(_) => CredentialsFailure::TimedOut,
                CredentialsError::InvalidConfiguration(_) => {
                    CredentialsFailure::InvalidConfiguration
                }
                CredentialsError::ProviderError(_) => CredentialsFailure::ProviderError,
                _ => CredentialsFailure::Other,
            });
        }
        message = e.to_string();
        source = e.source();
    }
    let service_message = err.message().map(str::to_owned);
    Facts {
        kind,
        code: err.code().map(str::to_owned),
        message: service_message.unwrap_or(message),
        http_status,
        credentials,
    }
}

const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];
const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
];

/// Turns the facts of a failure into the error users see. Pure.
pub fn classify(f: &Facts) -> Error {
    let detail = f.message.clone();
    if let Some(c) = &f.credentials {
        return match c {
            CredentialsFailure::NotLoaded | CredentialsFailure::InvalidConfiguration => {
                Error::NoCredentials { detail }
            }
            CredentialsFailure::TimedOut => Error::Transient {
                detail: format!("credentials provider timed out: {detail}"),
            },
            CredentialsFailure::ProviderError | CredentialsFailure::Other => {
                Error::CredentialsRejected { detail }
            }
        };
    }
    match f.kind {
        FailureKind::Timeout | FailureKind::Dispatch => return Error::Transient { detail },
        FailureKind::Response if f.code.is_none() => return Error::Transient { detail },
        _ => {}
    }
    let code = f.code.clone();
    if let Some(code) = code.as_deref() {
        if THROTTLING_CODES.contains(&code) || code == "ServerException" {
            return Error::Transient {
                detail: format!("{code}: {detail}"),
            };
        }
        if ACCESS_DENIED_CODES.contains(&code) {
            return Error::AccessDenied { detail };
        }
    }
    if f.http_status.is_some_and(|s| s >= 500 || s == 429) {
        return Error::Transient { detail };
    }
    if f.http_status == Some(403) {
        return Error::AccessDenied { detail };
    }
    Error::AwsError {
        code: code.unwrap_or_else(|| "Unknown".into()),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, status: u16) -> Facts {
        Facts {
            kind: FailureKind::Service,
            code: Some(code.into()),
            message: "msg".into(),
            http_status: Some(status),
            credentials: None,
        }
    }

    #[test]
    fn classifies_what_users_can_fix() {
        assert_eq!(
            classify(&service("AccessDeniedException", 400)).label(),
            "AccessDenied"
        );
        assert_eq!(
            classify(&service("ThrottlingException", 400)).label(),
            "Transient"
        );
        assert_eq!(
            classify(&service("ServerException", 500)).label(),
            "Transient"
        );
        assert_eq!(
            classify(&service("InternalFailure", 503)).label(),
            "Transient"
        );
        let other = classify(&service("InvalidParameterException", 400));
        assert_eq!(other.label(), "AwsError");
        assert!(other.to_string().contains("InvalidParameterException"));
    }

    #[test]
    fn classifies_transport_and_credentials() {
        let mut f = service("x", 0);
        f.code = None;
        f.http_status = None;
        f.kind = FailureKind::Timeout;
        assert_eq!(classify(&f).label(), "Transient");
        f.kind = FailureKind::Dispatch;
        assert_eq!(classify(&f).label(), "Transient");
        f.kind = FailureKind::Construction;
        f.credentials = Some(CredentialsFailure::NotLoaded);
        assert_eq!(classify(&f).label(), "NoCredentials");
        f.credentials = Some(CredentialsFailure::ProviderError);
        assert_eq!(classify(&f).label(), "CredentialsRejected");
    }
}
