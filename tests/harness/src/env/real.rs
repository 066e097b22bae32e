//! Preparing the real API server for a test: the CRDs, and nothing left of earlier tests.

use std::time::Duration;

use ecr_public_pull_secret_operator::crd::{
    ClusterEcrPublicPullSecret, EcrPublicPullSecret, MANAGER,
};
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::wait::{await_condition, conditions},
};
use serde_json::json;

use super::TEST_NAMESPACE_LABEL;

/// Applies both CRDs (server-side, as `kubectl apply --server-side` would) and waits until the
/// server serves them: Established, and lists answered. Right after a CRD is established its
/// storage can still answer 429 "storage is (re)initializing" for a moment.
pub async fn apply_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        EcrPublicPullSecret::crd(),
        ClusterEcrPublicPullSecret::crd(),
    ] {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established within 30 s"))
        .unwrap_or_else(|e| panic!("watch of CRD {name}: {e}"));
    }
    let served = async || {
        let a = Api::<EcrPublicPullSecret>::all(client.clone());
        let b = Api::<ClusterEcrPublicPullSecret>::all(client.clone());
        let one = ListParams::default().limit(1);
        a.list_metadata(&one).await.is_ok() && b.list_metadata(&one).await.is_ok()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !served().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CRDs' resources are not served 30 s after they were established"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes every resource of both kinds (a cluster resource's finalizer too, whose operator is
/// gone) and the namespaces earlier tests created, so that an operator watching everything sees
/// only this test's objects.
pub async fn remove_leftovers(client: &Client) {
    let cluster: Api<ClusterEcrPublicPullSecret> = Api::all(client.clone());
    let namespaced: Api<EcrPublicPullSecret> = Api::all(client.clone());
    let unblock = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    for cr in cluster
        .list_metadata(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        let name = cr.name_any();
        let _ = cluster
            .patch(&name, &PatchParams::default(), &unblock)
            .await;
        let _ = cluster.delete(&name, &DeleteParams::background()).await;
    }
    for cr in namespaced
        .list_metadata(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        let ns = cr.namespace().unwrap_or_default();
        let _ = Api::<EcrPublicPullSecret>::namespaced(client.clone(), &ns)
            .delete(&cr.name_any(), &DeleteParams::background())
            .await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ours = ListParams::default().labels(&format!("{TEST_NAMESPACE_LABEL}=true"));
    for ns in namespaces.list_metadata(&ours).await.expect("list").items {
        let _ = namespaces
            .delete(&ns.name_any(), &DeleteParams::background())
            .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = cluster
            .list_metadata(&ListParams::default())
            .await
            .expect("list")
            .items
            .len()
            + namespaced
                .list_metadata(&ListParams::default())
                .await
                .expect("list")
                .items
                .len();
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} resources of earlier tests are still there after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
