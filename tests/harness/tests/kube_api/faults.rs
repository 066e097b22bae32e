use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use harness::kube_api::Fault;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::json;
use tokio::time::timeout;

use crate::common::{start, status};

#[tokio::test]
async fn injected_faults_fail_matching_requests_then_stop() {
    let (server, client) = start().await;
    let emu = server.state();
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    emu.inject(Fault::on("list", "secrets", 500, 1));
    let s = status(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    api.list(&ListParams::default()).await.unwrap();
    let records: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .collect();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.verb.as_str(), r.code))
            .collect::<Vec<_>>(),
        vec![("list", 500), ("list", 200)]
    );
    assert_eq!(records[0].namespace.as_deref(), Some("default"));

    emu.clear_requests();
    assert!(emu.requests().is_empty());
    emu.set_latency(Some(Duration::from_millis(200)));
    let started = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    emu.set_latency(None);
}

#[tokio::test]
async fn close_watches_ends_streams_and_wait_until_times_out() {
    let (server, client) = start().await;
    let emu = server.state();
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    emu.close_watches();
    assert!(
        timeout(Duration::from_secs(5), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    assert!(
        !emu.wait_until(Duration::from_millis(50), |e| e.count("get", "secrets") > 0)
            .await
    );
}

#[tokio::test]
async fn a_short_history_expires_watches_from_compacted_versions() {
    let (server, client) = start().await;
    server.state().set_history_limit(3);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut versions = Vec::new();
    for i in 0..6 {
        let cm = serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).unwrap();
        let created = api.create(&PostParams::default(), &cm).await.unwrap();
        versions.push(created.metadata.resource_version.unwrap());
    }
    let oldest = crate::watch::expired(&api, &versions[0]).await;
    // The three events kept are the last three creates: a watch from the version before them
    // replays them.
    assert_eq!(oldest, versions[2]);
    let mut events = api
        .watch(&WatchParams::default().timeout(1), &oldest)
        .await
        .unwrap()
        .boxed();
    let mut names = Vec::new();
    while let Some(event) = events.try_next().await.unwrap() {
        if let kube::api::WatchEvent::Added(cm) = event {
            names.push(cm.metadata.name.unwrap());
        }
    }
    assert_eq!(names, ["c3", "c4", "c5"]);
}
