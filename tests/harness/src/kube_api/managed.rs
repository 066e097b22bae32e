//! `metadata.managedFields`: who owns which field, updated on every write the way the
//! apiserver's field manager does (structured-merge-diff `Updater.Update` / `Updater.Apply`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fieldset::{self, FieldSet, Path};
use super::registry::{NAMESPACES, ResourceDef};
use super::shape::Shape;
use super::status::ApiError;

/// Metadata the server owns; never part of anyone's field set.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

pub enum Ownership {
    /// create, PUT, merge/JSON patch: the manager takes every field it changed.
    Update { manager: String },
    /// server-side apply of `config` (already restricted to what the endpoint may change).
    Apply {
        manager: String,
        config: Value,
        force: bool,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<Value>,
    subresource: Option<String>,
    set: FieldSet,
}

fn parse(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or_default().into(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            time: e.get("time").cloned(),
            subresource: e["subresource"].as_str().map(String::from),
            set: fieldset::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// In the API server's order (`sortEncodedManagedFields`): Apply before Update, then by time
/// (to the second), manager, apiVersion and subresource.
fn render(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|p, q| {
        let time = |e: &Entry| {
            e.time
                .as_ref()
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        (
            &p.operation,
            time(p),
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                &q.operation,
                time(q),
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), t.clone());
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), fieldset::to_fields_v1(&e.set));
                if let Some(s) = &e.subresource {
                    m.insert("subresource".into(), json!(s));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// The part of `obj` a write through `sub` can change, without server-owned metadata. Resources
/// with a status subresource reset `.status` on main writes and everything else on `/status`;
/// a Namespace's `spec` (its finalizers) is set by its strategy and changed only through
/// `/finalize`, so no writer owns it.
pub fn scoped(obj: &Value, def: &ResourceDef, sub: Option<&str>) -> Value {
    let mut out = Map::new();
    let Some(map) = obj.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in map {
        let keep = match (k.as_str(), sub) {
            ("apiVersion" | "kind", _) => false,
            ("status", Some("status")) => true,
            (_, Some("status")) => false,
            ("status", None) => !def.status_subresource,
            ("spec", _) => def.key() != NAMESPACES,
            _ => true,
        };
        if !keep {
            continue;
        }
        if k == "metadata" {
            let mut meta = v.as_object().cloned().unwrap_or_default();
            meta.retain(|mk, _| !SYSTEM_META.contains(&mk.as_str()));
            if !meta.is_empty() {
                out.insert(k.clone(), Value::Object(meta));
            }
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn describe(e: &Entry) -> String {
    let mut s = format!("{:?}", e.manager);
    if let Some(sub) = &e.subresource {
        s.push_str(&format!(" with subresource {sub:?}"));
    }
    if e.operation == "Update" {
        s.push_str(&format!(" using {}", e.api_version));
    }
    s
}

pub struct WriteContext<'a> {
    pub def: &'a ResourceDef,
    pub version: &'a str,
    pub sub: Option<&'a str>,
}

/// Sets `new.metadata.managedFields` for a write from `old` to `new`, or reports apply conflicts.
pub fn update(
    ctx: &WriteContext,
    old: Option<&Value>,
    new: &mut Value,
    ownership: &Ownership,
    now: &str,
) -> Result<(), ApiError> {
    let shape = Shape::new(ctx.def, ctx.version);
    let empty = json!({});
    let old_scoped = old.map(|o| scoped(o, ctx.def, ctx.sub)).unwrap_or(empty);
    let new_scoped = scoped(new, ctx.def, ctx.sub);
    // structured-merge-diff's Compare: paths new to the object are added (maps and lists that
    // hold fields too), leaves with another value are modified, paths gone are removed.
    let old_paths = fieldset::paths(&old_scoped, &shape);
    let new_paths = fieldset::paths(&new_scoped, &shape);
    let mut changed = FieldSet::new();
    for (path, value) in &new_paths {
        match (old_paths.get(path), value) {
            (None, _) => {
                changed.insert(path.clone());
            }
            (Some(Some(old_value)), Some(value)) if old_value != value => {
                changed.insert(path.clone());
            }
            _ => {}
        }
    }
    let removed: FieldSet = old_paths
        .keys()
        .filter(|p| !new_paths.contains_key(*p))
        .cloned()
        .collect();

    let mut entries = old.map(parse).unwrap_or_default();
    let api_version = ctx.def.api_version(ctx.version);
    let sub = ctx.sub.map(String::from);
    let (manager, operation) = match ownership {
        Ownership::Update { manager } => (manager.clone(), "Update"),
        Ownership::Apply { manager, .. } => (manager.clone(), "Apply"),
    };
    let is_me = |e: &Entry| {
        e.manager == manager
            && e.operation == operation
            && e.subresource == sub
            && (operation == "Apply" || e.api_version == api_version)
    };
    let me_set = match ownership {
        Ownership::Update { .. } => {
            for e in entries.iter_mut().filter(|e| !is_me(e)) {
                e.set.retain(|p| !changed.contains(p));
            }
            let mut mine = entries
                .iter()
                .find(|e| is_me(e))
                .map(|e| e.set.clone())
                .unwrap_or_default();
            mine.extend(changed.iter().cloned());
            // What this write removed it no longer owns either.
            mine.retain(|p| !removed.contains(p));
            mine
        }
        Ownership::Apply { config, force, .. } => {
            let mut conflicts: BTreeMap<usize, Vec<Path>> = BTreeMap::new();
            for (i, e) in entries.iter().enumerate().filter(|(_, e)| !is_me(e)) {
                let hit: Vec<Path> = e.set.intersection(&changed).cloned().collect();
                if !hit.is_empty() {
                    conflicts.insert(i, hit);
                }
            }
            if !conflicts.is_empty() && !force {
                return Err(conflict_error(&entries, &conflicts));
            }
            for (i, paths) in conflicts {
                entries[i].set.retain(|p| !paths.contains(p));
            }
            fieldset::field_set(&scoped(config, ctx.def, ctx.sub), &shape)
        }
    };
    for e in entries.iter_mut() {
        e.set.retain(|p| !removed.contains(p));
    }
    match entries.iter_mut().find(|e| is_me(e)) {
        Some(e) => {
            e.set = me_set;
            e.api_version = api_version;
            e.time = Some(json!(now));
        }
        None => entries.push(Entry {
            manager,
            operation: operation.into(),
            api_version,
            time: Some(json!(now)),
            subresource: sub,
            set: me_set,
        }),
    }
    entries.retain(|e| !e.set.is_empty());
    let meta = super::meta::meta_mut(new);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), render(&entries));
    }
    Ok(())
}

fn conflict_error(entries: &[Entry], conflicts: &BTreeMap<usize, Vec<Path>>) -> ApiError {
    let total: usize = conflicts.values().map(Vec::len).sum();
    let mut causes = Vec::new();
    let mut lines = Vec::new();
    for (i, paths) in conflicts {
        let who = describe(&entries[*i]);
        lines.push(format!("conflicts with {who}:"));
        for p in paths {
            let field = fieldset::display(p);
            causes.push(json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {who}"),
                "field": field,
            }));
            lines.push(format!("- {field}"));
        }
    }
    let message = if total == 1 {
        let field = causes[0]["field"].as_str().unwrap_or_default();
        let who = causes[0]["message"].as_str().unwrap_or_default();
        format!("Apply failed with 1 conflict: {who}: {field}")
    } else {
        format!("Apply failed with {total} conflicts: {}", lines.join("\n"))
    };
    ApiError::apply_conflict(message, Value::Array(causes))
}

/// Managed fields with timestamps blanked: two objects differing only here are the same write,
/// which is how the apiserver detects no-op updates.
pub fn without_times(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(Value::Array(entries)) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("managedFields"))
    {
        for e in entries {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    obj
}

/// Field set a manager currently owns (for apply's pruning of fields it stopped sending).
pub fn owned_by(obj: &Value, manager: &str, sub: Option<&str>) -> FieldSet {
    parse(obj)
        .into_iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub)
        .map(|e| e.set)
        .unwrap_or_default()
}

/// Union of every other manager's field set.
pub fn owned_by_others(obj: &Value, manager: &str, sub: Option<&str>) -> FieldSet {
    parse(obj)
        .into_iter()
        .filter(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub)
        })
        .flat_map(|e| e.set)
        .collect()
}
