//! `metav1.Status` failures with the reasons, messages and details the real API server uses, so
//! that clients branching on `reason`/`code` (kube's `Error::Api`) behave as they would in a cluster.

use serde_json::{Map, Value, json};

use super::registry::ResourceDef;

/// One failed field, rendered like `field.Error` in the apimachinery validation package.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Cause type, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// Dotted path, e.g. `spec.registries[0]`.
    pub field: String,
    /// Message without the field prefix, e.g. `Required value`.
    pub message: String,
}

impl FieldError {
    pub fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        Self::new("FieldValueRequired", field, "Required value")
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {}: {detail}", go_value(value)),
        )
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::new("FieldValueForbidden", field, format!("Forbidden: {detail}"))
    }
}

/// A failure response: HTTP code plus the Status body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn to_value(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.group_resource()),
        )
        .with_details(resource_details(def, name))
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.group_resource()),
        )
        .with_details(resource_details(def, name))
    }

    pub fn conflict(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                def.group_resource()
            ),
        )
        .with_details(resource_details(def, name))
    }

    pub fn modified(def: &ResourceDef, name: &str) -> Self {
        Self::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// SSA ownership conflicts; `causes` are (manager description, field path). The details
    /// name no object, only the causes.
    pub fn apply_conflict(message: String, causes: Value) -> Self {
        Self::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
    }

    /// A delete precondition that does not hold: the store checks them before deleting and names
    /// the kind, not the resource (`Operation cannot be fulfilled on ConfigMap "c": …`).
    pub fn delete_precondition(def: &ResourceDef, name: &str, why: String) -> Self {
        let resource = if def.group.is_empty() {
            def.kind.clone()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !def.group.is_empty() {
            details.insert("group".into(), json!(def.group));
        }
        details.insert("kind".into(), json!(def.kind));
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        )
        .with_details(Value::Object(details))
    }

    /// A PUT whose `metadata.uid` is not the stored object's: etcd's precondition fails.
    pub fn uid_precondition(
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        uid: &str,
        stored: &str,
    ) -> Self {
        let prefix = if def.custom || def.key() == super::registry::CRD_KEY {
            format!("/registry/{}/{}", def.group, def.plural)
        } else {
            format!("/registry/{}", def.plural)
        };
        let key = match ns {
            Some(ns) => format!("{prefix}/{ns}/{name}"),
            None => format!("{prefix}/{name}"),
        };
        Self::conflict(
            def,
            name,
            &format!(
                "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: {stored}"
            ),
        )
    }

    pub fn invalid(def: &ResourceDef, name: &str, errs: &[FieldError]) -> Self {
        Self::invalid_as(&def.group, &def.kind, name, errs)
    }

    /// What the generic store answers for an update without a resourceVersion where its strategy
    /// requires one: the resource stands where the kind would be.
    pub fn invalid_resource(def: &ResourceDef, name: &str, errs: &[FieldError]) -> Self {
        Self::invalid_as(&def.group, &def.plural, name, errs)
    }

    /// `Kind.group "name" is invalid: …`, details without a name when there is none.
    pub fn invalid_as(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Self {
        let rendered: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        let joined = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let mut details = Map::new();
        if !name.is_empty() {
            details.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            details.insert("group".into(), json!(group));
        }
        details.insert("kind".into(), json!(kind));
        details.insert(
            "causes".into(),
            Value::Array(
                errs.iter()
                    .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
                    .collect(),
            ),
        );
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {joined}"),
        )
        .with_details(Value::Object(details))
    }

    /// What the apiserver's `NewGenericServerResponse(422, ...)` produces, e.g. for a failed JSON
    /// patch `test` operation: the reason is not passed on (no causes).
    pub fn unprocessable() -> Self {
        Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        )
        .with_details(json!({}))
    }

    pub fn forbidden_terminating(def: &ResourceDef, name: &str, ns: &str) -> Self {
        let why = format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        );
        let mut details = resource_details(def, name);
        details["causes"] = json!([{"reason": "NamespaceTerminating", "message": why, "field": "metadata.namespace"}]);
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", def.group_resource()),
        )
        .with_details(details)
    }

    /// `PatchOptions` validation, e.g. apply without `fieldManager` (422, as the real server).
    pub fn invalid_options(field: &str, detail: &str) -> Self {
        let (reason, message) = if detail.starts_with("is required") {
            ("FieldValueRequired", format!("Required value: {detail}"))
        } else {
            ("FieldValueForbidden", format!("Forbidden: {detail}"))
        };
        Self::new(
            422,
            "Invalid",
            format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {message}"),
        )
        .with_details(json!({
            "group": "meta.k8s.io",
            "kind": "PatchOptions",
            "causes": [{"reason": reason, "message": message, "field": field}],
        }))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unavailable() -> Self {
        Self::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        )
    }

    /// A failure chosen by a test: the reason the real server pairs with `code`.
    pub fn injected(code: u16) -> Self {
        let (reason, message) = match code {
            400 => (
                "BadRequest",
                "the server rejected our request for an unknown reason",
            ),
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden: injected fault"),
            404 => (
                "NotFound",
                "the server could not find the requested resource",
            ),
            405 => (
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
            409 => ("Conflict", "the server reported a conflict"),
            410 => ("Expired", "the resource version is too old"),
            422 => (
                "Invalid",
                "the server rejected our request due to an error in our request",
            ),
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            500 => (
                "InternalError",
                "an error on the server (\"injected fault\") has prevented the request from succeeding",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            _ => ("", "injected fault"),
        };
        Self::new(code, reason, message)
    }
}

fn resource_details(def: &ResourceDef, name: &str) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), json!(name));
    if !def.group.is_empty() {
        details.insert("group".into(), json!(def.group));
    }
    details.insert("kind".into(), json!(def.plural));
    Value::Object(details)
}

/// Go's `%#v` of a `[]string`: `[]string{"a", "b"}`.
pub fn go_string_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// The `%v`-ish rendering Go's field errors use for a value: strings quoted, numbers bare.
pub fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        Value::Object(_) => format!("map[string]interface {{}}{value}"),
        Value::Array(_) => format!("[]interface {{}}{value}"),
        other => other.to_string(),
    }
}
