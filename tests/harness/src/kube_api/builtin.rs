//! What the real registry strategies of our built-in types do on write: Secret `stringData`,
//! type and content rules, Namespace phase and name label, CRD status, Go's `omitempty`.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::meta::meta_mut;
use super::registry::{CRD_KEY, NAMESPACES, ResourceDef};
use super::status::{ApiError, FieldError};

const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Typed Go objects drop nulls and empty collections (`omitempty`); metadata is typed even for
/// custom resources.
pub fn normalize(def: &ResourceDef, obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        strip_empty(meta);
    }
    // CRD schemas carry raw JSON (`default: {}`), which must survive untouched.
    if def.custom || def.key() == CRD_KEY {
        return;
    }
    if let Some(map) = obj.as_object_mut() {
        for (k, v) in map.iter_mut() {
            if k != "metadata"
                && let Value::Object(m) = v
            {
                strip_empty(m);
            }
        }
        map.retain(|k, v| k == "metadata" || !is_empty(v));
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn strip_empty(map: &mut Map<String, Value>) {
    for v in map.values_mut() {
        if let Value::Object(m) = v {
            strip_empty(m);
        }
    }
    map.retain(|_, v| !is_empty(v));
}

/// Type-specific defaulting and validation; `old` is the stored object for updates.
pub fn prepare(
    def: &ResourceDef,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<FieldError>, ApiError> {
    if def.custom {
        return Ok(Vec::new());
    }
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => secret(obj, old),
        ("", NAMESPACES) => {
            namespace(obj, old);
            Ok(Vec::new())
        }
        ("", "configmaps") => Ok(config_keys(obj, "data")
            .into_iter()
            .chain(config_keys(obj, "binaryData"))
            .collect()),
        _ => Ok(Vec::new()),
    }
}

fn config_keys(obj: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for k in obj[field].as_object().into_iter().flat_map(|m| m.keys()) {
        let valid = !k.is_empty()
            && k.len() <= 253
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid {
            errs.push(FieldError::invalid(
                format!("{field}[{k}]"),
                &json!(k),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
    errs
}

fn secret(obj: &mut Value, old: Option<&Value>) -> Result<Vec<FieldError>, ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    // The v1 → internal conversion folds stringData into data; stringData is never stored.
    if let Some(Value::Object(string_data)) =
        obj.as_object_mut().and_then(|m| m.remove("stringData"))
    {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k.as_str()] = json!(b64.encode(text));
        }
    }
    let mut size = 0;
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let decoded = v
            .as_str()
            .and_then(|s| b64.decode(s).ok())
            .ok_or_else(|| ApiError::bad_request(format!("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data for key {k:?}")))?;
        size += decoded.len();
    }
    if obj["type"].as_str().is_none_or(str::is_empty) {
        obj["type"] = json!("Opaque");
    }
    let mut errs = config_keys(obj, "data");
    if size > MAX_SECRET_BYTES {
        errs.push(FieldError::new(
            "FieldValueTooLong",
            "data",
            format!("Too long: may not be more than {MAX_SECRET_BYTES} bytes"),
        ));
    }
    let ty = obj["type"].as_str().unwrap_or_default().to_string();
    match ty.as_str() {
        "kubernetes.io/dockerconfigjson" => match obj["data"][".dockerconfigjson"].as_str() {
            None => errs.push(FieldError::required("data[.dockerconfigjson]")),
            Some(encoded) => {
                let decoded = b64.decode(encoded).unwrap_or_default();
                if let Err(e) = serde_json::from_slice::<Value>(&decoded) {
                    errs.push(FieldError::invalid(
                        "data[.dockerconfigjson]",
                        &json!("<secret contents redacted>"),
                        &e.to_string(),
                    ));
                }
            }
        },
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if obj["data"][key].is_null() {
                    errs.push(FieldError::required(format!("data[{key}]")));
                }
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        if old["type"] != obj["type"] {
            errs.push(FieldError::invalid(
                "type",
                &obj["type"],
                "field is immutable",
            ));
        }
        if old["immutable"].as_bool() == Some(true) {
            if old["data"] != obj["data"] {
                errs.push(FieldError::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
            if obj["immutable"].as_bool() != Some(true) {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    Ok(errs)
}

fn namespace(obj: &mut Value, old: Option<&Value>) {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let meta = meta_mut(obj);
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta.insert("labels".into(), json!({}));
    }
    meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
    // spec.finalizers belongs to the namespace controller (via /finalize), not to updates.
    match old {
        None => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        Some(old) => obj["spec"] = old["spec"].clone(),
    }
}

/// A CRD's defaults (`SetDefaults_CustomResourceDefinition`: conversion strategy None, singular
/// and listKind from the kind) and what its strategy sets: on create a status with no accepted
/// names and no conditions (the CRD controllers accept the names and establish it afterwards,
/// see `controllers`), on updates the storage version added to `status.storedVersions`.
pub fn crd(crd: &mut Value, old: Option<&Value>, status_write: bool) {
    if crd["spec"]["conversion"].is_null() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let names = &mut crd["spec"]["names"];
    if names["singular"].as_str().is_none_or(str::is_empty) {
        names["singular"] = json!(kind.to_ascii_lowercase());
    }
    if names["listKind"].as_str().is_none_or(str::is_empty) {
        names["listKind"] = json!(format!("{kind}List"));
    }
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    if old.is_none() {
        crd["status"] = json!({
            "conditions": null,
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": storage,
        });
    } else if !status_write {
        if !crd["status"]["storedVersions"].is_array() {
            crd["status"]["storedVersions"] = json!([]);
        }
        if let Some(stored) = crd["status"]["storedVersions"].as_array_mut() {
            for v in storage {
                if !stored.contains(&v) {
                    stored.push(v);
                }
            }
        }
    }
}

/// What Go's JSON decoder would refuse for the typed fields we know: the metadata of every
/// object, and Secret/ConfigMap content.
pub fn check_decodable(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let fail = |field: &str, go_type: &str| {
        ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: json: cannot unmarshal into Go struct field {kind}.{field} of type {go_type}",
            kind = def.kind,
            v = def.preferred_version(),
        ))
    };
    let string_map = |v: &Value| {
        v.is_null()
            || v.as_object()
                .is_some_and(|m| m.values().all(Value::is_string))
    };
    let meta = &obj["metadata"];
    if !(meta.is_null() || meta.is_object()) {
        return Err(fail("metadata", "v1.ObjectMeta"));
    }
    for f in [
        "name",
        "generateName",
        "namespace",
        "resourceVersion",
        "uid",
    ] {
        if !(meta[f].is_null() || meta[f].is_string()) {
            return Err(fail(&format!("metadata.{f}"), "string"));
        }
    }
    for f in ["labels", "annotations"] {
        if !string_map(&meta[f]) {
            return Err(fail(&format!("metadata.{f}"), "map[string]string"));
        }
    }
    let finalizers = &meta["finalizers"];
    if !(finalizers.is_null()
        || finalizers
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)))
    {
        return Err(fail("metadata.finalizers", "[]string"));
    }
    let refs = &meta["ownerReferences"];
    if !(refs.is_null()
        || refs
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_object)))
    {
        return Err(fail("metadata.ownerReferences", "[]v1.OwnerReference"));
    }
    let typed_maps: &[&str] = match (def.custom, def.group.as_str(), def.plural.as_str()) {
        (false, "", "secrets") => &["data", "stringData"],
        (false, "", "configmaps") => &["data", "binaryData"],
        _ => &[],
    };
    for f in typed_maps {
        if !string_map(&obj[*f]) {
            return Err(fail(f, "map[string]string"));
        }
    }
    Ok(())
}

/// Kinds of the core v1 scheme a body may name instead of the endpoint's: the decoder reads them
/// and then cannot convert them.
const CORE_V1_KINDS: &[&str] = &[
    "ConfigMap",
    "Endpoints",
    "Event",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Pod",
    "ReplicationController",
    "Secret",
    "Service",
    "ServiceAccount",
];

/// The Go package of a group's internal types, as conversion errors name them.
fn internal_package(group: &str) -> &str {
    match group {
        "" | "events.k8s.io" => "core",
        other => other.split('.').next().unwrap_or(other),
    }
}

/// Rejects `apiVersion`/`kind` in a body that do not match the endpoint, with the decoder's
/// words: for built-in types the scheme's, for custom resources the CRD handler's (where a
/// foreign kind is an invalid field, not undecodable).
pub fn check_type_meta(def: &ResourceDef, version: &str, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = def.api_version(version);
    let body_av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(String::from);
    let body_kind = obj.get("kind").and_then(Value::as_str).map(String::from);
    let av_ok = match body_av.as_deref() {
        None => !def.custom,
        Some(av) => {
            av == want_av
                || (def.group.is_empty() && av == version)
                || av
                    .strip_prefix(&format!("{}/", def.group))
                    .is_some_and(|v| def.serves(v))
        }
    };
    if def.custom {
        if !av_ok {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({want_av})",
                body_av.unwrap_or_default()
            )));
        }
        match body_kind.as_deref() {
            None => {
                let body = obj.to_string();
                let summary = if body.len() > 30 {
                    format!("{} ...", body.chars().take(30).collect::<String>())
                } else {
                    body.clone()
                };
                return Err(ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {}): Object 'Kind' is missing in '{}' ({summary})",
                    def.kind,
                    truncate(obj)
                )));
            }
            Some(k) if k != def.kind => {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                return Err(ApiError::invalid_as(
                    &def.group,
                    k,
                    name,
                    &[FieldError::invalid(
                        "kind",
                        &json!(k),
                        &format!("must be {}", def.kind),
                    )],
                ));
            }
            Some(_) => {}
        }
    } else {
        let kind = body_kind.clone().unwrap_or_else(|| def.kind.clone());
        let av = body_av.clone().unwrap_or_else(|| want_av.clone());
        let body_version = av.rsplit('/').next().unwrap_or(&av).to_string();
        let refuse = |why: String| {
            ApiError::bad_request(format!(
                "{kind} in version {body_version:?} cannot be handled as a {}: {why}",
                def.kind
            ))
        };
        let unregistered = |av: &str| {
            format!(
                "no kind {kind:?} is registered for version {av:?} in scheme \"pkg/runtime/scheme.go:110\""
            )
        };
        if !av_ok {
            return Err(refuse(unregistered(&av)));
        }
        if kind != def.kind {
            if def.group.is_empty() && CORE_V1_KINDS.contains(&kind.as_str()) {
                return Err(refuse(format!(
                    "converting ({version}.{kind}) to ({}.{}): unknown conversion",
                    internal_package(&def.group),
                    def.kind
                )));
            }
            return Err(refuse(unregistered(&want_av)));
        }
    }
    obj["apiVersion"] = json!(want_av);
    obj["kind"] = json!(def.kind);
    Ok(())
}

fn truncate(obj: &Value) -> String {
    let s = obj.to_string();
    s.chars().take(200).collect()
}
