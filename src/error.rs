//! The operator's one error type.
//!
//! Every variant has a stable short [`Error::label`] that is used verbatim as the `Ready` condition
//! reason, the Event reason and the `reason` label of metrics, so dashboards and alerts can rely on it.
//! Messages are written for the person who has to fix the problem and never contain token material.

/// Everything that can go wrong while reconciling one custom resource.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The operator found no AWS credentials at all (IRSA not wired up).
    #[error(
        "no AWS credentials found ({detail}). For IRSA, annotate the operator's ServiceAccount with \
         eks.amazonaws.com/role-arn so that the pod gets AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, \
         then restart the pod"
    )]
    NoCredentials { detail: String },

    /// A credential provider exists but refused to hand out credentials (for example STS denied the
    /// web identity token).
    #[error(
        "AWS credentials could not be obtained: {detail}. Check the IAM role's trust policy allows \
         sts:AssumeRoleWithWebIdentity for this ServiceAccount"
    )]
    CredentialsRejected { detail: String },

    /// IAM denied the ECR Public call.
    #[error(
        "AWS denied GetAuthorizationToken: {detail}. Grant the operator's role both \
         ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken"
    )]
    AccessDenied { detail: String },

    /// Throttling, 5xx, timeouts and connection failures: retried with backoff.
    #[error("temporary AWS failure, will retry: {detail}")]
    Transient { detail: String },

    /// Any other AWS error, reported with its error code.
    #[error("AWS error {code}: {detail}")]
    AwsError { code: String, detail: String },

    /// AWS answered, but with something that must not be written into a Secret.
    #[error("ECR Public returned an unusable authorization token: {0}")]
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

    /// A Kubernetes API call failed.
    #[error("Kubernetes API error: {0}")]
    Kube(String),
}

impl Error {
    /// Stable CamelCase label: condition reason, Event reason and metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Error::NoCredentials { .. } => "NoCredentials",
            Error::CredentialsRejected { .. } => "CredentialsRejected",
            Error::AccessDenied { .. } => "AccessDenied",
            Error::Transient { .. } => "Transient",
            Error::AwsError { .. } => "AwsError",
            Error::InvalidToken(_) => "InvalidToken",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::SecretConflict { .. } => "SecretConflict",
            Error::Kube(_) => "KubeError",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_condition_reasons() {
        let e = Error::AccessDenied { detail: "x".into() };
        assert_eq!(e.label(), "AccessDenied");
        assert!(e.to_string().contains("ecr-public:GetAuthorizationToken"));
        assert!(e.to_string().contains("sts:GetServiceBearerToken"));
        let e = Error::NoCredentials {
            detail: "none".into(),
        };
        assert!(e.to_string().contains("AWS_ROLE_ARN"));
        assert!(e.to_string().contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
        assert!(e.to_string().contains("eks.amazonaws.com/role-arn"));
    }
}
