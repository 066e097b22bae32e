use std::time::Duration;

use aws_sdk_sts::{config::retry::RetryConfig, error::ProvideErrorMetadata, operation::RequestId};
use harness::sts_proxy::{StsFault, StsProxy};

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
    let proxy = StsProxy::start(&moto.url()).await.unwrap();
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
    let proxy = StsProxy::start(&moto.url()).await.unwrap();
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
    let proxy = StsProxy::start(&dead).await.unwrap();
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
