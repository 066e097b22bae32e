//! The Kubernetes API a test talks to: the in-repo emulator or a real kube-apiserver
//! ([`crate::control_plane`]), behind one interface so that one test body runs on either.
//!
//! Reads (`get`, `list`) and waits are synchronous views of the state: the emulator's own, or a
//! [`Mirror`] of the real server kept by watches. Writes go through the API on a real server,
//! so they are async; each returns once the mirror shows its result, so a test reads its own
//! writes. The request log is the emulator's, or the real server's audit log restricted to the
//! operator's requests (the tests' own set-up is not counted on either backend).

pub mod mirror;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, PostParams},
};
use serde_json::{Value, json};

use crate::{
    control_plane::{User, audit},
    kube_api::{Emulator, RequestRecord},
};
pub use mirror::Mirror;

/// The state a test reads and writes.
#[derive(Clone)]
pub enum Kube {
    Emulated(Emulator),
    Real(Arc<Real>),
}

/// A real API server seen through an admin client, a mirror and the audit log.
pub struct Real {
    pub client: Client,
    pub mirror: Mirror,
    audit_log: PathBuf,
    /// Where `requests` starts reading: moved by `clear_requests`.
    audit_offset: Mutex<u64>,
}

impl Real {
    /// Follows the server behind `client` (an admin); requests are counted from now on.
    pub async fn new(client: Client, audit_log: PathBuf) -> Result<Real, String> {
        let mirror = Mirror::start(&client).await?;
        let offset = std::fs::metadata(&audit_log).map_or(0, |m| m.len());
        Ok(Real {
            client,
            mirror,
            audit_log,
            audit_offset: Mutex::new(offset),
        })
    }

    fn api(&self, key: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = mirror::kind(key).api_resource();
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// The object a write stored, once the mirror shows it; or the server's Status.
    async fn stored(
        &self,
        key: &str,
        ns: Option<&str>,
        written: Result<DynamicObject, kube::Error>,
    ) -> Result<Value, Value> {
        let v = serde_json::to_value(written.map_err(api_error)?).unwrap_or_default();
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        self.caught_up(key, ns, name, mirror::revision(&v), false)
            .await;
        Ok(v)
    }

    /// Waits until the mirror holds `name` at `revision` or later (or no longer holds it, for
    /// `gone`); a test then reads what it wrote.
    async fn caught_up(&self, key: &str, ns: Option<&str>, name: &str, revision: u64, gone: bool) {
        let mut changes = self.mirror.changes();
        let done = |m: &Mirror| match m.get(key, ns, name) {
            Some(obj) => mirror::revision(&obj) >= revision && !gone,
            None => gone,
        };
        let wait = async {
            while !done(&self.mirror) {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        // A later change (another writer) may replace ours before the mirror sees it; the
        // bound keeps such a test going instead of hanging it.
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }
}

/// The namespace an object is written to (the argument, else its own) and its name.
fn target(namespace: Option<&str>, obj: &Value) -> (Option<String>, String) {
    let ns = namespace.or_else(|| obj["metadata"]["namespace"].as_str());
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    (ns.map(str::to_string), name.to_string())
}

fn api_error(e: kube::Error) -> Value {
    match e {
        kube::Error::Api(s) => json!({
            "kind": "Status", "status": "Failure", "code": s.code,
            "reason": s.reason, "message": s.message,
        }),
        other => {
            json!({"kind": "Status", "status": "Failure", "code": 0, "message": other.to_string()})
        }
    }
}

fn to_dynamic(obj: Value) -> Result<DynamicObject, Value> {
    serde_json::from_value(obj).map_err(|e| json!({"message": format!("not an object: {e}")}))
}

impl Kube {
    /// The emulator, for tests that inject faults or reach into its state; `None` on a real
    /// server.
    pub fn emulator(&self) -> Option<&Emulator> {
        match self {
            Kube::Emulated(e) => Some(e),
            Kube::Real(_) => None,
        }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Kube::Real(_))
    }

    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        match self {
            Kube::Emulated(e) => e.get(resource, namespace, name),
            Kube::Real(r) => r.mirror.get(resource, namespace, name),
        }
    }

    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        match self {
            Kube::Emulated(e) => e.list(resource, namespace),
            Kube::Real(r) => r.mirror.list(resource, namespace),
        }
    }

    /// Creates an object; the stored object, or the server's Status.
    pub async fn create(
        &self,
        resource: &str,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, Value> {
        match self {
            Kube::Emulated(e) => e.create(resource, namespace, obj),
            Kube::Real(r) => {
                let (ns, _) = target(namespace, &obj);
                let created = r
                    .api(resource, ns.as_deref())
                    .create(&PostParams::default(), &to_dynamic(obj)?)
                    .await;
                r.stored(resource, ns.as_deref(), created).await
            }
        }
    }

    /// Replaces an object (PUT), with the resourceVersion it carries as precondition.
    pub async fn replace(
        &self,
        resource: &str,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, Value> {
        match self {
            Kube::Emulated(e) => e.replace(resource, namespace, obj),
            Kube::Real(r) => {
                let (ns, name) = target(namespace, &obj);
                let replaced = r
                    .api(resource, ns.as_deref())
                    .replace(&name, &PostParams::default(), &to_dynamic(obj)?)
                    .await;
                r.stored(resource, ns.as_deref(), replaced).await
            }
        }
    }

    /// Changes an object as `kubectl edit` does: read it, change it, replace it with the read
    /// resourceVersion as precondition; on a conflict (someone wrote in between, the operator's
    /// status say) read it again once the newer version shows and redo the change. The object
    /// must exist.
    pub async fn edit(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        change: impl Fn(&mut Value),
    ) -> Value {
        let current = |k: &Kube| k.get(resource, namespace, name);
        for _ in 0..10 {
            let mut obj = current(self).unwrap_or_else(|| panic!("{resource} {name} to edit"));
            let read = obj["metadata"]["resourceVersion"].clone();
            change(&mut obj);
            match self.replace(resource, namespace, obj).await {
                Ok(stored) => return stored,
                Err(e) if e["code"] == 409 => {
                    let newer = |k: &Kube| {
                        current(k).is_none_or(|o| o["metadata"]["resourceVersion"] != read)
                    };
                    self.wait_until(Duration::from_secs(5), newer).await;
                }
                Err(e) => panic!("edit {resource} {name}: {e}"),
            }
        }
        panic!("edit {resource} {name}: still conflicting after 10 attempts")
    }

    /// Deletes an object (background propagation, as kubectl does).
    pub async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), Value> {
        match self {
            Kube::Emulated(e) => e.delete(resource, namespace, name),
            Kube::Real(r) => {
                let deleted = r
                    .api(resource, namespace)
                    .delete(name, &DeleteParams::background())
                    .await
                    .map_err(api_error)?;
                // With finalizers the object stays, marked for deletion; else it is gone (the
                // server may still answer with the object as it was when deleted).
                match deleted.left() {
                    Some(obj) if obj.metadata.deletion_timestamp.is_some() => {
                        let v = serde_json::to_value(obj).unwrap_or_default();
                        let revision = mirror::revision(&v);
                        r.caught_up(resource, namespace, name, revision, false)
                            .await
                    }
                    _ => r.caught_up(resource, namespace, name, 0, true).await,
                }
                Ok(())
            }
        }
    }

    /// Creates a namespace with labels, or adds the labels to one that exists (as the emulator's
    /// `create_namespace` does).
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        match self {
            Kube::Emulated(e) => e.create_namespace(name, labels),
            Kube::Real(_) => {
                let labels: serde_json::Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                let written = match self.get("namespaces", None, name) {
                    Some(mut ns) => {
                        for (k, v) in labels {
                            ns["metadata"]["labels"][k] = v;
                        }
                        self.replace("namespaces", None, ns).await
                    }
                    None => {
                        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": name, "labels": labels}});
                        self.create("namespaces", None, ns).await
                    }
                };
                written.unwrap_or_else(|e| panic!("namespace {name}: {e}"));
            }
        }
    }

    /// The operator's requests since the start (or the last `clear_requests`), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        match self {
            Kube::Emulated(e) => e.requests(),
            Kube::Real(r) => {
                let from = *r.audit_offset.lock().unwrap_or_else(|p| p.into_inner());
                let (records, _) = audit::read(&r.audit_log, from);
                records.into_iter().filter(is_operators).collect()
            }
        }
    }

    /// How many of the operator's requests had this verb on this resource.
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        match self {
            Kube::Emulated(e) => e.clear_requests(),
            Kube::Real(r) => {
                let end = std::fs::metadata(&r.audit_log).map_or(0, |m| m.len());
                *r.audit_offset.lock().unwrap_or_else(|p| p.into_inner()) = end;
            }
        }
    }

    /// Waits until `cond` holds, re-checked on every change of the state; false on timeout. On the
    /// real server also every 100 ms: its audit log is written after the response is sent, so a
    /// condition on the requests can become true after the last change the mirror saw.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Kube) -> bool) -> bool {
        match self {
            Kube::Emulated(e) => {
                e.wait_until(timeout, |e| cond(&Kube::Emulated(e.clone())))
                    .await
            }
            Kube::Real(r) => {
                let mut changes = r.mirror.changes();
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let wait = async {
                    while !cond(self) {
                        tokio::select! {
                            changed = changes.changed() => if changed.is_err() { return false },
                            _ = tick.tick() => {}
                        }
                    }
                    true
                };
                tokio::time::timeout(timeout, wait).await.unwrap_or(false)
            }
        }
    }
}

/// Requests the operator made: as its own user, or as a ServiceAccount (the chart's).
fn is_operators(r: &RequestRecord) -> bool {
    r.user
        .as_deref()
        .is_some_and(|u| u == User::Operator.name() || u.starts_with("system:serviceaccount:"))
}
