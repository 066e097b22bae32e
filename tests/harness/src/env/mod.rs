//! Shared set-up for integration tests, the benchmark and the demo: the Kubernetes API emulator,
//! the fake ECR Public, a kube client and an AWS config pointing at them, and the real controller
//! running in-process. Included with `#[path]` so every target uses exactly the same wiring.
#![allow(dead_code)]

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
use clap::Parser;
use ecr_public_pull_secret_operator::{
    config::Cli,
    crd::{ClusterEcrPublicPullSecret, EcrPublicPullSecret},
    run,
};
use harness::{
    ecr::FakeEcrPublic,
    kube_api::{ApiServer, Emulator},
};
use kube::CustomResourceExt;

/// Resource keys of the emulator.
pub const CRS: &str = "ecrpublicpullsecrets.ecrpublic.pullsecrets.dev";
pub const CLUSTER_CRS: &str = "clusterecrpublicpullsecrets.ecrpublic.pullsecrets.dev";
pub const SECRETS: &str = "secrets";
pub const EVENTS: &str = "events.events.k8s.io";

/// Both emulators, with the CRD installed.
pub struct Env {
    pub api: ApiServer,
    pub k8s: Emulator,
    pub ecr: FakeEcrPublic,
}

impl Env {
    pub async fn start() -> Env {
        let api = ApiServer::start()
            .await
            .expect("start Kubernetes API emulator");
        let k8s = api.state();
        for crd in [
            EcrPublicPullSecret::crd(),
            ClusterEcrPublicPullSecret::crd(),
        ] {
            let crd = serde_json::to_value(crd).expect("CRD to JSON");
            k8s.install_crd(crd).expect("install CRD");
        }
        let ecr = FakeEcrPublic::start().await.expect("start fake ECR Public");
        Env { api, k8s, ecr }
    }

    /// A kube client for the emulator, exactly as the binary would build from a kubeconfig.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.api.url().parse().expect("emulator URL"));
        run::no_client_retries(&mut config);
        kube::Client::try_from(config).expect("kube client")
    }

    /// AWS config with static test credentials, a non-us-east-1 home region (the ECR Public
    /// client must pin us-east-1 itself) and the fake ECR Public as endpoint.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.ecr.url(), "AKIDOPERATOR")
    }

    /// Runs the real operator (admin server on a free port, controller, optional leader
    /// election) in this process until the returned handle is stopped.
    pub async fn start_operator(&self, extra_args: &[&str]) -> Operator {
        self.start_operator_with_sdk(&self.sdk_config(), extra_args)
            .await
    }

    /// Creates an EcrPublicPullSecret from a JSON spec, as `kubectl apply` would.
    pub fn create_cr(
        &self,
        namespace: &str,
        name: &str,
        spec: serde_json::Value,
    ) -> serde_json::Value {
        let obj = serde_json::json!({
            "apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
            "kind": "EcrPublicPullSecret",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        self.k8s
            .create(CRS, Some(namespace), obj)
            .expect("create CR")
    }

    /// Waits for `cond`, re-checked on every emulator change; panics with `what` on timeout.
    pub async fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&Emulator) -> bool) {
        assert!(
            self.k8s.wait_until(timeout, cond).await,
            "timed out after {timeout:?} waiting for: {what}"
        );
    }
}

/// AWS config for tests: static credentials with the given access key id, fake endpoint.
pub fn sdk_config_for(endpoint: &str, access_key: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key,
            "test-secret",
            None,
            None,
            "test",
        )))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(2))
                .build(),
        )
        .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("tokio sleep"))
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .build()
}

/// Per-service endpoints, as `AWS_ENDPOINT_URL_<SERVICE>` gives them in a pod, without touching
/// this process's environment (tests run in parallel).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub ecr_public: String,
    pub sts: String,
}

impl aws_types::service_config::LoadServiceConfig for Endpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        match key.service_id() {
            "ECR PUBLIC" => Some(self.ecr_public.clone()),
            "STS" => Some(self.sts.clone()),
            _ => None,
        }
    }
}

/// AWS config for identity tests: `credentials` as the operator's own identity, ECR Public and
/// STS at their own endpoints.
pub fn sdk_config_with(
    endpoints: Endpoints,
    credentials: impl aws_credential_types::provider::ProvideCredentials + 'static,
) -> SdkConfig {
    let mut builder = sdk_config_for("http://unused.invalid", "unused").into_builder();
    builder.set_endpoint_url(None);
    builder
        .service_config(endpoints)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .build()
}

/// A running in-process operator.
pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The admin server's address (`/metrics`, `/livez`, `/readyz`).
    pub http_addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<Result<(), String>>,
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

/// Captured log output of this test process (tracing at debug level), for leak checks.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a debug-level subscriber that records every log line (once per process).
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,tower=info,aws_smithy_runtime=info,aws_smithy_http_client=info,rustls=info")
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .try_init();
    });
}

/// Every place a token could leak to, as one string: logs, Events and CR statuses.
pub fn observable_text(env: &Env) -> String {
    let mut out = logs();
    for ev in env.k8s.list(EVENTS, None) {
        out.push_str(&ev.to_string());
    }
    for cr in env
        .k8s
        .list(CRS, None)
        .into_iter()
        .chain(env.k8s.list(CLUSTER_CRS, None))
    {
        out.push_str(&cr["status"].to_string());
    }
    out
}

/// Asserts that no password or auth string issued by the fake appears anywhere observable.
pub fn assert_no_token_leak(env: &Env) {
    let text = observable_text(env);
    let passwords = env.ecr.issued_passwords();
    assert!(
        !passwords.is_empty(),
        "the test issued no token, so the leak check would be vacuous"
    );
    for pw in passwords {
        assert!(
            !text.contains(&pw),
            "a token password appears in logs, events or status"
        );
        let auth = base64_auth(&pw);
        assert!(
            !text.contains(&auth),
            "a token auth string appears in logs, events or status"
        );
    }
}

pub fn base64_auth(password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"))
}

/// Decoded `.dockerconfigjson` of a Secret object from the emulator.
pub fn docker_config(secret: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let data = secret["data"][".dockerconfigjson"]
        .as_str()
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

/// The Ready condition of an object, if any.
pub fn ready(obj: &serde_json::Value) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// The message of a CR's Ready condition ("" when there is none).
pub fn cr_message(k8s: &Emulator, ns: &str, name: &str) -> String {
    k8s.get(CRS, Some(ns), name)
        .and_then(|cr| {
            cr["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .and_then(|c| c["message"].as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

/// Whether a Secret is ready for a CR: Secret exists with a token and the CR reports Ready=True.
pub fn cr_ready(k8s: &Emulator, ns: &str, name: &str) -> bool {
    k8s.get(CRS, Some(ns), name)
        .and_then(|cr| ready(&cr))
        .is_some_and(|(s, _)| s == "True")
}

pub fn cr_reason(k8s: &Emulator, ns: &str, name: &str) -> Option<String> {
    k8s.get(CRS, Some(ns), name)
        .and_then(|cr| ready(&cr))
        .map(|(_, r)| r)
}

// ---------------------------------------------------------------------------------------------
// Fault-matrix helpers (tests/faults.rs).

impl Env {
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

/// Checks one Secret version as a kubelet would use it. `Ok(true)` when it holds a token, which
/// must then be well formed (`AWS:<password>` in base64, matching `password`) and annotated with
/// an `expires-at` in the future (and not absurdly far). Messages never contain token material.
pub fn check_secret(
    secret: &serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, String> {
    let config = docker_config(secret);
    let Some(auths) = config["auths"].as_object() else {
        return Err("data[.dockerconfigjson] is not a docker config with auths".into());
    };
    if auths.is_empty() {
        return Ok(false);
    }
    for (host, entry) in auths {
        let password = entry["password"].as_str().unwrap_or_default();
        if entry["username"] != "AWS" || password.is_empty() {
            return Err(format!(
                "auths[{host}] has no AWS user or an empty password"
            ));
        }
        if entry["auth"].as_str() != Some(base64_auth(password).as_str()) {
            return Err(format!(
                "auths[{host}].auth is not base64(\"AWS:\" + password)"
            ));
        }
    }
    let annotation = |k: &str| {
        secret["metadata"]["annotations"][k]
            .as_str()
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let Some(expires) = annotation("ecrpublic.pullsecrets.dev/expires-at") else {
        return Err("holds a token but no parsable expires-at annotation".into());
    };
    if expires <= now {
        return Err(format!("written with a token that expired at {expires}"));
    }
    if expires - now > chrono::Duration::days(1) {
        return Err(format!(
            "written with a token claiming to live until {expires}"
        ));
    }
    if annotation("ecrpublic.pullsecrets.dev/refreshed-at").is_none_or(|r| r > expires) {
        return Err("refreshed-at annotation missing or after expires-at".into());
    }
    Ok(true)
}

#[derive(Default)]
struct AuditState {
    seen: std::collections::HashSet<String>,
    with_token: usize,
    violations: Vec<String>,
    /// Ready (status, reason) per CR `namespace/name`, consecutive duplicates dropped.
    reasons: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

/// Watches the emulator for the whole test: checks every Secret version it observes with
/// [`check_secret`] (at the time it appears) and records every Ready (status, reason) each CR
/// shows. It re-checks on every emulator change, so it sees a version unless two writes of the
/// same Secret land between two changes it is woken for.
pub struct SecretAudit {
    k8s: Emulator,
    state: std::sync::Arc<std::sync::Mutex<AuditState>>,
    task: tokio::task::JoinHandle<()>,
}

fn audit_once(k8s: &Emulator, state: &std::sync::Mutex<AuditState>) {
    let now = chrono::Utc::now();
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for secret in k8s.list(SECRETS, None) {
        let id = format!(
            "{}/{}@{}",
            secret["metadata"]["namespace"].as_str().unwrap_or_default(),
            secret["metadata"]["name"].as_str().unwrap_or_default(),
            secret["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
        );
        if !st.seen.insert(id.clone()) {
            continue;
        }
        match check_secret(&secret, now) {
            Ok(true) => st.with_token += 1,
            Ok(false) => {}
            Err(e) => st.violations.push(format!("Secret {id}: {e}")),
        }
    }
    for cr in k8s.list(CRS, None) {
        let Some(r) = ready(&cr) else { continue };
        let key = format!(
            "{}/{}",
            cr["metadata"]["namespace"].as_str().unwrap_or_default(),
            cr["metadata"]["name"].as_str().unwrap_or_default()
        );
        let seen = st.reasons.entry(key).or_default();
        if seen.last() != Some(&r) {
            seen.push(r);
        }
    }
}

impl SecretAudit {
    pub fn start(env: &Env) -> SecretAudit {
        let k8s = env.k8s.clone();
        let state = std::sync::Arc::new(std::sync::Mutex::new(AuditState::default()));
        let (k, st) = (k8s.clone(), state.clone());
        let task = tokio::spawn(async move {
            k.wait_until(Duration::from_secs(3600), |k| {
                audit_once(k, &st);
                false
            })
            .await;
        });
        SecretAudit { k8s, state, task }
    }

    /// Every Ready (status, reason) the CR has shown so far, in order.
    pub fn reasons(&self, namespace: &str, name: &str) -> Vec<(String, String)> {
        audit_once(&self.k8s, &self.state);
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.reasons
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the CR ever showed this Ready reason.
    pub fn saw_reason(&self, namespace: &str, name: &str, reason: &str) -> bool {
        self.reasons(namespace, name)
            .iter()
            .any(|(_, r)| r == reason)
    }

    /// Checks the current state once more, stops, and panics on any violation. Returns how many
    /// distinct Secret versions holding a token were observed.
    pub fn finish(self) -> usize {
        audit_once(&self.k8s, &self.state);
        self.task.abort();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            st.violations.is_empty(),
            "bad Secret versions were written: {:#?}",
            st.violations
        );
        st.with_token
    }
}

impl Drop for SecretAudit {
    fn drop(&mut self) {
        self.task.abort();
    }
}
