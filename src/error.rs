//! The operator's one error type.
//!
//! Every variant has a stable short [`Error::label`] that is used verbatim as the `Ready` condition
//! reason, the Event reason and the `reason` label of metrics, so dashboards and alerts can rely on it.
//! Messages are written for the person who has to fix the problem and never contain token material.

use std::sync::Arc;

/// The AWS SDK's error behind one of ours, kept as its source once classified. Shared, so that
/// the error stays cheap to clone; shown by its `Display` alone, also as `Debug`, since an SDK
/// error's `Debug` carries the raw HTTP response.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cause({})", self.0)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Everything that can go wrong while reconciling one custom resource.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The operator found no AWS credentials at all (IRSA not wired up).
    #[error(
        "no AWS credentials found ({detail}). For IRSA, annotate the operator's ServiceAccount with \
         eks.amazonaws.com/role-arn so that the pod gets AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, \
         then restart the pod; for EKS Pod Identity, create a pod identity association for that \
         ServiceAccount and check the eks-pod-identity-agent add-on runs"
    )]
    NoCredentials {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// A credential provider exists but failed in a way not covered by a more specific variant.
    #[error(
        "AWS credentials could not be obtained: {detail}. Run `ecr-public-pull-secret-operator \
         token` in the operator's pod to see which credential source is used and what it returns"
    )]
    CredentialsRejected {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// The token file the AWS SDK was pointed at cannot be read.
    #[error(
        "cannot read the credentials token file ({detail}). With IRSA it is \
         AWS_WEB_IDENTITY_TOKEN_FILE (/var/run/secrets/eks.amazonaws.com/serviceaccount/token), with \
         EKS Pod Identity AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: check that the projected volume is \
         mounted and readable by the container's user (fsGroup)"
    )]
    TokenFileUnreadable {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// STS refused `AssumeRoleWithWebIdentity` (trust policy, audience or OIDC provider).
    #[error(
        "STS refused AssumeRoleWithWebIdentity: {detail}. The role's trust policy must allow \
         sts:AssumeRoleWithWebIdentity from the cluster's OIDC provider with the condition \
         <provider>:sub = system:serviceaccount:<namespace>:<serviceaccount> and \
         <provider>:aud = sts.amazonaws.com"
    )]
    WebIdentityDenied {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// STS refused `AssumeRole` from the operator's identity to a resource's `spec.roleArn`.
    #[error(
        "STS refused AssumeRole: {detail}. The operator's own role needs sts:AssumeRole on the \
         requested role, and that role's trust policy must name the operator's role as principal"
    )]
    AssumeRoleDenied {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// The resource asks for a role its namespace (or, for a cluster resource, the cluster kind)
    /// may not use. The message says how to allow it, never which roles others may use.
    #[error("{}", role_not_allowed(role_arn, namespace.as_deref()))]
    RoleNotAllowed {
        role_arn: String,
        /// The requesting resource's namespace; `None` for a cluster resource.
        namespace: Option<String>,
    },

    /// A namespace already uses as many distinct IAM identities as one namespace may: each costs
    /// the operator memory and AWS calls, so one tenant cannot exhaust it for everyone.
    #[error(
        "namespace {namespace} already uses {limit} distinct IAM identities (roles or \
         ServiceAccounts) in other resources, the most one namespace may use. Let resources share \
         a role, or ask an administrator to raise --max-identities-per-namespace (Helm value \
         identity.maxIdentitiesPerNamespace)"
    )]
    TooManyIdentities { namespace: String, limit: usize },

    /// `spec.serviceAccountName` names a ServiceAccount that does not exist in the namespace.
    #[error(
        "ServiceAccount {namespace}/{name} named by spec.serviceAccountName does not exist. Create it \
         (annotated with eks.amazonaws.com/role-arn) or fix the name; only ServiceAccounts of the \
         resource's own namespace can be used"
    )]
    ServiceAccountMissing { namespace: String, name: String },

    /// The ServiceAccount has no role to assume.
    #[error(
        "ServiceAccount {namespace}/{name} has no eks.amazonaws.com/role-arn annotation and the \
         resource sets no spec.roleArn: annotate the ServiceAccount with the IAM role to use"
    )]
    ServiceAccountNotAnnotated { namespace: String, name: String },

    /// IAM denied the call to `service` (`ecr-public` or `ecr`).
    #[error(
        "AWS denied {service}:GetAuthorizationToken: {detail}. {}",
        grant(service)
    )]
    AccessDenied {
        /// The IAM service prefix of the denied call.
        service: &'static str,
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// Throttling, 5xx, timeouts and connection failures: retried with backoff.
    #[error("temporary AWS failure, will retry: {detail}")]
    Transient {
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// Any other AWS error, reported with its error code.
    #[error("AWS error {code}: {detail}")]
    AwsError {
        code: String,
        detail: String,
        #[source]
        cause: Option<Cause>,
    },

    /// AWS answered, but with something that must not be written into a Secret.
    #[error("ECR returned an unusable authorization token: {0}")]
    InvalidToken(String),

    /// The custom resource asks for something the schema let through but that cannot work.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// A Secret of that name exists and is not controlled by this resource.
    #[error(
        "Secret {namespace}/{name} already exists and is not managed by this EcrPublicPullSecret; \
         it is left untouched. Delete it or choose another spec.secretName"
    )]
    SecretConflict { namespace: String, name: String },

    /// The Secret changed (or was deleted and created again) between the operator reading it and
    /// writing it: the write was refused rather than made over what it did not see. The watch
    /// brings the new version and the Secret is planned again.
    #[error(
        "Secret {namespace}/{name} changed after the operator read it; it is read again and \
         written on the next pass"
    )]
    SecretChanged { namespace: String, name: String },

    /// A Kubernetes API call failed. The client's error is kept as the source (shared, so the
    /// error stays cheap to clone for the token cache and the cluster kind's per-namespace list).
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] Arc<kube::Error>),

    /// The API server refused a call that a resource needs (the operator's RBAC does not allow
    /// it), or answered without what was asked for; `detail` says what to do.
    #[error("Kubernetes API error: {detail}")]
    KubeRefused {
        detail: String,
        #[source]
        source: Option<Arc<kube::Error>>,
    },

    /// Something a well-behaved API server never causes (an object without a UID, a patch we
    /// cannot encode): a bug to report, not something the resource's author can fix.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the operator process cannot start or keep running (never a resource's condition: those
/// are [`Error`]).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load Kubernetes client configuration: {0}")]
    KubeConfig(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    KubeClient(#[source] kube::Error),
    /// A flag's value the operator cannot work with (say, a role pattern that reaches another
    /// account).
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up leader election on Lease {namespace}/{name}: {source}")]
    LeaderElection {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("leader election on Lease {namespace}/{name} stopped unexpectedly")]
    ElectionStopped { namespace: String, name: String },
    /// Exiting lets a restart re-join as a follower with clean state.
    #[error("lost leadership of Lease {namespace}/{name}")]
    LostLeadership { namespace: String, name: String },
    #[error("the operator's task ended abnormally: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// `Error::label`: each variant's own name, so a label cannot drift from its variant, except
/// where users already rely on another word (`KubeError`, for both API failures).
macro_rules! labels {
    ($($variant:ident $(=> $label:literal)?),+ $(,)?) => {
        impl Error {
            /// Stable CamelCase label: condition reason, Event reason and metrics label.
            pub fn label(&self) -> &'static str {
                match self {
                    $(Error::$variant { .. } => labels!(@name $variant $($label)?),)+
                }
            }
        }
    };
    (@name $variant:ident $label:literal) => { $label };
    (@name $variant:ident) => { stringify!($variant) };
}

labels!(
    NoCredentials,
    CredentialsRejected,
    TokenFileUnreadable,
    WebIdentityDenied,
    AssumeRoleDenied,
    RoleNotAllowed,
    TooManyIdentities,
    ServiceAccountMissing,
    ServiceAccountNotAnnotated,
    AccessDenied,
    Transient,
    AwsError,
    InvalidToken,
    InvalidSpec,
    SecretConflict,
    SecretChanged,
    Kube => "KubeError",
    KubeRefused => "KubeError",
    Internal,
);

/// What to grant for a denied `service`: the IAM actions a token needs (and, for private
/// registries, the pulls it is for).
fn grant(service: &str) -> &'static str {
    if service == "ecr" {
        "Grant the role that fetches the token (the operator's own, or the resource's roleArn or \
         ServiceAccount role) ecr:GetAuthorizationToken, and ecr:BatchGetImage and \
         ecr:GetDownloadUrlForLayer on the repositories it pulls"
    } else {
        "Grant the role that fetches the token (the operator's own, or the resource's roleArn or \
         ServiceAccount role) both ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken"
    }
}

impl Error {
    /// The error as a call to `service` made it: an access denial names that service's actions.
    pub fn for_service(self, service: &'static str) -> Self {
        match self {
            Error::AccessDenied { detail, cause, .. } => Error::AccessDenied {
                service,
                detail,
                cause,
            },
            other => other,
        }
    }
}

fn role_not_allowed(role_arn: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!(
            "role {role_arn} is not allowed for resources in namespace {ns}. A cluster \
             administrator can allow it with a pattern in identity.allowedRoleArns \
             (--allowed-role-arns, where {{namespace}} stands for the resource's namespace) or a \
             rule in identity.roleRules (--role-rules) that selects this namespace"
        ),
        None => format!(
            "role {role_arn} is not allowed for ClusterEcrPublicPullSecrets. A cluster \
             administrator can allow it with a pattern in identity.clusterAllowedRoleArns \
             (--cluster-allowed-role-arns)"
        ),
    }
}

impl Error {
    /// The same error with the AWS SDK's error that caused it as its source (AWS variants only).
    pub fn caused_by(mut self, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        match &mut self {
            Error::NoCredentials { cause, .. }
            | Error::CredentialsRejected { cause, .. }
            | Error::TokenFileUnreadable { cause, .. }
            | Error::WebIdentityDenied { cause, .. }
            | Error::AssumeRoleDenied { cause, .. }
            | Error::AccessDenied { cause, .. }
            | Error::Transient { cause, .. }
            | Error::AwsError { cause, .. } => {
                cause.get_or_insert_with(|| Cause::new(error));
            }
            _ => {}
        }
        self
    }

    /// Whether a Kubernetes API call failed: the reconcile stops and is retried with backoff,
    /// rather than being reported as a token problem.
    pub fn is_kube(&self) -> bool {
        matches!(self, Error::Kube(_) | Error::KubeRefused { .. })
    }
}

impl Error {
    /// A 403 from the API server said as what the operator may not do (`detail` gets the
    /// server's reason); any other failure as it is.
    pub fn refused_or(e: kube::Error, detail: impl FnOnce(&str) -> String) -> Error {
        let reason = match &e {
            kube::Error::Api(s) if s.code == 403 => s.message.clone(),
            _ => return e.into(),
        };
        Error::KubeRefused {
            detail: detail(&reason),
            source: Some(Arc::new(e)),
        }
    }

    /// A finalizer's failure as the error it carries: the sync's or the cleanup's own, or the
    /// API call that adds or removes the finalizer.
    pub fn from_finalizer(e: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => e.into(),
            e @ (F::UnnamedObject | F::InvalidFinalizer) => Error::Internal(e.to_string()),
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_condition_reasons() {
        let e = Error::AccessDenied {
            service: "ecr-public",
            detail: "x".into(),
            cause: None,
        };
        assert_eq!(e.label(), "AccessDenied");
        assert!(e.to_string().contains("ecr-public:GetAuthorizationToken"));
        assert!(e.to_string().contains("sts:GetServiceBearerToken"));
        let private = Error::AccessDenied {
            service: "ecr",
            detail: "x".into(),
            cause: None,
        }
        .to_string();
        assert!(private.contains("ecr:GetAuthorizationToken"), "{private}");
        assert!(private.contains("ecr:BatchGetImage"), "{private}");
        assert!(!private.contains("ecr-public"), "{private}");
        let e = Error::NoCredentials {
            detail: "none".into(),
            cause: None,
        };
        assert!(e.to_string().contains("AWS_ROLE_ARN"));
        assert!(e.to_string().contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
        assert!(e.to_string().contains("eks.amazonaws.com/role-arn"));
    }

    #[test]
    fn every_label_stays_what_users_rely_on() {
        let d = || String::new();
        let api = || Arc::new(kube::Error::LinesCodecMaxLineLengthExceeded);
        let cases = [
            (
                Error::NoCredentials {
                    detail: d(),
                    cause: None,
                },
                "NoCredentials",
            ),
            (
                Error::CredentialsRejected {
                    detail: d(),
                    cause: None,
                },
                "CredentialsRejected",
            ),
            (
                Error::TokenFileUnreadable {
                    detail: d(),
                    cause: None,
                },
                "TokenFileUnreadable",
            ),
            (
                Error::WebIdentityDenied {
                    detail: d(),
                    cause: None,
                },
                "WebIdentityDenied",
            ),
            (
                Error::AssumeRoleDenied {
                    detail: d(),
                    cause: None,
                },
                "AssumeRoleDenied",
            ),
            (
                Error::RoleNotAllowed {
                    role_arn: d(),
                    namespace: None,
                },
                "RoleNotAllowed",
            ),
            (
                Error::TooManyIdentities {
                    namespace: d(),
                    limit: 1,
                },
                "TooManyIdentities",
            ),
            (
                Error::ServiceAccountMissing {
                    namespace: d(),
                    name: d(),
                },
                "ServiceAccountMissing",
            ),
            (
                Error::ServiceAccountNotAnnotated {
                    namespace: d(),
                    name: d(),
                },
                "ServiceAccountNotAnnotated",
            ),
            (
                Error::AccessDenied {
                    service: "ecr-public",
                    detail: d(),
                    cause: None,
                },
                "AccessDenied",
            ),
            (
                Error::Transient {
                    detail: d(),
                    cause: None,
                },
                "Transient",
            ),
            (
                Error::AwsError {
                    code: d(),
                    detail: d(),
                    cause: None,
                },
                "AwsError",
            ),
            (Error::InvalidToken(d()), "InvalidToken"),
            (Error::InvalidSpec(d()), "InvalidSpec"),
            (
                Error::SecretConflict {
                    namespace: d(),
                    name: d(),
                },
                "SecretConflict",
            ),
            (
                Error::SecretChanged {
                    namespace: d(),
                    name: d(),
                },
                "SecretChanged",
            ),
            (Error::Kube(api()), "KubeError"),
            (
                Error::KubeRefused {
                    detail: d(),
                    source: Some(api()),
                },
                "KubeError",
            ),
            (Error::Internal(d()), "Internal"),
        ];
        for (error, label) in cases {
            assert_eq!(error.label(), label, "{error:?}");
        }
    }

    #[test]
    fn api_errors_keep_their_source_and_their_message() {
        let e = Error::from(kube::Error::LinesCodecMaxLineLengthExceeded);
        assert!(e.is_kube());
        let source = std::error::Error::source(&e).expect("the client's error is the source");
        assert!(source.is::<Arc<kube::Error>>());
        assert_eq!(
            e.to_string(),
            format!(
                "Kubernetes API error: {}",
                kube::Error::LinesCodecMaxLineLengthExceeded
            )
        );
    }
}
