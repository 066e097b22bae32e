//! The fault matrix: the real controller in-process against the Kubernetes API emulator and the
//! fake ECR Public, with one fault injected per test. Each test asserts what a user would check:
//! the last good Secret is kept while its token is valid, no expired or malformed token is ever
//! written (every Secret version is checked by [`SecretAudit`]), the Ready condition says why,
//! recovery comes within one backoff step after the fault clears, the operator never stops or
//! panics, and no token reaches logs, Events or status.
//!
//! The in-process operator runs with `--retry-backoff-base 200ms --retry-backoff-max 2s`, and the
//! AWS client of the tests has a 2 s operation timeout and no SDK retries.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_config::{
    BehaviorVersion, Region, SdkConfig, identity::IdentityCache, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future},
};
use harness::env::*;
use harness::{ecr::EcrFault, kube_api::Fault};
use serde_json::{Value, json};

/// Generous bound for anything that is not a recovery time.
const T: Duration = Duration::from_secs(20);
/// `--retry-backoff-max` of the in-process operator.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The AWS operation timeout of [`sdk_config_for`].
const AWS_TIMEOUT: Duration = Duration::from_secs(2);
/// Recovery bound after a fault clears: one maximal backoff step plus slack for the reconcile
/// itself (AWS call, Secret write, status write) on a loaded 2-core machine.
const RECOVERY: Duration = BACKOFF_MAX.saturating_add(Duration::from_millis(1500));

const NS: &str = "default";
/// Token lifetime of the fake in most tests, and the margin that makes the first rotation due
/// 2-3 s after the first token (jitter is up to 5% of the lifetime).
const LIFETIME: Duration = Duration::from_secs(20);
const REFRESH_BEFORE: &str = "17s";
/// Lifetime of the tokens issued after the first one.
const LONG_LIFETIME: Duration = Duration::from_secs(60);

fn secret(env: &Env, name: &str) -> Value {
    env.k8s
        .get(SECRETS, Some(NS), name)
        .unwrap_or_else(|| panic!("Secret {name} exists"))
}

fn condition_message(env: &Env, name: &str) -> String {
    let cr = env.k8s.get(CRS, Some(NS), name).expect("CR exists");
    cr["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn expires_at(secret: &Value) -> chrono::DateTime<chrono::Utc> {
    let v = secret["metadata"]["annotations"]["ecrpublic.pullsecrets.dev/expires-at"]
        .as_str()
        .expect("expires-at annotation");
    chrono::DateTime::parse_from_rfc3339(v)
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
}

/// Secret patches answered with `code`.
fn secret_patches(env: &Env, code: u16) -> usize {
    env.k8s
        .requests()
        .iter()
        .filter(|r| r.resource == SECRETS && r.verb == "patch" && r.code == code)
        .count()
}

/// Successful Secret writes (201 for the first apply, 200 after).
fn secret_writes(env: &Env) -> usize {
    secret_patches(env, 200) + secret_patches(env, 201)
}

/// Failed token fetches the operator counted with this reason (`epps_token_fetch_total`).
async fn failed_fetches(op: &Operator, reason: &str) -> usize {
    let (_, body) = op.http_get("/metrics").await;
    let series = format!(
        "epps_token_fetch_total{{service=\"ecr-public\",region=\"us-east-1\",result=\"error\",reason=\"{reason}\"}}"
    );
    metric(&body, &series).unwrap_or_default() as usize
}

/// The Secret still holds exactly the token it held (same resourceVersion, same data), and that
/// token is still valid.
fn assert_kept(env: &Env, name: &str, before: &Value, what: &str) {
    let now = secret(env, name);
    assert_eq!(
        now["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "{what}: the Secret was rewritten during the fault"
    );
    assert_eq!(now["data"], before["data"], "{what}: last good token kept");
    assert!(
        expires_at(&now) > chrono::Utc::now(),
        "{what}: the kept token is still valid"
    );
}

/// A started environment with an operator, an audit, and one Ready CR `pull` whose first rotation
/// is due 2-3 s later.
async fn ready_env() -> (Env, SecretAudit, Operator) {
    capture_logs();
    let env = Env::start().await;
    env.ecr.set_token_lifetime(LIFETIME);
    let audit = SecretAudit::start(&env);
    let op = env.start_operator(&[]).await;
    env.create_cr(NS, "pull", json!({"refreshBefore": REFRESH_BEFORE}))
        .await;
    env.wait("CR Ready", T, |k| cr_ready(k, NS, "pull")).await;
    // Tokens issued from now on are due only after 43 s: a fault that outlasts the first rotation
    // does not make the rotation's own token due again within the test.
    env.ecr.set_token_lifetime(LONG_LIFETIME);
    (env, audit, op)
}

/// Waits for recovery after a fault cleared at `cleared`, within `bound`: a new token in the
/// Secret, and a Ready status that reports that token's expiry.
async fn assert_recovers(env: &Env, before: &Value, cleared: Instant, bound: Duration) {
    let data = before["data"].clone();
    env.wait("recovery: new token, Ready reporting it", bound, move |k| {
        let Some(secret) = k.get(SECRETS, Some(NS), "pull") else {
            return false;
        };
        secret["data"] != data
            && k.get(CRS, Some(NS), "pull").is_some_and(|cr| {
                ready(&cr).is_some_and(|(s, _)| s == "True")
                    && cr["status"]["expiresAt"]
                        == secret["metadata"]["annotations"]["ecrpublic.pullsecrets.dev/expires-at"]
            })
    })
    .await;
    let took = cleared.elapsed();
    let test = std::thread::current().name().unwrap_or_default().to_owned();
    eprintln!("{test}: recovered {took:?} after the fault cleared");
    assert!(took <= bound, "recovery took {took:?}, bound {bound:?}");
}

fn warning_event(env: &Env, reason: &str) -> bool {
    env.k8s
        .list(EVENTS, Some(NS))
        .iter()
        .any(|e| e["type"] == "Warning" && e["reason"] == reason)
}

/// One ECR failure during a rotation: the Secret is kept, Ready says `reason` (and `hint`), the
/// operator keeps retrying (more than `retries` failed fetches, so the backoff has grown), and
/// once the fault clears the next retry writes a new token.
async fn ecr_fault_during_rotation(fault: EcrFault, reason: &str, hint: &str, retries: usize) {
    let (env, audit, op) = ready_env().await;
    let before = secret(&env, "pull");
    env.ecr.set_fault(Some(fault.clone()));
    env.wait(reason, T, |k| {
        cr_reason(k, NS, "pull").as_deref() == Some(reason)
    })
    .await;
    // Not emulator state: the operator's own fetch counter, polled.
    let label = if reason == "AccessDenied" {
        reason
    } else {
        "Transient"
    };
    assert!(
        eventually(T, async || failed_fetches(&op, label).await > retries).await,
        "{fault:?}: the operator keeps retrying"
    );
    assert_kept(&env, "pull", &before, &format!("{fault:?}"));
    let message = condition_message(&env, "pull");
    assert!(
        message.contains(hint),
        "{fault:?}: message says why: {message}"
    );
    assert!(
        message.contains("previous token stays in the Secret"),
        "{fault:?}: message says the old token is kept: {message}"
    );
    assert!(
        warning_event(&env, reason),
        "{fault:?}: Warning Event {reason}"
    );
    assert!(op.is_running(), "{fault:?}: operator still running");

    env.ecr.set_fault(None);
    let bound = match fault {
        // A hung call in flight when the fault clears still runs into the timeout first.
        EcrFault::Hang(_) => RECOVERY + AWS_TIMEOUT,
        _ => RECOVERY,
    };
    assert_recovers(&env, &before, Instant::now(), bound).await;
    assert!(op.is_running(), "{fault:?}: operator still running");
    assert_eq!(secret_writes(&env), 2, "first token and the recovery");
    op.stop().await;
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_server_error_keeps_the_last_good_secret_and_recovers() {
    ecr_fault_during_rotation(EcrFault::ServerError, "Transient", "ServerException", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_throttling_keeps_the_last_good_secret_and_recovers() {
    ecr_fault_during_rotation(EcrFault::Throttling, "Transient", "ThrottlingException", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_access_denied_keeps_the_last_good_secret_and_recovers() {
    ecr_fault_during_rotation(
        EcrFault::AccessDenied,
        "AccessDenied",
        "ecr-public:GetAuthorizationToken",
        3,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_call_hanging_past_the_timeout_keeps_the_last_good_secret_and_recovers() {
    // Each call hangs 5 s, past the client's 2 s operation timeout.
    ecr_fault_during_rotation(
        EcrFault::Hang(Duration::from_secs(5)),
        "Transient",
        "temporary AWS failure",
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_from_ecr_are_never_written() {
    let (env, audit, op) = ready_env().await;
    let before = secret(&env, "pull");
    for (fault, detail) in [
        (EcrFault::BadBase64, "not valid base64"),
        (EcrFault::NoColon, "no ':' separator"),
        (EcrFault::ExpiredToken, "is not in the future"),
        (EcrFault::FarFuture, "implausibly far in the future"),
    ] {
        env.ecr.set_fault(Some(fault.clone()));
        env.wait(&format!("InvalidToken for {fault:?}"), T, |k| {
            cr_reason(k, NS, "pull").as_deref() == Some("InvalidToken")
                && k.get(CRS, Some(NS), "pull").is_some_and(|cr| {
                    cr["status"]["conditions"][0]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(detail))
                })
        })
        .await;
        assert_kept(&env, "pull", &before, &format!("{fault:?}"));
        assert!(op.is_running());
    }
    assert!(warning_event(&env, "InvalidToken"));
    env.ecr.set_fault(None);
    assert_recovers(&env, &before, Instant::now(), RECOVERY).await;
    assert_eq!(secret_writes(&env), 2, "no malformed token written");
    assert!(op.is_running());
    op.stop().await;
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
}

/// How the switchable credentials provider answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Creds {
    Good,
    /// As STS refusing the web identity token.
    Rejected,
    /// As a pod without IRSA wiring.
    Missing,
}

#[derive(Debug, Clone)]
struct SwitchableCredentials(Arc<Mutex<Creds>>);

impl SwitchableCredentials {
    fn set(&self, c: Creds) {
        *self.0.lock().unwrap() = c;
    }
}

impl ProvideCredentials for SwitchableCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let mode = *self.0.lock().unwrap();
        future::ProvideCredentials::ready(match mode {
            Creds::Good => Ok(Credentials::new(
                "AKIDSWITCH",
                "test-secret",
                None,
                None,
                "switchable",
            )),
            Creds::Rejected => Err(CredentialsError::provider_error(
                "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity",
            )),
            Creds::Missing => Err(CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            )),
        })
    }
}

/// [`sdk_config_for`] with a credentials provider the test switches, and no identity cache so
/// every call asks it.
fn switchable_sdk_config(endpoint: &str, creds: SwitchableCredentials) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .identity_cache(IdentityCache::no_cache())
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(AWS_TIMEOUT)
                .build(),
        )
        .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("tokio sleep"))
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .build()
}

/// Stand-in for an STS failure until per-resource identities exist: the operator's credentials
/// provider fails during a rotation, first as a rejection, then as no credentials at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_credentials_keep_the_last_good_secret_and_say_why() {
    capture_logs();
    let env = Env::start().await;
    env.ecr.set_token_lifetime(LIFETIME);
    let audit = SecretAudit::start(&env);
    let creds = SwitchableCredentials(Arc::new(Mutex::new(Creds::Good)));
    let sdk = switchable_sdk_config(&env.ecr.url(), creds.clone());
    let op = env.start_operator_with_sdk(&sdk, &[]).await;
    env.create_cr(NS, "pull", json!({"refreshBefore": REFRESH_BEFORE}))
        .await;
    env.wait("CR Ready", T, |k| cr_ready(k, NS, "pull")).await;
    let before = secret(&env, "pull");
    let calls = env.ecr.calls();

    for (mode, reason, hint) in [
        (
            Creds::Rejected,
            "CredentialsRejected",
            "sts:AssumeRoleWithWebIdentity",
        ),
        (Creds::Missing, "NoCredentials", "AWS_ROLE_ARN"),
    ] {
        creds.set(mode);
        env.wait(reason, T, |k| {
            cr_reason(k, NS, "pull").as_deref() == Some(reason)
        })
        .await;
        let message = condition_message(&env, "pull");
        assert!(message.contains(hint), "{mode:?}: {message}");
        assert_kept(&env, "pull", &before, &format!("{mode:?}"));
        assert!(warning_event(&env, reason), "Warning Event {reason}");
        assert!(op.is_running());
    }
    assert_eq!(
        env.ecr.calls(),
        calls,
        "no request reaches AWS without credentials"
    );
    creds.set(Creds::Good);
    assert_recovers(&env, &before, Instant::now(), RECOVERY).await;
    assert!(op.is_running());
    op.stop().await;
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_on_the_secret_write_is_retried_without_a_new_aws_call() {
    let (env, audit, op) = ready_env().await;
    let before = secret(&env, "pull");
    // Every Secret write names the version it was planned from: a 409 says the Secret changed
    // since (someone edited it, or deleted it and made another). Nothing is written over it.
    env.emulator().inject(Fault::on("patch", SECRETS, 409, 3));
    // Three 409s within the first backoff steps (0.1-0.2 s, 0.2-0.4 s, 0.4-0.8 s), then success.
    assert_recovers(&env, &before, Instant::now(), Duration::from_secs(8)).await;
    assert_eq!(secret_patches(&env, 409), 3);
    assert_eq!(secret_writes(&env), 2);
    assert_eq!(
        env.ecr.calls(),
        2,
        "the token fetched for the rotation is reused for every retry"
    );
    assert!(op.is_running());
    op.stop().await;
    let reasons = audit.reasons(NS, "pull");
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
    // A lost race is nobody's problem to fix: the Secret is read again and written, quietly.
    assert!(
        reasons.iter().all(|(s, _)| s == "True"),
        "Ready stays True through a race lost to a concurrent change; saw {reasons:?}"
    );
    assert!(!warning_event(&env, "SecretChanged") && !warning_event(&env, "KubeError"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_on_the_secret_write_is_reported_and_retried() {
    const FAILURES: usize = 6;
    let (env, audit, op) = ready_env().await;
    let before = secret(&env, "pull");
    env.emulator()
        .inject(Fault::on("patch", SECRETS, 500, FAILURES));
    // Six failures take the backoff to its 2 s maximum.
    env.wait("all injected 500s consumed", T, |k| {
        k.requests()
            .iter()
            .filter(|r| r.resource == SECRETS && r.verb == "patch" && r.code == 500)
            .count()
            == FAILURES
    })
    .await;
    let cleared = Instant::now();
    assert_kept(&env, "pull", &before, "500 on write");
    assert!(op.is_running());
    assert_recovers(&env, &before, cleared, RECOVERY).await;
    assert_eq!(env.ecr.calls(), 2, "one AWS call for the rotation");
    assert!(op.is_running());
    op.stop().await;
    let reasons = audit.reasons(NS, "pull");
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
    // Checked last so that a failure here does not hide the others.
    assert!(
        reasons
            .iter()
            .any(|(s, r)| s == "False" && r == "KubeError"),
        "while the Secret cannot be written, Ready says so (KubeError); saw {reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_closed_during_rotations_cause_no_extra_call_or_write() {
    capture_logs();
    let env = Env::start().await;
    // A rotation about every 3 s.
    env.ecr.set_token_lifetime(Duration::from_secs(8));
    let audit = SecretAudit::start(&env);
    let op = env.start_operator(&[]).await;
    env.create_cr(NS, "pull", json!({"refreshBefore": "5s"}))
        .await;
    env.wait("CR Ready", T, |k| cr_ready(k, NS, "pull")).await;
    let k8s = env.emulator().clone();
    let closer = tokio::spawn(async move {
        loop {
            // Not synchronisation: this is the fault, every watch stream ends every 150 ms, so
            // some close lands in the middle of each rotation.
            tokio::time::sleep(Duration::from_millis(150)).await;
            k8s.close_watches();
        }
    });
    // Two more rotations, each written once.
    assert!(env.ecr.wait_for_calls(3, T).await, "two rotations");
    env.wait("third token written and Ready", T, |k| {
        let last = env
            .ecr
            .issued_passwords()
            .last()
            .cloned()
            .unwrap_or_default();
        cr_ready(k, NS, "pull")
            && k.get(SECRETS, Some(NS), "pull").is_some_and(|s| {
                docker_config(&s)["auths"]["public.ecr.aws"]["password"] == last.as_str()
            })
    })
    .await;
    closer.abort();
    assert!(op.is_running());
    op.stop().await;
    let tokens = env.ecr.successful_calls();
    assert_eq!(env.ecr.calls(), tokens, "no failed AWS call");
    assert_eq!(
        secret_writes(&env),
        tokens,
        "exactly one Secret write per token"
    );
    assert!(
        audit
            .reasons(NS, "pull")
            .iter()
            .all(|(s, r)| s == "True" && r == "TokenValid"),
        "Ready stayed True: {:?}",
        audit.reasons(NS, "pull")
    );
    assert!(audit.finish() >= 3);
    assert_no_token_leak(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_unavailable_for_30s_during_a_rotation_recovers_when_it_returns() {
    capture_logs();
    let env = Env::start().await;
    // The rotation falls due ~10 s into the outage; the token outlives the outage.
    env.ecr.set_token_lifetime(Duration::from_secs(60));
    let audit = SecretAudit::start(&env);
    let op = env.start_operator(&[]).await;
    env.create_cr(NS, "pull", json!({"refreshBefore": "50s"}))
        .await;
    env.wait("CR Ready", T, |k| cr_ready(k, NS, "pull")).await;
    // The rotation's own token is not due again during the test.
    env.ecr.set_token_lifetime(Duration::from_secs(300));
    // The operator's Secret cache holds the Secret (its metrics read that cache): the rotation
    // then needs no read, only the write, during the outage.
    assert!(
        eventually(T, async || {
            metric(&op.http_get("/metrics").await.1, "epps_managed_secrets") == Some(1.0)
        })
        .await
    );
    let before = secret(&env, "pull");
    let down = Instant::now();
    env.emulator().set_unavailable(true);
    // The rotation's token is fetched during the outage (AWS is up) ...
    assert!(env.ecr.wait_for_calls(2, T).await, "rotation attempted");
    // ... and the rest of the 30 s passes with the API down. Not synchronisation: the outage is
    // the fault and its length is the point.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    assert!(op.is_running(), "operator survives the outage");
    assert_kept(&env, "pull", &before, "API unavailable");
    env.emulator().set_unavailable(false);
    assert_recovers(&env, &before, Instant::now(), RECOVERY).await;
    assert_eq!(
        env.ecr.calls(),
        2,
        "one AWS call for the rotation, however long the outage"
    );
    assert!(op.is_running());
    op.stop().await;
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_writing_the_secret_finishes_the_rotation_after_restart() {
    let (env, audit, op) = ready_env().await;
    let before = secret(&env, "pull");
    // The rotation's Secret write fails, so the operator is mid-rotation (token fetched, not yet
    // written) when it is killed.
    env.emulator().inject(Fault::on("patch", SECRETS, 500, 2));
    env.wait("rotation under way", T, |k| {
        k.requests()
            .iter()
            .any(|r| r.resource == SECRETS && r.verb == "patch" && r.code == 500)
    })
    .await;
    op.kill().await;
    assert_kept(&env, "pull", &before, "killed mid-rotation");
    let restarted = Instant::now();
    let op = env.start_operator(&[]).await;
    // The restarted operator lists, finds the due Secret and finishes the rotation (through the
    // injected failure the killed one left, if any: one backoff step).
    assert_recovers(&env, &before, restarted, RECOVERY).await;
    assert!(
        env.ecr.calls() <= 3,
        "at most one more AWS call for the token lost with the killed process, got {}",
        env.ecr.calls()
    );
    assert_eq!(secret_writes(&env), 2);
    assert!(op.is_running());
    op.stop().await;
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_before_its_status_write_restarts_without_aws_call_or_write() {
    let (env, audit, op) = ready_env().await;
    let before = secret(&env, "pull");
    // The Secret is rotated but the status write after it fails: kill the operator right then.
    env.emulator()
        .inject(Fault::on("patch", CRS, 500, 2).subresource("status"));
    env.wait("Secret rotated", T, |k| {
        k.requests()
            .iter()
            .filter(|r| r.resource == SECRETS && r.verb == "patch" && r.code / 100 == 2)
            .count()
            == 2
    })
    .await;
    op.kill().await;
    let rotated = secret(&env, "pull");
    assert_ne!(
        rotated["data"], before["data"],
        "killed after the Secret write"
    );
    let (calls, writes) = (env.ecr.calls(), secret_writes(&env));
    let restarted = Instant::now();
    let op = env.start_operator(&[]).await;
    let expires =
        rotated["metadata"]["annotations"]["ecrpublic.pullsecrets.dev/expires-at"].clone();
    env.wait("status catches up with the Secret", RECOVERY, move |k| {
        cr_ready(k, NS, "pull")
            && k.get(CRS, Some(NS), "pull")
                .is_some_and(|cr| cr["status"]["expiresAt"] == expires)
    })
    .await;
    eprintln!("status caught up {:?} after restart", restarted.elapsed());
    assert_eq!(env.ecr.calls(), calls, "the restart made no AWS call");
    assert_eq!(secret_writes(&env), writes, "and no Secret write");
    assert_eq!(secret(&env, "pull")["data"], rotated["data"]);
    assert!(op.is_running());
    op.stop().await;
    assert!(audit.finish() >= 2);
    assert_no_token_leak(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_edited_to_invalid_values_is_reported_and_recovers_when_fixed() {
    let (env, audit, op) = ready_env().await;
    let before = secret(&env, "pull");
    let calls = env.ecr.calls();
    // Values the CRD's CEL rule rejects, but an API server that skips CEL (the emulator, an old
    // CRD) lets through.
    for bad in ["12h", "0s"] {
        let mut cr = env.k8s.get(CRS, Some(NS), "pull").unwrap();
        cr["spec"]["refreshBefore"] = json!(bad);
        let cr = env
            .k8s
            .replace(CRS, Some(NS), cr)
            .await
            .expect("schema admits it");
        let generation = cr["metadata"]["generation"].clone();
        env.wait(&format!("InvalidSpec for {bad}"), T, |k| {
            k.get(CRS, Some(NS), "pull").is_some_and(|cr| {
                cr["status"]["observedGeneration"] == generation
                    && ready(&cr).is_some_and(|(s, r)| s == "False" && r == "InvalidSpec")
            })
        })
        .await;
        let message = condition_message(&env, "pull");
        assert!(message.contains("refreshBefore"), "{bad}: {message}");
        assert_kept(&env, "pull", &before, bad);
        assert!(op.is_running());
    }
    assert!(warning_event(&env, "InvalidSpec"));
    let mut cr = env.k8s.get(CRS, Some(NS), "pull").unwrap();
    cr["spec"]["refreshBefore"] = json!(REFRESH_BEFORE);
    env.k8s.replace(CRS, Some(NS), cr).await.unwrap();
    let fixed = Instant::now();
    // Fixing the spec is a watch event: Ready comes back at once (with a rotation if one fell due
    // meanwhile).
    env.wait("Ready again", RECOVERY, |k| cr_ready(k, NS, "pull"))
        .await;
    eprintln!("Ready {:?} after the fix", fixed.elapsed());
    let ecr_calls = env.ecr.calls() - calls;
    assert!(
        ecr_calls <= 1,
        "no AWS call for a bad spec, got {ecr_calls}"
    );
    assert!(op.is_running());
    op.stop().await;
    assert!(audit.finish() >= 1);
    assert_no_token_leak(&env);
}

/// ServiceAccount patches are retried as `--retry-backoff-base/--retry-backoff-max` say (this
/// operator runs with 200 ms / 2 s): five refused patches cost about 5 s of retries. The
/// ServiceAccount reconciler once used fixed delays (1 s doubling), which needed 31 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_service_account_patches_are_retried_at_the_flags_pace() {
    const FAILURES: usize = 5;
    capture_logs();
    let env = Env::start().await;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "builder", "namespace": NS}});
    env.k8s
        .create("serviceaccounts", Some(NS), sa)
        .await
        .unwrap();
    env.emulator()
        .inject(Fault::on("patch", "serviceaccounts", 500, FAILURES));
    let op = env.start_operator(&["--patch-service-accounts=true"]).await;
    env.create_cr(NS, "pull", json!({"serviceAccounts": ["builder"]}))
        .await;
    env.wait("patched once the refusals were used up", T, |k| {
        k.get("serviceaccounts", Some(NS), "builder")
            .is_some_and(|sa| sa["imagePullSecrets"] == json!([{"name": "pull"}]))
    })
    .await;
    let refused = env
        .k8s
        .requests()
        .iter()
        .filter(|r| r.resource == "serviceaccounts" && r.verb == "patch" && r.code == 500)
        .count();
    assert_eq!(refused, FAILURES);
    op.stop().await;
}

/// A Role missing `list` or `watch` on something the operator caches keeps that cache from ever
/// syncing (the chart's least-privilege test takes each grant away on a real API server). The
/// operator must still stop promptly on SIGTERM, rather than wait for the kubelet's SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_sync_does_not_hold_up_shutdown() {
    let case = async |verb: &str, resource: &str, flags: &[&str]| {
        let env = Env::start().await;
        env.emulator()
            .inject(Fault::on(verb, resource, 403, usize::MAX));
        let op = env.start_operator(flags).await;
        let refused = |k: &Kube| {
            k.requests()
                .iter()
                .any(|r| r.verb == verb && r.resource == resource && r.code == 403)
        };
        assert!(
            env.k8s.wait_until(T, refused).await,
            "{verb} {resource} refused"
        );
        let stopping = Instant::now();
        op.stop().await;
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "{verb} {resource} refused: stopped after {:?}",
            stopping.elapsed()
        );
    };
    futures::join!(
        case("list", "serviceaccounts", &["--patch-service-accounts"]),
        case("list", CRS, &[]),
        case("watch", SECRETS, &[]),
    );
}
