//! AWS failures turned into the [`Error`] a user can act on. Extracting the facts of an SDK
//! error is the only part that touches SDK types; [`classify`] itself is a pure function.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecrpublic::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
};

use super::{credentials, identity::Identity, source::Source};
use crate::Error;

/// The error users see for a failed call to `source` made as `identity`.
/// The SDK's error stays its source.
pub(super) fn explain<E>(
    identity: &Identity,
    source: &Source,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let error = refine(identity, &err, facts(&err)).for_service(source.service());
    error.caused_by(err)
}

/// The error users see when `identity`'s credentials cannot be resolved; the SDK's error stays
/// its source.
pub fn explain_credentials(identity: &Identity, err: CredentialsError) -> Error {
    refine(identity, &err, credentials_facts(&err)).caused_by(err)
}

fn refine(identity: &Identity, err: &(dyn std::error::Error + 'static), facts: Facts) -> Error {
    if let Some(ours) = carried_error(err) {
        return ours;
    }
    match classify(&facts) {
        // Name the file when the environment says which one it is.
        Error::TokenFileUnreadable { detail, .. } if *identity == Identity::Operator => {
            credentials::unreadable_token_file().unwrap_or(Error::TokenFileUnreadable {
                detail,
                cause: None,
            })
        }
        error => error,
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

/// The STS call behind a credentials failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsOperation {
    AssumeRoleWithWebIdentity,
    AssumeRole,
}

/// An STS failure found inside a credentials failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsFacts {
    pub operation: StsOperation,
    pub code: Option<String>,
    pub message: String,
    pub http_status: Option<u16>,
}

/// The facts of one failed call, free of SDK types so classification is a pure function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: FailureKind,
    pub code: Option<String>,
    pub message: String,
    pub http_status: Option<u16>,
    pub credentials: Option<CredentialsFailure>,
    /// Set when STS refused to hand out the credentials.
    pub sts: Option<StsFacts>,
    /// A credentials provider failed reading a file (IRSA or Pod Identity token file).
    pub file_unreadable: bool,
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
    let chain = chain_facts(err);
    let service_message = err.message().map(str::to_owned);
    Facts {
        kind,
        code: err.code().map(str::to_owned),
        message: service_message.unwrap_or(chain.message),
        http_status,
        credentials: chain.credentials,
        sts: chain.sts,
        file_unreadable: chain.file_unreadable,
    }
}

/// The facts of a credentials failure on its own (the `token` subcommand resolves credentials
/// before any call).
pub fn credentials_facts(err: &CredentialsError) -> Facts {
    let chain = chain_facts(err);
    Facts {
        kind: FailureKind::Construction,
        code: None,
        message: chain.message,
        http_status: None,
        credentials: chain.credentials,
        sts: chain.sts,
        file_unreadable: chain.file_unreadable,
    }
}

struct ChainFacts {
    credentials: Option<CredentialsFailure>,
    sts: Option<StsFacts>,
    file_unreadable: bool,
    /// The innermost message: the most specific one.
    message: String,
}

fn chain_facts(err: &(dyn std::error::Error + 'static)) -> ChainFacts {
    let mut facts = ChainFacts {
        credentials: None,
        sts: None,
        file_unreadable: false,
        message: String::new(),
    };
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            facts.credentials = Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => CredentialsFailure::NotLoaded,
                CredentialsError::ProviderTimedOut(_) => CredentialsFailure::TimedOut,
                CredentialsError::InvalidConfiguration(_) => {
                    CredentialsFailure::InvalidConfiguration
                }
                CredentialsError::ProviderError(_) => CredentialsFailure::ProviderError,
                _ => CredentialsFailure::Other,
            });
            // aws-config's web identity and container providers fail this way when they cannot
            // read their token file; the I/O error is the provider error's direct source.
            facts.file_unreadable |= matches!(c, CredentialsError::ProviderError(_))
                && std::error::Error::source(c).is_some_and(|s| s.is::<std::io::Error>());
        }
        if facts.sts.is_none() {
            facts.sts = sts_facts(e);
        }
        facts.message = e.to_string();
        source = e.source();
    }
    facts
}

/// The STS error behind a credentials failure, whichever provider (aws-config's web identity or
/// assume-role provider, or ours for ServiceAccounts) made the call.
fn sts_facts(e: &(dyn std::error::Error + 'static)) -> Option<StsFacts> {
    use aws_sdk_sts::{
        config::http::HttpResponse as StsResponse,
        operation::{
            assume_role::AssumeRoleError,
            assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
        },
    };
    fn of<E: ProvideErrorMetadata + std::error::Error + 'static>(
        operation: StsOperation,
        err: &SdkError<E, StsResponse>,
    ) -> StsFacts {
        StsFacts {
            operation,
            code: err.code().map(str::to_owned),
            message: err.message().map(str::to_owned).unwrap_or_else(|| {
                aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
            }),
            http_status: err.raw_response().map(|r| r.status().as_u16()),
        }
    }
    if let Some(err) = e.downcast_ref::<SdkError<AssumeRoleWithWebIdentityError, StsResponse>>() {
        return Some(of(StsOperation::AssumeRoleWithWebIdentity, err));
    }
    e.downcast_ref::<SdkError<AssumeRoleError, StsResponse>>()
        .map(|err| of(StsOperation::AssumeRole, err))
}

/// One of our own errors carried through the SDK inside a credentials failure (the ServiceAccount
/// provider reports a missing ServiceAccount this way).
pub fn carried_error(err: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(ours) = e.downcast_ref::<Error>() {
            return Some(ours.clone());
        }
        source = e.source();
    }
    None
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

/// Turns the facts of an STS failure into the error users see. Pure.
fn classify_sts(s: &StsFacts) -> Error {
    let code = s.code.as_deref().unwrap_or("");
    let detail = if code.is_empty() {
        s.message.clone()
    } else {
        format!("{code}: {}", s.message)
    };
    let transient = s.code.is_none()
        || THROTTLING_CODES.contains(&code)
        || code == "IDPCommunicationError"
        || s.http_status.is_some_and(|h| h >= 500 || h == 429);
    if transient {
        return Error::Transient {
            detail,
            cause: None,
        };
    }
    let denied = ACCESS_DENIED_CODES.contains(&code) || s.http_status == Some(403);
    match s.operation {
        StsOperation::AssumeRoleWithWebIdentity
            if denied
                || matches!(
                    code,
                    "InvalidIdentityToken" | "ExpiredTokenException" | "IDPRejectedClaim"
                ) =>
        {
            Error::WebIdentityDenied {
                detail,
                cause: None,
            }
        }
        StsOperation::AssumeRole if denied => Error::AssumeRoleDenied {
            detail,
            cause: None,
        },
        _ => Error::CredentialsRejected {
            detail,
            cause: None,
        },
    }
}

/// Turns the facts of a failure into the error users see. Pure.
pub fn classify(f: &Facts) -> Error {
    let detail = f.message.clone();
    if let Some(sts) = &f.sts {
        return classify_sts(sts);
    }
    if let Some(c) = &f.credentials {
        if f.file_unreadable {
            return Error::TokenFileUnreadable {
                detail,
                cause: None,
            };
        }
        return match c {
            CredentialsFailure::NotLoaded | CredentialsFailure::InvalidConfiguration => {
                Error::NoCredentials {
                    detail,
                    cause: None,
                }
            }
            CredentialsFailure::TimedOut => Error::Transient {
                detail: format!("credentials provider timed out: {detail}"),
                cause: None,
            },
            CredentialsFailure::ProviderError | CredentialsFailure::Other => {
                Error::CredentialsRejected {
                    detail,
                    cause: None,
                }
            }
        };
    }
    match f.kind {
        FailureKind::Timeout | FailureKind::Dispatch => {
            return Error::Transient {
                detail,
                cause: None,
            };
        }
        FailureKind::Response if f.code.is_none() => {
            return Error::Transient {
                detail,
                cause: None,
            };
        }
        _ => {}
    }
    let code = f.code.clone();
    if let Some(code) = code.as_deref() {
        if THROTTLING_CODES.contains(&code) || code == "ServerException" {
            return Error::Transient {
                detail: format!("{code}: {detail}"),
                cause: None,
            };
        }
        if ACCESS_DENIED_CODES.contains(&code) {
            return Error::AccessDenied {
                service: "ecr-public",
                detail,
                cause: None,
            };
        }
    }
    if f.http_status.is_some_and(|s| s >= 500 || s == 429) {
        return Error::Transient {
            detail,
            cause: None,
        };
    }
    if f.http_status == Some(403) {
        return Error::AccessDenied {
            service: "ecr-public",
            detail,
            cause: None,
        };
    }
    Error::AwsError {
        code: code.unwrap_or_else(|| "Unknown".into()),
        detail,
        cause: None,
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
            sts: None,
            file_unreadable: false,
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
        f.file_unreadable = true;
        assert_eq!(classify(&f).label(), "TokenFileUnreadable");
    }

    #[test]
    fn sts_refusals_name_the_step_that_failed() {
        let sts = |operation, code: &str, status| StsFacts {
            operation,
            code: Some(code.into()),
            message: "m".into(),
            http_status: Some(status),
        };
        let mut f = service("x", 0);
        f.credentials = Some(CredentialsFailure::ProviderError);
        let cases = [
            (
                StsOperation::AssumeRoleWithWebIdentity,
                "AccessDenied",
                403,
                "WebIdentityDenied",
            ),
            (
                StsOperation::AssumeRoleWithWebIdentity,
                "InvalidIdentityToken",
                400,
                "WebIdentityDenied",
            ),
            (
                StsOperation::AssumeRoleWithWebIdentity,
                "IDPCommunicationError",
                400,
                "Transient",
            ),
            (
                StsOperation::AssumeRole,
                "AccessDenied",
                403,
                "AssumeRoleDenied",
            ),
            (StsOperation::AssumeRole, "Throttling", 400, "Transient"),
            (
                StsOperation::AssumeRole,
                "InternalFailure",
                500,
                "Transient",
            ),
            (
                StsOperation::AssumeRole,
                "RegionDisabledException",
                403,
                "AssumeRoleDenied",
            ),
            (
                StsOperation::AssumeRole,
                "MalformedPolicyDocument",
                400,
                "CredentialsRejected",
            ),
        ];
        for (op, code, status, want) in cases {
            f.sts = Some(sts(op, code, status));
            assert_eq!(classify(&f).label(), want, "{op:?} {code}");
        }
        f.sts = Some(sts(StsOperation::AssumeRole, "AccessDenied", 403));
        let message = classify(&f).to_string();
        assert!(
            message.contains("sts:AssumeRole on the requested role"),
            "{message}"
        );
    }
}
