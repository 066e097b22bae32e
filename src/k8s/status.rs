//! The status the operator reports, derived purely from what a reconcile decided.
//!
//! Status is written only when it differs from what the object already shows; everything here is
//! deterministic for a given outcome (times are whole seconds, `lastTransitionTime` is carried over
//! while the condition's status stays the same), so an unchanged outcome compares equal and causes
//! no write and no watch event.

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Utc};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use crate::crd::EcrPublicPullSecretStatus;

/// Condition type reported on every resource.
pub const READY: &str = "Ready";

/// Converts the AWS-side chrono time into the Kubernetes `Time` (whole seconds).
pub fn k8s_time(t: DateTime<Utc>) -> Time {
    // Timestamps from chrono are always within jiff's range for any date this operator handles;
    // fall back to the epoch rather than panic on absurd input.
    Time(Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// What the reconcile concluded, in status terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub ready: bool,
    pub reason: String,
    pub message: String,
    pub secret_name: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub next_refresh: Option<DateTime<Utc>>,
}

/// Builds the status for `report`, keeping `lastTransitionTime` from `current` when the
/// condition's status did not change.
pub fn build(
    report: &Report,
    generation: Option<i64>,
    current: Option<&EcrPublicPullSecretStatus>,
    now: DateTime<Utc>,
) -> EcrPublicPullSecretStatus {
    let status = if report.ready { "True" } else { "False" };
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = previous
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| k8s_time(now));
    EcrPublicPullSecretStatus {
        conditions: vec![Condition {
            type_: READY.into(),
            status: status.into(),
            reason: report.reason.clone(),
            message: report.message.clone(),
            observed_generation: generation,
            last_transition_time,
        }],
        observed_generation: generation,
        secret_name: Some(report.secret_name.clone()),
        expires_at: report.expires_at.map(k8s_time),
        last_refresh_time: report.refreshed_at.map(k8s_time),
        next_refresh_time: report.next_refresh.map(k8s_time),
    }
}

/// The Ready condition among these (both kinds' statuses carry conditions).
pub fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == READY)
}

/// The current Ready condition's reason, if any.
pub fn ready_reason(current: Option<&EcrPublicPullSecretStatus>) -> Option<&str> {
    ready_condition(&current?.conditions).map(|c| c.reason.as_str())
}

/// Whether the Ready condition is True.
pub fn is_ready(current: Option<&EcrPublicPullSecretStatus>) -> bool {
    current
        .and_then(|s| ready_condition(&s.conditions))
        .is_some_and(|c| c.status == "True")
}

/// Our own last status write per resource (by UID), until the watch cache shows it. A reconcile
/// that starts before the watch has caught up must compare against what we wrote, or it would
/// write the same status again (and announce a change that already happened).
pub struct LastWritten<S>(Mutex<HashMap<String, S>>);

impl<S> Default for LastWritten<S> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<S: Clone + PartialEq> LastWritten<S> {
    /// The current status: ours while the cache has not shown it yet, else the cached one (also
    /// for an object without a UID, which we never wrote).
    pub fn current(&self, uid: Option<&str>, cached: Option<&S>) -> Option<S> {
        let Some(uid) = uid else {
            return cached.cloned();
        };
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(uid) {
            Some(ours) if cached == Some(ours) => {
                known.remove(uid);
                cached.cloned()
            }
            Some(ours) => Some(ours.clone()),
            None => cached.cloned(),
        }
    }

    pub fn record(&self, uid: String, written: S) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid, written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_last_write_stands_until_the_cache_shows_it() {
        let last = LastWritten::default();
        let u = Some("u");
        assert_eq!(
            last.current(u, Some(&1)),
            Some(1),
            "nothing written: the cache"
        );
        last.record("u".into(), 2);
        assert_eq!(last.current(u, Some(&1)), Some(2), "cache behind: ours");
        assert_eq!(last.current(u, None), Some(2));
        assert_eq!(last.current(None, Some(&1)), Some(1), "no UID: the cache");
        assert_eq!(last.current(u, Some(&2)), Some(2), "cache caught up");
        assert_eq!(
            last.current(u, Some(&3)),
            Some(3),
            "once seen, later changes by others win"
        );
    }

    fn report(ready: bool) -> Report {
        Report {
            ready,
            reason: if ready { "TokenValid" } else { "AccessDenied" }.into(),
            message: "m".into(),
            secret_name: "s".into(),
            expires_at: Some(DateTime::from_timestamp(1_800_043_200, 0).unwrap()),
            refreshed_at: Some(DateTime::from_timestamp(1_800_000_000, 0).unwrap()),
            next_refresh: Some(DateTime::from_timestamp(1_800_021_600, 0).unwrap()),
        }
    }

    #[test]
    fn same_outcome_gives_an_equal_status_so_nothing_is_written() {
        let t1 = DateTime::from_timestamp(1_800_000_010, 0).unwrap();
        let t2 = DateTime::from_timestamp(1_800_000_500, 0).unwrap();
        let first = build(&report(true), Some(2), None, t1);
        let again = build(&report(true), Some(2), Some(&first), t2);
        assert_eq!(first, again);
        assert_eq!(again.conditions[0].last_transition_time, k8s_time(t1));
    }

    #[test]
    fn transition_moves_the_transition_time() {
        let t1 = DateTime::from_timestamp(1_800_000_010, 0).unwrap();
        let t2 = DateTime::from_timestamp(1_800_000_500, 0).unwrap();
        let first = build(&report(true), Some(1), None, t1);
        let failed = build(&report(false), Some(1), Some(&first), t2);
        assert_eq!(failed.conditions[0].status, "False");
        assert_eq!(failed.conditions[0].last_transition_time, k8s_time(t2));
        assert_eq!(ready_reason(Some(&failed)), Some("AccessDenied"));
    }
}
