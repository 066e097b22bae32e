//! When to rotate, and how long to wait after a failure. Pure functions: no clock, no I/O.
//!
//! A token issued at `issued` and expiring at `expires` is rotated at
//! `expires - refresh_before - jitter`. The jitter is derived from the resource's UID, so it is
//! stable across restarts (no schedule drift, no extra writes) but spreads thousands of Secrets over
//! a window instead of writing them all in the same second.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use crate::{Error, duration};

/// The token lifetime `refreshBefore` must stay under.
const TOKEN_LIFETIME: StdDuration = StdDuration::from_secs(12 * 3600);

/// `spec.refreshBefore`, parsed once per reconcile, with the CRD's CEL rule re-checked: an API
/// server that skipped it (an old CRD, or a client that bypassed validation) must not make the
/// operator misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBefore(StdDuration);

impl RefreshBefore {
    /// Greater than zero and shorter than the 12 h token lifetime, or `InvalidSpec`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let d = duration::parse(s)
            .map_err(|e| Error::InvalidSpec(format!("spec.refreshBefore: {e}")))?;
        if d.is_zero() || d >= TOKEN_LIFETIME {
            return Err(Error::InvalidSpec(format!(
                "spec.refreshBefore {s:?} must be greater than 0s and shorter than the 12h token lifetime"
            )));
        }
        Ok(Self(d))
    }

    pub fn get(self) -> StdDuration {
        self.0
    }
}

/// One resource's rotation schedule: its refresh margin (`None`: half the lifetime) and the
/// jitter seed derived from its UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    refresh_before: Option<StdDuration>,
    seed: u64,
}

impl Rotation {
    pub fn new(refresh_before: Option<StdDuration>, uid: &str) -> Self {
        Self {
            refresh_before,
            seed: jitter_seed(uid),
        }
    }

    /// When a token issued at `issued` and expiring at `expires` is due.
    pub fn due_at(&self, issued: DateTime<Utc>, expires: DateTime<Utc>) -> DateTime<Utc> {
        refresh_at(issued, expires, self.refresh_before, self.seed)
    }
}

/// Never wait less than this before looking at a resource again: guards against hot loops when a
/// clock or a token is odd.
pub const MIN_REQUEUE: StdDuration = StdDuration::from_secs(1);

/// Jitter window: 5% of the token lifetime, at most five minutes.
const MAX_JITTER: Duration = Duration::minutes(5);

/// Stable 64-bit FNV-1a hash of a resource UID, used as the jitter seed.
pub fn jitter_seed(uid: &str) -> u64 {
    uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The refresh margin actually used. Defaults to half the lifetime; a requested margin is capped
/// at 90% of the lifetime so that even a margin close to the lifetime leaves time between rotations.
pub fn effective_refresh_before(lifetime: Duration, requested: Option<StdDuration>) -> Duration {
    let half = lifetime / 2;
    let cap = lifetime * 9 / 10;
    match requested.and_then(|r| Duration::from_std(r).ok()) {
        Some(r) => r.min(cap).max(Duration::zero()),
        None => half,
    }
}

/// When a token issued at `issued` and expiring at `expires` should be replaced.
pub fn refresh_at(
    issued: DateTime<Utc>,
    expires: DateTime<Utc>,
    requested: Option<StdDuration>,
    seed: u64,
) -> DateTime<Utc> {
    let lifetime = expires - issued;
    if lifetime <= Duration::zero() {
        return issued;
    }
    let margin = effective_refresh_before(lifetime, requested);
    let window = (lifetime / 20).min(MAX_JITTER);
    let window_ms = window.num_milliseconds().max(1) as u64;
    let jitter = Duration::milliseconds((seed % window_ms) as i64);
    // Never schedule before the issue time: that would rotate in a loop.
    (expires - margin - jitter).max(issued)
}

/// How long to wait from `now` until `at`, never less than [`MIN_REQUEUE`].
pub fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> StdDuration {
    (at - now).to_std().unwrap_or_default().max(MIN_REQUEUE)
}

/// Exponential backoff with "equal jitter": half the step is fixed, half random (`rand01` in
/// [0, 1)), so retries from many resources spread out but never collapse to zero.
pub fn backoff(attempt: u32, base: StdDuration, max: StdDuration, rand01: f64) -> StdDuration {
    let step = base
        .saturating_mul(2u32.saturating_pow(attempt.min(30)))
        .min(max);
    let half = step / 2;
    // NaN would make `mul_f64` panic; treat anything odd as "no jitter".
    let r = if rand01.is_finite() {
        rand01.clamp(0.0, 1.0)
    } else {
        0.0
    };
    (half + half.mul_f64(r)).max(MIN_REQUEUE.min(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn default_margin_is_half_the_lifetime() {
        let at = refresh_at(t0(), t0() + Duration::hours(12), None, 0);
        assert_eq!(at, t0() + Duration::hours(6));
    }

    #[test]
    fn requested_margin_is_honoured_and_capped() {
        let six_h = StdDuration::from_secs(6 * 3600);
        let at = refresh_at(
            t0(),
            t0() + Duration::hours(12),
            Some(StdDuration::from_secs(3 * 3600)),
            0,
        );
        assert_eq!(at, t0() + Duration::hours(9));
        // A 20 s token with a 6h margin must not rotate in a loop: capped at 90% of lifetime.
        let at = refresh_at(t0(), t0() + Duration::seconds(20), Some(six_h), 0);
        assert_eq!(at, t0() + Duration::seconds(2));
    }

    #[test]
    fn jitter_is_bounded_stable_and_spreads() {
        let expires = t0() + Duration::hours(12);
        let plain = refresh_at(t0(), expires, None, 0);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let seed = jitter_seed(&format!("uid-{i}"));
            let at = refresh_at(t0(), expires, None, seed);
            assert!(at <= plain && plain - at < Duration::minutes(5));
            assert_eq!(
                at,
                refresh_at(t0(), expires, None, seed),
                "stable for the same uid"
            );
            seen.insert(at.timestamp());
        }
        assert!(
            seen.len() > 200,
            "1000 resources spread over many seconds, got {}",
            seen.len()
        );
    }

    #[test]
    fn odd_tokens_never_schedule_in_the_past_of_issue() {
        assert_eq!(refresh_at(t0(), t0(), None, 7), t0());
        assert_eq!(refresh_at(t0(), t0() - Duration::hours(1), None, 7), t0());
    }

    #[test]
    fn until_has_a_floor() {
        assert_eq!(until(t0(), t0() - Duration::hours(1)), MIN_REQUEUE);
        assert_eq!(
            until(t0(), t0() + Duration::seconds(30)),
            StdDuration::from_secs(30)
        );
    }

    #[test]
    fn refresh_before_outside_the_token_lifetime_is_reported() {
        assert_eq!(
            RefreshBefore::parse("6h").unwrap().get(),
            StdDuration::from_secs(6 * 3600)
        );
        for bad in ["12h", "13h", "0s", "soon"] {
            assert_eq!(
                RefreshBefore::parse(bad).unwrap_err().label(),
                "InvalidSpec",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_rotation_is_the_schedule_of_one_resource() {
        let expires = t0() + Duration::hours(12);
        let rotation = Rotation::new(None, "uid-1");
        assert_eq!(
            rotation.due_at(t0(), expires),
            refresh_at(t0(), expires, None, jitter_seed("uid-1"))
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = StdDuration::from_secs(1);
        let max = StdDuration::from_secs(300);
        assert_eq!(
            backoff(0, base, max, 0.0),
            StdDuration::from_millis(500).max(MIN_REQUEUE)
        );
        assert_eq!(backoff(3, base, max, 0.0), StdDuration::from_secs(4));
        assert_eq!(backoff(3, base, max, 0.999), StdDuration::from_millis(7996));
        assert_eq!(backoff(40, base, max, 0.0), StdDuration::from_secs(150));
        assert!(backoff(40, base, max, 1.0) <= max);
        assert_eq!(backoff(3, base, max, f64::NAN), StdDuration::from_secs(4));
    }
}
