//! How server-side apply treats each list and map: the one table of list types for built-in
//! fields, plus the `x-kubernetes-list-type`/`x-kubernetes-map-type` markers of CRD schemas.
//!
//! Type paths are field names from the root with `[]` standing for "an item of this list".

use serde_json::Value;

use super::registry::ResourceDef;

#[derive(Debug, Clone, PartialEq)]
pub enum ListType {
    /// Replaced as a whole; the default for lists without a marker.
    Atomic,
    /// Items are scalars merged as a set.
    Set,
    /// Items are objects identified by these key fields.
    Map(Vec<String>),
}

/// `(resource key or "*", dotted type path, list type)` for built-in types. Lists not listed are
/// atomic, as structured-merge-diff treats lists without `x-kubernetes-list-type`.
///
/// ServiceAccount `imagePullSecrets` is `+listType=atomic` in k8s.io/api core/v1 types.go (it
/// has no patchStrategy/patchMergeKey, unlike `secrets`, which is `+listType=map`
/// `+listMapKey=name`), so an applier owning it replaces the whole list. A CRD's `spec.versions`
/// has no list type either: kube-apiserver records it as one atomic field.
fn builtin_list_type(resource: &str, path: &str) -> Option<ListType> {
    type Entry = (&'static str, &'static str, fn() -> ListType);
    let table: &[Entry] = &[
        ("*", "metadata.ownerReferences", || {
            ListType::Map(vec!["uid".into()])
        }),
        ("*", "metadata.finalizers", || ListType::Set),
        ("serviceaccounts", "secrets", || {
            ListType::Map(vec!["name".into()])
        }),
        ("serviceaccounts", "imagePullSecrets", || ListType::Atomic),
        ("namespaces", "spec.finalizers", || ListType::Set),
        (
            "customresourcedefinitions.apiextensions.k8s.io",
            "status.conditions",
            || ListType::Map(vec!["type".into()]),
        ),
    ];
    table
        .iter()
        .find(|(r, p, _)| (*r == "*" || *r == resource) && *p == path)
        .map(|(_, _, t)| t())
}

/// Structs whose fields are one atomic value (`+structType=atomic`): OwnerReference and
/// ObjectReference, wherever our built-in types use them. Managed fields own such an item or
/// field as a whole (`k:{"uid":"…"}: {}`), and apply replaces it whole.
fn builtin_atomic_struct(resource: &str, path: &str) -> bool {
    const TABLE: &[(&str, &str)] = &[
        ("*", "metadata.ownerReferences.[]"),
        ("serviceaccounts", "secrets.[]"),
        ("events", "involvedObject"),
        ("events", "related"),
        ("events.events.k8s.io", "regarding"),
        ("events.events.k8s.io", "related"),
    ];
    TABLE
        .iter()
        .any(|(r, p)| (*r == "*" || *r == resource) && *p == path)
}

/// Struct fields a typed object always has, even in its zero value (no `omitempty` pointer):
/// the API server compares a create with that zero value, so these are never "added" and never
/// get a `.` entry of their own in managed fields.
fn builtin_always_present(resource: &str, path: &str) -> bool {
    const TABLE: &[(&str, &str)] = &[
        ("customresourcedefinitions.apiextensions.k8s.io", "spec"),
        (
            "customresourcedefinitions.apiextensions.k8s.io",
            "spec.names",
        ),
        ("customresourcedefinitions.apiextensions.k8s.io", "status"),
        (
            "customresourcedefinitions.apiextensions.k8s.io",
            "status.acceptedNames",
        ),
        ("namespaces", "spec"),
        ("namespaces", "status"),
        ("leases.coordination.k8s.io", "spec"),
        ("events", "source"),
        ("events.events.k8s.io", "deprecatedSource"),
    ];
    TABLE.iter().any(|(r, p)| *r == resource && *p == path)
}

pub struct Shape<'a> {
    resource: String,
    schema: Option<&'a Value>,
}

impl<'a> Shape<'a> {
    pub fn new(def: &'a ResourceDef, version: &str) -> Self {
        Shape {
            resource: def.key(),
            schema: def.schema(version),
        }
    }

    pub fn list_type(&self, tpath: &[String]) -> ListType {
        let dotted = tpath.join(".");
        if let Some(t) = builtin_list_type(&self.resource, &dotted) {
            return t;
        }
        let Some(node) = self.schema.and_then(|s| schema_at(s, tpath)) else {
            return ListType::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                node["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect(),
            ),
            _ => ListType::Atomic,
        }
    }

    /// Maps marked `x-kubernetes-map-type: atomic` and atomic built-in structs (granular
    /// otherwise).
    pub fn atomic_map(&self, tpath: &[String]) -> bool {
        if builtin_atomic_struct(&self.resource, &tpath.join(".")) {
            return true;
        }
        self.schema
            .and_then(|s| schema_at(s, tpath))
            .and_then(|n| n.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }

    /// Whether the typed object has this struct even when empty (see `builtin_always_present`).
    pub fn always_present(&self, tpath: &[String]) -> bool {
        builtin_always_present(&self.resource, &tpath.join("."))
    }
}

/// The schema node for a type path, following `properties`, `additionalProperties` and `items`.
pub fn schema_at<'s>(schema: &'s Value, tpath: &[String]) -> Option<&'s Value> {
    let mut node = schema;
    for seg in tpath {
        node = if seg == "[]" {
            node.get("items")?
        } else if let Some(p) = node.get("properties").and_then(|p| p.get(seg.as_str())) {
            p
        } else {
            node.get("additionalProperties").filter(|a| a.is_object())?
        };
    }
    Some(node)
}
