//! The kubelet reads what the operator writes: every Secret shape the operator builds is fed to
//! the kubelet's own credential keyring (`k8s.io/kubernetes/pkg/credentialprovider`, at the
//! version of the control plane the tests pin), which must resolve each written registry's
//! images to user `AWS` and the written password, and nothing else. A Secret whose token was
//! removed (`onExpiry: RemoveAuth`) must resolve to nothing, so the kubelet pulls anonymously.
//!
//! The cases are built here with the operator's code; `tests/cluster/keyring` is the Go test that
//! checks them.

use std::process::Command;

use base64::Engine as _;
use chrono::{Duration, Utc};
use ecr_public_pull_secret_operator::{
    aws::token::Token,
    crd::{OnExpiry, PullSecretSettings, Registry},
    pull_secret::{self, SecretSpec},
};
use harness::control_plane::workspace_root;
use serde_json::{Value, json};

const PASSWORD: &str = "eyJwYXlsb2FkIjoi-keyring-test-password";

const PUBLIC: &str = "public.ecr.aws/nginx/nginx:1.27";
const DUAL_STACK: &str = "ecr-public.aws.com/nginx/nginx:1.27";
/// Registries the operator never writes, including look-alikes of its own hosts.
const OTHERS: [&str; 4] = [
    "docker.io/library/nginx:1.27",
    "public.ecr.aws.example.com/nginx/nginx:1.27",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
    "nginx:1.27",
];

fn token() -> Token {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{PASSWORD}"));
    let now = Utc::now();
    Token::from_response(Some(&auth), Some(now + Duration::hours(12)), now).expect("a valid token")
}

/// One case: the Secret as the operator builds it, and the images it must (not) resolve.
fn case(name: &str, registries: Vec<Registry>, token: Option<&Token>, resolves: &[&str]) -> Value {
    let settings = PullSecretSettings {
        registries,
        on_expiry: OnExpiry::RemoveAuth,
        ..PullSecretSettings::default()
    };
    let spec = SecretSpec {
        name: "public-ecr",
        namespace: "team-a",
        settings: &settings,
        service_account: None,
        owner: None,
        extra_labels: Default::default(),
    };
    let secret = pull_secret::build(&spec, token);
    let unresolved: Vec<&str> = [PUBLIC, DUAL_STACK]
        .into_iter()
        .filter(|i| !resolves.contains(i))
        .chain(OTHERS)
        .collect();
    json!({
        "name": name,
        "secret": secret,
        "password": PASSWORD,
        "resolves": resolves,
        "unresolved": unresolved,
    })
}

#[test]
#[ignore = "needs Go and the control plane's modules: tests/cluster/build.sh, then cargo test -- --ignored real_"]
fn real_kubelet_keyring_resolves_every_secret_shape_the_operator_writes() {
    let token = token();
    let cases = json!([
        case(
            "public",
            vec![Registry::PublicEcrAws],
            Some(&token),
            &[PUBLIC]
        ),
        case(
            "dual-stack",
            vec![Registry::DualStack],
            Some(&token),
            &[DUAL_STACK]
        ),
        case(
            "both",
            vec![Registry::PublicEcrAws, Registry::DualStack],
            Some(&token),
            &[PUBLIC, DUAL_STACK],
        ),
        case(
            "token-removed",
            vec![Registry::PublicEcrAws, Registry::DualStack],
            None,
            &[],
        ),
    ]);
    let file = std::env::temp_dir().join(format!("epps-keyring-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();

    // Go in tests/cluster with the control plane build's environment (its pinned modules).
    let out = Command::new(workspace_root().join("tests/cluster/go"))
        .args(["test", "-count=1", "-v", "./keyring/"])
        .env("KEYRING_CASES", &file)
        .output()
        .expect("go runs (Go 1.24+ on PATH)");
    let _ = std::fs::remove_file(&file);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the kubelet's keyring disagrees:\n{log}"
    );
    // Every case ran: a subtest line per case, none skipped.
    for name in ["public", "dual-stack", "both", "token-removed"] {
        assert!(
            log.contains(&format!(
                "--- PASS: TestTheKubeletsKeyringResolvesWhatTheOperatorWrites/{name}"
            )),
            "{log}"
        );
    }
    assert!(
        !log.contains(PASSWORD),
        "the password reached the test's output"
    );
}
