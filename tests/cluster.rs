//! ClusterEcrPublicPullSecret against the emulators: fan-out from one token, namespace selection
//! changes and conflicts with a namespaced resource.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const OWNER: &str = "ecrpublic.pullsecrets.dev/cluster-owner";

fn has_secret(k: &harness::kube_api::Emulator, ns: &str) -> bool {
    k.get(SECRETS, Some(ns), "ecr-public").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_fans_out_to_every_selected_namespace_and_is_cleaned_up() {
    capture_logs();
    let env = Env::start().await;
    for i in 0..200 {
        env.k8s
            .create_namespace(&format!("team-{i}"), &[("team", "yes")]);
    }
    env.k8s.create_namespace("other", &[]);
    // A Secret of that name written by someone else, and a namespaced resource on the same name.
    env.k8s.create_namespace("foreign", &[("team", "yes")]);
    env.k8s
        .create(
            SECRETS,
            Some("foreign"),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "ecr-public", "namespace": "foreign"}, "data": {}}),
        )
        .unwrap();
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    env.k8s
        .create(
            CLUSTER_CRS,
            None,
            json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                   "kind": "ClusterEcrPublicPullSecret",
                   "metadata": {"name": "ecr-public"},
                   "spec": {"namespaceSelector": {"matchLabels": {"team": "yes"}}}}),
        )
        .unwrap();
    let all = env
        .k8s
        .wait_until(Duration::from_secs(60), |k| {
            (0..200).all(|i| has_secret(k, &format!("team-{i}")))
        })
        .await;
    assert!(
        all,
        "200 Secrets; resource: {}\n{}",
        env.k8s.get(CLUSTER_CRS, None, "ecr-public").unwrap(),
        logs()
            .lines()
            .filter(|l| l.contains("cluster") || l.contains("WARN"))
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(env.ecr.calls(), 1, "one ECR call for 200 namespaces");
    assert!(!has_secret(&env.k8s, "other"));
    let status = |k: &harness::kube_api::Emulator| {
        k.get(CLUSTER_CRS, None, "ecr-public").unwrap()["status"].clone()
    };
    env.wait("status counts", Duration::from_secs(20), |k| {
        let s = status(k);
        s["selectedNamespaces"] == 201 && s["readyNamespaces"] == 200 && s["failedNamespaces"] == 1
    })
    .await;
    let s = status(&env.k8s);
    assert_eq!(s["failures"][0]["namespace"], "foreign");
    assert_eq!(s["failures"][0]["reason"], "SecretConflict");
    let foreign = env.k8s.get(SECRETS, Some("foreign"), "ecr-public").unwrap();
    assert!(
        foreign["metadata"]["labels"][OWNER].is_null(),
        "never overwritten"
    );

    // Joining and leaving the selection.
    env.k8s.create_namespace("late", &[("team", "yes")]);
    env.wait(
        "new namespace gets its Secret",
        Duration::from_secs(10),
        |k| has_secret(k, "late"),
    )
    .await;
    let mut ns = env.k8s.get("namespaces", None, "team-0").unwrap();
    ns["metadata"]["labels"] = json!({"kubernetes.io/metadata.name": "team-0"});
    env.k8s.replace("namespaces", None, ns).unwrap();
    env.wait(
        "unlabelled namespace loses it",
        Duration::from_secs(10),
        |k| !has_secret(k, "team-0"),
    )
    .await;

    // A namespaced resource naming the same Secret does not take it over.
    env.create_cr("team-1", "ecr-public", json!({}));
    env.wait("namespaced conflict", Duration::from_secs(10), |k| {
        cr_reason(k, "team-1", "ecr-public").as_deref() == Some("SecretConflict")
    })
    .await;

    // Deleting the resource removes every Secret it wrote, and only those.
    env.k8s
        .create(
            SECRETS,
            Some("team-2"),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "unrelated", "namespace": "team-2"}, "data": {}}),
        )
        .unwrap();
    env.k8s.delete(CLUSTER_CRS, None, "ecr-public").unwrap();
    let gone = env
        .k8s
        .wait_until(Duration::from_secs(30), |k| {
            k.get(CLUSTER_CRS, None, "ecr-public").is_none()
                && !k
                    .list(SECRETS, None)
                    .iter()
                    .any(|s| !s["metadata"]["labels"][OWNER].is_null())
        })
        .await;
    assert!(
        gone,
        "resource: {:?}\nlabelled Secrets left: {}\n{}",
        env.k8s.get(CLUSTER_CRS, None, "ecr-public"),
        env.k8s
            .list(SECRETS, None)
            .iter()
            .filter(|s| !s["metadata"]["labels"][OWNER].is_null())
            .count(),
        logs()
            .lines()
            .filter(|l| l.contains("cluster") || l.contains("WARN"))
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        env.k8s
            .get(SECRETS, Some("foreign"), "ecr-public")
            .is_some()
    );
    assert!(env.k8s.get(SECRETS, Some("team-2"), "unrelated").is_some());
    assert_eq!(env.ecr.calls(), 1);
    assert_no_token_leak(&env);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_namespaces_are_skipped_without_errors() {
    capture_logs();
    let env = Env::start().await;
    for ns in ["live", "leaving"] {
        env.k8s.create_namespace(ns, &[("team", "yes")]);
    }
    // Something with a finalizer keeps "leaving" Terminating, as on a real cluster.
    env.k8s
        .create(
            "configmaps",
            Some("leaving"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "held", "namespace": "leaving",
                                "finalizers": ["example.com/hold"]}}),
        )
        .unwrap();
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    env.k8s
        .create(
            CLUSTER_CRS,
            None,
            json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                   "kind": "ClusterEcrPublicPullSecret",
                   "metadata": {"name": "ecr-public"},
                   "spec": {"namespaceSelector": {"matchLabels": {"team": "yes"}}}}),
        )
        .unwrap();
    env.wait("both Secrets", Duration::from_secs(15), |k| {
        has_secret(k, "live") && has_secret(k, "leaving")
    })
    .await;
    let _ = env.k8s.delete("namespaces", None, "leaving");
    let status = |k: &harness::kube_api::Emulator| {
        k.get(CLUSTER_CRS, None, "ecr-public").unwrap()["status"].clone()
    };
    env.wait(
        "terminating namespace dropped from the selection",
        Duration::from_secs(15),
        |k| {
            let s = status(k);
            k.get("namespaces", None, "leaving").is_some()
                && s["selectedNamespaces"] == 1
                && s["readyNamespaces"] == 1
                && s["failedNamespaces"] == 0
        },
    )
    .await;
    let cr = env.k8s.get(CLUSTER_CRS, None, "ecr-public").unwrap();
    assert_eq!(ready(&cr).map(|(s, _)| s).as_deref(), Some("True"), "{cr}");
    assert!(!logs().contains("cluster reconcile error"), "no errors");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_the_schema_lets_through_is_reported_and_the_secrets_are_kept_until_expiry() {
    capture_logs();
    let env = Env::start().await;
    env.ecr.set_token_lifetime(Duration::from_secs(8));
    env.k8s.create_namespace("team-a", &[("team", "yes")]);
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    let cr = |selector: serde_json::Value| {
        json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
               "kind": "ClusterEcrPublicPullSecret",
               "metadata": {"name": "ecr-public"},
               "spec": {"namespaceSelector": selector}})
    };
    env.k8s
        .create(
            CLUSTER_CRS,
            None,
            cr(json!({"matchLabels": {"team": "yes"}})),
        )
        .unwrap();
    env.wait("Secret written", Duration::from_secs(15), |k| {
        has_secret(k, "team-a")
    })
    .await;
    let reason =
        |k: &harness::kube_api::Emulator| ready(&k.get(CLUSTER_CRS, None, "ecr-public").unwrap());
    env.wait("Ready", Duration::from_secs(15), |k| {
        reason(k).is_some_and(|(s, _)| s == "True")
    })
    .await;
    // An operator the API's schema accepts as a string, but no selector knows.
    let mut bad = env.k8s.get(CLUSTER_CRS, None, "ecr-public").unwrap();
    bad["spec"] =
        cr(json!({"matchExpressions": [{"key": "team", "operator": "Near"}]}))["spec"].clone();
    env.k8s.replace(CLUSTER_CRS, None, bad).unwrap();
    env.wait("Ready=False InvalidSpec", Duration::from_secs(15), |k| {
        reason(k).is_some_and(|(s, r)| s == "False" && r == "InvalidSpec")
    })
    .await;
    let status = env.k8s.get(CLUSTER_CRS, None, "ecr-public").unwrap()["status"].clone();
    let message = status["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("spec.namespaceSelector"), "{message}");
    assert!(has_secret(&env.k8s, "team-a"), "the last good Secret stays");
    // `kubectl describe` shows the change too: cluster-scoped, so the Event is in `default`.
    let event = |k: &harness::kube_api::Emulator, type_: &str, reason: &str| {
        k.list(EVENTS, Some("default")).iter().any(|e| {
            e["type"] == type_
                && e["reason"] == reason
                && e["regarding"]["kind"] == "ClusterEcrPublicPullSecret"
                && e["regarding"]["name"] == "ecr-public"
        })
    };
    env.wait(
        "a Warning Event InvalidSpec",
        Duration::from_secs(15),
        |k| event(k, "Warning", "InvalidSpec"),
    )
    .await;
    assert!(event(&env.k8s, "Normal", "TokenValid"), "the first Ready");
    // ...while its token is valid: an expired one is worse than none (onExpiry: RemoveAuth).
    env.wait("expired auth removed", Duration::from_secs(20), |k| {
        k.get(SECRETS, Some("team-a"), "ecr-public")
            .is_some_and(|s| docker_config(&s) == json!({"auths": {}}))
    })
    .await;
    // Fixing the spec brings the token back.
    let mut fixed = env.k8s.get(CLUSTER_CRS, None, "ecr-public").unwrap();
    fixed["spec"] = cr(json!({"matchLabels": {"team": "yes"}}))["spec"].clone();
    env.k8s.replace(CLUSTER_CRS, None, fixed).unwrap();
    env.wait("Ready again with a token", Duration::from_secs(15), |k| {
        reason(k).is_some_and(|(s, _)| s == "True")
            && k.get(SECRETS, Some("team-a"), "ecr-public")
                .is_some_and(|s| docker_config(&s)["auths"]["public.ecr.aws"]["auth"].is_string())
    })
    .await;
    assert_no_token_leak(&env);
    op.stop().await;
}
