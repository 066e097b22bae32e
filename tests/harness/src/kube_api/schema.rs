//! Structural-schema handling for custom resources, in the apiserver's order: prune unknown
//! fields, apply `default`s, prune again, validate.
//!
//! `x-kubernetes-validations` (CEL rules) are not evaluated: that would need a CEL interpreter, so
//! objects a real server rejects through a CEL rule are accepted here. Tests that depend on CEL
//! rules must not rely on this emulator. What the real server says when schema errors keep it
//! from evaluating the rules is said here too ([`rules_not_checked`]).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use base64::Engine as _;
use regex::Regex;
use serde_json::{Map, Value};

use super::status::{FieldError, go_value};

/// Root fields every custom resource keeps regardless of its schema.
const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

pub fn prune_and_default(obj: &mut Value, schema: &Value) {
    prune(obj, schema, true);
    apply_defaults(obj, schema);
    prune(obj, schema, true);
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
        || schema["additionalProperties"].as_bool() == Some(true)
}

fn prune(value: &mut Value, schema: &Value, root: bool) {
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"]);
            let keep_all =
                preserves_unknown(schema) || (props.is_none() && schema.get("type").is_none());
            let embedded = schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
            map.retain(|k, v| {
                let sub = props.and_then(|p| p.get(k)).or(additional);
                let system = (root || embedded) && ROOT_FIELDS.contains(&k.as_str());
                if v.is_null() && !system {
                    // Nulls of non-nullable fields are dropped, as the apiserver does before defaulting.
                    return sub.is_some_and(|s| s["nullable"].as_bool() == Some(true))
                        || (sub.is_none() && keep_all);
                }
                sub.is_some() || keep_all || system
            });
            for (k, v) in map.iter_mut() {
                if root && ROOT_FIELDS.contains(&k.as_str()) && k != "metadata" {
                    continue;
                }
                if root && k == "metadata" {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
                    prune(v, sub, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
                for (k, v) in map.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        apply_defaults(v, sub);
                    }
                }
            } else if let Some(additional) = schema["additionalProperties"].as_object() {
                let sub = Value::Object(additional.clone());
                for v in map.values_mut() {
                    apply_defaults(v, &sub);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = obj.as_object() else {
        return errs;
    };
    let props = schema["properties"].as_object();
    for (k, v) in map {
        if k == "metadata" {
            continue;
        }
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            check(v, sub, k, &mut errs);
        }
    }
    required(map, schema, "", &mut errs);
    errs
}

/// Errors that keep the API server from evaluating a schema's CEL rules (its `hasBlockingErr`).
const BLOCKING: &[&str] = &[
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// The error the API server appends when the schema has CEL rules and `errs` include one that
/// keeps it from evaluating them.
pub fn rules_not_checked(schema: &Value, errs: &[FieldError]) -> Option<FieldError> {
    (has_rules(schema) && errs.iter().any(|e| BLOCKING.contains(&e.reason))).then(|| {
        FieldError::new(
            "FieldValueInvalid",
            "<nil>",
            "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        )
    })
}

fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn required(map: &Map<String, Value>, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for r in schema["required"].as_array().into_iter().flatten() {
        if let Some(r) = r.as_str()
            && !map.contains_key(r)
        {
            errs.push(FieldError::required(join(path, r)));
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(v: &Value, want: &str) -> bool {
    match want {
        "number" => v.is_number(),
        other => type_name(v) == other,
    }
}

fn check(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if schema["nullable"].as_bool() != Some(true) && schema.get("type").is_some() {
            type_error(v, schema["type"].as_str().unwrap_or("object"), path, errs);
        }
        return;
    }
    // A value of the wrong type is still checked against the enum, as the API server does.
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        if !(v.is_string() || type_name(v) == "integer") {
            type_error(v, "integer or string", path, errs);
        }
    } else if let Some(want) = schema["type"].as_str()
        && !type_ok(v, want)
    {
        type_error(v, want, path, errs);
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        let supported: Vec<String> = options.iter().map(go_value).collect();
        errs.push(FieldError::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                go_value(v),
                supported.join(", ")
            ),
        ));
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        check(v, sub, path, errs);
    }
    for (key, exactly_one) in [("anyOf", false), ("oneOf", true)] {
        if let Some(options) = schema[key].as_array() {
            let passing = options
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    check(v, s, path, &mut e);
                    e.is_empty()
                })
                .count();
            let ok = if exactly_one {
                passing == 1
            } else {
                passing >= 1
            };
            if !ok {
                let what = if exactly_one {
                    "must validate one and only one schema (oneOf)"
                } else {
                    "must validate at least one schema (anyOf)"
                };
                errs.push(FieldError::invalid(path, v, what));
            }
        }
    }
    match v {
        Value::String(s) => check_string(s, v, schema, path, errs),
        Value::Number(n) => check_number(n.as_f64().unwrap_or_default(), v, schema, path, errs),
        Value::Array(items) => check_array(items, v, schema, path, errs),
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"]);
            for (k, child) in map {
                if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
                    check(child, sub, &join(path, k), errs);
                }
            }
            required(map, schema, path, errs);
            if let Some(max) = schema["maxProperties"].as_u64()
                && map.len() as u64 > max
            {
                errs.push(FieldError::new(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", map.len()),
                ));
            }
        }
        _ => {}
    }
}

fn type_error(v: &Value, want: &str, path: &str, errs: &mut Vec<FieldError>) {
    let actual = Value::String(type_name(v).into());
    errs.push(FieldError::new(
        "FieldValueTypeInvalid",
        path,
        format!(
            "Invalid value: {}: {path} in body must be of type {want}: {}",
            go_value(&actual),
            go_value(&actual)
        ),
    ));
}

static REGEXES: LazyLock<Mutex<HashMap<String, Option<Regex>>>> = LazyLock::new(Default::default);

fn pattern_matches(pattern: &str, s: &str) -> bool {
    let mut cache = REGEXES.lock().unwrap_or_else(|e| e.into_inner());
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    // A pattern Rust's regex cannot compile is not enforced rather than rejecting everything.
    re.as_ref().is_none_or(|re| re.is_match(s))
}

fn check_string(s: &str, v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64()
        && chars < min
    {
        errs.push(FieldError::invalid(
            path,
            v,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && chars > max
    {
        errs.push(FieldError::new(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(p) = schema["pattern"].as_str()
        && !pattern_matches(p, s)
    {
        errs.push(FieldError::invalid(
            path,
            v,
            &format!("{path} in body should match '{p}'"),
        ));
    }
    if let Some(format) = schema["format"].as_str() {
        let ok = match format {
            "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
            "uuid" => s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            _ => true,
        };
        if !ok {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!("{path} in body must be of type {format}: {}", go_value(v)),
            ));
        }
    }
}

fn check_number(n: f64, v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let exclusive = |k: &str| schema[k].as_bool() == Some(true);
    if let Some(min) = schema["minimum"].as_f64() {
        if exclusive("exclusiveMinimum") && n <= min {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!(
                    "{path} in body should be greater than {}",
                    schema["minimum"]
                ),
            ));
        } else if n < min {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!(
                    "{path} in body should be greater than or equal to {}",
                    schema["minimum"]
                ),
            ));
        }
    }
    if let Some(max) = schema["maximum"].as_f64() {
        if exclusive("exclusiveMaximum") && n >= max {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!("{path} in body should be less than {}", schema["maximum"]),
            ));
        } else if n > max {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!(
                    "{path} in body should be less than or equal to {}",
                    schema["maximum"]
                ),
            ));
        }
    }
}

fn check_array(items: &[Value], v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let len = items.len() as u64;
    if let Some(min) = schema["minItems"].as_u64()
        && len < min
    {
        errs.push(FieldError::invalid(
            path,
            &Value::from(len),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = schema["maxItems"].as_u64()
        && len > max
    {
        errs.push(FieldError::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {len}: must have at most {max} items"),
        ));
    }
    let _ = v;
    match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errs.push(FieldError::new(
                        "FieldValueDuplicate",
                        format!("{path}[{i}]"),
                        format!("Duplicate value: {}", go_value(item)),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let key_of = |item: &Value| -> Map<String, Value> {
                keys.iter()
                    .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let k = key_of(item);
                if items[..i].iter().any(|o| key_of(o) == k) {
                    errs.push(FieldError::new(
                        "FieldValueDuplicate",
                        format!("{path}[{i}]"),
                        format!("Duplicate value: {}", go_value(&Value::Object(k))),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item, item_schema, &format!("{path}[{i}]"), errs);
        }
    }
}
