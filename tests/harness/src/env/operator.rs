//! The real operator running in this process, and reading its admin server.

use std::time::Duration;

use aws_config::SdkConfig;
use clap::Parser;
use ecr_public_pull_secret_operator::{config::Cli, run};

use super::Env;

impl Env {
    /// Runs the real operator (admin server on a free port, controller, optional leader
    /// election) in this process until the returned handle is stopped.
    pub async fn start_operator(&self, extra_args: &[&str]) -> Operator {
        self.start_operator_with_sdk(&self.sdk_config(), extra_args)
            .await
    }

    /// Like [`Env::start_operator`], but with an explicit AWS config (for example one whose
    /// credentials provider fails).
    pub async fn start_operator_with_sdk(&self, sdk: &SdkConfig, extra_args: &[&str]) -> Operator {
        let mut argv = vec![
            "ecr-public-pull-secret-operator",
            "--retry-backoff-base",
            "200ms",
            "--retry-backoff-max",
            "2s",
            "--http-addr",
            "127.0.0.1:0",
        ];
        argv.extend_from_slice(extra_args);
        let args = Cli::try_parse_from(argv).expect("operator flags").run;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = run::start(self.client(), sdk, &args, async move {
            let _ = rx.await;
        })
        .await
        .expect("operator starts");
        Operator {
            stop: Some(tx),
            http_addr: running.http_addr,
            task: running.done,
        }
    }
}

impl Operator {
    /// Whether the operator task is still running (it has not returned, failed or panicked).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Kills the operator as SIGKILL would: no graceful shutdown, in-flight work is dropped.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// A running in-process operator.
pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The admin server's address (`/metrics`, `/livez`, `/readyz`).
    pub http_addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<Result<(), ecr_public_pull_secret_operator::error::StartError>>,
}

impl Operator {
    /// Graceful shutdown, as on SIGTERM; waits until the operator has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = &mut self.task;
        let result = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("operator stops");
        result
            .expect("operator task")
            .expect("operator stopped cleanly");
    }

    /// GET on the admin server: (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http_addr, path).await
    }
}

/// GET over loopback with a minimal HTTP/1.1 client: (status code, body); (0, "") when nothing
/// listens.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Polls `probe` until it returns true, at most `timeout`. Only for state of another process or
/// endpoint that offers nothing to await; emulator state is awaited with [`Env::wait`].
pub async fn eventually(timeout: Duration, mut probe: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The value of one Prometheus series in a text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
