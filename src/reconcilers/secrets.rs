//! The one reconcile core for a Secret, for both kinds: observe it (watch cache, our own newer
//! write, or the API), fetch a token from the per-identity cache when the [`plan`] says it is
//! due, and write it. The namespaced kind runs it for one Secret, the cluster kind for one per
//! selected namespace with one fetch for all of them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};

use super::plan::{self, Due, Observed, Step};
use crate::{
    Error,
    aws::{
        cache::TokenCache,
        identity::{self, AllowedRoles},
        token::Token,
    },
    crd::{MANAGER, OnExpiry, PullSecretSettings},
    k8s::{cached_secret::CachedSecret, memo::Memo},
    schedule::{self, Rotation},
    secret::{self, Owner, SecretState},
};

type Meta = CachedSecret;

/// What a resource wants its Secrets to hold, worked out once per reconcile.
pub struct Desired<'a> {
    pub owner: Owner,
    pub settings: &'a PullSecretSettings,
    /// `spec.serviceAccountName` (namespaced kind only): the identity, and part of the content
    /// fingerprint.
    pub service_account: Option<&'a str>,
    /// The resource's own namespace, where that ServiceAccount is looked up.
    pub namespace: Option<&'a str>,
    /// Fingerprint of the content (everything but the token).
    pub hash: String,
}

impl<'a> Desired<'a> {
    pub fn new(
        owner: Owner,
        settings: &'a PullSecretSettings,
        service_account: Option<&'a str>,
        namespace: Option<&'a str>,
    ) -> Self {
        let hash = secret::config_hash(settings, service_account);
        Self {
            owner,
            settings,
            service_account,
            namespace,
            hash,
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
    fn key(&self) -> ObjectRef<Meta> {
        ObjectRef::new(self.name).within(self.namespace)
    }
}

/// What one Secret's reconcile concluded.
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

/// Our own last write of a Secret: the resourceVersion it produced and the state it holds.
#[derive(Clone)]
struct Written {
    resource_version: Option<String>,
    state: SecretState,
}

/// The Secret I/O of one kind: its watch cache, the token cache, and its own writes.
pub struct Secrets {
    client: Client,
    cache: Store<Meta>,
    tokens: Arc<TokenCache>,
    allowed: AllowedRoles,
    written: Memo<ObjectRef<Meta>, Written>,
}

impl Secrets {
    pub fn new(
        client: Client,
        cache: Store<Meta>,
        tokens: Arc<TokenCache>,
        allowed: AllowedRoles,
    ) -> Self {
        Self {
            client,
            cache,
            tokens,
            allowed,
            written: Memo::default(),
        }
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
        Ok(Observed::Ours(self.state_of(&meta)))
    }

    /// The token state of a Secret: as read, or our own newer write.
    pub fn state_of(&self, meta: &Meta) -> SecretState {
        let observed = &meta.state;
        let shown = |w: &Written| {
            w.resource_version.as_deref() == meta.resource_version() || w.state == *observed
        };
        match self.written.unseen(&ObjectRef::from_obj(meta), shown) {
            Some(ours) => ours.state,
            None => observed.clone(),
        }
    }

    /// A token for `desired`'s identity, from the per-identity cache, usable until its own due
    /// time. The outer error: resolving the identity hit an API failure (the reconcile stops and
    /// is retried); the inner one: no token (reported; the Secrets keep what they hold).
    pub async fn fetch(
        &self,
        desired: &Desired<'_>,
        rotation: &Rotation,
        now: DateTime<Utc>,
    ) -> Result<Result<Token, Error>, Error> {
        let request = identity::Request {
            role_arn: desired.settings.role_arn.as_deref(),
            service_account: desired.service_account,
        };
        // Resolved only when a token is needed: a fresh Secret costs no ServiceAccount read.
        let namespace = desired.namespace.unwrap_or_default();
        let identity =
            match identity::resolve(&self.client, namespace, request, &self.allowed).await {
                Ok(identity) => identity,
                Err(e) if e.is_kube() => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
        let usable = |t: &Token| rotation.due_at(t.issued_at, t.expires_at) > now;
        Ok(self.tokens.get(&identity, usable).await.map(|f| f.token))
    }

    /// Carries out the step for a due Secret once the fetch has answered.
    pub async fn apply(
        &self,
        desired: &Desired<'_>,
        at: At<'_>,
        due: Due,
        fetched: &Result<Token, Error>,
        rotation: &Rotation,
        now: DateTime<Utc>,
    ) -> Result<Outcome, Error> {
        let on_expiry = desired.settings.on_expiry;
        Ok(
            match plan::step(&due.state, fetched, &desired.hash, rotation, on_expiry, now) {
                Step::Keep { next } => Outcome::Fresh {
                    state: due.state,
                    next,
                },
                Step::Write { token, next } => {
                    self.write(desired, at, Some(token)).await?;
                    Outcome::Written {
                        token: token.clone(),
                        next,
                        before: due.state,
                    }
                }
                Step::RemoveAuth { error } => {
                    self.write(desired, at, None).await?;
                    let kept = SecretState {
                        config_hash: Some(desired.hash.clone()),
                        ..plan::empty()
                    };
                    Outcome::Failed(Failure {
                        error: error.clone(),
                        kept,
                        next: None,
                        removed: true,
                        exists: due.exists,
                    })
                }
                Step::Leave { error } => Outcome::Failed(Failure {
                    error: error.clone(),
                    next: plan::due_at(&due.state, rotation),
                    kept: due.state,
                    removed: false,
                    exists: due.exists,
                }),
            },
        )
    }

    /// Writes the Secret with server-side apply: with `token`, or emptied (`{"auths":{}}`).
    pub async fn write(
        &self,
        desired: &Desired<'_>,
        at: At<'_>,
        token: Option<&Token>,
    ) -> Result<(), Error> {
        let spec = desired.owner.spec(
            at.name,
            at.namespace,
            desired.settings,
            desired.service_account,
        );
        let secret = secret::build(&spec, token);
        let params = PatchParams::apply(MANAGER).force();
        let written = self
            .api(at.namespace)
            .patch(at.name, &params, &Patch::Apply(&secret))
            .await?;
        let written = Written {
            resource_version: written.metadata.resource_version,
            state: SecretState::from_meta(&secret.metadata),
        };
        self.written.record(at.key(), written);
        Ok(())
    }

    /// Deletes exactly the Secret that was read (by uid): one recreated since, by anyone, stays.
    pub async fn delete(&self, meta: &Meta) -> Result<(), Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid().map(str::to_owned),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .api(meta.namespace())
            .delete(meta.name(), &params)
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced (409): the next reconcile looks at the new one.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The cached Secrets `owner` wrote (in `namespace` only, when given).
    pub fn owned(&self, owner: &Owner, namespace: Option<&str>) -> Vec<Arc<Meta>> {
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
    pub async fn expire(
        &self,
        desired: &Desired<'_>,
        owned: &[Arc<Meta>],
        now: DateTime<Utc>,
    ) -> Result<Action, Error> {
        let mut next: Option<DateTime<Utc>> = None;
        for meta in owned {
            let Some(expires) = self.state_of(meta).expires_at else {
                continue;
            };
            if expires > now {
                next = Some(next.map_or(expires, |n| n.min(expires)));
            } else if desired.settings.on_expiry == OnExpiry::RemoveAuth {
                let at = At {
                    namespace: meta.namespace(),
                    name: meta.name(),
                };
                self.write(desired, at, None).await?;
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
