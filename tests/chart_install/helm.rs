//! The real `helm` and `kubectl` (built by tests/cluster/build.sh) run against the control plane as
//! a user runs them: from the repository root, with an admin kubeconfig, Helm's own directories
//! kept out of `$HOME`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use harness::control_plane::ControlPlane;
use serde::Deserialize;
use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const CHART: &str = "charts/ecr-public-pull-secret-operator";

/// Where Helm keeps its cache, configuration and data (repositories, plugins): this test
/// process's own, so a contributor's Helm set-up neither leaks in nor is touched.
fn helm_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("helm-home-{}", std::process::id()))
}

/// A command with the environment of a user's shell pointed at the control plane.
fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let cp = ControlPlane::shared();
    let home = helm_home();
    let path = format!(
        "{}:{}",
        ControlPlane::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(ROOT)
        .env("PATH", path)
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: tokio::process::Command, what: &str) -> Result<String, String> {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| format!("{what}: no answer within 120 s"))?
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what}: {}\n{}{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `helm <args>`; stdout, or the error with everything it printed.
pub async fn helm(args: &[&str]) -> Result<String, String> {
    let mut cmd = command(ControlPlane::binary("helm"));
    cmd.args(args);
    output(cmd, &format!("helm {}", args.join(" "))).await
}

/// `kubectl <args>` as the admin.
pub async fn kubectl(args: &[&str]) -> Result<String, String> {
    let mut cmd = command(ControlPlane::binary("kubectl"));
    cmd.args(args);
    output(cmd, &format!("kubectl {}", args.join(" "))).await
}

/// `kubectl <args>` with another kubeconfig (a ServiceAccount's); the file is not printed.
pub async fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let mut cmd = command(ControlPlane::binary("kubectl"));
    cmd.env("KUBECONFIG", kubeconfig).args(args);
    output(
        cmd,
        &format!("kubectl {} (as another user)", args.join(" ")),
    )
    .await
}

/// A command line from the README run by bash, with `helm` and `kubectl` on the PATH.
pub async fn shell(line: &str) -> Result<String, String> {
    let mut cmd = command("bash");
    cmd.args(["-euo", "pipefail", "-c", line]);
    output(cmd, line).await
}

/// The README's command that starts with `start`: an indented code line with its `\`
/// continuations, or an inline `code span`.
pub fn readme_command(start: &str) -> String {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    if let Some(i) = lines
        .iter()
        .position(|l| l.starts_with("    ") && l.trim_start().starts_with(start))
    {
        let mut command = String::new();
        for line in &lines[i..] {
            let line = line.trim();
            match line.strip_suffix('\\') {
                Some(part) => command.push_str(part),
                None => {
                    command.push_str(line);
                    return command;
                }
            }
        }
    }
    readme
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|span| span.starts_with(start))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the README has no command starting with {start:?}"))
}

/// The YAML documents of a multi-document text (Helm's manifests), as JSON; empty ones skipped.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("manifest YAML: {e}"));
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// One Helm release of the chart.
pub struct Release {
    pub name: String,
    pub ns: String,
    /// `-f` and `--set` arguments: the values set.
    pub values: Vec<String>,
}

impl Release {
    fn args<'a>(&'a self, verb: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![verb, self.name.as_str(), CHART, "-n", self.ns.as_str()];
        args.extend(self.values.iter().map(String::as_str));
        args.extend_from_slice(extra);
        args
    }

    /// `helm install`: Helm creates every object or fails.
    pub async fn install(&self) -> String {
        helm(&self.args("install", &[]))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `helm upgrade --reuse-values` with more values, as the README upgrades.
    pub async fn upgrade(&self, extra: &[&str]) {
        let mut args = vec!["upgrade", self.name.as_str(), CHART, "-n", self.ns.as_str()];
        args.push("--reuse-values");
        args.extend_from_slice(extra);
        helm(&args).await.unwrap_or_else(|e| panic!("{e}"));
    }

    pub async fn uninstall(&self) {
        helm(&["uninstall", &self.name, "-n", &self.ns])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The objects of the deployed revision, as Helm rendered them.
    pub async fn manifest(&self) -> Vec<Value> {
        let text = helm(&["get", "manifest", &self.name, "-n", &self.ns])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        documents(&text)
    }
}

/// `kind/namespace/name` of an object, for messages and comparisons.
pub fn object_key(obj: &Value) -> String {
    let meta = &obj["metadata"];
    format!(
        "{}/{}/{}",
        obj["kind"].as_str().unwrap_or_default(),
        meta["namespace"].as_str().unwrap_or("-"),
        meta["name"].as_str().unwrap_or_default()
    )
}

/// Which of `objects` the API server has (`kubectl get -f`, by the objects' own namespaces).
pub async fn present(objects: &[Value]) -> Vec<String> {
    if objects.is_empty() {
        return Vec::new();
    }
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "objects-{}-{}.json",
        std::process::id(),
        fastrand::u32(..)
    ));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(&file, list.to_string()).expect("write objects");
    let out = kubectl(&[
        "get",
        "-f",
        file.to_str().unwrap(),
        "--ignore-not-found",
        "-o",
        "json",
    ])
    .await;
    let _ = std::fs::remove_file(&file);
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    // One List per kind, concatenated, or a single object.
    let mut found = Vec::new();
    for doc in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        let doc = doc.expect("kubectl JSON");
        match doc["items"].as_array() {
            Some(items) => found.extend(items.iter().map(object_key)),
            None if doc.is_object() => found.push(object_key(&doc)),
            None => {}
        }
    }
    found.sort();
    found
}
