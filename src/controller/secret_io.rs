//! The Secret I/O of the sync, for both kinds: observe a Secret (watch cache, our own newer
//! write, or the API), fetch a token from the per-identity cache when the [`plan`] says one is
//! due, write (always conditional on what was observed) and delete.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, PartialObjectMeta, Patch, PatchParams, Preconditions},
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};

use tracing::debug;

use super::plan::{Fetch, Observed, Precondition};
use crate::{
    Error,
    aws::{
        cache::{TokenCache, User},
        identity,
        permissions::{Requester, RolePermissions},
        source::Source,
        token::Token,
    },
    crd::{MANAGER, OnExpiry, PullSecretSettings},
    k8s::{
        cached_secret::CachedSecret,
        memo::{Memo, caught_up},
    },
    pull_secret::{self, DATA_KEY, Entries, Owner, SecretState, Stamp},
    schedule::{self, Rotation},
};

/// The resourceVersion a create-only apply names: larger than any etcd revision (an `int64`), so
/// no stored object has it, while the API server, which ignores the version of an object it
/// creates, still accepts it as a number.
pub const CREATE_ONLY: &str = "18446744073709551615";

/// What a resource wants its Secrets to hold, worked out once per reconcile.
pub struct Desired<'a> {
    /// The resource, as a user of its identity's token.
    pub user: User,
    pub owner: Owner,
    pub settings: &'a PullSecretSettings,
    /// `spec.serviceAccountName` (namespaced kind only): the identity, and part of the content
    /// fingerprint.
    pub service_account: Option<&'a str>,
    /// The resource's own namespace, where that ServiceAccount is looked up.
    pub namespace: Option<&'a str>,
    /// Fingerprint of the content (everything but the token).
    pub hash: String,
    /// The token sources its Secrets hold an entry of.
    pub sources: Vec<Source>,
}

impl<'a> Desired<'a> {
    /// For the resource `name` (in `namespace`, when namespaced).
    pub fn new(
        name: &str,
        owner: Owner,
        settings: &'a PullSecretSettings,
        service_account: Option<&'a str>,
        namespace: Option<&'a str>,
    ) -> Self {
        let hash = pull_secret::config_hash(settings, service_account);
        let user = User {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        Self {
            user,
            owner,
            settings,
            service_account,
            namespace,
            hash,
            sources: pull_secret::sources(settings),
        }
    }
}

/// Where one Secret is.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl At<'_> {
    fn key(&self) -> ObjectRef<CachedSecret> {
        ObjectRef::new(self.name).within(self.namespace)
    }
}

/// Our own last write of a Secret: the resourceVersion it produced and the state it holds.
#[derive(Clone)]
struct Written {
    resource_version: Option<String>,
    state: SecretState,
}

/// The Secret I/O of one kind: its watch cache, the token cache, and its own writes.
pub struct SecretIo {
    client: Client,
    cache: Store<CachedSecret>,
    tokens: Arc<TokenCache>,
    permissions: RolePermissions,
    /// Namespace labels, for role rules that select namespaces by label.
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    written: Memo<ObjectRef<CachedSecret>, Written>,
}

impl SecretIo {
    pub fn new(
        client: Client,
        cache: Store<CachedSecret>,
        tokens: Arc<TokenCache>,
        permissions: RolePermissions,
        namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    ) -> Self {
        Self {
            client,
            cache,
            tokens,
            permissions,
            namespaces,
            written: Memo::default(),
        }
    }

    /// Drops writes of Secrets that are gone (their resources were deleted).
    pub fn prune(&self) {
        self.written.prune();
    }

    /// What is where a Secret should be: from the watch cache, corrected by our own latest
    /// write, or from the API when the cache has not seen it (another owner's Secret is not in
    /// the labelled cache at all).
    pub async fn observe(&self, desired: &Desired<'_>, at: At<'_>) -> Result<Observed, Error> {
        let meta = match self.cache.get(&at.key()) {
            Some(meta) => meta,
            None => match self.api(at.namespace).get_metadata_opt(at.name).await? {
                Some(meta) => Arc::new(CachedSecret::from(meta)),
                None => {
                    self.written.forget(&at.key());
                    return Ok(Observed::Absent);
                }
            },
        };
        if !meta.owned_by(&desired.owner) {
            return Ok(Observed::Theirs);
        }
        let (state, version) = self.state_of(&meta)?;
        Ok(Observed::Ours { state, version })
    }

    /// The token state of a Secret and the resourceVersion it holds it at: as read, or our own
    /// newer write.
    pub fn state_of(&self, meta: &CachedSecret) -> Result<(SecretState, String), Error> {
        let observed = &meta.state;
        let shown = |w: &Written| {
            caught_up(w.resource_version.as_deref(), meta.resource_version())
                || w.state == *observed
        };
        let (state, version) = match self.written.unseen(&ObjectRef::from_obj(meta), shown) {
            Some(ours) => (ours.state, ours.resource_version),
            None => (observed.clone(), meta.resource_version().map(str::to_owned)),
        };
        // Every stored object has one; without it a write could not be made conditional.
        let version = version.ok_or_else(|| {
            Error::Internal(format!(
                "Secret {}/{} has no resourceVersion",
                meta.namespace(),
                meta.name()
            ))
        })?;
        Ok((state, version))
    }

    /// A token of each of `desired`'s sources for its identity, from the per-identity cache
    /// (asked at once, so regions answer in parallel), each usable until its own due time; `Err`
    /// only when resolving the identity hit an API failure.
    pub async fn fetch(
        &self,
        desired: &Desired<'_>,
        rotation: &Rotation,
        now: DateTime<Utc>,
    ) -> Result<Fetch, Error> {
        let request = identity::Request {
            role_arn: desired.settings.role_arn.as_deref(),
            service_account: desired.service_account,
        };
        // Labels only where a rule selects namespaces by them.
        let namespace = desired.namespace.and_then(|ns| {
            let namespaces = self.namespaces.as_ref()?;
            namespaces.get(&ObjectRef::new(ns))
        });
        let requester = match desired.namespace {
            Some(name) => Requester::Namespace {
                name,
                labels: namespace.as_ref().map(|ns| ns.labels()),
            },
            None => Requester::Cluster,
        };
        // Resolved only when a token is needed: a fresh Secret costs no ServiceAccount read.
        let resolved = identity::resolve(&self.client, requester, request, &self.permissions);
        let identity = match resolved.await {
            Ok(identity) => identity,
            Err(e) if e.is_kube() => return Err(e),
            Err(e) => return Ok(Fetch::Refused(e)),
        };
        let usable = |t: &Token| rotation.due_at(t.issued_at, t.expires_at) > now;
        let (user, identity) = (&desired.user, &identity);
        let asked = desired.sources.iter().map(|source| async move {
            let got = self.tokens.get(user, identity, source, usable).await;
            (source.clone(), got.map(|fetched| fetched.token))
        });
        let answers = futures::future::join_all(asked).await;
        Ok(Fetch::Answered(answers.into_iter().collect()))
    }

    /// The tokens the Secret holds for `held` sources (read from its data: the cache keeps no
    /// data), to write again beside fresh ones; a source whose entry is not found is left out.
    /// `SecretChanged` if the Secret is no longer the one observed. Nothing held, nothing read.
    pub async fn held(
        &self,
        at: At<'_>,
        precondition: &Precondition,
        held: &[(Source, Stamp)],
    ) -> Result<Entries, Error> {
        if held.is_empty() {
            return Ok(Entries::new());
        }
        let changed = || Error::SecretChanged {
            namespace: at.namespace.to_owned(),
            name: at.name.to_owned(),
        };
        let Precondition::Version(version) = precondition else {
            return Err(changed());
        };
        let secret = self.api(at.namespace).get_opt(at.name).await?;
        let secret = secret.ok_or_else(changed)?;
        if secret.metadata.resource_version.as_ref() != Some(version) {
            return Err(changed());
        }
        let data = secret.data.as_ref().and_then(|d| d.get(DATA_KEY));
        let config = data.map(|d| d.0.as_slice()).unwrap_or_default();
        let mut entries = Entries::new();
        for (source, stamp) in held {
            let Some((auth, account)) = pull_secret::held_auth(config, source) else {
                debug!(%source, "no entry of a failing source in the Secret to keep");
                continue;
            };
            let token = Token::held(&auth, stamp.refreshed_at, stamp.expires_at, account)?;
            entries.insert(source.clone(), token);
        }
        Ok(entries)
    }

    /// Writes the Secret with server-side apply, holding `entries` (`{"auths":{}}` when empty),
    /// on condition that it is still what was observed (else `SecretChanged`).
    ///
    /// Never a take-over: an apply names the resourceVersion it was planned from, so the API
    /// server refuses it (409) when the Secret was changed, or deleted and created again by
    /// someone else, after it was read. Where no Secret was seen, the apply names a version no
    /// stored object can have ([`CREATE_ONLY`]): it creates the Secret if there still is none and
    /// is refused if one appeared meanwhile, which is `SecretConflict`. (Not a POST: it would
    /// leave the create's fields owned by an `Update` entry of our manager too, and server-side
    /// apply never prunes a field someone else also owns, so a label removed from
    /// `secretTemplate` would stay on the Secret.)
    ///
    /// Returns the resourceVersion written, which a further write in the same sync is
    /// conditional on.
    pub async fn write(
        &self,
        desired: &Desired<'_>,
        at: At<'_>,
        precondition: &Precondition,
        entries: &Entries,
    ) -> Result<Option<String>, Error> {
        let spec = desired.owner.spec(
            at.name,
            at.namespace,
            desired.settings,
            desired.service_account,
        );
        let mut secret = pull_secret::build(&spec, entries);
        secret.metadata.resource_version = Some(match precondition {
            Precondition::Absent => CREATE_ONLY.to_owned(),
            Precondition::Version(version) => version.clone(),
        });
        let params = PatchParams::apply(MANAGER).force();
        let written = match self
            .api(at.namespace)
            .patch(at.name, &params, &Patch::Apply(&secret))
            .await
        {
            Ok(written) => written,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.written.forget(&at.key());
                let (namespace, name) = (at.namespace.to_owned(), at.name.to_owned());
                return Err(match precondition {
                    Precondition::Absent => Error::SecretConflict { namespace, name },
                    Precondition::Version(_) => Error::SecretChanged { namespace, name },
                });
            }
            Err(e) => return Err(e.into()),
        };
        let version = written.metadata.resource_version;
        let written = Written {
            resource_version: version.clone(),
            state: SecretState::from_meta(&secret.metadata),
        };
        self.written.record(at.key(), written);
        Ok(version)
    }

    /// Deletes exactly the Secret that was read, as it was read (uid and resourceVersion): one
    /// changed or recreated since, by anyone, stays, and `SecretChanged` says so (the Secret
    /// watch brings the next reconcile, which looks at it again).
    pub async fn delete(&self, meta: &CachedSecret) -> Result<(), Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid().map(str::to_owned),
                resource_version: meta.resource_version().map(str::to_owned),
            }),
            ..DeleteParams::default()
        };
        match self
            .api(meta.namespace())
            .delete(meta.name(), &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::SecretChanged {
                namespace: meta.namespace().to_owned(),
                name: meta.name().to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The cached Secrets `owner` wrote (in `namespace` only, when given).
    pub fn owned(&self, owner: &Owner, namespace: Option<&str>) -> Vec<Arc<CachedSecret>> {
        self.cache
            .state()
            .into_iter()
            .filter(|s| namespace.is_none_or(|ns| s.namespace() == ns))
            .filter(|s| s.owned_by(owner))
            .collect()
    }

    /// While a spec cannot be acted on, its Secrets keep their tokens until those expire; an
    /// expired token is worse than none, so `onExpiry` still applies then. Returns when to look
    /// again: at the earliest expiry still ahead.
    ///
    /// The whole Secret is emptied at its first entry's expiry: a write is built from the spec,
    /// and this spec is the one that cannot be acted on (its hosts may be what made it invalid),
    /// so no still-valid entry is written under it.
    pub async fn expire(
        &self,
        desired: &Desired<'_>,
        owned: &[Arc<CachedSecret>],
        now: DateTime<Utc>,
    ) -> Result<Action, Error> {
        let mut next: Option<DateTime<Utc>> = None;
        for meta in owned {
            let (state, version) = self.state_of(meta)?;
            let Some(expires) = state.expires_at else {
                continue;
            };
            if expires > now {
                next = Some(next.map_or(expires, |n| n.min(expires)));
            } else if desired.settings.on_expiry == OnExpiry::RemoveAuth {
                let at = At {
                    namespace: meta.namespace(),
                    name: meta.name(),
                };
                let version = Precondition::Version(version);
                self.write(desired, at, &version, &Entries::new()).await?;
            }
        }
        Ok(next.map_or_else(Action::await_change, |n| {
            Action::requeue(schedule::until(now, n))
        }))
    }

    fn api(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }
}
