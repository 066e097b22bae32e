//! End-to-end tests against a REAL cluster. They are `#[ignore]`d so that a normal `cargo test`
//! reports them as ignored, never as passed. Run them against the control plane built from Go
//! modules (`tests/cluster/build.sh`; started by the test itself), or any cluster (kind, EKS, ...):
//!
//!     tests/cluster/build.sh && cargo test --test e2e -- --ignored
//!     E2E_KUBECONFIG=~/.kube/config cargo test --test e2e -- --ignored
//!
//! The operator runs in this process against the cluster's API server, with the in-repo fake ECR
//! Public standing in for AWS, inside fresh namespaces that are deleted afterwards. The CRDs are
//! applied with server-side apply (it needs cluster-admin or equivalent). The cluster-kind test
//! runs the operator cluster-wide: it refuses to run where resources of ours or an installed
//! operator exist, so that it never overwrites real Secrets with the fake's tokens.
//!
//! CI runs them against the built control plane, and against the in-repo API emulator
//! (`cargo run --example emulator`, with `E2E_KUBECONFIG`), which must agree with it.

use std::time::Duration;

use clap::Parser;
use ecr_public_pull_secret_operator::{
    config::Cli,
    crd::{ClusterEcrPublicPullSecret, EcrPublicPullSecret, MANAGER},
    run,
};
use harness::{
    control_plane::{ControlPlane, User},
    ecr::FakeEcrPublic,
    env::sdk_config_for,
};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Namespace, Secret, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{Condition, await_condition, conditions},
};
use serde_json::json;

/// One test at a time: the cluster-kind test runs the operator cluster-wide, where it would also
/// serve the other tests' resources.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits up to `secs` for `cond` on the named object; panics saying `what` did not happen.
async fn within<K>(
    api: &Api<K>,
    name: &str,
    secs: u64,
    what: &str,
    cond: impl Condition<K>,
) -> Option<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    tokio::time::timeout(
        Duration::from_secs(secs),
        await_condition(api.clone(), name, cond),
    )
    .await
    .unwrap_or_else(|_| panic!("{what} within {secs} s"))
    .unwrap_or_else(|e| panic!("watch while waiting for {what}: {e}"))
}

/// The cluster `E2E_KUBECONFIG` names, else the control plane built by `tests/cluster/build.sh`.
async fn cluster() -> Client {
    let Ok(path) = std::env::var("E2E_KUBECONFIG") else {
        let cp = tokio::task::spawn_blocking(ControlPlane::shared)
            .await
            .expect("control plane");
        return cp.client(User::Admin).await;
    };
    let kubeconfig = Kubeconfig::read_from(path).expect("read E2E_KUBECONFIG");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
    run::no_client_retries(&mut config);
    Client::try_from(config).expect("client")
}

/// Both CRDs applied and established, and a fresh namespace for one test.
async fn setup(client: &Client) -> String {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        EcrPublicPullSecret::crd(),
        ClusterEcrPublicPullSecret::crd(),
    ] {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
        within(
            &crds,
            &crd.name_any(),
            30,
            "CRD established",
            conditions::is_crd_established(),
        )
        .await;
    }
    let ns_name = format!("epps-e2e-{:08x}", fastrand::u32(..));
    create_namespace(client, &ns_name, json!({})).await;
    ns_name
}

async fn create_namespace(client: &Client, name: &str, labels: serde_json::Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// The operator in this process, watching `ns` only (or everything with `--cluster-pull-secrets`
/// in `extra`); send on the channel to stop it.
async fn start_operator(
    client: &Client,
    ecr: &FakeEcrPublic,
    ns: &str,
    extra: &[&str],
) -> (tokio::sync::oneshot::Sender<()>, run::Running) {
    let mut argv = vec!["op", "--http-addr", "127.0.0.1:0"];
    if !extra
        .iter()
        .any(|a| a.starts_with("--cluster-pull-secrets"))
    {
        argv.extend(["--watch-namespace", ns]);
    }
    argv.extend_from_slice(extra);
    let args = Cli::try_parse_from(argv).unwrap().run;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = run::start(
        client.clone(),
        &sdk_config_for(&ecr.url(), "AKIDE2E"),
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
#[ignore = "needs a real cluster: tests/cluster/build.sh (or E2E_KUBECONFIG), then --ignored"]
async fn real_cluster_secret_lifecycle() {
    let _serial = SERIAL.lock().await;
    let client = cluster().await;
    let ns_name = setup(&client).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ecr = FakeEcrPublic::start().await.expect("fake ECR");
    let (tx, running) = start_operator(&client, &ecr, &ns_name, &[]).await;
    let crs: Api<EcrPublicPullSecret> = Api::namespaced(client.clone(), &ns_name);
    create_cr(&client, &ns_name, "e2e", json!({})).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns_name);
    let secret = within(
        &secrets,
        "e2e",
        60,
        "Secret written",
        |s: Option<&Secret>| s.is_some(),
    )
    .await
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
    within(&crs, "e2e", 60, "Ready", ready).await;
    crs.delete("e2e", &DeleteParams::background())
        .await
        .expect("delete CR");
    let uid = secret.uid().unwrap();
    within(
        &secrets,
        "e2e",
        120,
        "Secret garbage-collected",
        conditions::is_deleted(&uid),
    )
    .await;
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
#[ignore = "needs a real cluster: tests/cluster/build.sh (or E2E_KUBECONFIG), then --ignored"]
async fn real_cluster_service_account_patching() {
    let _serial = SERIAL.lock().await;
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
    let entries =
        |want: &'static [&'static str]| move |sa: Option<&ServiceAccount>| names(sa) == want;
    within(
        &sas,
        "e2e-sa",
        60,
        "entry added after the user's",
        entries(&["theirs", "e2e"]),
    )
    .await;
    Api::<EcrPublicPullSecret>::namespaced(client.clone(), &ns_name)
        .delete("e2e", &DeleteParams::background())
        .await
        .expect("delete CR");
    within(&sas, "e2e-sa", 60, "entry removed", entries(&["theirs"])).await;
    let _ = tx.send(());
    let _ = running.done.await;
    Api::<Namespace>::all(client.clone())
        .delete(&ns_name, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

/// The cluster kind on a real API server: a Secret in each selected namespace from one token, a
/// namespace joining and leaving the selection, and the finalizer removing the rest on delete.
#[tokio::test]
#[ignore = "needs a real cluster: tests/cluster/build.sh (or E2E_KUBECONFIG), then --ignored"]
async fn real_cluster_cluster_pull_secret_follows_the_namespace_selector() {
    let _serial = SERIAL.lock().await;
    let client = cluster().await;
    refuse_where_an_installation_serves(&client).await;
    let first = setup(&client).await;
    let names = [first.clone(), format!("{first}-b"), format!("{first}-c")];
    let outcome = tokio::spawn(cluster_kind_scenario(client.clone(), names.clone())).await;
    // Whatever happened: a resource left with its finalizer and no operator would never go.
    let cepps: Api<ClusterEcrPublicPullSecret> = Api::all(client.clone());
    let unblock = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    let _ = cepps.patch(&first, &PatchParams::default(), &unblock).await;
    let _ = cepps.delete(&first, &DeleteParams::default()).await;
    for ns in &names {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::default())
            .await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The cluster-kind test runs the operator cluster-wide, where it would fight an installed
/// operator and overwrite real Secrets with the fake's tokens: it refuses to run there.
async fn refuse_where_an_installation_serves(client: &Client) {
    async fn count<K>(api: Api<K>, params: ListParams) -> usize
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.list_metadata(&params).await {
            Ok(list) => list.items.len(),
            // Not installed at all.
            Err(kube::Error::Api(s)) if s.code == 404 => 0,
            Err(e) => panic!("cannot check the cluster: {e}"),
        }
    }
    let all = ListParams::default;
    let theirs = count(Api::<EcrPublicPullSecret>::all(client.clone()), all()).await
        + count(
            Api::<ClusterEcrPublicPullSecret>::all(client.clone()),
            all(),
        )
        .await;
    let operators = count(
        Api::<Deployment>::all(client.clone()),
        all().labels("app.kubernetes.io/name=ecr-public-pull-secret-operator"),
    )
    .await;
    assert_eq!(
        (theirs, operators),
        (0, 0),
        "this test runs the operator cluster-wide: use a cluster without EcrPublicPullSecrets \
         and without the operator installed"
    );
}

async fn cluster_kind_scenario(client: Client, names: [String; 3]) {
    let [first, second, unlabelled] = names;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = json!({"e2e.ecrpublic.pullsecrets.dev/run": first});
    let set_labels = |ns: String, labels: serde_json::Value| {
        let namespaces = namespaces.clone();
        async move {
            namespaces
                .patch(
                    &ns,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await
                .expect("label namespace");
        }
    };
    set_labels(first.clone(), label.clone()).await;
    let ecr = FakeEcrPublic::start().await.expect("fake ECR");
    let (tx, running) =
        start_operator(&client, &ecr, &first, &["--cluster-pull-secrets=true"]).await;
    let cepps: Api<ClusterEcrPublicPullSecret> = Api::all(client.clone());
    let cr: ClusterEcrPublicPullSecret = serde_json::from_value(json!({
        "apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1", "kind": "ClusterEcrPublicPullSecret",
        "metadata": {"name": first},
        "spec": {"secretName": "e2e-pull", "namespaceSelector": {"matchLabels": label}}
    }))
    .unwrap();
    cepps
        .create(&PostParams::default(), &cr)
        .await
        .expect("create ClusterEcrPublicPullSecret");
    let secret_in = |ns: &str| Api::<Secret>::namespaced(client.clone(), ns);
    let wait = |ns: String, what: &'static str, present: bool| {
        let secrets = secret_in(&ns);
        async move {
            let what = format!("{what} in {ns}");
            within(
                &secrets,
                "e2e-pull",
                60,
                &what,
                move |s: Option<&Secret>| s.is_some() == present,
            )
            .await;
        }
    };
    wait(first.clone(), "Secret written", true).await;
    // A namespace created with the label joins; an unlabelled one does not.
    create_namespace(&client, &second, label.clone()).await;
    create_namespace(&client, &unlabelled, json!({})).await;
    wait(second.clone(), "Secret written", true).await;
    // The first namespace leaves the selection: its Secret goes.
    set_labels(
        first.clone(),
        json!({"e2e.ecrpublic.pullsecrets.dev/run": null}),
    )
    .await;
    wait(first.clone(), "Secret removed", false).await;
    // Deleting the resource removes the rest (finalizer), then the resource itself.
    cepps
        .delete(&first, &DeleteParams::background())
        .await
        .expect("delete ClusterEcrPublicPullSecret");
    wait(second.clone(), "Secret removed", false).await;
    within(
        &cepps,
        &first,
        60,
        "finalizer released",
        |c: Option<&ClusterEcrPublicPullSecret>| c.is_none(),
    )
    .await;
    assert!(
        secret_in(&unlabelled)
            .get_opt("e2e-pull")
            .await
            .expect("get Secret")
            .is_none(),
        "an unselected namespace never gets the Secret"
    );
    let _ = tx.send(());
    let _ = running.done.await;
    assert_eq!(ecr.calls(), 1, "one token for every namespace");
}
