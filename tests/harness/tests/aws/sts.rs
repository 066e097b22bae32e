use std::time::Duration;

use aws_sdk_sts::{config::retry::RetryConfig, error::ProvideErrorMetadata, operation::RequestId};
use harness::sts::{Sts, StsFault};

use crate::{start_moto, sts};

const ACTION: &str = "AssumeRoleWithWebIdentity";

async fn web_identity(
    client: &aws_sdk_sts::Client,
) -> Result<
    aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
    aws_sdk_sts::error::SdkError<
        aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
    >,
> {
    client
        .assume_role_with_web_identity()
        .role_arn("arn:aws:iam::123456789012:role/irsa")
        .role_session_name("operator")
        .web_identity_token("token-from-the-projected-volume")
        .send()
        .await
}

/// Each fault reaches the SDK as the code, status and request id real STS would give it; requests
/// without a fault go through to moto unchanged.
#[tokio::test]
async fn faults_are_parsed_by_the_sdk_and_others_pass_through() {
    let moto = start_moto().await;
    let proxy = Sts::proxy(&moto.url()).await.unwrap();
    let client = sts(&proxy.url(), "AKIAUNUSED", RetryConfig::disabled());

    let cases = [
        (StsFault::AccessDenied, 403, "AccessDenied"),
        (StsFault::InvalidIdentityToken, 400, "InvalidIdentityToken"),
        (StsFault::ExpiredToken, 400, "ExpiredTokenException"),
        (StsFault::Throttling, 400, "Throttling"),
        (StsFault::ServerError, 500, "InternalFailure"),
    ];
    for (fault, status, code) in cases {
        proxy.set_fault(ACTION, fault);
        let err = web_identity(&client).await.expect_err("fault injected");
        let raw = err.raw_response().expect("a response was received");
        assert_eq!(raw.status().as_u16(), status, "{fault:?}");
        let service = err.into_service_error();
        assert_eq!(service.code(), Some(code), "{fault:?}: {service:?}");
        assert!(service.message().is_some_and(|m| !m.is_empty()));
        assert!(
            service.request_id().is_some_and(|id| id.len() == 36),
            "{service:?}"
        );
        match fault {
            StsFault::InvalidIdentityToken => {
                assert!(service.is_invalid_identity_token_exception())
            }
            StsFault::ExpiredToken => assert!(service.is_expired_token_exception()),
            _ => {}
        }
    }
    assert!(
        moto.requests(ACTION).await.unwrap().is_empty(),
        "faults never reach moto"
    );

    proxy.clear_fault(ACTION);
    let out = web_identity(&client).await.expect("forwarded to moto");
    assert!(
        out.credentials()
            .unwrap()
            .access_key_id()
            .starts_with("ASIA")
    );
    let seen = moto.requests(ACTION).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["WebIdentityToken"],
        "token-from-the-projected-volume"
    );
    assert_eq!(proxy.calls(ACTION), cases.len() + 1);
    assert_eq!(proxy.calls_by_action().len(), 1);
}

/// `fail_next` fails a few calls and then recovers: the SDK's standard retries absorb two 500s.
#[tokio::test]
async fn queued_faults_then_recovery_with_sdk_retries() {
    let moto = start_moto().await;
    let proxy = Sts::proxy(&moto.url()).await.unwrap();
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1));
    let client = sts(&proxy.url(), "AKIAUNUSED", retry);
    proxy.fail_next(ACTION, StsFault::ServerError, 2);
    web_identity(&client)
        .await
        .expect("third attempt forwarded");
    assert_eq!(proxy.calls(ACTION), 3);
    assert!(
        proxy
            .wait_for_calls(ACTION, 3, Duration::from_secs(1))
            .await
    );
    assert!(
        !proxy
            .wait_for_calls(ACTION, 4, Duration::from_millis(100))
            .await
    );
    assert_eq!(moto.requests(ACTION).await.unwrap().len(), 1);
}

#[tokio::test]
async fn unreachable_upstream_is_a_bad_gateway() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let proxy = Sts::proxy(&dead).await.unwrap();
    let resp = harness::http_client::call(
        axum::http::Method::POST,
        &proxy.url(),
        &[],
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(proxy.calls("GetCallerIdentity"), 1);
}

/// The benchmark's and chart tests' STS, as the SDK sees it.
#[tokio::test]
async fn standalone_issues_one_access_key_per_role_and_counts_calls() {
    let fake = Sts::standalone(Duration::from_secs(900)).await.unwrap();
    let sts = super::sts(&fake.url(), "AKIDBASE", RetryConfig::disabled());
    let mut keys = Vec::new();
    for role in ["a", "b", "a"] {
        let out = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::123456789012:role/{role}"))
            .role_session_name("bench")
            .send()
            .await
            .expect("AssumeRole parses");
        let creds = out.credentials().expect("credentials");
        let left = creds.expiration().secs() - chrono::Utc::now().timestamp();
        assert!(
            (800..=900).contains(&left),
            "lifetime as configured: {left}"
        );
        assert_eq!(
            out.assumed_role_user().map(|u| u.arn()),
            Some(format!("arn:aws:sts::123456789012:assumed-role/{role}/bench").as_str())
        );
        keys.push(creds.access_key_id().to_owned());
    }
    assert_eq!(keys[0], keys[2], "same role, same key");
    assert_ne!(keys[0], keys[1]);
    let calls = fake.assume_role_calls();
    assert_eq!(calls["arn:aws:iam::123456789012:role/a"], 2);
    assert_eq!(calls["arn:aws:iam::123456789012:role/b"], 1);
    // Anything else is refused the way STS refuses, not silently answered.
    let err = sts.get_caller_identity().send().await.unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&err),
        Some("InvalidAction")
    );
}
