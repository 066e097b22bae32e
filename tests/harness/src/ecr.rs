//! A fake Amazon ECR Public and ECR endpoint speaking AWS JSON 1.1, for
//! `AWS_ENDPOINT_URL_ECR_PUBLIC` and `AWS_ENDPOINT_URL_ECR`.
//!
//! It answers ECR Public's `SpencerFrontendService.GetAuthorizationToken` like the real service: a
//! token that is base64 of `AWS:<password>` and an `expiresAt` in epoch seconds, insisting on a
//! SigV4 credential scope of `us-east-1/ecr-public` (the only region the API exists in). It answers
//! private ECR's `AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken` in whatever region
//! the request is signed for (scope `<region>/ecr`), with a `proxyEndpoint` naming [`ACCOUNT`]'s
//! registry there. It counts calls per access key and per source, issues tokens with a chosen
//! lifetime, and injects failures on request: for every call, or for one source (a region) alone.
//! moto serves private ECR too, but its tokens expired in 2015 and it injects no faults.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine as _;
use serde_json::json;
use tokio::sync::watch;

/// A failure the fake can inject.
#[derive(Debug, Clone, PartialEq)]
pub enum EcrFault {
    /// 400 `AccessDeniedException`, as IAM denies the call.
    AccessDenied,
    /// 400 `ThrottlingException`.
    Throttling,
    /// 500 `ServerException`.
    ServerError,
    /// Wait this long before answering normally (to exceed client timeouts).
    Hang(Duration),
    /// A token that is not base64.
    BadBase64,
    /// A base64 token without the `AWS:` prefix separator.
    NoColon,
    /// A token whose `expiresAt` is already past.
    ExpiredToken,
    /// A token claiming to live for years.
    FarFuture,
}

/// The account whose registry a private token's `proxyEndpoint` names.
pub const ACCOUNT: &str = "123456789012";

/// One GetAuthorizationToken request as received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Access key id from the SigV4 credential scope.
    pub access_key: String,
    /// `ecr-public` or `ecr`, from the credential scope.
    pub service: String,
    /// The region it was signed for.
    pub region: String,
    /// Whether a token was issued.
    pub succeeded: bool,
    /// When it arrived.
    pub at: chrono::DateTime<chrono::Utc>,
}

struct Inner {
    lifetime: Duration,
    persistent: Option<EcrFault>,
    queued: VecDeque<EcrFault>,
    /// Faults of one source, by (service, region).
    per_source: BTreeMap<(String, String), EcrFault>,
    calls: Vec<Call>,
    passwords: Vec<String>,
    /// The last password issued per (service, region).
    latest: BTreeMap<(String, String), String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<watch::Sender<u64>>,
    /// While true, requests wait before they are answered (and counted as held).
    held: Arc<watch::Sender<bool>>,
    holding: Arc<std::sync::atomic::AtomicUsize>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fake. Stops when dropped.
pub struct FakeEcrPublic {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEcrPublic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEcrPublic {
    /// Starts the fake on 127.0.0.1 with 12 h tokens.
    pub async fn start() -> std::io::Result<FakeEcrPublic> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                lifetime: Duration::from_secs(12 * 3600),
                persistent: None,
                queued: VecDeque::new(),
                per_source: BTreeMap::new(),
                calls: Vec::new(),
                passwords: Vec::new(),
                latest: BTreeMap::new(),
            })),
            changed: Arc::new(watch::channel(0).0),
            held: Arc::new(watch::channel(false).0),
            holding: Arc::default(),
        };
        let app = Router::new()
            .route("/", post(handle))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeEcrPublic { addr, shared, task })
    }

    /// Endpoint URL for `AWS_ENDPOINT_URL_ECR_PUBLIC` and `AWS_ENDPOINT_URL_ECR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().lifetime = lifetime;
    }

    /// Fail (or misbehave on) every call until cleared with `None`.
    pub fn set_fault(&self, fault: Option<EcrFault>) {
        self.shared.lock().persistent = fault;
    }

    /// Fail (or misbehave on) every call of `service` (`ecr-public` or `ecr`) in `region` until
    /// cleared with `None`; the other sources answer as usual.
    pub fn set_source_fault(&self, service: &str, region: &str, fault: Option<EcrFault>) {
        let key = (service.to_owned(), region.to_owned());
        let mut inner = self.shared.lock();
        match fault {
            Some(f) => inner.per_source.insert(key, f),
            None => inner.per_source.remove(&key),
        };
    }

    /// Requests per (service, region), whatever their outcome.
    pub fn calls_by_source(&self) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        for c in &self.shared.lock().calls {
            *out.entry((c.service.clone(), c.region.clone()))
                .or_insert(0) += 1;
        }
        out
    }

    /// The password last issued for `service` in `region`.
    pub fn latest_password(&self, service: &str, region: &str) -> Option<String> {
        let key = (service.to_owned(), region.to_owned());
        self.shared.lock().latest.get(&key).cloned()
    }

    /// Fail the next `times` calls with `fault`, then behave again.
    pub fn fail_next(&self, fault: EcrFault, times: usize) {
        self.shared
            .lock()
            .queued
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Number of GetAuthorizationToken requests received, whatever their outcome.
    pub fn calls(&self) -> usize {
        self.shared.lock().calls.len()
    }

    /// Number of tokens issued.
    pub fn successful_calls(&self) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.succeeded)
            .count()
    }

    /// Every request so far, oldest first.
    pub fn call_log(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Requests per access key id (which identity signed them).
    pub fn calls_by_access_key(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in &self.shared.lock().calls {
            *out.entry(c.access_key.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Every password issued so far: tests search logs, Events and status for them.
    pub fn issued_passwords(&self) -> Vec<String> {
        self.shared.lock().passwords.clone()
    }

    /// Holds every request from now on until [`FakeEcrPublic::release`]: a fetch in flight for as
    /// long as a test needs to change the world under it.
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    /// Answers the held requests, and every later one at once.
    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    /// Waits until a request is being held; false on timeout.
    pub async fn wait_for_held(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.changed.subscribe();
        let holding = || {
            self.shared
                .holding
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0
        };
        tokio::time::timeout(timeout, async {
            while !holding() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && holding()
    }

    /// Waits until at least `n` calls were received; false on timeout.
    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.changed.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if self.calls() >= n {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}

fn aws_error(status: StatusCode, type_: &str, message: &str) -> Response {
    let body = json!({ "__type": type_, "message": message }).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/x-amz-json-1.1"),
            (header::HeaderName::from_static("x-amzn-errortype"), type_),
        ],
        body,
    )
        .into_response()
}

/// Parses `Credential=AKID/date/region/service/aws4_request` out of a SigV4 Authorization header.
fn credential_scope(headers: &HeaderMap) -> Option<(String, String, String)> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?.split(',').next()?;
    let mut parts = cred.split('/');
    let key = parts.next()?.to_owned();
    let _date = parts.next()?;
    let region = parts.next()?.to_owned();
    let service = parts.next()?.to_owned();
    Some((key, region, service))
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap, _body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let private = match target {
        "SpencerFrontendService.GetAuthorizationToken" => false,
        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken" => true,
        _ => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &format!("unknown operation {target:?}"),
            );
        }
    };
    let Some((access_key, region, service)) = credential_scope(&headers) else {
        return aws_error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "request is not signed",
        );
    };
    let scoped = if private {
        service == "ecr"
    } else {
        region == "us-east-1" && service == "ecr-public"
    };
    if !scoped {
        let expected = if private {
            "<region>/ecr"
        } else {
            "us-east-1/ecr-public"
        };
        return aws_error(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            &format!(
                "Credential should be scoped to a valid region and service: {expected}, not {region}/{service}"
            ),
        );
    }
    let (fault, lifetime) = {
        let mut inner = shared.lock();
        let key = (service.clone(), region.clone());
        let fault = (inner.per_source.get(&key).cloned())
            .or_else(|| inner.queued.pop_front())
            .or_else(|| inner.persistent.clone());
        (fault, inner.lifetime)
    };
    if let Some(EcrFault::Hang(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let mut held = shared.held.subscribe();
    if *held.borrow_and_update() {
        shared
            .holding
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        shared.changed.send_modify(|n| *n += 1);
        let _ = held.wait_for(|h| !*h).await;
        shared
            .holding
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
    let now = chrono::Utc::now().timestamp();
    let n = shared.lock().calls.len();
    let password = format!("ecrpw-{n}-{:016x}", rand_u64());
    let good = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    let (token, expires_at) = match &fault {
        Some(EcrFault::BadBase64) => (
            "***not-base64***".to_owned(),
            now + lifetime.as_secs() as i64,
        ),
        Some(EcrFault::NoColon) => (
            base64::engine::general_purpose::STANDARD.encode(format!("AWS{password}")),
            now + lifetime.as_secs() as i64,
        ),
        Some(EcrFault::ExpiredToken) => (good, now - 60),
        Some(EcrFault::FarFuture) => (good, now + 10 * 365 * 86400),
        _ => (good, now + lifetime.as_secs() as i64),
    };
    let response = match &fault {
        Some(EcrFault::AccessDenied) => Err(aws_error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            &format!(
                "User: arn:aws:sts::123456789012:assumed-role/operator/session is not authorized to perform: {service}:GetAuthorizationToken on resource: *"
            ),
        )),
        Some(EcrFault::Throttling) => Err(aws_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        )),
        Some(EcrFault::ServerError) => Err(aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            "internal error",
        )),
        _ if private => Ok(json!({ "authorizationData": [{
            "authorizationToken": token,
            "expiresAt": expires_at,
            "proxyEndpoint": format!("https://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"),
        }] })),
        _ => Ok(
            json!({ "authorizationData": { "authorizationToken": token, "expiresAt": expires_at } }),
        ),
    };
    {
        let mut inner = shared.lock();
        if response.is_ok() {
            inner.passwords.push(password.clone());
            inner
                .latest
                .insert((service.clone(), region.clone()), password);
        }
        inner.calls.push(Call {
            access_key,
            service,
            region,
            succeeded: response.is_ok(),
            at: chrono::Utc::now(),
        });
    }
    shared.changed.send_modify(|v| *v += 1);
    match response {
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            body.to_string(),
        )
            .into_response(),
        Err(resp) => resp,
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64);
    h.finish()
}
