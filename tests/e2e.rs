//! End-to-end tests against a REAL cluster (kind, EKS, ...). They are `#[ignore]`d so that a normal
//! `cargo test` reports them as ignored, never as passed. Run them with:
//!
//!     E2E_KUBECONFIG=~/.kube/config cargo test --test e2e -- --ignored
//!
//! The operator runs in this process against the cluster's API server, with the in-repo fake ECR
//! Public standing in for AWS, inside a fresh namespace that is deleted afterwards. The CRD is
//! applied with server-side apply (it needs cluster-admin or equivalent).

mod common;

use std::time::Duration;

use clap::Parser;
use ecr_public_pull_secret_operator::{
    config::Cli,
    crd::{EcrPublicPullSecret, MANAGER},
    run,
};
use harness::ecr::FakeEcrPublic;
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};
use serde_json::json;

async fn cluster() -> Client {
    let path = std::env::var("E2E_KUBECONFIG").expect("set E2E_KUBECONFIG to run the e2e tests");
    let kubeconfig = Kubeconfig::read_from(path).expect("read E2E_KUBECONFIG");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
    run::no_client_retries(&mut config);
    Client::try_from(config).expect("client")
}

#[tokio::test]
#[ignore = "needs a real cluster: set E2E_KUBECONFIG and run with --ignored"]
async fn real_cluster_secret_lifecycle() {
    let client = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = EcrPublicPullSecret::crd();
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &crd.name_any(), conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watch CRD");

    let ns_name = format!("epps-e2e-{:08x}", fastrand::u32(..));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns_name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");

    let ecr = FakeEcrPublic::start().await.expect("fake ECR");
    let args = Cli::try_parse_from([
        "op",
        "--watch-namespace",
        &ns_name,
        "--http-addr",
        "127.0.0.1:0",
    ])
    .unwrap()
    .run;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = run::start(
        client.clone(),
        &common::sdk_config_for(&ecr.url(), "AKIDE2E"),
        &args,
        async move {
            let _ = rx.await;
        },
    )
    .await
    .expect("operator starts");

    let crs: Api<EcrPublicPullSecret> = Api::namespaced(client.clone(), &ns_name);
    let cr: EcrPublicPullSecret = serde_json::from_value(json!({
        "apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1", "kind": "EcrPublicPullSecret",
        "metadata": {"name": "e2e"}, "spec": {}
    }))
    .unwrap();
    crs.create(&PostParams::default(), &cr)
        .await
        .expect("create CR");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns_name);
    let secret = tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(secrets.clone(), "e2e", |s: Option<&Secret>| s.is_some()),
    )
    .await
    .expect("Secret written in time")
    .expect("watch Secret")
    .expect("Secret exists");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let ready = |cr: Option<&EcrPublicPullSecret>| {
        cr.and_then(|c| c.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crs.clone(), "e2e", ready),
    )
    .await
    .expect("Ready in time")
    .expect("watch CR");
    crs.delete("e2e", &DeleteParams::background())
        .await
        .expect("delete CR");
    tokio::time::timeout(
        Duration::from_secs(120),
        await_condition(
            secrets.clone(),
            "e2e",
            conditions::is_deleted(&secret.uid().unwrap()),
        ),
    )
    .await
    .expect("Secret garbage-collected in time")
    .expect("watch Secret");
    let _ = tx.send(());
    let _ = running.done.await;
    namespaces
        .delete(&ns_name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    assert_eq!(ecr.calls(), 1);
}
