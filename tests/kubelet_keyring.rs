//! The kubelet reads what the operator writes: every Secret shape the operator builds is fed to
//! the kubelet's own credential keyring (`k8s.io/kubernetes/pkg/credentialprovider`, at the
//! version of the control plane the tests pin), which must resolve each written registry's
//! images to user `AWS` and the written password, and nothing else. A Secret whose token was
//! removed (`onExpiry: RemoveAuth`) must resolve to nothing, so the kubelet pulls anonymously.
//!
//! Every host form is covered: ECR Public and its dual-stack name, private registries in each
//! form (standard, dual-stack, FIPS, FIPS dual-stack), the identity's own account, the China and
//! GovCloud partitions, and a region whose entry was dropped while the others stayed. Each host
//! resolves to its own source's password; unlisted accounts and look-alike hosts to nothing.
//! Then a real registry client (go-containerregistry) pulls a manifest, under the ECR host name,
//! from a TLS registry on 127.0.0.1 that accepts only the written credentials, with the
//! keyring's answer as its only credentials.
//!
//! The cases are built here with the operator's code; `tests/cluster/keyring` is the Go test that
//! checks them.

use std::process::Command;

use base64::Engine as _;
use chrono::{Duration, Utc};
use ecr_public_pull_secret_operator::{
    aws::{source::Source, token::Token},
    crd::{OnExpiry, PrivateEndpoint, PrivateRegistry, PullSecretSettings, Registry},
    pull_secret::{self, Entries, SecretSpec},
};
use harness::control_plane::workspace_root;
use serde_json::{Map, Value, json};

/// One password per token source: each host must resolve to its own source's.
const PUBLIC_PASSWORD: &str = "eyJwYXlsb2FkIjoi-keyring-test-public";
const WEST_PASSWORD: &str = "eyJwYXlsb2FkIjoi-keyring-test-us-west-2";
const IRELAND_PASSWORD: &str = "eyJwYXlsb2FkIjoi-keyring-test-eu-west-1";
const CHINA_PASSWORD: &str = "eyJwYXlsb2FkIjoi-keyring-test-cn-north-1";
const GOV_PASSWORD: &str = "eyJwYXlsb2FkIjoi-keyring-test-us-gov-west-1";
const PASSWORDS: [&str; 5] = [
    PUBLIC_PASSWORD,
    WEST_PASSWORD,
    IRELAND_PASSWORD,
    CHINA_PASSWORD,
    GOV_PASSWORD,
];

const PUBLIC: &str = "public.ecr.aws/nginx/nginx:1.27";
const DUAL_STACK: &str = "ecr-public.aws.com/nginx/nginx:1.27";
const WEST: &str = "123456789012.dkr.ecr.us-west-2.amazonaws.com/team/app:1";
const WEST_DUAL_STACK: &str = "123456789012.dkr-ecr.us-west-2.on.aws/team/app:1";
const WEST_FIPS: &str = "123456789012.dkr.ecr-fips.us-west-2.amazonaws.com/team/app:1";
const WEST_FIPS_DUAL_STACK: &str = "123456789012.dkr-ecr-fips.us-west-2.on.aws/team/app:1";
const WEST_OTHER_ACCOUNT: &str = "210987654321.dkr.ecr.us-west-2.amazonaws.com/team/app:1";
/// eu-west-1 lists no account: the identity's own (from the token's proxyEndpoint) is written.
const IRELAND: &str = "555555555555.dkr.ecr.eu-west-1.amazonaws.com/base/debian:12";
const CHINA: &str = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/app:1";
const GOV_FIPS: &str = "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/team/app:1";
/// Registries the operator never writes, including look-alikes of its own hosts.
const OTHERS: [&str; 6] = [
    "docker.io/library/nginx:1.27",
    "public.ecr.aws.example.com/nginx/nginx:1.27",
    "123456789012.dkr.ecr.us-west-2.amazonaws.com.example.com/team/app:1",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
    "999999999999.dkr.ecr.eu-west-1.amazonaws.com/base/debian:12",
    "nginx:1.27",
];

fn token(password: &str, account: Option<&str>) -> Token {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    let now = Utc::now();
    let token = Token::from_response(Some(&auth), Some(now + Duration::hours(12)), now);
    token
        .expect("a valid token")
        .with_account(account.map(str::to_owned))
}

fn private(region: &str, ids: &[&str], endpoints: &[PrivateEndpoint]) -> PrivateRegistry {
    PrivateRegistry {
        region: region.into(),
        registry_ids: ids.iter().map(|s| s.to_string()).collect(),
        endpoints: endpoints.to_vec(),
    }
}

/// Every image any case names, so each case checks the ones it must not resolve too.
fn every_image() -> Vec<&'static str> {
    let ours = [
        PUBLIC,
        DUAL_STACK,
        WEST,
        WEST_DUAL_STACK,
        WEST_FIPS,
        WEST_FIPS_DUAL_STACK,
        IRELAND,
        CHINA,
        GOV_FIPS,
    ];
    ours.into_iter()
        .chain(OTHERS)
        .chain([WEST_OTHER_ACCOUNT])
        .collect()
}

/// One case: the Secret as the operator builds it, the images it must resolve (each to its
/// source's password), and those a registry client really pulls with it.
fn case(
    name: &str,
    settings: PullSecretSettings,
    entries: Entries,
    resolves: &[(&str, &str)],
    pulls: &[&str],
) -> Value {
    let settings = PullSecretSettings {
        on_expiry: OnExpiry::RemoveAuth,
        ..settings
    };
    let spec = SecretSpec {
        name: "ecr-pull",
        namespace: "team-a",
        settings: &settings,
        service_account: None,
        owner: None,
        extra_labels: Default::default(),
    };
    let secret = pull_secret::build(&spec, &entries);
    let resolved: Map<String, Value> = (resolves.iter())
        .map(|(image, password)| (image.to_string(), json!(password)))
        .collect();
    let unresolved: Vec<&str> = (every_image().into_iter())
        .filter(|i| !resolved.contains_key(*i))
        .collect();
    json!({
        "name": name,
        "secret": secret,
        "resolves": resolved,
        "unresolved": unresolved,
        "pulls": pulls,
    })
}

fn public_only(registries: Vec<Registry>) -> PullSecretSettings {
    PullSecretSettings {
        registries,
        ..PullSecretSettings::default()
    }
}

fn public_entry() -> Entries {
    Entries::from([(Source::Public, token(PUBLIC_PASSWORD, None))])
}

/// ECR Public beside three private regions: every host form in us-west-2, the identity's own
/// account in eu-west-1, and the China partition.
fn mixed() -> PullSecretSettings {
    use PrivateEndpoint::*;
    PullSecretSettings {
        registries: vec![Registry::PublicEcrAws, Registry::DualStack],
        private_registries: vec![
            private(
                "us-west-2",
                &["123456789012"],
                &[Standard, DualStack, Fips, FipsDualStack],
            ),
            private("eu-west-1", &[], &[Standard]),
            private("cn-north-1", &["123456789012"], &[Standard]),
        ],
        ..PullSecretSettings::default()
    }
}

fn mixed_entries() -> Entries {
    Entries::from([
        (Source::Public, token(PUBLIC_PASSWORD, None)),
        (Source::private("us-west-2"), token(WEST_PASSWORD, None)),
        (
            Source::private("eu-west-1"),
            token(IRELAND_PASSWORD, Some("555555555555")),
        ),
        (Source::private("cn-north-1"), token(CHINA_PASSWORD, None)),
    ])
}

const CASES: [&str; 7] = [
    "public",
    "dual-stack",
    "both",
    "token-removed",
    "public-and-private",
    "private-only",
    "failing-region-removed",
];

#[test]
#[ignore = "needs Go and the control plane's modules: tests/cluster/build.sh, then cargo test -- --ignored real_"]
fn real_kubelet_keyring_resolves_every_secret_shape_the_operator_writes() {
    let both = vec![Registry::PublicEcrAws, Registry::DualStack];
    let mut region_removed = mixed_entries();
    region_removed.remove(&Source::private("eu-west-1"));
    let cases = json!([
        case(
            CASES[0],
            public_only(vec![Registry::PublicEcrAws]),
            public_entry(),
            &[(PUBLIC, PUBLIC_PASSWORD)],
            &[PUBLIC],
        ),
        case(
            CASES[1],
            public_only(vec![Registry::DualStack]),
            public_entry(),
            &[(DUAL_STACK, PUBLIC_PASSWORD)],
            &[],
        ),
        case(
            CASES[2],
            public_only(both.clone()),
            public_entry(),
            &[(PUBLIC, PUBLIC_PASSWORD), (DUAL_STACK, PUBLIC_PASSWORD)],
            &[],
        ),
        case(CASES[3], public_only(both), Entries::new(), &[], &[]),
        case(
            CASES[4],
            mixed(),
            mixed_entries(),
            &[
                (PUBLIC, PUBLIC_PASSWORD),
                (DUAL_STACK, PUBLIC_PASSWORD),
                (WEST, WEST_PASSWORD),
                (WEST_DUAL_STACK, WEST_PASSWORD),
                (WEST_FIPS, WEST_PASSWORD),
                (WEST_FIPS_DUAL_STACK, WEST_PASSWORD),
                (IRELAND, IRELAND_PASSWORD),
                (CHINA, CHINA_PASSWORD),
            ],
            &[PUBLIC, WEST, WEST_FIPS_DUAL_STACK, IRELAND, CHINA],
        ),
        case(
            CASES[5],
            PullSecretSettings {
                registries: Vec::new(),
                private_registries: vec![private(
                    "us-gov-west-1",
                    &["123456789012"],
                    &[PrivateEndpoint::Fips],
                )],
                ..PullSecretSettings::default()
            },
            Entries::from([(Source::private("us-gov-west-1"), token(GOV_PASSWORD, None))]),
            &[(GOV_FIPS, GOV_PASSWORD)],
            &[GOV_FIPS],
        ),
        // eu-west-1 failed and its token expired (onExpiry: RemoveAuth): only its entry is gone.
        case(
            CASES[6],
            mixed(),
            region_removed,
            &[
                (PUBLIC, PUBLIC_PASSWORD),
                (DUAL_STACK, PUBLIC_PASSWORD),
                (WEST, WEST_PASSWORD),
                (WEST_DUAL_STACK, WEST_PASSWORD),
                (WEST_FIPS, WEST_PASSWORD),
                (WEST_FIPS_DUAL_STACK, WEST_PASSWORD),
                (CHINA, CHINA_PASSWORD),
            ],
            &[WEST],
        ),
    ]);
    let file = std::env::temp_dir().join(format!("epps-keyring-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();

    // Go in tests/cluster with the control plane build's environment (its pinned modules).
    let out = Command::new(workspace_root().join("tests/cluster/go"))
        .args(["test", "-count=1", "-v", "./keyring/"])
        .env("KEYRING_CASES", &file)
        .output()
        .expect("go runs (Go 1.24+ on PATH)");
    let _ = std::fs::remove_file(&file);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the kubelet's keyring disagrees:\n{log}"
    );
    // Every case ran: a subtest line per case, none skipped.
    for name in CASES {
        assert!(
            log.contains(&format!(
                "--- PASS: TestTheKubeletsKeyringResolvesWhatTheOperatorWrites/{name}"
            )),
            "{log}"
        );
    }
    for password in PASSWORDS {
        assert!(
            !log.contains(password),
            "a password reached the test's output"
        );
    }
    // The pulls ran: a subtest per pull, `<case>/pull-<n>`.
    for (name, pulls) in [(CASES[0], 1), (CASES[4], 5), (CASES[5], 1), (CASES[6], 1)] {
        for n in 0..pulls {
            let line = format!(
                "--- PASS: TestTheKubeletsKeyringResolvesWhatTheOperatorWrites/{name}/pull-{n}"
            );
            assert!(log.contains(&line), "{line} missing:\n{log}");
        }
    }
}
