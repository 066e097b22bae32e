//! The one sync, for both kinds, read top to bottom: check what the schema cannot, observe every
//! Secret the resource targets (I/O), plan each (pure), fetch one token if any is due, decide
//! each due Secret's step (pure) and write it (I/O), drop the Secrets no longer targeted, report
//! (pure, then the status write). The kinds differ only where [`PullSecretKind`]
//! says (one target namespace or many, an ownerReference or a label, their status's shape).
//!
//! A fresh Secret costs nothing: no AWS call, no write, a requeue at its refresh time. However
//! many Secrets are due, the token comes from the per-identity cache in one fetch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use kube::runtime::{controller::Action, events::EventType, reflector::ObjectRef};
use tracing::{debug, info, warn};

use super::{
    builder::Reconciler,
    kinds::{Found, PullSecretKind},
    plan::{self, Due, Entry, Failure, Fetch, Outcome, Plan, Precondition, Write},
    report,
    secret_io::{At, Desired},
    spec,
};
use crate::{
    Error,
    admin::metrics::Reconciled,
    aws::source::Source,
    crd::OnExpiry,
    k8s::events::Repeats,
    pull_secret::{Entries, SecretState},
    schedule::Rotation,
};

/// Secret writes in flight per sync.
const WRITES_IN_FLIGHT: usize = 16;
/// When to look again at a resource that targets no namespace (nothing expires meanwhile).
const IDLE_RESYNC: Duration = Duration::from_secs(3600);

/// One sync of `obj`: what it did (for metrics) and when to come back.
pub async fn sync<K: PullSecretKind>(
    obj: &K,
    ctx: &Reconciler<K>,
) -> Result<(Reconciled, Action), Error> {
    // Until the caches have listed once, an empty one would read as "no namespace selected" or
    // "Secret absent".
    ctx.synced.wait().await;
    let now = Utc::now();
    // The status as last written (ours, or the watch's newer copy), read once.
    let current = ctx.status.current(obj);

    // 1. What the resource wants, where it wants it.
    let owner = obj.owner()?;
    let settings = obj.settings();
    let namespace = obj.meta().namespace.as_deref();
    let name = obj.meta().name.clone().unwrap_or_default();
    let desired = Desired::new(&name, owner, settings, obj.service_account(), namespace);
    let checked = spec::registries(settings)
        .and_then(|()| {
            spec::rotation(
                settings,
                ctx.settings.default_refresh_before,
                desired.owner.uid(),
            )
        })
        .and_then(|rotation| Ok((rotation, obj.targets(&ctx.namespaces)?)));
    let (rotation, targets) = match checked {
        Ok(checked) => checked,
        Err(error) => return cannot_sync(obj, ctx, &desired, current, error, now).await,
    };
    let secret_name = obj.secret_name();

    // 2. Observe and plan each Secret: fresh ones are done, someone else's are conflicts.
    let mut found = Found::new();
    let mut due = Vec::new();
    for ns in targets {
        let at = At {
            namespace: &ns,
            name: &secret_name,
        };
        let planned = match ctx.secrets.observe(&desired, at).await {
            Ok(observed) => plan::plan(observed, &desired.hash, &desired.sources, &rotation, now),
            Err(error) => {
                found.insert(ns, Err(error));
                continue;
            }
        };
        let outcome = match planned {
            Plan::Fresh { state, next } => Ok(Outcome::Fresh { state, next }),
            Plan::Conflict => Err(Error::SecretConflict {
                namespace: ns.clone(),
                name: secret_name.clone(),
            }),
            Plan::Due(d) => {
                due.push((ns, d));
                continue;
            }
        };
        found.insert(ns, outcome);
    }

    // 3. One token per source for every due Secret; 4. write them.
    if !due.is_empty() {
        let fetched = fetch_in_time(ctx, &desired, &secret_name, &mut due, &rotation, now).await;
        // The fetch may have taken a while: what expired meanwhile is decided at its end.
        let after = Utc::now();
        found.extend(write_due(ctx, &desired, &secret_name, due, &fetched, &rotation, after).await);
    }

    // 5. A kind that removes its Secrets itself removes those no longer targeted (a namespace
    // left the selection, or secretName changed), of the names it wrote them under.
    if K::FINALIZER.is_some() {
        for meta in ctx.secrets.owned(&desired.owner, None) {
            let untargeted = !found.contains_key(meta.namespace()) || meta.name() != secret_name;
            if untargeted && obj.may_remove(current.as_ref(), meta.name()) {
                match ctx.secrets.delete(&meta).await {
                    // Changed since the cache showed it: looked at again on the next pass.
                    Err(changed @ Error::SecretChanged { .. }) => {
                        found.insert(meta.namespace().to_owned(), Err(changed));
                    }
                    other => other?,
                }
            }
        }
    }

    // 6. Report.
    report(obj, ctx, &desired, current, found, now).await
}

/// Asks for the due Secrets' tokens. A hung call can take the whole AWS operation timeout, and an
/// expired token is worse than none: with `onExpiry: RemoveAuth`, a held token that expires
/// before AWS answers leaves its Secret then, while the call goes on (given up, it would cost a
/// second one).
///
/// Only Secrets written for this very spec are raced: what is left of one written for another
/// (an edit that changed the identity, say) would be stamped with this spec's fingerprint and
/// look complete and fresh. Those are decided once AWS answers, as any step.
async fn fetch_in_time(
    ctx: &Reconciler<impl PullSecretKind>,
    desired: &Desired<'_>,
    secret_name: &str,
    due: &mut [(String, Due)],
    rotation: &Rotation,
    now: DateTime<Utc>,
) -> Result<Fetch, Error> {
    let fetch = ctx.secrets.fetch(desired, rotation, now);
    if desired.settings.on_expiry != OnExpiry::RemoveAuth {
        return fetch.await;
    }
    tokio::pin!(fetch);
    let this_spec = Some(desired.hash.as_str());
    let mut racing: Vec<&mut (String, Due)> = (due.iter_mut())
        .filter(|(_, d)| d.state.config_hash.as_deref() == this_spec)
        .collect();
    loop {
        let held = racing.iter().flat_map(|(_, d)| d.state.stamps());
        let Some(expiry) = held.map(|(_, s)| s.expires_at).min() else {
            return fetch.await;
        };
        tokio::select! {
            // A token the cache already holds needs no removal first.
            biased;
            fetched = &mut fetch => return fetched,
            () = tokio::time::sleep((expiry - Utc::now()).to_std().unwrap_or_default()) => {}
        }
        // A few at a time, the fetch polled meanwhile: it holds the identity's single flight,
        // which every other resource of the identity waits on.
        let (answer, failed) = {
            let removals = remove_all_expired(ctx, desired, secret_name, &mut racing);
            tokio::pin!(removals);
            let mut answer = None;
            let failed = loop {
                tokio::select! {
                    failed = &mut removals => break failed,
                    fetched = &mut fetch, if answer.is_none() => answer = Some(fetched),
                }
            };
            (answer, failed)
        };
        if let Some(fetched) = answer {
            return fetched;
        }
        // A Secret that could not be written (changed meanwhile) is decided once AWS answers,
        // on the Secret as it then is; the others go on being raced.
        let mut index = 0..;
        racing.retain(|_| index.next().is_some_and(|i| !failed.contains(&i)));
    }
}

/// [`remove_expired`] for each of `racing`, [`WRITES_IN_FLIGHT`] at a time; the indices of those
/// that could not be written.
async fn remove_all_expired(
    ctx: &Reconciler<impl PullSecretKind>,
    desired: &Desired<'_>,
    secret_name: &str,
    racing: &mut [&mut (String, Due)],
) -> Vec<usize> {
    let mut failed = Vec::new();
    for (c, chunk) in racing.chunks_mut(WRITES_IN_FLIGHT).enumerate() {
        // Futures made in a loop, not by a closure: rustc proves them Send (see `write_due`).
        let mut writes = Vec::with_capacity(chunk.len());
        for (i, entry) in chunk.iter_mut().enumerate() {
            let (ns, due) = &mut **entry;
            let at = At {
                namespace: ns,
                name: secret_name,
            };
            let index = c * WRITES_IN_FLIGHT + i;
            writes.push(async move { (index, remove_expired(ctx, desired, at, due).await) });
        }
        for (index, removed) in futures::future::join_all(writes).await {
            if let Err(error) = removed {
                debug!(%error, "could not remove an expired token before AWS answered");
                failed.push(index);
            }
        }
    }
    failed
}

/// Removes the tokens of `due` that have expired (kept: the others), conditional on the Secret
/// observed; `due` then describes what was written.
async fn remove_expired(
    ctx: &Reconciler<impl PullSecretKind>,
    desired: &Desired<'_>,
    at: At<'_>,
    due: &mut Due,
) -> Result<(), Error> {
    let Some((kept, state)) = plan::unexpired(&due.state, &desired.hash, Utc::now()) else {
        return Ok(());
    };
    let written = ctx.secrets.held(at, &due.precondition, &kept).await?;
    let version = (ctx.secrets)
        .write(desired, at, &due.precondition, &written)
        .await?;
    let Some(version) = version else {
        return Err(Error::SecretChanged {
            namespace: at.namespace.to_owned(),
            name: at.name.to_owned(),
        });
    };
    let (namespace, name) = (at.namespace, at.name);
    warn!(
        namespace,
        name, "token expired before AWS answered: removed (onExpiry: RemoveAuth)"
    );
    *due = Due {
        state,
        precondition: Precondition::Version(version),
        removed: true,
    };
    Ok(())
}

/// Writes the due Secrets with the tokens fetched, a few at a time (or applies `onExpiry` to the
/// entries of sources that gave none).
async fn write_due(
    ctx: &Reconciler<impl PullSecretKind>,
    desired: &Desired<'_>,
    secret_name: &str,
    due: Vec<(String, Due)>,
    fetched: &Result<Fetch, Error>,
    rotation: &Rotation,
    now: DateTime<Utc>,
) -> Vec<(String, Result<Outcome, Error>)> {
    let fetched = match fetched {
        Ok(fetched) => fetched,
        // The identity could not be resolved for an API failure: every due Secret waits.
        Err(error) => {
            return due
                .into_iter()
                .map(|(ns, _)| (ns, Err(error.clone())))
                .collect();
        }
    };
    // Each namespace owned by its future: with borrowed names, rustc cannot prove the stream's
    // futures Send for every lifetime.
    stream::iter(due)
        .map(|(ns, due)| async move {
            let at = At {
                namespace: &ns,
                name: secret_name,
            };
            let outcome = carry_out(ctx, desired, at, due, fetched, rotation, now);
            // Without a token, the fetch's error is the news, not a failed attempt to empty an
            // expired Secret (retried on the next pass).
            let outcome = outcome.await.map_err(|error| match fetched {
                Fetch::Refused(refused) => refused.clone(),
                Fetch::Answered(_) => error,
            });
            (ns, outcome)
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect()
        .await
}

/// Plans what a due Secret gets now that the fetch has answered (pure), and writes it.
async fn carry_out(
    ctx: &Reconciler<impl PullSecretKind>,
    desired: &Desired<'_>,
    at: At<'_>,
    due: Due,
    fetched: &Fetch,
    rotation: &Rotation,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let (wanted, hash) = (&desired.sources, &desired.hash);
    let on_expiry = desired.settings.on_expiry;
    let step = plan::step(&due.state, fetched, wanted, hash, on_expiry, rotation, now);
    let mut after = due.state.clone();
    if let Some(entries) = &step.write {
        let written = entries_of(ctx, at, &due, entries).await?;
        ctx.secrets
            .write(desired, at, &due.precondition, &written)
            .await?;
        after = SecretState::of(&written, hash);
    }
    let next = plan::due_at(&after, rotation);
    let Some((source, error)) = step.failed.first() else {
        let next = next.unwrap_or(now);
        return Ok(match step.write {
            Some(_) => Outcome::Written {
                state: after,
                next,
                before: due.state,
            },
            None => Outcome::Fresh { state: after, next },
        });
    };
    // A resource of ECR Public alone says its error as it always has; with more sources, each
    // failing one is named.
    let named = wanted.len() > 1 || *source != Source::Public;
    let by_source = step.failed.iter().map(|(s, e)| (s.clone(), (*e).clone()));
    Ok(Outcome::Failed(Failure {
        error: (*error).clone(),
        by_source: if named {
            by_source.collect()
        } else {
            Vec::new()
        },
        exists: due.exists() || step.write.is_some(),
        kept: after,
        next,
        removed: step.removed || due.removed,
    }))
}

/// The tokens a step writes: the fresh ones, and those it keeps read back from the Secret.
async fn entries_of(
    ctx: &Reconciler<impl PullSecretKind>,
    at: At<'_>,
    due: &Due,
    entries: &[(Source, Entry<'_>)],
) -> Result<Entries, Error> {
    let held: Vec<_> = (entries.iter())
        .filter_map(|(source, entry)| match entry {
            Entry::Held(stamp) => Some((source.clone(), *stamp)),
            Entry::Fresh(_) => None,
        })
        .collect();
    let mut written = ctx.secrets.held(at, &due.precondition, &held).await?;
    for (source, entry) in entries {
        if let Entry::Fresh(token) = entry {
            written.insert(source.clone(), (*token).clone());
        }
    }
    Ok(written)
}

/// The status, Events and retry delay for what the sync found.
async fn report<K: PullSecretKind>(
    obj: &K,
    ctx: &Reconciler<K>,
    desired: &Desired<'_>,
    current: Option<K::Status>,
    found: Found,
    now: DateTime<Utc>,
) -> Result<(Reconciled, Action), Error> {
    let key = ObjectRef::from_obj(obj);
    // A Secret changed between reading and writing it: its watch event brings this resource back
    // with the new version. Not the resource's problem, so nothing is reported meanwhile; the
    // backoff bounds a race that keeps being lost.
    if let Some(Err(changed)) = found
        .values()
        .find(|o| matches!(o, Err(Error::SecretChanged { .. })))
    {
        debug!(error = %changed, "Secret changed since it was read");
        return Ok((Reconciled::Error, Action::requeue(ctx.backoff.next(&key))));
    }
    announce_writes(obj, ctx, desired, current.as_ref(), &found).await;
    let status = obj.status_for(&found, current.as_ref(), now);
    show(obj, ctx, current.as_ref(), status, &found).await?;

    let ready = |o: &Result<Outcome, Error>| {
        matches!(o, Ok(Outcome::Fresh { .. } | Outcome::Written { .. }))
    };
    let failed = !found.values().all(ready);
    let result = if found
        .values()
        .any(|o| o.as_ref().is_err_and(Error::is_kube))
    {
        Reconciled::Error
    } else if failed {
        Reconciled::Failed
    } else if found
        .values()
        .any(|o| matches!(o, Ok(Outcome::Written { .. })))
    {
        Reconciled::Written
    } else {
        Reconciled::Fresh
    };
    if failed {
        let wait = ctx.backoff.next(&key);
        // Wake up at a kept token's expiry, so that onExpiry is applied on time and not one
        // backoff step late.
        let expiry = found.values().filter_map(|o| match o {
            Ok(Outcome::Failed(failure)) => failure.kept.expires_at.filter(|e| *e > now),
            _ => None,
        });
        let wait = expiry.fold(wait, |w, e| w.min(crate::schedule::until(now, e)));
        return Ok((result, Action::requeue(wait)));
    }
    ctx.backoff.reset(&key);
    let next = found.values().filter_map(|o| match o {
        Ok(Outcome::Fresh { next, .. } | Outcome::Written { next, .. }) => Some(*next),
        _ => None,
    });
    let wait = next
        .min()
        .map_or(IDLE_RESYNC, |n| crate::schedule::until(now, n));
    Ok((result, Action::requeue(wait)))
}

/// The sync stopped before any Secret (a spec the schema let through, a missing uid): said on
/// the resource. While the spec cannot be acted on, its Secrets keep their tokens until they
/// expire; an expired token is worse than none, so `onExpiry` still applies then.
async fn cannot_sync<K: PullSecretKind>(
    obj: &K,
    ctx: &Reconciler<K>,
    desired: &Desired<'_>,
    current: Option<K::Status>,
    error: Error,
    now: DateTime<Utc>,
) -> Result<(Reconciled, Action), Error> {
    warn!(reason = error.label(), %error, "cannot sync");
    let status = obj.problem(&error, current.as_ref(), now);
    show(obj, ctx, current.as_ref(), status, &Found::new()).await?;
    let action = match error {
        Error::InvalidSpec(_) => {
            let owned = ctx.secrets.owned(&desired.owner, desired.namespace);
            ctx.secrets.expire(desired, &owned, now).await?
        }
        _ => Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(obj))),
    };
    Ok((Reconciled::Failed, action))
}

/// Shows `status` on the resource: with a hint at what it asks for and this operator ignores, a
/// Warning Event if it turned to a new failure, and written only if it changed.
async fn show<K: PullSecretKind>(
    obj: &K,
    ctx: &Reconciler<K>,
    current: Option<&K::Status>,
    mut status: K::Status,
    found: &Found,
) -> Result<(), Error> {
    ctx.hint_ignored_fields(obj.settings(), K::conditions_mut(&mut status));
    announce_failure(obj, ctx, current, &status, found).await;
    ctx.status.write(obj, current, status).await?;
    Ok(())
}

/// One Normal Event for the sync's writes, named for the most telling one: a first write, an
/// edit's rewrite, or a rotation (only after a failure, or with `--rotation-events`: at scale a
/// routine rotation is an Event per resource and an API write each).
async fn announce_writes<K: PullSecretKind>(
    obj: &K,
    ctx: &Reconciler<K>,
    desired: &Desired<'_>,
    current: Option<&K::Status>,
    found: &Found,
) {
    let reported = current.and_then(K::observed_generation);
    let spec_edited = reported != obj.meta().generation;
    let mut written = found.values().filter_map(|o| match o {
        Ok(Outcome::Written { state, before, .. }) => Some((state, before)),
        _ => None,
    });
    let Some((state, before)) = written.next() else {
        return;
    };
    let count = 1 + written.count();
    let kinds = found.values().filter_map(|o| match o {
        Ok(Outcome::Written { before, .. }) => Some(Write::of(before, &desired.hash, spec_edited)),
        _ => None,
    });
    // First beats Reconfigured beats Rotation.
    let why = kinds
        .min_by_key(|w| match w {
            Write::First => 0,
            Write::Reconfigured => 1,
            Write::Rotation => 2,
        })
        .unwrap_or(Write::of(before, &desired.hash, spec_edited));
    let (reason, verb) = why.reason();
    let secret = obj.secret_name();
    let expires_at = state.expires_at.unwrap_or(DateTime::<Utc>::MIN_UTC);
    info!(secret = %secret, secrets = count, %expires_at, "{reason}");
    let was_ready = current.is_some_and(|s| report::is_ready(K::conditions(s)));
    if !plan::worth_an_event(why, was_ready, ctx.settings.rotation_events) {
        return;
    }
    let until = expires_at.to_rfc3339();
    let place = if count == 1 {
        String::new()
    } else {
        format!(" in {count} namespaces")
    };
    let note = format!("Secret {secret} {verb}{place}; token valid until {until}");
    // Spec edits can come in a row; first writes and rotations come for every resource.
    let repeats = match why {
        Write::Reconfigured => Repeats::Counted,
        Write::First | Write::Rotation => Repeats::Rare,
    };
    ctx.publish(obj, EventType::Normal, reason, note, repeats)
        .await;
}

/// A Warning Event when the Ready condition turns to a new failure reason (and each time an
/// expired token is removed): what `kubectl describe` shows beside the status.
async fn announce_failure<K: PullSecretKind>(
    obj: &K,
    ctx: &Reconciler<K>,
    current: Option<&K::Status>,
    status: &K::Status,
    found: &Found,
) {
    let Some(ready) = report::ready_condition(K::conditions(status)) else {
        return;
    };
    if ready.status == report::TRUE {
        return;
    }
    let before = current.and_then(|s| report::ready_condition(K::conditions(s)));
    let new_reason = before.is_none_or(|c| c.reason != ready.reason || c.status != ready.status);
    let removed = found
        .values()
        .any(|o| matches!(o, Ok(Outcome::Failed(f)) if f.removed));
    if !new_reason && !removed {
        return;
    }
    warn!(reason = %ready.reason, message = %ready.message, "{} not ready", K::NAME);
    let note = ready.message.clone();
    ctx.publish(
        obj,
        EventType::Warning,
        &ready.reason,
        note,
        Repeats::Counted,
    )
    .await;
}
