use std::time::{Duration, SystemTime};

use axum::http::{Method, Response};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use harness::{container_credentials::ContainerCredentials, http_client};

const EXPIRATION: i64 = 2_000_000_000; // 2033-05-18T03:33:20Z
const CHILD_MARKER: &str = "HARNESS_CONTAINER_CREDENTIALS_CHILD";

async fn start() -> ContainerCredentials {
    let expiration = Utc.timestamp_opt(EXPIRATION, 0).unwrap();
    ContainerCredentials::start("ASIAPODIDENTITY", "pod-secret", "pod-session", expiration)
        .await
        .unwrap()
}

async fn get(server: &ContainerCredentials, authorization: Option<&str>) -> Response<Bytes> {
    let headers: Vec<_> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    http_client::call(Method::GET, &server.full_uri(), &headers, "")
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_credentials_only_with_the_token() {
    let server = start().await;
    let token = std::fs::read_to_string(server.token_file()).unwrap();
    assert_eq!(token, server.token());

    let ok = get(&server, Some(&token)).await;
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(ok.body()).unwrap();
    assert_eq!(body["AccessKeyId"], "ASIAPODIDENTITY");
    assert_eq!(body["SecretAccessKey"], "pod-secret");
    assert_eq!(body["Token"], "pod-session");
    assert_eq!(body["Expiration"], "2033-05-18T03:33:20Z");

    assert_eq!(get(&server, Some("nope")).await.status(), 403);
    assert_eq!(get(&server, None).await.status(), 403);

    server.rotate_token().unwrap();
    assert_eq!(get(&server, Some(&token)).await.status(), 403);
    assert_ne!(std::fs::read_to_string(server.token_file()).unwrap(), token);
    assert_eq!((server.requests(), server.rejected()), (4, 3));
}

/// The SDK's own container provider (which reads only the process environment) against the
/// server, in a child process given the variables, so no test mutates this process's environment.
#[tokio::test]
async fn sdk_container_provider_reads_them() {
    let server = start().await;
    server.set_credentials(
        "ASIAROTATED",
        "rotated-secret",
        "rotated-session",
        Utc.timestamp_opt(EXPIRATION, 0).unwrap(),
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "container_credentials::sdk_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_MARKER, "1")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.full_uri())
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            server.token_file(),
        )
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    // Off the runtime thread: this test's runtime must keep serving the child's request.
    let out = tokio::task::spawn_blocking(move || child.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!((server.requests(), server.rejected()), (1, 0));
}

#[tokio::test]
#[ignore = "run by sdk_container_provider_reads_them, in a child process with the environment set"]
async fn sdk_child() {
    // Run by hand (`-- --ignored`) there is no server to ask.
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let provider = aws_config::ecs::EcsCredentialsProvider::builder().build();
    let creds = provider.credentials().await.expect("credentials");
    assert_eq!(creds.access_key_id(), "ASIAROTATED");
    assert_eq!(creds.secret_access_key(), "rotated-secret");
    assert_eq!(creds.session_token(), Some("rotated-session"));
    let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(EXPIRATION as u64);
    assert_eq!(creds.expiry(), Some(expiry));
}
