use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use harness::env::Api as Backend;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::time::{Instant, timeout};

use crate::common::{Cluster, TestCrd, start, status};
const T: Duration = Duration::from_secs(15);

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn name_of(ev: WatchEvent<ConfigMap>) -> (String, String) {
    match ev {
        WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.unwrap()),
        WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.unwrap()),
        WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.unwrap()),
        other => (format!("{other:?}"), String::new()),
    }
}

async fn label_selected_list_and_watch_follow_objects_in_and_out(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<ConfigMap> = k.api();
    api.create(&PostParams::default(), &cm("in", json!({"app": "x"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("out", json!({"app": "y"})))
        .await
        .unwrap();
    let selected = api
        .list(&ListParams::default().labels("app in (x,z),!gone"))
        .await
        .unwrap();
    assert_eq!(
        selected
            .items
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["in"]
    );
    let rv = selected.metadata.resource_version.unwrap();

    let mut events = api
        .watch(&WatchParams::default().labels("app=x").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let mut moved = api.get("out").await.unwrap();
    moved.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    api.replace("out", &PostParams::default(), &moved)
        .await
        .unwrap();
    let mut leaving = api.get("in").await.unwrap();
    leaving.metadata.labels = Some([("app".to_string(), "y".to_string())].into());
    api.replace("in", &PostParams::default(), &leaving)
        .await
        .unwrap();
    api.delete("out", &Default::default()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(name_of(
            timeout(T, events.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("ADDED".into(), "out".into()),
            ("DELETED".into(), "in".into()),
            ("DELETED".into(), "out".into())
        ]
    );
}

async fn paging_with_limit_and_continue(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<ConfigMap> = k.api();
    for i in 0..7 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = api.list(&lp).await.unwrap();
        names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    assert_eq!(k.count("list", "configmaps"), 3);
    // resourceVersion=0 is served from the watch cache, which ignores the limit. (kube's
    // ListParams never sends both, so this asks by hand.)
    let request = axum::http::Request::get(format!(
        "/api/v1/namespaces/{}/configmaps?limit=3&resourceVersion=0",
        k.ns
    ))
    .body(Vec::new())
    .unwrap();
    let any: serde_json::Value = k.client.request(request).await.unwrap();
    assert_eq!(any["items"].as_array().map(Vec::len), Some(7));
    assert!(any["metadata"]["continue"].is_null());
}

/// The first event of a watch from `rv`, which must be a 410 Expired naming the oldest
/// resourceVersion a watch can start from (`too old resource version: <rv> (<oldest>)`); the
/// stream ends after it.
pub async fn expired<K>(api: &Api<K>, rv: &str) -> String
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut events = api
        .watch(&WatchParams::default(), rv)
        .await
        .unwrap()
        .boxed();
    let oldest = match timeout(T, events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
            let prefix = format!("too old resource version: {rv} (");
            let oldest = e
                .message
                .strip_prefix(&prefix)
                .and_then(|m| m.strip_suffix(')'))
                .unwrap_or_else(|| panic!("unexpected message {:?}", e.message));
            assert!(
                oldest.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap(),
                "{}",
                e.message
            );
            oldest.to_string()
        }
        other => panic!("expected 410, got {other:?}"),
    };
    assert!(
        timeout(T, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .is_none(),
        "stream ends after the error"
    );
    oldest
}

async fn too_old_resource_version_gets_410_expired(backend: Backend) {
    let k = Cluster::start(backend).await;
    // A version from before the custom resource existed is older than anything its watch cache
    // (started when the CRD was established) can replay.
    let namespaces: Api<Namespace> = Api::all(k.client.clone());
    let before = namespaces
        .get(&k.ns)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let crd = TestCrd::new("expired");
    k.install(&crd).await;
    let api = crd.api(&k.client, &k.ns);
    api.create(&PostParams::default(), &crd.object("x", json!({})))
        .await
        .unwrap();
    let oldest = expired(&api, &before).await;
    // The version the error names is one a watch can start from: it replays what came after.
    assert_eq!(first_added(&api, &oldest).await, "x");
}

/// The resourceVersion of a list: where a watch of what it showed starts.
async fn list_version<K>(api: &Api<K>) -> String
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let list = api.list(&ListParams::default()).await.unwrap();
    list.metadata.resource_version.unwrap()
}

/// The name in the first event of a watch from `rv`, which must be an ADDED.
async fn first_added<K>(api: &Api<K>, rv: &str) -> String
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut events = api
        .watch(&WatchParams::default().timeout(5), rv)
        .await
        .unwrap()
        .boxed();
    match timeout(T, events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(o) => o.meta().name.clone().unwrap_or_default(),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

/// Drains a watcher in the background so it keeps its watch open, forwarding object names.
fn forward<S, K>(stream: S) -> tokio::sync::mpsc::UnboundedReceiver<String>
where
    S: futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    K: kube::ResourceExt + Send,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Ok(obj) = item
                && tx.send(obj.name_any()).is_err()
            {
                return;
            }
        }
    });
    rx
}

async fn expect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, name: &str) {
    let found = timeout(Duration::from_secs(10), async {
        while let Some(n) = rx.recv().await {
            if n == name {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "watcher never reported {name}");
}

#[tokio::test]
async fn runtime_watchers_see_changes_across_closed_watches_and_outages() {
    let (server, client) = start().await;
    let emu = server.state();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let mut objects = forward(watcher(api.clone(), watcher::Config::default()).applied_objects());
    let meta_api: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");
    let mut metas =
        forward(watcher(meta_api, watcher::Config::default().streaming_lists()).touched_objects());
    expect(&mut objects, "before").await;
    expect(&mut metas, "before").await;
    assert!(
        emu.wait_until(T, |e| e.count("watch", "configmaps") >= 2)
            .await
    );

    emu.close_watches();
    api.create(&PostParams::default(), &cm("after-close", json!({})))
        .await
        .unwrap();
    expect(&mut objects, "after-close").await;
    expect(&mut metas, "after-close").await;
    assert!(
        emu.wait_until(T, |e| e.count("watch", "configmaps") >= 4)
            .await,
        "both watchers re-watched"
    );

    emu.set_unavailable(true);
    // kube retries 503s with backoff by default; a client without retries sees the Status.
    let no_retry: Api<ConfigMap> = Api::namespaced(
        crate::common::client_with(&server, |c| c.default_retry = false).await,
        "default",
    );
    let err = status(no_retry.get("before").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (503, "ServiceUnavailable"));
    emu.set_unavailable(false);
    api.create(&PostParams::default(), &cm("after-outage", json!({})))
        .await
        .unwrap();
    // The watchers see the outage as errors, then relist/rewatch on their own.
    expect(&mut objects, "after-outage").await;
    expect(&mut metas, "after-outage").await;
    let requests = emu.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.verb == "list" && r.resource == "configmaps")
    );
    assert!(
        requests.iter().any(|r| r.verb == "watch" && r.code == 503)
            || requests.iter().filter(|r| r.verb == "watch").count() >= 4
    );
}

async fn quiet_watches_get_a_bookmark_shortly_before_their_timeout(backend: Backend) {
    let k = Cluster::start(backend).await;
    let api: Api<ConfigMap> = k.api();
    let rv = list_version(&api).await;
    let started = Instant::now();
    let mut events = api
        .watch(&WatchParams::default().labels("app=x").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    // A change the watch does not show: the resource moves on, the watch stays quiet.
    api.create(&PostParams::default(), &cm("other", json!({"app": "y"})))
        .await
        .unwrap();
    // The API server's watch cache sends bookmarks about once a minute and 2 s before the
    // watch's deadline (a real one sometimes twice, its timer ticks by the second), each with
    // the latest version of the resource if the watch has not seen it yet, so that a client
    // resumes from there. Nothing else comes, and the watch ends at its timeout.
    let mut bookmarks = Vec::new();
    let mut first = None;
    while let Some(event) = timeout(Duration::from_secs(15), events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match event {
            WatchEvent::Bookmark(b) => {
                first.get_or_insert(started.elapsed());
                bookmarks.push(b.metadata.resource_version);
            }
            other => panic!("expected a bookmark, got {other:?}"),
        }
    }
    let ended = started.elapsed();
    let first = first.expect("a bookmark before the timeout");
    assert!(
        first >= Duration::from_secs(7) && first < Duration::from_secs(10),
        "first bookmark after {first:?}"
    );
    assert!(ended >= Duration::from_secs(9), "ended after {ended:?}");
    let bookmark = bookmarks.pop().unwrap();
    // Resuming from the bookmark skips what came before it.
    api.create(&PostParams::default(), &cm("after", json!({"app": "x"})))
        .await
        .unwrap();
    assert_eq!(first_added(&api, &bookmark).await, "after");
}

async fn watches_without_news_get_no_bookmark(backend: Backend) {
    let k = Cluster::start(backend).await;
    // Its own resource, which nothing else writes: a CRD of the test's own.
    let crd = TestCrd::new("quiet");
    k.install(&crd).await;
    let api = crd.api(&k.client, &k.ns);
    let rv = list_version(&api).await;
    let mut events = api
        .watch(&WatchParams::default().timeout(4), &rv)
        .await
        .unwrap()
        .boxed();
    let next = timeout(Duration::from_secs(10), events.try_next()).await;
    assert!(
        matches!(next, Ok(Ok(None))),
        "nothing newer than the watch's start, no bookmark: {next:?}"
    );
}

harness::on_both_apis!(
    label_selected_list_and_watch_follow_objects_in_and_out,
    paging_with_limit_and_continue,
    too_old_resource_version_gets_410_expired,
    quiet_watches_get_a_bookmark_shortly_before_their_timeout,
    watches_without_news_get_no_bookmark,
);
