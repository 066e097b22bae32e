//! Running the real binary as a child process, like in a pod. The caller names the binary:
//! cargo tells integration tests where it built it (`env!("CARGO_BIN_EXE_<name>")`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use super::{Env, eventually};

/// A scratch directory for one test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("epps-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin server address a child logged (it binds port 0, so no two processes can race for a
/// port picked in advance).
pub async fn admin_addr(dir: &Path, name: &str) -> SocketAddr {
    let log = dir.join(format!("{name}.log"));
    let mut found = None;
    let read = async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        found = text.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["fields"]["bound"].as_str()?.parse().ok()
        });
        found.is_some()
    };
    assert!(
        eventually(Duration::from_secs(20), read).await,
        "{name} logged its admin address"
    );
    found.expect("address")
}

/// Starts the binary with pod-like environment and static AWS keys; stderr goes to
/// `<dir>/<name>.log`.
pub fn spawn(
    bin: &str,
    env: &Env,
    dir: &Path,
    name: &str,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDBINARY"),
        ("AWS_SECRET_ACCESS_KEY", "binary-secret"),
    ];
    spawn_without_keys(bin, env, dir, name, &[&keys[..], extra].concat())
}

/// Like [`spawn`], but the only AWS credentials are those `extra` configures (IRSA, Pod Identity).
pub fn spawn_without_keys(
    bin: &str,
    env: &Env,
    dir: &Path,
    name: &str,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    spawn_with_kubeconfig(bin, env, &env.kubeconfig_yaml(&env.ns), dir, name, extra)
}

/// Like [`spawn_without_keys`], with the Kubernetes identity `kubeconfig` gives (e.g. a
/// ServiceAccount's token from TokenRequest) instead of the operator's static user. The file is
/// written into `dir`, which the caller removes; its contents are never printed.
pub fn spawn_with_kubeconfig(
    bin: &str,
    env: &Env,
    kubeconfig: &str,
    dir: &Path,
    name: &str,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, kubeconfig).unwrap();
    let kubeconfig = path;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ENDPOINT_URL_ECR_PUBLIC", env.ecr.url())
        .env("AWS_ENDPOINT_URL_ECR", env.ecr.url())
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LOG_FORMAT", "json")
        .env(
            "RUST_LOG",
            "debug,hyper=info,aws_smithy_runtime=info,rustls=info",
        )
        .env("RETRY_BACKOFF_BASE", "200ms")
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("POD_NAME", name)
        .env("POD_NAMESPACE", &env.ns);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(format!("{name}.log"))).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("start binary")
}

pub fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}
