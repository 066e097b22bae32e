//! The operator's admin endpoints: `/readyz` against the emulator (a slow API server is a fault
//! only it can inject), `/metrics` on both APIs.

use std::time::Duration;

use harness::{env::*, on_both_apis};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_until_the_caches_have_synced() {
    let env = Env::start().await;
    // A slow API server keeps the initial list in flight long enough to observe "not ready".
    env.emulator().set_latency(Some(Duration::from_millis(700)));
    let op = env.start_operator(&[]).await;
    assert_eq!(op.http_get("/livez").await.0, 200);
    assert_eq!(
        op.http_get("/readyz").await.0,
        503,
        "not ready before the caches are synced"
    );
    assert!(
        eventually(T, async || op.http_get("/readyz").await.0 == 200).await,
        "ready after sync"
    );
    op.stop().await;
}

async fn metrics_count_reconciles_and_only_secrets_a_live_resource_owns(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let ns = env.ns.as_str();
    let op = env.start_operator(&[]).await;
    assert!(
        eventually(T, async || op.http_get("/readyz").await.0 == 200).await,
        "ready after sync"
    );

    let (_, before) = op.http_get("/metrics").await;
    assert_eq!(
        metric(&before, r#"epps_reconcile_total{result="written"}"#),
        None
    );
    assert_eq!(metric(&before, "epps_managed_secrets"), Some(0.0));
    // Secrets labelled as the operator labels its own, one even controlled by a resource named
    // "m" (not the one created below): no live resource wrote them, so they feed no metric (and
    // no alert). Created first, so the watch has them by the time "m"'s Secret shows.
    let spoof = |name: &str, owner: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
               "metadata": {"name": name, "ownerReferences": owner,
                            "labels": {"app.kubernetes.io/managed-by": "ecr-public-pull-secret-operator"},
                            "annotations": {"ecrpublic.pullsecrets.dev/expires-at": "2020-01-01T00:00:00Z"}},
               "data": {".dockerconfigjson": base64_of(r#"{"auths":{}}"#)}})
    };
    let not_m = json!([{"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                        "kind": "EcrPublicPullSecret", "name": "m", "uid": "not-m",
                        "controller": true}]);
    for secret in [spoof("spoof", json!([])), spoof("not-m", not_m)] {
        env.k8s.create(SECRETS, Some(ns), secret).await.unwrap();
    }
    env.create_cr(ns, "m", json!({})).await;
    env.wait("Ready", T, |k| cr_ready(k, ns, "m")).await;
    // The reconcile is counted when it returns, just after its status write: await it.
    let written = async || {
        let (code, text) = op.http_get("/metrics").await;
        code == 200 && metric(&text, r#"epps_reconcile_total{result="written"}"#) == Some(1.0)
    };
    assert!(eventually(T, written).await, "written reconcile counted");
    let (_, text) = op.http_get("/metrics").await;
    assert_eq!(
        metric(
            &text,
            r#"epps_token_fetch_total{service="ecr-public",region="us-east-1",result="success",reason="none"}"#
        ),
        Some(1.0)
    );
    assert!(
        eventually(T, async || metric(
            &op.http_get("/metrics").await.1,
            "epps_managed_secrets"
        ) == Some(1.0))
        .await
    );
    let (_, text) = op.http_get("/metrics").await;
    // The names the chart's alerts and dashboards use.
    for name in [
        "# TYPE epps_reconcile counter",
        "# TYPE epps_reconcile_duration_seconds histogram",
        "# TYPE epps_token_fetch counter",
        "# TYPE epps_secret_token_expiry_timestamp_seconds gauge",
        "# TYPE epps_managed_secrets gauge",
    ] {
        assert!(text.contains(name), "missing {name:?} in:\n{text}");
    }
    let secret = env.k8s.get(SECRETS, Some(ns), "m").unwrap();
    let expires = secret["metadata"]["annotations"]["ecrpublic.pullsecrets.dev/expires-at"]
        .as_str()
        .unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(expires)
        .unwrap()
        .timestamp() as f64;
    assert_eq!(
        metric(
            &text,
            &format!(r#"epps_secret_token_expiry_timestamp_seconds{{namespace="{ns}",name="m"}}"#)
        ),
        Some(expires)
    );
    assert!(
        !text.contains(r#"name="spoof""#) && !text.contains(r#"name="not-m""#),
        "{text}"
    );
    assert_eq!(metric(&text, "epps_managed_secrets"), Some(1.0));
    op.stop().await;
    assert_no_token_leak(&env);
}

on_both_apis!(metrics_count_reconciles_and_only_secrets_a_live_resource_owns);
