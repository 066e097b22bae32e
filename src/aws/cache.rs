//! Tokens belong to an IAM identity, not to a custom resource: this cache holds one token per
//! identity per [`Source`] (ECR Public, or private ECR in one region) and makes every reconcile
//! that needs one share it.
//!
//! Single flight: the first caller that finds no usable token fetches while holding the identity's
//! slot lock; callers arriving meanwhile wait on that lock and then find the new token (or the
//! failure, remembered for a short time so an outage costs one call per identity per retry window,
//! not one per resource).
//!
//! What an identity holds (its token, its credentials and client in the [`TokenSource`]) lives as
//! long as a resource uses it. Resources that use a role or a ServiceAccount are remembered as its
//! [`User`]s; once none is left (the resources were deleted or now ask for another identity),
//! the identity's state is dropped, so a tenant cycling through roles cannot grow the operator
//! without bound. The same bookkeeping caps the identities one namespace may use at a time.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use super::identity::Identity;
use super::{TokenSource, source::Source, token::Token};
use crate::{Error, lock};

#[derive(Default)]
struct Slot {
    token: Option<Token>,
    last_failure: Option<(Instant, Error)>,
}

/// Outcome of one [`TokenCache::get`]: the token, and whether this call went to AWS.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub token: Token,
    pub fresh: bool,
}

/// A resource that asks for a token: namespaced (`namespace` set) or cluster-scoped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct User {
    pub namespace: Option<String>,
    pub name: String,
}

/// Whether a user still exists (its resource is in the watch cache).
pub type Liveness = Arc<dyn Fn(&User) -> bool + Send + Sync>;

/// Sources one identity keeps a token slot for. Real Regions are a few dozen; names the schema
/// lets through but AWS does not know would otherwise grow an identity's slots one by one.
const MAX_SOURCES: usize = 64;

type SharedSlot = Arc<tokio::sync::Mutex<Slot>>;

/// One identity's token slots, one per source, and how many users it has (the operator's own
/// identity, shared by every resource that names no role, is never counted and never dropped).
#[derive(Default)]
struct Held {
    slots: HashMap<Source, SharedSlot>,
    users: usize,
}

impl Held {
    /// The slot of `source`, made if needed (dropping idle ones at the bound).
    fn slot(&mut self, source: &Source) -> SharedSlot {
        if !self.slots.contains_key(source) && self.slots.len() >= MAX_SOURCES {
            // Only slots nobody is fetching from or waiting on: their token is merely cached.
            self.slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        self.slots.entry(source.clone()).or_default().clone()
    }
}

#[derive(Default)]
struct Books {
    held: HashMap<Identity, Held>,
    /// Users of identities other than the operator's, by namespace then name: one namespace's
    /// are a range (looked through at that namespace's limit, under the lock every fetch takes).
    users: BTreeMap<User, Identity>,
    /// Per namespace: its users' identities, with how many users each.
    namespaces: HashMap<String, HashMap<Identity, usize>>,
}

impl Books {
    /// Forgets `user`; returns its identity if that has no user left (it is then dropped).
    fn release(&mut self, user: &User) -> Option<Identity> {
        let identity = self.users.remove(user)?;
        if let Some(ns) = &user.namespace
            && let Some(counts) = self.namespaces.get_mut(ns)
        {
            if let Some(n) = counts.get_mut(&identity) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&identity);
                }
            }
            if counts.is_empty() {
                self.namespaces.remove(ns);
            }
        }
        let held = self.held.get_mut(&identity)?;
        held.users = held.users.saturating_sub(1);
        if held.users > 0 {
            return None;
        }
        self.held.remove(&identity);
        Some(identity)
    }

    /// Remembers that `user` uses `identity` (not the operator's own).
    fn add(&mut self, user: &User, identity: &Identity) {
        self.users.insert(user.clone(), identity.clone());
        if let Some(ns) = &user.namespace {
            let counts = self.namespaces.entry(ns.clone()).or_default();
            *counts.entry(identity.clone()).or_default() += 1;
        }
        self.slot_of(identity).users += 1;
    }

    fn slot_of(&mut self, identity: &Identity) -> &mut Held {
        self.held.entry(identity.clone()).or_default()
    }

    /// The distinct identities `namespace`'s users hold, `user` aside.
    fn used_in(&self, namespace: &str, user: &User) -> usize {
        let Some(counts) = self.namespaces.get(namespace) else {
            return 0;
        };
        let own = self.users.get(user);
        counts.len() - usize::from(own.is_some_and(|o| counts.get(o) == Some(&1)))
    }

    /// Users that no longer exist, in `namespace` only when given.
    fn gone(&self, alive: &Liveness, namespace: Option<&str>) -> Vec<User> {
        let users = match namespace {
            None => self.users.range(..),
            Some(ns) => self.users.range(
                User {
                    namespace: Some(ns.to_owned()),
                    name: String::new(),
                }..,
            ),
        };
        let ours = |u: &&User| namespace.is_none_or(|ns| u.namespace.as_deref() == Some(ns));
        let users = users.map(|(u, _)| u).take_while(ours);
        users.filter(|u| !alive(u)).cloned().collect()
    }
}

/// Per-identity token cache with single-flight fetches.
pub struct TokenCache {
    source: Arc<dyn TokenSource>,
    books: Mutex<Books>,
    failure_ttl: Duration,
    /// Distinct identities (other than the operator's) one namespace's users may hold.
    per_namespace: Option<usize>,
    alive: Mutex<Liveness>,
}

impl TokenCache {
    /// `failure_ttl`: how long a failed fetch is answered from memory before AWS is asked again.
    pub fn new(source: Arc<dyn TokenSource>, failure_ttl: Duration) -> Self {
        Self {
            source,
            books: Mutex::default(),
            failure_ttl,
            per_namespace: None,
            alive: Mutex::new(Arc::new(|_| true)),
        }
    }

    /// Refuses a namespace's users more than `limit` distinct identities at a time.
    pub fn with_namespace_limit(mut self, limit: usize) -> Self {
        self.per_namespace = Some(limit);
        self
    }

    /// How to tell a departed user (deleted resource) from a live one; until set, all are live.
    pub fn set_liveness(&self, alive: Liveness) {
        *lock(&self.alive) = alive;
    }

    /// A token for `user`, from `identity` and `source`, for which `usable` holds, fetching one
    /// if the cached token is not. `TooManyIdentities` when `identity` would be one too many for
    /// the user's namespace.
    pub async fn get(
        &self,
        user: &User,
        identity: &Identity,
        source: &Source,
        usable: impl Fn(&Token) -> bool,
    ) -> Result<Fetched, Error> {
        let slot = self.claim(user, identity, source)?;
        let mut slot = slot.lock().await;
        if let Some(token) = slot.token.as_ref().filter(|t| usable(t)) {
            return Ok(Fetched {
                token: token.clone(),
                fresh: false,
            });
        }
        if let Some((at, err)) = &slot.last_failure
            && at.elapsed() < self.failure_ttl
        {
            return Err(err.clone());
        }
        let fetched = self.source.fetch(identity, source).await;
        // Every user may have left while the fetch ran (and the identity been dropped): what the
        // fetch built for it (credentials) goes too, or nothing would ever drop it.
        if !lock(&self.books).held.contains_key(identity) {
            self.forget([identity.clone()]);
        }
        match fetched {
            Ok(token) => {
                slot.token = Some(token.clone());
                slot.last_failure = None;
                Ok(Fetched { token, fresh: true })
            }
            Err(err) => {
                slot.last_failure = Some((Instant::now(), err.clone()));
                Err(err)
            }
        }
    }

    /// Records that `user` uses `identity` (dropping what its previous identity held if it was
    /// the last user) and returns the identity's slot for `source`.
    fn claim(
        &self,
        user: &User,
        identity: &Identity,
        source: &Source,
    ) -> Result<SharedSlot, Error> {
        let mut books = lock(&self.books);
        if *identity == Identity::Operator {
            let dropped = books.release(user);
            let slot = books.slot_of(identity).slot(source);
            drop(books);
            self.forget(dropped);
            return Ok(slot);
        }
        if books.users.get(user) == Some(identity) {
            return Ok(books.slot_of(identity).slot(source));
        }
        let mut dropped = Vec::new();
        if let (Some(ns), Some(limit)) = (user.namespace.as_deref(), self.per_namespace) {
            let new = |b: &Books| {
                b.namespaces
                    .get(ns)
                    .is_none_or(|c| !c.contains_key(identity))
            };
            if new(&books) && books.used_in(ns, user) >= limit {
                // At the limit: users deleted since the last sweep may still count.
                let alive = lock(&self.alive).clone();
                for gone in books.gone(&alive, Some(ns)) {
                    dropped.extend(books.release(&gone));
                }
                if books.used_in(ns, user) >= limit {
                    drop(books);
                    self.forget(dropped);
                    return Err(Error::TooManyIdentities {
                        namespace: ns.to_owned(),
                        limit,
                    });
                }
            }
        }
        dropped.extend(books.release(user));
        books.add(user, identity);
        let slot = books.slot_of(identity).slot(source);
        drop(books);
        self.forget(dropped);
        Ok(slot)
    }

    /// Drops the users whose resources are gone, and what identities no user is left for hold.
    /// Returns how many identities were dropped.
    pub fn sweep(&self) -> usize {
        let alive = lock(&self.alive).clone();
        let mut books = lock(&self.books);
        let gone = books.gone(&alive, None);
        let dropped: Vec<_> = gone.iter().filter_map(|u| books.release(u)).collect();
        drop(books);
        let n = dropped.len();
        self.forget(dropped);
        n
    }

    /// Identities with state held (the operator's own included once it has been used).
    pub fn identities(&self) -> usize {
        lock(&self.books).held.len()
    }

    fn forget(&self, identities: impl IntoIterator<Item = Identity>) {
        for identity in identities {
            self.source.forget(&identity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::token::test_token;
    use chrono::Utc;
    use futures::future::BoxFuture;
    use std::{
        collections::HashSet,
        sync::atomic::{AtomicUsize, Ordering},
    };

    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        fail: Mutex<Option<Error>>,
        forgotten: Mutex<Vec<Identity>>,
        /// Fetches wait while a test holds this for writing.
        hold: tokio::sync::RwLock<()>,
    }

    impl TokenSource for Counting {
        fn fetch<'a>(
            &'a self,
            _: &'a Identity,
            _: &'a Source,
        ) -> BoxFuture<'a, Result<Token, Error>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                let _held = self.hold.read().await;
                // Yield so concurrent callers really pile up behind the in-flight fetch.
                tokio::task::yield_now().await;
                if let Some(e) = self.fail.lock().unwrap().clone() {
                    return Err(e);
                }
                Ok(test_token(
                    &format!("pw{n}"),
                    Utc::now(),
                    chrono::Duration::hours(12),
                ))
            })
        }

        fn forget(&self, identity: &Identity) {
            self.forgotten.lock().unwrap().push(identity.clone());
        }
    }

    fn source() -> Arc<Counting> {
        Arc::new(Counting::default())
    }

    fn user(namespace: &str, name: &str) -> User {
        User {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    fn role(name: &str) -> Identity {
        Identity::Role {
            role_arn: format!("arn:aws:iam::123456789012:role/{name}"),
        }
    }

    const OPERATOR: Identity = Identity::Operator;
    const PUBLIC: Source = Source::Public;

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let src = source();
        let cache = Arc::new(TokenCache::new(src.clone(), Duration::from_secs(1)));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let cache = cache.clone();
                let u = user("ns", &format!("r{i}"));
                tokio::spawn(
                    async move { cache.get(&u, &OPERATOR, &PUBLIC, |_| true).await.unwrap() },
                )
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            let got = t.await.unwrap();
            fresh += usize::from(got.fresh);
            assert_eq!(got.token.password(), "pw0");
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        assert_eq!(fresh, 1);
    }

    #[tokio::test]
    async fn each_source_is_one_call_per_identity_shared_by_every_user() {
        let src = source();
        let cache = TokenCache::new(src.clone(), Duration::from_secs(1));
        let sources = [
            PUBLIC,
            Source::private("us-west-2"),
            Source::private("eu-west-1"),
        ];
        for i in 0..10 {
            for s in &sources {
                let u = user("ns", &format!("r{i}"));
                cache.get(&u, &role("r"), s, |_| true).await.unwrap();
            }
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 3, "one per source");
        // Another identity is another set of calls; its users count once per identity.
        cache
            .get(&user("ns", "x"), &role("s"), &sources[1], |_| true)
            .await
            .unwrap();
        assert_eq!(src.calls.load(Ordering::SeqCst), 4);
        assert_eq!(cache.identities(), 2);
    }

    #[tokio::test]
    async fn unusable_token_is_replaced_once() {
        let src = source();
        let cache = TokenCache::new(src.clone(), Duration::from_secs(1));
        let u = user("ns", "r");
        let first = cache
            .get(&u, &OPERATOR, &PUBLIC, |_| true)
            .await
            .unwrap()
            .token;
        let second = cache.get(&u, &OPERATOR, &PUBLIC, |t| *t != first).await;
        assert_ne!(first, second.unwrap().token);
        cache
            .get(&u, &OPERATOR, &PUBLIC, |t| *t != first)
            .await
            .unwrap();
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_shared_for_a_short_while() {
        let src = source();
        *src.fail.lock().unwrap() = Some(Error::Transient {
            detail: "503".into(),
            cause: None,
        });
        let cache = TokenCache::new(src.clone(), Duration::from_secs(60));
        for i in 0..10 {
            let u = user("ns", &format!("r{i}"));
            let err = cache
                .get(&u, &OPERATOR, &PUBLIC, |_| true)
                .await
                .unwrap_err();
            assert_eq!(err.label(), "Transient");
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        let cache = TokenCache::new(src.clone(), Duration::ZERO);
        *src.fail.lock().unwrap() = None;
        assert!(
            cache
                .get(&user("ns", "r"), &OPERATOR, &PUBLIC, |_| true)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn an_identity_is_dropped_with_its_last_user() {
        let src = source();
        let cache = TokenCache::new(src.clone(), Duration::from_secs(1));
        let (a, b) = (user("ns", "a"), user("ns", "b"));
        cache.get(&a, &role("r"), &PUBLIC, |_| true).await.unwrap();
        cache.get(&b, &role("r"), &PUBLIC, |_| true).await.unwrap();
        assert_eq!(src.calls.load(Ordering::SeqCst), 1, "shared by both users");
        // `a` moves to another role: `r` still has `b`.
        cache.get(&a, &role("s"), &PUBLIC, |_| true).await.unwrap();
        assert!(src.forgotten.lock().unwrap().is_empty());
        // `b` moves to the operator's identity: `r` has no user left.
        cache.get(&b, &OPERATOR, &PUBLIC, |_| true).await.unwrap();
        assert_eq!(*src.forgotten.lock().unwrap(), [role("r")]);
        // `a` is deleted: the sweep drops `s`; the operator's identity stays.
        let live: HashSet<User> = HashSet::from([b.clone()]);
        cache.set_liveness(Arc::new(move |u| live.contains(u)));
        assert_eq!(cache.sweep(), 1);
        assert_eq!(*src.forgotten.lock().unwrap(), [role("r"), role("s")]);
        assert_eq!(cache.identities(), 1, "the operator's own");
        // A dropped identity starts afresh: a new fetch.
        cache.get(&a, &role("r"), &PUBLIC, |_| true).await.unwrap();
        assert_eq!(src.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_identity_dropped_during_its_fetch_leaves_nothing_behind() {
        let src = source();
        let cache = Arc::new(TokenCache::new(src.clone(), Duration::from_secs(1)));
        let hold = src.hold.write().await;
        let u = user("ns", "a");
        let fetch = tokio::spawn({
            let (cache, u) = (cache.clone(), u.clone());
            async move { cache.get(&u, &role("r"), &PUBLIC, |_| true).await }
        });
        let started = async {
            while src.calls.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), started)
            .await
            .expect("the fetch starts");
        // The resource is deleted and swept while its fetch is in flight.
        cache.set_liveness(Arc::new(|_| false));
        assert_eq!(cache.sweep(), 1);
        assert_eq!(*src.forgotten.lock().unwrap(), [role("r")]);
        drop(hold);
        fetch.await.unwrap().unwrap();
        // What the fetch built for `r` after the sweep is dropped as well.
        assert_eq!(*src.forgotten.lock().unwrap(), [role("r"), role("r")]);
        assert_eq!(cache.identities(), 0);
    }

    #[tokio::test]
    async fn a_namespace_holds_at_most_its_limit_of_identities() {
        let src = source();
        let cache = TokenCache::new(src.clone(), Duration::from_secs(1)).with_namespace_limit(2);
        cache
            .get(&user("t", "a"), &role("1"), &PUBLIC, |_| true)
            .await
            .unwrap();
        cache
            .get(&user("t", "b"), &role("2"), &PUBLIC, |_| true)
            .await
            .unwrap();
        // A third role is one too many; a role already held, the operator's own identity, and
        // another namespace are not.
        let err = cache
            .get(&user("t", "c"), &role("3"), &PUBLIC, |_| true)
            .await;
        let err = err.unwrap_err();
        assert_eq!(err.label(), "TooManyIdentities");
        assert!(err.to_string().contains("--max-identities-per-namespace"));
        cache
            .get(&user("t", "c"), &role("1"), &PUBLIC, |_| true)
            .await
            .unwrap();
        cache
            .get(&user("t", "d"), &OPERATOR, &PUBLIC, |_| true)
            .await
            .unwrap();
        cache
            .get(&user("u", "a"), &role("3"), &PUBLIC, |_| true)
            .await
            .unwrap();
        // A user switching its one identity stays within the limit.
        cache
            .get(&user("t", "b"), &role("4"), &PUBLIC, |_| true)
            .await
            .unwrap();
        // Once a user is gone, its identity no longer counts, sweep or not.
        let gone = user("t", "b");
        cache.set_liveness(Arc::new(move |u| *u != gone));
        cache
            .get(&user("t", "e"), &role("5"), &PUBLIC, |_| true)
            .await
            .unwrap();
        assert!(src.forgotten.lock().unwrap().contains(&role("4")));
    }
}
