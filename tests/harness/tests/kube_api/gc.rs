use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::time::timeout;

use crate::common::{self, CR, cr, cr_api, start};

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents() {
    let (server, client) = start().await;
    let emu = server.state();
    emu.install_crd(common::crd()).unwrap();
    let owner = cr_api(&client, "default")
        .create(&PostParams::default(), &cr("owner", json!({})))
        .await
        .unwrap();
    let other = cr_api(&client, "default")
        .create(&PostParams::default(), &cr("other", json!({})))
        .await
        .unwrap();
    let reference = |o: &kube::api::DynamicObject| json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1", "kind": "EcrPublicPullSecret", "name": o.metadata.name, "uid": o.metadata.uid, "controller": false});
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
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

    cr_api(&client, "default")
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    assert!(emu.get("secrets", Some("default"), "only").is_none());
    let shared = secrets.get("shared").await.unwrap();
    let uids: Vec<String> = shared
        .metadata
        .owner_references
        .unwrap()
        .into_iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(uids, vec![other.metadata.uid.unwrap()]);
    assert!(emu.get(CR, Some("default"), "owner").is_none());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
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
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let s = crate::common::status(
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
    match timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("f")),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_content() {
    let (server, client) = start().await;
    let emu = server.state();
    emu.create_namespace("doomed", &[("team", "a")]);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
    )
    .await
    .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(emu.list("configmaps", Some("doomed")).is_empty());
    assert!(namespaces.get_opt("doomed").await.unwrap().is_none());
}
