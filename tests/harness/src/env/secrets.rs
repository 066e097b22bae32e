//! Reading Secrets and statuses as a user would: the docker config in a Secret, Ready
//! conditions, and an audit of every Secret version the operator writes during a test.

use std::time::Duration;

use super::{CRS, Env, Kube, SECRETS};

pub fn base64_auth(password: &str) -> String {
    base64_of(&format!("AWS:{password}"))
}

/// Standard base64, as a Secret's `data` holds its values.
pub fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Decoded `.dockerconfigjson` of a Secret object from the emulator.
pub fn docker_config(secret: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let data = secret["data"][".dockerconfigjson"]
        .as_str()
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

/// The Ready condition of an object, if any.
pub fn ready(obj: &serde_json::Value) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// The message of a CR's Ready condition ("" when there is none).
pub fn cr_message(k8s: &Kube, ns: &str, name: &str) -> String {
    k8s.get(CRS, Some(ns), name)
        .and_then(|cr| {
            cr["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .and_then(|c| c["message"].as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

/// Whether a Secret is ready for a CR: Secret exists with a token and the CR reports Ready=True.
pub fn cr_ready(k8s: &Kube, ns: &str, name: &str) -> bool {
    k8s.get(CRS, Some(ns), name)
        .and_then(|cr| ready(&cr))
        .is_some_and(|(s, _)| s == "True")
}

pub fn cr_reason(k8s: &Kube, ns: &str, name: &str) -> Option<String> {
    k8s.get(CRS, Some(ns), name)
        .and_then(|cr| ready(&cr))
        .map(|(_, r)| r)
}

/// Checks one Secret version as a kubelet would use it. `Ok(true)` when it holds a token, which
/// must then be well formed (`AWS:<password>` in base64, matching `password`) and annotated with
/// an `expires-at` in the future (and not absurdly far). Messages never contain token material.
pub fn check_secret(
    secret: &serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, String> {
    let config = docker_config(secret);
    let Some(auths) = config["auths"].as_object() else {
        return Err("data[.dockerconfigjson] is not a docker config with auths".into());
    };
    if auths.is_empty() {
        return Ok(false);
    }
    for (host, entry) in auths {
        let password = entry["password"].as_str().unwrap_or_default();
        if entry["username"] != "AWS" || password.is_empty() {
            return Err(format!(
                "auths[{host}] has no AWS user or an empty password"
            ));
        }
        if entry["auth"].as_str() != Some(base64_auth(password).as_str()) {
            return Err(format!(
                "auths[{host}].auth is not base64(\"AWS:\" + password)"
            ));
        }
    }
    let annotation = |k: &str| {
        secret["metadata"]["annotations"][k]
            .as_str()
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let Some(expires) = annotation("ecrpublic.pullsecrets.dev/expires-at") else {
        return Err("holds a token but no parsable expires-at annotation".into());
    };
    if expires <= now {
        return Err(format!("written with a token that expired at {expires}"));
    }
    if expires - now > chrono::Duration::days(1) {
        return Err(format!(
            "written with a token claiming to live until {expires}"
        ));
    }
    if annotation("ecrpublic.pullsecrets.dev/refreshed-at").is_none_or(|r| r > expires) {
        return Err("refreshed-at annotation missing or after expires-at".into());
    }
    Ok(true)
}

#[derive(Default)]
struct AuditState {
    seen: std::collections::HashSet<String>,
    with_token: usize,
    violations: Vec<String>,
    /// Ready (status, reason) per CR `namespace/name`, consecutive duplicates dropped.
    reasons: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

/// Watches the emulator for the whole test: checks every Secret version it observes with
/// [`check_secret`] (at the time it appears) and records every Ready (status, reason) each CR
/// shows. It re-checks on every emulator change, so it sees a version unless two writes of the
/// same Secret land between two changes it is woken for.
pub struct SecretAudit {
    k8s: Kube,
    state: std::sync::Arc<std::sync::Mutex<AuditState>>,
    task: tokio::task::JoinHandle<()>,
}

fn audit_once(k8s: &Kube, state: &std::sync::Mutex<AuditState>) {
    let now = chrono::Utc::now();
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for secret in k8s.list(SECRETS, None) {
        let id = format!(
            "{}/{}@{}",
            secret["metadata"]["namespace"].as_str().unwrap_or_default(),
            secret["metadata"]["name"].as_str().unwrap_or_default(),
            secret["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
        );
        if !st.seen.insert(id.clone()) {
            continue;
        }
        match check_secret(&secret, now) {
            Ok(true) => st.with_token += 1,
            Ok(false) => {}
            Err(e) => st.violations.push(format!("Secret {id}: {e}")),
        }
    }
    for cr in k8s.list(CRS, None) {
        let Some(r) = ready(&cr) else { continue };
        let key = format!(
            "{}/{}",
            cr["metadata"]["namespace"].as_str().unwrap_or_default(),
            cr["metadata"]["name"].as_str().unwrap_or_default()
        );
        let seen = st.reasons.entry(key).or_default();
        if seen.last() != Some(&r) {
            seen.push(r);
        }
    }
}

impl SecretAudit {
    pub fn start(env: &Env) -> SecretAudit {
        let k8s = env.k8s.clone();
        let state = std::sync::Arc::new(std::sync::Mutex::new(AuditState::default()));
        let (k, st) = (k8s.clone(), state.clone());
        let task = tokio::spawn(async move {
            k.wait_until(Duration::from_secs(3600), |k| {
                audit_once(k, &st);
                false
            })
            .await;
        });
        SecretAudit { k8s, state, task }
    }

    /// Every Ready (status, reason) the CR has shown so far, in order.
    pub fn reasons(&self, namespace: &str, name: &str) -> Vec<(String, String)> {
        audit_once(&self.k8s, &self.state);
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.reasons
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the CR ever showed this Ready reason.
    pub fn saw_reason(&self, namespace: &str, name: &str, reason: &str) -> bool {
        self.reasons(namespace, name)
            .iter()
            .any(|(_, r)| r == reason)
    }

    /// Checks the current state once more, stops, and panics on any violation. Returns how many
    /// distinct Secret versions holding a token were observed.
    pub fn finish(self) -> usize {
        audit_once(&self.k8s, &self.state);
        self.task.abort();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            st.violations.is_empty(),
            "bad Secret versions were written: {:#?}",
            st.violations
        );
        st.with_token
    }
}

impl Drop for SecretAudit {
    fn drop(&mut self) {
        self.task.abort();
    }
}
