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
    api::core::v1::{Namespace, Secret, ServiceAccount},
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

/// The CRD applied and established, and a fresh namespace for one test.
async fn setup(client: &Client) -> String {
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
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns_name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    ns_name
}

/// The operator in this process, watching `ns` only; send on the channel to stop it.
async fn start_operator(
    client: &Client,
    ecr: &FakeEcrPublic,
    ns: &str,
    extra: &[&str],
) -> (tokio::sync::oneshot::Sender<()>, run::Running) {
    let mut argv = vec!["op", "--watch-namespace", ns, "--http-addr", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    let args = Cli::try_parse_from(argv).unwrap().run;
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
    (tx, running)
}

async fn create_cr(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    let cr: EcrPublicPullSecret = serde_json::from_value(json!({
        "apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1", "kind": "EcrPublicPullSecret",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    Api::<EcrPublicPullSecret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cr)
        .await
        .expect("create CR");
}

#[tokio::test]
#[ignore = "needs a real cluster: set E2E_KUBECONFIG and run with --ignored"]
async fn real_cluster_secret_lifecycle() {
    let client = cluster().await;
    let ns_name = setup(&client).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ecr = FakeEcrPublic::start().await.expect("fake ECR");
    let (tx, running) = start_operator(&client, &ecr, &ns_name, &[]).await;
    let crs: Api<EcrPublicPullSecret> = Api::namespaced(client.clone(), &ns_name);
    create_cr(&client, &ns_name, "e2e", json!({})).await;
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

/// The JSON patch with `test` operations on the atomic `imagePullSecrets` list, as a real API
/// server applies it: our entry added after the user's, removed again on delete.
#[tokio::test]
#[ignore = "needs a real cluster: set E2E_KUBECONFIG and run with --ignored"]
async fn real_cluster_service_account_patching() {
    let client = cluster().await;
    let ns_name = setup(&client).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns_name);
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "e2e-sa"}, "imagePullSecrets": [{"name": "theirs"}]
    }))
    .unwrap();
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("create ServiceAccount");
    let ecr = FakeEcrPublic::start().await.expect("fake ECR");
    let (tx, running) =
        start_operator(&client, &ecr, &ns_name, &["--patch-service-accounts=true"]).await;
    create_cr(
        &client,
        &ns_name,
        "e2e",
        json!({"serviceAccounts": ["e2e-sa"]}),
    )
    .await;
    let names = |sa: Option<&ServiceAccount>| -> Vec<String> {
        sa.and_then(|s| s.image_pull_secrets.as_ref())
            .map(|l| l.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(sas.clone(), "e2e-sa", move |sa: Option<&ServiceAccount>| {
            names(sa) == ["theirs", "e2e"]
        }),
    )
    .await
    .expect("entry added after the user's in time")
    .expect("watch ServiceAccount");
    Api::<EcrPublicPullSecret>::namespaced(client.clone(), &ns_name)
        .delete("e2e", &DeleteParams::background())
        .await
        .expect("delete CR");
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(sas.clone(), "e2e-sa", move |sa: Option<&ServiceAccount>| {
            names(sa) == ["theirs"]
        }),
    )
    .await
    .expect("entry removed in time")
    .expect("watch ServiceAccount");
    let _ = tx.send(());
    let _ = running.done.await;
    Api::<Namespace>::all(client.clone())
        .delete(&ns_name, &DeleteParams::default())
        .await
        .expect("delete namespace");
}
