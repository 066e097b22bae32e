use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::retry::RetryConfig;
use harness::moto::Moto;

use crate::{start_moto, sts};

const IRSA_ROLE: &str = "arn:aws:iam::123456789012:role/irsa";
const TARGET_ROLE: &str = "arn:aws:iam::210987654321:role/publisher";

/// The IRSA path and a chained AssumeRole, as the operator's SDK makes them.
#[tokio::test]
async fn web_identity_then_chained_assume_role() {
    let moto = start_moto().await;
    let anonymous = sts(&moto.url(), "AKIAUNUSED", RetryConfig::disabled());
    let irsa = anonymous
        .assume_role_with_web_identity()
        .role_arn(IRSA_ROLE)
        .role_session_name("operator")
        .web_identity_token("eyJhbGciOiJSUzI1NiJ9.not-verified.sig")
        .duration_seconds(900)
        .send()
        .await
        .expect("any token is accepted");
    let creds = irsa.credentials().expect("credentials");
    assert!(creds.access_key_id().starts_with("ASIA"), "{creds:?}");
    let lifetime = SystemTime::try_from(*creds.expiration())
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(lifetime > Duration::from_secs(840) && lifetime <= Duration::from_secs(900));
    assert_eq!(
        moto.caller_arn(creds.access_key_id()).await.unwrap(),
        "arn:aws:sts::123456789012:assumed-role/irsa/operator"
    );

    let as_irsa = sts(&moto.url(), creds.access_key_id(), RetryConfig::disabled());
    let chained = as_irsa
        .assume_role()
        .role_arn(TARGET_ROLE)
        .role_session_name("chained")
        .duration_seconds(1200)
        .send()
        .await
        .expect("assume role");
    let chained_key = chained.credentials().unwrap().access_key_id().to_owned();
    assert_eq!(
        moto.caller_arn(&chained_key).await.unwrap(),
        "arn:aws:sts::210987654321:assumed-role/publisher/chained"
    );
    // A key moto never issued is its default user, not an error.
    assert_eq!(
        moto.caller_arn("AKIANEVERISSUED").await.unwrap(),
        "arn:aws:sts::123456789012:user/moto"
    );

    let web = moto.requests("AssumeRoleWithWebIdentity").await.unwrap();
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(web[0]["RoleArn"], IRSA_ROLE);
    assert_eq!(web[0]["RoleSessionName"], "operator");
    assert_eq!(
        web[0]["WebIdentityToken"],
        "eyJhbGciOiJSUzI1NiJ9.not-verified.sig"
    );
    assert_eq!(web[0]["DurationSeconds"], "900");
    let assume = moto.requests("AssumeRole").await.unwrap();
    assert_eq!(assume.len(), 1, "{assume:?}");
    assert_eq!(assume[0]["RoleArn"], TARGET_ROLE);
    assert_eq!(moto.requests("GetCallerIdentity").await.unwrap().len(), 3);

    moto.clear_requests().await.unwrap();
    assert!(moto.requests("AssumeRole").await.unwrap().is_empty());
}

#[tokio::test]
async fn dropping_stops_the_server() {
    let moto = start_moto().await;
    let addr = moto.url().trim_start_matches("http://").to_owned();
    drop(moto);
    // kill + wait in Drop: the port is closed by the time drop returns.
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test]
async fn start_fails_fast_without_a_venv() {
    let err = Moto::start("/nonexistent/bin/moto_server")
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}
