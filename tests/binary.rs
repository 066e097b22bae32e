//! The real binary, configured only through its environment like in a pod, against the emulators.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ecr-public-pull-secret-operator");

#[test]
fn crd_subcommand_prints_the_committed_crd() {
    let out = Command::new(BIN).arg("crd").output().expect("run binary");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/ecrpublicpullsecrets.ecrpublic.pullsecrets.dev.yaml"
    ))
    .expect("committed CRD");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed,
        "crds/ is out of date: run `cargo run -- crd > crds/ecrpublicpullsecrets.ecrpublic.pullsecrets.dev.yaml`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_writes_and_rotates_a_secret_from_env_configuration() {
    let env = Env::start().await;
    env.ecr.set_token_lifetime(Duration::from_secs(8));
    let dir = std::env::temp_dir().join(format!("epps-binary-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, env.api.kubeconfig_yaml("default")).unwrap();

    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ENDPOINT_URL_ECR_PUBLIC", env.ecr.url())
        .env("AWS_ACCESS_KEY_ID", "AKIDBINARY")
        .env("AWS_SECRET_ACCESS_KEY", "binary-secret")
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LOG_FORMAT", "json")
        .env(
            "RUST_LOG",
            "debug,hyper=info,aws_smithy_runtime=info,rustls=info",
        )
        .env("RETRY_BACKOFF_BASE", "200ms")
        .env("HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.log")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("start binary");

    env.create_cr("default", "bin", json!({"refreshBefore": "4s"}));
    env.wait("binary made the CR Ready", Duration::from_secs(30), |k| {
        cr_ready(k, "default", "bin")
    })
    .await;
    assert!(
        env.ecr.wait_for_calls(2, Duration::from_secs(20)).await,
        "binary rotated the token"
    );
    assert_eq!(
        env.ecr.calls_by_access_key().keys().collect::<Vec<_>>(),
        vec!["AKIDBINARY"]
    );

    // SIGTERM: graceful shutdown, exit code 0.
    let pid = child.id().expect("running").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .unwrap();
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit; stderr:\n{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with('{')),
        "LOG_FORMAT=json gives JSON lines"
    );
    assert!(stderr.contains("shutdown signal received"));
    for pw in env.ecr.issued_passwords() {
        assert!(
            !stderr.contains(&pw) && !stderr.contains(&base64_auth(&pw)),
            "token in the binary's logs"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
