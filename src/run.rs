//! Process wiring: from parsed flags to a running controller. Shared by the binary and the demo.

use std::{future::Future, sync::Arc, time::Duration};

use aws_config::SdkConfig;
use tracing::info;

use crate::{
    aws::{self, EcrPublic},
    cache::TokenCache,
    config::RunArgs,
    controller,
};

/// How long a failed token fetch is answered from memory: bounds AWS calls during an outage.
const FAILURE_TTL: Duration = Duration::from_secs(1);

/// Loads kube and AWS configuration from the environment and runs until `shutdown` resolves.
pub async fn run(
    args: &RunArgs,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
    let sdk = aws::load_sdk_config(&args.aws()).await;
    run_with(client, &sdk, args, shutdown).await;
    Ok(())
}

/// Runs the operator with an explicit Kubernetes client and AWS configuration (the demo, tests and
/// the benchmark use this to point it at the in-repo emulators).
pub async fn run_with(
    client: kube::Client,
    sdk: &SdkConfig,
    args: &RunArgs,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let tokens = Arc::new(TokenCache::new(
        Arc::new(EcrPublic::new(aws::ecr_public_client(sdk))),
        FAILURE_TTL,
    ));
    info!(watch_namespace = ?args.watch_namespace, "starting ecr-public-pull-secret-operator {}", env!("CARGO_PKG_VERSION"));
    controller::run(client, tokens, args.controller(), shutdown).await;
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    info!("shutdown signal received");
}
