//! The chart installed into the real kube-apiserver with the real `helm` CLI, and the operator held
//! to exactly the permissions the chart grants. Each test takes one values set of
//! `tests/chart/values/` (or the defaults, installed with the README's own commands) and:
//!
//! 1. `helm install`s it (every object must be accepted), runs the operator binary out of cluster
//!    **as the ServiceAccount the release created** (a TokenRequest token; RBAC on; the release's
//!    Role/ClusterRole/bindings, never an admin) through the scenarios that use the values set's
//!    permissions, and reads the API server's audit log: no request of the ServiceAccount may be
//!    answered 403;
//! 2. shows that every grant is needed: takes each one (verb × resource) out of the live
//!    Role/ClusterRole in turn and re-runs the scenario whose requests used it (the audit log says
//!    which), which must then fail; a grant no scenario uses, or one whose removal breaks
//!    nothing, fails the test unless [`KEPT`] says why it stays;
//! 3. `helm upgrade --reuse-values` with changed values and `helm uninstall`, checking what is left
//!    against the README.
//!
//! The operator's CRDs are on the server before the tests (the control plane applies them before
//! its garbage collector starts, as on a cluster where they were installed long ago), so Helm skips
//! the chart's `crds/`, as it does on every install but the first. The README test deletes them
//! as the README's uninstall says and installs again, so that Helm creates them from `crds/`.
//!
//! Needs the control plane and the Prometheus Operator CRDs from `tests/cluster/build.sh`. The
//! tests take turns: an operator watching every namespace would also serve another test's
//! resources.

#[path = "chart_install/helm.rs"]
mod helm;
#[path = "chart_install/rbac.rs"]
mod rbac;
#[path = "chart_install/scenarios.rs"]
mod scenarios;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use ecr_public_pull_secret_operator::crd::EcrPublicPullSecret;
use harness::{control_plane::ControlPlane, env::*};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        coordination::v1::Lease,
        core::v1::{Secret, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, ResourceExt};
use serde_json::Value;

use helm::{
    Release, documents, helm, kubectl, kubectl_as, object_key, present, readme_command, shell,
};
use rbac::{Grant, RoleRef, covers, grants, used_by, wait_authorized};
use scenarios::{Install, Outcome, Scenario, Scenario::*, TENANT_ROLE, run, run_and_keep};

/// Grants the chart keeps although no scenario fails without them, each with the reason.
const KEPT: &[(&str, &str)] = &[];

const CRD_NAMES: [&str; 2] = [
    "ecrpublicpullsecrets.ecrpublic.pullsecrets.dev",
    "clusterecrpublicpullsecrets.ecrpublic.pullsecrets.dev",
];

/// Which grants of a release a test proves necessary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prove {
    /// Every grant.
    All,
    /// The grants the values set adds to the defaults' (the defaults' own are proven by the
    /// README test).
    Added,
    /// None: every grant is proven by another values set with the same rule.
    Nothing,
}

// ---------------------------------------------------------------------------------------------
// Installing

fn values(case: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(format!("{}/tests/chart/values/{case}", helm::ROOT))
        .expect("values file");
    serde_yaml::from_str(&text).expect("values YAML")
}

fn value<'a>(v: &'a serde_yaml::Value, path: &[&str]) -> Option<&'a serde_yaml::Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn enabled(v: &serde_yaml::Value, path: &[&str]) -> bool {
    value(v, path).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// The Prometheus Operator's CRDs, applied once per test process as its README says (server-side:
/// they are too large for `kubectl apply`'s annotation) and established.
async fn monitoring_crds() {
    static APPLIED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    APPLIED
        .get_or_init(|| async {
            let files = ControlPlane::monitoring_crds().unwrap_or_else(|e| panic!("{e}"));
            let mut args = vec!["apply", "--server-side"];
            for f in &files {
                args.extend(["-f", f.to_str().unwrap()]);
            }
            kubectl(&args).await.unwrap_or_else(|e| panic!("{e}"));
            kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        })
        .await;
}

/// A release of one values set in a fresh namespace, with what the values set expects to find:
/// the Prometheus Operator's CRDs, the namespace it watches (a fresh one instead of the file's
/// `team-a`), the ServiceAccount it is told exists, a role pattern for tenants' ServiceAccounts.
async fn prepare(env: &Env, case: &str) -> Release {
    let v = values(case);
    let id = format!("{:06x}", fastrand::u32(..1 << 24));
    let ns = format!("r-{id}");
    env.create_namespace(&ns, &[]).await;
    let mut release = Release {
        name: "epps".into(),
        ns: ns.clone(),
        values: vec!["-f".into(), format!("tests/chart/values/{case}")],
    };
    if enabled(&v, &["metrics", "serviceMonitor", "enabled"])
        || enabled(&v, &["metrics", "prometheusRule", "enabled"])
    {
        monitoring_crds().await;
    }
    if value(&v, &["watchNamespace"]).is_some() {
        let watched = format!("w-{id}");
        env.create_namespace(&watched, &[]).await;
        release
            .values
            .extend(["--set".into(), format!("watchNamespace={watched}")]);
    }
    if value(&v, &["serviceAccount", "create"]).and_then(|c| c.as_bool()) == Some(false) {
        let name = value(&v, &["serviceAccount", "name"])
            .and_then(|n| n.as_str())
            .expect("serviceAccount.name");
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<ServiceAccount>::namespaced(env.admin_client(), &ns)
            .create(&Default::default(), &sa)
            .await
            .expect("create the existing ServiceAccount");
    }
    if enabled(&v, &["identity", "serviceAccountTokens"])
        && value(&v, &["identity", "allowedRoleArns"]).is_none()
    {
        release.values.extend([
            "--set".into(),
            format!("identity.allowedRoleArns={{{TENANT_ROLE}}}"),
        ]);
    }
    release
}

/// Every object of the release's manifest is on the server.
async fn assert_installed(release: &Release) -> Vec<Value> {
    let manifest = release.manifest().await;
    let mut want: Vec<String> = manifest.iter().map(object_key).collect();
    want.sort();
    assert_eq!(present(&manifest).await, want, "objects of {}", release.ns);
    manifest
}

/// The container env of the release's Deployment as the server holds it.
async fn deployment_env(env: &Env, release: &Release) -> (i32, BTreeMap<String, String>) {
    let deployments = Api::<Deployment>::namespaced(env.admin_client(), &release.ns);
    let list = deployments
        .list(&Default::default())
        .await
        .expect("list Deployments");
    assert_eq!(list.items.len(), 1, "one Deployment in {}", release.ns);
    let d = &list.items[0];
    let spec = d.spec.as_ref().expect("spec");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    let vars = pod.containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    (spec.replicas.unwrap_or(1), vars)
}

/// `helm upgrade --reuse-values` flipping the replica count (which turns leader election and its
/// Role on or off) and the log level: the new objects are there, the dropped ones gone, every
/// other value kept. Then `helm uninstall`: nothing of the release is left but the namespace,
/// and the CRDs stay.
async fn upgrade_and_uninstall(env: &Env, release: &Release, installed: &[Value]) {
    let (replicas, before) = deployment_env(env, release).await;
    let flip = if replicas > 1 { 1 } else { 2 };
    release
        .upgrade(&[
            "--set",
            "logLevel=debug",
            "--set",
            &format!("replicaCount={flip}"),
        ])
        .await;
    let upgraded = assert_installed(release).await;
    let kept: BTreeSet<String> = upgraded.iter().map(object_key).collect();
    let dropped: Vec<Value> = installed
        .iter()
        .filter(|o| !kept.contains(&object_key(o)))
        .cloned()
        .collect();
    assert!(
        present(&dropped).await.is_empty(),
        "objects the upgrade dropped are still there"
    );
    let (replicas, after) = deployment_env(env, release).await;
    assert_eq!(replicas, flip);
    assert_eq!(after["RUST_LOG"], "debug");
    let leader = before["LEADER_ELECTION"] == "true" && flip == 1;
    let ignored = [
        "RUST_LOG",
        "LEADER_ELECTION",
        "LEASE_NAME",
        "LEASE_DURATION",
    ];
    let unchanged = |vars: &BTreeMap<String, String>| {
        vars.iter()
            .filter(|(k, _)| !ignored.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        unchanged(&after),
        unchanged(&before),
        "--reuse-values kept the values set"
    );
    // Two replicas turn leader election on; one turns it off unless the values set asks for it.
    if !leader {
        assert_eq!(
            after["LEADER_ELECTION"],
            if flip > 1 { "true" } else { "false" }
        );
    }

    release.uninstall().await;
    assert!(
        present(&upgraded).await.is_empty(),
        "helm uninstall left objects of the release"
    );
    let history = kubectl(&[
        "get",
        "secrets",
        "-n",
        &release.ns,
        "-l",
        &format!("owner=helm,name={}", release.name),
        "-o",
        "name",
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history.trim(), "", "Helm's release history is removed");
    assert_crds_present(env).await;
}

async fn assert_crds_present(env: &Env) {
    let crds = Api::<CustomResourceDefinition>::all(env.admin_client());
    for name in CRD_NAMES {
        assert!(
            crds.get_opt(name).await.expect("read CRD").is_some(),
            "CRD {name} is gone"
        );
    }
}

/// A resource written by the operator as the release's ServiceAccount, left in place: what a
/// user has when they uninstall. Returns its namespace and name.
async fn keep_a_resource(env: &Env, install: &Install) -> (String, String) {
    let (outcome, kept) = run_and_keep(env, install, Write, true).await;
    outcome.result.unwrap_or_else(|e| panic!("{e}"));
    kept.into_iter()
        .find(|(r, _, _)| *r == CRS)
        .map(|(_, ns, name)| (ns.expect("namespaced"), name))
        .expect("the kept resource")
}

/// What the README says uninstalling leaves: the resource and its Secret, and with leader
/// election the Lease the operator created in the release namespace.
async fn assert_left(env: &Env, install: &Install, (ns, name): &(String, String)) {
    let admin = env.admin_client();
    let crs = Api::<EcrPublicPullSecret>::namespaced(admin.clone(), ns);
    assert!(
        crs.get_opt(name).await.expect("read").is_some(),
        "the resource is left"
    );
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns);
    assert!(
        secrets.get_opt(name).await.expect("read").is_some(),
        "its Secret is left"
    );
    if let Some(lease) = &install.lease {
        let leases = Api::<Lease>::namespaced(admin, &install.sa_ns);
        assert!(
            leases.get_opt(lease).await.expect("read").is_some(),
            "the Lease is left"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Running as the ServiceAccount

/// Every scenario with the release's full permissions: each must succeed without one 403.
async fn full_runs(env: &Env, install: &Install, scenarios: &[Scenario]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for &scenario in scenarios {
        let outcome = run(env, install, scenario).await;
        if let Err(e) = &outcome.result {
            panic!("{scenario:?} as {}: {e}", install.user());
        }
        eprintln!(
            "{scenario:?} as {}: {} requests, {} refused with 403",
            install.user(),
            outcome.requests.len(),
            outcome.denied().len()
        );
        outcomes.push(outcome);
    }
    outcomes
}

/// The grants of the default values set, as `helm template` renders its ClusterRole.
async fn default_grants() -> BTreeSet<Grant> {
    let text = helm(&["template", "epps", helm::CHART])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let role = documents(&text)
        .into_iter()
        .find(|o| o["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
        serde_json::from_value(role["rules"].clone()).expect("rules");
    grants(&rules)
}

/// Takes each grant to prove out of the live roles in turn and re-runs the first scenario whose
/// requests used it; that run must fail. Returns the table (grant → what failed). Fails the test
/// for a grant no scenario used or whose removal broke nothing, unless [`KEPT`] says why.
async fn least_privilege(
    env: &Env,
    install: &Install,
    roles: &[RoleRef],
    outcomes: &[Outcome],
    prove: Prove,
) -> Vec<String> {
    let admin = env.admin_client();
    let skip = match prove {
        Prove::All => BTreeSet::new(),
        Prove::Added => default_grants().await,
        Prove::Nothing => return Vec::new(),
    };
    let kept: BTreeMap<&str, &str> = KEPT.iter().copied().collect();
    let mut table = Vec::new();
    let mut excess = Vec::new();
    for role in roles {
        let scope = role.namespace.as_deref();
        for grant in grants(&role.rules(&admin).await) {
            if skip.contains(&grant) {
                continue;
            }
            let user = outcomes.iter().find(|o| {
                o.requests
                    .iter()
                    .flat_map(used_by)
                    .any(|needed| covers(&grant, &needed))
            });
            let Some(user) = user else {
                excess.push(format!("{grant}: no scenario's request used it"));
                continue;
            };
            let original = role.remove(&admin, &grant).await;
            wait_authorized(&admin, install.service_account(), &grant, scope, false).await;
            let rerun = run(env, install, user.scenario).await;
            role.set_rules(&admin, original).await;
            wait_authorized(&admin, install.service_account(), &grant, scope, true).await;
            match rerun.result {
                Err(e) => {
                    let first = e.lines().next().unwrap_or_default().to_owned();
                    table.push(format!("{grant} | {:?} fails: {first}", user.scenario));
                }
                Ok(()) => excess.push(format!("{grant}: {:?} succeeds without it", user.scenario)),
            }
        }
    }
    let (kept_here, excess): (Vec<_>, Vec<_>) = excess
        .into_iter()
        .partition(|e| kept.keys().any(|k| e.starts_with(&format!("{k}:"))));
    for k in kept_here {
        let reason = kept
            .iter()
            .find(|(g, _)| k.starts_with(&format!("{g}:")))
            .map(|(_, r)| *r)
            .unwrap_or_default();
        table.push(format!("{k} | kept: {reason}"));
    }
    for row in &table {
        eprintln!("least privilege ({}): {row}", install.user());
    }
    assert!(
        excess.is_empty(),
        "grants of {} the operator does not need:\n{}",
        install.user(),
        excess.join("\n")
    );
    table
}

/// One values set: install, run as its ServiceAccount, prove its grants, upgrade, uninstall.
async fn exercise(case: &str, scenarios: &[Scenario], prove: Prove) {
    let env = Env::start_real().await;
    let started = std::time::Instant::now();
    let release = prepare(&env, case).await;
    release.install().await;
    let installed = assert_installed(&release).await;
    let install = Install::read(&env, &release).await;
    let outcomes = full_runs(&env, &install, scenarios).await;
    least_privilege(&env, &install, &RoleRef::of(&installed), &outcomes, prove).await;
    let kept = keep_a_resource(&env, &install).await;
    upgrade_and_uninstall(&env, &release, &installed).await;
    assert_left(&env, &install, &kept).await;
    eprintln!("{case}: {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// The tests

/// `watchNamespace`: the default rules in a Role of the watched namespace suffice (the same rules
/// the README test proves needed), and nothing outside that namespace is read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_watch_namespace_keeps_the_operator_to_its_namespace() {
    exercise(
        "watch-namespace.yaml",
        &[Write, Maintain, Isolation],
        Prove::Added,
    )
    .await;
}

/// `serviceAccountPatching.enabled` alone (in a watched namespace's Role): its ServiceAccount
/// grants, each needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_service_account_patching_in_the_watched_namespace() {
    exercise(
        "watch-namespace-service-account-patching.yaml",
        &[PatchServiceAccounts],
        Prove::Added,
    )
    .await;
}

/// `identity.serviceAccountTokens`: `get` on ServiceAccounts and `create` on their `token`, each
/// needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_tenant_service_account_tokens() {
    exercise("tenant-identities.yaml", &[TenantToken], Prove::Added).await;
}

/// `clusterPullSecrets.enabled` alone: the cluster kind's grants, each needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_cluster_pull_secrets() {
    exercise(
        "cluster-pull-secrets-only.yaml",
        &[ClusterKind],
        Prove::Added,
    )
    .await;
}

/// The opt-in features together, cluster-wide (the cluster kind patches ServiceAccounts too):
/// enough, without a 403. Each grant is proven needed where its feature is on alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_cluster_pull_secrets_with_patching_and_tenant_tokens() {
    exercise(
        "cluster-pull-secrets.yaml",
        &[Write, ClusterKind, PatchServiceAccounts, TenantToken],
        Prove::Nothing,
    )
    .await;
}

/// More than one replica: two processes share the Lease Role of the release namespace; one leads,
/// and hands over when stopped. Each Lease grant is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_replicas_elect_a_leader_with_the_lease_role() {
    exercise("replicas-3.yaml", &[LeaderElection], Prove::Added).await;
}

/// The leader SIGKILLed while its rotation's ECR call is in flight: the standby (same
/// ServiceAccount) takes over once the 3 s Lease expires and finishes the rotation, the pair
/// making one ECR call and at most two writes for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_leader_killed_mid_rotation_hands_over_without_a_second_call() {
    exercise("replicas-3.yaml", &[LeaderFailover], Prove::Nothing).await;
}

/// Nearly every value changed (monitoring objects, NetworkPolicy, a named Lease, every feature):
/// every scenario runs under leader election without a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_everything_at_once() {
    exercise(
        "everything.yaml",
        &[
            LeaderElection,
            Maintain,
            ClusterKind,
            PatchServiceAccounts,
            TenantToken,
        ],
        Prove::Nothing,
    )
    .await;
}

/// Values sets that grant nothing beyond the defaults (the chart tests compare their RBAC): the
/// operator writes a Secret as their ServiceAccount, and they install, upgrade and uninstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_value_sets_with_the_default_permissions() {
    for case in [
        "monitoring.yaml",
        "network-policy.yaml",
        "irsa.yaml",
        "pod-identity.yaml",
        "existing-service-account.yaml",
    ] {
        exercise(case, &[Write], Prove::Added).await;
    }
}

/// `identity.roleRules`, one selecting namespaces by label: the Namespace list/watch it adds is
/// needed (the controller never syncs without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_role_rules_selecting_namespaces_by_label() {
    exercise("role-rules.yaml", &[TenantToken], Prove::Added).await;
}

/// The admission policies the chart installs by default, as a compromised operator pod would
/// meet them: with every grant of its ClusterRole, its ServiceAccount still cannot write a
/// Secret that is not a labelled pull Secret, take over or delete one that is not, or mint a
/// token for another audience, for long, or in kube-system. What it does do is allowed (every
/// other real_chart test runs its scenarios with the policies in place and no refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_admission_policies_fence_the_operators_service_account() {
    let env = Env::start_real().await;
    let release = prepare(&env, "cluster-pull-secrets.yaml").await;
    release.install().await;
    let installed = assert_installed(&release).await;
    let kinds: BTreeSet<&str> = installed
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert!(kinds.contains("ValidatingAdmissionPolicy"), "{kinds:?}");
    let install = Install::read(&env, &release).await;
    let kubeconfig = install.kubeconfig_file();
    let ns = env.ns.as_str();
    // Let RBAC take the new bindings before any refusal is read as the policy's.
    for (resource, verb) in [("secrets", "create"), ("serviceaccounts/token", "create")] {
        let grant = Grant {
            group: String::new(),
            resource: resource.into(),
            verb: verb.into(),
            name: None,
        };
        let sa = install.service_account();
        wait_authorized(&env.admin_client(), sa, &grant, Some(ns), true).await;
    }
    let apply = |doc: Value| {
        let file = std::env::temp_dir().join(format!("vap-{:08x}.json", fastrand::u32(..)));
        std::fs::write(&file, doc.to_string()).expect("write manifest");
        let kubeconfig = kubeconfig.clone();
        async move {
            let out = kubectl_as(&kubeconfig, &["create", "-f", file.to_str().unwrap()]).await;
            let _ = std::fs::remove_file(&file);
            out
        }
    };
    let secret = |name: &str, type_: &str, labelled: bool| {
        let labels = if labelled {
            serde_json::json!({"app.kubernetes.io/managed-by": "ecr-public-pull-secret-operator"})
        } else {
            serde_json::json!({})
        };
        let data = base64_of(r#"{"auths":{}}"#);
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "type": type_, "data": {".dockerconfigjson": data}})
    };
    let refused = |what: &str, out: Result<String, String>, says: &str| {
        let err = out.expect_err(what);
        assert!(
            err.contains("ValidatingAdmissionPolicy") && err.contains(says),
            "{what}: refused by the policy, saying {says:?}: {err}"
        );
    };
    let pull = "kubernetes.io/dockerconfigjson";
    // The API server loads new policies in the background: wait until both are enforced.
    let file = std::env::temp_dir().join(format!("vap-{:08x}.json", fastrand::u32(..)));
    std::fs::write(&file, secret("probe", "Opaque", true).to_string()).expect("write manifest");
    let probe = ["create", "--dry-run=server", "-f", file.to_str().unwrap()];
    let bad_token = ["create", "token", "default", "-n", ns, "--duration=10m"];
    let enforced = async || {
        let secrets = kubectl_as(&kubeconfig, &probe).await;
        let tokens = kubectl_as(&kubeconfig, &bad_token).await;
        [secrets, tokens].iter().all(|r| {
            r.as_ref()
                .is_err_and(|e| e.contains("ValidatingAdmissionPolicy"))
        })
    };
    assert!(
        eventually(Duration::from_secs(30), enforced).await,
        "policies enforced"
    );
    let _ = std::fs::remove_file(&file);
    refused(
        "an Opaque Secret",
        apply(secret("opaque", "Opaque", true)).await,
        "may only write Secrets of type kubernetes.io/dockerconfigjson",
    );
    refused(
        "a pull Secret without the label",
        apply(secret("unlabelled", pull, false)).await,
        "carry its label",
    );
    apply(secret("ours", pull, true))
        .await
        .expect("a labelled pull Secret is what the operator writes");
    // Someone else's pull Secret: not to be labelled into the operator's, nor deleted.
    env.k8s
        .create(SECRETS, Some(ns), secret("theirs", pull, false))
        .await
        .expect("create their Secret");
    let label = ["label", "secret", "theirs", "-n", ns];
    let take_over = [
        &label[..],
        &["app.kubernetes.io/managed-by=ecr-public-pull-secret-operator"],
    ];
    refused(
        "taking over their Secret",
        kubectl_as(&kubeconfig, &take_over.concat()).await,
        "may only change or delete Secrets that carry its label",
    );
    refused(
        "deleting their Secret",
        kubectl_as(&kubeconfig, &["delete", "secret", "theirs", "-n", ns]).await,
        "may only change or delete Secrets that carry its label",
    );
    kubectl_as(&kubeconfig, &["delete", "secret", "ours", "-n", ns])
        .await
        .expect("its own Secret it may delete");
    // Tokens: for STS, for an hour at most, outside kube-system.
    let token = |args: &[&str]| {
        let base = ["create", "token", "default", "-n"];
        let args = [&base[..], args].concat();
        let kubeconfig = kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl_as(&kubeconfig, &args).await
        }
    };
    let sts = "--audience=sts.amazonaws.com";
    refused(
        "a token for the API server's audience",
        token(&[
            ns,
            "--audience=https://kubernetes.default.svc",
            "--duration=10m",
        ])
        .await,
        "audience sts.amazonaws.com",
    );
    refused(
        "a day-long token",
        token(&[ns, sts, "--duration=24h"]).await,
        "expire within an hour",
    );
    refused(
        "a token in kube-system",
        token(&["kube-system", sts, "--duration=10m"]).await,
        "kube-system",
    );
    token(&[ns, sts, "--duration=10m"])
        .await
        .expect("a ten-minute STS token is what the operator requests");
    // The same requests by anyone else are not the policies' business.
    kubectl(&["create", "token", "default", "-n", ns, "--duration=24h"])
        .await
        .expect("the policies bind only the operator's ServiceAccount");
    release.uninstall().await;
}

/// The defaults, installed, upgraded and uninstalled with the README's own commands: the
/// operator runs as the ServiceAccount the README's trust policy names, needs every grant of
/// the default ClusterRole, and uninstalling leaves what the README says it leaves. Deleting the
/// CRDs as the README says removes the resources and their Secrets; the next install then
/// creates the CRDs from the chart's `crds/`, and uninstalling keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_installed_upgraded_and_uninstalled_as_the_readme_says() {
    let env = Env::start_real().await;
    let started = std::time::Instant::now();
    let release = Release {
        name: "ecr-public-pull-secret-operator".into(),
        ns: "ecr-public-pull-secret-operator".into(),
        values: Vec::new(),
    };
    let install_command = readme_command("helm install ");
    shell(&install_command)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let installed = assert_installed(&release).await;
    let install = Install::read(&env, &release).await;
    let readme = std::fs::read_to_string(format!("{}/README.md", helm::ROOT)).unwrap();
    assert!(
        readme.contains(&format!(":sub\": \"{}\"", install.user())),
        "the README's trust policy names {}",
        install.user()
    );
    let sa = Api::<ServiceAccount>::namespaced(env.admin_client(), &release.ns)
        .get(&install.sa)
        .await
        .expect("the ServiceAccount");
    assert_eq!(
        sa.annotations()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some("arn:aws:iam::123456789012:role/ecr-public-pull-secret-operator"),
        "the README's --set gives the ServiceAccount its IRSA role"
    );

    let outcomes = full_runs(&env, &install, &[Write, Maintain]).await;
    least_privilege(
        &env,
        &install,
        &RoleRef::of(&installed),
        &outcomes,
        Prove::All,
    )
    .await;

    // A user's resource and its Secret, which uninstalling leaves in place.
    let kept = keep_a_resource(&env, &install).await;
    let (ns, name) = kept.clone();

    // Upgrading: the new CRDs first, then the release with its values and one more.
    let (_, before) = deployment_env(&env, &release).await;
    shell(&readme_command("kubectl apply -f "))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    shell(&format!(
        "{} --set logLevel=debug",
        readme_command("helm upgrade ")
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let upgraded = assert_installed(&release).await;
    let (_, after) = deployment_env(&env, &release).await;
    let mut expected = before.clone();
    expected.insert("RUST_LOG".into(), "debug".into());
    assert_eq!(after, expected, "--reuse-values kept the values");

    // Uninstalling leaves the CRDs, the resources and their Secrets.
    shell(&readme_command("helm uninstall "))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        present(&upgraded).await.is_empty(),
        "helm uninstall left objects of the release"
    );
    assert_crds_present(&env).await;
    assert_left(&env, &install, &kept).await;

    // Deleting the CRDs deletes every resource, and the garbage collector their Secrets.
    shell(&readme_command("kubectl delete crd "))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.wait(
        "the garbage collector deleting the Secret of a deleted resource",
        Duration::from_secs(60),
        |k| k.get(SECRETS, Some(&ns), &name).is_none(),
    )
    .await;

    // With no CRDs on the server, installing creates them from the chart's crds/.
    shell(&install_command)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        &format!("crd/{}", CRD_NAMES[0]),
        &format!("crd/{}", CRD_NAMES[1]),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let crds = Api::<CustomResourceDefinition>::all(env.admin_client());
    for name in CRD_NAMES {
        let crd = crds.get(name).await.expect("CRD");
        let managers: Vec<String> = crd
            .managed_fields()
            .iter()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert!(
            managers.iter().any(|m| m == "helm"),
            "{name} was created by Helm: {managers:?}"
        );
    }
    shell(&readme_command("helm uninstall "))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_crds_present(&env).await;
    eprintln!("README flow: {:.1} s", started.elapsed().as_secs_f64());
}
