//! The AWS identity test servers: moto's STS, the in-repo STS (fault-injecting proxy, standalone) and the Pod Identity
//! endpoint, each driven by the real AWS SDK for Rust.

mod container_credentials;
mod moto;
mod sts;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use harness::moto::Moto;

/// moto's server from `<target>/chart-tools/moto`, installed on first use. Not being able to
/// install it fails the tests rather than skipping them.
pub fn moto_server() -> &'static Path {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        // CARGO_TARGET_TMPDIR is <target>/tmp; the tools live beside it, as for tests/chart.rs.
        let tools = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("chart-tools");
        harness::moto::install(&tools)
    });
    match ready {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

pub async fn start_moto() -> Moto {
    Moto::start(moto_server()).await.expect("moto starts")
}

/// An STS client for `endpoint`, signing with the given key (any secret: moto checks none).
pub fn sts(endpoint: &str, access_key_id: &str, retry: RetryConfig) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            access_key_id,
            "secret",
            None,
            None,
            "test",
        ))
        .retry_config(retry)
        .timeout_config(
            aws_sdk_sts::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_sts::Client::from_conf(config)
}
