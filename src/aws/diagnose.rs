//! `ecr-public-pull-secret-operator token`: answers "why can't it get a token?" from inside the
//! operator's pod, resolving credentials exactly as the operator does and reporting each step.
//! The token itself is printed only with `--show-token`.

use std::io::Write;

use aws_config::SdkConfig;
use aws_credential_types::{
    Credentials, credential_feature::AwsCredentialFeature, provider::ProvideCredentials,
};
use chrono::Utc;

use super::{
    AwsSettings, Ecr, TokenSource, classify, credentials::Clients, identity::Identity,
    source::Source, token::Token,
};
use crate::Error;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Assume this role from the operator's identity, as `spec.roleArn` does.
    pub role_arn: Option<String>,
    /// Print the token (a secret) as well.
    pub show_token: bool,
    /// Also fetch private ECR's token in these regions.
    pub private_regions: Vec<String>,
}

/// Runs every step, writing one line per step to `out`; the first failure is returned.
pub async fn token(
    sdk: &SdkConfig,
    settings: &AwsSettings,
    options: &Options,
    out: &mut impl Write,
) -> Result<(), Error> {
    let identity = match &options.role_arn {
        Some(role_arn) => Identity::Role {
            role_arn: role_arn.clone(),
        },
        None => Identity::Operator,
    };
    let line = |out: &mut dyn Write, key: &str, value: &str| {
        // A closed stdout is not worth failing the diagnosis over.
        let _ = writeln!(out, "{key:<24}{value}");
    };
    line(out, "identity:", &identity.to_string());
    let source = Ecr::new(Clients::new(sdk, settings, None));
    let provider = match source.clients().get(&identity)? {
        Some(c) => c.provider,
        None => sdk
            .credentials_provider()
            .ok_or_else(|| Error::NoCredentials {
                detail: "the SDK configuration has no credentials provider".into(),
                cause: None,
            })?,
    };
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| classify::explain_credentials(&identity, e))?;
    line(out, "credential source:", source_of(&credentials));
    line(out, "access key id:", credentials.access_key_id());
    let mut sts = aws_sdk_sts::config::Builder::from(sdk);
    sts.set_credentials_provider(Some(provider));
    match aws_sdk_sts::Client::from_conf(sts.build())
        .get_caller_identity()
        .send()
        .await
    {
        Ok(caller) => line(out, "caller identity:", caller.arn().unwrap_or("(none)")),
        // Informational only: GetCallerIdentity needs no permission but may be unreachable.
        Err(e) => line(
            out,
            "caller identity:",
            &format!(
                "unknown ({})",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ),
        ),
    }
    let sources = std::iter::once(Source::Public)
        .chain(options.private_regions.iter().map(|r| Source::private(r)));
    for source_of_token in sources {
        line(out, "source:", &source_of_token.to_string());
        let token = source.fetch(&identity, &source_of_token).await?;
        show(out, &token, options.show_token);
    }
    Ok(())
}

/// One token's lines: its expiry, and the token only when asked for.
fn show(out: &mut impl Write, token: &Token, show_token: bool) {
    let line = |out: &mut dyn Write, key: &str, value: &str| {
        let _ = writeln!(out, "{key:<24}{value}");
    };
    let left = token.expires_at - Utc::now();
    line(out, "GetAuthorizationToken:", "ok");
    if let Some(account) = &token.account {
        line(out, "registry account:", account);
    }
    line(
        out,
        "token expires at:",
        &format!(
            "{} (in {}h{:02}m)",
            token.expires_at.to_rfc3339(),
            left.num_hours(),
            left.num_minutes() % 60
        ),
    );
    if show_token {
        line(out, "token:", token.auth());
    } else {
        line(out, "token:", "(hidden; pass --show-token to print it)");
    }
}

/// Which provider of the default chain (or which role chain) produced `credentials`, named as
/// the user configured it.
fn source_of(credentials: &Credentials) -> &'static str {
    use AwsCredentialFeature as F;
    let features = credentials
        .get_property::<Vec<AwsCredentialFeature>>()
        .map(Vec::as_slice)
        .unwrap_or_default();
    // The last feature is the outermost provider (an assumed role wraps its source).
    match features.last() {
        Some(F::CredentialsStsAssumeRole) => "sts:AssumeRole from the operator's own credentials",
        Some(F::CredentialsProfileStsWebIdToken | F::CredentialsEnvVarsStsWebIdToken) => {
            "IRSA web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE)"
        }
        Some(F::CredentialsHttp) => {
            "container credentials endpoint (EKS Pod Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI)"
        }
        Some(F::CredentialsEnvVars) => "static keys from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        Some(F::CredentialsImds) => "EC2 instance metadata (the node's role; IRSA is not set up)",
        Some(F::CredentialsProfile) => "shared config/credentials file profile",
        Some(_) => "other AWS SDK credential provider",
        None => "explicitly configured credentials",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_source_users_configured() {
        let mut c = Credentials::new("AKID", "secret", None, None, "test");
        assert_eq!(source_of(&c), "explicitly configured credentials");
        c.get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .push(AwsCredentialFeature::CredentialsProfileStsWebIdToken);
        assert!(source_of(&c).starts_with("IRSA"));
        c.get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .push(AwsCredentialFeature::CredentialsStsAssumeRole);
        assert!(source_of(&c).contains("AssumeRole"));
    }
}
