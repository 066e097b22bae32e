//! Private ECR registries beside ECR Public in one Secret: one AWS call per identity per source per
//! rotation, every host holding its own source's token, and a failing region reported precisely
//! while the other entries stay fresh. The fake ECR injects the regional faults; moto (the
//! third-party emulator) answers the same private call in `identity.rs`.

use std::time::Duration;

use harness::{
    ecr::{ACCOUNT, EcrFault},
    env::*,
    on_both_apis,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn west_host() -> String {
    format!("{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com")
}

fn west_dual_stack_host() -> String {
    format!("{ACCOUNT}.dkr-ecr.us-west-2.on.aws")
}

/// eu-west-1 names no account: the one in the token's proxyEndpoint is written.
fn ireland_host() -> String {
    format!("{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com")
}

/// ECR Public and two private regions.
fn mixed_spec() -> Value {
    json!({
        "privateRegistries": [
            {"region": "us-west-2", "registryIds": [ACCOUNT], "endpoints": ["Standard", "DualStack"]},
            {"region": "eu-west-1"},
        ],
    })
}

/// The password the Secret holds for `host`, if it has an entry for it.
fn password_at(env: &Env, ns: &str, name: &str, host: &str) -> Option<String> {
    let secret = env.k8s.get(SECRETS, Some(ns), name)?;
    let config = docker_config(&secret);
    config["auths"][host]["password"]
        .as_str()
        .map(str::to_owned)
}

/// The Ready condition's status, reason and message.
fn ready_of(env: &Env, ns: &str, name: &str) -> Option<(String, String, String)> {
    let cr = env.k8s.get(CRS, Some(ns), name)?;
    let c = cr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((s("status"), s("reason"), s("message")))
}

fn calls(env: &Env, service: &str, region: &str) -> usize {
    let by = env.ecr.calls_by_source();
    by.get(&(service.to_owned(), region.to_owned()))
        .copied()
        .unwrap_or_default()
}

async fn resources_on_one_identity_share_one_call_per_region_and_one_secret_each(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let ns = env.ns.as_str();
    for i in 0..5 {
        env.create_cr(ns, &format!("mixed-{i}"), mixed_spec()).await;
    }
    env.create_cr(ns, "private-only", json!({"registries": [], "privateRegistries": [{"region": "us-west-2", "registryIds": [ACCOUNT]}]}))
        .await;
    let op = env.start_operator(&[]).await;
    let names: Vec<String> = (0..5)
        .map(|i| format!("mixed-{i}"))
        .chain(["private-only".to_owned()])
        .collect();
    env.wait("every resource Ready", T, |k| {
        names.iter().all(|n| cr_ready(k, ns, n))
    })
    .await;

    // One call per source for six resources on the operator's identity.
    let by_source = env.ecr.calls_by_source();
    assert_eq!(calls(&env, "ecr-public", "us-east-1"), 1, "{by_source:?}");
    assert_eq!(calls(&env, "ecr", "us-west-2"), 1, "{by_source:?}");
    assert_eq!(calls(&env, "ecr", "eu-west-1"), 1, "{by_source:?}");
    assert_eq!(env.ecr.calls(), 3, "{by_source:?}");
    assert_eq!(env.k8s.count("patch", SECRETS), 6, "one write per Secret");

    // Each host holds its own source's token.
    let public = env.ecr.latest_password("ecr-public", "us-east-1");
    let west = env.ecr.latest_password("ecr", "us-west-2");
    let ireland = env.ecr.latest_password("ecr", "eu-west-1");
    for i in 0..5 {
        let name = format!("mixed-{i}");
        let at = |host: &str| password_at(&env, ns, &name, host);
        assert_eq!(at("public.ecr.aws"), public);
        assert_eq!(at(&west_host()), west);
        assert_eq!(at(&west_dual_stack_host()), west);
        assert_eq!(at(&ireland_host()), ireland);
        let secret = env.k8s.get(SECRETS, Some(ns), &name).unwrap();
        assert_eq!(
            docker_config(&secret)["auths"].as_object().unwrap().len(),
            4
        );
    }
    let only = env.k8s.get(SECRETS, Some(ns), "private-only").unwrap();
    let hosts: Vec<String> = docker_config(&only)["auths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        hosts,
        [west_host()],
        "no ECR Public entry when registries is []"
    );

    // A restart with fresh Secrets costs nothing.
    op.stop().await;
    let (calls_before, writes_before) = (env.ecr.calls(), env.k8s.count("patch", SECRETS));
    let op = env.start_operator(&[]).await;
    let reconciled = async || {
        let (_, text) = op.http_get("/metrics").await;
        metric(&text, r#"epps_reconcile_total{result="fresh"}"#).unwrap_or_default() >= 6.0
    };
    assert!(eventually(T, reconciled).await, "six fresh reconciles");
    assert_eq!(env.ecr.calls(), calls_before, "no AWS call on a restart");
    assert_eq!(env.k8s.count("patch", SECRETS), writes_before, "no write");
    op.stop().await;
    assert_no_token_leak(&env);
}

async fn a_failing_region_is_named_while_the_other_entries_rotate(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let ns = env.ns.as_str();
    // 16 s tokens rotated 8 s before expiry: a rotation every ~8 s.
    env.ecr.set_token_lifetime(Duration::from_secs(16));
    let op = env.start_operator(&[]).await;
    let mut spec = mixed_spec();
    spec["refreshBefore"] = json!("8s");
    env.create_cr(ns, "mixed", spec).await;
    env.wait("Ready", T, |k| cr_ready(k, ns, "mixed")).await;
    let at = |host: &str| password_at(&env, ns, "mixed", host);
    let ireland_before = at(&ireland_host()).expect("eu-west-1 entry");

    env.ecr
        .set_source_fault("ecr", "eu-west-1", Some(EcrFault::AccessDenied));
    let public_before = at("public.ecr.aws");
    // The next rotation: ECR Public and us-west-2 are renewed, eu-west-1 is named as failing and
    // its still-valid entry kept.
    env.wait("rotation with eu-west-1 failing", T, |_| {
        let failing = ready_of(&env, ns, "mixed").is_some_and(|(s, r, m)| {
            s == "False" && r == "AccessDenied" && m.contains("ECR eu-west-1")
        });
        failing && at("public.ecr.aws") != public_before
    })
    .await;
    let (_, _, message) = ready_of(&env, ns, "mixed").unwrap();
    assert!(message.contains("ecr:GetAuthorizationToken"), "{message}");
    assert!(!message.contains("ECR us-west-2:"), "{message}");
    assert!(!message.contains("ECR Public:"), "{message}");
    assert_eq!(
        at("public.ecr.aws"),
        env.ecr.latest_password("ecr-public", "us-east-1")
    );
    assert_eq!(
        at(&west_host()),
        env.ecr.latest_password("ecr", "us-west-2")
    );

    // Until its token expires, eu-west-1 keeps it; then that entry alone is removed, while the
    // others keep rotating. Checked on every change of the Secret along the way.
    let mut rotations_seen = 0;
    let mut last_public = at("public.ecr.aws");
    let removed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let secret = env.k8s.get(SECRETS, Some(ns), "mixed").unwrap();
            let annotations = &secret["metadata"]["annotations"];
            let sources: Value = serde_json::from_str(
                annotations["ecrpublic.pullsecrets.dev/sources"]
                    .as_str()
                    .unwrap_or("{}"),
            )
            .unwrap();
            let now = chrono::Utc::now();
            // Never an expired entry (onExpiry: RemoveAuth): a second of grace for the write.
            for (source, times) in sources.as_object().unwrap() {
                let expires: chrono::DateTime<chrono::Utc> =
                    times["expiresAt"].as_str().unwrap().parse().unwrap();
                assert!(
                    expires + chrono::Duration::seconds(2) > now,
                    "{source} expired at {expires}, still in the Secret at {now}"
                );
            }
            let public = at("public.ecr.aws");
            assert!(public.is_some(), "the ECR Public entry stays");
            if public != last_public {
                rotations_seen += 1;
                last_public = public;
            }
            match at(&ireland_host()) {
                Some(p) => assert_eq!(p, ireland_before, "no other eu-west-1 token appeared"),
                None => return,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(removed.is_ok(), "the expired eu-west-1 entry was removed");
    assert!(at(&west_host()).is_some(), "us-west-2 stays");
    // The status follows the write once the region's call has answered.
    env.wait("Ready says the entry is gone", T, |_| {
        ready_of(&env, ns, "mixed").is_some_and(|(s, r, m)| {
            (s.as_str(), r.as_str()) == ("False", "AccessDenied")
                && m.contains("holds no token for its registries")
        })
    })
    .await;

    // eu-west-1 comes back: one call for it, Ready again, its entry written.
    let failed_calls = calls(&env, "ecr", "eu-west-1");
    env.ecr.set_source_fault("ecr", "eu-west-1", None);
    env.wait("Ready again", Duration::from_secs(60), |k| {
        cr_ready(k, ns, "mixed")
    })
    .await;
    assert_eq!(
        at(&ireland_host()),
        env.ecr.latest_password("ecr", "eu-west-1")
    );
    assert!(calls(&env, "ecr", "eu-west-1") > failed_calls);
    let (_, text) = op.http_get("/metrics").await;
    let denied = r#"epps_token_fetch_total{service="ecr",region="eu-west-1",result="error",reason="AccessDenied"}"#;
    assert!(metric(&text, denied).unwrap_or_default() >= 1.0, "{text}");
    assert!(
        rotations_seen >= 1,
        "ECR Public rotated while eu-west-1 failed"
    );
    op.stop().await;
    assert_no_token_leak(&env);
}

async fn a_cluster_resource_writes_the_mixed_secret_in_every_namespace_from_one_call_each(
    api: Api,
) {
    capture_logs();
    let env = Env::start_on(api).await;
    let label = [("team", env.ns.as_str())];
    let namespaces: Vec<String> = (0..20).map(|i| format!("{}-m{i}", env.ns)).collect();
    for ns in &namespaces {
        env.create_namespace(ns, &label).await;
    }
    let op = env.start_operator(&["--cluster-pull-secrets"]).await;
    let mut spec = mixed_spec();
    spec["namespaceSelector"] = json!({"matchLabels": {"team": env.ns}});
    let cr = json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                    "kind": "ClusterEcrPublicPullSecret",
                    "metadata": {"name": "mixed"}, "spec": spec});
    env.k8s.create(CLUSTER_CRS, None, cr).await.unwrap();
    env.wait("every namespace holds the mixed Secret", T, |k| {
        namespaces.iter().all(|ns| {
            k.get(SECRETS, Some(ns), "mixed").is_some_and(|s| {
                docker_config(&s)["auths"]
                    .as_object()
                    .is_some_and(|a| a.len() == 4)
            })
        })
    })
    .await;
    let by_source = env.ecr.calls_by_source();
    assert_eq!(env.ecr.calls(), 3, "one call per source: {by_source:?}");
    for ns in &namespaces {
        assert_eq!(
            password_at(&env, ns, "mixed", &ireland_host()),
            env.ecr.latest_password("ecr", "eu-west-1")
        );
    }
    op.stop().await;
    assert_no_token_leak(&env);
}

/// `regions` regions of nine accounts each.
fn many_hosts(regions: usize) -> Value {
    let ids: Vec<String> = (1..=9).map(|i| format!("{i:012}")).collect();
    let regions: Vec<Value> = (1..=regions)
        .map(|r| json!({"region": format!("eu-south-{r}"), "registryIds": ids}))
        .collect();
    json!({"privateRegistries": regions})
}

async fn more_hosts_than_a_secret_holds_are_refused_before_any_aws_call(api: Api) {
    capture_logs();
    let env = Env::start_on(api).await;
    let ns = env.ns.as_str();
    let op = env.start_operator(&[]).await;
    // 1 + 8 × 9 = 73 hosts: the schema lets it through, the operator refuses it.
    env.create_cr(ns, "many", many_hosts(8)).await;
    env.wait("InvalidSpec", T, |k| {
        cr_reason(k, ns, "many").as_deref() == Some("InvalidSpec")
    })
    .await;
    let (_, _, message) = ready_of(&env, ns, "many").unwrap();
    assert!(message.contains("73 registry hosts"), "{message}");
    assert_eq!(env.ecr.calls(), 0, "refused before any AWS call");
    assert!(env.k8s.get(SECRETS, Some(ns), "many").is_none());

    // One region fewer: 64 hosts, written from one call per source.
    let mut cr = env.k8s.get(CRS, Some(ns), "many").unwrap();
    cr["spec"]["privateRegistries"] = many_hosts(7)["privateRegistries"].clone();
    env.k8s.replace(CRS, Some(ns), cr).await.unwrap();
    env.wait("Ready", T, |k| cr_ready(k, ns, "many")).await;
    let secret = env.k8s.get(SECRETS, Some(ns), "many").unwrap();
    let hosts = docker_config(&secret)["auths"].as_object().unwrap().len();
    assert_eq!(hosts, 64);
    assert_eq!(env.ecr.calls(), 8, "ECR Public and seven regions");
    op.stop().await;
    assert_no_token_leak(&env);
}

on_both_apis!(
    more_hosts_than_a_secret_holds_are_refused_before_any_aws_call,
    a_cluster_resource_writes_the_mixed_secret_in_every_namespace_from_one_call_each,
    resources_on_one_identity_share_one_call_per_region_and_one_secret_each,
    a_failing_region_is_named_while_the_other_entries_rotate,
);
