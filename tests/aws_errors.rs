//! Classification of real SDK errors (not hand-built facts): a mocked ECR Public client returns
//! what the service would, and the operator's fetch path turns it into the error users see.

use aws_sdk_ecrpublic::{
    Client, config::http::HttpResponse,
    operation::get_authorization_token::GetAuthorizationTokenOutput, primitives::DateTime,
    types::AuthorizationData,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;
use ecr_public_pull_secret_operator::aws::{
    Ecr, TokenSource, cache::Identity, credentials::Clients, source::Source,
};

/// Fetches through a client whose one response is an AWS JSON 1.1 error; returns the reason.
async fn reason_for(status: u16, type_: &'static str) -> String {
    let rule = mock!(Client::get_authorization_token).then_http_response(move || {
        let body = format!(r#"{{"__type":"{type_}","message":"from the mock"}}"#);
        HttpResponse::new(status.try_into().expect("status"), SdkBody::from(body))
    });
    let client = mock_client!(aws_sdk_ecrpublic, RuleMode::MatchAny, &[&rule], |c| c
        .retry_config(aws_sdk_ecrpublic::config::retry::RetryConfig::disabled()));
    let err = Ecr::new(Clients::for_client(client))
        .fetch(&Identity::Operator, &Source::Public)
        .await
        .expect_err("a failure");
    // Classified, and the SDK's error kept as the source (what it said included).
    let source = std::error::Error::source(&err).expect("the SDK's error as the source");
    let said = aws_smithy_types::error::display::DisplayErrorContext(source).to_string();
    assert!(
        said.contains(type_) || said.contains("from the mock"),
        "{said}"
    );
    err.label().to_owned()
}

#[tokio::test]
async fn service_errors_map_to_actionable_reasons() {
    assert_eq!(
        reason_for(400, "AccessDeniedException").await,
        "AccessDenied"
    );
    assert_eq!(reason_for(400, "ThrottlingException").await, "Transient");
    assert_eq!(reason_for(500, "ServerException").await, "Transient");
    assert_eq!(reason_for(503, "ServiceUnavailable").await, "Transient");
    assert_eq!(
        reason_for(400, "InvalidParameterException").await,
        "AwsError"
    );
}

#[tokio::test]
async fn a_good_response_becomes_a_validated_token() {
    let auth = base64::engine::general_purpose::STANDARD.encode("AWS:mock-password");
    let expires = chrono::Utc::now().timestamp() + 12 * 3600;
    let rule = mock!(Client::get_authorization_token).then_output(move || {
        GetAuthorizationTokenOutput::builder()
            .authorization_data(
                AuthorizationData::builder()
                    .authorization_token(auth.clone())
                    .expires_at(DateTime::from_secs(expires))
                    .build(),
            )
            .build()
    });
    let client = mock_client!(aws_sdk_ecrpublic, &[&rule]);
    let token = Ecr::new(Clients::for_client(client))
        .fetch(&Identity::Operator, &Source::Public)
        .await
        .expect("token");
    assert_eq!(token.password(), "mock-password");
    assert_eq!(token.expires_at.timestamp(), expires);
    // An expired token from the service is refused, never handed to the Secret writer.
    let rule = mock!(Client::get_authorization_token).then_output(|| {
        GetAuthorizationTokenOutput::builder()
            .authorization_data(
                AuthorizationData::builder()
                    .authorization_token(
                        base64::engine::general_purpose::STANDARD.encode("AWS:old"),
                    )
                    .expires_at(DateTime::from_secs(chrono::Utc::now().timestamp() - 60))
                    .build(),
            )
            .build()
    });
    let client = mock_client!(aws_sdk_ecrpublic, &[&rule]);
    let err = Ecr::new(Clients::for_client(client))
        .fetch(&Identity::Operator, &Source::Public)
        .await
        .expect_err("expired");
    assert_eq!(err.label(), "InvalidToken");
}
