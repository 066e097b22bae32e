//! Where tokens come from: the AWS side of the operator.
//!
//! - [`identity`]: which IAM identity a resource uses;
//! - [`permissions`]: which roles a resource may use, per namespace (pure);
//! - [`credentials`]: one credentials provider per identity (the ServiceAccount TokenRequest →
//!   STS exchange included), and the shared ECR Public, ECR and STS clients;
//! - [`source`]: where a token comes from (ECR Public, or private ECR in one region);
//! - this module: the SDK configuration and the calls that fetch a token ([`Ecr`]);
//! - [`classify`]: AWS failures turned into [`Error`] variants a user can act on (pure);
//! - [`cache`]: one token per identity, shared by every resource that uses it (single flight);
//! - [`token`]: the token itself, validated at the boundary, never printed;
//! - [`diagnose`]: the `token` subcommand.

pub mod cache;
pub mod classify;
pub mod credentials;
pub mod diagnose;
pub mod identity;
pub mod permissions;
pub mod source;
pub mod token;

use std::time::Duration;

use aws_config::{
    BehaviorVersion, Region, SdkConfig, identity::IdentityCache, meta::region::RegionProviderChain,
    retry::RetryConfig, timeout::TimeoutConfig,
};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::{Error, hosts};
use credentials::Clients;
use identity::Identity;
use source::Source;
use token::Token;

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
    /// How long before expiry cached AWS credentials are refreshed.
    pub credentials_refresh_before: Duration,
}

impl AwsSettings {
    /// The bound on one attempt: the operation's time shared by its attempts. Also what a
    /// credentials load may take (it runs inside an attempt).
    pub fn attempt_timeout(&self) -> Duration {
        self.operation_timeout / self.max_attempts.max(1)
    }
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
            max_attempts: 3,
            credentials_refresh_before: Duration::from_secs(300),
        }
    }
}

/// Loads the default credential chain once (env, IRSA web identity, EKS Pod Identity, ...), with
/// explicit timeouts and standard retries. Its credentials cache is shared by every client built
/// from it. STS uses the pod's region when there is one.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let region =
        RegionProviderChain::default_provider().or_else(Region::from_static(ECR_PUBLIC_REGION));
    let attempt_timeout = settings.attempt_timeout();
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
        .identity_cache(
            IdentityCache::lazy()
                .buffer_time(settings.credentials_refresh_before)
                // The SDK's default of 5 s is short for a ServiceAccount identity (a TokenRequest
                // to the API server, then STS): a load cut off is started again, which costs
                // a second STS exchange for the same identity. One attempt's time bounds it.
                .load_timeout(attempt_timeout)
                .build(),
        )
        .load()
        .await
}

/// Where tokens come from. The cache calls this at most once per identity per source per
/// rotation.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a fresh, validated token for `identity` from `source`.
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
        source: &'a Source,
    ) -> BoxFuture<'a, Result<Token, Error>>;

    /// Drops whatever the source keeps for `identity` (no resource uses it any more).
    fn forget(&self, _identity: &Identity) {}
}

/// The real source: ECR Public's or a region's ECR `GetAuthorizationToken`, with the identity's
/// credentials.
pub struct Ecr {
    clients: Clients,
}

impl Ecr {
    pub fn new(clients: Clients) -> Self {
        Self { clients }
    }

    /// The credential providers and clients per identity (the `token` subcommand reuses them).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }
}

impl Ecr {
    /// ECR Public's token (us-east-1).
    async fn public(&self, identity: &Identity) -> Result<Token, Error> {
        let call = self.clients.ecr.get_authorization_token();
        let sent = match self.clients.get(identity)? {
            None => call.send().await,
            Some(c) => {
                call.customize()
                    .config_override(c.ecr_override())
                    .send()
                    .await
            }
        };
        let out = sent.map_err(|e| classify::explain(identity, &Source::Public, e))?;
        let data = out.authorization_data();
        let expires = data
            .and_then(|d| d.expires_at())
            .and_then(|t| DateTime::from_timestamp(t.secs(), 0));
        Token::from_response(
            data.and_then(|d| d.authorization_token()),
            expires,
            Utc::now(),
        )
    }

    /// Private ECR's token in `region`: one for every registry there the identity may read (no
    /// `registryIds`: that parameter is deprecated and changes nothing).
    async fn private(&self, identity: &Identity, region: &str) -> Result<Token, Error> {
        let source = Source::private(region);
        let mut conf =
            aws_sdk_ecr::config::Builder::default().region(Region::new(region.to_owned()));
        if let Some(c) = self.clients.get(identity)? {
            c.apply_to(&mut conf);
        }
        let call = self.clients.ecr_private.get_authorization_token();
        let sent = call.customize().config_override(conf).send().await;
        let out = sent.map_err(|e| classify::explain(identity, &source, e))?;
        let data = out.authorization_data().first();
        let expires = data
            .and_then(|d| d.expires_at())
            .and_then(|t| DateTime::from_timestamp(t.secs(), 0));
        let token = Token::from_response(
            data.and_then(|d| d.authorization_token()),
            expires,
            Utc::now(),
        )?;
        let account = data.and_then(|d| d.proxy_endpoint());
        Ok(token.with_account(account.and_then(hosts::account_of_endpoint)))
    }
}

impl TokenSource for Ecr {
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
        source: &'a Source,
    ) -> BoxFuture<'a, Result<Token, Error>> {
        Box::pin(async move {
            match source {
                Source::Public => self.public(identity).await,
                Source::Private { region } => self.private(identity, region).await,
            }
        })
    }

    fn forget(&self, identity: &Identity) {
        self.clients.forget(identity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_gets_its_share_of_the_operation() {
        let defaults = AwsSettings::default();
        assert_eq!(defaults.attempt_timeout(), Duration::from_secs(10));
        let no_retries = AwsSettings {
            max_attempts: 0,
            ..defaults
        };
        assert_eq!(no_retries.attempt_timeout(), Duration::from_secs(30));
    }
}
