//! Where a Secret is planned: from what is known about it and the token fetch's answer alone,
//! what to do with it. Pure: no clock (the time is passed in), no I/O.
//!
//! A fresh Secret costs nothing: no AWS call, no write, a requeue at its refresh time. A due
//! Secret gets a token (one AWS call per identity per rotation, whoever asks) and is written,
//! unless it already holds exactly that token; without a token it keeps what it has until that
//! expires, and then `onExpiry` applies (an expired token is worse than none).

use chrono::{DateTime, Utc};

use crate::{
    Error, aws::token::Token, crd::OnExpiry, pull_secret::SecretState, schedule::Rotation,
};

/// What the operator found where a Secret should be.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// No Secret of that name.
    Absent,
    /// Our Secret, holding this (as far as its metadata says) at this resourceVersion.
    Ours { state: SecretState, version: String },
    /// A Secret of that name that another owner (or a person) wrote: never touched.
    Theirs,
}

/// What a write is conditional on: the Secret must still be what the plan was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// There was no Secret: the write may only create one.
    Absent,
    /// Our Secret at this resourceVersion: the write may only change that.
    Version(String),
}

/// What became of one Secret in a sync.
#[derive(Debug)]
pub enum Outcome {
    /// It holds a token that is not due (or exactly the one fetched): nothing was written.
    Fresh {
        state: SecretState,
        next: DateTime<Utc>,
    },
    /// A token was written over `before`.
    Written {
        token: Token,
        next: DateTime<Utc>,
        before: SecretState,
    },
    /// No token could be obtained.
    Failed(Failure),
}

/// A due Secret that got no token.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    /// The token state left in the Secret (emptied when `removed`).
    pub kept: SecretState,
    /// When that token would have been due.
    pub next: Option<DateTime<Utc>>,
    /// The expired token was removed (`onExpiry: RemoveAuth`).
    pub removed: bool,
    /// There is a Secret at all.
    pub exists: bool,
}

/// What a Secret needs before any token is fetched.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// It holds a token that is not due, written with the current settings: nothing to do.
    Fresh {
        state: SecretState,
        next: DateTime<Utc>,
    },
    /// It needs a token: absent, due, or written with other settings.
    Due(Due),
    /// Someone else's Secret.
    Conflict,
}

/// A Secret that needs a token.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// What it holds now.
    pub state: SecretState,
    /// What its write is conditional on.
    pub precondition: Precondition,
}

impl Due {
    /// Whether it exists at all.
    pub fn exists(&self) -> bool {
        self.precondition != Precondition::Absent
    }
}

/// The state of a Secret that holds nothing the operator wrote.
pub fn empty() -> SecretState {
    SecretState {
        expires_at: None,
        refreshed_at: None,
        config_hash: None,
    }
}

/// When the token `state` holds is due, if it holds one.
pub fn due_at(state: &SecretState, rotation: &Rotation) -> Option<DateTime<Utc>> {
    match (state.refreshed_at, state.expires_at) {
        (Some(issued), Some(expires)) => Some(rotation.due_at(issued, expires)),
        _ => None,
    }
}

/// Plans a Secret whose settings fingerprint should be `hash`.
pub fn plan(observed: Observed, hash: &str, rotation: &Rotation, now: DateTime<Utc>) -> Plan {
    let (state, precondition) = match observed {
        Observed::Theirs => return Plan::Conflict,
        Observed::Absent => (empty(), Precondition::Absent),
        Observed::Ours { state, version } => (state, Precondition::Version(version)),
    };
    match due_at(&state, rotation) {
        Some(next) if next > now && state.config_hash.as_deref() == Some(hash) => {
            Plan::Fresh { state, next }
        }
        _ => Plan::Due(Due {
            state,
            precondition,
        }),
    }
}

/// What asking for a token concluded.
#[derive(Debug)]
pub enum Fetch {
    /// A token usable until the Secrets' next due time.
    Token(Token),
    /// None: the identity or AWS refused. The Secrets keep what they hold until it expires.
    Refused(Error),
}

/// What to do with a due Secret once the token fetch has answered.
#[derive(Debug, Clone)]
pub enum Step<'a> {
    /// It already holds exactly this token and content: writing it again would be a wasted (if
    /// idempotent) write.
    Keep { next: DateTime<Utc> },
    /// Write the token; the next rotation is at `next`.
    Write {
        token: &'a Token,
        next: DateTime<Utc>,
    },
    /// No token, and the one held has expired with `onExpiry: RemoveAuth`: empty the Secret so
    /// that pulls fall back to anonymous.
    RemoveAuth { error: &'a Error },
    /// No token: leave the Secret as it is.
    Leave { error: &'a Error },
}

/// Decides a due Secret's step, `state` being what it holds.
pub fn step<'a>(
    state: &SecretState,
    fetched: &'a Fetch,
    hash: &str,
    rotation: &Rotation,
    on_expiry: OnExpiry,
    now: DateTime<Utc>,
) -> Step<'a> {
    let error = match fetched {
        Fetch::Token(token) => {
            let next = rotation.due_at(token.issued_at, token.expires_at);
            if *state == SecretState::of(token, hash) {
                return Step::Keep { next };
            }
            return Step::Write { token, next };
        }
        Fetch::Refused(error) => error,
    };
    let expired = state.expires_at.is_some_and(|e| e <= now);
    if expired && on_expiry == OnExpiry::RemoveAuth {
        Step::RemoveAuth { error }
    } else {
        Step::Leave { error }
    }
}

/// Why a Secret was written; it decides the Event reason and whether there is an Event at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The Secret held no token (new, or emptied by `onExpiry: RemoveAuth`).
    First,
    /// The token was due.
    Rotation,
    /// The spec changed what the Secret must hold (registries, template, identity).
    Reconfigured,
}

impl Write {
    /// `spec_edited`: the resource's generation is not the one its status last reported. A
    /// content change without an edit (an annotation stripped by another tool, a new operator
    /// version hashing differently) is rewritten quietly, like a rotation: it may concern every
    /// resource at once.
    pub fn of(state: &SecretState, hash: &str, spec_edited: bool) -> Self {
        if state.expires_at.is_none() {
            Write::First
        } else if spec_edited && state.config_hash.as_deref() != Some(hash) {
            Write::Reconfigured
        } else {
            Write::Rotation
        }
    }

    /// Event reason and the verb of its note.
    pub fn reason(self) -> (&'static str, &'static str) {
        match self {
            Write::First => ("Written", "written"),
            Write::Rotation => ("Rotated", "rotated"),
            Write::Reconfigured => ("Updated", "updated for the changed spec"),
        }
    }
}

/// Whether a Secret write deserves a Normal Event: the first write, a rewrite for a changed spec
/// and a recovery always; a routine rotation only when asked for. Those come for every resource
/// every rotation, each an Event for the API server to write and store; the status and metrics
/// show rotations.
pub fn worth_an_event(why: Write, was_ready: bool, rotation_events: bool) -> bool {
    why != Write::Rotation || !was_ready || rotation_events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::token::test_token;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn held(hash: &str) -> SecretState {
        SecretState {
            expires_at: Some(t(43_200)),
            refreshed_at: Some(t(0)),
            config_hash: Some(hash.into()),
        }
    }

    #[test]
    fn a_secret_is_fresh_only_before_its_refresh_time_and_with_the_same_settings() {
        let rotation = Rotation::new(None, "uid");
        let next = rotation.due_at(t(0), t(43_200));
        let ours = || Observed::Ours {
            state: held("h"),
            version: "7".into(),
        };
        assert_eq!(
            plan(ours(), "h", &rotation, next - chrono::Duration::seconds(1)),
            Plan::Fresh {
                state: held("h"),
                next
            }
        );
        let due = || {
            Plan::Due(Due {
                state: held("h"),
                precondition: Precondition::Version("7".into()),
            })
        };
        assert_eq!(plan(ours(), "h", &rotation, next), due(), "due");
        assert_eq!(
            plan(ours(), "other", &rotation, t(1)),
            due(),
            "settings changed"
        );
        assert_eq!(
            plan(Observed::Absent, "h", &rotation, t(1)),
            Plan::Due(Due {
                state: empty(),
                precondition: Precondition::Absent,
            })
        );
        assert_eq!(plan(Observed::Theirs, "h", &rotation, t(1)), Plan::Conflict);
    }

    #[test]
    fn without_a_token_the_secret_is_emptied_only_once_expired_and_asked_to() {
        let rotation = Rotation::new(None, "");
        let fetched = Fetch::Refused(Error::Transient {
            detail: "x".into(),
            cause: None,
        });
        let failed = |now, on_expiry| step(&held("h"), &fetched, "h", &rotation, on_expiry, now);
        let leave = |s: Step| matches!(s, Step::Leave { error } if error.label() == "Transient");
        assert!(
            leave(failed(t(43_199), OnExpiry::RemoveAuth)),
            "not expired yet"
        );
        assert!(matches!(
            failed(t(43_200), OnExpiry::RemoveAuth),
            Step::RemoveAuth { .. }
        ));
        assert!(leave(failed(t(43_200), OnExpiry::Keep)), "onExpiry: Keep");
        let nothing = step(
            &empty(),
            &fetched,
            "h",
            &rotation,
            OnExpiry::RemoveAuth,
            t(1),
        );
        assert!(leave(nothing), "nothing held, nothing to empty");
    }

    #[test]
    fn a_token_is_written_unless_the_secret_already_holds_it() {
        let rotation = Rotation::new(None, "");
        let token = test_token("pw", t(100), chrono::Duration::hours(12));
        let next = rotation.due_at(token.issued_at, token.expires_at);
        let (now, fetched) = (t(200), Fetch::Token(token.clone()));
        let written = step(&held("h"), &fetched, "h", &rotation, OnExpiry::Keep, now);
        assert!(matches!(written, Step::Write { token: t, next: n } if *t == token && n == next));
        let same = SecretState::of(&token, "h");
        let kept = step(&same, &fetched, "h", &rotation, OnExpiry::Keep, now);
        assert!(matches!(kept, Step::Keep { next: n } if n == next));
    }

    #[test]
    fn a_write_is_named_for_what_made_it_necessary() {
        let t = |s: i64| DateTime::from_timestamp(s, 0);
        let held = |hash: &str| SecretState {
            expires_at: t(43_200),
            refreshed_at: t(0),
            config_hash: Some(hash.into()),
        };
        let empty = SecretState {
            expires_at: None,
            refreshed_at: None,
            config_hash: Some("h".into()),
        };
        assert_eq!(Write::of(&empty, "h", false), Write::First);
        assert_eq!(Write::of(&held("h"), "h", false), Write::Rotation);
        assert_eq!(
            Write::of(&held("h"), "h", true),
            Write::Rotation,
            "edit, same content"
        );
        assert_eq!(Write::of(&held("old"), "h", true), Write::Reconfigured);
        assert_eq!(
            Write::of(&held("old"), "h", false),
            Write::Rotation,
            "content differs without an edit"
        );
    }

    #[test]
    fn routine_rotations_are_quiet_unless_asked_for() {
        assert!(worth_an_event(Write::First, false, false), "first write");
        assert!(
            worth_an_event(Write::Reconfigured, true, false),
            "spec edit"
        );
        assert!(worth_an_event(Write::Rotation, false, false), "recovery");
        assert!(
            !worth_an_event(Write::Rotation, true, false),
            "routine rotation"
        );
        assert!(
            worth_an_event(Write::Rotation, true, true),
            "--rotation-events"
        );
    }
}
