//! Process wiring: from parsed flags to a running operator (admin server, optional leader
//! election, reconcilers). Shared by the binary, the demo, the tests and the benchmark.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use aws_config::SdkConfig;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    admin::{
        http::{self, Health},
        metrics::{Metered, Metrics},
    },
    aws::{self, Ecr, cache::TokenCache, credentials::Clients},
    config::RunArgs,
    controller::{self, Features, Inputs},
    error::StartError,
    k8s::{
        leader::{Leadership, LeaseSettings},
        timeout::RequestTimeout,
    },
};

/// How long a failed token fetch is answered from memory: bounds AWS calls during an outage.
const FAILURE_TTL: Duration = Duration::from_secs(1);

/// Loads kube and AWS configuration from the environment and runs until `shutdown` resolves.
pub async fn run(
    args: &RunArgs,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), StartError> {
    let mut config = kube::Config::infer()
        .await
        .map_err(StartError::KubeConfig)?;
    no_client_retries(&mut config);
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(StartError::KubeClient)?
        .with_layer(&RequestTimeout(args.api_request_timeout))
        .build();
    let sdk = aws::load_sdk_config(&args.aws()).await;
    start(client, &sdk, args, shutdown)
        .await?
        .done
        .await
        .map_err(StartError::Task)?
}

/// Turns off kube's built-in retries of 429/503/504 (on by default since
/// <https://github.com/kube-rs/kube/pull/2007>). A reconcile waiting out such a retry's own backoff
/// cannot notice that the API server is back, which delays recovery after an outage; the
/// controller's per-object backoff (bounded by `--retry-backoff-max`) and the watchers' backoff
/// handle these errors instead.
pub fn no_client_retries(config: &mut kube::Config) {
    config.default_retry = false;
}

/// A started operator.
pub struct Running {
    /// Where the admin server listens (resolved when `--http-addr` uses port 0).
    pub http_addr: SocketAddr,
    /// Resolves when the operator has stopped; an error when it stopped for a reason other than
    /// `shutdown` (for example lost leadership).
    pub done: JoinHandle<Result<(), StartError>>,
}

/// Starts the operator with an explicit Kubernetes client and AWS configuration (the demo, tests
/// and the benchmark use this to point it at the in-repo emulators).
pub async fn start(
    client: kube::Client,
    sdk: &SdkConfig,
    args: &RunArgs,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<Running, StartError> {
    let settings = args.controller_settings().map_err(StartError::Config)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let metrics = Arc::new(Metrics::default());
    let health = Health::default().with_stall_timeout(args.stall_timeout);
    let http_addr = http::serve(args.http_addr, metrics.clone(), health.clone(), stopped())
        .await
        .map_err(|source| StartError::Listen {
            addr: args.http_addr,
            source,
        })?;
    for pattern in settings.role_permissions.shared_patterns() {
        warn!(%pattern, "this --allowed-role-arns pattern has no {{namespace}}: resources in every namespace may use every role it matches");
    }
    let clients = Clients::new(sdk, &args.aws(), Some(client.clone()));
    let source = Metered::new(Ecr::new(clients), metrics.clone());
    let tokens = TokenCache::new(Arc::new(source), FAILURE_TTL)
        .with_namespace_limit(settings.max_identities_per_namespace);
    let inputs = Inputs {
        tokens: Arc::new(tokens),
        client,
        settings,
        metrics,
        health,
    };
    // The cluster kind writes into many namespaces: it needs cluster-wide access.
    let features = Features {
        cluster: args.cluster_pull_secrets && inputs.settings.watch_namespace.is_none(),
        service_accounts: args.patch_service_accounts,
    };
    let lease = args.lease();
    info!(watch_namespace = ?inputs.settings.watch_namespace, leader_election = lease.is_some(), "starting ecr-public-pull-secret-operator {}", env!("CARGO_PKG_VERSION"));
    let done = tokio::spawn(async move {
        match lease {
            None => {
                controller::run(inputs, features, stopped()).await;
                Ok(())
            }
            Some(lease) => lead(inputs, features, lease, stopped).await,
        }
    });
    Ok(Running { http_addr, done })
}

/// Runs the reconcilers while this process holds the Lease, until `stopped` resolves.
async fn lead<F>(
    inputs: Inputs,
    features: Features,
    lease: LeaseSettings,
    stopped: impl Fn() -> F,
) -> Result<(), StartError>
where
    F: Future<Output = ()> + Send + Sync + 'static,
{
    // Followers report ready: a rolling update must not wait for a Lease it cannot get.
    inputs.health.set_ready(true);
    let mut leadership = Leadership::start(inputs.client.clone(), &lease).await?;
    tokio::select! {
        acquired = leadership.acquired() => if !acquired {
            return Err(StartError::ElectionStopped {
                namespace: lease.namespace.clone(),
                name: lease.name.clone(),
            });
        },
        () = stopped() => return Ok(()),
    }
    info!(lease = %lease.name, "acquired leadership; starting the controller");
    let lost = leadership.lost();
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let stop = stopped();
    let until = async move {
        tokio::select! {
            () = stop => {},
            () = lost => { let _ = lost_tx.send(true); },
        }
    };
    controller::run(inputs, features, until).await;
    if *lost_rx.borrow_and_update() {
        warn!(lease = %lease.name, "lost leadership; exiting so a restart re-joins as follower");
        return Err(StartError::LostLeadership {
            namespace: lease.namespace.clone(),
            name: lease.name.clone(),
        });
    }
    leadership.release().await;
    Ok(())
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
