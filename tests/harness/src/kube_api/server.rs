//! `ApiServer`: the emulator served over HTTP/1.1 on an ephemeral 127.0.0.1 port.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::emulator::Emulator;
use super::http::{AppState, handle};

pub struct ApiServer {
    addr: SocketAddr,
    emu: Emulator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Binds 127.0.0.1:0 and serves in a background task, with namespaces `default`,
    /// `kube-system` and `kube-public` (and their `default` ServiceAccounts) already present.
    pub async fn start() -> std::io::Result<ApiServer> {
        let emu = Emulator::new();
        for ns in ["default", "kube-system", "kube-public"] {
            emu.create_namespace(ns, &[]);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(AppState {
            emu: emu.clone(),
            addr: addr.to_string(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "kube API emulator stopped with an error");
            }
        });
        Ok(ApiServer {
            addr,
            emu,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server (plain HTTP, a dummy bearer token) with `namespace` as the
    /// current context's namespace.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {url}
users:
- name: emulator
  user:
    token: emulator-token
contexts:
- name: emulator
  context:
    cluster: emulator
    user: emulator
    namespace: {namespace}
current-context: emulator
preferences: {{}}
",
            url = self.url()
        )
    }

    pub fn state(&self) -> Emulator {
        self.emu.clone()
    }

    /// Stops accepting requests, ends open watches and waits (briefly) for the server task.
    pub async fn shutdown(mut self) {
        self.begin_stop();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    fn begin_stop(&mut self) {
        // New requests on kept-alive connections get 503 and watches end, so graceful shutdown
        // has nothing long-lived to wait for.
        self.emu.set_unavailable(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.begin_stop();
    }
}
