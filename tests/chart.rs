//! The Helm chart and the Dockerfile, checked with real tools from the package registries, without
//! a cluster or a Docker engine (`tests/chart_install.rs` installs the chart into the real
//! kube-apiserver and runs the operator with the RBAC it grants):
//!
//! - Helm v4 (the Go SDK inside PyPI `helm-python-sdk`) lints the chart strictly and renders it with
//!   the defaults and every value set in `tests/chart/values/`;
//! - PyPI `kubernetes-validate` validates every rendered object and the CRD against the Kubernetes
//!   1.37 OpenAPI schemas, and the 1.29 ones (the oldest the chart admits), in strict mode (unknown
//!   fields fail);
//! - ServiceMonitor and PrometheusRule are CRD-defined kinds it has no schema for: npm
//!   `@kubernetes-models/prometheus-operator` checks their field types, PyPI `promql-parser` parses
//!   the alert expressions, and the fields the chart uses are checked here;
//! - npm `dockerfile-utils` lints the Dockerfile, and its structure and `.dockerignore` are checked
//!   here (`.ci/image` builds the image with buildah and runs the binary inside it).
//!
//! The tools are installed on first use into `target/chart-tools` by `tests/chart/bootstrap.py`
//! (pinned in `tests/chart/requirements.txt` and `tests/chart/package-lock.json`). A tool that
//! cannot be installed fails the tests: there is no skipping.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ecr-public-pull-secret-operator");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART_NAME: &str = "ecr-public-pull-secret-operator";
const CRD_FILES: [&str; 2] = [
    "clusterecrpublicpullsecrets.ecrpublic.pullsecrets.dev.yaml",
    "ecrpublicpullsecrets.ecrpublic.pullsecrets.dev.yaml",
];
/// The newest Kubernetes version kubernetes-validate 1.37.0 ships schemas for.
const KUBE_VERSION: &str = "1.37.0";
/// The oldest version Chart.yaml's kubeVersion admits: the chart must not use newer fields.
const KUBE_VERSION_MIN: &str = "1.29.0";
const RELEASE: &str = "epps";
const RELEASE_NS: &str = "epps-system";
/// Value sets rendered by the tests: a file name in tests/chart/values/, or "" for the defaults.
const CASES: &[&str] = &[
    "",
    "watch-namespace.yaml",
    "replicas-3.yaml",
    "monitoring.yaml",
    "network-policy.yaml",
    "irsa.yaml",
    "pod-identity.yaml",
    "tenant-identities.yaml",
    "cluster-pull-secrets.yaml",
    "cluster-pull-secrets-only.yaml",
    "watch-namespace-service-account-patching.yaml",
    "existing-service-account.yaml",
    "everything.yaml",
    "role-rules.yaml",
];
/// The metrics the binary exports (src/metrics.rs); alerts may only use these.
const METRICS: &[&str] = &[
    "epps_reconcile_total",
    "epps_reconcile_duration_seconds",
    "epps_token_fetch_total",
    "epps_secret_token_expiry_timestamp_seconds",
    "epps_managed_secrets",
];

// ---------------------------------------------------------------------------------------------
// Tools

fn chart_dir() -> PathBuf {
    Path::new(ROOT).join("charts").join(CHART_NAME)
}

fn tools_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp; the tools live beside it, so `cargo clean` removes them.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("chart-tools")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chart-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Installs the tools once per test process; bootstrap.py serialises processes with a file lock.
fn tools() -> &'static Path {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let dir = tools_dir();
        let out = Command::new(&python)
            .arg(Path::new(ROOT).join("tests/chart/bootstrap.py"))
            .arg(&dir)
            .args(["python", "node"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {python} (Python 3.10+ with venv is needed): {e}"))?;
        if out.status.success() {
            Ok(dir)
        } else {
            Err(format!(
                "installing the chart test tools from PyPI/npm failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match ready {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn run_json(cmd: &mut Command, stdin: Option<&[u8]>) -> Value {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input)
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn helm_tool_command(args: &[&str]) -> Command {
    let tools = tools();
    let mut cmd = Command::new(tools.join("venv/bin/python"));
    cmd.arg(Path::new(ROOT).join("tests/chart/helm_tool.py"))
        .args(args)
        .current_dir(ROOT);
    cmd
}

fn helm_tool(args: &[&str]) -> Value {
    run_json(&mut helm_tool_command(args), None)
}

/// Runs helm_tool.py where it must fail, and returns its stderr. A template's `fail` is an error
/// the Helm SDK raises out of `render` (a traceback naming the message), the way `helm install`
/// and `helm template` stop on it; `helm lint` does not report it (lint mode turns `fail` into a
/// log line), so only rendering can check it.
fn helm_tool_failure(args: &[&str]) -> String {
    let out = helm_tool_command(args)
        .stdin(Stdio::null())
        .output()
        .expect("run helm_tool.py");
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn validate_monitoring(objects: &[&Value]) -> Vec<Value> {
    let tools = tools();
    let input = serde_json::to_vec(objects).unwrap();
    let out = run_json(
        Command::new("node")
            .arg(Path::new(ROOT).join("tests/chart/validate_monitoring.mjs"))
            .env("NODE_PATH", tools.join("node/node_modules")),
        Some(&input),
    );
    out.as_array().expect("array").clone()
}

fn values_file(case: &str) -> String {
    format!("{ROOT}/tests/chart/values/{case}")
}

fn case_name(case: &str) -> &str {
    if case.is_empty() { "defaults" } else { case }
}

// ---------------------------------------------------------------------------------------------
// Rendered output

/// One `helm template` of the chart, with kubernetes-validate's verdict on every object.
struct Rendered {
    case: &'static str,
    out: Value,
}

/// Renders a case once per test process; several tests read the same output.
fn rendered(case: &'static str) -> &'static Rendered {
    static CACHE: Mutex<BTreeMap<&'static str, &'static Rendered>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = cache.get(case) {
        return r;
    }
    let chart = chart_dir();
    let file = values_file(case);
    let mut args = vec![
        "render",
        chart.to_str().unwrap(),
        "--release",
        RELEASE,
        "--namespace",
        RELEASE_NS,
        "--kube-version",
        KUBE_VERSION_MIN,
        "--kube-version",
        KUBE_VERSION,
    ];
    if !case.is_empty() {
        args.extend(["-f", file.as_str()]);
    }
    let out = helm_tool(&args);
    assert!(
        out.get("schema_error").is_none(),
        "{}: values rejected by values.schema.json: {}",
        case_name(case),
        out["schema_error"]
    );
    let r: &'static Rendered = Box::leak(Box::new(Rendered { case, out }));
    cache.insert(case, r);
    r
}

impl Rendered {
    fn name(&self) -> &str {
        case_name(self.case)
    }

    fn entries(&self) -> &Vec<Value> {
        self.out["objects"].as_array().expect("objects")
    }

    fn objects(&self) -> impl Iterator<Item = &Value> {
        self.entries().iter().map(|e| &e["object"])
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.of_kind(kind);
        assert_eq!(found.len(), 1, "{}: expected one {kind}", self.name());
        found[0]
    }

    fn pod_spec(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let containers = self.pod_spec()["containers"]
            .as_array()
            .expect("containers");
        assert_eq!(containers.len(), 1, "{}: one container", self.name());
        &containers[0]
    }

    fn env(&self) -> BTreeMap<String, &Value> {
        self.container()["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| (e["name"].as_str().expect("env name").to_string(), e))
            .collect()
    }

    fn env_value(&self, name: &str) -> Option<&str> {
        self.env().get(name).and_then(|e| e["value"].as_str())
    }

    fn service_account(&self) -> (String, String) {
        let name = self.pod_spec()["serviceAccountName"]
            .as_str()
            .expect("serviceAccountName");
        let ns = self.one("Deployment")["metadata"]["namespace"]
            .as_str()
            .expect("namespace");
        (name.to_string(), ns.to_string())
    }

    fn http_port(&self) -> u64 {
        let ports = self.container()["ports"].as_array().expect("ports");
        let http: Vec<_> = ports.iter().filter(|p| p["name"] == "http").collect();
        assert_eq!(http.len(), 1, "{}: one port named http", self.name());
        http[0]["containerPort"].as_u64().expect("containerPort")
    }

    /// The values file of this case as YAML (empty for the defaults).
    fn values(&self) -> serde_yaml::Value {
        if self.case.is_empty() {
            return serde_yaml::Value::Null;
        }
        let text = std::fs::read_to_string(values_file(self.case)).expect("values file");
        serde_yaml::from_str(&text).expect("values YAML")
    }
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(s)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Lint and validation

#[test]
fn chart_lints_clean_in_strict_mode_with_every_value_set() {
    let chart = chart_dir();
    for case in CASES {
        let file = values_file(case);
        let mut args = vec![
            "lint",
            chart.to_str().unwrap(),
            "--kube-version",
            KUBE_VERSION,
        ];
        if !case.is_empty() {
            args.extend(["-f", file.as_str()]);
        }
        let report = helm_tool(&args);
        assert_eq!(report["total_charts_linted"], 1, "{report}");
        assert!(
            strings(&report["errors"]).is_empty(),
            "{}: helm lint errors: {report}",
            case_name(case)
        );
        // Severity 2 is a warning, 3 an error; strict lint fails on both. 1 is info
        // ("icon is recommended").
        let problems: Vec<_> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
            .collect();
        assert!(
            problems.is_empty(),
            "{}: helm lint findings: {problems:?}",
            case_name(case)
        );
    }
}

#[test]
fn helm_lint_reports_a_broken_template() {
    // The lint above must be able to fail: the same chart with one bad template does.
    let dir = scratch_dir("broken-chart");
    let copy = dir.join(CHART_NAME);
    copy_dir(&chart_dir(), &copy);
    std::fs::write(
        copy.join("templates/broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.noSuchValue.field }}\n",
    )
    .unwrap();
    let report = helm_tool(&["lint", copy.to_str().unwrap()]);
    let errors = strings(&report["errors"]).join("\n");
    assert!(errors.contains("noSuchValue"), "lint missed it: {report}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn values_schema_rejects_mistyped_values() {
    let dir = scratch_dir("bad-values");
    let chart = chart_dir();
    for (what, yaml) in [
        ("unknown log format", "logFormat: xml\n"),
        ("misspelt top-level value", "replicacount: 3\n"),
        (
            "misspelt nested value",
            "serviceAccount:\n  annotation: {}\n",
        ),
        ("negative replicas", "replicaCount: -1\n"),
        ("port out of range", "metrics:\n  port: 70000\n"),
        (
            "lease duration the binary cannot parse",
            "leaderElection:\n  leaseDuration: 15 seconds\n",
        ),
        ("env entry without a name", "extraEnv:\n  - value: x\n"),
        ("bad pull policy", "image:\n  pullPolicy: Sometimes\n"),
        (
            "feature switch that is not a map",
            "clusterPullSecrets: true\n",
        ),
        (
            "misspelt feature switch",
            "serviceAccountPatching:\n  enable: true\n",
        ),
        (
            "feature switch that is not a boolean",
            "clusterPullSecrets:\n  enabled: \"yes\"\n",
        ),
        (
            "role pattern reaching every account",
            "identity:\n  allowedRoleArns: [\"arn:aws:iam::*:role/x\"]\n",
        ),
        (
            "role rule without namespaces",
            "identity:\n  roleRules: [{roleArns: [\"arn:aws:iam::123456789012:role/x\"]}]\n",
        ),
        (
            "namespace placeholder for the cluster kind",
            "identity:\n  clusterAllowedRoleArns: [\"arn:aws:iam::123456789012:role/r-{namespace}\"]\n",
        ),
    ] {
        let file = dir.join("values.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = helm_tool(&[
            "render",
            chart.to_str().unwrap(),
            "-f",
            file.to_str().unwrap(),
        ]);
        assert!(
            out.get("schema_error").is_some(),
            "{what}: accepted by values.schema.json"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// "1.37" for "1.37.0": the schema version kubernetes-validate reports having used.
fn minor(version: &str) -> &str {
    &version[..version.rfind('.').unwrap()]
}

#[test]
fn every_rendered_object_and_the_crd_pass_strict_kubernetes_validation() {
    let versions = [minor(KUBE_VERSION_MIN), minor(KUBE_VERSION)];
    for case in CASES {
        let r = rendered(case);
        let mut monitoring = Vec::new();
        for entry in r.entries() {
            let obj = &entry["object"];
            let what = format!("{}: {} {}", r.name(), obj["kind"], obj["metadata"]["name"]);
            let results = entry["validation"].as_array().unwrap();
            let found: Vec<bool> = results.iter().map(|v| v["schema_found"] == true).collect();
            if found.iter().all(|f| *f) {
                for (v, version) in results.iter().zip(versions) {
                    assert!(v["error"].is_null(), "{what} ({version}): {}", v["error"]);
                    assert_eq!(v["validated_against"], version, "{what}");
                }
            } else {
                // Only the Prometheus Operator kinds may lack a Kubernetes schema.
                assert_eq!(obj["apiVersion"], "monitoring.coreos.com/v1", "{what}");
                monitoring.push(obj);
            }
        }
        if !monitoring.is_empty() {
            for result in validate_monitoring(&monitoring) {
                assert!(result["error"].is_null(), "{}: {result}", r.name());
            }
        }
        // One result per CRD file and Kubernetes version, in that order.
        let crd = r.out["crd_validation"].as_array().unwrap();
        assert_eq!(
            crd.len(),
            CRD_FILES.len() * versions.len(),
            "{}: every CRD the chart ships is validated against every version",
            r.name()
        );
        let mut files: Vec<&str> = crd
            .iter()
            .filter_map(|v| v["filename"].as_str()?.rsplit('/').next())
            .collect();
        files.dedup();
        assert_eq!(files, CRD_FILES, "{}", r.name());
        for (v, version) in crd.iter().zip(versions.iter().cycle()) {
            let file = v["filename"].as_str().unwrap_or_default();
            assert!(v["error"].is_null(), "{file} ({version}): {}", v["error"]);
            assert_eq!(v["validated_against"], *version, "{file}");
        }
    }
}

#[test]
fn validators_reject_unknown_and_mistyped_fields() {
    // The validations above must be able to fail: strict mode rejects an unknown field, and the
    // Prometheus Operator models reject a number where a duration string belongs.
    let dir = scratch_dir("validators");
    let file = dir.join("deployment.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: 80\n      targtPort: 8080\n",
    )
    .unwrap();
    let out = helm_tool(&[
        "validate",
        "--kube-version",
        KUBE_VERSION,
        file.to_str().unwrap(),
    ]);
    let err = s(&out["results"][0]["error"]);
    assert!(err.contains("targtPort"), "{err}");

    let bad_monitor = serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "interval": 30}]},
    });
    let results = validate_monitoring(&[&bad_monitor]);
    assert!(
        s(&results[0]["error"]).contains("interval"),
        "{}",
        results[0]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn chart_crd_is_byte_identical_to_the_generated_crd() {
    for file in CRD_FILES {
        let repo = std::fs::read(Path::new(ROOT).join("crds").join(file)).expect("crds/");
        let chart = std::fs::read(chart_dir().join("crds").join(file)).expect("chart crds/");
        assert!(
            repo == chart,
            "charts/{CHART_NAME}/crds/{file} differs from crds/{file}: cp crds/* charts/{CHART_NAME}/crds/"
        );
    }
    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, CRD_FILES, "the chart's crds/ holds only the CRDs");
}

#[test]
fn chart_metadata_matches_the_crate() {
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some(CHART_NAME));
    assert_eq!(chart["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    // The oldest version the manifests are validated against.
    assert_eq!(
        chart["kubeVersion"].as_str(),
        Some(format!(">={KUBE_VERSION_MIN}-0").as_str())
    );
    // With no tag given, the image is the appVersion, i.e. the binary this chart's CRD belongs to.
    let image = s(&rendered("").container()["image"]);
    assert!(
        image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
        "{image}"
    );
}

// ---------------------------------------------------------------------------------------------
// RBAC

type Grant = (String, String, String, Option<String>);

/// Expands RBAC rules into (apiGroup, resource, verb, resourceName) tuples.
fn grants(rules: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "non-resource rule: {rule}"
        );
        let names: Vec<Option<String>> = match rule.get("resourceNames") {
            Some(n) => strings(n).into_iter().map(|n| Some(n.into())).collect(),
            None => vec![None],
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in &names {
                        out.insert((group.into(), resource.into(), verb.into(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

fn expected(list: &[(&str, &str, &[&str], Option<&str>)]) -> BTreeSet<Grant> {
    list.iter()
        .flat_map(|(group, resource, verbs, name)| {
            verbs.iter().map(move |verb| {
                (
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                    name.map(String::from),
                )
            })
        })
        .collect()
}

/// What the operator does: read its resources, patch their status, write Secrets with
/// server-side apply (never delete: the garbage collector does through ownerReferences), Events.
fn operator_grants() -> BTreeSet<Grant> {
    expected(&[
        (
            "ecrpublic.pullsecrets.dev",
            "ecrpublicpullsecrets",
            &["list", "watch"],
            None,
        ),
        (
            "ecrpublic.pullsecrets.dev",
            "ecrpublicpullsecrets/status",
            &["patch"],
            None,
        ),
        (
            "",
            "secrets",
            &["get", "list", "watch", "create", "patch"],
            None,
        ),
        ("events.k8s.io", "events", &["create", "patch"], None),
    ])
}

/// `spec.serviceAccountName`: read the named ServiceAccount and request a token for it; no list,
/// no watch, nothing else on ServiceAccounts.
fn service_account_token_grants() -> BTreeSet<Grant> {
    expected(&[
        ("", "serviceaccounts", &["get"], None),
        ("", "serviceaccounts/token", &["create"], None),
    ])
}

/// serviceAccountPatching: watch ServiceAccounts and JSON-patch their imagePullSecrets (in the
/// watched namespace only when there is one).
fn service_account_patching_grants() -> BTreeSet<Grant> {
    expected(&[("", "serviceaccounts", &["list", "watch", "patch"], None)])
}

/// clusterPullSecrets: the cluster kind (finalizer patches, status), the Namespaces its selectors
/// pick from, and deleting the Secrets it wrote: they have no namespaced owner to be garbage
/// collected with. Always cluster-wide.
fn cluster_pull_secret_grants() -> BTreeSet<Grant> {
    expected(&[
        (
            "ecrpublic.pullsecrets.dev",
            "clusterecrpublicpullsecrets",
            &["list", "watch", "patch"],
            None,
        ),
        (
            "ecrpublic.pullsecrets.dev",
            "clusterecrpublicpullsecrets/status",
            &["patch"],
            None,
        ),
        ("", "namespaces", &["list", "watch"], None),
        ("", "secrets", &["delete"], None),
    ])
}

/// Whether a role rule of the case selects namespaces by label: the operator then reads their
/// labels (Namespaces list/watch).
fn rules_select_namespaces(case: &str) -> bool {
    let rules = value(case, &["identity", "roleRules"]);
    let rules = rules.as_ref().and_then(|r| r.as_sequence());
    rules.is_some_and(|r| r.iter().any(|r| r.get("namespaceSelector").is_some()))
}

/// A boolean value from a case's values file, false when the file does not set it.
fn enabled(case: &str, path: &[&str]) -> bool {
    value(case, path).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// A value from a case's values file (the chart's default when the file does not set it).
fn value(case: &str, path: &[&str]) -> Option<serde_yaml::Value> {
    if case.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string(values_file(case)).expect("values file");
    let mut v: serde_yaml::Value = serde_yaml::from_str(&text).expect("values YAML");
    for key in path {
        v = v.get(*key)?.clone();
    }
    Some(v)
}

/// Leader election: create the Lease (create cannot be limited by name), then only that Lease.
fn lease_grants(lease: &str) -> BTreeSet<Grant> {
    expected(&[
        ("coordination.k8s.io", "leases", &["create"], None),
        (
            "coordination.k8s.io",
            "leases",
            &["get", "patch"],
            Some(lease),
        ),
    ])
}

/// Everything the operator's ServiceAccount may do, by scope ("" = cluster-wide, else namespace),
/// following each binding to its role.
fn effective_grants(r: &Rendered) -> BTreeMap<String, BTreeSet<Grant>> {
    let (sa, sa_ns) = r.service_account();
    let mut out: BTreeMap<String, BTreeSet<Grant>> = BTreeMap::new();
    for binding_kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in r.of_kind(binding_kind) {
            let subjects = b["subjects"].as_array().expect("subjects");
            assert_eq!(subjects.len(), 1, "{}: {b}", r.name());
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(
                s(&subjects[0]["name"]),
                sa,
                "{}: binds another account",
                r.name()
            );
            assert_eq!(s(&subjects[0]["namespace"]), sa_ns);
            let scope = b["metadata"]["namespace"].as_str().unwrap_or("");
            assert_eq!(
                scope.is_empty(),
                binding_kind == "ClusterRoleBinding",
                "{b}"
            );
            let role_kind = s(&b["roleRef"]["kind"]);
            let role_name = s(&b["roleRef"]["name"]);
            let role = r
                .objects()
                .find(|o| {
                    o["kind"] == role_kind
                        && o["metadata"]["name"] == role_name
                        && o["metadata"]["namespace"].as_str().unwrap_or("") == scope
                })
                .unwrap_or_else(|| panic!("{}: {role_kind} {role_name} not rendered", r.name()));
            out.entry(scope.to_string())
                .or_default()
                .extend(grants(&role["rules"]));
        }
    }
    // Every role the chart renders is one of the bound ones.
    let bound = r.of_kind("ClusterRoleBinding").len() + r.of_kind("RoleBinding").len();
    assert_eq!(
        r.of_kind("ClusterRole").len() + r.of_kind("Role").len(),
        bound,
        "{}: unbound roles",
        r.name()
    );
    out
}

#[test]
fn rbac_grants_exactly_what_the_operator_uses_in_every_value_set() {
    for case in CASES {
        let r = rendered(case);
        let scope = r.env_value("WATCH_NAMESPACE").unwrap_or("").to_string();
        let mut want: BTreeMap<String, BTreeSet<Grant>> = BTreeMap::new();
        want.insert(scope.clone(), operator_grants());
        if enabled(case, &["identity", "serviceAccountTokens"]) {
            want.entry(scope.clone())
                .or_default()
                .extend(service_account_token_grants());
        }
        if enabled(case, &["serviceAccountPatching", "enabled"]) {
            want.entry(scope.clone())
                .or_default()
                .extend(service_account_patching_grants());
        }
        if rules_select_namespaces(case) {
            want.entry(scope.clone()).or_default().extend(expected(&[(
                "",
                "namespaces",
                &["list", "watch"],
                None,
            )]));
        }
        if enabled(case, &["clusterPullSecrets", "enabled"]) {
            assert_eq!(scope, "", "{}: the cluster kind is cluster-wide", r.name());
            want.entry(scope)
                .or_default()
                .extend(cluster_pull_secret_grants());
        }
        if r.env_value("LEADER_ELECTION") == Some("true") {
            // The binary's default Lease name, unless the chart names it.
            let lease = r
                .env_value("LEASE_NAME")
                .unwrap_or("ecr-public-pull-secret-operator");
            want.entry(RELEASE_NS.to_string())
                .or_default()
                .extend(lease_grants(lease));
        }
        assert_eq!(effective_grants(r), want, "{}", r.name());
    }
}

#[test]
fn default_install_is_cluster_wide_without_lease_permissions() {
    let r = rendered("");
    assert_eq!(r.of_kind("ClusterRole").len(), 1);
    assert_eq!(r.of_kind("ClusterRoleBinding").len(), 1);
    assert!(
        r.of_kind("Role").is_empty(),
        "no Role without leader election"
    );
    assert_eq!(r.env_value("LEADER_ELECTION"), Some("false"));
    assert!(r.env_value("WATCH_NAMESPACE").is_none());
    let all = grants(&r.one("ClusterRole")["rules"]);
    assert!(!all.iter().any(|g| g.1 == "leases"), "{all:?}");
    assert!(
        !all.iter().any(|g| g.0 == "*" || g.1 == "*" || g.2 == "*"),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|g| g.1 == "secrets" && g.2 == "delete"),
        "{all:?}"
    );
}

#[test]
fn tenant_identities_are_opt_in_and_reach_the_binary() {
    let r = rendered("");
    assert!(r.env_value("ALLOWED_ROLE_ARNS").is_none());
    assert_eq!(r.env_value("AWS_CREDENTIALS_REFRESH_BEFORE"), Some("5m"));
    let all = grants(&r.one("ClusterRole")["rules"]);
    assert!(
        !all.iter().any(|g| g.1.starts_with("serviceaccounts")),
        "ServiceAccount access only when identity.serviceAccountTokens is on: {all:?}"
    );
    let r = rendered("tenant-identities.yaml");
    assert_eq!(
        r.env_value("ALLOWED_ROLE_ARNS"),
        Some("arn:aws:iam::123456789012:role/ecr-public-*")
    );
    let all = grants(&r.one("ClusterRole")["rules"]);
    assert!(service_account_token_grants().is_subset(&all), "{all:?}");
    let r = rendered("everything.yaml");
    assert_eq!(
        r.env_value("ALLOWED_ROLE_ARNS"),
        Some("arn:aws:iam::123456789012:role/ecr-public-*,arn:aws:iam::210987654321:role/teams/*")
    );
    assert_eq!(r.env_value("AWS_CREDENTIALS_REFRESH_BEFORE"), Some("10m"));
    // Rules reach the binary as the JSON it parses; the cluster kind's list and the cap as set.
    let r = rendered("role-rules.yaml");
    let rules: serde_json::Value =
        serde_json::from_str(r.env_value("ROLE_RULES").expect("ROLE_RULES")).unwrap();
    assert_eq!(rules[1]["namespaceSelector"]["matchLabels"]["tier"], "prod");
    assert_eq!(
        r.env_value("CLUSTER_ALLOWED_ROLE_ARNS"),
        Some("arn:aws:iam::123456789012:role/platform-puller")
    );
    assert_eq!(r.env_value("MAX_IDENTITIES_PER_NAMESPACE"), Some("5"));
    assert_eq!(
        rendered("").env_value("MAX_IDENTITIES_PER_NAMESPACE"),
        Some("10")
    );
    assert!(rendered("").env_value("ROLE_RULES").is_none());
}

#[test]
fn cluster_pull_secrets_and_service_account_patching_are_opt_in_and_reach_the_binary() {
    let accepted = binary_env_names();
    for name in ["CLUSTER_PULL_SECRETS", "PATCH_SERVICE_ACCOUNTS"] {
        assert!(
            accepted.contains(name),
            "{name} is not a flag: {accepted:?}"
        );
    }

    // Default install: neither variable, and none of their grants.
    let r = rendered("");
    assert!(r.env_value("CLUSTER_PULL_SECRETS").is_none());
    assert!(r.env_value("PATCH_SERVICE_ACCOUNTS").is_none());
    let all = grants(&r.one("ClusterRole")["rules"]);
    assert!(!all.iter().any(|g| g.1 == "namespaces"), "{all:?}");
    assert!(
        !all.iter()
            .any(|g| g.1.starts_with("clusterecrpublicpullsecrets")),
        "{all:?}"
    );
    assert!(!all.iter().any(|g| g.1 == "serviceaccounts"), "{all:?}");
    assert!(
        !all.iter().any(|g| g.1 == "secrets" && g.2 == "delete"),
        "{all:?}"
    );
    assert!(r.of_kind("Role").is_empty(), "{}", r.name());

    // The cluster kind alone: its grants, cluster-wide, and no ServiceAccount access.
    let r = rendered("cluster-pull-secrets-only.yaml");
    assert_eq!(r.env_value("CLUSTER_PULL_SECRETS"), Some("true"));
    assert!(r.env_value("PATCH_SERVICE_ACCOUNTS").is_none());
    assert!(r.env_value("WATCH_NAMESPACE").is_none());
    let all = grants(&r.one("ClusterRole")["rules"]);
    let want: BTreeSet<Grant> = operator_grants()
        .union(&cluster_pull_secret_grants())
        .cloned()
        .collect();
    assert_eq!(all, want);

    // Both, with tenant ServiceAccount tokens: the ServiceAccount grants merge (get from the tokens).
    let r = rendered("cluster-pull-secrets.yaml");
    assert_eq!(r.env_value("CLUSTER_PULL_SECRETS"), Some("true"));
    assert_eq!(r.env_value("PATCH_SERVICE_ACCOUNTS"), Some("true"));
    let all = grants(&r.one("ClusterRole")["rules"]);
    let sa: BTreeSet<&str> = all
        .iter()
        .filter(|g| g.1 == "serviceaccounts")
        .map(|g| g.2.as_str())
        .collect();
    assert_eq!(sa, BTreeSet::from(["get", "list", "watch", "patch"]));
    assert!(cluster_pull_secret_grants().is_subset(&all), "{all:?}");
    assert!(service_account_token_grants().is_subset(&all), "{all:?}");

    // ServiceAccount patching in one namespace: a Role there, nothing cluster-wide.
    let r = rendered("watch-namespace-service-account-patching.yaml");
    assert_eq!(r.env_value("PATCH_SERVICE_ACCOUNTS"), Some("true"));
    assert!(r.env_value("CLUSTER_PULL_SECRETS").is_none());
    assert!(r.of_kind("ClusterRole").is_empty());
    let role = r.one("Role");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    let want: BTreeSet<Grant> = operator_grants()
        .union(&service_account_patching_grants())
        .cloned()
        .collect();
    assert_eq!(grants(&role["rules"]), want);

    let r = rendered("everything.yaml");
    assert_eq!(r.env_value("CLUSTER_PULL_SECRETS"), Some("true"));
    assert_eq!(r.env_value("PATCH_SERVICE_ACCOUNTS"), Some("true"));
}

#[test]
fn cluster_pull_secrets_cannot_be_combined_with_watch_namespace() {
    let dir = scratch_dir("cluster-in-namespace");
    let file = dir.join("values.yaml");
    let chart = chart_dir();
    let args = [
        "render",
        chart.to_str().unwrap(),
        "-f",
        file.to_str().unwrap(),
    ];
    std::fs::write(
        &file,
        "watchNamespace: team-a\nclusterPullSecrets:\n  enabled: true\n",
    )
    .unwrap();
    let stderr = helm_tool_failure(&args);
    assert!(stderr.contains("HelmRenderError"), "{stderr}");
    assert!(
        stderr.contains("clusterPullSecrets.enabled and watchNamespace cannot be combined"),
        "{stderr}"
    );
    // The values themselves are valid: it is the template that refuses, and only the pair.
    std::fs::write(
        &file,
        "watchNamespace: team-a\nclusterPullSecrets:\n  enabled: false\n",
    )
    .unwrap();
    let out = helm_tool(&args);
    assert!(out.get("schema_error").is_none(), "{out}");
    assert!(!out["objects"].as_array().unwrap().is_empty());
    // Role rules by label need Namespaces cluster-wide too; by name they do not.
    let rules = "identity:\n  roleRules:\n    - {namespaceSelector: {matchLabels: {a: b}}, \
                 roleArns: [arn:aws:iam::123456789012:role/r]}\n";
    std::fs::write(&file, format!("watchNamespace: team-a\n{rules}")).unwrap();
    let stderr = helm_tool_failure(&args);
    assert!(
        stderr.contains("roleRules with a namespaceSelector and watchNamespace cannot be combined"),
        "{stderr}"
    );
    let rules = rules.replace(
        "namespaceSelector: {matchLabels: {a: b}}",
        "namespaces: [team-a]",
    );
    std::fs::write(&file, format!("watchNamespace: team-a\n{rules}")).unwrap();
    assert!(helm_tool(&args).get("schema_error").is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn pod_identity_needs_no_annotation_and_may_reach_the_agent() {
    let r = rendered("pod-identity.yaml");
    let sa = r.one("ServiceAccount");
    assert!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_null());
    let egress = r.one("NetworkPolicy")["spec"]["egress"].as_array().unwrap();
    assert!(
        egress
            .iter()
            .any(|e| e["to"][0]["ipBlock"]["cidr"] == "169.254.170.23/32"
                && e["ports"][0]["port"] == 80),
        "{egress:?}"
    );
}

#[test]
fn watch_namespace_switches_to_a_role_in_that_namespace() {
    let r = rendered("watch-namespace.yaml");
    assert!(r.of_kind("ClusterRole").is_empty());
    assert!(r.of_kind("ClusterRoleBinding").is_empty());
    assert_eq!(r.env_value("WATCH_NAMESPACE"), Some("team-a"));
    let role = r.one("Role");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(grants(&role["rules"]), operator_grants());
    let binding = r.one("RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["subjects"][0]["namespace"], RELEASE_NS);
}

#[test]
fn three_replicas_turn_leader_election_on_with_a_lease_role_in_the_release_namespace() {
    let r = rendered("replicas-3.yaml");
    assert_eq!(r.one("Deployment")["spec"]["replicas"], 3);
    assert_eq!(r.env_value("LEADER_ELECTION"), Some("true"));
    let lease = r.env_value("LEASE_NAME").expect("LEASE_NAME");
    let role = r.one("Role");
    assert_eq!(role["metadata"]["namespace"], RELEASE_NS);
    assert_eq!(grants(&role["rules"]), lease_grants(lease));
    // Standbys must not block a rolling update.
    assert_eq!(
        r.one("Deployment")["spec"]["strategy"]["type"],
        "RollingUpdate"
    );

    // leaderElection.enabled turns it on with one replica too.
    let r = rendered("everything.yaml");
    assert_eq!(r.env_value("LEADER_ELECTION"), Some("true"));
    assert_eq!(r.env_value("LEASE_NAME"), Some("epps-leader"));
    assert_eq!(r.env_value("LEASE_DURATION"), Some("30s"));
}

// ---------------------------------------------------------------------------------------------
// The pod

#[test]
fn pod_runs_non_root_read_only_without_capabilities() {
    for case in CASES {
        let r = rendered(case);
        let pod = &r.pod_spec()["securityContext"];
        let c = &r.container()["securityContext"];
        let what = r.name();
        assert_eq!(pod["runAsNonRoot"], true, "{what}");
        assert_eq!(pod["runAsUser"], 65532, "{what}");
        assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        assert_eq!(c["runAsNonRoot"], true, "{what}");
        assert_eq!(c["runAsUser"], 65532, "{what}");
        assert_eq!(c["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(c["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(strings(&c["capabilities"]["drop"]), ["ALL"], "{what}");
        assert!(c["capabilities"].get("add").is_none(), "{what}");
        assert_eq!(c["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        assert!(c.get("privileged").is_none_or(|p| p == false), "{what}");
        // No volumes: nothing is written anywhere.
        assert!(r.pod_spec().get("volumes").is_none(), "{what}");
        assert!(r.container().get("volumeMounts").is_none(), "{what}");
    }
    let res = &rendered("").container()["resources"];
    assert_eq!(res["requests"]["cpu"], "10m");
    assert_eq!(res["requests"]["memory"], "32Mi");
    assert_eq!(res["limits"]["memory"], "128Mi");
}

#[test]
fn probes_and_service_reach_the_port_http_addr_listens_on() {
    for case in CASES {
        let r = rendered(case);
        let what = r.name();
        let port = r.http_port();
        let addr = r.env_value("HTTP_ADDR").expect("HTTP_ADDR");
        let addr: std::net::SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("{what}: HTTP_ADDR {addr}: {e}"));
        assert_eq!(u64::from(addr.port()), port, "{what}");
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            let get = &r.container()[probe]["httpGet"];
            assert_eq!(get["path"], path, "{what}: {probe}");
            assert!(
                get["port"] == "http" || get["port"] == port,
                "{what}: {probe} port {}",
                get["port"]
            );
        }
        let svc = r.one("Service");
        let deploy = r.one("Deployment");
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                &deploy["spec"]["template"]["metadata"]["labels"][k], v,
                "{what}: Service selects the pods"
            );
        }
        let svc_port = &svc["spec"]["ports"][0];
        assert!(
            svc_port["targetPort"] == "http" || svc_port["targetPort"] == port,
            "{what}"
        );
        for monitor in r.of_kind("ServiceMonitor") {
            assert_eq!(
                monitor["spec"]["endpoints"][0]["port"], svc_port["name"],
                "{what}"
            );
        }
    }
    // An IPv6 bind address is bracketed.
    assert_eq!(
        rendered("everything.yaml").env_value("HTTP_ADDR"),
        Some("[::]:9090")
    );
}

/// `[env: NAME=` entries of the binary's `--help`.
fn binary_env_names() -> BTreeSet<String> {
    let out = Command::new(BIN)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run binary");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    help.split("[env: ")
        .skip(1)
        .map(|rest| rest[..rest.find('=').expect("[env: NAME=")].to_string())
        .collect()
}

#[test]
fn every_env_var_the_chart_sets_is_a_flag_of_the_binary_and_parses() {
    let accepted = binary_env_names();
    assert!(
        accepted.contains("WATCH_NAMESPACE"),
        "help parsing: {accepted:?}"
    );
    for case in CASES {
        let r = rendered(case);
        // extraEnv may hold the AWS SDK's own variables; everything else comes from the chart.
        let extra: BTreeSet<String> = r.values()["extraEnv"]
            .as_sequence()
            .map(|list| {
                list.iter()
                    .map(|e| e["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut cmd = Command::new(BIN);
        cmd.arg("crd").env_clear();
        for (name, entry) in r.env() {
            if !extra.contains(&name) {
                assert!(
                    accepted.contains(&name),
                    "{}: the chart sets {name}, which the binary does not read (its flags: {accepted:?})",
                    r.name()
                );
            }
            // Downward-API values become what the kubelet would put there.
            let value = match entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => "epps-7d9f8b6c5d-x2x9q",
                Some("metadata.namespace") => RELEASE_NS,
                Some(other) => panic!("unexpected fieldRef {other}"),
                None => s(&entry["value"]),
            };
            cmd.env(&name, value);
        }
        // clap parses (and rejects) every flag's environment value even for the `crd` command, so
        // this runs the binary's own parsing on exactly what the pod gets.
        let out = cmd.output().expect("run binary");
        assert!(
            out.status.success(),
            "{}: the binary rejects the chart's environment: {}",
            r.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And that check can fail.
    let out = Command::new(BIN)
        .arg("crd")
        .env_clear()
        .env("LEASE_DURATION", "15 seconds")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a bad value must be rejected");
}

#[test]
fn chart_passes_pod_identity_and_settings_through_the_environment() {
    let r = rendered("");
    let env = r.env();
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(r.env_value("LOG_FORMAT"), Some("json"));

    let r = rendered("everything.yaml");
    assert_eq!(r.env_value("LOG_FORMAT"), Some("text"));
    assert_eq!(
        r.env_value("RUST_LOG"),
        Some("info,ecr_public_pull_secret_operator=debug")
    );
    assert_eq!(r.env_value("DEFAULT_REFRESH_BEFORE"), Some("4h"));
    assert_eq!(r.env_value("AWS_STS_REGIONAL_ENDPOINTS"), Some("regional"));
    let pod = r.pod_spec();
    let c = r.container();
    assert_eq!(
        c["image"],
        "registry.example.com/mirror/ecr-public-pull-secret-operator:0.1.0-rc1"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "mirror-credentials");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(pod["priorityClassName"], "platform-critical");
    let meta = &r.one("Deployment")["spec"]["template"]["metadata"];
    assert_eq!(meta["annotations"]["example.com/owner"], "platform");
    assert_eq!(meta["labels"]["team"], "platform");
    assert_eq!(r.http_port(), 9090);
    let egress = r.one("NetworkPolicy")["spec"]["egress"].as_array().unwrap();
    assert_eq!(
        egress.last().unwrap()["to"][0]["ipBlock"]["cidr"],
        "169.254.170.23/32",
        "networkPolicy.extraEgress"
    );
}

#[test]
fn irsa_annotation_lands_on_the_service_account_the_pod_runs_as() {
    let r = rendered("irsa.yaml");
    let sa = r.one("ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/ecr-public-pull-secret-operator"
    );
    let (name, ns) = r.service_account();
    assert_eq!(sa["metadata"]["name"], name.as_str());
    assert_eq!(sa["metadata"]["namespace"], ns.as_str());
    // The API token and the projected IRSA token both need the mount.
    assert_ne!(r.pod_spec()["automountServiceAccountToken"], false);
}

#[test]
fn an_existing_service_account_is_run_as_and_bound_but_not_created() {
    let r = rendered("existing-service-account.yaml");
    assert!(
        r.of_kind("ServiceAccount").is_empty(),
        "serviceAccount.create=false must not create (or take over) the account"
    );
    let (name, ns) = r.service_account();
    assert_eq!(name, "ecr-puller-made-by-eksctl");
    assert_eq!(ns, RELEASE_NS);
    // Bound to that account (effective_grants checks every binding's subject against it).
    assert_eq!(effective_grants(r)[""], operator_grants());
}

#[test]
fn every_resource_has_the_standard_labels_and_lives_in_its_namespace() {
    for case in CASES {
        let r = rendered(case);
        for obj in r.objects() {
            let labels = &obj["metadata"]["labels"];
            let what = format!("{}: {} {}", r.name(), obj["kind"], obj["metadata"]["name"]);
            assert_eq!(labels["app.kubernetes.io/name"], CHART_NAME, "{what}");
            assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{what}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
            assert_eq!(
                labels["app.kubernetes.io/version"],
                env!("CARGO_PKG_VERSION"),
                "{what}"
            );
            let cluster_scoped = matches!(s(&obj["kind"]), "ClusterRole" | "ClusterRoleBinding");
            let ns = obj["metadata"]["namespace"].as_str();
            if cluster_scoped {
                assert!(ns.is_none(), "{what}");
            } else if !matches!(s(&obj["kind"]), "Role" | "RoleBinding") {
                assert_eq!(ns, Some(RELEASE_NS), "{what}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Monitoring and network policy

#[test]
fn service_monitor_scrapes_the_metrics_service_keeping_the_secret_labels() {
    let r = rendered("monitoring.yaml");
    let monitor = r.one("ServiceMonitor");
    let svc = r.one("Service");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&svc["metadata"]["labels"][k], v, "selects the Service");
    }
    assert_eq!(
        strings(&monitor["spec"]["namespaceSelector"]["matchNames"]),
        [RELEASE_NS]
    );
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    let ep = &endpoints[0];
    assert_eq!(ep["path"], "/metrics");
    assert_eq!(ep["interval"], "15s");
    assert_eq!(ep["scrapeTimeout"], "10s");
    // The expiry gauge's own namespace label must survive the scrape.
    assert_eq!(ep["honorLabels"], true);
    // The models used above do not reject unknown fields; these are the Endpoint fields of
    // prometheus-operator's monitoring.coreos.com/v1 API that the chart uses.
    let known: BTreeSet<&str> = ["port", "path", "interval", "scrapeTimeout", "honorLabels"].into();
    for key in ep.as_object().unwrap().keys() {
        assert!(known.contains(key.as_str()), "unknown Endpoint field {key}");
    }
    for key in monitor["spec"].as_object().unwrap().keys() {
        assert!(
            ["selector", "namespaceSelector", "endpoints"].contains(&key.as_str()),
            "unknown ServiceMonitor field {key}"
        );
    }
}

#[test]
fn prometheus_rule_alerts_on_near_expiry_and_persistent_refresh_failure() {
    let r = rendered("monitoring.yaml");
    let rule = r.one("PrometheusRule");
    let entry = r
        .entries()
        .iter()
        .find(|e| e["object"]["kind"] == "PrometheusRule")
        .unwrap();
    let groups = rule["spec"]["groups"].as_array().unwrap();
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let mut alerts = BTreeMap::new();
    for rule in &rules {
        let name = s(&rule["alert"]);
        for key in rule.as_object().unwrap().keys() {
            assert!(
                ["alert", "expr", "for", "labels", "annotations"].contains(&key.as_str()),
                "{name}: unknown Rule field {key}"
            );
        }
        assert!(rule["labels"]["severity"].is_string(), "{name}");
        assert_eq!(rule["labels"]["team"], "platform", "{name}: alertLabels");
        assert!(rule["annotations"]["summary"].is_string(), "{name}");
        let parsed = &entry["promql"][name];
        assert!(parsed["error"].is_null(), "{name}: {}", parsed["error"]);
        for sel in parsed["selectors"].as_array().unwrap() {
            assert!(
                METRICS.contains(&s(&sel["metric"])),
                "{name}: {} is not a metric the operator exports",
                sel["metric"]
            );
        }
        alerts.insert(name, (rule, parsed));
    }
    assert_eq!(alerts.len(), 2, "{alerts:?}");

    let (rule, q) = alerts["EcrPublicPullSecretTokenExpiringSoon"];
    assert_eq!(
        q["selectors"][0]["metric"],
        "epps_secret_token_expiry_timestamp_seconds"
    );
    assert_eq!(strings(&q["functions"]), ["time"]);
    assert_eq!((s(&q["op"]), q["rhs"].as_f64()), ("<", Some(3600.0)));
    assert!(rule["for"].is_string());

    let (rule, q) = alerts["EcrPublicPullSecretRefreshFailing"];
    assert_eq!(rule["for"], "15m");
    assert_eq!(s(&q["op"]), "unless", "errors unless successes");
    let results: Vec<String> = q["selectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sel| {
            assert_eq!(sel["metric"], "epps_token_fetch_total");
            format!(
                "{}={}",
                sel["matchers"][0]["label"], sel["matchers"][0]["value"]
            )
        })
        .collect();
    assert_eq!(results, [r#""result"="error""#, r#""result"="success""#]);
}

#[test]
fn network_policy_allows_dns_the_api_server_https_and_scrapes_only() {
    assert!(rendered("").of_kind("NetworkPolicy").is_empty());
    let r = rendered("network-policy.yaml");
    let np = r.one("NetworkPolicy");
    let spec = &np["spec"];
    assert_eq!(strings(&spec["policyTypes"]), ["Ingress", "Egress"]);
    let deploy = r.one("Deployment");
    assert_eq!(
        spec["podSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    let ingress = spec["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    let port = &ingress[0]["ports"][0]["port"];
    assert!(*port == "http" || *port == r.http_port(), "{port}");
    assert_eq!(ingress[0]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(
        ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );

    // Each egress rule as (ports, destinations); no rule may leave ports open.
    let mut egress = BTreeSet::new();
    for rule in spec["egress"].as_array().unwrap() {
        let ports: BTreeSet<String> = rule["ports"]
            .as_array()
            .expect("every egress rule names its ports")
            .iter()
            .map(|p| format!("{}/{}", p["port"], s(&p["protocol"])))
            .collect();
        let to: BTreeSet<String> = rule["to"]
            .as_array()
            .map(|to| {
                to.iter()
                    .map(|peer| s(&peer["ipBlock"]["cidr"]).to_string())
                    .collect()
            })
            .unwrap_or_default();
        egress.insert((ports, to));
    }
    let set = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<BTreeSet<_>>();
    let want = BTreeSet::from([
        (set(&["53/UDP", "53/TCP"]), set(&[])),
        (
            set(&["443/TCP", "6443/TCP"]),
            set(&["10.100.0.1/32", "172.20.0.0/16"]),
        ),
        (set(&["443/TCP"]), set(&[])),
    ]);
    assert_eq!(egress, want);
}

#[test]
fn notes_tell_the_user_what_to_do_next() {
    let notes = s(&rendered("").out["notes"]);
    assert!(notes.contains("kind: EcrPublicPullSecret"), "{notes}");
    assert!(notes.contains("imagePullSecrets"), "{notes}");
    assert!(notes.contains("public-ecr-pull"), "{notes}");
    assert!(
        notes.contains("eks.amazonaws.com/role-arn"),
        "warns about missing IRSA: {notes}"
    );
    let notes = s(&rendered("irsa.yaml").out["notes"]);
    assert!(!notes.contains("WARNING"), "{notes}");
    let notes = s(&rendered("watch-namespace.yaml").out["notes"]);
    assert!(notes.contains("namespace: team-a"), "{notes}");
    let notes = s(&rendered("replicas-3.yaml").out["notes"]);
    assert!(notes.contains("Leader election is on"), "{notes}");
    assert!(!notes.contains("ClusterEcrPublicPullSecrets"), "{notes}");
    assert!(!notes.contains("ServiceAccount patching"), "{notes}");
    let notes = s(&rendered("cluster-pull-secrets.yaml").out["notes"]);
    assert!(
        notes.contains("ClusterEcrPublicPullSecrets are served"),
        "{notes}"
    );
    assert!(notes.contains("ServiceAccount patching is on"), "{notes}");
}

#[test]
fn values_yaml_documents_every_value() {
    // helm-docs convention: a value (or the map holding it) has a "# --" comment block right above
    // it. Maps without one are groups, and each of their keys needs one instead.
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let mut undocumented = Vec::new();
    // (indent, key, documented) of the enclosing keys.
    let mut stack: Vec<(usize, String, bool)> = Vec::new();
    let mut comment_block: Vec<&str> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            comment_block.push(trimmed);
            continue;
        }
        if trimmed.is_empty() {
            comment_block.clear();
            continue;
        }
        let indent = line.len() - trimmed.len();
        let block = std::mem::take(&mut comment_block);
        if trimmed.starts_with('-') {
            continue;
        }
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        while stack.last().is_some_and(|(d, _, _)| *d >= indent) {
            stack.pop();
        }
        let inherited = stack.iter().any(|(_, _, documented)| *documented);
        let documented = block.iter().any(|c| c.starts_with("# --"));
        let path: Vec<_> = stack
            .iter()
            .map(|(_, k, _)| k.as_str())
            .chain([key])
            .collect();
        let is_group = rest.trim().is_empty()
            && lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .is_some_and(|next| {
                    let t = next.trim_start();
                    next.len() - t.len() > indent && !t.starts_with('-')
                });
        if !inherited && !documented && !is_group {
            undocumented.push(path.join("."));
        }
        stack.push((indent, key.to_string(), documented));
    }
    assert!(
        undocumented.is_empty(),
        "values without a `# --` comment: {undocumented:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// Dockerfile instructions as (KEYWORD, arguments), continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (kw, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((kw.to_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

/// Stages: instructions from one FROM to the next, the FROM included; the global ARGs first.
fn stages() -> Vec<Vec<(String, String)>> {
    let mut stages = vec![Vec::new()];
    for ins in dockerfile() {
        if ins.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().unwrap().push(ins);
    }
    stages
}

/// The crate's binary name, from Cargo.toml through cargo itself.
fn crate_binary() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let meta = run_json(
        Command::new(cargo)
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(Path::new(ROOT).join("Cargo.toml")),
        None,
    );
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == env!("CARGO_PKG_NAME"))
        .expect("package");
    let bins: Vec<&str> = pkg["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| strings(&t["kind"]).contains(&"bin"))
        .map(|t| s(&t["name"]))
        .collect();
    assert_eq!(bins.len(), 1, "{bins:?}");
    bins[0].to_string()
}

#[test]
fn dockerfile_lints_clean_with_dockerfile_utils() {
    let lint = |path: &Path| {
        let tools = tools();
        let out = Command::new(tools.join("node/node_modules/.bin/dockerfile-utils"))
            .arg("lint")
            .arg("--json")
            .arg(path)
            .output()
            .expect("run dockerfile-utils");
        let diagnostics: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "dockerfile-utils printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.success(), diagnostics)
    };
    let (ok, diagnostics) = lint(&Path::new(ROOT).join("Dockerfile"));
    assert!(
        ok && diagnostics.as_array().unwrap().is_empty(),
        "{diagnostics}"
    );
    // The linter does find problems: an unknown protocol is an error.
    let dir = scratch_dir("dockerfile-lint");
    let bad = dir.join("Dockerfile");
    std::fs::write(&bad, "FROM scratch\nEXPOSE 8080/tcpx\n").unwrap();
    let (ok, diagnostics) = lint(&bad);
    assert!(!ok, "{diagnostics}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dockerfile_packages_the_crate_binary_as_non_root_without_a_shell() {
    // One stage: the binary is built by `cargo build --release` outside the image, which CI can do
    // and then build this very file with buildah (`.ci/image`); no Rust image can be pulled there.
    let stages = stages();
    assert_eq!(stages.len(), 2, "global ARGs, then the one runtime stage");
    let args: BTreeMap<&str, &str> = stages[0]
        .iter()
        .map(|(kw, a)| {
            assert_eq!(kw, "ARG", "only ARGs before the first FROM");
            a.split_once('=').expect("ARG with a default")
        })
        .collect();
    assert_eq!(
        args.keys().copied().collect::<Vec<_>>(),
        ["RUNTIME_IMAGE"],
        "the base is the one build argument (.ci/image passes its own)"
    );
    assert!(
        args["RUNTIME_IMAGE"].starts_with("gcr.io/distroless/cc-"),
        "a glibc base (the binary links glibc and libgcc_s): {args:?}"
    );
    assert_eq!(stages[1][0].1, "${RUNTIME_IMAGE}");

    let bin = crate_binary();
    let path = format!("/usr/local/bin/{bin}");
    let last = &stages[1];
    let get = |kw: &str| -> Vec<&str> {
        last.iter()
            .filter(|(k, _)| k == kw)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    // Numeric, so Kubernetes' runAsNonRoot can verify it, and the chart's uid.
    let user = get("USER");
    assert_eq!(user.len(), 1);
    let (uid, gid) = user[0].split_once(':').expect("USER uid:gid");
    let uid: u32 = uid.parse().expect("numeric uid");
    let _: u32 = gid.parse().expect("numeric gid");
    assert_ne!(uid, 0);
    assert_eq!(
        rendered("").container()["securityContext"]["runAsUser"],
        uid
    );
    // Exec form: a JSON array, so no shell is needed or started.
    let entrypoint = get("ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1);
    let entrypoint: Vec<String> =
        serde_json::from_str(entrypoint[0]).expect("exec-form ENTRYPOINT (a JSON array)");
    assert_eq!(entrypoint, std::slice::from_ref(&path));
    assert!(
        get("CMD").is_empty() && get("RUN").is_empty(),
        "no shell in distroless"
    );
    // The release binary, where `cargo build --release` puts it.
    assert_eq!(get("COPY"), [format!("target/release/{bin} {path}")]);
    assert_eq!(get("EXPOSE"), [rendered("").http_port().to_string()]);
}

#[test]
fn dockerignore_admits_exactly_what_the_dockerfile_copies() {
    // The build context is the repository; .dockerignore must let in the COPY sources and keep
    // out the rest (sources, VCS data, every other build output), however large target/ grows.
    let ignore = dockerignore();
    let copied: Vec<String> = stages()
        .iter()
        .flatten()
        .filter(|(kw, _)| kw == "COPY")
        .flat_map(|(_, args)| {
            let parts: Vec<&str> = args.split_whitespace().collect();
            let (_dest, sources) = parts.split_last().unwrap();
            sources.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert!(!copied.is_empty());
    for src in &copied {
        assert!(!src.starts_with("--"), "COPY {src}: from the context only");
        assert!(!excluded(&ignore, src), "{src} is copied but excluded");
    }
    for other in [
        "Cargo.toml",
        "src/main.rs",
        ".git/HEAD",
        "charts/ecr-public-pull-secret-operator/Chart.yaml",
        "target/debug/ecr-public-pull-secret-operator",
        "target/release/deps/ecr_public_pull_secret_operator-0123.d",
        "target/release/ecr-public-pull-secret-operator.d",
        "target/chart-tools/python/bin/python3",
        "fuzz/target/x",
    ] {
        assert!(excluded(&ignore, other), "{other} is in the build context");
    }
}

fn dockerignore() -> Vec<String> {
    std::fs::read_to_string(Path::new(ROOT).join(".dockerignore"))
        .expect(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Whether .dockerignore `patterns` exclude a path, as Docker reads them: the last pattern that
/// matches decides, a `!` pattern letting the path back in. Enough of Docker's matching for the
/// patterns used here: a pattern matches a path or one of its parent directories, `*` within a
/// segment, and a leading `**/` for any depth.
fn excluded(patterns: &[String], path: &str) -> bool {
    let mut out = false;
    for p in patterns {
        let (negated, pattern) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        if matches(pattern, path) {
            out = !negated;
        }
    }
    out
}

fn matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    let (anywhere, pattern) = match pattern.strip_prefix("**/") {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let starts = if anywhere { 0..segs.len() } else { 0..1 };
    starts.into_iter().any(|start| {
        segs.len() >= start + pat.len()
            && pat
                .iter()
                .zip(&segs[start..])
                .all(|(p, s)| glob_segment(p, s))
    })
}

fn glob_segment(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.starts_with(head) && (head.len()..=s.len()).any(|i| glob_segment(tail, &s[i..]))
        }
    }
}

#[test]
fn dockerignore_matching_works_for_the_patterns_in_use() {
    let p = |ps: &[&str]| ps.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(excluded(&p(&["target/"]), "target"));
    assert!(excluded(&p(&["target/"]), "target/release/x"));
    assert!(excluded(&p(&["**/target/"]), "tests/harness/target"));
    assert!(excluded(&p(&["**/*.rs.bk"]), "src/main.rs.bk"));
    assert!(!excluded(&p(&["target/"]), "src/target.rs"));
    assert!(excluded(&p(&["*"]), "src/lib.rs"), "a parent matches");
    // The last matching pattern wins.
    let in_again = p(&["*", "!target/release/x"]);
    assert!(!excluded(&in_again, "target/release/x"));
    assert!(excluded(&in_again, "target/release/y"));
    assert!(excluded(
        &p(&["!target/release/x", "*"]),
        "target/release/x"
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
