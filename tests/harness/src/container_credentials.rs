//! The EKS Pod Identity Agent (the ECS container credentials protocol) on 127.0.0.1.
//!
//! The SDK's container provider (aws-config `ecs.rs`) is configured by
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` (over plain HTTP only loopback or the ECS/EKS link-local
//! addresses are allowed) and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, whose whole contents,
//! unparsed and re-read on every fetch, it sends as the `Authorization` header of a
//! `GET` with `Accept: application/json`. It expects
//! `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` with an RFC 3339 expiration
//! (`AccountId` optional); any non-2xx status is a credentials error (5xx retried).

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::scratch::ScratchDir;

/// The agent's path (`http://169.254.170.23/v1/credentials` in a pod).
const PATH: &str = "/v1/credentials";

struct Inner {
    token: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: DateTime<Utc>,
    requests: usize,
    rejected: usize,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running endpoint. Stops, and deletes its token file, when dropped.
pub struct ContainerCredentials {
    addr: SocketAddr,
    shared: Shared,
    dir: ScratchDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ContainerCredentials {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ContainerCredentials {
    /// Starts serving these credentials, with a fresh random authorization token written to
    /// `token_file()`.
    pub async fn start(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: &str,
        expiration: DateTime<Utc>,
    ) -> io::Result<ContainerCredentials> {
        let dir = ScratchDir::new("harness-pod-identity")?;
        let token = new_token();
        std::fs::write(dir.path().join("token"), &token)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Inner {
            token,
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.to_owned(),
            expiration,
            requests: 0,
            rejected: 0,
        }));
        let app = Router::new()
            .route(PATH, get(handle))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ContainerCredentials {
            addr,
            shared,
            dir,
            task,
        })
    }

    /// Value for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn full_uri(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// Path for `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: the token, with no trailing newline
    /// (the SDK sends the bytes as they are, and a newline is not a valid header byte).
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// The token currently expected in `Authorization`.
    pub fn token(&self) -> String {
        lock(&self.shared).token.clone()
    }

    /// Replaces the token, in the file and in what is accepted, as the kubelet rotates the
    /// projected token: requests with the old one are refused from now on.
    pub fn rotate_token(&self) -> io::Result<()> {
        let token = new_token();
        write_atomically(&self.token_file(), &token)?;
        lock(&self.shared).token = token;
        Ok(())
    }

    /// Serves these credentials from now on.
    pub fn set_credentials(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: &str,
        expiration: DateTime<Utc>,
    ) {
        let mut inner = lock(&self.shared);
        inner.access_key_id = access_key_id.to_owned();
        inner.secret_access_key = secret_access_key.to_owned();
        inner.session_token = session_token.to_owned();
        inner.expiration = expiration;
    }

    /// Requests received on the credentials path, refused ones included.
    pub fn requests(&self) -> usize {
        lock(&self.shared).requests
    }

    /// Requests refused with 403 for a missing or wrong `Authorization`.
    pub fn rejected(&self) -> usize {
        lock(&self.shared).rejected
    }
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let mut inner = lock(&shared);
    inner.requests += 1;
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if auth != Some(inner.token.as_bytes()) {
        inner.rejected += 1;
        return (
            StatusCode::FORBIDDEN,
            "invalid or missing authorization token",
        )
            .into_response();
    }
    let body = json!({
        "AccessKeyId": inner.access_key_id,
        "SecretAccessKey": inner.secret_access_key,
        "Token": inner.session_token,
        "Expiration": inner.expiration.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Rename over the old file, so a concurrent reader sees the old or the new token, never half.
fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(tmp, path)
}
