//! The admin HTTP server: `/metrics` (Prometheus text), `/livez` and `/readyz`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router, body::Body, extract::State, http::StatusCode, response::IntoResponse, routing::get,
};
use tokio::time::Instant;
use tracing::{info, warn};

use super::metrics::Metrics;

/// Readiness and liveness shared between the controllers and the HTTP server.
///
/// Live means no reconcile has been running longer than the stall timeout. Waiting is not a
/// stall (an idle operator, or one backing off while the API server or AWS is down, is live: a
/// restart would not help it); a reconcile that does not finish is, since every request it makes
/// is bounded (`--api-request-timeout`, the AWS timeouts): something is wedged, and a restart
/// (new connections, new tasks) is what helps.
#[derive(Debug, Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    running: Arc<Running>,
    stall_after: Duration,
}

/// The reconciles running now, by number, with when each started.
#[derive(Debug, Default)]
struct Running {
    next: AtomicU64,
    started: Mutex<BTreeMap<u64, Instant>>,
}

/// Counts one reconcile as running until dropped.
struct Started {
    running: Arc<Running>,
    id: u64,
}

impl Drop for Started {
    fn drop(&mut self) {
        crate::lock(&self.running.started).remove(&self.id);
    }
}

impl Default for Health {
    fn default() -> Self {
        Self {
            ready: Arc::default(),
            running: Arc::default(),
            stall_after: Duration::from_secs(300),
        }
    }
}

impl Health {
    /// `/livez` fails once a reconcile has been running longer than `stall_after`.
    pub fn with_stall_timeout(mut self, stall_after: Duration) -> Self {
        self.stall_after = stall_after;
        self
    }

    /// Runs `reconcile`, counted as running from its first poll until it finishes or is dropped.
    pub fn track<F: Future>(&self, reconcile: F) -> impl Future<Output = F::Output> + use<F> {
        let running = self.running.clone();
        async move {
            let id = running.next.fetch_add(1, Ordering::Relaxed);
            crate::lock(&running.started).insert(id, Instant::now());
            let _started = Started { running, id };
            reconcile.await
        }
    }

    /// How long the oldest running reconcile has run, if longer than the stall timeout.
    pub fn stalled(&self) -> Option<Duration> {
        let started = crate::lock(&self.running.started);
        let oldest = started.values().min()?.elapsed();
        (oldest > self.stall_after).then_some(oldest)
    }

    /// Marks the process ready (caches synced, or waiting as a leader-election follower).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Marks the process ready once `ready` resolves true (the caches have synced).
    pub fn ready_when(&self, ready: impl Future<Output = bool> + Send + 'static) {
        let health = self.clone();
        tokio::spawn(async move {
            if ready.await {
                info!("caches synced");
                health.set_ready(true);
            }
        });
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    info!(%bound, "admin server listening (/metrics, /livez, /readyz)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "admin server stopped");
        }
    });
    Ok(bound)
}

/// Streams the answer: each chunk is made when the connection can take it, so an answer with a
/// line per Secret never sits in memory whole.
async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    let chunks = s
        .metrics
        .exposition()
        .map(Ok::<_, std::convert::Infallible>);
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        Body::from_stream(futures::stream::iter(chunks)),
    )
}

async fn livez(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.stalled() {
        None => (StatusCode::OK, "ok".to_owned()),
        Some(running) => {
            let limit = s.health.stall_after.as_secs();
            let message = format!(
                "a reconcile has been running for {}s, longer than --stall-timeout ({limit}s): \
                 the process is wedged",
                running.as_secs()
            );
            warn!("{message}");
            (StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_a_reconcile_running_past_the_stall_timeout_fails_liveness() {
        let health = Health::default().with_stall_timeout(Duration::from_secs(300));
        assert_eq!(health.stalled(), None, "idle is live");
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let reconcile = tokio::spawn(health.track(finished));
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(health.stalled(), None, "within the timeout");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(health.stalled(), Some(Duration::from_secs(301)));
        finish.send(()).unwrap();
        reconcile.await.unwrap().unwrap();
        assert_eq!(health.stalled(), None, "live again once it finished");
        // A reconcile dropped unfinished (shutdown) no longer counts either.
        let dropped = tokio::spawn(health.track(futures::future::pending::<()>()));
        tokio::task::yield_now().await;
        dropped.abort();
        let _ = dropped.await;
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(health.stalled(), None);
    }
}
