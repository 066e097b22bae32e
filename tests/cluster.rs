//! ClusterEcrPublicPullSecret against a Kubernetes API (the emulator, and as `real_api_server::…`
//! the real kube-apiserver): fan-out from one token, namespace selection changes and conflicts
//! with a namespaced resource. Namespaces are named after the test's own (`env.ns`) and selected
//! by a label value unique to the test, so that nothing another test left behind can join in.

use std::time::Duration;

use harness::{env::*, on_both_apis};
use serde_json::{Value, json};

const OWNER: &str = "ecrpublic.pullsecrets.dev/cluster-owner";

fn has_secret(k: &Kube, ns: &str) -> bool {
    k.get(SECRETS, Some(ns), "ecr-public").is_some()
}

/// The cluster resource of these tests, selecting `selector`.
fn cluster_cr(selector: Value) -> Value {
    json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
           "kind": "ClusterEcrPublicPullSecret",
           "metadata": {"name": "ecr-public"},
           "spec": {"namespaceSelector": selector}})
}

fn status(k: &Kube) -> Value {
    k.get(CLUSTER_CRS, None, "ecr-public")
        .map(|cr| cr["status"].clone())
        .unwrap_or_default()
}

/// Secrets carrying the owner label of the cluster resource with this uid.
fn owned_secrets(k: &Kube, uid: &str) -> usize {
    k.list(SECRETS, None)
        .iter()
        .filter(|s| s["metadata"]["labels"][OWNER] == uid)
        .count()
}

fn operator_log_tail() -> String {
    logs()
        .lines()
        .filter(|l| l.contains("cluster") || l.contains("WARN"))
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n")
}

fn secret(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": ns}, "data": {}})
}

async fn one_token_fans_out_to_every_selected_namespace_and_is_cleaned_up(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let n = |s: &str| format!("{}-{s}", env.ns);
    let label = [("team", env.ns.as_str())];
    for i in 0..200 {
        env.create_namespace(&n(&format!("team-{i}")), &label).await;
    }
    env.create_namespace(&n("other"), &[]).await;
    // A Secret of that name written by someone else, and a namespaced resource on the same name.
    let foreign = n("foreign");
    env.create_namespace(&foreign, &label).await;
    env.k8s
        .create(SECRETS, Some(&foreign), secret(&foreign, "ecr-public"))
        .await
        .unwrap();
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    let cr = env
        .k8s
        .create(
            CLUSTER_CRS,
            None,
            cluster_cr(json!({"matchLabels": {"team": env.ns}})),
        )
        .await
        .unwrap();
    let uid = cr["metadata"]["uid"].as_str().unwrap().to_owned();
    let all = env
        .k8s
        .wait_until(Duration::from_secs(60), |k| {
            (0..200).all(|i| has_secret(k, &n(&format!("team-{i}"))))
        })
        .await;
    assert!(
        all,
        "200 Secrets; resource: {}\n{}",
        env.k8s.get(CLUSTER_CRS, None, "ecr-public").unwrap(),
        operator_log_tail()
    );
    assert_eq!(env.ecr.calls(), 1, "one ECR call for 200 namespaces");
    assert!(!has_secret(&env.k8s, &n("other")));
    env.wait("status counts", Duration::from_secs(20), |k| {
        let s = status(k);
        s["selectedNamespaces"] == 201 && s["readyNamespaces"] == 200 && s["failedNamespaces"] == 1
    })
    .await;
    let s = status(&env.k8s);
    assert_eq!(s["failures"][0]["namespace"], foreign.as_str());
    assert_eq!(s["failures"][0]["reason"], "SecretConflict");
    let theirs = env.k8s.get(SECRETS, Some(&foreign), "ecr-public").unwrap();
    assert!(
        theirs["metadata"]["labels"][OWNER].is_null(),
        "never overwritten"
    );

    // Joining and leaving the selection.
    env.create_namespace(&n("late"), &label).await;
    env.wait(
        "new namespace gets its Secret",
        Duration::from_secs(10),
        |k| has_secret(k, &n("late")),
    )
    .await;
    let first = n("team-0");
    env.k8s
        .edit("namespaces", None, &first, |ns| {
            ns["metadata"]["labels"] = json!({"kubernetes.io/metadata.name": first});
        })
        .await;
    env.wait(
        "unlabelled namespace loses it",
        Duration::from_secs(10),
        |k| !has_secret(k, &first),
    )
    .await;

    // A namespaced resource naming the same Secret does not take it over.
    let second = n("team-1");
    env.create_cr(&second, "ecr-public", json!({})).await;
    env.wait("namespaced conflict", Duration::from_secs(10), |k| {
        cr_reason(k, &second, "ecr-public").as_deref() == Some("SecretConflict")
    })
    .await;

    // Deleting the resource removes every Secret it wrote, and only those.
    let third = n("team-2");
    env.k8s
        .create(SECRETS, Some(&third), secret(&third, "unrelated"))
        .await
        .unwrap();
    env.k8s
        .delete(CLUSTER_CRS, None, "ecr-public")
        .await
        .unwrap();
    let gone = env
        .k8s
        .wait_until(Duration::from_secs(30), |k| {
            k.get(CLUSTER_CRS, None, "ecr-public").is_none() && owned_secrets(k, &uid) == 0
        })
        .await;
    assert!(
        gone,
        "resource: {:?}\nlabelled Secrets left: {}\n{}",
        env.k8s.get(CLUSTER_CRS, None, "ecr-public"),
        owned_secrets(&env.k8s, &uid),
        operator_log_tail()
    );
    assert!(env.k8s.get(SECRETS, Some(&foreign), "ecr-public").is_some());
    assert!(env.k8s.get(SECRETS, Some(&third), "unrelated").is_some());
    assert_eq!(env.ecr.calls(), 1);
    assert_no_token_leak(&env);
    op.stop().await;
}

async fn terminating_namespaces_are_skipped_without_errors(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let (live, leaving) = (format!("{}-live", env.ns), format!("{}-leaving", env.ns));
    for ns in [&live, &leaving] {
        env.create_namespace(ns, &[("team", env.ns.as_str())]).await;
    }
    // Something with a finalizer keeps the namespace Terminating, as on a real cluster.
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "held", "namespace": leaving,
                                   "finalizers": ["example.com/hold"]}});
    env.k8s
        .create("configmaps", Some(&leaving), held)
        .await
        .unwrap();
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    env.k8s
        .create(
            CLUSTER_CRS,
            None,
            cluster_cr(json!({"matchLabels": {"team": env.ns}})),
        )
        .await
        .unwrap();
    env.wait("both Secrets", Duration::from_secs(15), |k| {
        has_secret(k, &live) && has_secret(k, &leaving)
    })
    .await;
    env.k8s.delete("namespaces", None, &leaving).await.unwrap();
    env.wait(
        "terminating namespace dropped from the selection",
        Duration::from_secs(15),
        |k| {
            let s = status(k);
            k.get("namespaces", None, &leaving).is_some()
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
    // Let the namespace go.
    let mut held = env.k8s.get("configmaps", Some(&leaving), "held").unwrap();
    held["metadata"]["finalizers"] = json!([]);
    env.k8s
        .replace("configmaps", Some(&leaving), held)
        .await
        .unwrap();
}

async fn a_selector_the_schema_lets_through_is_reported_and_the_secrets_are_kept_until_expiry(
    api: Api,
) {
    capture_logs();
    let env = Env::start_on(api).await;
    env.ecr.set_token_lifetime(Duration::from_secs(8));
    let team = format!("{}-team-a", env.ns);
    env.create_namespace(&team, &[("team", env.ns.as_str())])
        .await;
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    let selected = json!({"matchLabels": {"team": env.ns}});
    let cr = env
        .k8s
        .create(CLUSTER_CRS, None, cluster_cr(selected.clone()))
        .await
        .unwrap();
    env.wait("Secret written", Duration::from_secs(15), |k| {
        has_secret(k, &team)
    })
    .await;
    let reason = |k: &Kube| ready(&k.get(CLUSTER_CRS, None, "ecr-public").unwrap());
    env.wait("Ready", Duration::from_secs(15), |k| {
        reason(k).is_some_and(|(s, _)| s == "True")
    })
    .await;
    // An operator the API's schema accepts as a string, but no selector knows.
    let bad = json!({"matchExpressions": [{"key": "team", "operator": "Near"}]});
    env.k8s
        .edit(CLUSTER_CRS, None, "ecr-public", |cr| {
            cr["spec"] = cluster_cr(bad.clone())["spec"].clone();
        })
        .await;
    env.wait("Ready=False InvalidSpec", Duration::from_secs(15), |k| {
        reason(k).is_some_and(|(s, r)| s == "False" && r == "InvalidSpec")
    })
    .await;
    let status = status(&env.k8s);
    let message = status["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("spec.namespaceSelector"), "{message}");
    assert!(has_secret(&env.k8s, &team), "the last good Secret stays");
    // `kubectl describe` shows the change too: cluster-scoped, so the Event is in `default`.
    let uid = cr["metadata"]["uid"].clone();
    let event = |k: &Kube, type_: &str, reason: &str| {
        k.list(EVENTS, Some("default")).iter().any(|e| {
            e["type"] == type_
                && e["reason"] == reason
                && e["regarding"]["kind"] == "ClusterEcrPublicPullSecret"
                && e["regarding"]["uid"] == uid
        })
    };
    env.wait(
        "a Warning Event InvalidSpec",
        Duration::from_secs(15),
        |k| event(k, "Warning", "InvalidSpec"),
    )
    .await;
    assert!(event(&env.k8s, "Normal", "Written"), "the first write");
    // ...while its token is valid: an expired one is worse than none (onExpiry: RemoveAuth).
    env.wait("expired auth removed", Duration::from_secs(20), |k| {
        k.get(SECRETS, Some(&team), "ecr-public")
            .is_some_and(|s| docker_config(&s) == json!({"auths": {}}))
    })
    .await;
    // Fixing the spec brings the token back.
    env.k8s
        .edit(CLUSTER_CRS, None, "ecr-public", |cr| {
            cr["spec"] = cluster_cr(selected.clone())["spec"].clone();
        })
        .await;
    env.wait("Ready again with a token", Duration::from_secs(15), |k| {
        reason(k).is_some_and(|(s, _)| s == "True")
            && k.get(SECRETS, Some(&team), "ecr-public")
                .is_some_and(|s| docker_config(&s)["auths"]["public.ecr.aws"]["auth"].is_string())
    })
    .await;
    assert_no_token_leak(&env);
    op.stop().await;
}

/// Both kinds go through one controller: the cluster kind's reconciles are counted in the reconcile
/// metrics, its Secrets are in the expiry gauge because a live resource of it owns them, and it
/// announces the same things with the same Event reasons as the namespaced kind.
async fn both_kinds_report_through_the_same_metrics_and_events(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let ns = env.ns.as_str();
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    let cluster = |name: &str, secret: &str| {
        json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
               "kind": "ClusterEcrPublicPullSecret", "metadata": {"name": name},
               "spec": {"namespaces": [ns], "secretName": secret}})
    };
    let ready_cluster = |k: &Kube, name: &str| {
        k.get(CLUSTER_CRS, None, name)
            .is_some_and(|cr| ready(&cr).is_some_and(|(s, _)| s == "True"))
    };
    let name = format!("{ns}-c");
    env.k8s
        .create(CLUSTER_CRS, None, cluster(&name, "cluster-pull"))
        .await
        .unwrap();
    env.wait("the cluster resource Ready", Duration::from_secs(20), |k| {
        ready_cluster(k, &name)
    })
    .await;
    // Only the cluster kind has reconciled anything yet.
    let written = async || {
        let text = op.http_get("/metrics").await.1;
        metric(&text, r#"epps_reconcile_total{result="written"}"#).unwrap_or(0.0) >= 1.0
            && text.contains(&format!(
                r#"epps_secret_token_expiry_timestamp_seconds{{namespace="{ns}",name="cluster-pull"}}"#
            ))
    };
    assert!(
        eventually(Duration::from_secs(20), written).await,
        "the cluster kind's reconcile and Secret in /metrics"
    );
    env.create_cr(ns, "ns-pull", json!({})).await;
    env.wait(
        "the namespaced resource Ready",
        Duration::from_secs(20),
        |k| cr_ready(k, ns, "ns-pull"),
    )
    .await;
    // Each kind asks for the other's Secret: the same refusal, the same Warning.
    let rival = format!("{ns}-rival");
    env.k8s
        .create(CLUSTER_CRS, None, cluster(&rival, "ns-pull"))
        .await
        .unwrap();
    env.create_cr(ns, "rival", json!({"secretName": "cluster-pull"}))
        .await;
    let event = |k: &Kube, kind: &str, name: &str, type_: &str, reason: &str| {
        let cluster_events = k.list(EVENTS, Some("default"));
        (k.list(EVENTS, Some(ns)).into_iter().chain(cluster_events)).any(|e| {
            e["regarding"]["kind"] == kind
                && e["regarding"]["name"] == name
                && e["type"] == type_
                && e["reason"] == reason
        })
    };
    env.wait(
        "the same Events for both kinds",
        Duration::from_secs(20),
        |k| {
            event(k, "ClusterEcrPublicPullSecret", &name, "Normal", "Written")
                && event(k, "EcrPublicPullSecret", "ns-pull", "Normal", "Written")
                && event(
                    k,
                    "ClusterEcrPublicPullSecret",
                    &rival,
                    "Warning",
                    "SecretConflict",
                )
                && event(
                    k,
                    "EcrPublicPullSecret",
                    "rival",
                    "Warning",
                    "SecretConflict",
                )
        },
    )
    .await;
    let failed = async || {
        let text = op.http_get("/metrics").await.1;
        metric(&text, r#"epps_reconcile_total{result="failed"}"#).unwrap_or(0.0) >= 2.0
    };
    assert!(
        eventually(Duration::from_secs(20), failed).await,
        "both conflicts counted"
    );
    for name in [&name, &rival] {
        env.k8s.delete(CLUSTER_CRS, None, name).await.unwrap();
    }
    env.wait("the cluster resources gone", Duration::from_secs(20), |k| {
        k.get(CLUSTER_CRS, None, &name).is_none() && k.get(CLUSTER_CRS, None, &rival).is_none()
    })
    .await;
    assert_no_token_leak(&env);
    op.stop().await;
}

/// The owner label is all that marks a cluster resource's Secrets, and whoever may patch a
/// Secret in a selected namespace can put it on theirs; the operator still removes only Secrets
/// of the names it wrote, on a sync and when the resource is deleted.
async fn a_secret_merely_labelled_as_the_resources_is_never_removed(api: Api) {
    let env = Env::start_on(api).await;
    let ns = format!("{}-selected", env.ns);
    env.create_namespace(&ns, &[("team", env.ns.as_str())])
        .await;
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    let selector = json!({"matchLabels": {"team": env.ns}});
    let cr = env
        .k8s
        .create(CLUSTER_CRS, None, cluster_cr(selector))
        .await;
    let uid = cr.unwrap()["metadata"]["uid"].as_str().unwrap().to_owned();
    env.wait("the resource's Secret", Duration::from_secs(20), |k| {
        has_secret(k, &ns) && status(k)["secretName"] == "ecr-public"
    })
    .await;
    // A tenant's own pull Secret, labelled as if the operator had written it.
    let mut theirs = secret(&ns, "theirs");
    theirs["type"] = json!("kubernetes.io/dockerconfigjson");
    theirs["data"] = json!({".dockerconfigjson": "eyJhdXRocyI6e319"});
    theirs["metadata"]["labels"] = json!({
        "app.kubernetes.io/managed-by": "ecr-public-pull-secret-operator",
        OWNER: uid,
    });
    env.k8s.create(SECRETS, Some(&ns), theirs).await.unwrap();
    // A sync that sees it: a spec change, reported once the status has caught up.
    env.k8s
        .edit(CLUSTER_CRS, None, "ecr-public", |cr| {
            cr["spec"]["secretTemplate"] = json!({"labels": {"synced": "again"}});
        })
        .await;
    env.wait("the edit synced", Duration::from_secs(20), |k| {
        let cr = k.get(CLUSTER_CRS, None, "ecr-public").unwrap_or_default();
        cr["status"]["observedGeneration"] == cr["metadata"]["generation"]
    })
    .await;
    assert!(
        env.k8s.get(SECRETS, Some(&ns), "theirs").is_some(),
        "kept by the sync"
    );
    env.k8s
        .delete(CLUSTER_CRS, None, "ecr-public")
        .await
        .unwrap();
    env.wait(
        "the resource and its Secret gone",
        Duration::from_secs(20),
        |k| k.get(CLUSTER_CRS, None, "ecr-public").is_none() && !has_secret(k, &ns),
    )
    .await;
    assert!(
        env.k8s.get(SECRETS, Some(&ns), "theirs").is_some(),
        "kept by the cleanup"
    );
    op.stop().await;
}

on_both_apis!(
    a_secret_merely_labelled_as_the_resources_is_never_removed,
    both_kinds_report_through_the_same_metrics_and_events,
    one_token_fans_out_to_every_selected_namespace_and_is_cleaned_up,
    terminating_namespaces_are_skipped_without_errors,
    a_selector_the_schema_lets_through_is_reported_and_the_secrets_are_kept_until_expiry,
);

/// The chart's expiry alert, evaluated by Prometheus's own `promtool` (built by
/// `tests/cluster/build.sh`), fires for a cluster resource's Secret near expiry: its series is in
/// `/metrics` because a live `ClusterEcrPublicPullSecret` owns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs helm and promtool: tests/cluster/build.sh, then cargo test -- --ignored real_"]
async fn real_chart_alert_fires_for_a_cluster_kind_secret_near_expiry() {
    use harness::{control_plane::ControlPlane, env::process::Scratch};
    capture_logs();
    let env = Env::start().await;
    let ns = env.ns.as_str();
    // Forty minutes: within the alert's hour from the start, and not rotated during the test.
    env.ecr.set_token_lifetime(Duration::from_secs(40 * 60));
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    let cr = json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                    "kind": "ClusterEcrPublicPullSecret", "metadata": {"name": "alerting"},
                    "spec": {"namespaces": [ns], "secretName": "cluster-pull"}});
    env.k8s.create(CLUSTER_CRS, None, cr).await.unwrap();
    let series = format!(
        r#"epps_secret_token_expiry_timestamp_seconds{{namespace="{ns}",name="cluster-pull"}}"#
    );
    let scraped = async || metric(&op.http_get("/metrics").await.1, &series).is_some();
    assert!(
        eventually(Duration::from_secs(20), scraped).await,
        "{series} in /metrics"
    );
    let expires = metric(&op.http_get("/metrics").await.1, &series).unwrap();
    let left = expires - chrono::Utc::now().timestamp() as f64;
    assert!(left > 0.0 && left < 3600.0, "expires in {left} s");
    op.stop().await;

    // The rules exactly as the chart renders them for Prometheus.
    let rendered = std::process::Command::new(ControlPlane::binary("helm"))
        .args([
            "template",
            "epps",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/charts/ecr-public-pull-secret-operator"
            ),
        ])
        .args(["--set", "metrics.prometheusRule.enabled=true"])
        .args(["--show-only", "templates/prometheusrule.yaml"])
        .output()
        .expect("run helm");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let rule: serde_yaml::Value = serde_yaml::from_slice(&rendered.stdout).expect("YAML");
    let dir = Scratch::new("promtool");
    let groups = serde_yaml::to_string(&json!({"groups": rule["spec"]["groups"]})).unwrap();
    std::fs::write(dir.0.join("rules.yaml"), groups).unwrap();
    // The scraped series, its value as seconds on promtool's clock (which starts at 0): half an
    // hour left at the start, 24 minutes at the check, past the rule's five-minute `for`.
    let description = format!(
        "The token in Secret {ns}/cluster-pull expires in 24m 0s and has not been renewed. Once \
         it expires, pulls that use it fail with 403 (or fall back to anonymous with onExpiry \
         RemoveAuth). Check the EcrPublicPullSecret's Ready condition and the operator's \
         Warning Events."
    );
    let test = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": series, "values": "1800x10"}],
            "alert_rule_test": [{
                "eval_time": "6m",
                "alertname": "EcrPublicPullSecretTokenExpiringSoon",
                "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "namespace": ns, "name": "cluster-pull"},
                    "exp_annotations": {
                        "summary": format!("ECR Public pull Secret {ns}/cluster-pull expires within an hour"),
                        "description": description,
                    },
                }],
            }],
        }],
    });
    let test_file = dir.0.join("test.yaml");
    std::fs::write(&test_file, serde_yaml::to_string(&test).unwrap()).unwrap();
    let out = std::process::Command::new(ControlPlane::binary("promtool"))
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
