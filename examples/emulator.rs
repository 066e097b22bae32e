//! Serves the in-repo Kubernetes API emulator on 127.0.0.1 until Ctrl-C and writes a kubeconfig
//! for it, so that `kubectl` (or the e2e tests) can talk to it:
//!
//!     cargo run --example emulator -- /tmp/emulator.kubeconfig
//!     E2E_KUBECONFIG=/tmp/emulator.kubeconfig cargo test --test e2e -- --ignored
//!
//! With a second path it also serves the fake ECR Public (12 h tokens, any credentials) and
//! writes its endpoint URL there, for a binary run outside the tests (`.ci/image` runs the one in
//! the container image against both):
//!
//!     cargo run --example emulator -- /tmp/emulator.kubeconfig /tmp/ecr.url
//!     AWS_ENDPOINT_URL_ECR_PUBLIC=$(cat /tmp/ecr.url) ...

use harness::{ecr::FakeEcrPublic, kube_api::ApiServer};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "emulator.kubeconfig".into());
    let ecr_path = args.next();
    let server = ApiServer::start().await?;
    let ecr = match &ecr_path {
        Some(p) => {
            let ecr = FakeEcrPublic::start().await?;
            write_whole(p, &ecr.url())?;
            println!("fake ECR Public at {} ({p})", ecr.url());
            Some(ecr)
        }
        None => None,
    };
    write_whole(&path, &server.kubeconfig_yaml("default"))?;
    println!(
        "serving {} (kubeconfig: {path}); Ctrl-C stops",
        server.url()
    );
    tokio::signal::ctrl_c().await?;
    drop(ecr);
    Ok(())
}

/// Written whole then renamed: whoever waits for the file never reads half of it. The kubeconfig
/// is written last, so once it exists the ECR endpoint file does too.
fn write_whole(path: &str, text: &str) -> std::io::Result<()> {
    let partial = format!("{path}.partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}
