//! Field paths and sets as structured-merge-diff models them, and their `FieldsV1` encoding
//! (`f:` fields, `k:` associative-list keys, `v:` set values, `.` for "this node itself").

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::shape::{ListType, Shape};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathEl {
    Field(String),
    /// Canonical JSON object of the key fields, sorted by name.
    Key(String),
    /// Canonical JSON of a set member.
    Value(String),
    Index(usize),
}

pub type Path = Vec<PathEl>;
pub type FieldSet = BTreeSet<Path>;

impl PathEl {
    fn encode(&self) -> String {
        match self {
            PathEl::Field(f) => format!("f:{f}"),
            PathEl::Key(k) => format!("k:{k}"),
            PathEl::Value(v) => format!("v:{v}"),
            PathEl::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<PathEl> {
        let (tag, rest) = s.split_once(':')?;
        Some(match tag {
            "f" => PathEl::Field(rest.into()),
            "k" => PathEl::Key(rest.into()),
            "v" => PathEl::Value(rest.into()),
            "i" => PathEl::Index(rest.parse().ok()?),
            _ => return None,
        })
    }
}

/// `.spec.containers[name="x"].image`, the notation of conflict messages.
pub fn display(path: &Path) -> String {
    let mut out = String::new();
    for el in path {
        match el {
            PathEl::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathEl::Key(k) => {
                let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathEl::Value(v) => out.push_str(&format!("[={v}]")),
            PathEl::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub fn key_string(item: &Value, keys: &[String]) -> Option<String> {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    let mut parts = Vec::new();
    for k in sorted {
        let v = item.get(k.as_str())?;
        parts.push(format!("{}:{v}", Value::String(k.clone())));
    }
    Some(format!("{{{}}}", parts.join(",")))
}

/// Every owned path of `root` (a top-level object) mapped to its value when it is a leaf, or to
/// `None` for associative-list items, which are owned as nodes of their own: what
/// structured-merge-diff's `ToFieldSet` gives, the field set of an applied configuration.
pub fn leaves<'v>(root: &'v Value, shape: &Shape) -> BTreeMap<Path, Option<&'v Value>> {
    collect(root, shape, false)
}

/// [`leaves`] plus every granular map and list that holds them (as `None`), except `metadata`
/// itself and the structs a typed object always has: the paths structured-merge-diff's
/// `Compare` reports as added or removed, so that an update creating a map owns it too (the
/// `.` of `f:data: {".": {}, "f:key": {}}`).
pub fn paths<'v>(root: &'v Value, shape: &Shape) -> BTreeMap<Path, Option<&'v Value>> {
    collect(root, shape, true)
}

fn collect<'v>(root: &'v Value, shape: &Shape, nodes: bool) -> BTreeMap<Path, Option<&'v Value>> {
    let mut out = BTreeMap::new();
    if let Some(map) = root.as_object() {
        let mut path = Vec::new();
        let mut tpath = Vec::new();
        for (k, v) in map {
            path.push(PathEl::Field(k.clone()));
            tpath.push(k.clone());
            let walker = Walker { shape, nodes };
            walker.walk(v, &mut path, &mut tpath, &mut out);
            path.pop();
            tpath.pop();
        }
    }
    out
}

struct Walker<'s, 'a> {
    shape: &'s Shape<'a>,
    nodes: bool,
}

impl Walker<'_, '_> {
    fn node(&self, path: &Path, tpath: &[String]) -> bool {
        self.nodes
            && !(path.len() == 1 && path[0] == PathEl::Field("metadata".into()))
            && !self.shape.always_present(tpath)
    }

    fn walk<'v>(
        &self,
        value: &'v Value,
        path: &mut Path,
        tpath: &mut Vec<String>,
        out: &mut BTreeMap<Path, Option<&'v Value>>,
    ) {
        let shape = self.shape;
        match value {
            Value::Object(m) if !m.is_empty() && !shape.atomic_map(tpath) => {
                if self.node(path, tpath) {
                    out.insert(path.clone(), None);
                }
                for (k, v) in m {
                    path.push(PathEl::Field(k.clone()));
                    tpath.push(k.clone());
                    self.walk(v, path, tpath, out);
                    path.pop();
                    tpath.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => match shape.list_type(tpath) {
                ListType::Atomic => {
                    out.insert(path.clone(), Some(value));
                }
                ListType::Set => {
                    if self.node(path, tpath) {
                        out.insert(path.clone(), None);
                    }
                    for item in items {
                        path.push(PathEl::Value(item.to_string()));
                        out.insert(path.clone(), Some(item));
                        path.pop();
                    }
                }
                ListType::Map(keys) => {
                    let Some(key_strings) = items
                        .iter()
                        .map(|i| key_string(i, &keys))
                        .collect::<Option<Vec<_>>>()
                    else {
                        // Items without their keys cannot be addressed; own the list as a whole.
                        out.insert(path.clone(), Some(value));
                        return;
                    };
                    if self.node(path, tpath) {
                        out.insert(path.clone(), None);
                    }
                    tpath.push("[]".into());
                    for (item, key) in items.iter().zip(key_strings) {
                        path.push(PathEl::Key(key));
                        // An item of an atomic struct type is a leaf: the walk replaces this.
                        out.insert(path.clone(), None);
                        self.walk(item, path, tpath, out);
                        path.pop();
                    }
                    tpath.pop();
                }
            },
            _ => {
                out.insert(path.clone(), Some(value));
            }
        }
    }
}

pub fn field_set(root: &Value, shape: &Shape) -> FieldSet {
    leaves(root, shape).into_keys().collect()
}

pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for el in path {
            let entry = node
                .entry(el.encode())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = match entry {
                Value::Object(m) => m,
                _ => unreachable!("just made an object"),
            };
        }
    }
    for path in set {
        if let Some(Value::Object(node)) = navigate_mut(&mut root, path)
            && !node.is_empty()
            && !node.contains_key(".")
        {
            node.insert(".".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(root)
}

fn navigate_mut<'m>(root: &'m mut Map<String, Value>, path: &Path) -> Option<&'m mut Value> {
    let (first, rest) = path.split_first()?;
    let mut node = root.get_mut(&first.encode())?;
    for el in rest {
        node = node.get_mut(el.encode())?;
    }
    Some(node)
}

pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    decode_into(v, &mut path, &mut set);
    set
}

fn decode_into(v: &Value, path: &mut Path, set: &mut FieldSet) {
    let Some(map) = v.as_object() else { return };
    for (k, child) in map {
        if k == "." {
            set.insert(path.clone());
            continue;
        }
        let Some(el) = PathEl::decode(k) else {
            continue;
        };
        path.push(el);
        if child.as_object().is_none_or(Map::is_empty) {
            set.insert(path.clone());
        } else {
            decode_into(child, path, set);
        }
        path.pop();
    }
}

fn matches_el(items: &[Value], el: &PathEl) -> Option<usize> {
    match el {
        PathEl::Key(k) => {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            items
                .iter()
                .position(|i| key.iter().all(|(f, v)| i.get(f) == Some(v)))
        }
        PathEl::Value(v) => {
            let want: Value = serde_json::from_str(v).ok()?;
            items.iter().position(|i| *i == want)
        }
        PathEl::Index(i) => (*i < items.len()).then_some(*i),
        PathEl::Field(_) => None,
    }
}

pub fn get_at<'v>(root: &'v Value, path: &Path) -> Option<&'v Value> {
    let mut node = root;
    for el in path {
        node = match (node, el) {
            (Value::Object(m), PathEl::Field(f)) => m.get(f)?,
            (Value::Array(items), el) => &items[matches_el(items, el)?],
            _ => return None,
        };
    }
    Some(node)
}

/// Removes the field or list item at `path`; false if it was not there.
pub fn remove_at(root: &mut Value, path: &Path) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for el in parent_path {
        node = match (node, el) {
            (Value::Object(m), PathEl::Field(f)) => match m.get_mut(f) {
                Some(n) => n,
                None => return false,
            },
            (Value::Array(items), el) => match matches_el(items, el) {
                Some(i) => &mut items[i],
                None => return false,
            },
            _ => return false,
        };
    }
    match (node, last) {
        (Value::Object(m), PathEl::Field(f)) => m.remove(f).is_some(),
        (Value::Array(items), el) => match matches_el(items, el) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_api::registry::builtins;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trips_with_keys_values_and_dots() {
        let defs = builtins();
        let cm = defs.iter().find(|d| d.plural == "configmaps").unwrap();
        let shape = Shape::new(cm, "v1");
        let obj = json!({
            "metadata": {"labels": {"a": "1"}, "finalizers": ["x/y"], "ownerReferences": [{"uid": "u", "name": "o"}]},
            "data": {"k": "v"}
        });
        let set = field_set(&obj, &shape);
        let encoded = to_fields_v1(&set);
        assert_eq!(
            encoded,
            json!({
                "f:metadata": {
                    "f:labels": {"f:a": {}},
                    "f:finalizers": {"v:\"x/y\"": {}},
                    "f:ownerReferences": {"k:{\"uid\":\"u\"}": {}}
                },
                "f:data": {"f:k": {}}
            })
        );
        assert_eq!(from_fields_v1(&encoded), set);
        let owner: Path = vec![
            PathEl::Field("metadata".into()),
            PathEl::Field("ownerReferences".into()),
            PathEl::Key("{\"uid\":\"u\"}".into()),
        ];
        assert_eq!(display(&owner), ".metadata.ownerReferences[uid=\"u\"]");

        // What an update that creates these maps and lists owns: each of them too (`.`), but
        // not `metadata` itself.
        let updated: FieldSet = paths(&obj, &shape).into_keys().collect();
        let encoded = to_fields_v1(&updated);
        assert_eq!(encoded["f:data"], json!({".": {}, "f:k": {}}));
        assert_eq!(
            encoded["f:metadata"]["f:labels"],
            json!({".": {}, "f:a": {}})
        );
        assert_eq!(
            encoded["f:metadata"]["f:finalizers"],
            json!({".": {}, "v:\"x/y\"": {}})
        );
        assert!(encoded["f:metadata"].get(".").is_none());
        assert_eq!(from_fields_v1(&encoded), updated);
    }
}
