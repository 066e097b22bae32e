//! The real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager,
//! built from the Go modules pinned in `tests/cluster/` (`tests/cluster/build.sh`), started as
//! child processes on 127.0.0.1.
//!
//! - kube-apiserver serves TLS with a certificate from a CA made here, authenticates static bearer
//!   tokens (one user per role: the tests' admin, the operator, the controller manager),
//!   authorises with RBAC, signs ServiceAccount tokens (so TokenRequest works) and writes an
//!   audit log, which is the server's own record of every request ([`audit`]).
//! - kube-controller-manager runs the garbage collector, the namespace controller and the
//!   ServiceAccount controller (every namespace gets its `default` ServiceAccount, as on a real
//!   cluster); nothing schedules or runs pods.
//!
//! One control plane per test process ([`ControlPlane::shared`]): the processes are started from
//! a thread that lives as long as the process and are killed by the kernel when it exits
//! (`PR_SET_PDEATHSIG`), also when a test panics or the process is killed.

pub mod audit;
mod certs;
mod process;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use kube::config::{KubeConfigOptions, Kubeconfig};

use process::Children;

/// Every binary the tests need, as `tests/cluster/build.sh` names them.
const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
];

/// How long the control plane may take to become ready (etcd, API server, controllers).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Identities with a static bearer token, all cluster administrators (`system:masters`). The
/// operator has a user of its own so that the audit log tells its requests from the tests'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// What the tests use to set up, read and tear down.
    Admin,
    /// The operator under test (runs with full rights; the chart tests use its ServiceAccount).
    Operator,
}

impl User {
    pub fn name(self) -> &'static str {
        match self {
            User::Admin => "epps-test-admin",
            User::Operator => "epps-operator",
        }
    }
}

/// Work for the thread the shared control plane's processes live with.
type Job = Box<dyn FnOnce() + Send>;

/// Where jobs for that thread go.
static JOBS: OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();

/// The user kube-controller-manager runs as.
pub const CONTROLLER_MANAGER_USER: &str = "epps-kube-controller-manager";

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    url: String,
    ca_pem: String,
    tokens: Vec<(String, String)>,
    children: std::sync::Mutex<Children>,
}

impl ControlPlane {
    /// Where `tests/cluster/build.sh` puts the binaries (`CONTROL_PLANE_BIN` overrides it).
    pub fn bin_dir() -> PathBuf {
        std::env::var_os("CONTROL_PLANE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/cluster/bin"))
    }

    /// The path of one of the built binaries (`kubectl`, `helm`, ...).
    pub fn binary(name: &str) -> PathBuf {
        Self::bin_dir().join(name)
    }

    /// The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, which
    /// `tests/cluster/build.sh` takes from the module pinned in `tests/cluster/monitoring/`, in
    /// `target/cluster/monitoring-crds` (`CONTROL_PLANE_DIR` moves it, as it does for the script).
    /// The error says how to get them.
    pub fn monitoring_crds() -> Result<Vec<PathBuf>, String> {
        let dir = std::env::var_os("CONTROL_PLANE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/cluster"))
            .join("monitoring-crds");
        let files: Vec<PathBuf> = ["servicemonitors", "prometheusrules"]
            .iter()
            .map(|kind| dir.join(format!("monitoring.coreos.com_{kind}.yaml")))
            .collect();
        match files.iter().find(|f| !f.is_file()) {
            None => Ok(files),
            Some(missing) => Err(format!(
                "{} is missing: run tests/cluster/build.sh (it downloads the Prometheus Operator \
                 module pinned in tests/cluster/monitoring/ with the Go module proxy)",
                missing.display()
            )),
        }
    }

    /// Whether every binary is built; the error says how to build them.
    pub fn available() -> Result<(), String> {
        let dir = Self::bin_dir();
        let missing: Vec<_> = BINARIES
            .iter()
            .filter(|b| !dir.join(b).is_file())
            .copied()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the real control plane is not built ({} missing in {}): run tests/cluster/build.sh \
                 (needs Go and the Go module proxy)",
                missing.join(", "),
                dir.display()
            ))
        }
    }

    /// The control plane of this test process, started on first use. Panics with the reason
    /// when it cannot run (binaries missing, a process failing to start).
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            // The processes die with the thread that started them (PR_SET_PDEATHSIG), so start
            // them from one that never ends, rather than from a test's thread; it then runs the
            // jobs that start one of them again ([`ControlPlane::start_again`]).
            let (tx, rx) = std::sync::mpsc::channel();
            let (jobs_tx, jobs) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("control-plane".into())
                .spawn(move || {
                    let _ = tx.send(ControlPlane::start());
                    for job in jobs {
                        job();
                    }
                })
                .map_err(|e| format!("cannot start the control-plane thread: {e}"))?;
            let _ = JOBS.set(std::sync::Mutex::new(jobs_tx));
            rx.recv()
                .map_err(|_| "the control-plane thread ended".to_string())?
        });
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("{e}"),
        }
    }

    /// Stops one process of the shared control plane (`etcd` or `kube-apiserver`): SIGTERM,
    /// then SIGKILL after 10 s. Its flags and data stay for [`ControlPlane::start_again`].
    pub fn stop(&self, binary: &str) -> Result<(), String> {
        let mut children = self.children.lock().map_err(|e| e.to_string())?;
        children.stop(binary)
    }

    /// Starts a stopped process of the shared control plane again, on the same ports with the
    /// same data, from the thread its processes live with; for the API server, waits until it
    /// is ready.
    pub async fn start_again(&'static self, binary: &'static str) -> Result<(), String> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let restarted = match self.children.lock() {
                Ok(mut children) => children.restart(&self.dir, binary),
                Err(e) => Err(e.to_string()),
            };
            let _ = done.send(restarted);
        });
        let jobs = JOBS
            .get()
            .ok_or("only the shared control plane restarts processes")?;
        jobs.lock()
            .map_err(|e| e.to_string())?
            .send(job)
            .map_err(|_| "the control-plane thread ended".to_string())?;
        answer
            .await
            .map_err(|_| "the control-plane thread dropped the job".to_string())??;
        self.wait_ready().await
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager in a fresh directory and waits
    /// until the API server is ready and the controllers run. Blocks; the processes are killed
    /// when the returned value is dropped or the starting thread ends.
    pub fn start() -> Result<ControlPlane, String> {
        Self::available()?;
        let dir = process::fresh_dir()?;
        let started = Instant::now();
        let mut children = Children::default();
        let pki = certs::write(&dir)?;
        let tokens = process::write_tokens(&dir)?;
        let etcd = process::start_etcd(&mut children, &dir)?;
        let url = process::start_apiserver(&mut children, &dir, &etcd)?;
        let mut cp = ControlPlane {
            dir,
            url,
            ca_pem: pki.ca_pem,
            tokens,
            children: std::sync::Mutex::new(children),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        rt.block_on(cp.wait_ready())?;
        // The operator's CRDs before the controllers, as on a cluster where they were installed
        // long ago: the garbage collector learns the resource types at its start and then only
        // every 30 s, so an owner of a type it does not know yet is not followed (its
        // dependents would outlive it for up to half a minute).
        rt.block_on(async {
            let admin = cp.client(User::Admin).await;
            crate::env::apply_crds(&admin).await;
        });
        let kcm_kubeconfig = cp.dir.join("kube-controller-manager.kubeconfig");
        std::fs::write(
            &kcm_kubeconfig,
            cp.kubeconfig_for(CONTROLLER_MANAGER_USER, "default"),
        )
        .map_err(|e| format!("write {}: {e}", kcm_kubeconfig.display()))?;
        let children = cp.children.get_mut().map_err(|e| e.to_string())?;
        process::start_controller_manager(children, &cp.dir, &kcm_kubeconfig)?;
        rt.block_on(cp.wait_controllers())?;
        std::fs::write(cp.kubeconfig_path(), cp.kubeconfig(User::Admin, "default"))
            .map_err(|e| format!("write kubeconfig: {e}"))?;
        eprintln!(
            "control plane ready in {:.1} s at {} (kubeconfig {}, logs and audit log in {})",
            started.elapsed().as_secs_f64(),
            cp.url,
            cp.kubeconfig_path().display(),
            cp.dir.display()
        );
        Ok(cp)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory holding the certificates, logs, audit log and kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An admin kubeconfig written at start, for kubectl, helm or a contributor's shell.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The audit log (JSON lines, RequestReceived and ResponseComplete stages).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Reads the API server's own metrics (`/metrics`, Prometheus text) as the admin.
    pub async fn metrics(&self) -> Result<String, String> {
        let client = self.client(User::Admin).await;
        let req = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        client.request_text(req).await.map_err(|e| e.to_string())
    }

    /// A kubeconfig for one of the static users.
    pub fn kubeconfig(&self, user: User, namespace: &str) -> String {
        self.kubeconfig_for(user.name(), namespace)
    }

    /// A kubeconfig authenticating with a bearer token (e.g. a ServiceAccount's from TokenRequest).
    pub fn kubeconfig_with_token(&self, token: &str, namespace: &str) -> String {
        let ca = base64_encode(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: user
  user:
    token: {token}
contexts:
- name: control-plane
  context:
    cluster: control-plane
    user: user
    namespace: {namespace}
current-context: control-plane
",
            url = self.url
        )
    }

    fn kubeconfig_for(&self, user: &str, namespace: &str) -> String {
        let token = self
            .tokens
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        self.kubeconfig_with_token(token, namespace)
    }

    /// A kube client for one of the static users.
    pub async fn client(&self, user: User) -> kube::Client {
        client_from_yaml(&self.kubeconfig(user, "default"))
            .await
            .expect("a client for the control plane")
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let client = client_from_yaml(&self.kubeconfig_for(User::Admin.name(), "default")).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!(
            "kube-apiserver not ready within {START_TIMEOUT:?} (last answer: {last}); its log: {}",
            self.dir.join("kube-apiserver.log").display()
        ))
    }

    /// The ServiceAccount controller gives `default` its ServiceAccount: proof that the
    /// controller manager is connected and running its controllers.
    async fn wait_controllers(&self) -> Result<(), String> {
        use k8s_openapi::api::core::v1::ServiceAccount;
        let client = self.client(User::Admin).await;
        let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client, "default");
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = sas.get_opt("default").await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!(
            "kube-controller-manager did not create the default ServiceAccount within \
             {START_TIMEOUT:?}; its log: {}",
            self.dir.join("kube-controller-manager.log").display()
        ))
    }
}

/// A kube client from kubeconfig text, without kube's own retries (as the operator builds it).
pub async fn client_from_yaml(yaml: &str) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|e| format!("kubeconfig: {e}"))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("kubeconfig: {e}"))?;
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| format!("kube client: {e}"))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The repository root (this crate lives in `tests/harness`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
