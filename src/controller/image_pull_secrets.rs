//! Planning the edit of one ServiceAccount's `imagePullSecrets`. Pure: no I/O.
//!
//! `imagePullSecrets` is an atomic list (`+listType=atomic`): server-side apply of one entry would
//! take over the whole list and drop everyone else's entries. So the edit is a JSON patch whose
//! `test` operations pin the list and our annotation as they were read; if anyone changed either
//! in between, the API server rejects the patch (422) and the next reconcile plans again from the
//! new state. Entries are matched by name; every other entry keeps its value and position.
//!
//! The annotation [`ADDED_ANNOTATION`] records which entries this operator added, so it only ever
//! removes those: an entry a user wrote by hand stays even if it names one of our Secrets.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use serde_json::{Value, json};

/// Comma-separated names of the `imagePullSecrets` entries this operator added.
pub const ADDED_ANNOTATION: &str = "ecrpublic.pullsecrets.dev/added-image-pull-secrets";

/// The entries this operator added to `sa`, per its annotation.
pub fn added(sa: &ServiceAccount) -> BTreeSet<String> {
    sa.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ADDED_ANNOTATION))
        .map(|a| {
            a.split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON patch operations that make `sa` name exactly the `desired` Secrets among those this
/// operator manages, or `None` when nothing needs to change.
pub fn plan(sa: &ServiceAccount, desired: &BTreeSet<String>) -> Option<Vec<Value>> {
    let annotation = sa
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ADDED_ANNOTATION))
        .map(String::as_str);
    let (new_list, new_annotation) = edit(sa, desired);
    if new_list.is_none() && new_annotation.as_deref() == annotation {
        return None;
    }
    let mut ops = Vec::new();
    if let Some(new_list) = new_list {
        let current = sa
            .image_pull_secrets
            .as_ref()
            .map(|l| l.iter().map(entry).collect::<Vec<_>>());
        ops.push(json!({"op": "test", "path": "/imagePullSecrets", "value": current}));
        ops.push(if new_list.is_empty() {
            json!({"op": "remove", "path": "/imagePullSecrets"})
        } else {
            json!({"op": "add", "path": "/imagePullSecrets", "value": new_list})
        });
    }
    ops.extend(annotation_ops(sa, annotation, new_annotation.as_deref()));
    Some(ops)
}

/// The new list (`None` when it stays as it is) and the new annotation: our entries that are no
/// longer wanted go, wanted ones that are missing are added after everyone else's.
fn edit(sa: &ServiceAccount, desired: &BTreeSet<String>) -> (Option<Vec<Value>>, Option<String>) {
    let list: &[LocalObjectReference] = sa.image_pull_secrets.as_deref().unwrap_or_default();
    let added = added(sa);
    let present: BTreeSet<&str> = list.iter().map(|r| r.name.as_str()).collect();
    let to_add: Vec<&String> = desired
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    let to_remove: BTreeSet<&String> = added.difference(desired).collect();
    let mut new_list: Vec<Value> = list
        .iter()
        .filter(|r| !to_remove.contains(&r.name))
        .map(entry)
        .collect();
    new_list.extend(to_add.iter().map(|n| json!({ "name": n })));
    let new_added: Vec<&str> = desired
        .iter()
        .filter(|n| added.contains(*n) || to_add.contains(n))
        .map(String::as_str)
        .collect();
    let new_annotation = (!new_added.is_empty()).then(|| new_added.join(","));
    let list_changed = new_list.len() != list.len() || !to_add.is_empty();
    (list_changed.then_some(new_list), new_annotation)
}

/// Pins our annotation as it was read, and sets it to `new` if that differs.
fn annotation_ops(sa: &ServiceAccount, old: Option<&str>, new: Option<&str>) -> Vec<Value> {
    let path = format!(
        "/metadata/annotations/{}",
        ADDED_ANNOTATION.replace('/', "~1")
    );
    let has_annotations = sa.metadata.annotations.is_some();
    // The API server's `test` of null passes on a missing member, but only when its parent
    // exists: without any annotations, pin that there are none.
    let mut ops = vec![if has_annotations {
        json!({"op": "test", "path": path, "value": old})
    } else {
        json!({"op": "test", "path": "/metadata/annotations", "value": null})
    }];
    if new != old {
        ops.push(match (new, has_annotations) {
            (Some(v), true) => json!({"op": "add", "path": path, "value": v}),
            (Some(v), false) => json!({
                "op": "add", "path": "/metadata/annotations", "value": { ADDED_ANNOTATION: v }
            }),
            (None, _) => json!({"op": "remove", "path": path}),
        });
    }
    ops
}

/// One list entry as the API server returns it: `name` is `omitempty` in the Go type, so an
/// entry with an empty name reads back as `{}` and a `test` must say so to match.
fn entry(r: &LocalObjectReference) -> Value {
    if r.name.is_empty() {
        json!({})
    } else {
        json!({ "name": r.name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn sa(list: Option<&[&str]>, added: Option<&str>) -> ServiceAccount {
        ServiceAccount {
            image_pull_secrets: list.map(|l| {
                l.iter()
                    .map(|n| LocalObjectReference {
                        name: n.to_string(),
                    })
                    .collect()
            }),
            metadata: ObjectMeta {
                annotations: added.map(|a| {
                    BTreeMap::from([
                        (ADDED_ANNOTATION.to_owned(), a.to_owned()),
                        ("other".to_owned(), "kept".to_owned()),
                    ])
                }),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// Applies the plan like the API server would, `test` operations included.
    fn apply(sa: &ServiceAccount, desired: &BTreeSet<String>) -> ServiceAccount {
        let Some(ops) = plan(sa, desired) else {
            return sa.clone();
        };
        let mut doc = serde_json::to_value(sa).unwrap();
        for op in &ops {
            if op["op"] == "test" && op["value"].is_null() {
                // Like the API server: the member may be missing, its parent may not.
                let path = op["path"].as_str().unwrap();
                let parent = &path[..path.rfind('/').unwrap()];
                assert!(doc.pointer(parent).is_some(), "{path}: missing parent");
                assert!(doc.pointer(path).is_none());
                continue;
            }
            let op: json_patch::PatchOperation = serde_json::from_value(op.clone()).unwrap();
            json_patch::patch(&mut doc, &[op]).unwrap();
        }
        serde_json::from_value(doc).unwrap()
    }

    fn names(sa: &ServiceAccount) -> Vec<&str> {
        sa.image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect()
    }

    #[test]
    fn adds_after_existing_entries_and_records_it() {
        let before = sa(Some(&["zeta", "alpha"]), None);
        let after = apply(&before, &set(&["ecr"]));
        assert_eq!(
            names(&after),
            ["zeta", "alpha", "ecr"],
            "others keep their order"
        );
        assert_eq!(after.metadata.annotations.unwrap()[ADDED_ANNOTATION], "ecr");
        let first = apply(&sa(None, None), &set(&["ecr"]));
        assert_eq!(names(&first), ["ecr"]);
    }

    #[test]
    fn nothing_to_do_when_already_present() {
        assert!(plan(&sa(Some(&["a", "ecr"]), Some("ecr")), &set(&["ecr"])).is_none());
        assert!(plan(&sa(None, None), &set(&[])).is_none());
        // A hand-written entry of the same name is left alone and never claimed.
        assert!(plan(&sa(Some(&["ecr"]), None), &set(&["ecr"])).is_none());
    }

    #[test]
    fn removes_only_entries_it_added() {
        let before = sa(Some(&["a", "ecr", "b", "mine"]), Some("ecr"));
        let after = apply(&before, &set(&[]));
        assert_eq!(names(&after), ["a", "b", "mine"]);
        let annotations = after.metadata.annotations.unwrap();
        assert!(!annotations.contains_key(ADDED_ANNOTATION));
        assert_eq!(annotations["other"], "kept");
        // Not recorded as ours: kept even when nothing wants it.
        assert!(plan(&sa(Some(&["ecr"]), None), &set(&[])).is_none());
        // Our last entry goes with the list it created.
        let only = apply(&sa(Some(&["ecr"]), Some("ecr")), &set(&[]));
        assert!(only.image_pull_secrets.is_none());
    }

    #[test]
    fn keeps_the_entries_of_other_resources() {
        let before = sa(Some(&["x", "one", "two"]), Some("one,two"));
        let after = apply(&before, &set(&["two", "three"]));
        assert_eq!(names(&after), ["x", "two", "three"]);
        assert_eq!(
            after.metadata.annotations.unwrap()[ADDED_ANNOTATION],
            "three,two"
        );
    }

    #[test]
    fn every_change_is_guarded_by_tests_of_what_was_read() {
        let ops = plan(&sa(Some(&["a"]), Some("old")), &set(&["ecr"])).unwrap();
        assert_eq!(ops[0]["op"], "test");
        assert_eq!(ops[0]["value"], json!([{"name": "a"}]));
        assert_eq!(ops[2]["op"], "test");
        assert_eq!(ops[2]["value"], "old");
        // A concurrent change to the list makes the patch fail instead of losing that change.
        let mut doc = serde_json::to_value(sa(Some(&["a", "someone-else"]), Some("old"))).unwrap();
        let ops: json_patch::Patch = serde_json::from_value(json!(ops)).unwrap();
        assert!(json_patch::patch(&mut doc, &ops).is_err());
    }

    #[test]
    fn without_annotations_it_pins_that_there_are_none() {
        let ops = plan(&sa(Some(&["a"]), None), &set(&["ecr"])).unwrap();
        assert_eq!(
            ops[2],
            json!({"op": "test", "path": "/metadata/annotations", "value": null})
        );
        assert_eq!(ops[3]["path"], "/metadata/annotations");
    }

    #[test]
    fn an_entry_without_a_name_is_pinned_as_the_server_returns_it() {
        let before = sa(Some(&["", "a"]), None);
        let ops = plan(&before, &set(&["ecr"])).unwrap();
        assert_eq!(ops[0]["value"], json!([{}, {"name": "a"}]));
        assert_eq!(ops[1]["value"], json!([{}, {"name": "a"}, {"name": "ecr"}]));
    }

    #[test]
    fn re_adds_an_entry_removed_by_hand_while_still_wanted() {
        let after = apply(&sa(Some(&["a"]), Some("ecr")), &set(&["ecr"]));
        assert_eq!(names(&after), ["a", "ecr"]);
    }
}
