//! A minimal STS speaking awsQuery for `AssumeRole` and `AssumeRoleWithWebIdentity`, for the
//! benchmark (many roles without moto's Python process) and the chart's RBAC tests (a tenant's
//! ServiceAccount token exchanged for its role). Tests of identity behaviour use moto
//! (`crate::moto`); this one checks nothing but answers like STS does, so the SDK parses it.
//!
//! Each role gets its own access key id (`ASIAFAKE<n>`, by first use), so the fake ECR Public's
//! `calls_by_access_key` tells which role signed each call.

use std::{
    collections::BTreeMap,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

#[derive(Default)]
struct Inner {
    /// Roles in order of first use; the index names the access key.
    roles: Vec<String>,
    calls: BTreeMap<String, usize>,
}

/// A running fake STS on 127.0.0.1; stops when dropped.
pub struct FakeSts {
    addr: std::net::SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct App {
    inner: Arc<Mutex<Inner>>,
    lifetime: Duration,
}

impl FakeSts {
    /// Starts on an ephemeral port; issued credentials last `lifetime`.
    pub async fn start(lifetime: Duration) -> io::Result<FakeSts> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = App {
            inner: inner.clone(),
            lifetime,
        };
        let router = Router::new().fallback(handle).with_state(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeSts {
            addr,
            inner,
            _server: server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// AssumeRole and AssumeRoleWithWebIdentity calls per role ARN.
    pub fn assume_role_calls(&self) -> BTreeMap<String, usize> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .calls
            .clone()
    }
}

async fn handle(State(app): State<App>, body: Bytes) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = form.get("Action").map(String::as_str).unwrap_or_default();
    let known = ["AssumeRole", "AssumeRoleWithWebIdentity"].contains(&action);
    let Some(role) = form.get("RoleArn").filter(|_| known) else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/xml")],
            error_xml(
                "InvalidAction",
                &format!("{action} is not implemented here"),
            ),
        )
            .into_response();
    };
    let index = {
        let mut inner = app.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.calls.entry(role.clone()).or_insert(0) += 1;
        match inner.roles.iter().position(|r| r == role) {
            Some(i) => i,
            None => {
                inner.roles.push(role.clone());
                inner.roles.len() - 1
            }
        }
    };
    let session = form
        .get("RoleSessionName")
        .cloned()
        .unwrap_or_else(|| "session".into());
    let role_name = role.rsplit('/').next().unwrap_or_default();
    let expiration = chrono::Utc::now()
        + chrono::Duration::from_std(app.lifetime).unwrap_or(chrono::Duration::hours(1));
    let xml = format!(
        r#"<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <{action}Result>
    <Credentials>
      <AccessKeyId>ASIAFAKE{index:08}</AccessKeyId>
      <SecretAccessKey>fake-secret-{index}</SecretAccessKey>
      <SessionToken>fake-session-{index}</SessionToken>
      <Expiration>{}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE{index:08}:{session}</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/{role_name}/{session}</Arn>
    </AssumedRoleUser>
  </{action}Result>
  <ResponseMetadata><RequestId>fake-{index}</RequestId></ResponseMetadata>
</{action}Response>"#,
        expiration.format("%Y-%m-%dT%H:%M:%SZ")
    );
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake</RequestId></ErrorResponse>"#
    )
}
