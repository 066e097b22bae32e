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
         then restart the pod; for EKS Pod Identity, create a pod identity association for that \
         ServiceAccount and check the eks-pod-identity-agent add-on runs"
    )]
    NoCredentials { detail: String },

    /// A credential provider exists but failed in a way not covered by a more specific variant.
    #[error(
        "AWS credentials could not be obtained: {detail}. Run `ecr-public-pull-secret-operator \
         token` in the operator's pod to see which credential source is used and what it returns"
    )]
    CredentialsRejected { detail: String },

    /// The token file the AWS SDK was pointed at cannot be read.
    #[error(
        "cannot read the credentials token file ({detail}). With IRSA it is \
         AWS_WEB_IDENTITY_TOKEN_FILE (/var/run/secrets/eks.amazonaws.com/serviceaccount/token), with \
         EKS Pod Identity AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: check that the projected volume is \
         mounted and readable by the container's user (fsGroup)"
    )]
    TokenFileUnreadable { detail: String },

    /// STS refused `AssumeRoleWithWebIdentity` (trust policy, audience or OIDC provider).
    #[error(
        "STS refused AssumeRoleWithWebIdentity: {detail}. The role's trust policy must allow \
         sts:AssumeRoleWithWebIdentity from the cluster's OIDC provider with the condition \
         <provider>:sub = system:serviceaccount:<namespace>:<serviceaccount> and \
         <provider>:aud = sts.amazonaws.com"
    )]
    WebIdentityDenied { detail: String },

    /// STS refused `AssumeRole` from the operator's identity to a resource's `spec.roleArn`.
    #[error(
        "STS refused AssumeRole: {detail}. The operator's own role needs sts:AssumeRole on the \
         requested role, and that role's trust policy must name the operator's role as principal"
    )]
    AssumeRoleDenied { detail: String },

    /// The resource asks for a role the operator's allow-list does not contain.
    #[error(
        "role {role_arn} is not allowed by this operator (allowed patterns: {patterns}). An \
         administrator can add a matching pattern with --allowed-role-arns (Helm value \
         identity.allowedRoleArns)"
    )]
    RoleNotAllowed { role_arn: String, patterns: String },

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
            Error::TokenFileUnreadable { .. } => "TokenFileUnreadable",
            Error::WebIdentityDenied { .. } => "WebIdentityDenied",
            Error::AssumeRoleDenied { .. } => "AssumeRoleDenied",
            Error::RoleNotAllowed { .. } => "RoleNotAllowed",
            Error::ServiceAccountMissing { .. } => "ServiceAccountMissing",
            Error::ServiceAccountNotAnnotated { .. } => "ServiceAccountNotAnnotated",
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
