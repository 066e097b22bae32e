//! The real binary, configured only through its environment like in a pod, against the fake ECR
//! Public and a Kubernetes API: the emulator, and as `real_api_server::…` the real kube-apiserver.

use std::{process::Command, time::Duration};

use harness::{
    env::{process::*, *},
    on_both_apis,
};
use serde_json::json;

/// The operator binary cargo built for this test run.
const BIN: &str = env!("CARGO_BIN_EXE_ecr-public-pull-secret-operator");

const LEASES: &str = "leases.coordination.k8s.io";

/// What a replica logged about leadership, and its warnings, for a failure message.
fn leadership_log(dir: &Scratch, name: &str) -> String {
    let log = std::fs::read_to_string(dir.0.join(format!("{name}.log"))).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("lead") || l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn crd_subcommand_prints_the_committed_crd() {
    let out = Command::new(BIN).arg("crd").output().expect("run binary");
    assert!(out.status.success());
    let committed = |file: &str| {
        std::fs::read_to_string(format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("committed CRD")
    };
    let both = format!(
        "{}---\n{}",
        committed("ecrpublicpullsecrets.ecrpublic.pullsecrets.dev.yaml"),
        committed("clusterecrpublicpullsecrets.ecrpublic.pullsecrets.dev.yaml")
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        both,
        "crds/ is out of date: run `cargo run -- crd --write crds`"
    );
}

async fn binary_writes_and_rotates_a_secret_from_env_configuration(api: Api) {
    let env = Env::start_on(api).await;
    let ns = env.ns.as_str();
    env.ecr.set_token_lifetime(Duration::from_secs(8));
    let dir = Scratch::new("binary");
    // As a user turning logging all the way up to debug a problem: still no token in the logs.
    let mut child = spawn(BIN, &env, &dir.0, "op", &[("RUST_LOG", "trace")]);
    let http = admin_addr(&dir.0, "op").await;

    env.create_cr(ns, "bin", json!({"refreshBefore": "4s"}))
        .await;
    env.wait("binary made the CR Ready", Duration::from_secs(30), |k| {
        cr_ready(k, ns, "bin")
    })
    .await;
    let auth = |k: &Kube| {
        k.get(SECRETS, Some(ns), "bin")
            .map(|s| docker_config(&s)["auths"]["public.ecr.aws"]["auth"].clone())
    };
    let first = auth(&env.k8s);
    env.wait("binary rotated the token", Duration::from_secs(20), |k| {
        auth(k) != first
    })
    .await;
    assert_eq!(
        env.ecr.calls_by_access_key().keys().collect::<Vec<_>>(),
        vec!["AKIDBINARY"]
    );
    // The CR was reconciled twice, so both caches have long been synced.
    assert_eq!(http_get(http, "/readyz").await, (200, "ok".to_owned()));

    // SIGTERM: graceful shutdown, exit code 0.
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .unwrap();
    let stderr = std::fs::read_to_string(dir.0.join("op.log")).unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit; stderr:\n{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with('{')),
        "LOG_FORMAT=json gives JSON lines"
    );
    assert!(stderr.contains("shutdown signal received"));
    let secret = env.k8s.get(SECRETS, Some(ns), "bin").unwrap();
    let data = secret["data"][".dockerconfigjson"]
        .as_str()
        .unwrap()
        .to_owned();
    let passwords = env.ecr.issued_passwords();
    assert_eq!(passwords.len(), 2, "a first token and a rotation");
    for pw in passwords {
        assert!(
            !stderr.contains(&pw) && !stderr.contains(&base64_auth(&pw)),
            "token in the binary's logs"
        );
    }
    assert!(!stderr.contains(&data), "Secret data in the binary's logs");
    // The trace level was on, and the AWS SDK still logged up to debug.
    let at = |level: &str, target: &str| {
        stderr.lines().any(|l| {
            l.contains(&format!(r#""level":"{level}""#))
                && l.contains(&format!(r#""target":"{target}"#))
        })
    };
    assert!(at("TRACE", "ecr_public_pull_secret_operator") || at("TRACE", "kube"));
    assert!(at("DEBUG", "aws_smithy_runtime"));
    assert!(!at("TRACE", "aws_"), "the SDK never logs at trace");
}

async fn two_replicas_elect_one_writer_and_hand_over_when_it_is_killed(api: Api) {
    let env = Env::start_on(api).await;
    let ns = env.ns.as_str();
    let dir = Scratch::new("leader");
    let lease = [("LEADER_ELECTION", "true"), ("LEASE_DURATION", "3s")];
    let mut a = spawn(BIN, &env, &dir.0, "a", &lease);
    let mut b = spawn(BIN, &env, &dir.0, "b", &lease);
    let (http_a, http_b) = (admin_addr(&dir.0, "a").await, admin_addr(&dir.0, "b").await);
    let holder = |k: &Kube| {
        k.get(LEASES, Some(ns), "ecr-public-pull-secret-operator")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
            .filter(|h| !h.is_empty())
    };
    env.wait("a leader", Duration::from_secs(20), |k| holder(k).is_some())
        .await;
    let leader = holder(&env.k8s).unwrap();
    for i in 0..3 {
        env.create_cr(ns, &format!("le-{i}"), json!({})).await;
    }
    env.wait("CRs Ready", Duration::from_secs(20), |k| {
        (0..3).all(|i| cr_ready(k, ns, &format!("le-{i}")))
    })
    .await;
    // Both replicas are ready (followers too, so rolling updates proceed); only the leader reconciles.
    let (leader_http, follower_http) = if leader == "a" {
        (http_a, http_b)
    } else {
        (http_b, http_a)
    };
    assert!(
        eventually(Duration::from_secs(20), async || http_get(
            follower_http,
            "/readyz"
        )
        .await
        .0 == 200)
        .await,
        "the follower reports ready"
    );
    let reconciles = |text: &str| {
        ["fresh", "written", "failed"]
            .iter()
            .filter_map(|r| metric(text, &format!("epps_reconcile_total{{result=\"{r}\"}}")))
            .sum::<f64>()
    };
    // Reconciles are counted when they return, just after their status write: await the count.
    let leader_counted = async || reconciles(&http_get(leader_http, "/metrics").await.1) >= 3.0;
    assert!(
        eventually(Duration::from_secs(20), leader_counted).await,
        "the leader {leader} counted its reconciles\nLease: {:?}\na: {}\nb: {}",
        env.k8s
            .get(LEASES, Some(ns), "ecr-public-pull-secret-operator"),
        leadership_log(&dir, "a"),
        leadership_log(&dir, "b"),
    );
    assert_eq!(
        reconciles(&http_get(follower_http, "/metrics").await.1),
        0.0,
        "the follower never reconciles"
    );

    // SIGKILL the leader: no release, the follower takes over once the lease expires.
    let (killed, survivor, survivor_http) = if leader == "a" {
        (&mut a, "b", http_b)
    } else {
        (&mut b, "a", http_a)
    };
    signal(killed, "-KILL");
    let _ = killed.wait().await;
    env.wait("hand-over", Duration::from_secs(15), |k| {
        holder(k).as_deref() == Some(survivor)
    })
    .await;
    env.create_cr(ns, "after-handover", json!({})).await;
    env.wait("new CR Ready", Duration::from_secs(20), |k| {
        cr_ready(k, ns, "after-handover")
    })
    .await;
    let survivor_counted = async || reconciles(&http_get(survivor_http, "/metrics").await.1) >= 1.0;
    assert!(
        eventually(Duration::from_secs(20), survivor_counted).await,
        "the survivor counted its reconciles"
    );
    assert_eq!(env.ecr.calls(), 2, "one token per leader's cache");

    // SIGTERM: the leader releases the Lease on its way out, so a successor need not wait.
    let survivor_child = if survivor == "a" { &mut a } else { &mut b };
    signal(survivor_child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), survivor_child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit");
    env.wait("Lease released", Duration::from_secs(10), |k| {
        holder(k).is_none()
    })
    .await;
}

on_both_apis!(
    binary_writes_and_rotates_a_secret_from_env_configuration,
    two_replicas_elect_one_writer_and_hand_over_when_it_is_killed,
);
