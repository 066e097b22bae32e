use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use harness::kube_api::Fault;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, WatchParams};
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
