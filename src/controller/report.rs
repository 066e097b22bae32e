//! Where a Secret is reported: the status each kind shows, derived purely from what a reconcile
//! concluded (the status writer in `k8s::status` applies it).
//!
//! Everything here is deterministic for a given outcome (times are whole seconds,
//! `lastTransitionTime` is carried over while the condition's status stays the same), so an
//! unchanged outcome compares equal and causes no write and no watch event.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use super::plan::Failure;
use crate::{
    Error,
    aws::source::Source,
    crd::{ClusterEcrPublicPullSecretStatus, EcrPublicPullSecretStatus, NamespaceFailure},
    pull_secret::SecretState,
};

/// Condition type reported on every resource.
pub const READY: &str = "Ready";
/// The Ready condition's status values.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
/// The Ready reason while every Secret holds a valid token; otherwise the reason is the error's
/// label ([`Error::label`]).
pub const TOKEN_VALID: &str = "TokenValid";
/// Failures listed on a cluster resource's status; the counts cover the rest.
const MAX_LISTED_FAILURES: usize = 20;

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

/// The Ready condition, keeping `lastTransitionTime` from `previous` when its status did not
/// change.
pub fn condition(
    ready: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: DateTime<Utc>,
) -> Condition {
    let status = if ready { TRUE } else { FALSE };
    let last_transition_time = ready_condition(previous)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| k8s_time(now));
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The namespaced kind's status for `report`.
pub fn build(
    report: &Report,
    generation: Option<i64>,
    current: Option<&EcrPublicPullSecretStatus>,
    now: DateTime<Utc>,
) -> EcrPublicPullSecretStatus {
    let previous = current.map_or(&[][..], |s| &s.conditions);
    let (ready, reason, message) = (report.ready, &report.reason, &report.message);
    EcrPublicPullSecretStatus {
        conditions: vec![condition(ready, reason, message, generation, previous, now)],
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

/// The Ready condition's reason among these, if any.
pub fn ready_reason(conditions: &[Condition]) -> Option<&str> {
    ready_condition(conditions).map(|c| c.reason.as_str())
}

/// Whether the Ready condition among these is True.
pub fn is_ready(conditions: &[Condition]) -> bool {
    ready_condition(conditions).is_some_and(|c| c.status == TRUE)
}

/// Ready: the Secret holds a token valid until `expires_at`, renewed at `next`.
pub fn ready(
    secret_name: &str,
    expires_at: Option<DateTime<Utc>>,
    refreshed_at: Option<DateTime<Utc>>,
    next: DateTime<Utc>,
) -> Report {
    Report {
        ready: true,
        reason: TOKEN_VALID.into(),
        // The times are the status's own fields (and `kubectl get` columns); said again here
        // they would be copied into every cached resource, and change the message each rotation.
        message: format!("Secret {secret_name} holds a valid token"),
        secret_name: secret_name.into(),
        expires_at,
        refreshed_at,
        next_refresh: Some(next),
    }
}

/// Ready=False for a due Secret that got no token: what it still holds, and when that was due.
pub fn failed(secret_name: &str, failure: &Failure, now: DateTime<Utc>) -> Report {
    let kept = &failure.kept;
    let message = if failure.by_source.is_empty() {
        failure_message(&failure.error, kept, failure.exists, now)
    } else {
        by_source_message(failure, now)
    };
    Report {
        ready: false,
        reason: failure.error.label().into(),
        message,
        secret_name: secret_name.into(),
        expires_at: kept.expires_at,
        refreshed_at: kept.refreshed_at,
        next_refresh: failure.next,
    }
}

/// Ready=False for an error that stopped the reconcile before the Secret: what the status knew
/// about the token stays (a conflict or a bad spec does not change the Secret).
pub fn problem(
    error: &Error,
    secret_name: &str,
    current: Option<&EcrPublicPullSecretStatus>,
) -> Report {
    let known = |t: Option<&Time>| t.and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0));
    Report {
        ready: false,
        reason: error.label().into(),
        message: error.to_string(),
        secret_name: secret_name.into(),
        expires_at: known(current.and_then(|s| s.expires_at.as_ref())),
        refreshed_at: known(current.and_then(|s| s.last_refresh_time.as_ref())),
        next_refresh: None,
    }
}

/// What a failed renewal left in the Secret, said the same way on every retry so retries do not
/// rewrite the status: `kept` is its token state, `exists` whether there is a Secret at all.
fn failure_message(error: &Error, kept: &SecretState, exists: bool, now: DateTime<Utc>) -> String {
    let mut message = error.to_string();
    match kept.expires_at {
        Some(exp) if exp > now => message.push_str(&format!(
            ". The previous token stays in the Secret until it expires at {}",
            exp.to_rfc3339()
        )),
        Some(exp) => message.push_str(&format!(
            ". The token in the Secret expired at {} (onExpiry: Keep)",
            exp.to_rfc3339()
        )),
        None if exists => message.push_str(
            ". The Secret holds no token (onExpiry: RemoveAuth), so pulls fall back to anonymous until renewal succeeds",
        ),
        None => {}
    }
    message
}

/// Each failing source, what it failed with, and what the Secret still holds of it: said the
/// same way on every retry. The first failure's label is the reason.
fn by_source_message(failure: &Failure, now: DateTime<Utc>) -> String {
    let said: Vec<String> = (failure.by_source.iter())
        .map(|(source, error)| {
            let held = match failure.kept.stamp(source) {
                Some(s) if s.expires_at > now => format!(
                    "; its previous token stays in the Secret until it expires at {}",
                    s.expires_at.to_rfc3339()
                ),
                Some(s) => format!(
                    "; its token in the Secret expired at {} (onExpiry: Keep)",
                    s.expires_at.to_rfc3339()
                ),
                None if *source == Source::Public => {
                    "; the Secret holds no token for it, so its pulls are anonymous".into()
                }
                None => "; the Secret holds no token for its registries".into(),
            };
            format!("{source}: {error}{held}")
        })
        .collect();
    let others = if failure.kept.stamps().count() > failure.by_source.len() {
        ". The other registries' tokens are written and rotated as usual"
    } else {
        ""
    };
    format!("{}{others}", said.join(". "))
}

/// One selected namespace of a cluster resource, after its reconcile.
#[derive(Debug)]
pub enum Namespace {
    /// Its Secret holds a token expiring at `expires`, due at `next`.
    Ready {
        expires: Option<DateTime<Utc>>,
        next: DateTime<Utc>,
    },
    /// It failed: the stable reason and what to do.
    Failed { reason: String, message: String },
}

impl Namespace {
    pub fn ready(expires: Option<DateTime<Utc>>, next: DateTime<Utc>) -> Self {
        Namespace::Ready { expires, next }
    }

    /// Failed with `error`.
    pub fn failed(error: &Error) -> Self {
        Namespace::Failed {
            reason: error.label().into(),
            message: error.to_string(),
        }
    }

    /// A source gave no token: with several sources, each failing one is named.
    pub fn sources_failed(failure: &Failure, now: DateTime<Utc>) -> Self {
        if failure.by_source.is_empty() {
            return Self::failed(&failure.error);
        }
        Namespace::Failed {
            reason: failure.error.label().into(),
            message: by_source_message(failure, now),
        }
    }
}

/// The Ready condition among `after` when its status or reason differs from the one among
/// `before`: what deserves an Event.
pub fn ready_changed<'a>(before: &[Condition], after: &'a [Condition]) -> Option<&'a Condition> {
    let before = ready_condition(before).map(|c| (&c.status, &c.reason));
    ready_condition(after).filter(|c| before != Some((&c.status, &c.reason)))
}

/// A cluster resource's status for these namespaces (by name), whose Secrets are written as
/// `secret_name`, and its earliest refresh time.
pub fn cluster(
    generation: Option<i64>,
    secret_name: &str,
    current: Option<&ClusterEcrPublicPullSecretStatus>,
    namespaces: &BTreeMap<String, Namespace>,
    now: DateTime<Utc>,
) -> (ClusterEcrPublicPullSecretStatus, Option<DateTime<Utc>>) {
    let Tally {
        ready,
        mut failures,
        expires,
        next,
    } = tally(namespaces);
    let (selected, failed) = (namespaces.len(), failures.len());
    let (reason, message) = match failures.first() {
        None => (
            TOKEN_VALID.to_owned(),
            format!("{ready} of {selected} selected namespaces hold a valid token"),
        ),
        Some(first) => (
            first.reason.clone(),
            format!(
                "{failed} of {selected} selected namespaces failed; first: {}: {}",
                first.namespace, first.message
            ),
        ),
    };
    failures.truncate(MAX_LISTED_FAILURES);
    let previous = current.map_or(&[][..], |s| &s.conditions);
    let status = ClusterEcrPublicPullSecretStatus {
        conditions: vec![condition(
            failed == 0,
            &reason,
            &message,
            generation,
            previous,
            now,
        )],
        observed_generation: generation,
        selected_namespaces: i32::try_from(selected).unwrap_or(i32::MAX),
        ready_namespaces: ready,
        failed_namespaces: i32::try_from(failed).unwrap_or(i32::MAX),
        failures,
        expires_at: expires.map(k8s_time),
        next_refresh_time: next.map(k8s_time),
        secret_name: Some(secret_name.to_owned()),
    };
    (status, next)
}

/// The namespaces counted: how many are ready, which failed (by name), the earliest expiry and
/// refresh time.
struct Tally {
    ready: i32,
    failures: Vec<NamespaceFailure>,
    expires: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
}

fn tally(namespaces: &BTreeMap<String, Namespace>) -> Tally {
    let earliest = |a: Option<DateTime<Utc>>, b: DateTime<Utc>| Some(a.map_or(b, |a| a.min(b)));
    let mut t = Tally {
        ready: 0,
        failures: Vec::new(),
        expires: None,
        next: None,
    };
    for (ns, outcome) in namespaces {
        match outcome {
            Namespace::Ready { expires, next } => {
                t.ready += 1;
                if let Some(e) = *expires {
                    t.expires = earliest(t.expires, e);
                }
                t.next = earliest(t.next, *next);
            }
            Namespace::Failed { reason, message } => t.failures.push(NamespaceFailure {
                namespace: ns.clone(),
                reason: reason.clone(),
                message: message.clone(),
            }),
        }
    }
    t
}

/// A cluster resource that cannot be acted on: Ready=False with the error's reason; the counts
/// stay as last reported, since its Secrets are left as they are.
pub fn cluster_problem(
    error: &Error,
    generation: Option<i64>,
    current: Option<&ClusterEcrPublicPullSecretStatus>,
    now: DateTime<Utc>,
) -> ClusterEcrPublicPullSecretStatus {
    let previous = current.map_or(&[][..], |s| &s.conditions);
    let message = error.to_string();
    ClusterEcrPublicPullSecretStatus {
        conditions: vec![condition(
            false,
            error.label(),
            &message,
            generation,
            previous,
            now,
        )],
        observed_generation: generation,
        ..current.cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_ready_message_leaves_the_times_to_the_status_fields() {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        let first = ready(
            "s",
            Some(t(1_800_043_200)),
            Some(t(1_800_000_000)),
            t(1_800_021_600),
        );
        let rotated = ready(
            "s",
            Some(t(1_800_064_800)),
            Some(t(1_800_021_600)),
            t(1_800_043_200),
        );
        assert_eq!(first.message, "Secret s holds a valid token");
        assert_eq!(
            first.message, rotated.message,
            "a rotation changes the fields only"
        );
        assert_ne!(first.expires_at, rotated.expires_at);
    }

    #[test]
    fn transition_moves_the_transition_time() {
        let t1 = DateTime::from_timestamp(1_800_000_010, 0).unwrap();
        let t2 = DateTime::from_timestamp(1_800_000_500, 0).unwrap();
        let first = build(&report(true), Some(1), None, t1);
        let failed = build(&report(false), Some(1), Some(&first), t2);
        assert_eq!(failed.conditions[0].status, "False");
        assert_eq!(failed.conditions[0].last_transition_time, k8s_time(t2));
        assert_eq!(ready_reason(&failed.conditions), Some("AccessDenied"));
    }

    #[test]
    fn a_cluster_status_counts_namespaces_and_names_the_first_failure() {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        let conflict = Error::SecretConflict {
            namespace: "b".into(),
            name: "s".into(),
        };
        let namespaces = BTreeMap::from([
            (
                "a".to_owned(),
                Namespace::Ready {
                    expires: Some(t(200)),
                    next: t(100),
                },
            ),
            ("b".to_owned(), Namespace::failed(&conflict)),
            (
                "c".to_owned(),
                Namespace::Ready {
                    expires: Some(t(150)),
                    next: t(90),
                },
            ),
        ]);
        let (status, next) = cluster(Some(3), "s", None, &namespaces, t(1));
        assert_eq!(next, Some(t(90)));
        assert_eq!(status.expires_at, Some(k8s_time(t(150))));
        assert_eq!(
            (
                status.selected_namespaces,
                status.ready_namespaces,
                status.failed_namespaces
            ),
            (3, 2, 1)
        );
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (FALSE, "SecretConflict")
        );
        assert!(
            ready
                .message
                .starts_with("1 of 3 selected namespaces failed; first: b: ")
        );
        let problem = cluster_problem(
            &Error::InvalidSpec("x".into()),
            Some(4),
            Some(&status),
            t(2),
        );
        assert_eq!(problem.selected_namespaces, 3, "counts kept");
        assert_eq!(problem.conditions[0].reason, "InvalidSpec");
        assert_eq!(problem.observed_generation, Some(4));
    }
}
