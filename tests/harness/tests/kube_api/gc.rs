use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use harness::env::Api as Backend;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::time::timeout;

use crate::common::{Cluster, await_deleted, await_object, status};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

/// Owners are ConfigMaps: a real garbage collector follows owners of the types it knew when it
/// started (or learned in its 30 s rediscovery), which a test CRD is not.
async fn deleting_an_owner_collects_its_dependents(backend: Backend) {
    let k = Cluster::start(backend).await;
    let cms: Api<ConfigMap> = k.api();
    let owner = cms
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    let other = cms
        .create(&PostParams::default(), &cm("other"))
        .await
        .unwrap();
    let reference = |o: &ConfigMap| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid, "controller": false});
    let secrets: Api<Secret> = k.api();
    let only = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "only", "ownerReferences": [reference(&owner)]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    secrets.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "shared", "ownerReferences": [reference(&owner), reference(&other)]}})).unwrap()).await.unwrap();

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("owner").await.unwrap().is_none());
    await_deleted(&secrets, "only", only.metadata.uid.as_deref().unwrap()).await;
    // A dependent with another owner that still exists only loses the reference.
    let shared = await_object(&secrets, "shared", |s| {
        s.metadata.owner_references.as_ref().map(Vec::len) == Some(1)
    })
    .await;
    let uids: Vec<String> = shared
        .metadata
        .owner_references
        .unwrap()
        .into_iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(uids, vec![other.metadata.uid.unwrap()]);
}

async fn finalizers_hold_deletion_until_removed(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<ConfigMap> = k.api();
    api.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "f", "finalizers": ["example.com/cleanup"]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let pending = api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = pending
        .left()
        .expect("still present while finalizers remain");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let rv = marked.metadata.resource_version.clone().unwrap();

    let mut events = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let s = status(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/cleanup", "new/one"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(s.code, 422, "{}", s.message);
    let remove: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": ["example.com/cleanup"]},
        {"op": "replace", "path": "/metadata/finalizers", "value": []}
    ]))
    .unwrap();
    api.patch("f", &PatchParams::default(), &Patch::<()>::Json(remove))
        .await
        .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
    match timeout(Duration::from_secs(15), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("f")),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

async fn deleting_a_namespace_removes_its_content(backend: Backend) {
    let k = Cluster::start(backend).await;
    let doomed = format!("{}-doomed", k.ns);
    let namespaces: Api<Namespace> = Api::all(k.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": doomed, "labels": {"team": "a"}}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(k.client.clone(), &doomed);
    // A finalizer keeps the namespace terminating until the test removes it.
    api.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let free = api
        .create(&PostParams::default(), &cm("free"))
        .await
        .unwrap();
    let terminating = namespaces
        .delete(&doomed, &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the namespace stays while its content is deleted");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let s = status(
        api.create(&PostParams::default(), &cm("late"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.reason.as_str(), s.message),
        (
            403,
            "Forbidden",
            format!(
                "configmaps \"late\" is forbidden: unable to create new content in namespace {doomed} because it is being terminated"
            )
        )
    );
    await_deleted(&api, "free", free.metadata.uid.as_deref().unwrap()).await;
    await_object(&api, "held", |c| c.metadata.deletion_timestamp.is_some()).await;
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
    await_deleted(
        &namespaces,
        &doomed,
        terminating.metadata.uid.as_deref().unwrap(),
    )
    .await;
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing is left of the namespace"
    );
}

harness::on_both_apis!(
    deleting_an_owner_collects_its_dependents,
    finalizers_hold_deletion_until_removed,
    deleting_a_namespace_removes_its_content,
);
