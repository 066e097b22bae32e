//! `Emulator`: the shared state behind the HTTP server, with direct (non-HTTP) access for tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::delete::{self, DeleteOptions};
use super::faults::{Fault, RequestRecord};
use super::managed::Ownership;
use super::registry::{self, CRD_KEY, NAMESPACES, ResourceDef};
use super::status::ApiError;
use super::store::{ObjKey, Store};
use super::write::{self, Write};

/// Field manager of writes made through the direct methods.
pub const DIRECT_MANAGER: &str = "harness";

pub(crate) struct Inner {
    store: Mutex<Store>,
    log: Mutex<Vec<RequestRecord>>,
    next_seq: std::sync::atomic::AtomicU64,
    faults: Mutex<Vec<Fault>>,
    latency: Mutex<Option<Duration>>,
    unavailable: AtomicBool,
    changes: watch::Sender<u64>,
}

/// Handle on the emulated cluster state; clones share it.
#[derive(Clone)]
pub struct Emulator {
    pub(crate) inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge every later request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Emulator {
    /// Built-in resources registered, no objects (no namespaces either).
    pub fn new() -> Self {
        let (changes, _) = watch::channel(0);
        let mut store = Store::new(changes.clone());
        for def in registry::builtins() {
            store.register(def);
        }
        Emulator {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                log: Mutex::new(Vec::new()),
                next_seq: Default::default(),
                faults: Mutex::new(Vec::new()),
                latency: Mutex::new(None),
                unavailable: AtomicBool::new(false),
                changes,
            }),
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.inner.store)
    }

    fn def(&self, resource: &str) -> Result<Arc<ResourceDef>, Value> {
        self.store()
            .def(resource)
            .ok_or_else(|| ApiError::no_route().to_value())
    }

    /// The namespace to use: the argument, else the object's own `metadata.namespace`.
    fn namespace_for<'a>(namespace: Option<&'a str>, obj: &'a Value) -> Option<&'a str> {
        namespace.or_else(|| obj["metadata"]["namespace"].as_str())
    }

    fn version_for(def: &ResourceDef, obj: &Value) -> String {
        obj["apiVersion"]
            .as_str()
            .map(|av| av.rsplit('/').next().unwrap_or(av))
            .filter(|v| def.serves(v))
            .unwrap_or(def.preferred_version())
            .to_string()
    }

    /// Registers a CRD exactly as a POST to apiextensions.k8s.io/v1 would (replacing an existing
    /// one of the same name).
    pub fn install_crd(&self, crd: Value) -> Result<(), String> {
        if !crd["metadata"].is_object() {
            return Err("a CRD needs metadata.name".into());
        }
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let result = if let Some(current) = self.get(CRD_KEY, None, &name) {
            let mut crd = crd;
            crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            self.replace(CRD_KEY, None, crd)
        } else {
            self.create(CRD_KEY, None, crd)
        };
        result
            .map(|_| ())
            .map_err(|s| s["message"].as_str().unwrap_or("CRD rejected").to_string())
    }

    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.store()
            .get(&ObjKey::new(resource, namespace, name))
            .map(|o| (*o).clone())
    }

    /// Objects of `resource`, in `namespace` or everywhere, ordered by namespace and name.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.store()
            .list(resource, namespace)
            .into_iter()
            .map(|o| (*o).clone())
            .collect()
    }

    /// A client-style create (validation, defaults, uid, resourceVersion), field manager
    /// `harness`. Errors are Status objects.
    pub fn create(
        &self,
        resource: &str,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, Value> {
        let def = self.def(resource)?;
        let version = Self::version_for(&def, &obj);
        let ns = Self::namespace_for(namespace, &obj).map(String::from);
        let w = Write {
            def: &def,
            version: &version,
            ns: ns.as_deref(),
            sub: None,
            ownership: Ownership::Update {
                manager: DIRECT_MANAGER.into(),
            },
        };
        write::create(&mut self.store(), &w, obj)
            .map(|o| (*o).clone())
            .map_err(|e| e.to_value())
    }

    /// PUT semantics: `metadata.resourceVersion`, when set, must be current (custom resources
    /// must set it: their PUT is always conditional). `namespace` defaults to the object's own.
    pub fn replace(
        &self,
        resource: &str,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, Value> {
        let def = self.def(resource)?;
        let version = Self::version_for(&def, &obj);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        write::require_resource_version(&def, &name, &obj).map_err(|e| e.to_value())?;
        let ns = Self::namespace_for(namespace, &obj).map(String::from);
        let w = Write {
            def: &def,
            version: &version,
            ns: ns.as_deref(),
            sub: None,
            ownership: Ownership::Update {
                manager: DIRECT_MANAGER.into(),
            },
        };
        write::update(&mut self.store(), &w, &name, obj)
            .map(|o| (**o.object()).clone())
            .map_err(|e| e.to_value())
    }

    /// A client delete: finalizers respected, dependents garbage-collected.
    pub fn delete(&self, resource: &str, namespace: Option<&str>, name: &str) -> Result<(), Value> {
        let def = self.def(resource)?;
        let key = ObjKey::new(resource, namespace.filter(|_| def.namespaced), name);
        delete::delete(&mut self.store(), &def, &key, &DeleteOptions::default())
            .map(|_| ())
            .map_err(|e| e.to_value())
    }

    /// Creates the namespace, or adds `labels` to it if it exists.
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        match self.get(NAMESPACES, None, name) {
            Some(mut ns) => {
                for (k, v) in labels {
                    ns["metadata"]["labels"][k] = v;
                }
                if let Err(e) = self.replace(NAMESPACES, None, ns) {
                    tracing::warn!(namespace = name, error = %e, "could not label namespace");
                }
            }
            None => {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
                if let Err(e) = self.create(NAMESPACES, None, ns) {
                    tracing::warn!(namespace = name, error = %e, "could not create namespace");
                }
            }
        }
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.log).clone()
    }

    /// Requests with this verb on this resource key (SSA counts as `patch`).
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        lock(&self.inner.log)
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.log).clear();
        self.notify();
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    /// Delay added before every HTTP request is handled.
    pub fn set_latency(&self, d: Option<Duration>) {
        *lock(&self.inner.latency) = d;
    }

    /// Ends every open watch stream now, as an apiserver restart or a load balancer would.
    pub fn close_watches(&self) {
        self.store().close_watches();
    }

    /// How many events watches can resume from (default 50 000); lower it to make a test
    /// reach the 410 Expired path quickly.
    pub fn set_history_limit(&self, events: usize) {
        self.store().set_history_limit(events);
    }

    /// While down, every request gets 503 and open watches are closed.
    pub fn set_unavailable(&self, down: bool) {
        self.inner.unavailable.store(down, Ordering::SeqCst);
        if down {
            self.close_watches();
        }
        self.notify();
    }

    /// Re-checks `cond` after every state change (writes, requests) until it holds or `timeout`
    /// passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Emulator) -> bool) -> bool {
        let mut rx = self.inner.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if cond(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return cond(self),
            }
        }
    }

    fn notify(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn is_unavailable(&self) -> bool {
        self.inner.unavailable.load(Ordering::SeqCst)
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        *lock(&self.inner.latency)
    }

    pub(crate) fn take_fault(&self, rec: &RequestRecord) -> Option<u16> {
        super::faults::take(&mut lock(&self.inner.faults), rec)
    }

    /// Logs a request as it arrives; returns its `seq` for [`Emulator::set_code`].
    pub(crate) fn record(&self, mut rec: RequestRecord) -> u64 {
        let mut log = lock(&self.inner.log);
        rec.seq = self.inner.next_seq.fetch_add(1, Ordering::SeqCst);
        let seq = rec.seq;
        log.push(rec);
        drop(log);
        self.notify();
        seq
    }

    /// Sets the response status of a logged request (unless the log was cleared meanwhile).
    pub(crate) fn set_code(&self, seq: u64, code: u16) {
        if let Some(rec) = lock(&self.inner.log)
            .iter_mut()
            .rev()
            .find(|r| r.seq == seq)
        {
            rec.code = code;
        }
        self.notify();
    }
}
