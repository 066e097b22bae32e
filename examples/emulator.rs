//! Serves the in-repo Kubernetes API emulator on 127.0.0.1 until Ctrl-C and writes a kubeconfig
//! for it, so that `kubectl` (or the e2e tests) can talk to it:
//!
//!     cargo run --example emulator -- /tmp/emulator.kubeconfig
//!     E2E_KUBECONFIG=/tmp/emulator.kubeconfig cargo test --test e2e -- --ignored

use harness::kube_api::ApiServer;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "emulator.kubeconfig".into());
    let server = ApiServer::start().await?;
    // Written whole then renamed: whoever waits for the file never reads half of it.
    let partial = format!("{path}.partial");
    std::fs::write(&partial, server.kubeconfig_yaml("default"))?;
    std::fs::rename(&partial, &path)?;
    println!(
        "serving {} (kubeconfig: {path}); Ctrl-C stops",
        server.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
