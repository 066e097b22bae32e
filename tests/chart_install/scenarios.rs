//! The operator binary run out of cluster, on 127.0.0.1, as the ServiceAccount a Helm release
//! created, with the environment the release's Deployment gives its container; and the
//! scenarios that use each permission the chart grants. Every scenario starts its own operator
//! process(es) and names its objects after the run, and what it created is removed afterwards,
//! so a run sees nothing of an earlier one.

use std::{sync::Mutex, time::Duration};

use harness::{
    control_plane::audit,
    env::{process::*, *},
    kube_api::RequestRecord,
    sts::Sts,
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::{TokenRequest, TokenRequestSpec},
    coordination::v1::Lease,
    core::v1::{Namespace, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::helm::{Release, kubectl_as};

/// The operator binary cargo built for this test run.
const BIN: &str = env!("CARGO_BIN_EXE_ecr-public-pull-secret-operator");

/// How long one step of a scenario may take. A 403 ends the wait at once.
const STEP: Duration = Duration::from_secs(20);

/// ECR Public's token lifetime, which every scenario but the rotating one uses.
const ECR_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Label on the namespaces the cluster-kind scenario selects.
const PICK: &str = "e2e.ecrpublic.pullsecrets.dev/pick";
const OWNER: &str = "ecrpublic.pullsecrets.dev/cluster-owner";
const SAS: &str = "serviceaccounts";
const LEASES: &str = "leases.coordination.k8s.io";
/// The role a tenant's ServiceAccount names; it matches `identity.allowedRoleArns` of the values
/// sets that turn `identity.serviceAccountTokens` on.
pub const TENANT_ROLE: &str = "arn:aws:iam::123456789012:role/ecr-public-tenant";

/// What the operator does with one part of its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A resource gets its Secret (read from the API first, then written with server-side
    /// apply), a Ready status and a `Written` Event.
    Write,
    /// The token is rotated, two spec edits rewrite the Secret (the second `Updated` Event
    /// patches the first one's series), and the resource is deleted.
    Maintain,
    /// Only with `watchNamespace`: a resource in another namespace is left alone, and the
    /// ServiceAccount can neither read nor write Secrets there.
    Isolation,
    /// `spec.serviceAccounts`: the Secret is added to a ServiceAccount's `imagePullSecrets`
    /// next to a hand-made entry, and taken out when the resource goes.
    PatchServiceAccounts,
    /// `spec.serviceAccountName`: a TokenRequest for a tenant's ServiceAccount, exchanged with
    /// STS for the role it is annotated with.
    TenantToken,
    /// A ClusterEcrPublicPullSecret writes its Secret into the namespaces its selector picks,
    /// deletes it from one that leaves the selection, and (its finalizer) from all when deleted.
    ClusterKind,
    /// Two processes: one leads and reconciles, and hands over when it is stopped.
    LeaderElection,
    /// Two processes: the leader is SIGKILLed while its rotation's ECR call is in flight; the
    /// standby takes the Lease once it expires and finishes the rotation, with one ECR call and
    /// one write for it.
    LeaderFailover,
}

/// A release as the operator sees it: its ServiceAccount, a token for it, and its container's
/// environment.
pub struct Install {
    pub sa_ns: String,
    pub sa: String,
    /// The container's `env` with values (POD_NAME and POD_NAMESPACE come from the pod).
    pub env: Vec<(String, String)>,
    /// A kubeconfig holding a TokenRequest token of the ServiceAccount; never printed.
    kubeconfig: String,
    pub watch_ns: Option<String>,
    pub lease: Option<String>,
    pub patches_service_accounts: bool,
    sts: Sts,
    dir: Scratch,
    runs: Mutex<u32>,
}

impl Install {
    /// Reads the release's Deployment from the API server and requests a token for its
    /// ServiceAccount (one hour, the API server's own audience, as a pod's projected token).
    pub async fn read(env: &Env, release: &Release) -> Install {
        let admin = env.admin_client();
        let manifest = release.manifest().await;
        let deployment = manifest
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("the release has a Deployment");
        let name = deployment["metadata"]["name"].as_str().expect("name");
        let live = Api::<Deployment>::namespaced(admin.clone(), &release.ns)
            .get(name)
            .await
            .expect("the Deployment is on the server");
        let pod = live.spec.expect("spec").template.spec.expect("pod spec");
        let sa = pod.service_account_name.expect("serviceAccountName");
        let env_vars: Vec<(String, String)> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        let value = |k: &str| {
            env_vars
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let cp = env.control_plane().expect("a real API server");
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let token = Api::<ServiceAccount>::namespaced(admin, &release.ns)
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .expect("TokenRequest for the release's ServiceAccount")
            .status
            .expect("token")
            .token;
        let dir = Scratch::new(&format!("chart-{}", release.ns));
        Install {
            sa_ns: release.ns.clone(),
            watch_ns: value("WATCH_NAMESPACE"),
            lease: (value("LEADER_ELECTION").as_deref() == Some("true"))
                .then(|| value("LEASE_NAME").expect("LEASE_NAME")),
            patches_service_accounts: value("PATCH_SERVICE_ACCOUNTS").as_deref() == Some("true"),
            kubeconfig: cp.kubeconfig_with_token(&token, &release.ns),
            sa,
            env: env_vars,
            sts: Sts::standalone(Duration::from_secs(3600))
                .await
                .expect("start the in-repo STS"),
            dir,
            runs: Mutex::new(0),
        }
    }

    /// The user the API server sees: `system:serviceaccount:<namespace>:<name>`.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.sa_ns, self.sa)
    }

    pub fn service_account(&self) -> (&str, &str) {
        (&self.sa_ns, &self.sa)
    }

    /// A file with the ServiceAccount's kubeconfig, for kubectl.
    pub fn kubeconfig_file(&self) -> std::path::PathBuf {
        let path = self.dir.0.join("service-account.kubeconfig");
        std::fs::write(&path, &self.kubeconfig).expect("write kubeconfig");
        path
    }
}

/// What one run of a scenario did: its result and the ServiceAccount's requests.
pub struct Outcome {
    pub scenario: Scenario,
    pub result: Result<(), String>,
    pub requests: Vec<RequestRecord>,
}

impl Outcome {
    pub fn denied(&self) -> Vec<&RequestRecord> {
        self.requests.iter().filter(|r| r.code == 403).collect()
    }
}

pub fn describe(r: &RequestRecord) -> String {
    let sub = r
        .subresource
        .as_deref()
        .map(|s| format!("/{s}"))
        .unwrap_or_default();
    format!(
        "{} {}{sub} {}/{} -> {}",
        r.verb,
        r.resource,
        r.namespace.as_deref().unwrap_or("-"),
        r.name.as_deref().unwrap_or("-"),
        r.code
    )
}

/// One run: the operator process(es), the namespace the scenario's namespaced objects go in, and
/// what to remove afterwards.
struct Run<'a> {
    env: &'a Env,
    install: &'a Install,
    admin: Client,
    id: String,
    ns: String,
    audit_from: u64,
    processes: Mutex<Vec<(String, tokio::process::Child)>>,
    namespaces: Mutex<Vec<String>>,
    cleanup: Mutex<Vec<(&'static str, Option<String>, String)>>,
}

/// Runs one scenario as the release's ServiceAccount and removes what it created.
pub async fn run(env: &Env, install: &Install, scenario: Scenario) -> Outcome {
    run_and_keep(env, install, scenario, false).await.0
}

/// Like [`run`]; with `keep`, what the scenario created stays and is returned as
/// (resource, namespace, name).
pub async fn run_and_keep(
    env: &Env,
    install: &Install,
    scenario: Scenario,
    keep: bool,
) -> (Outcome, Vec<(&'static str, Option<String>, String)>) {
    let n = {
        let mut runs = install.runs.lock().unwrap();
        *runs += 1;
        *runs
    };
    let cp = env.control_plane().expect("a real API server");
    let started = std::time::Instant::now();
    let mut run = Run {
        env,
        install,
        admin: env.admin_client(),
        id: format!("{n}{:04x}", fastrand::u16(..)),
        ns: String::new(),
        audit_from: std::fs::metadata(cp.audit_log()).map_or(0, |m| m.len()),
        processes: Mutex::new(Vec::new()),
        namespaces: Mutex::new(Vec::new()),
        cleanup: Mutex::new(Vec::new()),
    };
    run.ns = match &install.watch_ns {
        Some(ns) => ns.clone(),
        None => run.namespace("n", &[]).await,
    };
    let two = [Scenario::LeaderElection, Scenario::LeaderFailover];
    let names: &[&str] = if two.contains(&scenario) {
        &["a", "b"]
    } else {
        &["op"]
    };
    for name in names {
        run.start(name);
    }
    let mut result = match scenario {
        Scenario::Write => write(&run).await,
        Scenario::Maintain => maintain(&run).await,
        Scenario::Isolation => isolation(&run).await,
        Scenario::PatchServiceAccounts => patch_service_accounts(&run).await,
        Scenario::TenantToken => tenant_token(&run).await,
        Scenario::ClusterKind => cluster_kind(&run).await,
        Scenario::LeaderElection => leader_election(&run).await,
        Scenario::LeaderFailover => leader_failover(&run).await,
    };
    // A run that succeeded must end gracefully; one that failed (a grant taken away) is killed:
    // how the operator stops without a permission is tests/faults.rs's concern, and a cache that
    // never synced costs its shutdown grace period.
    if result.is_ok() {
        result = run.stop_all().await;
    } else {
        run.kill_all().await;
    }
    if let Err(e) = &mut result {
        e.push_str(&run.log_tail());
    }
    let kept = if keep {
        run.namespaces.lock().unwrap().clear();
        run.cleanup.lock().unwrap().drain(..).collect()
    } else {
        run.remove_objects().await;
        Vec::new()
    };
    let (records, _) = audit::read(&cp.audit_log(), run.audit_from);
    let user = install.user();
    let requests: Vec<RequestRecord> = records
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(user.as_str()))
        .collect();
    let denied: Vec<String> = requests
        .iter()
        .filter(|r| r.code == 403)
        .map(describe)
        .collect();
    if result.is_ok() && !denied.is_empty() {
        result = Err(format!("refused with 403: {}", denied.join("; ")));
    }
    eprintln!(
        "{scenario:?} run {n} as {user}: {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        match &result {
            Ok(()) => "succeeded",
            Err(_) => "failed",
        }
    );
    let outcome = Outcome {
        scenario,
        result,
        requests,
    };
    (outcome, kept)
}

impl Run<'_> {
    fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.id)
    }

    /// A fresh namespace for this run, deleted afterwards.
    async fn namespace(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        let ns = format!("{prefix}-{}", self.id);
        self.env.create_namespace(&ns, labels).await;
        self.namespaces.lock().unwrap().push(ns.clone());
        ns
    }

    fn forget_later(&self, resource: &'static str, ns: Option<&str>, name: &str) {
        self.cleanup
            .lock()
            .unwrap()
            .push((resource, ns.map(str::to_owned), name.to_owned()));
    }

    async fn create(&self, resource: &'static str, ns: Option<&str>, obj: Value) {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.env
            .k8s
            .create(resource, ns, obj)
            .await
            .unwrap_or_else(|e| panic!("create {resource} {name}: {e}"));
        self.forget_later(resource, ns, &name);
    }

    /// Deletes an object as a user would (what it created is then removed by the cleanup too).
    async fn delete(&self, resource: &str, ns: Option<&str>, name: &str) -> Result<(), String> {
        self.env
            .k8s
            .delete(resource, ns, name)
            .await
            .map_err(|e| format!("delete {resource} {name}: {e}"))
    }

    async fn create_cr(&self, ns: &str, name: &str, spec: Value) {
        self.env.create_cr(ns, name, spec).await;
        self.forget_later(CRS, Some(ns), name);
    }

    /// A ServiceAccount with these annotations and `imagePullSecrets`.
    async fn create_service_account(&self, ns: &str, name: &str, annotations: Value, pulls: Value) {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
                        "imagePullSecrets": pulls});
        self.create(SAS, Some(ns), sa).await;
    }

    /// Starts the binary as the ServiceAccount, with the release's environment. Only where the
    /// admin server listens (a free port on 127.0.0.1) and how it logs differ from the pod;
    /// POD_NAME is the process's name; the Lease is held for 3 s instead of the chart's 15 s so
    /// a hand-over takes seconds (the permissions do not depend on it).
    fn start(&self, name: &str) {
        let process = format!("{}-{}", self.id, name);
        let mut vars: Vec<(&str, &str)> = self
            .install
            .env
            .iter()
            .filter(|(k, _)| !["HTTP_ADDR", "LOG_FORMAT", "RUST_LOG"].contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sts = self.install.sts.url();
        vars.extend([
            ("AWS_ACCESS_KEY_ID", "AKIDCHART"),
            ("AWS_SECRET_ACCESS_KEY", "chart-secret"),
            ("AWS_ENDPOINT_URL_STS", sts.as_str()),
            ("POD_NAMESPACE", self.install.sa_ns.as_str()),
            ("LEASE_DURATION", "3s"),
        ]);
        let child = spawn_with_kubeconfig(
            BIN,
            self.env,
            &self.install.kubeconfig,
            &self.install.dir.0,
            &process,
            &vars,
        );
        self.processes.lock().unwrap().push((process, child));
    }

    /// SIGTERM to one process; it must exit 0 within 20 s.
    async fn stop(&self, name: &str) -> Result<(), String> {
        let process = format!("{}-{}", self.id, name);
        let child = {
            let mut all = self.processes.lock().unwrap();
            let i = all.iter().position(|(n, _)| *n == process);
            i.map(|i| all.remove(i).1)
        };
        match child {
            Some(child) => terminate(&process, child).await,
            None => Ok(()),
        }
    }

    /// SIGKILL to one process: no shutdown, no Lease released.
    async fn kill(&self, name: &str) {
        let process = format!("{}-{}", self.id, name);
        let child = {
            let mut all = self.processes.lock().unwrap();
            let i = all.iter().position(|(n, _)| *n == process);
            i.map(|i| all.remove(i).1)
        };
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
    }

    async fn kill_all(&self) {
        let all: Vec<_> = self.processes.lock().unwrap().drain(..).collect();
        for (_, mut child) in all {
            let _ = child.kill().await;
        }
    }

    async fn stop_all(&self) -> Result<(), String> {
        let all: Vec<_> = self.processes.lock().unwrap().drain(..).collect();
        let mut result = Ok(());
        for (name, child) in all {
            let stopped = terminate(&name, child).await;
            if result.is_ok() {
                result = stopped;
            }
        }
        result
    }

    /// The warnings and errors the run's processes logged, for a failure message.
    fn log_tail(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(&self.install.dir.0) else {
            return out;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if !(file.starts_with(&format!("{}-", self.id)) && file.ends_with(".log")) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
                .collect();
            let start = lines.len().saturating_sub(8);
            out.push_str(&format!("\n--- {file} (warnings and errors, last 8)\n"));
            out.push_str(&lines[start..].join("\n"));
        }
        out
    }

    /// A 403 answered to the ServiceAccount since the run started, if any.
    fn refused(&self) -> Option<String> {
        let cp = self.env.control_plane()?;
        let (records, _) = audit::read(&cp.audit_log(), self.audit_from);
        let user = self.install.user();
        records
            .iter()
            .find(|r| r.code == 403 && r.user.as_deref() == Some(user.as_str()))
            .map(|r| format!("refused with 403: {}", describe(r)))
    }

    /// Waits for `cond` on the server's objects; fails at once when the ServiceAccount is
    /// refused anything, or when an operator process has exited.
    async fn until(&self, what: &str, cond: impl Fn(&Kube) -> bool) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if self
                .env
                .k8s
                .wait_until(Duration::from_millis(200), &cond)
                .await
            {
                return Ok(());
            }
            if let Some(refused) = self.refused() {
                return Err(format!("while waiting for {what}: {refused}"));
            }
            for (name, child) in self.processes.lock().unwrap().iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "while waiting for {what}: {name} exited ({status})"
                    ));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("timed out after {STEP:?} waiting for {what}"));
            }
        }
    }

    /// Removes what the run created, as the admin: cluster resources (their finalizer first,
    /// whose operator is stopped), resources, ServiceAccounts, the Lease, the namespaces. Waits
    /// until the resources are gone, so the next run's operator cannot see them.
    async fn remove_objects(&self) {
        let objects: Vec<_> = self.cleanup.lock().unwrap().drain(..).collect();
        for (resource, ns, name) in &objects {
            if *resource == CLUSTER_CRS {
                let api =
                    Api::<ecr_public_pull_secret_operator::crd::ClusterEcrPublicPullSecret>::all(
                        self.admin.clone(),
                    );
                let unblock = Patch::Merge(json!({"metadata": {"finalizers": null}}));
                let _ = api.patch(name, &PatchParams::default(), &unblock).await;
            }
            let _ = self.env.k8s.delete(resource, ns.as_deref(), name).await;
        }
        if let Some(lease) = &self.install.lease {
            let _ = Api::<Lease>::namespaced(self.admin.clone(), &self.install.sa_ns)
                .delete(lease, &DeleteParams::background())
                .await;
        }
        let gone = |k: &Kube| {
            objects
                .iter()
                .all(|(r, ns, name)| k.get(r, ns.as_deref(), name).is_none())
        };
        assert!(
            self.env.k8s.wait_until(STEP, gone).await,
            "the run's objects were not removed"
        );
        let namespaces = Api::<Namespace>::all(self.admin.clone());
        let created: Vec<String> = self.namespaces.lock().unwrap().drain(..).collect();
        for ns in created {
            let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
        }
    }
}

async fn terminate(name: &str, mut child: tokio::process::Child) -> Result<(), String> {
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!("{name} had exited ({status})"));
    }
    signal(&child, "-TERM");
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{name} exited with {status} on SIGTERM")),
        Ok(Err(e)) => Err(format!("{name}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("{name} did not exit within 20 s of SIGTERM"))
        }
    }
}

fn secret_type(k: &Kube, ns: &str, name: &str) -> Option<String> {
    k.get(SECRETS, Some(ns), name)
        .and_then(|s| s["type"].as_str().map(str::to_owned))
}

fn auth(k: &Kube, ns: &str, name: &str) -> Option<Value> {
    k.get(SECRETS, Some(ns), name)
        .map(|s| docker_config(&s)["auths"]["public.ecr.aws"]["auth"].clone())
}

/// The Event about a namespaced resource with this reason.
fn event(k: &Kube, ns: &str, name: &str, reason: &str) -> Option<Value> {
    k.list(EVENTS, Some(ns))
        .into_iter()
        .find(|e| e["regarding"]["name"] == name && e["reason"] == reason)
}

fn pulls(k: &Kube, ns: &str, sa: &str) -> Vec<String> {
    k.get(SAS, Some(ns), sa)
        .and_then(|s| s["imagePullSecrets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn write(run: &Run<'_>) -> Result<(), String> {
    let (ns, name) = (run.ns.as_str(), run.name("w"));
    run.env.ecr.set_token_lifetime(ECR_TOKEN_LIFETIME);
    run.create_cr(ns, &name, json!({})).await;
    run.until("the resource Ready with its Secret", |k| {
        cr_ready(k, ns, &name)
            && secret_type(k, ns, &name).as_deref() == Some("kubernetes.io/dockerconfigjson")
    })
    .await?;
    run.until("a Written Event", |k| {
        event(k, ns, &name, "Written").is_some()
    })
    .await
}

async fn maintain(run: &Run<'_>) -> Result<(), String> {
    let (ns, name) = (run.ns.as_str(), run.name("m"));
    // Tokens of 6 s refreshed 4 s before expiry: a rotation every 2 s.
    run.env.ecr.set_token_lifetime(Duration::from_secs(6));
    run.create_cr(
        ns,
        &name,
        json!({"refreshBefore": "4s", "secretTemplate": {"labels": {"edit": "0"}}}),
    )
    .await;
    run.until("the resource Ready", |k| cr_ready(k, ns, &name))
        .await?;
    let first = auth(&run.env.k8s, ns, &name);
    run.until("a rotated token", |k| auth(k, ns, &name) != first)
        .await?;
    let crs = Api::<ecr_public_pull_secret_operator::crd::EcrPublicPullSecret>::namespaced(
        run.admin.clone(),
        ns,
    );
    for edit in ["1", "2"] {
        let patch = json!({"spec": {"secretTemplate": {"labels": {"edit": edit}}}});
        crs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("edit the resource: {e}"))?;
        run.until(&format!("the Secret rewritten for edit {edit}"), |k| {
            k.get(SECRETS, Some(ns), &name)
                .is_some_and(|s| s["metadata"]["labels"]["edit"] == edit)
        })
        .await?;
    }
    // The second `Updated` is the same Event again: kube-runtime's recorder patches its series.
    run.until("the Updated Event counted twice", |k| {
        event(k, ns, &name, "Updated")
            .is_some_and(|e| e["series"]["count"].as_u64().unwrap_or(1) >= 2)
    })
    .await?;
    run.delete(CRS, Some(ns), &name).await
}

async fn isolation(run: &Run<'_>) -> Result<(), String> {
    let watched = run.ns.as_str();
    let other = run.namespace("o", &[]).await;
    let (here, there) = (run.name("here"), run.name("there"));
    run.create_cr(&other, &there, json!({})).await;
    run.create_cr(watched, &here, json!({})).await;
    run.until("the watched namespace's resource Ready", |k| {
        cr_ready(k, watched, &here)
    })
    .await?;
    let k = &run.env.k8s;
    let status = k
        .get(CRS, Some(&other), &there)
        .map(|cr| cr["status"].clone());
    if status.as_ref().is_some_and(|s| !s.is_null()) {
        return Err(format!("the resource in {other} got a status: {status:?}"));
    }
    if !k.list(SECRETS, Some(&other)).is_empty() {
        return Err(format!("a Secret was written in {other}"));
    }
    // The server's record: no request of the operator reached the other namespace, or any
    // namespace but its own two (the watched one, and the release's for the Lease).
    let cp = run.env.control_plane().expect("real");
    let (records, _) = audit::read(&cp.audit_log(), run.audit_from);
    let user = run.install.user();
    let elsewhere: Vec<String> = records
        .iter()
        .filter(|r| r.user.as_deref() == Some(user.as_str()))
        .filter(|r| {
            r.namespace.as_deref() != Some(watched)
                && r.namespace.as_deref() != Some(run.install.sa_ns.as_str())
        })
        .map(describe)
        .collect();
    if !elsewhere.is_empty() {
        return Err(format!(
            "requests outside the watched namespace: {}",
            elsewhere.join("; ")
        ));
    }
    // What a user would ask: may this ServiceAccount touch Secrets over there? (kubectl asks
    // the authorizer with a SelfSubjectAccessReview, which everyone may create.)
    let kubeconfig = run.install.kubeconfig_file();
    // `kubectl auth can-i` prints yes or no, and exits 1 for no.
    let can_i = async |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let question = format!("`kubectl {}`", all.join(" "));
        match kubectl_as(&kubeconfig, &all).await {
            Ok(out) if out.trim() == "yes" => Ok(true),
            Err(e) if e.trim_end().ends_with("\nno") => Ok(false),
            Ok(out) => Err(format!("{question}: {out}")),
            Err(e) => Err(format!("{question}: {e}")),
        }
    };
    if !can_i(&["patch", "secrets", "-n", watched]).await? {
        return Err(format!(
            "the ServiceAccount may not patch Secrets in {watched}"
        ));
    }
    let elsewhere = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ]
    .map(|verb| vec![verb, "secrets", "-n", other.as_str()])
    .into_iter()
    .chain(["list", "watch"].map(|verb| vec![verb, "secrets", "--all-namespaces"]));
    for question in elsewhere {
        if can_i(&question).await? {
            return Err(format!("the ServiceAccount may {}", question.join(" ")));
        }
    }
    Ok(())
}

async fn patch_service_accounts(run: &Run<'_>) -> Result<(), String> {
    let (ns, name, sa) = (run.ns.as_str(), run.name("p"), run.name("builder"));
    run.env.ecr.set_token_lifetime(ECR_TOKEN_LIFETIME);
    run.create_service_account(ns, &sa, json!({}), json!([{"name": "hand-made"}]))
        .await;
    run.create_cr(ns, &name, json!({"serviceAccounts": [sa]}))
        .await;
    run.until("the Secret added to the ServiceAccount", |k| {
        pulls(k, ns, &sa) == ["hand-made".to_string(), name.clone()]
    })
    .await?;
    run.delete(CRS, Some(ns), &name).await?;
    run.until("the entry taken out again, the hand-made one kept", |k| {
        pulls(k, ns, &sa) == ["hand-made".to_string()]
    })
    .await
}

async fn tenant_token(run: &Run<'_>) -> Result<(), String> {
    let (ns, name, sa) = (run.ns.as_str(), run.name("t"), run.name("puller"));
    run.env.ecr.set_token_lifetime(ECR_TOKEN_LIFETIME);
    let exchanges = || {
        let calls = run.install.sts.assume_role_calls();
        calls.get(TENANT_ROLE).copied().unwrap_or(0)
    };
    let tenant_calls = || {
        let calls = run.env.ecr.calls_by_access_key();
        calls
            .iter()
            .filter(|(key, _)| key.starts_with("ASIAFAKE"))
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    let before = (exchanges(), tenant_calls());
    let role = json!({"eks.amazonaws.com/role-arn": TENANT_ROLE});
    run.create_service_account(ns, &sa, role, json!([])).await;
    run.create_cr(ns, &name, json!({"serviceAccountName": sa}))
        .await;
    run.until("the tenant's resource Ready", |k| cr_ready(k, ns, &name))
        .await?;
    if exchanges() <= before.0 {
        return Err("the tenant's token was not exchanged for its role".into());
    }
    if tenant_calls() <= before.1 {
        return Err("ECR Public was not called with the tenant role's credentials".into());
    }
    Ok(())
}

async fn cluster_kind(run: &Run<'_>) -> Result<(), String> {
    run.env.ecr.set_token_lifetime(ECR_TOKEN_LIFETIME);
    let pick = run.id.clone();
    let a = run.namespace("ca", &[(PICK, &pick)]).await;
    let b = run.namespace("cb", &[(PICK, &pick)]).await;
    let c = run.namespace("cc", &[]).await;
    let (name, sa) = (run.name("c"), run.name("builder"));
    let patching = run.install.patches_service_accounts;
    let mut spec = json!({"namespaceSelector": {"matchLabels": {PICK: pick}}});
    if patching {
        for ns in [&a, &b] {
            run.create_service_account(ns, &sa, json!({}), json!([]))
                .await;
        }
        spec["serviceAccounts"] = json!([sa]);
    }
    run.create(
        CLUSTER_CRS,
        None,
        json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
               "kind": "ClusterEcrPublicPullSecret",
               "metadata": {"name": name}, "spec": spec}),
    )
    .await;
    let owned = |k: &Kube, ns: &str| {
        k.get(SECRETS, Some(ns), &name)
            .is_some_and(|s| s["metadata"]["labels"][OWNER].is_string())
    };
    run.until("Secrets in both selected namespaces, Ready", |k| {
        owned(k, &a)
            && owned(k, &b)
            && k.get(CLUSTER_CRS, None, &name)
                .and_then(|cr| ready(&cr))
                .is_some_and(|(s, _)| s == "True")
    })
    .await?;
    if patching {
        run.until("the Secret added to both ServiceAccounts", |k| {
            [&a, &b]
                .iter()
                .all(|ns| pulls(k, ns, &sa) == [name.clone()])
        })
        .await?;
    }
    let namespaces = Api::<Namespace>::all(run.admin.clone());
    let unpick = json!({"metadata": {"labels": {PICK: null}}});
    namespaces
        .patch(&b, &PatchParams::default(), &Patch::Merge(&unpick))
        .await
        .map_err(|e| format!("relabel {b}: {e}"))?;
    run.until("the Secret deleted from the namespace that left", |k| {
        k.get(SECRETS, Some(&b), &name).is_none()
    })
    .await?;
    run.delete(CLUSTER_CRS, None, &name).await?;
    run.until(
        "the finalizer deleting the last Secret, then the resource gone",
        |k| k.get(SECRETS, Some(&a), &name).is_none() && k.get(CLUSTER_CRS, None, &name).is_none(),
    )
    .await?;
    if patching {
        run.until("the ServiceAccount entry removed", |k| {
            pulls(k, &a, &sa).is_empty()
        })
        .await?;
    }
    if run.env.k8s.get(SECRETS, Some(&c), &name).is_some() {
        return Err(format!(
            "a Secret was written in {c}, which the selector does not pick"
        ));
    }
    Ok(())
}

/// The Lease holder's identity (`<run>-a` or `<run>-b`), if any.
fn lease_holder(run: &Run<'_>, k: &Kube) -> Option<String> {
    let lease = run.install.lease.as_deref()?;
    k.get(LEASES, Some(&run.install.sa_ns), lease)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
}

/// Patches of the Secret `name` by the release's ServiceAccount since the run started.
fn secret_writes(run: &Run<'_>, name: &str) -> usize {
    let cp = run.env.control_plane().expect("a real API server");
    let (records, _) = audit::read(&cp.audit_log(), run.audit_from);
    let user = run.install.user();
    let writes = records.iter().filter(|r| {
        r.user.as_deref() == Some(user.as_str())
            && r.resource == SECRETS
            && r.name.as_deref() == Some(name)
            && r.verb == "patch"
            && (200..300).contains(&r.code)
    });
    writes.count()
}

async fn leader_failover(run: &Run<'_>) -> Result<(), String> {
    let ns = run.ns.as_str();
    // Tokens of 20 s rotated 10 s before expiry: a rotation 10 s after each write.
    run.env.ecr.set_token_lifetime(Duration::from_secs(20));
    run.until("a leader", |k| lease_holder(run, k).is_some())
        .await?;
    let leader = lease_holder(run, &run.env.k8s).unwrap_or_default();
    let name = run.name("f");
    run.create_cr(ns, &name, json!({"refreshBefore": "10s"}))
        .await;
    run.until("Ready", |k| cr_ready(k, ns, &name)).await?;
    let first = auth(&run.env.k8s, ns, &name);
    let (calls, writes) = (run.env.ecr.successful_calls(), secret_writes(run, &name));

    // Mid-rotation: the leader's ECR call is held in flight, then the leader is killed.
    run.env.ecr.hold();
    if !run.env.ecr.wait_for_held(Duration::from_secs(30)).await {
        run.env.ecr.release();
        return Err("the rotation's ECR call never came".into());
    }
    let (killed, survivor) = if leader.ends_with("-a") {
        ("a", "b")
    } else {
        ("b", "a")
    };
    let survivor = format!("{}-{survivor}", run.id);
    run.kill(killed).await;
    let killed_at = std::time::Instant::now();
    run.env.ecr.release();
    run.until("the standby holds the Lease", |k| {
        lease_holder(run, k).as_ref() == Some(&survivor)
    })
    .await?;
    let took_over = killed_at.elapsed();
    run.until("the rotation finished by the new leader", |k| {
        cr_ready(k, ns, &name) && auth(k, ns, &name) != first
    })
    .await?;
    let finished = killed_at.elapsed();
    // The killed leader's call never completed: the rotation cost one call and one write.
    let (calls, writes) = (
        run.env.ecr.successful_calls() - calls,
        secret_writes(run, &name) - writes,
    );
    eprintln!(
        "leader killed mid-rotation: Lease taken over in {:.1} s, rotation finished in {:.1} s, \
         {calls} ECR call(s) and {writes} Secret write(s) for it",
        took_over.as_secs_f64(),
        finished.as_secs_f64()
    );
    if took_over > Duration::from_secs(3 + 5) {
        return Err(format!(
            "the standby took {took_over:?} to take over a 3 s Lease"
        ));
    }
    if calls != 1 || writes > 2 {
        return Err(format!(
            "{calls} ECR calls and {writes} writes for one rotation (want 1 and at most 2)"
        ));
    }
    Ok(())
}

async fn leader_election(run: &Run<'_>) -> Result<(), String> {
    assert!(run.install.lease.is_some(), "leader election is on");
    let ns = run.ns.as_str();
    run.env.ecr.set_token_lifetime(ECR_TOKEN_LIFETIME);
    let holder = |k: &Kube| lease_holder(run, k);
    let (a, b) = (format!("{}-a", run.id), format!("{}-b", run.id));
    run.until("a leader", |k| holder(k).is_some()).await?;
    let leader = holder(&run.env.k8s).unwrap_or_default();
    let first = run.name("l1");
    run.create_cr(ns, &first, json!({})).await;
    run.until("the leader's resource Ready", |k| cr_ready(k, ns, &first))
        .await?;
    let (stopped, survivor) = if leader == a { ("a", &b) } else { ("b", &a) };
    run.stop(stopped).await?;
    run.until("the Lease handed over", |k| {
        holder(k).as_ref() == Some(survivor)
    })
    .await?;
    let second = run.name("l2");
    run.create_cr(ns, &second, json!({})).await;
    run.until("the new leader's resource Ready", |k| {
        cr_ready(k, ns, &second)
    })
    .await
}
