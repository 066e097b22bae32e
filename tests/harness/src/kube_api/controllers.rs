//! What controllers of a real control plane do right after a write, done here within it: the
//! CRD controllers of kube-apiserver (names accepted, established, instances removed before the
//! CRD goes) and kube-controller-manager's ServiceAccount controller (every active namespace has
//! a `default` ServiceAccount). The garbage collector and the namespace controller live in
//! `delete`.

use serde_json::{Value, json};

use super::delete::{self, DeleteOptions, Deleted};
use super::managed::Ownership;
use super::meta::{self, meta_mut};
use super::registry::{CRD_KEY, NAMESPACES};
use super::status::ApiError;
use super::store::{ObjKey, Store};
use super::write::{self, Write};

/// The field manager of the CRD controllers' status writes.
const APISERVER: &str = "kube-apiserver";
/// The finalizer kube-apiserver puts on a CRD being deleted until its instances are gone.
pub const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";
const SERVICE_ACCOUNTS: &str = "serviceaccounts";

fn condition(type_: &str, reason: &str, message: &str, since: &Value) -> Value {
    json!({"type": type_, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message})
}

/// A CRD's status write through `/status` as kube-apiserver's controllers make it.
fn write_crd_status(st: &mut Store, name: &str, crd: Value) -> Result<(), ApiError> {
    let Some(def) = st.def(CRD_KEY) else {
        return Ok(());
    };
    let w = Write {
        def: &def,
        version: "v1",
        ns: None,
        sub: Some("status"),
        ownership: Ownership::Update {
            manager: APISERVER.into(),
        },
    };
    write::update(st, &w, name, crd).map(|_| ())
}

fn conditions_of(crd: &Value) -> Vec<Value> {
    crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The naming and establishing controllers: the names of `spec.names` accepted (no other CRD of
/// ours can conflict), then Established, which a CRD stays until it is deleted.
pub fn crd_written(st: &mut Store, name: &str) -> Result<(), ApiError> {
    let Some(crd) = st.get(&ObjKey::new(CRD_KEY, None, name)) else {
        return Ok(());
    };
    if !crd["metadata"]["deletionTimestamp"].is_null() {
        return Ok(());
    }
    let mut desired = (*crd).clone();
    let now = json!(meta::now_rfc3339());
    desired["status"]["acceptedNames"] = crd["spec"]["names"].clone();
    let mut conditions = conditions_of(&crd);
    for (type_, reason, message) in [
        ("NamesAccepted", "NoConflicts", "no conflicts found"),
        (
            "Established",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ),
    ] {
        if !conditions
            .iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
        {
            conditions.retain(|c| c["type"] != type_);
            conditions.push(condition(type_, reason, message, &now));
        }
    }
    desired["status"]["conditions"] = Value::Array(conditions);
    if desired["status"] == crd["status"] {
        return Ok(());
    }
    write_crd_status(st, name, desired)
}

/// A CRD's deletion: kube-apiserver marks it Terminating with its cleanup finalizer (the answer
/// is the marked CRD), deletes every instance, and removes the finalizer once they are all gone.
pub fn delete_crd(st: &mut Store, key: &ObjKey, existing: &Value) -> Result<Deleted, ApiError> {
    let marked = if existing["metadata"]["deletionTimestamp"].is_null() {
        let mut marked = existing.clone();
        let now = json!(meta::now_rfc3339());
        let m = meta_mut(&mut marked);
        m.insert("deletionTimestamp".into(), now.clone());
        let mut finalizers = meta::finalizers(existing);
        if !finalizers.iter().any(|f| f == CRD_CLEANUP) {
            finalizers.push(CRD_CLEANUP.into());
        }
        m.insert("finalizers".into(), json!(finalizers));
        let mut conditions = conditions_of(existing);
        conditions.retain(|c| c["type"] != "Terminating");
        conditions.push(json!({
            "type": "Terminating", "status": "True", "lastTransitionTime": now,
            "reason": "InstanceDeletionPending",
            "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        }));
        marked["status"]["conditions"] = Value::Array(conditions);
        st.commit(key, marked)
    } else {
        st.get(key).unwrap_or_else(|| existing.clone().into())
    };
    let resource = key.name.clone();
    if let Some(def) = st.def(&resource) {
        for k in st.keys_of(&resource) {
            match delete::delete(st, &def, &k, &DeleteOptions::default()) {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    instances_gone(st, &resource);
    Ok(Deleted::Pending(marked))
}

/// Once a terminating CRD has no instances left, its cleanup finalizer goes (and with it the
/// CRD, unless other finalizers remain).
pub fn instances_gone(st: &mut Store, resource: &str) {
    let key = ObjKey::new(CRD_KEY, None, resource);
    let Some(crd) = st.get(&key) else { return };
    if crd["metadata"]["deletionTimestamp"].is_null()
        || !st.keys_of(resource).is_empty()
        || !meta::finalizers(&crd).iter().any(|f| f == CRD_CLEANUP)
    {
        return;
    }
    let Some(def) = st.def(CRD_KEY) else { return };
    let mut done = (*crd).clone();
    let rest: Vec<String> = meta::finalizers(&crd)
        .into_iter()
        .filter(|f| f != CRD_CLEANUP)
        .collect();
    meta_mut(&mut done).insert("finalizers".into(), json!(rest));
    let w = Write {
        def: &def,
        version: "v1",
        ns: None,
        sub: None,
        ownership: Ownership::Update {
            manager: APISERVER.into(),
        },
    };
    if let Err(e) = write::update(st, &w, resource, done) {
        tracing::warn!(crd = resource, error = %e.message, "could not finish the CRD's deletion");
    }
}

/// The ServiceAccount controller: an active namespace gets its `default` ServiceAccount.
pub fn ensure_default_service_account(st: &mut Store, ns: &str) {
    let Some(namespace) = st.get(&ObjKey::new(NAMESPACES, None, ns)) else {
        return;
    };
    if !namespace["metadata"]["deletionTimestamp"].is_null()
        || st
            .get(&ObjKey::new(SERVICE_ACCOUNTS, Some(ns), "default"))
            .is_some()
    {
        return;
    }
    let Some(def) = st.def(SERVICE_ACCOUNTS) else {
        return;
    };
    let w = Write {
        def: &def,
        version: "v1",
        ns: Some(ns),
        sub: None,
        ownership: Ownership::Update {
            manager: "kube-controller-manager".into(),
        },
    };
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    if let Err(e) = write::create(st, &w, sa) {
        tracing::warn!(namespace = ns, error = %e.message, "could not create the default ServiceAccount");
    }
}

/// After an object left the store: a `default` ServiceAccount comes back, a terminating CRD
/// may have lost its last instance.
pub fn removed(st: &mut Store, key: &ObjKey) {
    if key.resource == SERVICE_ACCOUNTS && key.name == "default" {
        ensure_default_service_account(st, &key.ns);
    }
    if st.def(&key.resource).is_some_and(|d| d.custom) {
        instances_gone(st, &key.resource);
    }
}
