//! Every identity path against a real STS emulator (moto), the fake ECR Public and the Kubernetes
//! API emulator: IRSA web identity (the real binary, as in a pod), EKS Pod Identity, roles assumed
//! from the operator's identity, per-tenant ServiceAccounts, and each failure a user can fix. The
//! TokenRequest path also runs on the real kube-apiserver (`real_api_server::…`).

use std::{path::Path, time::Duration};

use aws_credential_types::Credentials;
use base64::Engine as _;
use harness::{
    container_credentials::ContainerCredentials,
    env::{process::*, *},
    moto::Moto,
    on_both_apis,
    sts::{Sts, StsFault},
};
use serde_json::{Value, json};

/// The operator binary cargo built for this test run.
const BIN: &str = env!("CARGO_BIN_EXE_ecr-public-pull-secret-operator");

const ACCOUNT: &str = "123456789012";
const ALLOW: &str = "arn:aws:iam::123456789012:role/ecr-public-*";

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// moto from the pinned venv (installed on first use, like the chart tools); fails, never skips.
async fn moto() -> Moto {
    let tools = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("chart-tools");
    let bin = harness::moto::install(&tools).expect("install moto from PyPI");
    Moto::start(bin).await.expect("start moto")
}

/// moto behind the fault-injecting proxy.
async fn sts() -> (Moto, Sts) {
    let moto = moto().await;
    let proxy = Sts::proxy(&moto.url()).await.expect("start STS proxy");
    (moto, proxy)
}

fn endpoints(env: &Env, sts: &str) -> Endpoints {
    Endpoints {
        ecr_public: env.ecr.url(),
        ecr: env.ecr.url(),
        sts: sts.to_owned(),
    }
}

/// The operator's own identity: static keys (standing in for IRSA, tested with the binary below).
fn operator_keys() -> Credentials {
    Credentials::new("AKIDOPERATOR", "secret", None, None, "test")
}

fn password(env: &Env, ns: &str, name: &str) -> String {
    let secret = env.k8s.get(SECRETS, Some(ns), name).expect("secret");
    docker_config(&secret)["auths"]["public.ecr.aws"]["password"]
        .as_str()
        .expect("password")
        .to_owned()
}

/// The access keys that signed ECR calls, other than the operator's own.
fn assumed_keys(env: &Env) -> Vec<(String, usize)> {
    env.ecr
        .calls_by_access_key()
        .into_iter()
        .filter(|(k, _)| k != "AKIDOPERATOR")
        .collect()
}

async fn service_account(env: &Env, ns: &str, name: &str, role_arn: Option<&str>) {
    let mut meta = json!({"name": name, "namespace": ns});
    if let Some(r) = role_arn {
        meta["annotations"] = json!({"eks.amazonaws.com/role-arn": r});
    }
    env.k8s
        .create(
            "serviceaccounts",
            Some(ns),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
        )
        .await
        .expect("create ServiceAccount");
}

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

async fn role_arn_is_assumed_from_the_operator_identity_once_per_identity(api: Api) {
    let env = Env::start_on(api).await;
    let moto = moto().await;
    let sdk = sdk_config_with(endpoints(&env, &moto.url()), operator_keys());
    let op = env
        .start_operator_with_sdk(&sdk, &["--allowed-role-arns", ALLOW])
        .await;
    let team_a = role("ecr-public-team-a");
    let ns = env.ns.as_str();
    for name in ["a1", "a2", "a3"] {
        env.create_cr(ns, name, json!({"roleArn": team_a})).await;
    }
    env.create_cr(ns, "own", json!({})).await;
    env.wait("all Ready", Duration::from_secs(20), |k| {
        ["a1", "a2", "a3", "own"].iter().all(|n| cr_ready(k, ns, n))
    })
    .await;

    // One AssumeRole, one ECR call per identity, signed with the credentials moto issued.
    let assumed = moto.requests("AssumeRole").await.unwrap();
    assert_eq!(assumed.len(), 1, "{assumed:?}");
    assert_eq!(assumed[0]["RoleArn"], team_a);
    assert_eq!(env.ecr.calls_by_access_key()["AKIDOPERATOR"], 1);
    let keys = assumed_keys(&env);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].1, 1, "one ECR call for three resources on one role");
    let arn = moto.caller_arn(&keys[0].0).await.unwrap();
    assert!(
        arn.starts_with("arn:aws:sts::123456789012:assumed-role/ecr-public-team-a/"),
        "{arn}"
    );
    assert_eq!(password(&env, ns, "a1"), password(&env, ns, "a3"));
    assert_ne!(password(&env, ns, "a1"), password(&env, ns, "own"));
    assert_no_token_leak(&env);
    op.stop().await;
}

/// Private ECR as moto (the third-party emulator) serves it: the call is made in the region
/// asked for, as the resource's role. moto's tokens carry an `expiresAt` of 2015, so the
/// operator must refuse them and say so for that region alone, while ECR Public's entry (from the
/// fake) is written: an expired token is worse than none.
async fn a_private_region_is_called_as_the_role_and_an_expired_token_refused(api: Api) {
    let env = Env::start_on(api).await;
    let moto = moto().await;
    let endpoints = Endpoints {
        ecr: moto.url(),
        ..endpoints(&env, &moto.url())
    };
    let sdk = sdk_config_with(endpoints, operator_keys());
    let op = env
        .start_operator_with_sdk(&sdk, &["--allowed-role-arns", ALLOW])
        .await;
    let ns = env.ns.as_str();
    let spec = json!({
        "roleArn": role("ecr-public-team-a"),
        "privateRegistries": [{"region": "eu-west-1"}],
    });
    env.create_cr(ns, "mixed", spec).await;
    env.wait("eu-west-1 refused", Duration::from_secs(20), |k| {
        cr_reason(k, ns, "mixed").as_deref() == Some("InvalidToken")
    })
    .await;
    let message = cr_message(&env.k8s, ns, "mixed");
    assert!(message.starts_with("ECR eu-west-1: "), "{message}");
    assert!(message.contains("is not in the future"), "{message}");
    assert!(!message.contains("ECR Public:"), "{message}");

    // One call to moto, signed for eu-west-1/ecr with the credentials moto issued for the role.
    let scopes = moto
        .json_requests("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
        .await
        .unwrap();
    assert_eq!(scopes.len(), 1, "{scopes:?}");
    let key = scopes[0].split('/').next().unwrap();
    assert!(scopes[0].ends_with("/eu-west-1/ecr"), "{scopes:?}");
    let arn = moto.caller_arn(key).await.unwrap();
    assert!(arn.contains(":assumed-role/ecr-public-team-a/"), "{arn}");

    // ECR Public's entry is written; nothing for eu-west-1.
    let secret = env.k8s.get(SECRETS, Some(ns), "mixed").expect("Secret");
    let auths = docker_config(&secret)["auths"].clone();
    let hosts: Vec<&String> = auths.as_object().unwrap().keys().collect();
    assert_eq!(hosts, ["public.ecr.aws"]);
    assert_no_token_leak(&env);
    op.stop().await;
}

/// TokenRequest for `spec.serviceAccountName`: on a real API server the token is a real
/// ServiceAccount JWT for the `sts.amazonaws.com` audience.
async fn service_account_token_is_exchanged_for_the_annotated_role(api: Api) {
    let env = Env::start_on(api).await;
    let moto = moto().await;
    let sdk = sdk_config_with(endpoints(&env, &moto.url()), operator_keys());
    let op = env
        .start_operator_with_sdk(&sdk, &["--allowed-role-arns", ALLOW])
        .await;
    let team_b = role("ecr-public-team-b");
    let team = env.ns.as_str();
    service_account(&env, team, "puller", Some(&team_b)).await;
    env.create_cr(team, "b1", json!({"serviceAccountName": "puller"}))
        .await;
    env.create_cr(team, "b2", json!({"serviceAccountName": "puller"}))
        .await;
    env.wait("both Ready", Duration::from_secs(20), |k| {
        cr_ready(k, team, "b1") && cr_ready(k, team, "b2")
    })
    .await;

    let exchanged = moto.requests("AssumeRoleWithWebIdentity").await.unwrap();
    assert_eq!(exchanged.len(), 1, "one exchange for two resources");
    assert_eq!(exchanged[0]["RoleArn"], team_b);
    let claims = jwt_claims(&exchanged[0]["WebIdentityToken"]);
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{team}:puller")
    );
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    let keys = assumed_keys(&env);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].1, 1);
    let arn = moto.caller_arn(&keys[0].0).await.unwrap();
    assert!(arn.contains(":assumed-role/ecr-public-team-b/"), "{arn}");
    assert!(
        !env.ecr.calls_by_access_key().contains_key("AKIDOPERATOR"),
        "the operator's own identity was not used"
    );
    assert_eq!(password(&env, team, "b1"), password(&env, team, "b2"));
    op.stop().await;
}

/// A role is allowed for a namespace, not for the cluster: a pattern with `{namespace}` gives each
/// namespace its own role, rules give named or labelled namespaces theirs, and no namespace can
/// borrow another's.
async fn a_namespace_uses_only_the_roles_allowed_for_it(api: Api) {
    let env = Env::start_on(api).await;
    let moto = moto().await;
    let sdk = sdk_config_with(endpoints(&env, &moto.url()), operator_keys());
    let own = env.ns.clone();
    let prod = format!("{own}-prod");
    env.create_namespace(&prod, &[("tier", "prod")]).await;
    let rules = json!([
        {"namespaces": [own], "roleArns": [role("shared-puller")]},
        {"namespaceSelector": {"matchLabels": {"tier": "prod"}}, "roleArns": [role("prod-puller")]},
    ]);
    let per_namespace = role("ecr-public-{namespace}");
    let platform = role("platform-puller");
    let flags = [
        "--allowed-role-arns",
        &per_namespace,
        "--role-rules",
        &rules.to_string(),
        "--cluster-pull-secrets",
        "--cluster-allowed-role-arns",
        &platform,
    ];
    let op = env.start_operator_with_sdk(&sdk, &flags).await;
    let cases = [
        (&own, "own", role(&format!("ecr-public-{own}")), true),
        (
            &own,
            "neighbours",
            role(&format!("ecr-public-{prod}")),
            false,
        ),
        (&own, "by-name", role("shared-puller"), true),
        (&own, "by-label", role("prod-puller"), false),
        (&prod, "labelled", role("prod-puller"), true),
        (&prod, "unnamed", role("shared-puller"), false),
    ];
    for (ns, name, role_arn, _) in &cases {
        env.create_cr(ns, name, json!({"roleArn": role_arn})).await;
    }
    // A cluster resource has its own list: a namespace's pattern does not reach it.
    for (name, role_arn) in [
        ("cluster-platform", &platform),
        ("cluster-own", &cases[0].2),
    ] {
        let cr = json!({"apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
                        "kind": "ClusterEcrPublicPullSecret", "metadata": {"name": name},
                        "spec": {"namespaces": [own], "roleArn": role_arn}});
        env.k8s.create(CLUSTER_CRS, None, cr).await.expect(name);
    }
    for (ns, name, _, allowed) in &cases {
        let reason = if *allowed {
            "TokenValid"
        } else {
            "RoleNotAllowed"
        };
        env.wait(
            &format!("{ns}/{name}: {reason}"),
            Duration::from_secs(20),
            |k| cr_reason(k, ns, name).as_deref() == Some(reason),
        )
        .await;
    }
    let cluster_reason = |k: &Kube, name: &str| {
        let cr = k.get(CLUSTER_CRS, None, name).unwrap_or_default();
        ready(&cr).map(|(_, reason)| reason)
    };
    env.wait(
        "cluster resources: their own list",
        Duration::from_secs(20),
        |k| {
            cluster_reason(k, "cluster-platform").as_deref() == Some("TokenValid")
                && cluster_reason(k, "cluster-own").as_deref() == Some("RoleNotAllowed")
        },
    )
    .await;
    let cluster = env.k8s.get(CLUSTER_CRS, None, "cluster-own").unwrap();
    let message = cluster["status"]["conditions"][0]["message"].to_string();
    assert!(
        message.contains("identity.clusterAllowedRoleArns"),
        "{message}"
    );
    // Told how to allow it, never what other namespaces may use.
    let message = cr_message(&env.k8s, &own, "neighbours");
    assert!(message.contains(&format!("namespace {own}")), "{message}");
    for other in ["shared-puller", "prod-puller", "{namespace}"] {
        let other = other.replace("{namespace}", "ecr-public-{namespace}");
        assert!(!message.contains(&other), "{message}");
    }
    let mut assumed: Vec<String> = (moto.requests("AssumeRole").await.unwrap().iter())
        .map(|r| r["RoleArn"].clone())
        .collect();
    assumed.sort();
    let mut expected = [
        role("prod-puller"),
        role("shared-puller"),
        role(&format!("ecr-public-{own}")),
        platform.clone(),
    ];
    expected.sort();
    assert_eq!(assumed, expected, "only allowed roles are ever assumed");
    assert_no_token_leak(&env);
    op.stop().await;
}

/// A tenant cycling through roles is held to `--max-identities-per-namespace` at a time, and
/// what a deleted resource's identity held no longer counts.
async fn a_namespace_is_held_to_its_identity_limit(api: Api) {
    let env = Env::start_on(api).await;
    let moto = moto().await;
    let sdk = sdk_config_with(endpoints(&env, &moto.url()), operator_keys());
    let flags = [
        "--allowed-role-arns",
        ALLOW,
        "--max-identities-per-namespace",
        "2",
    ];
    let op = env.start_operator_with_sdk(&sdk, &flags).await;
    let ns = env.ns.as_str();
    for (name, role_name) in [("r1", "ecr-public-1"), ("r2", "ecr-public-2"), ("own", "")] {
        let spec = match role_name {
            "" => json!({}),
            r => json!({"roleArn": role(r)}),
        };
        env.create_cr(ns, name, spec).await;
    }
    env.wait(
        "two roles and the operator's identity",
        Duration::from_secs(20),
        |k| ["r1", "r2", "own"].iter().all(|n| cr_ready(k, ns, n)),
    )
    .await;
    env.create_cr(ns, "r3", json!({"roleArn": role("ecr-public-3")}))
        .await;
    env.wait(
        "a third role is one too many",
        Duration::from_secs(20),
        |k| cr_reason(k, ns, "r3").as_deref() == Some("TooManyIdentities"),
    )
    .await;
    let message = cr_message(&env.k8s, ns, "r3");
    assert!(
        message.contains("--max-identities-per-namespace"),
        "{message}"
    );
    // Another resource on a role already in use costs nothing more.
    env.create_cr(ns, "r1-too", json!({"roleArn": role("ecr-public-1")}))
        .await;
    env.wait("a shared role", Duration::from_secs(20), |k| {
        cr_ready(k, ns, "r1-too")
    })
    .await;
    env.k8s.delete(CRS, Some(ns), "r2").await.unwrap();
    env.wait("r2's place taken by r3", Duration::from_secs(30), |k| {
        cr_ready(k, ns, "r3")
    })
    .await;
    assert_no_token_leak(&env);
    op.stop().await;
}

async fn each_identity_failure_names_its_fix_and_recovers(api: Api) {
    let env = Env::start_on(api).await;
    let (_moto, proxy) = sts().await;
    let sdk = sdk_config_with(endpoints(&env, &proxy.url()), operator_keys());
    let op = env
        .start_operator_with_sdk(&sdk, &["--allowed-role-arns", ALLOW])
        .await;
    let t = env.ns.as_str();
    let other = format!("{t}-other");
    env.create_namespace(&other, &[]).await;
    service_account(&env, t, "bare", None).await;
    service_account(&env, t, "denied", Some(&role("ecr-public-denied"))).await;
    service_account(&env, &other, "elsewhere", Some(&role("ecr-public-x"))).await;
    proxy.set_fault("AssumeRole", StsFault::AccessDenied);
    proxy.set_fault("AssumeRoleWithWebIdentity", StsFault::InvalidIdentityToken);
    let cases = [
        (
            "not-allowed",
            json!({"roleArn": role("admin")}),
            "RoleNotAllowed",
        ),
        (
            "missing",
            json!({"serviceAccountName": "nobody"}),
            "ServiceAccountMissing",
        ),
        // Only the resource's own namespace is ever looked in.
        (
            "other-ns",
            json!({"serviceAccountName": "elsewhere"}),
            "ServiceAccountMissing",
        ),
        (
            "bare",
            json!({"serviceAccountName": "bare"}),
            "ServiceAccountNotAnnotated",
        ),
        (
            "assume-denied",
            json!({"roleArn": role("ecr-public-r")}),
            "AssumeRoleDenied",
        ),
        (
            "web-denied",
            json!({"serviceAccountName": "denied"}),
            "WebIdentityDenied",
        ),
    ];
    for (name, spec, _) in &cases {
        env.create_cr(t, name, spec.clone()).await;
    }
    for (name, _, reason) in &cases {
        env.wait(&format!("{name}: {reason}"), Duration::from_secs(20), |k| {
            cr_reason(k, t, name).as_deref() == Some(reason)
        })
        .await;
    }
    let message = |name: &str| cr_message(&env.k8s, t, name);
    // How to allow it, not what is allowed: that would list other tenants' roles.
    assert!(!message("not-allowed").contains(ALLOW));
    assert!(message("not-allowed").contains("identity.allowedRoleArns"));
    assert!(message("not-allowed").contains(&format!("namespace {t}")));
    assert!(message("bare").contains("eks.amazonaws.com/role-arn"));
    assert!(message("assume-denied").contains("sts:AssumeRole"));
    assert!(message("web-denied").contains("system:serviceaccount:"));
    assert_eq!(env.ecr.calls(), 0, "no ECR call without credentials");

    proxy.clear_fault("AssumeRole");
    proxy.clear_fault("AssumeRoleWithWebIdentity");
    env.wait("STS failures recover", Duration::from_secs(20), |k| {
        cr_ready(k, t, "assume-denied") && cr_ready(k, t, "web-denied")
    })
    .await;
    assert_no_token_leak(&env);
    op.stop().await;
}

/// Pod environment for IRSA as the EKS webhook injects it, with both AWS endpoints on loopback.
fn irsa_env<'a>(env: &'a Env, sts: &'a str, token_file: &'a str) -> Vec<(&'a str, String)> {
    vec![
        ("AWS_ROLE_ARN", role("ecr-public-operator")),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_owned()),
        ("AWS_ROLE_SESSION_NAME", "operator-pod".to_owned()),
        ("AWS_ENDPOINT_URL_STS", sts.to_owned()),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", env.ecr.url()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_binary_rereads_the_rotated_token_file_and_refreshes_credentials_before_expiry() {
    let env = Env::start().await;
    let (moto, proxy) = sts().await;
    // Short STS sessions and short ECR tokens, so both are renewed many times in a few seconds.
    proxy.set_credentials_lifetime(Duration::from_secs(6));
    env.ecr.set_token_lifetime(Duration::from_secs(4));
    let dir = Scratch::new("irsa");
    let file = dir.0.join("token");
    let sts_url = proxy.url();
    let mut vars = irsa_env(&env, &sts_url, file.to_str().unwrap());
    vars.push(("AWS_CREDENTIALS_REFRESH_BEFORE", "3s".to_owned()));
    let _child = spawn_without_keys(BIN, &env, &dir.0, "op", &borrowed(&vars));

    // No file yet (volume not mounted): the reason names the file.
    env.create_cr("default", "irsa", json!({"refreshBefore": "2s"}))
        .await;
    let unreadable = env
        .k8s
        .wait_until(Duration::from_secs(30), |k| {
            cr_reason(k, "default", "irsa").as_deref() == Some("TokenFileUnreadable")
        })
        .await;
    let message = cr_message(&env.k8s, "default", "irsa");
    assert!(unreadable, "{message}");
    assert!(message.contains(file.to_str().unwrap()), "{message}");

    std::fs::write(&file, "projected-token-1").unwrap();
    env.wait("Ready with IRSA", Duration::from_secs(30), |k| {
        cr_ready(k, "default", "irsa")
    })
    .await;
    let first_key = env.ecr.call_log()[0].access_key.clone();
    let arn = moto.caller_arn(&first_key).await.unwrap();
    assert!(
        arn.starts_with("arn:aws:sts::123456789012:assumed-role/ecr-public-operator/operator-pod"),
        "ECR was called with the credentials moto issued for the web identity: {arn}"
    );

    // The kubelet rotates the projected token: the next credentials refresh sends the new one.
    std::fs::write(&file, "projected-token-2").unwrap();
    let sent_new = async || {
        moto.requests("AssumeRoleWithWebIdentity")
            .await
            .unwrap()
            .iter()
            .any(|r| r["WebIdentityToken"] == "projected-token-2")
    };
    assert!(eventually(Duration::from_secs(30), sent_new).await);
    let keys_in_use = async || env.ecr.calls_by_access_key().len() >= 4;
    assert!(
        eventually(Duration::from_secs(30), keys_in_use).await,
        "ECR calls were signed with refreshed credentials: {:?}",
        env.ecr.calls_by_access_key()
    );
    // Never signed with expired credentials: each was replaced before its expiry.
    let expiry: std::collections::BTreeMap<_, _> = proxy.issued_credentials().into_iter().collect();
    for call in env.ecr.call_log() {
        let expires = expiry.get(&call.access_key).expect("credentials from STS");
        assert!(
            call.at < *expires,
            "ECR call at {} with credentials expired at {expires}",
            call.at
        );
    }
    for request in moto.requests("AssumeRoleWithWebIdentity").await.unwrap() {
        assert_eq!(request["RoleArn"], role("ecr-public-operator"));
    }
    let log = std::fs::read_to_string(dir.0.join("op.log")).unwrap();
    assert!(
        !log.contains("projected-token-"),
        "web identity token in logs"
    );
    for pw in env.ecr.issued_passwords() {
        assert!(!log.contains(&pw), "ECR password in logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_binary_uses_the_container_credentials_endpoint() {
    let env = Env::start().await;
    let expires = chrono::Utc::now() + chrono::Duration::hours(6);
    let agent =
        ContainerCredentials::start("ASIAPODIDENTITY", "pod-secret", "pod-session", expires)
            .await
            .unwrap();
    let dir = Scratch::new("pod-identity");
    let (uri, token_file, ecr) = (agent.full_uri(), agent.token_file(), env.ecr.url());
    let vars = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", ecr.as_str()),
    ];
    let _child = spawn_without_keys(BIN, &env, &dir.0, "op", &vars);
    env.create_cr("default", "pod-identity", json!({})).await;
    env.wait("Ready with Pod Identity", Duration::from_secs(30), |k| {
        cr_ready(k, "default", "pod-identity")
    })
    .await;
    assert_eq!(
        env.ecr
            .calls_by_access_key()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("ASIAPODIDENTITY".to_owned(), 1)]
    );
    assert!(agent.requests() >= 1);
    assert_eq!(agent.rejected(), 0, "the authorization token was sent");
}

/// `token` with pod-like IRSA environment; returns (exit code, stdout, stderr).
async fn token_command(env: &Env, sts: &str, file: &Path, args: &[&str]) -> (i32, String, String) {
    let vars = irsa_env(env, sts, file.to_str().unwrap());
    let out = tokio::process::Command::new(BIN)
        .arg("token")
        .args(args)
        .env_clear()
        .envs(vars)
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .await
        .expect("run token subcommand");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subcommand_explains_the_identity_and_hides_the_token() {
    let env = Env::start().await;
    let (_moto, proxy) = sts().await;
    let dir = Scratch::new("token-cmd");
    let file = dir.0.join("token");
    std::fs::write(&file, "projected").unwrap();

    let (code, out, err) = token_command(&env, &proxy.url(), &file, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("IRSA web identity"), "{out}");
    assert!(
        out.contains("arn:aws:sts::123456789012:assumed-role/ecr-public-operator/"),
        "{out}"
    );
    assert!(out.contains("GetAuthorizationToken:  ok"), "{out}");
    assert!(out.contains("token expires at:"), "{out}");
    let issued = env.ecr.issued_passwords();
    assert_eq!(issued.len(), 1);
    assert!(!out.contains(&issued[0]) && !out.contains(&base64_auth(&issued[0])));

    let (code, out, _) = token_command(&env, &proxy.url(), &file, &["--show-token"]).await;
    assert_eq!(code, 0);
    let issued = env.ecr.issued_passwords();
    assert!(
        out.contains(&base64_auth(&issued[1])),
        "--show-token prints it"
    );

    // A role the operator may not assume: non-zero exit, the reason and the fix on stderr.
    proxy.set_fault("AssumeRole", StsFault::AccessDenied);
    let team = role("ecr-public-team-a");
    let (code, out, err) = token_command(&env, &proxy.url(), &file, &["--role-arn", &team]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("[AssumeRoleDenied]"), "{err}");
    assert!(
        err.contains("sts:AssumeRole on the requested role"),
        "{err}"
    );

    // No token file: the file is named.
    std::fs::remove_file(&file).unwrap();
    let (code, _, err) = token_command(&env, &proxy.url(), &file, &[]).await;
    assert_ne!(code, 0);
    assert!(err.contains("[TokenFileUnreadable]"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}

on_both_apis!(
    role_arn_is_assumed_from_the_operator_identity_once_per_identity,
    service_account_token_is_exchanged_for_the_annotated_role,
    a_namespace_uses_only_the_roles_allowed_for_it,
    a_namespace_is_held_to_its_identity_limit,
    each_identity_failure_names_its_fix_and_recovers,
    a_private_region_is_called_as_the_role_and_an_expired_token_refused,
);
