//! Where a Secret is planned: from what is known about it and the token fetch's answer alone,
//! what to do with it. Pure: no clock (the time is passed in), no I/O.
//!
//! A fresh Secret costs nothing: no AWS call, no write, a requeue at its refresh time. A due
//! Secret gets a token (one AWS call per identity per rotation, whoever asks) and is written,
//! unless it already holds exactly that token; without a token it keeps what it has until that
//! expires, and then `onExpiry` applies (an expired token is worse than none).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{
    Error,
    aws::{source::Source, token::Token},
    crd::OnExpiry,
    pull_secret::{SecretState, Stamp},
    schedule::Rotation,
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
    /// Fresh tokens were written over `before`; the Secret now holds `state`.
    Written {
        state: SecretState,
        next: DateTime<Utc>,
        before: SecretState,
    },
    /// No token could be obtained.
    Failed(Failure),
}

/// A due Secret for which a source gave no token (the others' were written).
#[derive(Debug)]
pub struct Failure {
    /// The first failing source's error: the Ready reason.
    pub error: Error,
    /// Each failing source and why, when the resource asks for more than ECR Public alone
    /// (empty otherwise: `error` says it all).
    pub by_source: Vec<(Source, Error)>,
    /// The token state left in the Secret (emptied of expired entries when `removed`).
    pub kept: SecretState,
    /// When that token would have been due.
    pub next: Option<DateTime<Utc>>,
    /// An expired token was removed (`onExpiry: RemoveAuth`).
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
    /// An expired token was removed from it while AWS had not answered yet.
    pub removed: bool,
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
        sources: Box::default(),
    }
}

/// When the Secret `state` describes is due: when its first token is, if it holds any. All its
/// tokens are renewed together then, so they stay in step (one write per rotation).
pub fn due_at(state: &SecretState, rotation: &Rotation) -> Option<DateTime<Utc>> {
    let due = (state.stamps()).map(|(_, s)| rotation.due_at(s.refreshed_at, s.expires_at));
    due.min()
}

/// Plans a Secret whose settings fingerprint should be `hash`, holding a token of each of
/// `wanted`.
pub fn plan(
    observed: Observed,
    hash: &str,
    wanted: &[Source],
    rotation: &Rotation,
    now: DateTime<Utc>,
) -> Plan {
    let (state, precondition) = match observed {
        Observed::Theirs => return Plan::Conflict,
        Observed::Absent => (empty(), Precondition::Absent),
        Observed::Ours { state, version } => (state, Precondition::Version(version)),
    };
    let complete = wanted.iter().all(|s| state.stamp(s).is_some());
    match due_at(&state, rotation) {
        Some(next) if next > now && complete && state.config_hash.as_deref() == Some(hash) => {
            Plan::Fresh { state, next }
        }
        _ => Plan::Due(Due {
            state,
            precondition,
            removed: false,
        }),
    }
}

/// What asking for tokens concluded.
#[derive(Debug)]
pub enum Fetch {
    /// Each wanted source's token (usable until the Secrets' next due time), or why it has none.
    Answered(BTreeMap<Source, Result<Token, Error>>),
    /// None at all: the identity was refused before any source was asked. The Secrets keep
    /// what they hold until it expires.
    Refused(Error),
}

/// One entry of a Secret to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// A token just fetched.
    Fresh(&'a Token),
    /// The token the Secret holds for a source that failed, kept until it expires (or for good,
    /// with `onExpiry: Keep`): written again from the Secret's own data.
    Held(Stamp),
}

/// What to do with a due Secret once the fetch has answered.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    /// The entries to write, or `None` to leave the Secret as it is: it already holds exactly
    /// these (a write would be wasted), or no source answered and nothing expired.
    pub write: Option<Vec<(Source, Entry<'a>)>>,
    /// The Secret's token state after the step.
    pub state: SecretState,
    /// When that is due.
    pub next: Option<DateTime<Utc>>,
    /// The sources that gave no token, and why.
    pub failed: Vec<(Source, &'a Error)>,
    /// An expired token of a failing source was dropped (`onExpiry: RemoveAuth`), so that pulls
    /// from its registries are not sent a token that can only get 403.
    pub removed: bool,
}

/// Decides a due Secret's step, `state` being what it holds and `wanted` the sources it should.
/// A source that failed keeps its entry until that expires; then `onExpiry` applies to that
/// entry alone, while the others are written as usual.
pub fn step<'a>(
    state: &SecretState,
    fetched: &'a Fetch,
    wanted: &[Source],
    hash: &str,
    on_expiry: OnExpiry,
    rotation: &Rotation,
    now: DateTime<Utc>,
) -> Step<'a> {
    let answers: Vec<(&Source, Result<&Token, &Error>)> = match fetched {
        Fetch::Refused(error) => wanted.iter().map(|s| (s, Err(error))).collect(),
        Fetch::Answered(answers) => answers.iter().map(|(s, a)| (s, a.as_ref())).collect(),
    };
    let (mut entries, mut failed, mut removed) = (Vec::new(), Vec::new(), false);
    for (source, answer) in answers {
        match answer {
            Ok(token) => entries.push((source.clone(), Entry::Fresh(token))),
            Err(error) => {
                failed.push((source.clone(), error));
                match state.stamp(source) {
                    Some(held) if held.expires_at > now || on_expiry == OnExpiry::Keep => {
                        entries.push((source.clone(), Entry::Held(held)));
                    }
                    Some(_) => removed = true,
                    None => {}
                }
            }
        }
    }
    let stamps = entries.iter().map(|(source, entry)| {
        let stamp = match entry {
            Entry::Fresh(t) => Stamp {
                refreshed_at: t.issued_at,
                expires_at: t.expires_at,
            },
            Entry::Held(stamp) => *stamp,
        };
        (source.clone(), stamp)
    });
    let after = SecretState::from_stamps(stamps.collect(), hash);
    let fresh = entries.iter().any(|(_, e)| matches!(e, Entry::Fresh(_)));
    // Without any fresh token, a Secret is only rewritten to drop an expired one: not for a spec
    // change it could only half carry out.
    let write = if fresh || failed.is_empty() {
        after != *state
    } else {
        removed
    };
    Step {
        next: due_at(&after, rotation),
        write: write.then_some(entries),
        state: after,
        failed,
        removed,
    }
}

/// What a due Secret keeps while AWS has not answered once `now` is past some of its tokens'
/// expiry (`onExpiry: RemoveAuth`): the entries still valid and the state they make, or `None`
/// when none has expired. Each entry leaves at its own expiry; a hung call can take the whole
/// AWS operation timeout, and an expired token must not wait for it.
pub fn unexpired(
    state: &SecretState,
    hash: &str,
    now: DateTime<Utc>,
) -> Option<(Vec<(Source, Stamp)>, SecretState)> {
    let (kept, expired): (Vec<_>, Vec<_>) = state.stamps().partition(|(_, s)| s.expires_at > now);
    if expired.is_empty() {
        return None;
    }
    let kept: Vec<(Source, Stamp)> = kept.into_iter().map(|(s, t)| (s.clone(), t)).collect();
    let state = SecretState::from_stamps(kept.clone(), hash);
    Some((kept, state))
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
            sources: Box::default(),
        }
    }

    const PUBLIC: &[Source] = &[Source::Public];

    fn west() -> Source {
        Source::private("us-west-2")
    }

    fn transient() -> Error {
        Error::Transient {
            detail: "x".into(),
            cause: None,
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
        let early = next - chrono::Duration::seconds(1);
        assert_eq!(
            plan(ours(), "h", PUBLIC, &rotation, early),
            Plan::Fresh {
                state: held("h"),
                next
            }
        );
        let due = || {
            Plan::Due(Due {
                state: held("h"),
                precondition: Precondition::Version("7".into()),
                removed: false,
            })
        };
        assert_eq!(plan(ours(), "h", PUBLIC, &rotation, next), due(), "due");
        assert_eq!(
            plan(ours(), "other", PUBLIC, &rotation, t(1)),
            due(),
            "settings changed"
        );
        let both = [Source::Public, west()];
        assert_eq!(
            plan(ours(), "h", &both, &rotation, early),
            due(),
            "a wanted source has no entry (its token was removed)"
        );
        assert_eq!(
            plan(Observed::Absent, "h", PUBLIC, &rotation, t(1)),
            Plan::Due(Due {
                state: empty(),
                precondition: Precondition::Absent,
                removed: false,
            })
        );
        assert_eq!(
            plan(Observed::Theirs, "h", PUBLIC, &rotation, t(1)),
            Plan::Conflict
        );
    }

    #[test]
    fn without_a_token_the_secret_is_emptied_only_once_expired_and_asked_to() {
        let rotation = Rotation::new(None, "");
        let fetched = Fetch::Refused(transient());
        let failed =
            |now, on_expiry| step(&held("h"), &fetched, PUBLIC, "h", on_expiry, &rotation, now);
        let left = |s: &Step| s.write.is_none() && s.failed[0].1.label() == "Transient";
        assert!(
            left(&failed(t(43_199), OnExpiry::RemoveAuth)),
            "not expired yet"
        );
        let removed = failed(t(43_200), OnExpiry::RemoveAuth);
        assert!(removed.removed);
        assert_eq!(removed.write, Some(vec![]), "written empty");
        assert_eq!(removed.state.expires_at, None);
        assert!(left(&failed(t(43_200), OnExpiry::Keep)), "onExpiry: Keep");
        let nothing = step(
            &empty(),
            &fetched,
            PUBLIC,
            "h",
            OnExpiry::RemoveAuth,
            &rotation,
            t(1),
        );
        assert!(left(&nothing), "nothing held, nothing to empty");
    }

    #[test]
    fn a_token_is_written_unless_the_secret_already_holds_it() {
        let rotation = Rotation::new(None, "");
        let token = test_token("pw", t(100), chrono::Duration::hours(12));
        let next = rotation.due_at(token.issued_at, token.expires_at);
        let now = t(200);
        let fetched = Fetch::Answered(BTreeMap::from([(Source::Public, Ok(token.clone()))]));
        let written = step(
            &held("h"),
            &fetched,
            PUBLIC,
            "h",
            OnExpiry::Keep,
            &rotation,
            now,
        );
        assert_eq!(
            written.write,
            Some(vec![(Source::Public, Entry::Fresh(&token))])
        );
        assert_eq!(written.next, Some(next));
        assert!(written.failed.is_empty());
        let same = SecretState::of(&BTreeMap::from([(Source::Public, token.clone())]), "h");
        let kept = step(&same, &fetched, PUBLIC, "h", OnExpiry::Keep, &rotation, now);
        assert_eq!(kept.write, None);
        assert_eq!(kept.next, Some(next));
    }

    /// A Secret of ECR Public and us-west-2, both issued at 0 and expiring at 43,200.
    fn public_and_west(hash: &str) -> SecretState {
        let stamp = Stamp {
            refreshed_at: t(0),
            expires_at: t(43_200),
        };
        SecretState::from_stamps(vec![(Source::Public, stamp), (west(), stamp)], hash)
    }

    #[test]
    fn while_aws_has_not_answered_each_entry_leaves_at_its_own_expiry() {
        let stamp = |expires| Stamp {
            refreshed_at: t(0),
            expires_at: t(expires),
        };
        let state = SecretState::from_stamps(
            vec![(Source::Public, stamp(43_200)), (west(), stamp(30_000))],
            "h",
        );
        assert_eq!(unexpired(&state, "h", t(29_999)), None, "none expired");
        let (kept, after) = unexpired(&state, "h", t(30_000)).expect("us-west-2 expired");
        assert_eq!(kept, vec![(Source::Public, stamp(43_200))]);
        assert_eq!(after.stamp(&west()), None);
        assert_eq!(after.expires_at, Some(t(43_200)));
        let (kept, after) = unexpired(&state, "h", t(43_200)).expect("both expired");
        assert!(kept.is_empty());
        assert_eq!(after.expires_at, None, "the Secret holds no token");
        assert_eq!(unexpired(&empty(), "h", t(43_200)), None, "nothing held");
    }

    #[test]
    fn a_failing_region_keeps_its_entry_until_it_expires_while_the_others_rotate() {
        let rotation = Rotation::new(None, "");
        let wanted = [Source::Public, west()];
        let state = public_and_west("h");
        let token = test_token("pw", t(30_000), chrono::Duration::hours(12));
        let error = transient();
        let fetched = Fetch::Answered(BTreeMap::from([
            (Source::Public, Ok(token.clone())),
            (west(), Err(error)),
        ]));
        let at = |now, on_expiry| step(&state, &fetched, &wanted, "h", on_expiry, &rotation, now);

        // Still valid: the public token is rotated, us-west-2's entry written again as it is.
        let before_expiry = at(t(30_000), OnExpiry::RemoveAuth);
        let held = Stamp {
            refreshed_at: t(0),
            expires_at: t(43_200),
        };
        assert_eq!(
            before_expiry.write,
            Some(vec![
                (Source::Public, Entry::Fresh(&token)),
                (west(), Entry::Held(held))
            ])
        );
        assert_eq!(before_expiry.failed.len(), 1);
        assert_eq!(before_expiry.failed[0].0, west());
        assert_eq!(before_expiry.state.stamp(&west()), Some(held));
        assert_eq!(
            before_expiry.next,
            Some(rotation.due_at(t(0), t(43_200))),
            "due again with the held entry: already past, so the backoff decides"
        );
        assert!(!before_expiry.removed);

        // Expired: onExpiry applies to that entry alone.
        let removed = at(t(43_200), OnExpiry::RemoveAuth);
        assert!(removed.removed);
        assert_eq!(
            removed.write,
            Some(vec![(Source::Public, Entry::Fresh(&token))])
        );
        assert_eq!(removed.state.stamp(&west()), None);
        assert_eq!(removed.state.expires_at, Some(token.expires_at));
        let kept = at(t(43_200), OnExpiry::Keep);
        assert!(!kept.removed);
        assert_eq!(kept.state.stamp(&west()), Some(held));
    }

    #[test]
    fn without_any_fresh_token_nothing_is_rewritten_but_an_expired_entry() {
        let rotation = Rotation::new(None, "");
        let wanted = [Source::Public, west()];
        let fetched = Fetch::Answered(BTreeMap::from([
            (Source::Public, Err(transient())),
            (west(), Err(transient())),
        ]));
        let state = public_and_west("old-settings");
        let at = |now| {
            step(
                &state,
                &fetched,
                &wanted,
                "h",
                OnExpiry::RemoveAuth,
                &rotation,
                now,
            )
        };
        let quiet = at(t(1));
        assert_eq!(quiet.write, None, "not for a spec change alone");
        assert_eq!(quiet.failed.len(), 2);
        let expired = at(t(43_200));
        assert_eq!(expired.write, Some(vec![]));
        assert!(expired.removed);
    }

    #[test]
    fn a_write_is_named_for_what_made_it_necessary() {
        let t = |s: i64| DateTime::from_timestamp(s, 0);
        let held = |hash: &str| SecretState {
            expires_at: t(43_200),
            refreshed_at: t(0),
            config_hash: Some(hash.into()),
            sources: Box::default(),
        };
        let empty = SecretState {
            expires_at: None,
            refreshed_at: None,
            config_hash: Some("h".into()),
            sources: Box::default(),
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
