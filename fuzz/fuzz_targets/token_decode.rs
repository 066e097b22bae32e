//! Token decoding and docker config building from arbitrary ECR Public responses.
//!
//! Input layout (missing bytes read as zero):
//! - byte 0: mode. Bits 0-1 choose how the rest becomes the `authorizationToken`:
//!   0 = the bytes as a string, 1 = base64 of the bytes, 2 = base64 of `AWS:` + the bytes,
//!   3 = like 2 with surrounding whitespace. Bit 2: `expiresAt` absent. Bit 3: token absent.
//!   Bit 4: `expiresAt` is an absolute time (bytes 9-16) instead of `now` + a delta (bytes 9-12).
//! - bytes 1-8: `now` in seconds (little endian, folded into chrono's range), bytes 13-16 its nanos.
//! - bytes 17..: the token material.
#![no_main]

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ecr_public_pull_secret_operator::{
    aws::{source::Source, token::Token},
    crd::{PullSecretSettings, Registry},
    pull_secret::{self, Entries},
};
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 17;
/// Widest range of whole seconds chrono represents, with margin.
const MAX_SECS: i64 = 8_000_000_000_000;

fn le_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_le_bytes(a)
}

fn time(secs: i64, nanos: u32) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs % MAX_SECS, nanos % 1_000_000_000)
}

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; HEADER];
    let n = data.len().min(HEADER);
    header[..n].copy_from_slice(&data[..n]);
    let body = &data[n..];
    let mode = header[0];

    let nanos = u32::from_le_bytes([header[13], header[14], header[15], header[16]]);
    let Some(now) = time(le_i64(&header[1..9]), nanos) else {
        return;
    };
    let expires_at = if mode & 0x10 != 0 {
        time(le_i64(&header[9..17]), 0)
    } else {
        let delta = i32::from_le_bytes([header[9], header[10], header[11], header[12]]);
        time(now.timestamp().saturating_add(i64::from(delta)), 0)
    };
    let expires_at = if mode & 0x04 != 0 { None } else { expires_at };

    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // The token as sent, and the part an attacker or a bug could leak: the password.
    let (token, password): (String, Vec<u8>) = match mode & 0x03 {
        0 => {
            let raw = String::from_utf8_lossy(body).into_owned();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .unwrap_or_default();
            (raw, after_colon(&decoded).to_vec())
        }
        1 => (b64(body), after_colon(body).to_vec()),
        2 => (b64(&[b"AWS:", body].concat()), body.to_vec()),
        _ => (
            format!(" \n{}\t", b64(&[b"AWS:", body].concat())),
            body.to_vec(),
        ),
    };
    let token_arg = if mode & 0x08 != 0 {
        None
    } else {
        Some(token.as_str())
    };

    match Token::from_response(token_arg, expires_at, now) {
        Ok(t) => {
            assert!(t.expires_at > now, "accepted an expired token");
            assert!(t.issued_at <= now && now - t.issued_at < chrono::Duration::seconds(1));
            assert!(t.lifetime() > chrono::Duration::zero());
            assert!(t.lifetime() <= chrono::Duration::days(7) + chrono::Duration::seconds(1));
            assert!(!t.password().is_empty());
            assert_eq!(t.password().as_bytes(), &password[..]);
            assert!(
                !format!("{t:?}").contains(t.auth()),
                "Debug leaks the token"
            );
            check_docker_config(&t);
        }
        Err(e) => {
            let message = e.to_string();
            // The only variable text a token error may carry is the expiry time; strip it, then
            // the password may appear only where it is a word of the fixed message text itself.
            let mut redacted = message.clone();
            if let Some(at) = expires_at {
                redacted = redacted.replace(&at.to_rfc3339(), "");
            }
            for secret in [password.as_slice(), token.trim().as_bytes()] {
                let Ok(secret) = std::str::from_utf8(secret) else {
                    continue;
                };
                if secret.len() >= 6 && redacted.contains(secret) {
                    assert!(
                        FIXED_TEXT.iter().any(|f| f.contains(secret)),
                        "error message leaks token material: {message:?}"
                    );
                }
            }
            assert_eq!(e.label(), "InvalidToken");
        }
    }
});

/// Token error messages with the expiry time removed: a password that is part of one of them is
/// not a leak.
const FIXED_TEXT: &[&str] = &[
    "ECR returned an unusable authorization token: no authorizationToken in the response",
    "ECR returned an unusable authorization token: no expiresAt in the response",
    "ECR returned an unusable authorization token: authorizationToken is not valid base64",
    "ECR returned an unusable authorization token: authorizationToken is not UTF-8",
    "ECR returned an unusable authorization token: authorizationToken is not of the form AWS:<password>",
    "ECR returned an unusable authorization token: authorizationToken has no ':' separator",
    "ECR returned an unusable authorization token: expiresAt  is not in the future",
    "ECR returned an unusable authorization token: expiresAt  is implausibly far in the future",
];

fn after_colon(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == b':') {
        Some(i) => &b[i + 1..],
        None => &[],
    }
}

fn check_docker_config(t: &Token) {
    for registries in [
        &[Registry::PublicEcrAws][..],
        &[Registry::DualStack][..],
        &[Registry::PublicEcrAws, Registry::DualStack][..],
        &[
            Registry::DualStack,
            Registry::PublicEcrAws,
            Registry::DualStack,
        ][..],
    ] {
        let settings = PullSecretSettings {
            registries: registries.to_vec(),
            ..PullSecretSettings::default()
        };
        let entries = Entries::from([(Source::Public, t.clone())]);
        let bytes = pull_secret::docker_config(&settings, &entries);
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).expect("docker config is valid JSON");
        let auths = json["auths"].as_object().expect("auths is an object");
        let mut hosts: Vec<&str> = registries.iter().map(|r| r.host()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        assert_eq!(auths.len(), hosts.len());
        for host in hosts {
            let entry = &auths[host];
            assert_eq!(entry["username"], "AWS");
            assert_eq!(entry["password"].as_str(), Some(t.password()));
            let auth = entry["auth"].as_str().expect("auth is a string");
            assert_eq!(auth, t.auth());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .expect("auth is base64");
            assert_eq!(decoded, format!("AWS:{}", t.password()).as_bytes());
        }
    }
    assert_eq!(
        pull_secret::docker_config(&PullSecretSettings::default(), &Entries::new()),
        br#"{"auths":{}}"#
    );
}
