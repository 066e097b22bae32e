//! Server-side apply: merging an applied configuration into the live object and dropping the
//! fields the applier stopped sending (ownership bookkeeping lives in `managed`).

use serde_json::Value;

use super::fieldset::{self, FieldSet, Path};
use super::shape::{ListType, Shape};

/// The live object with `config` merged in: maps recursively, associative lists by key, sets by
/// value, everything else (atomic lists, scalars) replaced.
pub fn merge(live: &Value, config: &Value, shape: &Shape) -> Value {
    merge_at(live, config, shape, &mut Vec::new())
}

fn merge_at(live: &Value, config: &Value, shape: &Shape, tpath: &mut Vec<String>) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if tpath.is_empty() || !shape.atomic_map(tpath) => {
            let mut out = l.clone();
            for (k, cv) in c {
                tpath.push(k.clone());
                let merged = match l.get(k) {
                    Some(lv) => merge_at(lv, cv, shape, tpath),
                    None => cv.clone(),
                };
                tpath.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => match shape.list_type(tpath) {
            ListType::Atomic => config.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for item in c {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let mut out = l.clone();
                tpath.push("[]".into());
                for item in c {
                    let key = fieldset::key_string(item, &keys);
                    let pos = key.as_ref().and_then(|k| {
                        out.iter()
                            .position(|o| fieldset::key_string(o, &keys).as_ref() == Some(k))
                    });
                    match pos {
                        Some(i) => out[i] = merge_at(&out[i], item, shape, tpath),
                        None => out.push(item.clone()),
                    }
                }
                tpath.pop();
                Value::Array(out)
            }
        },
        _ => config.clone(),
    }
}

/// Removes what the applier owned before (`last`) but no longer applies (`now`), unless another
/// manager owns it or something beneath it.
pub fn prune(obj: &mut Value, last: &FieldSet, now: &FieldSet, others: &FieldSet) {
    let owned_elsewhere =
        |p: &Path| others.iter().any(|o| o.starts_with(p)) || now.iter().any(|o| o.starts_with(p));
    for path in last.difference(now) {
        if owned_elsewhere(path) {
            continue;
        }
        if fieldset::remove_at(obj, path) {
            // A map emptied by the removal goes too, unless someone still claims it.
            let mut parent = path.clone();
            while parent.len() > 1 {
                parent.pop();
                let empty = fieldset::get_at(obj, &parent)
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.is_empty());
                if !empty || owned_elsewhere(&parent) {
                    break;
                }
                fieldset::remove_at(obj, &parent);
            }
        }
    }
}
