//! The path every create and update takes, whichever verb started it: type checks, metadata the
//! server owns, status-subresource resets, validation, managed fields, no-op detection,
//! generation, then the store commit.

use std::sync::Arc;

use serde_json::{Value, json};

use super::builtin;
use super::controllers;
use super::delete;
use super::managed::{self, Ownership, WriteContext};
use super::meta::{self, meta_mut};
use super::registry::{self, CRD_KEY, NAMESPACES, ResourceDef};
use super::schema;
use super::status::{self, ApiError, FieldError};
use super::store::{ObjKey, Store};

pub struct Write<'a> {
    pub def: &'a ResourceDef,
    pub version: &'a str,
    pub ns: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub ownership: Ownership,
}

pub enum Outcome {
    Stored(Arc<Value>),
    /// Nothing changed: no new resourceVersion, no event.
    Unchanged(Arc<Value>),
    /// The update emptied the finalizers of an object being deleted.
    Deleted(Arc<Value>),
}

impl Outcome {
    pub fn object(&self) -> &Arc<Value> {
        match self {
            Outcome::Stored(o) | Outcome::Unchanged(o) | Outcome::Deleted(o) => o,
        }
    }
}

const SERVER_META: &[&str] = &[
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

fn ensure_object(obj: &Value) -> Result<(), ApiError> {
    if obj.is_object() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ))
    }
}

fn check_namespace(w: &Write, obj: &mut Value) -> Result<(), ApiError> {
    let body_ns = meta::meta_str(obj, "namespace").map(String::from);
    if w.def.namespaced {
        let ns =
            w.ns.ok_or_else(|| ApiError::bad_request("the namespace of the object must be set"))?;
        if body_ns.as_deref().is_some_and(|b| !b.is_empty() && b != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta_mut(obj).insert("namespace".into(), json!(ns));
    } else {
        meta_mut(obj).remove("namespace");
    }
    Ok(())
}

/// Type rules, schema, metadata syntax; returns the field errors (empty when valid).
fn validate(w: &Write, obj: &mut Value, old: Option<&Value>) -> Result<Vec<FieldError>, ApiError> {
    let mut errs = builtin::prepare(w.def, obj, old)?;
    if w.def.custom
        && let Some(schema) = w.def.schema(w.version)
    {
        schema::prune_and_default(obj, schema);
        errs.extend(schema::validate(obj, schema));
    }
    errs.extend(meta::validate_meta(&obj["metadata"]));
    if w.def.custom
        && let Some(schema) = w.def.schema(w.version)
    {
        errs.extend(schema::rules_not_checked(schema, &errs));
    }
    if w.def.key() == CRD_KEY {
        match registry::from_crd(obj) {
            Ok(_) => builtin::crd(obj, old, w.sub == Some("status")),
            Err(crd_errs) => errs.extend(crd_errs.into_iter().map(|(f, m)| {
                let reason = if m.starts_with("Required") {
                    "FieldValueRequired"
                } else if m.starts_with("Unsupported") {
                    "FieldValueNotSupported"
                } else {
                    "FieldValueInvalid"
                };
                FieldError::new(reason, f, m)
            })),
        }
    }
    builtin::normalize(w.def, obj);
    Ok(errs)
}

fn ctx<'a>(w: &'a Write) -> WriteContext<'a> {
    WriteContext {
        def: w.def,
        version: w.version,
        sub: w.sub,
    }
}

pub fn create(st: &mut Store, w: &Write, mut obj: Value) -> Result<Arc<Value>, ApiError> {
    ensure_object(&obj)?;
    builtin::check_decodable(w.def, &obj)?;
    builtin::check_type_meta(w.def, w.version, &mut obj)?;
    check_namespace(w, &mut obj)?;
    let resource = w.def.key();
    if let Some(ns) = w.ns.filter(|_| w.def.namespaced) {
        match st.get(&ObjKey::new(NAMESPACES, None, ns)) {
            None => return Err(ApiError::namespace_not_found(ns)),
            Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                return Err(ApiError::forbidden_terminating(
                    w.def,
                    meta::name_of(&obj),
                    ns,
                ));
            }
            Some(_) => {}
        }
    }
    let mut name = meta::name_of(&obj).to_string();
    if name.is_empty() {
        let Some(prefix) = meta::meta_str(&obj, "generateName").map(String::from) else {
            return Err(ApiError::invalid(
                w.def,
                "",
                &[FieldError::new(
                    "FieldValueRequired",
                    "metadata.name",
                    "Required value: name or generateName is required",
                )],
            ));
        };
        loop {
            name = format!("{prefix}{}", meta::generated_suffix());
            if st.get(&ObjKey::new(&resource, w.ns, &name)).is_none() {
                break;
            }
        }
        meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    if let Some(err) = meta::validate_name(&name, resource == NAMESPACES) {
        return Err(ApiError::invalid(w.def, &name, &[err]));
    }
    let key = ObjKey::new(&resource, w.ns.filter(|_| w.def.namespaced), &name);
    if st.get(&key).is_some() {
        return Err(ApiError::already_exists(w.def, &name));
    }
    if w.def.status_subresource
        && w.def.custom
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    let now = meta::now_rfc3339();
    {
        let m = meta_mut(&mut obj);
        for f in SERVER_META
            .iter()
            .chain(&["resourceVersion", "managedFields", "selfLink"])
        {
            m.remove(*f);
        }
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(now));
        if w.def.tracks_generation() {
            m.insert("generation".into(), json!(1));
        }
    }
    let errs = validate(w, &mut obj, None)?;
    if !errs.is_empty() {
        return Err(ApiError::invalid(w.def, &name, &errs));
    }
    managed::update(&ctx(w), None, &mut obj, &w.ownership, &now)?;
    let stored = st.commit(&key, obj);
    after_commit(st, &key, &stored);
    Ok(stored)
}

/// What a real control plane's controllers do next (see `controllers`); the answer to the
/// request is the object as this write stored it.
fn after_commit(st: &mut Store, key: &ObjKey, stored: &Value) {
    if key.resource == CRD_KEY
        && let Ok(def) = registry::from_crd(stored)
    {
        st.register(def);
        if let Err(e) = controllers::crd_written(st, &key.name) {
            tracing::warn!(crd = key.name, error = %e.message, "CRD status not written");
        }
    }
    if key.resource == NAMESPACES {
        controllers::ensure_default_service_account(st, &key.name);
    }
}

pub fn update(
    st: &mut Store,
    w: &Write,
    name: &str,
    mut candidate: Value,
) -> Result<Outcome, ApiError> {
    ensure_object(&candidate)?;
    builtin::check_decodable(w.def, &candidate)?;
    let resource = w.def.key();
    let key = ObjKey::new(&resource, w.ns.filter(|_| w.def.namespaced), name);
    let existing = st
        .get(&key)
        .ok_or_else(|| ApiError::not_found(w.def, name))?;
    builtin::check_type_meta(w.def, w.version, &mut candidate)?;
    match meta::meta_str(&candidate, "name") {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    check_namespace(w, &mut candidate)?;
    if let Some(rv) = meta::meta_str(&candidate, "resourceVersion").filter(|s| !s.is_empty())
        && rv != meta::meta_str(&existing, "resourceVersion").unwrap_or_default()
    {
        return Err(ApiError::modified(w.def, name));
    }
    if let Some(uid) = meta::meta_str(&candidate, "uid").filter(|s| !s.is_empty())
        && uid != meta::uid_of(&existing)
    {
        return Err(ApiError::uid_precondition(
            w.def,
            w.ns.filter(|_| w.def.namespaced),
            name,
            uid,
            meta::uid_of(&existing),
        ));
    }
    let mut new = if w.sub == Some("status") {
        let mut n = (*existing).clone();
        match candidate.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(m) = n.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        n
    } else {
        let mut n = candidate;
        if w.def.status_subresource {
            match existing.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        {
            let m = meta_mut(&mut n);
            m.insert("name".into(), json!(name));
            for f in SERVER_META {
                match existing["metadata"].get(*f) {
                    Some(v) => m.insert((*f).into(), v.clone()),
                    None => m.remove(*f),
                };
            }
        }
        n
    };
    {
        let m = meta_mut(&mut new);
        m.insert(
            "resourceVersion".into(),
            existing["metadata"]["resourceVersion"].clone(),
        );
        match existing["metadata"].get("managedFields") {
            Some(v) => m.insert("managedFields".into(), v.clone()),
            None => m.remove("managedFields"),
        };
    }
    if !existing["metadata"]["deletionTimestamp"].is_null() {
        let old = meta::finalizers(&existing);
        let added: Vec<String> = meta::finalizers(&new)
            .into_iter()
            .filter(|f| !old.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                w.def,
                name,
                &[FieldError::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                        status::go_string_slice(&added)
                    ),
                )],
            ));
        }
    }
    let errs = validate(w, &mut new, Some(&existing))?;
    if !errs.is_empty() {
        return Err(ApiError::invalid(w.def, name, &errs));
    }
    let now = meta::now_rfc3339();
    managed::update(&ctx(w), Some(&existing), &mut new, &w.ownership, &now)?;
    if managed::without_times(&new) == managed::without_times(&existing) {
        return Ok(Outcome::Unchanged(existing));
    }
    if w.def.tracks_generation() && w.sub != Some("status") && spec_changed(&existing, &new) {
        let generation = existing["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        meta_mut(&mut new).insert("generation".into(), json!(generation));
    }
    if !new["metadata"]["deletionTimestamp"].is_null() && meta::finalizers(&new).is_empty() {
        let removed = st
            .remove(&key, Some(new))
            .ok_or_else(|| ApiError::not_found(w.def, name))?;
        delete::after_removal(st, &key, &removed);
        return Ok(Outcome::Deleted(removed));
    }
    let stored = st.commit(&key, new);
    after_commit(st, &key, &stored);
    Ok(Outcome::Stored(stored))
}

/// PUT of a custom resource or CRD must name the version it replaces: their strategies disallow
/// unconditional updates (other built-ins allow them). The generic store words the refusal with
/// the resource where the kind would be, and the missing version as 0.
pub fn require_resource_version(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let conditional = def.custom || def.key() == CRD_KEY;
    if conditional && meta::meta_str(obj, "resourceVersion").is_none_or(str::is_empty) {
        return Err(ApiError::invalid_resource(
            def,
            name,
            &[FieldError::invalid(
                "metadata.resourceVersion",
                &json!(0),
                "must be specified for an update",
            )],
        ));
    }
    Ok(())
}

/// Anything outside metadata and status: what `metadata.generation` counts.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(old) != strip(new)
}
