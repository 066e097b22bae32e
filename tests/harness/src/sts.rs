//! The in-repo STS, for what moto cannot do. moto is the reference STS of the identity tests;
//! this one runs in one of two modes:
//!
//! - [`Sts::proxy`] in front of moto, forwarding every request unchanged, to inject the failures
//!   moto cannot produce and to shorten the credentials' lifetime;
//! - [`Sts::standalone`], answering `AssumeRole` and `AssumeRoleWithWebIdentity` itself, for the
//!   benchmark (thousands of roles, without moto's Python process as the bottleneck) and the
//!   chart install tests (a tenant's ServiceAccount token exchanged for its role). It checks
//!   nothing but answers as STS does, so the SDK parses it; each role gets its own access key id
//!   (`ASIAFAKE<n>`, by first use), so the fake ECR Public's `calls_by_access_key` tells which
//!   role signed each call.
//!
//! In both modes, a request is answered with a fault when one is set for its `Action` (awsQuery
//! puts it in the form body, or the query string): the awsQuery error document real STS sends,
//! which aws-sdk-sts parses into its error code:
//!
//! ```xml
//! <ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
//!   <Error><Type>Sender</Type><Code>AccessDenied</Code><Message>…</Message></Error>
//!   <RequestId>…</RequestId>
//! </ErrorResponse>
//! ```
//!
//! The SDK reads `Code` and `Message` under `Error` and the request id from the
//! `x-amzn-RequestId` header, so both carry the same id, as real STS does.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio::sync::watch;

use crate::http_client;

/// An STS error the proxy can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsFault {
    /// 403 `AccessDenied`: the role's trust policy does not admit the caller.
    AccessDenied,
    /// 400 `InvalidIdentityToken`: the OIDC token is rejected (issuer, audience, signature).
    InvalidIdentityToken,
    /// 400 `ExpiredTokenException`: the web identity token is past its `exp`.
    ExpiredToken,
    /// 400 `Throttling`: rate exceeded (the SDK retries it).
    Throttling,
    /// 500 `InternalFailure` (the SDK retries it).
    ServerError,
}

impl StsFault {
    fn parts(self, action: &str) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            StsFault::AccessDenied => (
                StatusCode::FORBIDDEN,
                "Sender",
                "AccessDenied",
                format!("Not authorized to perform sts:{action}"),
            ),
            StsFault::InvalidIdentityToken => (
                StatusCode::BAD_REQUEST,
                "Sender",
                "InvalidIdentityToken",
                "Incorrect token audience".to_owned(),
            ),
            StsFault::ExpiredToken => (
                StatusCode::BAD_REQUEST,
                "Sender",
                "ExpiredTokenException",
                "Token expired: current date/time is after the token's expiration".to_owned(),
            ),
            StsFault::Throttling => (
                StatusCode::BAD_REQUEST,
                "Sender",
                "Throttling",
                "Rate exceeded".to_owned(),
            ),
            StsFault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Receiver",
                "InternalFailure",
                "An internal error occurred".to_owned(),
            ),
        }
    }
}

#[derive(Default)]
struct Inner {
    persistent: HashMap<String, StsFault>,
    queued: HashMap<String, VecDeque<StsFault>>,
    calls: BTreeMap<String, usize>,
    /// When set, credentials passed through expire this long after they are issued.
    lifetime: Option<Duration>,
    /// Access key id and expiry of every set of credentials passed through.
    issued: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Standalone mode: roles in order of first use (the index names the access key), and the
    /// role-assuming calls per role.
    roles: Vec<String>,
    role_calls: BTreeMap<String, usize>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    /// Where requests without a fault go; `None` in standalone mode.
    upstream: Option<Arc<str>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running STS. Stops when dropped.
pub struct Sts {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sts {
    /// Starts on 127.0.0.1 as a proxy forwarding to `upstream_url` (e.g. `Moto::url()`).
    pub async fn proxy(upstream_url: &str) -> io::Result<Sts> {
        Sts::start(Some(upstream_url.trim_end_matches('/').into()), None).await
    }

    /// Starts on 127.0.0.1 answering role-assuming calls itself; credentials last `lifetime`.
    pub async fn standalone(lifetime: Duration) -> io::Result<Sts> {
        Sts::start(None, Some(lifetime)).await
    }

    async fn start(upstream: Option<Arc<str>>, lifetime: Option<Duration>) -> io::Result<Sts> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                lifetime,
                ..Inner::default()
            })),
            upstream,
            changed: Arc::new(watch::channel(0).0),
        };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sts { addr, shared, task })
    }

    /// Endpoint URL for `AWS_ENDPOINT_URL_STS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every `action` request with `fault` until cleared.
    pub fn set_fault(&self, action: &str, fault: StsFault) {
        self.shared
            .lock()
            .persistent
            .insert(action.to_owned(), fault);
    }

    /// Answers `action` normally again (queued `fail_next` faults still apply).
    pub fn clear_fault(&self, action: &str) {
        self.shared.lock().persistent.remove(action);
    }

    /// Answers the next `times` `action` requests with `fault`, ahead of any persistent fault.
    pub fn fail_next(&self, action: &str, fault: StsFault, times: usize) {
        let mut inner = self.shared.lock();
        let queue = inner.queued.entry(action.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Makes credentials passed through expire `lifetime` after issue (real STS sessions last at
    /// least 15 minutes; moto's last an hour): lets a test see refreshes before expiry.
    pub fn set_credentials_lifetime(&self, lifetime: Duration) {
        self.shared.lock().lifetime = Some(lifetime);
    }

    /// Access key id and expiry of every set of credentials passed through, oldest first.
    pub fn issued_credentials(&self) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
        self.shared.lock().issued.clone()
    }

    /// Requests received for `action`, failed or forwarded.
    pub fn calls(&self, action: &str) -> usize {
        self.shared.lock().calls.get(action).copied().unwrap_or(0)
    }

    /// Requests received per `Action` (`""` for requests without one).
    pub fn calls_by_action(&self) -> BTreeMap<String, usize> {
        self.shared.lock().calls.clone()
    }

    /// Standalone mode: AssumeRole and AssumeRoleWithWebIdentity calls answered, per role ARN.
    pub fn assume_role_calls(&self) -> BTreeMap<String, usize> {
        self.shared.lock().role_calls.clone()
    }

    /// Waits until at least `n` `action` requests were received; false on timeout.
    pub async fn wait_for_calls(&self, action: &str, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.changed.subscribe();
        tokio::time::timeout(timeout, async {
            while self.calls(action) < n {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}

/// STS form bodies are small; anything this large is not one.
const MAX_BODY: usize = 1 << 20;

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let query = parts.uri.query().unwrap_or_default();
    let action = form_urlencoded::parse(query.as_bytes())
        .chain(form_urlencoded::parse(&body))
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let fault = {
        let mut inner = shared.lock();
        *inner.calls.entry(action.clone()).or_default() += 1;
        let queued = inner.queued.get_mut(&action).and_then(VecDeque::pop_front);
        queued.or_else(|| inner.persistent.get(&action).copied())
    };
    shared.changed.send_modify(|v| *v += 1);
    if let Some(fault) = fault {
        return sts_error(fault, &action);
    }
    let Some(upstream_url) = shared.upstream.clone() else {
        let form: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .chain(form_urlencoded::parse(&body))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        return assume_role(&shared, &action, &form);
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = axum::http::Request::builder()
        .method(parts.method)
        .uri(format!("{upstream_url}{path}"));
    // Headers as sent, Host and Authorization included (moto checks no signature); only the
    // hop-by-hop ones belong to this connection, and the body is re-sent with a known length.
    for (name, value) in without_hop_by_hop(parts.headers) {
        upstream = upstream.header(name, value);
    }
    let forwarded = match upstream.body(body) {
        Ok(req) => http_client::send(req).await,
        Err(e) => Err(io::Error::other(e)),
    };
    match forwarded {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            parts.headers = without_hop_by_hop(parts.headers).collect();
            let body = record_credentials(&shared, body);
            Response::from_parts(parts, Body::from(body))
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("STS upstream: {e}")).into_response(),
    }
}

/// The text between `<tag>` and `</tag>`, with its byte range.
fn element<'a>(xml: &'a str, tag: &str) -> Option<(std::ops::Range<usize>, &'a str)> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some((start..end, &xml[start..end]))
}

/// Notes the credentials in a successful response and, with a lifetime set, shortens them.
fn record_credentials(shared: &Shared, body: bytes::Bytes) -> bytes::Bytes {
    let Ok(xml) = std::str::from_utf8(&body) else {
        return body;
    };
    let (Some((_, key)), Some((range, expiration))) =
        (element(xml, "AccessKeyId"), element(xml, "Expiration"))
    else {
        return body;
    };
    let mut inner = shared.lock();
    let expires = match inner.lifetime {
        Some(lifetime) => chrono::Utc::now() + lifetime,
        None => match chrono::DateTime::parse_from_rfc3339(expiration) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            Err(_) => return body,
        },
    };
    inner.issued.push((key.to_owned(), expires));
    let mut out = xml.to_owned();
    out.replace_range(
        range,
        &expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    out.into()
}

fn without_hop_by_hop(
    headers: HeaderMap,
) -> impl Iterator<Item = (header::HeaderName, header::HeaderValue)> {
    let mut last = None;
    headers
        .into_iter()
        // HeaderMap yields a name only with the first of repeated values.
        .filter_map(move |(name, value)| {
            if let Some(name) = name {
                last = Some(name);
            }
            last.clone().map(|n| (n, value))
        })
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "connection"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "te"
                    | "upgrade"
                    | "trailer"
                    | "content-length"
            )
        })
}

/// Standalone mode's answer: credentials for the role named, a new access key per role.
fn assume_role(shared: &Shared, action: &str, form: &BTreeMap<String, String>) -> Response {
    let known = ["AssumeRole", "AssumeRoleWithWebIdentity"].contains(&action);
    let Some(role) = form.get("RoleArn").filter(|_| known) else {
        let message = format!("{action} is not implemented here");
        return error_response(StatusCode::BAD_REQUEST, "Sender", "InvalidAction", &message);
    };
    let (index, expiration) = {
        let mut inner = shared.lock();
        *inner.role_calls.entry(role.clone()).or_default() += 1;
        let index = match inner.roles.iter().position(|r| r == role) {
            Some(i) => i,
            None => {
                inner.roles.push(role.clone());
                inner.roles.len() - 1
            }
        };
        let lifetime = inner.lifetime.unwrap_or(Duration::from_secs(3600));
        let expiration = chrono::Utc::now()
            + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1));
        let key = format!("ASIAFAKE{index:08}");
        inner.issued.push((key, expiration));
        (index, expiration)
    };
    let session = form
        .get("RoleSessionName")
        .map_or("session", String::as_str);
    let role_name = role.rsplit('/').next().unwrap_or_default();
    let expiration = expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let id = request_id();
    let xml = format!(
        r#"<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <{action}Result>
    <Credentials>
      <AccessKeyId>ASIAFAKE{index:08}</AccessKeyId>
      <SecretAccessKey>fake-secret-{index}</SecretAccessKey>
      <SessionToken>fake-session-{index}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE{index:08}:{session}</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/{role_name}/{session}</Arn>
    </AssumedRoleUser>
  </{action}Result>
  <ResponseMetadata><RequestId>{id}</RequestId></ResponseMetadata>
</{action}Response>"#,
        session = xml_escape(session),
        role_name = xml_escape(role_name),
    );
    (
        [
            (header::CONTENT_TYPE, "text/xml".to_owned()),
            (header::HeaderName::from_static("x-amzn-requestid"), id),
        ],
        xml,
    )
        .into_response()
}

fn sts_error(fault: StsFault, action: &str) -> Response {
    let (status, kind, code, message) = fault.parts(action);
    error_response(status, kind, code, &message)
}

fn error_response(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let id = request_id();
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    \
         <Type>{kind}</Type>\n    <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
         <RequestId>{id}</RequestId>\n</ErrorResponse>\n",
        xml_escape(message)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/xml".to_owned()),
            (header::HeaderName::from_static("x-amzn-requestid"), id),
        ],
        body,
    )
        .into_response()
}

/// A UUID-shaped id, like STS's.
fn request_id() -> String {
    let hex = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
