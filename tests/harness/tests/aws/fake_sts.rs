//! The benchmark's AssumeRole-only STS, as the SDK sees it.

use std::time::Duration;

use aws_sdk_sts::config::retry::RetryConfig;
use harness::fake_sts::FakeSts;

#[tokio::test]
async fn assume_role_issues_one_access_key_per_role_and_counts_calls() {
    let fake = FakeSts::start(Duration::from_secs(900)).await.unwrap();
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
