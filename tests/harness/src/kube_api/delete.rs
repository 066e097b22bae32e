//! Deletion: preconditions, finalizers (deletionTimestamp until they are gone), owner-reference
//! garbage collection (background propagation), namespace termination; a CRD's in `controllers`.
//!
//! The real garbage collector and namespace controller act asynchronously; here they act within
//! the deleting request, which orders events the same way but with no delay.

use std::sync::Arc;

use serde_json::{Value, json};

use super::controllers;
use super::meta::{self, meta_mut};
use super::registry::{CRD_KEY, NAMESPACES, ResourceDef};
use super::status::ApiError;
use super::store::{ObjKey, Store};

#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `propagationPolicy: Orphan`: dependents lose the owner reference instead of being deleted.
    /// `Foreground` is treated as `Background`.
    pub orphan: bool,
}

impl DeleteOptions {
    pub fn from_body(body: &Value) -> Self {
        DeleteOptions {
            uid: body["preconditions"]["uid"].as_str().map(String::from),
            resource_version: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(String::from),
            orphan: body["propagationPolicy"].as_str() == Some("Orphan")
                || body["orphanDependents"].as_bool() == Some(true),
        }
    }
}

pub enum Deleted {
    /// Removed from the store.
    Gone(Arc<Value>),
    /// Marked with deletionTimestamp; finalizers (or namespace content) still pending.
    Pending(Arc<Value>),
}

pub fn delete(
    st: &mut Store,
    def: &ResourceDef,
    key: &ObjKey,
    opts: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let existing = st
        .get(key)
        .ok_or_else(|| ApiError::not_found(def, &key.name))?;
    if let Some(uid) = &opts.uid
        && uid != meta::uid_of(&existing)
    {
        return Err(ApiError::delete_precondition(
            def,
            &key.name,
            format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                meta::uid_of(&existing)
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && rv != meta::meta_str(&existing, "resourceVersion").unwrap_or_default()
    {
        return Err(ApiError::delete_precondition(
            def,
            &key.name,
            format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                meta::meta_str(&existing, "resourceVersion").unwrap_or_default()
            ),
        ));
    }
    if key.resource == NAMESPACES {
        return Ok(delete_namespace(st, key, &existing));
    }
    if key.resource == CRD_KEY {
        return controllers::delete_crd(st, key, &existing);
    }
    if opts.orphan {
        let uid = meta::uid_of(&existing).to_string();
        for dep in st.dependents_of(&uid) {
            drop_owner_ref(st, &dep, &uid);
        }
    }
    if !meta::finalizers(&existing).is_empty() {
        if !existing["metadata"]["deletionTimestamp"].is_null() {
            return Ok(Deleted::Pending(existing));
        }
        let mut marked = (*existing).clone();
        mark_deleted(def, &mut marked);
        return Ok(Deleted::Pending(st.commit(key, marked)));
    }
    let removed = st
        .remove(key, None)
        .ok_or_else(|| ApiError::not_found(def, &key.name))?;
    after_removal(st, key, &removed);
    Ok(Deleted::Gone(removed))
}

fn mark_deleted(def: &ResourceDef, obj: &mut Value) {
    let m = meta_mut(obj);
    m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    if def.tracks_generation() {
        let generation = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
        m.insert("generation".into(), json!(generation + 1));
    }
}

/// Consequences of an object leaving the store: its dependents, its namespace, its CRD's objects.
pub fn after_removal(st: &mut Store, key: &ObjKey, removed: &Value) {
    let uid = meta::uid_of(removed).to_string();
    for dep in st.dependents_of(&uid) {
        collect_dependent(st, &dep, &uid);
    }
    if !key.ns.is_empty() {
        maybe_finish_namespace(st, &key.ns);
    }
    if key.resource == CRD_KEY {
        let resource = key.name.clone();
        // Instances left only if someone removed the cleanup finalizer by hand.
        for k in st.keys_of(&resource) {
            st.remove(&k, None);
        }
        st.unregister(&resource);
    }
    controllers::removed(st, key);
}

fn collect_dependent(st: &mut Store, dep: &ObjKey, owner_uid: &str) {
    let Some(obj) = st.get(dep) else { return };
    let live_owners = meta::owner_uids(&obj)
        .into_iter()
        .filter(|u| u != owner_uid && st.by_uid(u).is_some())
        .count();
    if live_owners > 0 {
        drop_owner_ref(st, dep, owner_uid);
        return;
    }
    if let Some(def) = st.def(&dep.resource) {
        let _ = delete(st, &def, dep, &DeleteOptions::default());
    } else if let Some(removed) = st.remove(dep, None) {
        after_removal(st, dep, &removed);
    }
}

fn drop_owner_ref(st: &mut Store, dep: &ObjKey, owner_uid: &str) {
    let Some(obj) = st.get(dep) else { return };
    let mut obj = (*obj).clone();
    let m = meta_mut(&mut obj);
    if let Some(Value::Array(refs)) = m.get_mut("ownerReferences") {
        refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
        if refs.is_empty() {
            m.remove("ownerReferences");
        }
    }
    st.commit(dep, obj);
}

fn delete_namespace(st: &mut Store, key: &ObjKey, existing: &Arc<Value>) -> Deleted {
    let mut current = existing.clone();
    if existing["metadata"]["deletionTimestamp"].is_null() {
        let mut marked = (**existing).clone();
        // The namespace store marks it itself, without a grace period.
        meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
        marked["status"] = json!({"phase": "Terminating"});
        current = st.commit(key, marked);
    }
    for k in st.keys_in_namespace(&key.name) {
        match st.def(&k.resource) {
            Some(def) => {
                let _ = delete(st, &def, &k, &DeleteOptions::default());
            }
            None => {
                st.remove(&k, None);
            }
        }
    }
    maybe_finish_namespace(st, &key.name);
    Deleted::Pending(current)
}

fn maybe_finish_namespace(st: &mut Store, ns: &str) {
    let key = ObjKey::new(NAMESPACES, None, ns);
    if let Some(n) = st.get(&key)
        && !n["metadata"]["deletionTimestamp"].is_null()
        && st.keys_in_namespace(ns).is_empty()
    {
        st.remove(&key, None);
    }
}
