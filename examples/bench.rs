//! Benchmark: the operator binary itself (built by the bench with the bench's own profile, run as a
//! separate process whose memory is read from /proc) against a Kubernetes API and the fake ECR
//! Public on 127.0.0.1. The API is the in-repo emulator (default) or, with `--api real`, the real
//! kube-apiserver + etcd built by `tests/cluster/build.sh`, whose audit log and `/metrics` then
//! count the requests (the server's own view, not the operator's).
//!
//!     cargo run --release --example bench -- --crs 1000 --namespaces 10 --json
//!     tests/cluster/build.sh && cargo run --release --example bench -- --api real --crs 1000 --json
//!
//! Resources are created the way users create them, with `kubectl apply`: each carries the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (a copy of itself).
//!
//! Phases: cold start (all CRs exist before the operator starts), idle (nothing due), ready latency
//! (CRs created one by one), rotations (short token lifetime), restart (all Secrets fresh), RSS.
//! With `--json` the last line printed is one JSON object; see BENCHMARKS.md for results.
//!
//! `--hostile-identities N` runs something else: one namespace cycles through N distinct roles as
//! a hostile tenant would, and the operator's resident set is read before, after, and once what
//! the deleted resources' identities held has been dropped.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use clap::Parser;
use futures::StreamExt;
use harness::env::*;
use harness::sts::Sts;
use serde_json::json;

#[derive(Debug, Parser)]
struct Opts {
    /// The Kubernetes API: the in-repo emulator, or the real kube-apiserver (needs
    /// tests/cluster/build.sh).
    #[arg(long, value_enum, default_value_t = Api::Emulator)]
    api: Api,
    /// Namespaced EcrPublicPullSecrets.
    #[arg(long, default_value_t = 1000)]
    crs: usize,
    /// Namespaces the CRs are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// IAM identities. With more than one, CR i asks for role `bench-(i mod K)` (spec.roleArn),
    /// assumed from the operator's identity through the harness's AssumeRole-only STS.
    #[arg(long, default_value_t = 1)]
    identities: usize,
    /// Private ECR regions every CR also lists (spec.privateRegistries, at most 4): a mixed
    /// Secret of ECR Public and these regions, each one call per identity per rotation.
    #[arg(long, default_value_t = 0)]
    private_regions: usize,
    /// Token lifetime the fake ECR Public issues, in seconds (rotation every half of it).
    #[arg(long, default_value_t = 60)]
    token_lifetime: u64,
    /// Rotations to observe.
    #[arg(long, default_value_t = 2)]
    rotations: u32,
    /// CRs created one by one for the ready-latency phase.
    #[arg(long, default_value_t = 100)]
    latency_samples: usize,
    /// Seconds of the idle measurement.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// `restart_rss_mib` of a run with `--crs 100` (same other settings): the JSON then also
    /// carries `bytes_per_resource` = (restart RSS here − this) / (N − 100).
    #[arg(long)]
    baseline_rss_mib: Option<f64>,
    /// Instead of the phases above: in one namespace, create a resource naming role i, wait for
    /// its Secret, delete it, for this many distinct roles (a few at a time).
    #[arg(long, default_value_t = 0)]
    hostile_identities: usize,
}

fn main() {
    let opts = Opts::parse();
    if opts.identities == 0 {
        eprintln!("--identities must be at least 1");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if opts.hostile_identities > 0 {
        rt.block_on(hostile(opts));
    } else {
        rt.block_on(bench(opts));
    }
}

/// The operator binary of the bench's own profile (`target/<profile>/`), built now if needed: the
/// figures are the shipped binary's, its allocator and all, never a stale build's.
fn operator_binary() -> std::path::PathBuf {
    const BIN: &str = env!("CARGO_PKG_NAME");
    let exe = std::env::current_exe().expect("own executable");
    // target/<profile dir>/examples/bench
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("unexpected bench location {}", exe.display()),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--profile", &profile, "--bin", BIN])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()
        .expect("run cargo build for the operator binary");
    assert!(status.success(), "cargo build --bin {BIN} failed");
    profile_dir.join(BIN)
}

struct Child {
    proc: tokio::process::Child,
    http: std::net::SocketAddr,
}

impl Child {
    fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// The resident set now.
    fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        let Some(pid) = self.proc.id() else {
            return 0.0;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    async fn metric(&self, series: &str) -> f64 {
        metric(&http_get(self.http, "/metrics").await.1, series).unwrap_or(0.0)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.proc.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.proc.wait()).await;
    }
}

/// Regions `--private-regions` takes, in order.
const PRIVATE_REGIONS: [&str; 4] = ["us-west-2", "eu-west-1", "ap-southeast-2", "eu-central-1"];

/// The spec of CR `i`: its role when there are several identities, and the private regions.
fn cr_spec(i: usize, o: &Opts) -> serde_json::Value {
    let mut spec = json!({});
    if o.identities > 1 {
        spec["roleArn"] = json!(format!("{ROLE_PREFIX}{}", i % o.identities));
    }
    if o.private_regions > 0 {
        let regions = PRIVATE_REGIONS.iter().take(o.private_regions);
        let registries: Vec<_> = regions.map(|r| json!({ "region": r })).collect();
        spec["privateRegistries"] = json!(registries);
    }
    spec
}

const ROLE_PREFIX: &str = "arn:aws:iam::123456789012:role/bench-";

fn spawn_operator(
    exe: &std::path::Path,
    env: &Env,
    kubeconfig: &std::path::Path,
    sts: Option<&Sts>,
) -> Child {
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // BENCH_OPERATOR_WRAPPER runs the operator under a profiler, e.g.
    // "/usr/bin/valgrind --tool=massif --massif-out-file=/tmp/massif.out" (RSS then is the
    // profiler's, not the operator's).
    let wrapper: Vec<String> = std::env::var("BENCH_OPERATOR_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => tokio::process::Command::new(exe),
    };
    let proc = command
        .env_clear()
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ENDPOINT_URL_ECR_PUBLIC", env.ecr.url())
        .env("AWS_ENDPOINT_URL_ECR", env.ecr.url())
        .envs(sts.map(|sts| ("AWS_ENDPOINT_URL_STS", sts.url())))
        .envs(sts.map(|_| ("ALLOWED_ROLE_ARNS", format!("{ROLE_PREFIX}*"))))
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
        .env("AWS_REGION", "us-west-2")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HTTP_ADDR", http.to_string())
        .env("RUST_LOG", "warn")
        .env("CONCURRENCY", "64")
        // Allocator tuning experiments, and the PATH a profiler wrapper's script needs: passed
        // through when the caller sets them.
        .envs(
            ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "PATH"]
                .into_iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k, v))),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn operator");
    Child { proc, http }
}

fn ready_count(env: &Env) -> usize {
    env.k8s
        .list(CRS, None)
        .iter()
        .filter(|cr| ready(cr).is_some_and(|(s, _)| s == "True"))
        .count()
}

/// Waits (polling every 100 ms, bounded) until `n` CRs are Ready.
async fn wait_ready(env: &Env, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pace = Pace::new(Duration::from_millis(100));
    while Instant::now() < deadline {
        if pace.probe(|| ready_count(env)) >= n {
            return true;
        }
        pace.wait().await;
    }
    false
}

/// Paces a polling loop whose probe reads every resource: it waits at least `min`, and three
/// times as long as the last probe took. At 100,000 resources one listing takes about a second;
/// polled every 100 ms, the bench's own listing took most of the CPU and the emulator's time
/// from the operator it measures (cold start 329 s, the operator itself busy for 50 s of it).
struct Pace {
    min: Duration,
    last: Duration,
}

impl Pace {
    fn new(min: Duration) -> Self {
        Self {
            min,
            last: Duration::ZERO,
        }
    }

    fn probe<T>(&mut self, probe: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let seen = probe();
        self.last = started.elapsed();
        seen
    }

    async fn wait(&self) {
        tokio::time::sleep(self.min.max(self.last * 3)).await;
    }
}

fn writes(env: &Env) -> usize {
    env.k8s
        .requests()
        .iter()
        .filter(|r| {
            r.resource == SECRETS && matches!(r.verb.as_str(), "patch" | "create" | "update")
        })
        .count()
}

fn status_writes(env: &Env) -> usize {
    env.k8s
        .requests()
        .iter()
        .filter(|r| r.resource == CRS && r.subresource.as_deref() == Some("status"))
        .count()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Resources created at once before the operator starts (a `kubectl apply` of many files).
const CREATE_CONCURRENCY: usize = 16;

/// Creates a resource as `kubectl apply` does: with the last-applied-configuration annotation.
async fn apply_cr(env: &Env, ns: &str, name: String, spec: serde_json::Value) {
    let applied = json!({
        "apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
        "kind": "EcrPublicPullSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    });
    let mut obj = applied.clone();
    obj["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n"),
    });
    env.k8s
        .create(CRS, Some(ns), obj)
        .await
        .unwrap_or_else(|e| panic!("create CR {ns}/{name}: {e}"));
}

/// Requests the API server counted (`apiserver_request_total`) for one resource and verb with a
/// 2xx code; `None` on the emulator, which has no such metric. Server-side apply is counted under
/// the verb `APPLY`, other patches under `PATCH`.
async fn server_count(env: &Env, resource: &str, subresource: &str, verb: &str) -> Option<f64> {
    let cp = env.control_plane()?;
    let text = cp.metrics().await.ok()?;
    let want =
        |line: &str, label: &str, value: &str| line.contains(&format!("{label}=\"{value}\""));
    let total = text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            want(l, "resource", resource)
                && want(l, "subresource", subresource)
                && want(l, "verb", verb)
                && l.contains("code=\"2")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(total)
}

async fn bench(o: Opts) {
    let exe = operator_binary();
    assert!(
        o.private_regions <= PRIVATE_REGIONS.len(),
        "--private-regions takes at most {}",
        PRIVATE_REGIONS.len()
    );
    let sources = 1 + o.private_regions;
    let env = Env::start_on(o.api).await;
    env.ecr
        .set_token_lifetime(Duration::from_secs(o.token_lifetime));
    let dir = std::env::temp_dir().join(format!("epps-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, env.kubeconfig_yaml("default")).expect("kubeconfig");
    let namespaces: Vec<String> = (0..o.namespaces.max(1))
        .map(|i| format!("bench-{i}"))
        .collect();
    for ns in &namespaces {
        env.create_namespace(ns, &[]).await;
    }
    let created = Instant::now();
    futures::stream::iter(0..o.crs)
        .for_each_concurrent(CREATE_CONCURRENCY, |i| {
            let ns = &namespaces[i % namespaces.len()];
            apply_cr(&env, ns, format!("cr-{i}"), cr_spec(i, &o))
        })
        .await;
    eprintln!(
        "created {} CRs in {:.1}s",
        o.crs,
        created.elapsed().as_secs_f64()
    );
    // Role sessions last an hour, as by default on AWS: no refresh within a bench run.
    let sts = if o.identities > 1 {
        Some(
            Sts::standalone(Duration::from_secs(3600))
                .await
                .expect("in-repo STS"),
        )
    } else {
        None
    };
    eprintln!(
        "created {} CRs in {} namespaces; starting the operator",
        o.crs,
        namespaces.len()
    );

    // Cold start.
    let started = Instant::now();
    let op = spawn_operator(&exe, &env, &kubeconfig, sts.as_ref());
    assert!(
        wait_ready(&env, o.crs, Duration::from_secs(600)).await,
        "cold start did not finish"
    );
    let cold_start_s = started.elapsed().as_secs_f64();
    eprintln!("cold start: {cold_start_s:.2}s");

    // Idle: nothing is due (rotation is at half the lifetime); count requests except watches.
    let requests = |env: &Env| {
        env.k8s
            .requests()
            .iter()
            .filter(|r| r.verb != "watch")
            .count()
    };
    let idle0 = requests(&env);
    tokio::time::sleep(Duration::from_secs(o.idle_seconds)).await;
    let idle = requests(&env) - idle0;
    if idle > 0 {
        // Say what they were: an idle operator should make none.
        let mut kinds = std::collections::BTreeMap::new();
        for r in env
            .k8s
            .requests()
            .iter()
            .skip(idle0)
            .filter(|r| r.verb != "watch")
        {
            let key = format!(
                "{} {} {}",
                r.verb,
                r.resource,
                r.subresource.as_deref().unwrap_or("")
            );
            *kinds.entry(key).or_insert(0) += 1;
        }
        eprintln!("idle requests by kind: {kinds:?}");
    }
    let idle_requests_per_min = idle as f64 * 60.0 / o.idle_seconds as f64;
    eprintln!("idle: {idle} requests in {}s", o.idle_seconds);

    // Ready latency: create CRs one by one, time until their Secret exists.
    let mut latencies = Vec::new();
    for i in 0..o.latency_samples {
        let ns = &namespaces[i % namespaces.len()];
        let name = format!("lat-{i}");
        let t = Instant::now();
        apply_cr(&env, ns, name.clone(), cr_spec(i, &o)).await;
        let ok = env
            .k8s
            .wait_until(Duration::from_secs(30), |k| {
                k.get(SECRETS, Some(ns), &name).is_some()
            })
            .await;
        assert!(ok, "latency sample {i} timed out");
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let total = o.crs + o.latency_samples;

    // Rotations: rotation k is complete once ECR issued k new tokens and every Secret holds the
    // newest one. Writes and calls are counted over the whole phase, so duplicates would show.
    let calls0 = env.ecr.successful_calls();
    let by_source0 = env.ecr.calls_by_source();
    let writes0 = writes(&env);
    let server_writes0 = server_count(&env, "secrets", "", "APPLY").await;
    let mut rotations_done = 0u32;
    let mut before = expiries(&env);
    let phase_deadline = Instant::now() + Duration::from_secs(o.token_lifetime) * (o.rotations + 1);
    eprintln!("observing {} rotations", o.rotations);
    let mut pace = Pace::new(Duration::from_millis(200));
    while rotations_done < o.rotations && Instant::now() < phase_deadline {
        pace.wait().await;
        let issued = env.ecr.successful_calls() - calls0;
        let now = pace.probe(|| expiries(&env));
        let per_rotation = o.identities * sources;
        if issued >= (rotations_done as usize + 1) * per_rotation && all_moved(&before, &now, total)
        {
            before = now;
            rotations_done += 1;
            eprintln!("rotation {rotations_done} complete");
        }
    }
    // Let stragglers (a second write, a second call) show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rot_calls = env.ecr.calls() - calls0;
    // Per source ("service/region"): calls per identity per rotation.
    let by_source: std::collections::BTreeMap<String, f64> = (env.ecr.calls_by_source())
        .into_iter()
        .map(|(key, n)| {
            let before = by_source0.get(&key).copied().unwrap_or_default();
            let per =
                (n - before) as f64 / (o.identities as f64 * f64::from(rotations_done.max(1)));
            (format!("{}/{}", key.0, key.1), round(per, 3))
        })
        .collect();
    let rot_writes = writes(&env) - writes0;
    let server_rot_writes = server_count(&env, "secrets", "", "APPLY")
        .await
        .zip(server_writes0)
        .map(|(after, before)| after - before);
    if rot_writes > total * rotations_done as usize {
        // Name the Secrets written more than once per rotation, with their write times.
        let mut per: std::collections::BTreeMap<String, usize> = Default::default();
        for r in env.k8s.requests().iter().filter(|r| {
            r.resource == SECRETS && matches!(r.verb.as_str(), "patch" | "create" | "update")
        }) {
            let key = format!("{:?}/{:?}", r.namespace, r.name);
            *per.entry(key).or_insert(0) += 1;
        }
        let extra: Vec<_> = per
            .iter()
            .filter(|(_, n)| **n > rotations_done as usize + 1)
            .collect();
        eprintln!("Secrets written more than once per token: {extra:?}");
    }
    let rotations = rotations_done.max(1);
    eprintln!(
        "rotations: {rotations_done} observed, {rot_calls} ECR calls, {rot_writes} Secret writes"
    );
    let rss_mib = op.peak_rss_mib();
    op.stop().await;

    // Restart with every Secret fresh: expect no AWS call and no write. Done once the new process
    // has reconciled every CR once (its reconcile counters reach the CR count).
    let calls1 = env.ecr.calls();
    let writes1 = writes(&env);
    let server_writes1 = server_count(&env, "secrets", "", "APPLY").await;
    let op = spawn_operator(&exe, &env, &kubeconfig, sts.as_ref());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(300) {
        let seen = op.metric(r#"epps_reconcile_total{result="fresh"}"#).await
            + op.metric(r#"epps_reconcile_total{result="written"}"#).await;
        if seen >= total as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restart_ecr_calls = env.ecr.calls() - calls1;
    let restart_secret_writes = writes(&env) - writes1;
    let server_restart_writes = server_count(&env, "secrets", "", "APPLY")
        .await
        .zip(server_writes1)
        .map(|(after, before)| after - before);
    // The restarted process: full caches, nothing to write, no Events (the steady state).
    let restart_rss_mib = op.peak_rss_mib();
    let rss_mib = rss_mib.max(restart_rss_mib);
    op.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let per_rotation = |w: f64| round(w / (total as f64 * f64::from(rotations)), 3);
    let result = json!({
        "api": format!("{:?}", o.api).to_lowercase(),
        "crs": o.crs,
        "namespaces": namespaces.len(),
        "identities": o.identities,
        "ecr_calls": env.ecr.calls(),
        "secret_writes": writes(&env),
        "status_writes": status_writes(&env),
        "cold_start_s": round(cold_start_s, 3),
        "ready_p50_ms": round(percentile(&latencies, 0.50), 1),
        "ready_p99_ms": round(percentile(&latencies, 0.99), 1),
        "rotations": rotations_done,
        "writes_per_secret_per_rotation": per_rotation(rot_writes as f64),
        "ecr_calls_per_identity_per_rotation": round(rot_calls as f64 / (o.identities as f64 * f64::from(rotations)), 3),
        // With --private-regions: every source (ECR Public, each region) in one Secret.
        "sources": sources,
        "ecr_calls_per_identity_per_source_per_rotation": round(rot_calls as f64 / ((o.identities * sources) as f64 * f64::from(rotations)), 3),
        "calls_per_identity_per_rotation_by_source": by_source,
        "idle_requests_per_min": round(idle_requests_per_min, 1),
        "restart_ecr_calls": restart_ecr_calls,
        "restart_secret_writes": restart_secret_writes,
        "rss_mib": round(rss_mib, 1),
        "restart_rss_mib": round(restart_rss_mib, 1),
        // What each resource beyond the first 100 costs in the steady state (BENCHMARKS.md).
        "bytes_per_resource": o.baseline_rss_mib.filter(|_| o.crs > 100).map(|base| {
            ((restart_rss_mib - base) * 1024.0 * 1024.0 / (o.crs - 100) as f64).round()
        }),
        // AssumeRole calls (several identities only): one per role per session lifetime.
        "sts_calls": sts.as_ref().map_or(0, |s| s.assume_role_calls().values().sum::<usize>()),
        "max_ecr_calls_per_identity": env.ecr.calls_by_access_key().values().max().copied().unwrap_or(0),
        // The real API server's own counters (apiserver_request_total, 2xx Secret APPLYs); null
        // on the emulator. The request counts above come from its audit log there.
        "server_writes_per_secret_per_rotation": server_rot_writes.map(per_rotation),
        "server_restart_secret_writes": server_restart_writes,
        // Every request of the operator over the whole run, by verb, resource and answer, as the
        // API recorded them (the emulator's log, or the real server's audit log).
        "requests": requests_by_kind(&env),
    });
    if o.json {
        println!("{result}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    }
}

/// The operator's requests counted by "verb resource[/subresource] code".
fn requests_by_kind(env: &Env) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for r in env.k8s.requests() {
        let sub = r.subresource.map(|s| format!("/{s}")).unwrap_or_default();
        let key = format!("{} {}{sub} {}", r.verb, r.resource, r.code);
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Each Secret's token expiry (`expires-at` annotation, RFC 3339), by namespace/name.
fn expiries(env: &Env) -> std::collections::BTreeMap<String, String> {
    env.k8s
        .list(SECRETS, None)
        .iter()
        .filter_map(|s| {
            let meta = &s["metadata"];
            let expiry = meta["annotations"]["ecrpublic.pullsecrets.dev/expires-at"].as_str()?;
            Some((
                format!("{}/{}", meta["namespace"], meta["name"]),
                expiry.to_owned(),
            ))
        })
        .collect()
}

/// Whether all `total` Secrets hold a later token than at the previous rotation (tokens of
/// different identities expire at slightly different times, so no single "newest" expiry).
fn all_moved(
    before: &std::collections::BTreeMap<String, String>,
    now: &std::collections::BTreeMap<String, String>,
    total: usize,
) -> bool {
    now.len() >= total
        && now.iter().all(|(k, e)| {
            before.get(k).is_none_or(|b| {
                chrono::DateTime::parse_from_rfc3339(e).ok()
                    > chrono::DateTime::parse_from_rfc3339(b).ok()
            })
        })
}

/// Resources a hostile tenant keeps in flight at once (below the default identity cap of 10).
const HOSTILE_CONCURRENCY: usize = 8;
/// Roles cycled before the first reading, so that allocator and caches have found their size.
const HOSTILE_WARMUP: usize = 200;

/// One namespace cycles through `--hostile-identities` distinct roles: the operator's RSS must end
/// where it started, not grow by what every identity ever used held.
async fn hostile(o: Opts) {
    let exe = operator_binary();
    let env = Env::start_on(o.api).await;
    let dir = std::env::temp_dir().join(format!("epps-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, env.kubeconfig_yaml("default")).expect("kubeconfig");
    let ns = "hostile";
    env.create_namespace(ns, &[]).await;
    env.ecr
        .set_token_lifetime(Duration::from_secs(o.token_lifetime));
    let sts = Sts::standalone(Duration::from_secs(3600))
        .await
        .expect("in-repo STS");
    let op = spawn_operator(&exe, &env, &kubeconfig, Some(&sts));
    let cycle = |i: usize| {
        let env = &env;
        async move {
            let name = format!("h-{i}");
            let spec = json!({"roleArn": format!("{ROLE_PREFIX}hostile-{i}")});
            apply_cr(env, ns, name.clone(), spec).await;
            let written = env.k8s.wait_until(Duration::from_secs(60), |k| {
                k.get(SECRETS, Some(ns), &name).is_some()
            });
            assert!(written.await, "{name}: no Secret within 60 s");
            env.k8s.delete(CRS, Some(ns), &name).await.expect("delete");
        }
    };
    let cycles = |range: std::ops::Range<usize>| {
        futures::stream::iter(range).for_each_concurrent(HOSTILE_CONCURRENCY, cycle)
    };
    cycles(0..HOSTILE_WARMUP).await;
    // What the warm-up's resources left behind goes with the operator's housekeeping.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let start_mib = op.rss_mib();
    let started = Instant::now();
    cycles(HOSTILE_WARMUP..HOSTILE_WARMUP + o.hostile_identities).await;
    let seconds = started.elapsed().as_secs_f64();
    let end_mib = op.rss_mib();
    // Long enough for the operator's housekeeping (every 30 s) to find every remembered write
    // older than its 60 s horizon.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let swept_mib = op.rss_mib();
    let peak_mib = op.peak_rss_mib();
    let refused = env
        .k8s
        .list(EVENTS, Some(ns))
        .iter()
        .filter(|e| e["reason"] == "TooManyIdentities")
        .count();
    op.stop().await;
    let result = json!({
        "api": format!("{:?}", o.api).to_lowercase(),
        "hostile_identities": o.hostile_identities,
        "seconds": round(seconds, 1),
        "rss_start_mib": round(start_mib, 1),
        "rss_end_mib": round(end_mib, 1),
        "rss_after_sweep_mib": round(swept_mib, 1),
        "peak_rss_mib": round(peak_mib, 1),
        "sts_calls": sts.assume_role_calls().values().sum::<usize>(),
        "ecr_calls": env.ecr.calls(),
        // Resources that waited for a departed one's identity to be freed (the cap at work).
        "too_many_identities_events": refused,
    });
    println!("{result}");
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
