//! The admin HTTP server: `/metrics` (Prometheus text), `/livez` and `/readyz`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router, body::Body, extract::State, http::StatusCode, response::IntoResponse, routing::get,
};
use tracing::{info, warn};

use super::metrics::Metrics;

/// Readiness shared between the controller and the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
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
        .route("/livez", get(|| async { "ok" }))
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

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}
