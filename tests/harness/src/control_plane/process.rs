//! Starting the three processes with their flags, and killing them.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use super::{CONTROLLER_MANAGER_USER, ControlPlane, User};

/// The issuer of ServiceAccount tokens (and their default audience), as on most clusters.
pub(super) const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The control plane's processes, each with its flags; killed (and reaped) on drop.
#[derive(Default)]
pub(super) struct Children(Vec<(String, Vec<String>, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        // The controller manager first, etcd last: the API server must not outlive its storage
        // long enough to log a storm of errors.
        for (_, _, child) in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Children {
    /// Starts `binary` with `args`, its output in `<dir>/<binary>.log`. The child is killed when
    /// the thread that started it ends (for [`ControlPlane::shared`], when the process ends).
    fn spawn(&mut self, dir: &Path, binary: &str, args: &[String]) -> Result<(), String> {
        let child = Self::launch(dir, binary, args)?;
        self.0.push((binary.to_string(), args.to_vec(), child));
        Ok(())
    }

    /// Stops `binary` (SIGTERM, SIGKILL after 10 s) and reaps it; it keeps its place and flags.
    pub(super) fn stop(&mut self, binary: &str) -> Result<(), String> {
        let (_, _, child) = self.find(binary)?;
        // SAFETY: kill(2) with a pid this process spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts a stopped `binary` again with its flags (same ports, same data); its log goes on.
    pub(super) fn restart(&mut self, dir: &Path, binary: &str) -> Result<(), String> {
        let (_, args, child) = self.find(binary)?;
        if child.try_wait().map_err(|e| e.to_string())?.is_none() {
            return Err(format!("{binary} is running"));
        }
        *child = Self::launch(dir, binary, &args.clone())?;
        Ok(())
    }

    fn find(&mut self, binary: &str) -> Result<&mut (String, Vec<String>, Child), String> {
        let found = self.0.iter_mut().find(|(name, _, _)| name == binary);
        found.ok_or_else(|| format!("no {binary} in this control plane"))
    }

    fn launch(dir: &Path, binary: &str, args: &[String]) -> Result<Child, String> {
        let log_path = dir.join(format!("{binary}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(ControlPlane::binary(binary));
        cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(err);
        // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
        // Without this, a test process that dies (panic=abort, SIGKILL, Ctrl-C) would leave
        // etcd and the API server running.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn()
            .map_err(|e| format!("cannot start {binary}: {e}"))
    }

    /// Fails when one of the processes has exited (a bad flag, a port taken).
    fn check_running(&mut self, dir: &Path) -> Result<(), String> {
        for (name, _, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{name} exited ({status}); its log: {}",
                    dir.join(format!("{name}.log")).display()
                ));
            }
        }
        Ok(())
    }
}

/// A new directory for one control plane under the system temp dir, after removing those of
/// processes that are gone (a killed test process cannot clean up after itself).
pub(super) fn fresh_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir().join("epps-control-plane");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A port free right now on 127.0.0.1. Another process could take it before the server binds
/// it; the server then exits and [`Children::check_running`] says so.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The static token file: a random token per user, all in `system:masters`.
pub(super) fn write_tokens(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let users = [
        User::Admin.name(),
        User::Operator.name(),
        CONTROLLER_MANAGER_USER,
    ];
    let tokens: Vec<(String, String)> = users
        .iter()
        .map(|u| {
            let token: String = (0..32).map(|_| fastrand::alphanumeric()).collect();
            (u.to_string(), token)
        })
        .collect();
    let csv: String = tokens
        .iter()
        .map(|(user, token)| format!("{token},{user},{user},\"system:masters\"\n"))
        .collect();
    let path = dir.join("tokens.csv");
    std::fs::write(&path, csv).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(tokens)
}

/// Starts etcd; returns its client URL.
pub(super) fn start_etcd(children: &mut Children, dir: &Path) -> Result<String, String> {
    let client = format!("http://127.0.0.1:{}", free_port()?);
    let peer = format!("http://127.0.0.1:{}", free_port()?);
    let data = dir.join("etcd");
    let args = [
        "--name=test".to_string(),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=test={peer}"),
        // A test cluster's data is thrown away: no fsync makes every write ~10x faster.
        "--unsafe-no-fsync=true".to_string(),
        "--log-level=warn".to_string(),
    ];
    children.spawn(dir, "etcd", &args)?;
    Ok(client)
}

/// Every request at Metadata level, logged when it arrives (RequestReceived: written before
/// the request can have any effect, so a change a test has seen is always in the log) and when
/// it completes (ResponseComplete: the status code).
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted]
rules:
- level: Metadata
";

/// Starts kube-apiserver; returns its URL.
pub(super) fn start_apiserver(
    children: &mut Children,
    dir: &Path,
    etcd: &str,
) -> Result<String, String> {
    let port = free_port()?;
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).map_err(|e| e.to_string())?;
    let path = |name: &str| dir.join(name).display().to_string();
    let args = [
        format!("--etcd-servers={etcd}"),
        "--bind-address=127.0.0.1".to_string(),
        "--advertise-address=127.0.0.1".to_string(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", path("apiserver-certs")),
        format!("--tls-cert-file={}", path("serving.crt")),
        format!("--tls-private-key-file={}", path("serving.key")),
        format!("--token-auth-file={}", path("tokens.csv")),
        "--authorization-mode=RBAC".to_string(),
        format!("--service-account-issuer={SA_ISSUER}"),
        format!("--service-account-key-file={}", path("sa.pub")),
        format!("--service-account-signing-key-file={}", path("sa.key")),
        "--service-cluster-ip-range=10.96.0.0/16".to_string(),
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", path("audit.log")),
        "--audit-log-format=json".to_string(),
        // Written in the request's own goroutine: RequestReceived is on disk before the
        // request is served.
        "--audit-log-mode=blocking".to_string(),
        // Never rotated: 0 means lumberjack's default of 100 MB, which a 10,000-resource bench
        // run passes (its first requests would go missing from the log the counts come from).
        "--audit-log-maxsize=1000000".to_string(),
        "--profiling=false".to_string(),
        "--v=1".to_string(),
    ];
    children.spawn(dir, "kube-apiserver", &args)?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    children.check_running(dir)?;
    Ok(format!("https://127.0.0.1:{port}"))
}

/// Starts kube-controller-manager with the controllers a cluster without nodes needs.
pub(super) fn start_controller_manager(
    children: &mut Children,
    dir: &Path,
    kubeconfig: &Path,
) -> Result<(), String> {
    let args = [
        format!("--kubeconfig={}", kubeconfig.display()),
        "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller"
            .to_string(),
        "--leader-elect=false".to_string(),
        "--bind-address=127.0.0.1".to_string(),
        // No serving port: nothing scrapes or probes it here.
        "--secure-port=0".to_string(),
        "--v=1".to_string(),
    ];
    children.spawn(dir, "kube-controller-manager", &args)?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    children.check_running(dir)
}
