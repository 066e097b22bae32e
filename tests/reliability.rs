//! The operator binary, as a separate process, against the real kube-apiserver and etcd while the
//! network between them goes silent (a TCP proxy that turns into a black hole: nothing forwarded,
//! nothing closed, the connections it caught dead for good). Invariants are checked every half
//! second while it runs, not only at the end. RELIABILITY.md has the figures.
//!
//! The silence lasts `EPPS_SILENCE_SECS` (default 30; the long variant in RELIABILITY.md is 120).
//! Tokens live twice the silence plus 30 s, so that a token written before it outlives it: what
//! is tested is whether the operator resumes, not whether a token can outlive an outage.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use harness::{
    black_hole::BlackHole,
    env::{process::*, *},
    http_client,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ecr-public-pull-secret-operator");
const RESOURCES: usize = 5;
/// The operator's own AWS identity: static keys, which the fake ECR accepts.
const KEY_ID: (&str, &str) = ("AWS_ACCESS_KEY_ID", "AKIDBINARY");
const SECRET_KEY: (&str, &str) = ("AWS_SECRET_ACCESS_KEY", "binary-secret");

fn silence() -> Duration {
    let secs = std::env::var("EPPS_SILENCE_SECS").ok();
    Duration::from_secs(secs.and_then(|s| s.parse().ok()).unwrap_or(30))
}

/// The status of `GET http://<addr><path>`, or 0 when there is no answer.
async fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let url = format!("http://{addr}{path}");
    let answer = http_client::call(http::Method::GET, &url, &[], "");
    match tokio::time::timeout(Duration::from_secs(2), answer).await {
        Ok(Ok(response)) => response.status().as_u16(),
        _ => 0,
    }
}

/// The operator's kubeconfig, with the API server reached through `proxy`.
fn through(env: &Env, proxy: &BlackHole) -> String {
    let url = env.url();
    let kubeconfig = env.kubeconfig_yaml(&env.ns);
    assert!(kubeconfig.contains(&url), "the kubeconfig names {url}");
    kubeconfig.replace(&url, &format!("https://{}", proxy.addr()))
}

/// Each managed Secret's `expires-at`, by name.
fn expiries(env: &Env) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    let secrets = env.k8s.list(SECRETS, Some(&env.ns));
    secrets
        .iter()
        .filter_map(|s| {
            let at =
                s["metadata"]["annotations"]["ecrpublic.pullsecrets.dev/expires-at"].as_str()?;
            Some((s["metadata"]["name"].as_str()?.to_owned(), at.parse().ok()?))
        })
        .collect()
}

/// What the watcher saw go wrong, checked every half second until stopped.
#[derive(Default)]
struct Watcher {
    stop: AtomicBool,
    violations: Mutex<Vec<String>>,
}

impl Watcher {
    /// Samples the invariants: no Secret holds an expired token (AWS answers throughout), and
    /// `/livez` answers 200 (the process is never wedged: every request it makes is bounded).
    fn start(self: &Arc<Self>, env: Arc<Env>, admin: SocketAddr) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            while !me.stop.load(Ordering::SeqCst) {
                let now = chrono::Utc::now();
                for (name, expires) in expiries(&env) {
                    if expires <= now {
                        me.note(format!(
                            "{now}: Secret {name} holds a token expired at {expires}"
                        ));
                    }
                }
                let live = status_of(admin, "/livez").await;
                if live != 200 {
                    me.note(format!("{now}: /livez answered {live}"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    fn note(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_a_silent_network_is_survived_without_a_restart() {
    let env = Arc::new(Env::start_real().await);
    let ns = env.ns.clone();
    let silent_for = silence();
    let lifetime = silent_for * 2 + Duration::from_secs(30);
    env.ecr.set_token_lifetime(lifetime);
    let api: SocketAddr = env.url().trim_start_matches("https://").parse().unwrap();
    let proxy = BlackHole::start(api).await.unwrap();
    let dir = Scratch::new("silent-network");
    let settings = [
        KEY_ID,
        SECRET_KEY,
        ("API_REQUEST_TIMEOUT", "3s"),
        ("WATCH_TIMEOUT", "10s"),
        ("RETRY_BACKOFF_MAX", "5s"),
        ("STALL_TIMEOUT", "20s"),
    ];
    let _op = spawn_with_kubeconfig(BIN, &env, &through(&env, &proxy), &dir.0, "op", &settings);
    let admin = admin_addr(&dir.0, "op").await;
    // Rotated 15 s after issue, so rotations fall before, during and after the silence.
    let refresh = format!("{}s", lifetime.as_secs() - 15);
    for i in 0..RESOURCES {
        env.create_cr(&ns, &format!("r{i}"), json!({"refreshBefore": refresh}))
            .await;
    }
    env.wait("every resource Ready", Duration::from_secs(60), |k| {
        (0..RESOURCES).all(|i| cr_ready(k, &ns, &format!("r{i}")))
    })
    .await;

    let watcher = Arc::new(Watcher::default());
    let watching = watcher.start(env.clone(), admin);
    let calls_before = env.ecr.calls();
    proxy.silence();
    // Meanwhile a user creates a resource: seen once the operator's watch is back.
    env.create_cr(&ns, "during", json!({"refreshBefore": refresh}))
        .await;
    tokio::time::sleep(silent_for).await; // the outage itself: its length is the test's input
    let at_restore = expiries(&env);
    proxy.restore();
    let restored = Instant::now();

    // The resource created meanwhile gets its Secret: the watch noticed the silence (idle
    // timeout) and reconnected.
    env.wait(
        "the resource created during the silence",
        Duration::from_secs(60),
        |k| cr_ready(k, &ns, "during"),
    )
    .await;
    let caught_up = restored.elapsed();
    // Every Secret rotates again after the silence.
    let rotated = env
        .k8s
        .wait_until(Duration::from_secs(60), |_| {
            let now = expiries(&env);
            at_restore
                .iter()
                .all(|(name, before)| now.iter().any(|(n, after)| n == name && after > before))
        })
        .await;
    assert!(rotated, "every Secret rotated after the silence");
    let rotated_in = restored.elapsed();
    watcher.stop.store(true, Ordering::SeqCst);
    watching.await.unwrap();

    let violations = watcher.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(status_of(admin, "/readyz").await, 200);
    // Nothing lost: every resource Ready, one Secret each; no loop: ECR calls stay one per
    // rotation of the one identity (at most one per 15 s over the run, plus the first).
    let all = (0..RESOURCES)
        .map(|i| format!("r{i}"))
        .chain(["during".to_owned()]);
    for name in all {
        assert!(cr_ready(&env.k8s, &ns, &name), "{name} Ready");
    }
    let calls = env.ecr.calls() - calls_before;
    let bound = (restored.elapsed() + silent_for).as_secs() / 15 + 2;
    assert!(calls as u64 <= bound, "{calls} ECR calls, at most {bound}");
    eprintln!(
        "silence {}s: new resource Ready {:.1}s after restore, every Secret rotated {:.1}s after \
         restore, {calls} ECR calls, {} connections forwarded",
        silent_for.as_secs(),
        caught_up.as_secs_f64(),
        rotated_in.as_secs_f64(),
        proxy.forwarded()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_a_reconcile_wedged_by_an_unbounded_request_fails_livez() {
    let env = Arc::new(Env::start_real().await);
    let ns = env.ns.clone();
    env.ecr.set_token_lifetime(Duration::from_secs(20));
    let api: SocketAddr = env.url().trim_start_matches("https://").parse().unwrap();
    let proxy = BlackHole::start(api).await.unwrap();
    let dir = Scratch::new("wedged");
    // Requests without a bound: a write sent into the silence never returns.
    let settings = [
        KEY_ID,
        SECRET_KEY,
        ("API_REQUEST_TIMEOUT", "0s"),
        ("STALL_TIMEOUT", "5s"),
    ];
    let _op = spawn_with_kubeconfig(BIN, &env, &through(&env, &proxy), &dir.0, "op", &settings);
    let admin = admin_addr(&dir.0, "op").await;
    env.create_cr(&ns, "r", json!({"refreshBefore": "15s"}))
        .await;
    env.wait("Ready", Duration::from_secs(60), |k| cr_ready(k, &ns, "r"))
        .await;
    assert_eq!(status_of(admin, "/livez").await, 200);

    proxy.silence();
    // The next rotation (within 5 s) sends its write into the silence: once it has run longer
    // than --stall-timeout, /livez says so, and stays so after the network is back, since that
    // connection is dead: only a restart helps.
    let wedged = eventually(Duration::from_secs(30), async || {
        status_of(admin, "/livez").await == 503
    });
    assert!(wedged.await, "/livez reports the wedged reconcile");
    proxy.restore();
    let url = format!("http://{admin}/livez");
    let answer = http_client::call(http::Method::GET, &url, &[], "")
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    let text = String::from_utf8_lossy(answer.body()).into_owned();
    assert!(text.contains("--stall-timeout"), "{text}");
    assert_eq!(
        status_of(admin, "/readyz").await,
        200,
        "not a readiness matter"
    );
}
