//! ObjectMeta rules shared by every resource: name formats, label syntax, owner references.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::status::FieldError;

const DNS1123_SUBDOMAIN: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_LABEL: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME: &str = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE: &str = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

fn anchored(re: &str) -> Regex {
    // The patterns above are constants, so this cannot fail at runtime.
    Regex::new(&format!("^(?:{re})$")).expect("static regex")
}

static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN));
static LABEL: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL));
static QUALIFIED: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME));
static VALUE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE));

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    for b in &mut bytes {
        *b = fastrand::u8(..);
    }
    // Version 4, RFC 4122 variant, like the uuids the real server hands out.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `generateName` suffix: 5 characters from the same alphabet as `utilrand.String`.
pub fn generated_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Namespaces are DNS-1123 labels; every other type we serve uses subdomains.
pub fn validate_name(name: &str, label_only: bool) -> Option<FieldError> {
    let v = Value::String(name.to_string());
    if label_only {
        if name.len() > 63 {
            return Some(FieldError::invalid(
                "metadata.name",
                &v,
                "must be no more than 63 characters",
            ));
        }
        if !LABEL.is_match(name) {
            return Some(FieldError::invalid(
                "metadata.name",
                &v,
                &format!(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL}')"
                ),
            ));
        }
        return None;
    }
    if name.len() > 253 {
        return Some(FieldError::invalid(
            "metadata.name",
            &v,
            "must be no more than 253 characters",
        ));
    }
    if !SUBDOMAIN.is_match(name) {
        return Some(FieldError::invalid(
            "metadata.name",
            &v,
            &format!(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN}')"
            ),
        ));
    }
    None
}

fn qualified_name_errors(field: &str, key: &str) -> Option<FieldError> {
    let v = Value::String(key.to_string());
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || prefix.len() > 253 || !SUBDOMAIN.is_match(prefix))
    {
        return Some(FieldError::invalid(
            field,
            &v,
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    if name.is_empty() || name.len() > 63 || !QUALIFIED.is_match(name) {
        return Some(FieldError::invalid(
            field,
            &v,
            &format!(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME}')"
            ),
        ));
    }
    None
}

/// Label and annotation keys, label values, owner references.
pub fn validate_meta(meta: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            errs.extend(qualified_name_errors("metadata.labels", k));
            match v.as_str() {
                Some(s) if s.len() <= 63 && VALUE.is_match(s) => {}
                Some(_) => errs.push(FieldError::invalid(
                    "metadata.labels",
                    v,
                    &format!("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE}')"),
                )),
                None => errs.push(FieldError::invalid("metadata.labels", v, "must be a string")),
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        for (k, v) in annotations {
            errs.extend(qualified_name_errors("metadata.annotations", k));
            if !v.is_string() {
                errs.push(FieldError::invalid(
                    "metadata.annotations",
                    v,
                    "must be a string",
                ));
            }
        }
    }
    if let Some(refs) = meta["ownerReferences"].as_array() {
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            for field in ["apiVersion", "kind", "name", "uid"] {
                if r[field].as_str().is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!(
                        "metadata.ownerReferences[{i}].{field}"
                    )));
                }
            }
            if r["controller"].as_bool() == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            errs.push(FieldError::invalid(
                "metadata.ownerReferences",
                &meta["ownerReferences"],
                "Only one reference can have Controller set to true",
            ));
        }
    }
    errs
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}

pub fn uid_of(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect()
}

/// `metadata` as a mutable map, created if absent or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Default::default());
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}
