//! Custom resource spec parsing, durations, Secret building and rotation scheduling.
//!
//! Input layout (missing bytes read as zero):
//! - bytes 0-7: `issued` seconds, 8-15: `expires` seconds (little endian, folded into chrono's
//!   range; when bit 0 of byte 24 is set, `expires` is `issued` + the low 32 bits of 8-15 as a
//!   signed delta), 16-23: the jitter seed, 24: flags.
//! - bytes 25..: a duration string, then a NUL byte, then the spec as JSON.
#![no_main]

use std::{collections::BTreeMap, time::Duration as StdDuration};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ecr_public_pull_secret_operator::{
    aws::token::Token,
    crd::{EcrPublicPullSecretSpec, MANAGER},
    duration, hosts, pull_secret, schedule,
};
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 25;
const MAX_SECS: i64 = 8_000_000_000_000;

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs % MAX_SECS, 0).expect("folded into range")
}

/// `duration::parse` must not panic, must stay within a year, and its output must survive
/// `format` → `parse` with the same whole seconds.
fn check_duration(input: &str) -> Option<StdDuration> {
    let d = duration::parse(input).ok()?;
    assert!(
        d <= StdDuration::from_secs(366 * 86400),
        "{input:?} -> {d:?}"
    );
    let shown = duration::format(d);
    let again = duration::parse(&shown)
        .unwrap_or_else(|e| panic!("format({input:?}) = {shown:?} does not re-parse: {e}"));
    assert_eq!(again.as_secs(), d.as_secs(), "{input:?} -> {shown:?}");
    assert_eq!(again.subsec_nanos(), 0);
    assert_eq!(duration::format(again), shown);
    Some(d)
}

fn check_schedule(
    issued: DateTime<Utc>,
    expires: DateTime<Utc>,
    req: Option<StdDuration>,
    seed: u64,
) {
    let at = schedule::refresh_at(issued, expires, req, seed);
    if expires > issued {
        assert!(
            issued <= at && at <= expires,
            "refresh_at({issued}, {expires}, {req:?}, {seed}) = {at} is outside the lifetime"
        );
        // A positive lifetime always leaves a margin of at least the jitter-free refresh time.
        let margin = schedule::effective_refresh_before(expires - issued, req);
        assert!(margin >= chrono::Duration::zero() && margin <= expires - issued);
    } else {
        assert_eq!(at, issued);
    }
    assert!(schedule::until(issued, at) >= schedule::MIN_REQUEUE);
    assert!(schedule::until(expires, at) >= schedule::MIN_REQUEUE);
}

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; HEADER];
    let n = data.len().min(HEADER);
    header[..n].copy_from_slice(&data[..n]);
    let body = &data[n..];

    let issued = time(le_u64(&header[0..8]) as i64);
    let expires = if header[24] & 1 != 0 {
        let delta = i32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        time(issued.timestamp() + i64::from(delta))
    } else {
        time(le_u64(&header[8..16]) as i64)
    };
    let seed = le_u64(&header[16..24]);

    let (dur_bytes, json) = match body.iter().position(|&b| b == 0) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[][..]),
    };
    let arbitrary = check_duration(&String::from_utf8_lossy(dur_bytes));
    check_schedule(issued, expires, arbitrary, seed);

    // Backoff with whatever the fuzzer gives, a finite jitter in [0, 1).
    let rand01 = f64::from(header[16]) / 256.0;
    let base = StdDuration::from_millis(u64::from(header[17]) * 10);
    let max = StdDuration::from_secs(u64::from(header[18]));
    let b = schedule::backoff(u32::from(header[19]), base, max, rand01);
    assert!(b <= max.max(schedule::MIN_REQUEUE.min(base)));

    let Ok(spec) = serde_json::from_slice::<EcrPublicPullSecretSpec>(json) else {
        return;
    };
    // What the operator writes back must read the same.
    let value = serde_json::to_value(&spec).expect("spec serializes");
    let back: EcrPublicPullSecretSpec = serde_json::from_value(value).expect("spec re-parses");
    assert_eq!(back, spec);

    let settings = &spec.settings;
    let requested = settings.refresh_before.as_deref().and_then(check_duration);
    check_schedule(issued, expires, requested, seed);

    let service_account = spec.service_account_name.as_deref();
    let hash = pull_secret::config_hash(settings, service_account);
    assert_eq!(hash.len(), 16);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut reordered = settings.clone();
    reordered.registries.reverse();
    // Which ServiceAccounts list the Secret is not part of its content.
    reordered.service_accounts.push("*".into());
    assert_eq!(pull_secret::config_hash(&reordered, service_account), hash);

    let name = spec.secret_name.as_deref().unwrap_or("pull-secret");
    let extra = BTreeMap::from([(
        pull_secret::MANAGED_BY_LABEL.to_owned(),
        "someone-else".to_owned(),
    )]);
    let secret_spec = pull_secret::SecretSpec {
        name,
        namespace: "ns",
        settings,
        service_account,
        owner: None,
        extra_labels: extra,
    };
    let auth = base64::engine::general_purpose::STANDARD.encode("AWS:fuzz-password");
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
    let token = Token::from_response(Some(&auth), Some(now + chrono::Duration::hours(12)), now)
        .expect("valid token")
        .with_account(Some("123456789012".into()));
    // A token for every source the spec asks for (ECR Public, each private region).
    let every: pull_secret::Entries = (pull_secret::sources(settings).into_iter())
        .map(|source| (source, token.clone()))
        .collect();
    for entries in [pull_secret::Entries::new(), every] {
        let token = (!entries.is_empty()).then_some(&entries);
        let s = pull_secret::build(&secret_spec, &entries);
        assert_eq!(s.metadata.name.as_deref(), Some(name));
        assert_eq!(s.type_.as_deref(), Some(pull_secret::SECRET_TYPE));
        let labels = s.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[pull_secret::MANAGED_BY_LABEL], MANAGER);
        let annotations = s.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations[pull_secret::CONFIG_HASH], hash);
        for key in annotations.keys() {
            if key.starts_with(pull_secret::RESERVED_PREFIX) {
                assert!(
                    [
                        pull_secret::CONFIG_HASH,
                        pull_secret::EXPIRES_AT,
                        pull_secret::REFRESHED_AT,
                        pull_secret::SOURCES,
                    ]
                    .contains(&key.as_str()),
                    "template annotation {key:?} passed into the reserved prefix"
                );
            }
        }
        let state = pull_secret::SecretState::from_meta(&s.metadata);
        assert_eq!(state.config_hash.as_deref(), Some(hash.as_str()));
        match token {
            Some(t) => assert_eq!(state, pull_secret::SecretState::of(t, &hash)),
            None => assert_eq!(state.expires_at, None),
        }
        let data = s.data.as_ref().expect("data");
        let config: serde_json::Value =
            serde_json::from_slice(&data[pull_secret::DATA_KEY].0).expect("docker config is JSON");
        let auths = config["auths"].as_object().expect("auths");
        let public = settings.registries.iter().map(|r| r.host().to_owned());
        let private = (settings.private_registries.iter())
            .flat_map(|r| hosts::private_hosts(r, Some("123456789012")));
        let mut hosts: Vec<String> = public.chain(private).collect();
        hosts.sort_unstable();
        hosts.dedup();
        assert_eq!(auths.len(), if token.is_some() { hosts.len() } else { 0 });
        for (host, entry) in auths {
            assert!(
                hosts.contains(host),
                "{host} is not a host the spec asks for"
            );
            assert_eq!(entry["password"], "fuzz-password");
        }
    }
});
