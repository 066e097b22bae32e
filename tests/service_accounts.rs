//! `spec.serviceAccounts`: the operator adds its Secret to ServiceAccounts' `imagePullSecrets`,
//! keeps every other entry as it was, writes nothing when the entry is there, and undoes only its
//! own entries, for both kinds. Each runs on the emulator and on the real kube-apiserver
//! (`real_api_server::…`), where JSON-patch `test` operations and the atomic list are the server's.

use std::time::Duration;

use harness::{env::*, on_both_apis};
use serde_json::{Value, json};

const SAS: &str = "serviceaccounts";
const ADDED: &str = "ecrpublic.pullsecrets.dev/added-image-pull-secrets";

/// Creates a ServiceAccount; one the API already made (the ServiceAccount controller creates
/// `default` in every namespace) is replaced with this content instead.
async fn create_sa(k: &Kube, ns: &str, name: &str, extra: Value) {
    let mut sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": name, "namespace": ns}});
    if let (Some(sa), Some(extra)) = (sa.as_object_mut(), extra.as_object()) {
        sa.extend(extra.clone());
    }
    match k.create(SAS, Some(ns), sa.clone()).await {
        Ok(_) => {}
        Err(e) if e["code"] == 409 => {
            // The controller's create may not have reached this test's view of the API yet.
            let seen = |k: &Kube| k.get(SAS, Some(ns), name).is_some();
            assert!(
                k.wait_until(Duration::from_secs(10), seen).await,
                "{ns}/{name} exists (409) but is never seen"
            );
            let current = k.get(SAS, Some(ns), name).expect("seen");
            sa["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            k.replace(SAS, Some(ns), sa).await.unwrap();
        }
        Err(e) => panic!("create ServiceAccount {ns}/{name}: {e}"),
    }
}

/// A ServiceAccount's `imagePullSecrets` (null when it has none, or does not exist yet).
fn pull_secrets(k: &Kube, ns: &str, name: &str) -> Value {
    k.get(SAS, Some(ns), name)
        .map(|sa| sa["imagePullSecrets"].clone())
        .unwrap_or_default()
}

fn names(k: &Kube, ns: &str, name: &str) -> Vec<String> {
    pull_secrets(k, ns, name)
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn patches(k: &Kube) -> usize {
    k.count("patch", SAS)
}

/// Namespace/name and status code of every ServiceAccount patch, for failure messages.
fn patch_log(k: &Kube) -> String {
    k.requests()
        .iter()
        .filter(|r| r.resource == SAS && r.verb == "patch")
        .map(|r| format!("{:?}/{:?}={}", r.namespace, r.name, r.code))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn namespaced_resource_adds_keeps_and_removes_only_its_own_entry(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let apps = env.ns.as_str();
    create_sa(&env.k8s, apps, "default", json!({})).await;
    let theirs = json!([{"name": "zeta"}, {"name": "alpha"}]);
    create_sa(
        &env.k8s,
        apps,
        "builder",
        json!({"metadata": {"name": "builder", "namespace": apps,
                            "annotations": {"team": "build"}},
               "imagePullSecrets": theirs}),
    )
    .await;
    let op = env.start_operator(&["--patch-service-accounts=true"]).await;
    env.create_cr(apps, "ecr", json!({"serviceAccounts": ["*"]}))
        .await;
    env.wait(
        "both ServiceAccounts name the Secret",
        Duration::from_secs(15),
        |k| {
            names(k, apps, "default") == ["ecr"]
                && names(k, apps, "builder") == ["zeta", "alpha", "ecr"]
        },
    )
    .await;
    env.wait("both patches logged", Duration::from_secs(5), |k| {
        patches(k) >= 2
    })
    .await;
    assert_eq!(
        patches(&env.k8s),
        2,
        "one patch per ServiceAccount: {}",
        patch_log(&env.k8s)
    );
    let builder = pull_secrets(&env.k8s, apps, "builder");
    assert_eq!(
        builder.as_array().unwrap()[..2],
        theirs.as_array().unwrap()[..],
        "entries that were there stay exactly as they were, in order"
    );

    // A ServiceAccount created later is patched promptly; nothing else is written again.
    let before = patches(&env.k8s);
    create_sa(&env.k8s, apps, "late", json!({})).await;
    env.wait(
        "late ServiceAccount patched",
        Duration::from_secs(10),
        // The request log is written just after the change shows: await both.
        |k| names(k, apps, "late") == ["ecr"] && patches(k) > before,
    )
    .await;
    assert_eq!(
        patches(&env.k8s),
        before + 1,
        "one patch, for the new ServiceAccount: {}",
        patch_log(&env.k8s)
    );

    // A restart re-reconciles every ServiceAccount and writes nothing: the entries are there.
    op.stop().await;
    let before = patches(&env.k8s);
    let op = env.start_operator(&["--patch-service-accounts=true"]).await;
    create_sa(&env.k8s, apps, "probe", json!({})).await;
    env.wait(
        "probe ServiceAccount patched",
        Duration::from_secs(10),
        // The request log is written just after the change shows: await both.
        |k| names(k, apps, "probe") == ["ecr"] && patches(k) > before,
    )
    .await;
    assert_eq!(
        patches(&env.k8s),
        before + 1,
        "idempotent after a restart: {}",
        patch_log(&env.k8s)
    );

    // Narrowing the list undoes the entry on the ServiceAccounts that left it, only there.
    env.k8s
        .edit(CRS, Some(apps), "ecr", |cr| {
            cr["spec"]["serviceAccounts"] = json!(["default"]);
        })
        .await;
    env.wait("builder back as it was", Duration::from_secs(10), |k| {
        pull_secrets(k, apps, "builder") == theirs && names(k, apps, "late").is_empty()
    })
    .await;
    let builder = env.k8s.get(SAS, Some(apps), "builder").unwrap();
    assert_eq!(builder["metadata"]["annotations"], json!({"team": "build"}));
    assert_eq!(names(&env.k8s, apps, "default"), ["ecr"]);

    // Deleting the resource removes the entry it added.
    env.k8s.delete(CRS, Some(apps), "ecr").await.unwrap();
    env.wait("default has no entry left", Duration::from_secs(10), |k| {
        pull_secrets(k, apps, "default").is_null()
    })
    .await;
    assert_eq!(pull_secrets(&env.k8s, apps, "builder"), theirs);
    assert_no_token_leak(&env);
    op.stop().await;
}

async fn hand_written_entries_and_user_edits_are_never_lost(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let apps = env.ns.as_str();
    // The user already lists the Secret by hand: it is theirs, and stays when the resource goes.
    create_sa(
        &env.k8s,
        apps,
        "default",
        json!({"imagePullSecrets": [{"name": "ecr"}]}),
    )
    .await;
    let op = env.start_operator(&["--patch-service-accounts=true"]).await;
    env.create_cr(
        apps,
        "ecr",
        json!({"serviceAccounts": ["default", "edited"]}),
    )
    .await;
    env.wait("Secret written", Duration::from_secs(10), |k| {
        cr_ready(k, apps, "ecr")
    })
    .await;
    // Someone edits the list while the operator adds to it, in whichever order: both survive.
    create_sa(&env.k8s, apps, "edited", json!({})).await;
    let mut sa = env.k8s.get(SAS, Some(apps), "edited").unwrap();
    sa["imagePullSecrets"] = json!([{"name": "mine"}]);
    // The operator may have patched first: then this replace fails on resourceVersion; retry.
    let mut replaced = env.k8s.replace(SAS, Some(apps), sa).await.is_ok();
    if !replaced {
        let mut sa = env.k8s.get(SAS, Some(apps), "edited").unwrap();
        let mut list = sa["imagePullSecrets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.insert(0, json!({"name": "mine"}));
        sa["imagePullSecrets"] = json!(list);
        replaced = env.k8s.replace(SAS, Some(apps), sa).await.is_ok();
    }
    assert!(replaced, "the user's edit went in");
    env.wait("both entries present", Duration::from_secs(10), |k| {
        names(k, apps, "edited") == ["mine", "ecr"]
    })
    .await;
    assert!(
        env.k8s.get(SAS, Some(apps), "default").unwrap()["metadata"]["annotations"][ADDED]
            .is_null(),
        "a hand-written entry is not claimed"
    );
    env.k8s.delete(CRS, Some(apps), "ecr").await.unwrap();
    env.wait(
        "our entry removed from edited",
        Duration::from_secs(10),
        |k| names(k, apps, "edited") == ["mine"],
    )
    .await;
    assert_eq!(
        names(&env.k8s, apps, "default"),
        ["ecr"],
        "hand-written entry kept"
    );
    op.stop().await;
}

async fn cluster_resource_patches_service_accounts_in_selected_namespaces(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let (t1, t2, other) = (
        format!("{}-t1", env.ns),
        format!("{}-t2", env.ns),
        format!("{}-other", env.ns),
    );
    let team = [("team", env.ns.as_str())];
    env.create_namespace(&t1, &team).await;
    env.create_namespace(&other, &[]).await;
    for ns in [&t1, &other] {
        create_sa(&env.k8s, ns, "default", json!({})).await;
    }
    let op = env
        .start_operator(&["--cluster-pull-secrets", "--patch-service-accounts=true"])
        .await;
    env.k8s
        .create(
            CLUSTER_CRS,
            None,
            json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                   "kind": "ClusterEcrPublicPullSecret",
                   "metadata": {"name": "ecr-public"},
                   "spec": {"namespaceSelector": {"matchLabels": {"team": env.ns}},
                            "serviceAccounts": ["default"]}}),
        )
        .await
        .unwrap();
    env.wait("t1 default patched", Duration::from_secs(15), |k| {
        names(k, &t1, "default") == ["ecr-public"]
    })
    .await;
    assert!(names(&env.k8s, &other, "default").is_empty());

    // A new namespace in the selection: the `default` ServiceAccount the ServiceAccount
    // controller gives it is patched too.
    env.create_namespace(&t2, &team).await;
    env.wait("t2 default patched", Duration::from_secs(10), |k| {
        names(k, &t2, "default") == ["ecr-public"]
    })
    .await;

    // Leaving the selection undoes it.
    env.k8s
        .edit("namespaces", None, &t1, |ns| {
            ns["metadata"]["labels"] = json!({"kubernetes.io/metadata.name": t1});
        })
        .await;
    env.wait("t1 entry removed", Duration::from_secs(10), |k| {
        names(k, &t1, "default").is_empty()
    })
    .await;

    env.k8s
        .delete(CLUSTER_CRS, None, "ecr-public")
        .await
        .unwrap();
    env.wait("t2 entry removed on delete", Duration::from_secs(15), |k| {
        names(k, &t2, "default").is_empty()
    })
    .await;
    assert!(!logs().contains("panicked"), "the operator never panics");
    op.stop().await;
}

async fn without_the_flag_service_accounts_are_never_touched(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let apps = env.ns.as_str();
    create_sa(&env.k8s, apps, "default", json!({})).await;
    let op = env.start_operator(&[]).await;
    env.create_cr(apps, "ecr", json!({"serviceAccounts": ["*"]}))
        .await;
    env.wait("Secret written", Duration::from_secs(10), |k| {
        cr_ready(k, apps, "ecr")
    })
    .await;
    assert_eq!(patches(&env.k8s), 0);
    let message = cr_message(&env.k8s, apps, "ecr");
    assert!(
        message.contains("spec.serviceAccounts is ignored")
            && message.contains("serviceAccountPatching.enabled"),
        "the status says why nothing happens: {message}"
    );
    assert!(
        env.k8s.requests().iter().all(|r| r.resource != SAS),
        "not even watched"
    );
    op.stop().await;
}

async fn one_edit_renaming_the_secret_and_dropping_the_service_account_undoes_the_old_entry(
    api: Api,
) {
    capture_logs();
    let env = Env::start_on(api).await;
    let apps = env.ns.as_str();
    // `[{}]`: an entry without a name, which the API server keeps (and returns) as `{}`.
    create_sa(&env.k8s, apps, "web", json!({"imagePullSecrets": [{}]})).await;
    create_sa(&env.k8s, apps, "worker", json!({})).await;
    let op = env.start_operator(&["--patch-service-accounts=true"]).await;
    env.create_cr(apps, "ecr", json!({"serviceAccounts": ["web"]}))
        .await;
    env.wait("web names the Secret", Duration::from_secs(15), |k| {
        pull_secrets(k, apps, "web") == json!([{}, {"name": "ecr"}])
    })
    .await;
    env.k8s
        .edit(CRS, Some(apps), "ecr", |cr| {
            cr["spec"]["secretName"] = json!("ecr-renamed");
            cr["spec"]["serviceAccounts"] = json!(["worker"]);
        })
        .await;
    env.wait(
        "old entry gone from web, new one on worker",
        Duration::from_secs(15),
        |k| {
            pull_secrets(k, apps, "web") == json!([{}])
                && names(k, apps, "worker") == ["ecr-renamed"]
        },
    )
    .await;
    let web = env.k8s.get(SAS, Some(apps), "web").unwrap();
    assert!(
        web["metadata"]["annotations"][ADDED].is_null(),
        "nothing recorded as ours any more: {web}"
    );
    op.stop().await;
}

on_both_apis!(
    namespaced_resource_adds_keeps_and_removes_only_its_own_entry,
    hand_written_entries_and_user_edits_are_never_lost,
    cluster_resource_patches_service_accounts_in_selected_namespaces,
    without_the_flag_service_accounts_are_never_touched,
    one_edit_renaming_the_secret_and_dropping_the_service_account_undoes_the_old_entry,
);
