//! PATCH in its four content types. Merge, JSON and strategic patches are applied to the stored
//! object and then go through the update path; apply merges by field ownership.
//!
//! Strategic merge patch is treated as a JSON merge patch: for the fields of our built-in types
//! that matters only for lists with a patchMergeKey (ownerReferences, ServiceAccount `secrets`),
//! which SMP merges by key and this emulator replaces. Custom resources reject SMP, as the real
//! server does.

use serde_json::Value;

use super::emulator::Emulator;
use super::fieldset;
use super::handlers::{body_json, key, out};
use super::http::{Reply, Req};
use super::managed::{self, Ownership};
use super::route::{Target, flag};
use super::shape::Shape;
use super::ssa;
use super::status::ApiError;
use super::write::{self, Write};

pub fn patch(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let content_type = req.content_type();
    if content_type.starts_with("application/apply-patch") {
        return apply(emu, t, req);
    }
    if flag(&req.query, "force") {
        return Err(ApiError::invalid_options(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    let name = t.name.as_deref().unwrap_or_default();
    let mut st = emu.store();
    let live = st
        .get(&key(t))
        .ok_or_else(|| ApiError::not_found(&t.def, name))?;
    let mut doc = (*live).clone();
    if content_type.starts_with("application/json-patch+json") {
        let ops: Vec<json_patch::PatchOperation> = serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        // The API server's JSON patch (evanphx/json-patch) lets `test` with value null pass on a
        // missing member of an existing parent (kube-runtime's finalizer helper relies on it to
        // add the first finalizer); a missing parent fails with "missing path".
        let ops: Vec<_> = ops
            .into_iter()
            .filter(|op| match op {
                json_patch::PatchOperation::Test(t) => {
                    let path = t.path.as_str();
                    let parent = path.rfind('/').map_or("", |i| &path[..i]);
                    !(t.value.is_null()
                        && doc.pointer(path).is_none()
                        && doc.pointer(parent).is_some())
                }
                _ => true,
            })
            .collect();
        json_patch::patch(&mut doc, &ops).map_err(|_| ApiError::unprocessable())?;
    } else if content_type.starts_with("application/merge-patch+json")
        || content_type.starts_with("application/strategic-merge-patch+json")
    {
        if t.def.custom && content_type.starts_with("application/strategic") {
            return Err(ApiError::unsupported_media_type(&content_type));
        }
        let patch = body_json(req)?;
        if !patch.is_object() {
            return Err(ApiError::bad_request(
                "the merge patch must be a JSON object",
            ));
        }
        json_patch::merge(&mut doc, &patch);
    } else {
        return Err(ApiError::unsupported_media_type(&content_type));
    }
    let w = Write {
        def: &t.def,
        version: &t.version,
        ns: t.ns.as_deref(),
        sub: t.sub.as_deref(),
        ownership: Ownership::Update {
            manager: req.manager(),
        },
    };
    let outcome = write::update(&mut st, &w, name, doc)?;
    Ok(Reply::Json(200, out(t, req, outcome.object())))
}

/// Parses the body as JSON (what kube sends), else as YAML (what kubectl sends).
fn apply_body(req: &Req) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(&req.body) {
        return Ok(v);
    }
    serde_yaml::from_slice::<Value>(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Keeps only what an apply through this endpoint may set.
fn restrict(t: &Target, config: &mut Value) {
    let Some(map) = config.as_object_mut() else {
        return;
    };
    if t.sub.as_deref() == Some("status") {
        map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.retain(|k, _| {
                matches!(k.as_str(), "name" | "namespace" | "resourceVersion" | "uid")
            });
        }
    } else if t.def.status_subresource {
        map.remove("status");
    }
}

fn apply(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let Some(manager) = req
        .query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
    else {
        return Err(ApiError::invalid_options(
            "fieldManager",
            "is required for apply patch",
        ));
    };
    let name = t.name.as_deref().unwrap_or_default();
    let mut config = apply_body(req)?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    super::builtin::check_decodable(&t.def, &config)?;
    if !config["metadata"]["managedFields"].is_null() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    match config["metadata"]["name"].as_str() {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    restrict(t, &mut config);
    let force = flag(&req.query, "force");
    let ownership = Ownership::Apply {
        manager: manager.clone(),
        config: config.clone(),
        force,
    };
    let w = Write {
        def: &t.def,
        version: &t.version,
        ns: t.ns.as_deref(),
        sub: t.sub.as_deref(),
        ownership,
    };
    let mut st = emu.store();
    let Some(live) = st.get(&key(t)) else {
        if t.sub.is_some() {
            return Err(ApiError::not_found(&t.def, name));
        }
        let mut obj = config;
        super::meta::meta_mut(&mut obj).insert("name".into(), Value::String(name.into()));
        let stored = write::create(&mut st, &w, obj)?;
        return Ok(Reply::Json(201, out(t, req, &stored)));
    };
    let shape = Shape::new(&t.def, &t.version);
    let mut merged = ssa::merge(&live, &config, &shape);
    let sub = t.sub.as_deref();
    let last = managed::owned_by(&live, &manager, sub);
    let now = fieldset::field_set(&managed::scoped(&config, &t.def, sub), &shape);
    let others = managed::owned_by_others(&live, &manager, sub);
    ssa::prune(&mut merged, &last, &now, &others);
    let outcome = write::update(&mut st, &w, name, merged)?;
    Ok(Reply::Json(200, out(t, req, outcome.object())))
}
