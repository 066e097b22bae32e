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

on_both_apis!(bad_specs_are_refused_with_a_message_naming_the_field);

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
