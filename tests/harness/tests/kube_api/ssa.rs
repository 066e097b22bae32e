use futures::{StreamExt, TryStreamExt};
use harness::env::Api as Backend;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

use crate::common::{Cluster, TestCrd, status};

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn managers(obj: &ConfigMap) -> Vec<(String, String, Value)> {
    obj.metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap(),
                m.operation.unwrap(),
                serde_json::to_value(m.fields_v1.unwrap()).unwrap(),
            )
        })
        .collect()
}

async fn apply_creates_updates_and_noops_without_a_new_resource_version(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<ConfigMap> = k.api();
    let pp = PatchParams::apply("a");
    let created = api
        .patch("c", &pp, &Patch::Apply(cm("c", json!({"x": "1"}))))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["x"], "1");
    assert_eq!(
        managers(&created),
        vec![("a".into(), "Apply".into(), json!({"f:data": {"f:x": {}}}))]
    );
    let rv = created.metadata.resource_version.clone().unwrap();

    let again = api
        .patch("c", &pp, &Patch::Apply(cm("c", json!({"x": "1"}))))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version.as_deref(),
        Some(rv.as_str()),
        "no-op apply keeps the resourceVersion"
    );

    let updated = api
        .patch("c", &pp, &Patch::Apply(cm("c", json!({"x": "2"}))))
        .await
        .unwrap();
    let rv2 = updated.metadata.resource_version.clone().unwrap();
    assert_ne!(rv2, rv);

    // Watching from the first version shows exactly one modification: the no-op emitted nothing.
    let mut events = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(o) => {
            assert_eq!(o.metadata.resource_version.as_deref(), Some(rv2.as_str()))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(k.count("patch", "configmaps"), 3);
    // The audit log does not record the patch type; the emulator's request log does.
    if let Some(emu) = k.emulator() {
        assert_eq!(
            emu.requests()
                .iter()
                .filter(|r| r.patch_type.as_deref() == Some("apply"))
                .count(),
            3
        );
    }

    let s = status(
        api.patch(
            "c",
            &PatchParams::default(),
            &Patch::Apply(cm("c", json!({}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.reason.as_str()),
        (422, "Invalid"),
        "apply requires a field manager: {}",
        s.message
    );
}

async fn apply_conflicts_force_and_field_removal(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<ConfigMap> = k.api();
    api.create(
        &PostParams {
            field_manager: Some("kubectl".into()),
            ..Default::default()
        },
        &serde_json::from_value(cm("c", json!({"foo": "1", "keep": "k"}))).unwrap(),
    )
    .await
    .unwrap();

    let s = status(
        api.patch(
            "c",
            &PatchParams::apply("op"),
            &Patch::Apply(cm("c", json!({"foo": "2"}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.foo"
    );
    assert_eq!(s.details.unwrap().causes[0].field, ".data.foo");

    // Same value: shared ownership, no conflict.
    api.patch(
        "c",
        &PatchParams::apply("op"),
        &Patch::Apply(cm("c", json!({"foo": "1", "mine": "m"}))),
    )
    .await
    .unwrap();
    let forced = api
        .patch(
            "c",
            &PatchParams::apply("op").force(),
            &Patch::Apply(cm("c", json!({"foo": "2", "mine": "m"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["foo"], "2");
    let owners = managers(&forced);
    let kubectl = owners.iter().find(|m| m.0 == "kubectl").unwrap();
    // The create made `data`, so kubectl owns the map itself too (`.`).
    assert_eq!(
        kubectl.2,
        json!({"f:data": {".": {}, "f:keep": {}}}),
        "force took .data.foo away from kubectl"
    );

    // Dropping a field from the applied config removes it; fields of others stay.
    let pruned = api
        .patch(
            "c",
            &PatchParams::apply("op"),
            &Patch::Apply(cm("c", json!({"foo": "2"}))),
        )
        .await
        .unwrap();
    let data = pruned.data.unwrap();
    assert!(!data.contains_key("mine"));
    assert_eq!(data["keep"], "k");
}

async fn apply_merges_associative_lists_and_keeps_atomic_ones_whole(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<ConfigMap> = k.api();
    // Owners that exist: a real garbage collector deletes dependents of owners it cannot find.
    let mut owners = Vec::new();
    for name in ["o1", "o2"] {
        let o = api
            .create(
                &PostParams::default(),
                &serde_json::from_value(cm(name, json!({}))).unwrap(),
            )
            .await
            .unwrap();
        owners.push(o.metadata.uid.unwrap());
    }
    let owner = |i: usize| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": format!("o{}", i + 1), "uid": owners[i]});
    let with_meta = |refs: Value, finalizers: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "ownerReferences": refs, "finalizers": finalizers}});
    api.patch(
        "c",
        &PatchParams::apply("a"),
        &Patch::Apply(with_meta(json!([owner(0)]), json!(["a/f"]))),
    )
    .await
    .unwrap();
    let both = api
        .patch(
            "c",
            &PatchParams::apply("b"),
            &Patch::Apply(with_meta(json!([owner(1)]), json!(["b/f"]))),
        )
        .await
        .unwrap();
    let uids: Vec<String> = both
        .metadata
        .owner_references
        .unwrap()
        .into_iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(uids, owners);
    assert_eq!(both.metadata.finalizers.unwrap(), vec!["a/f", "b/f"]);
    let fields = serde_json::to_value(&both.metadata.managed_fields.unwrap()[1].fields_v1).unwrap();
    // An owner reference is an atomic struct: its item is owned whole, with no fields inside.
    assert_eq!(
        fields["f:metadata"]["f:ownerReferences"][format!("k:{{\"uid\":\"{}\"}}", owners[1])],
        json!({}),
        "{fields}"
    );
    assert_eq!(fields["f:metadata"]["f:finalizers"]["v:\"b/f\""], json!({}));

    let sas: Api<ServiceAccount> = k.api();
    let sa = |names: &[&str]| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}, "imagePullSecrets": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()});
    sas.patch("sa", &PatchParams::apply("a"), &Patch::Apply(sa(&["one"])))
        .await
        .unwrap();
    let s = status(
        sas.patch("sa", &PatchParams::apply("b"), &Patch::Apply(sa(&["two"])))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        s.message, "Apply failed with 1 conflict: conflict with \"a\": .imagePullSecrets",
        "atomic list"
    );
}

async fn merge_and_json_patches(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<Secret> = k.api();
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "s", "labels": {"a": "1", "b": "2"}}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let merged = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": null, "c": "3"}}})),
        )
        .await
        .unwrap();
    let labels = merged.metadata.labels.clone().unwrap();
    assert_eq!(labels.keys().cloned().collect::<Vec<_>>(), vec!["b", "c"]);

    let s = status(
        api.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));

    let failing: json_patch::Patch = serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/b", "value": "nope"}, {"op": "remove", "path": "/metadata/labels/b"}])).unwrap();
    let s = status(
        api.patch("s", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let passing: json_patch::Patch = serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/b", "value": "2"}, {"op": "remove", "path": "/metadata/labels/b"}])).unwrap();
    let patched = api
        .patch("s", &PatchParams::default(), &Patch::<()>::Json(passing))
        .await
        .unwrap();
    assert_eq!(
        patched
            .metadata
            .labels
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec!["c"]
    );

    // `test` of null: a missing member of an existing object passes, a missing parent does not.
    let null_test = |path: &str| -> json_patch::Patch {
        serde_json::from_value(json!([{"op": "test", "path": path, "value": null}])).unwrap()
    };
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::<()>::Json(null_test("/metadata/labels/zz")),
    )
    .await
    .unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::<()>::Json(null_test("/metadata/annotations")),
    )
    .await
    .unwrap();
    let s = status(
        api.patch(
            "s",
            &PatchParams::default(),
            &Patch::<()>::Json(null_test("/metadata/annotations/a")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.reason.as_str()),
        (422, "Invalid"),
        "missing parent"
    );
}

async fn status_apply_on_a_custom_resource(backend: Backend) {
    let k = Cluster::start(backend).await;
    let crd = TestCrd::new("status-apply");
    k.install(&crd).await;
    let api = crd.api(&k.client, &k.ns);
    let applied = api
        .patch("x", &PatchParams::apply("op"), &Patch::Apply(json!({"apiVersion": crd.api_version(), "kind": "EcrPublicPullSecret", "metadata": {"name": "x"}, "spec": {"onExpiry": "Keep"}, "status": {"secretName": "dropped"}})))
        .await
        .unwrap();
    assert!(applied.data.get("status").is_none());
    let status_patch = json!({"apiVersion": crd.api_version(), "kind": "EcrPublicPullSecret", "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "Fresh"}]}});
    let with_status = api
        .patch_status("x", &PatchParams::apply("op"), &Patch::Apply(&status_patch))
        .await
        .unwrap();
    assert_eq!(
        with_status.data["status"]["conditions"][0]["reason"],
        json!("Fresh")
    );
    assert_eq!(with_status.metadata.generation, Some(1));
    let again = api
        .patch_status("x", &PatchParams::apply("op"), &Patch::Apply(&status_patch))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        with_status.metadata.resource_version
    );
    let entries = again.metadata.managed_fields.unwrap();
    assert!(
        entries
            .iter()
            .any(|m| m.subresource.as_deref() == Some("status")
                && m.operation.as_deref() == Some("Apply"))
    );
}

harness::on_both_apis!(
    apply_creates_updates_and_noops_without_a_new_resource_version,
    apply_conflicts_force_and_field_removal,
    apply_merges_associative_lists_and_keeps_atomic_ones_whole,
    merge_and_json_patches,
    status_apply_on_a_custom_resource,
);
