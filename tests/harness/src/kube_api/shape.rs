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
/// `+listMapKey=name`), so an applier owning it replaces the whole list. Change the entry here
/// if a test needs the other behaviour.
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
            "spec.versions",
            || ListType::Map(vec!["name".into()]),
        ),
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

    /// Maps marked `x-kubernetes-map-type: atomic` (or granular structs otherwise).
    pub fn atomic_map(&self, tpath: &[String]) -> bool {
        self.schema
            .and_then(|s| schema_at(s, tpath))
            .and_then(|n| n.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
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
