//! What `kubectl apply` answers for a spec the CRD refuses: code 422, and a message naming the
//! field and what it accepts. Checked against the emulator's schema validation and, as
//! `real_api_server::…`, the real kube-apiserver's, which must agree. The CEL rule on
//! `refreshBefore` only the real server evaluates (the emulator leaves CEL out, like an API server
//! with an old CRD, which `tests/operator.rs` relies on).

use harness::{env::*, on_both_apis};
use serde_json::{Value, json};

/// Creates a resource with `spec`; the Status the API answered (422 expected).
async fn refused(env: &Env, name: &str, spec: Value) -> Value {
    let cr = json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                    "kind": "EcrPublicPullSecret",
                    "metadata": {"name": name, "namespace": env.ns},
                    "spec": spec});
    match env.k8s.create(CRS, Some(&env.ns), cr).await {
        Ok(stored) => panic!("{name}: accepted: {stored}"),
        Err(status) => status,
    }
}

fn assert_says(status: &Value, name: &str, fragments: &[&str]) {
    assert_eq!(status["code"], 422, "{name}: {status}");
    assert_eq!(status["reason"], "Invalid", "{name}: {status}");
    let message = status["message"].as_str().unwrap_or_default();
    for f in fragments {
        assert!(
            message.contains(f),
            "{name}: the message should say {f:?}: {message}"
        );
    }
}

async fn bad_specs_are_refused_with_a_message_naming_the_field(api: Api) {
    let env = Env::start_on(api).await;
    let cases: [(&str, Value, &[&str]); 5] = [
        (
            "on-expiry",
            json!({"onExpiry": "Sometimes"}),
            &[
                "spec.onExpiry",
                "Unsupported value",
                "\"Sometimes\"",
                "\"RemoveAuth\"",
                "\"Keep\"",
            ],
        ),
        (
            "registry",
            json!({"registries": ["docker.io"]}),
            &[
                "spec.registries[0]",
                "Unsupported value",
                "\"public.ecr.aws\"",
            ],
        ),
        (
            "refresh-before",
            json!({"refreshBefore": "soon"}),
            &["spec.refreshBefore", "should match"],
        ),
        (
            "role-arn",
            json!({"roleArn": "arn:aws:iam::12:role/x-long-enough"}),
            &["spec.roleArn", "should match"],
        ),
        (
            "secret-name",
            json!({"secretName": "s".repeat(254)}),
            &["spec.secretName", "Too long", "253"],
        ),
    ];
    for (name, spec, fragments) in cases {
        let status = refused(&env, name, spec).await;
        assert_says(&status, name, fragments);
        assert!(env.k8s.get(CRS, Some(&env.ns), name).is_none(), "{name}");
    }
}

/// What a tenant could use to grow the resource (and every Secret it writes) without bound.
async fn unbounded_templates_and_namespace_lists_are_refused(api: Api) {
    let env = Env::start_on(api).await;
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let long = "v".repeat(64);
    let cases: [(&str, Value, &[&str]); 2] = [
        (
            "many-labels",
            json!({"secretTemplate": {"labels": many}}),
            &["spec.secretTemplate.labels", "must have at most 64 items"],
        ),
        (
            "long-label",
            json!({"secretTemplate": {"labels": {"team": long}}}),
            &["spec.secretTemplate.labels.team", "Too long", "63"],
        ),
    ];
    for (name, spec, fragments) in cases {
        let status = refused(&env, name, spec).await;
        assert_says(&status, name, fragments);
    }
    let cluster = |name: &str, spec: Value| {
        json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
               "kind": "ClusterEcrPublicPullSecret",
               "metadata": {"name": name}, "spec": spec})
    };
    let too_many: Vec<String> = (0..1001).map(|i| format!("ns-{i}")).collect();
    for (name, spec, fragments) in [
        (
            "bad-namespace-name",
            json!({"namespaces": ["Not_A_Namespace"]}),
            &["spec.namespaces[0]", "should match"][..],
        ),
        (
            "too-many-namespaces",
            json!({"excludeNamespaces": too_many}),
            &["spec.excludeNamespaces", "must have at most 1000 items"][..],
        ),
    ] {
        let created = env.k8s.create(CLUSTER_CRS, None, cluster(name, spec)).await;
        let status = created.expect_err(name);
        assert_says(&status, name, fragments);
    }
}

on_both_apis!(
    bad_specs_are_refused_with_a_message_naming_the_field,
    unbounded_templates_and_namespace_lists_are_refused,
);

/// The operator's own label and annotation keys cannot be set through `secretTemplate`: a forged
/// owner label would make another resource's Secret look like this one's. (The emulator leaves CEL
/// out, like an old CRD; the operator strips them from the Secret then: `tests/operator.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_api_server"]
async fn real_api_server_refuses_the_operators_own_keys_in_the_template() {
    let env = Env::start_on(Api::Real).await;
    let labels = "secretTemplate.labels may not set the operator's own keys";
    let annotations = "secretTemplate.annotations may not set the operator's own keys";
    for (name, template, message) in [
        (
            "owner-label",
            json!({"labels": {"ecrpublic.pullsecrets.dev/cluster-owner": "8d6b3f0e"}}),
            labels,
        ),
        (
            "managed-by",
            json!({"labels": {"app.kubernetes.io/managed-by": "someone"}}),
            labels,
        ),
        (
            "expiry",
            json!({"annotations": {"ecrpublic.pullsecrets.dev/expires-at": "2099-01-01T00:00:00Z"}}),
            annotations,
        ),
    ] {
        let status = refused(&env, name, json!({"secretTemplate": template})).await;
        assert_says(&status, name, &["spec.secretTemplate", message]);
    }
    let ok = json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                    "kind": "EcrPublicPullSecret",
                    "metadata": {"name": "own-keys", "namespace": env.ns},
                    "spec": {"secretTemplate": {"labels": {"team": "a"},
                                                "annotations": {"pullsecrets.dev/note": "x"}}}});
    env.k8s
        .create(CRS, Some(&env.ns), ok)
        .await
        .expect("keys of one's own are accepted");
}

/// The CEL rule: `refreshBefore` must leave time before the 12 h token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_api_server"]
async fn real_api_server_refuses_refresh_before_beyond_the_token_lifetime() {
    let env = Env::start_on(Api::Real).await;
    for (name, value) in [
        ("thirteen-hours", "13h"),
        ("twelve-hours", "12h"),
        ("zero", "0s"),
    ] {
        let status = refused(&env, name, json!({"refreshBefore": value})).await;
        assert_says(
            &status,
            name,
            &[
                "spec.refreshBefore",
                "refreshBefore must be greater than 0s and shorter than the 12h token lifetime",
            ],
        );
    }
    let ok = json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                    "kind": "EcrPublicPullSecret",
                    "metadata": {"name": "eleven-hours", "namespace": env.ns},
                    "spec": {"refreshBefore": "11h59m"}});
    env.k8s
        .create(CRS, Some(&env.ns), ok)
        .await
        .expect("just under the lifetime is accepted");
}
