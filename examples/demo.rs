//! A guided tour without a cluster: the real controller against the in-repo Kubernetes API
//! emulator and fake ECR Public, all on 127.0.0.1. Runs for about half a minute and exits.
//!
//!     cargo run --example demo
//!
//! Tokens are short-lived here (16 s) so that a rotation, a failure and the recovery all happen
//! while you watch. No token or password is printed: only expiry times and fingerprints.

use std::time::Duration;

use ecr_public_pull_secret_operator::{config::LogFormat, telemetry};
use harness::ecr::EcrFault;
use harness::env::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    telemetry::init(LogFormat::Text, "info,kube=warn");
    let env = Env::start().await;
    env.ecr.set_token_lifetime(Duration::from_secs(16));
    println!("Kubernetes API emulator:   {}", env.url());
    println!("fake ECR (Public, private): {}", env.ecr.url());
    let op = env.start_operator(&[]).await;
    env.create_namespace("demo", &[]).await;

    println!("\n1. kubectl apply an EcrPublicPullSecret (refreshBefore 8s, tokens live 16s)");
    env.create_cr(
        "demo",
        "public-ecr",
        json!({
            "refreshBefore": "8s",
            "registries": ["public.ecr.aws", "ecr-public.aws.com"],
            "privateRegistries": [{"region": "eu-west-1"}],
        }),
    )
    .await;
    env.wait("Ready", WAIT, |k| cr_ready(k, "demo", "public-ecr"))
        .await;
    show(&env);

    println!("\n2. wait for the rotation (one AWS call, one Secret write)");
    let first = fingerprint(&env);
    env.wait("rotation", WAIT, |k| {
        k.get(SECRETS, Some("demo"), "public-ecr")
            .is_some_and(|s| fp(&s) != first)
    })
    .await;
    // The status follows the Secret write by a few milliseconds.
    env.wait("status of the rotation", WAIT, status_matches_secret)
        .await;
    show(&env);

    println!(
        "\n3. IAM starts denying GetAuthorizationToken: the last good token stays in the Secret"
    );
    env.ecr.set_fault(Some(EcrFault::AccessDenied));
    env.wait("AccessDenied", WAIT, |k| {
        cr_reason(k, "demo", "public-ecr").as_deref() == Some("AccessDenied")
    })
    .await;
    show(&env);

    println!("\n4. IAM is fixed: the operator recovers on its next retry");
    env.ecr.set_fault(None);
    env.wait("Ready again", WAIT, |k| cr_ready(k, "demo", "public-ecr"))
        .await;
    show(&env);

    println!("\n5. kubectl delete the resource: Kubernetes garbage-collects the Secret");
    env.k8s
        .delete(CRS, Some("demo"), "public-ecr")
        .await
        .expect("delete");
    env.wait("Secret gone", WAIT, |k| {
        k.get(SECRETS, Some("demo"), "public-ecr").is_none()
    })
    .await;
    println!("   Secret demo/public-ecr: deleted");

    op.stop().await;
    println!(
        "\nDone: {} GetAuthorizationToken calls, {} Secret writes, {} status writes.",
        env.ecr.calls(),
        env.k8s.count("patch", SECRETS),
        env.k8s
            .requests()
            .iter()
            .filter(|r| r.resource == CRS && r.subresource.as_deref() == Some("status"))
            .count()
    );
}

fn fp(secret: &serde_json::Value) -> String {
    // A short, non-reversible fingerprint so the demo can show that the token changed.
    let auth = docker_config(secret)["auths"]["public.ecr.aws"]["auth"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let h = auth.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{:08x}", h >> 32)
}

fn fingerprint(env: &Env) -> String {
    env.k8s
        .get(SECRETS, Some("demo"), "public-ecr")
        .map(|s| fp(&s))
        .unwrap_or_default()
}

/// Whether the CR's status describes the token now in the Secret.
fn status_matches_secret(k: &Kube) -> bool {
    let secret = k.get(SECRETS, Some("demo"), "public-ecr");
    let cr = k.get(CRS, Some("demo"), "public-ecr");
    match (secret, cr) {
        (Some(s), Some(cr)) => {
            s["metadata"]["annotations"]["ecrpublic.pullsecrets.dev/expires-at"]
                == cr["status"]["expiresAt"]
        }
        _ => false,
    }
}

fn show(env: &Env) {
    if let Some(s) = env.k8s.get(SECRETS, Some("demo"), "public-ecr") {
        let registries: Vec<_> = docker_config(&s)["auths"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        println!(
            "   Secret demo/public-ecr: type={} registries={:?} token-fingerprint={} expires-at={}",
            s["type"].as_str().unwrap_or_default(),
            registries,
            fp(&s),
            s["metadata"]["annotations"]["ecrpublic.pullsecrets.dev/expires-at"]
                .as_str()
                .unwrap_or("-"),
        );
    }
    if let Some(cr) = env.k8s.get(CRS, Some("demo"), "public-ecr") {
        let c = &cr["status"]["conditions"][0];
        println!(
            "   EcrPublicPullSecret demo/public-ecr: Ready={} reason={} next-refresh={}\n     message: {}",
            c["status"].as_str().unwrap_or("-"),
            c["reason"].as_str().unwrap_or("-"),
            cr["status"]["nextRefreshTime"].as_str().unwrap_or("-"),
            c["message"].as_str().unwrap_or("-"),
        );
    }
}
