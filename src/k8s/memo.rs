//! Our own writes, remembered until the watch shows them.
//!
//! A reconcile may start (triggered by something else) after this process wrote an object and
//! before the watch has delivered that write: the cache is older than what we know. Planning
//! from the cache then would write the same thing again (a Secret, a status) or fail on a stale
//! precondition (a ServiceAccount patch). So each write is remembered here, and a reconcile goes
//! by it until the cached copy has caught up; then it is forgotten and the cache is the truth
//! again (also for changes others make later).
//!
//! A write whose object is never reconciled again (its resource was deleted) is never looked at
//! again either, so entries are also dropped once they are older than any watch lag worth
//! waiting for: otherwise every resource a tenant creates and deletes would leave one behind.

use std::{
    borrow::Borrow,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{aging::Aging, lock};

/// How long a write is remembered at most. A watch that has not shown it by then is stalled,
/// and its cache is the best there is (a write planned from it is conditional anyway). The watch
/// shows the operator's own writes within milliseconds.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);

/// Whether a cached copy at `cached` has caught up with our write at `ours`: the same
/// resourceVersion, or a later one (someone wrote after us). resourceVersions are opaque to
/// clients, but the API server's are etcd revisions, increasing integers; when either does not
/// parse as one, only equality counts.
pub fn caught_up(ours: Option<&str>, cached: Option<&str>) -> bool {
    let number = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
    match (number(ours), number(cached)) {
        (Some(ours), Some(cached)) => cached >= ours,
        _ => ours.is_some() && ours == cached,
    }
}

/// The last write per object key, until the cache shows it.
pub struct Memo<K, V>(Mutex<Aging<K, V>>);

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Self(Mutex::new(Aging::new(REMEMBERED_FOR)))
    }
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    /// Remembers `written` as our latest write of `key`.
    pub fn record(&self, key: K, written: V) {
        self.record_at(key, written, Instant::now());
    }

    fn record_at(&self, key: K, written: V, now: Instant) {
        lock(&self.0).insert(key, written, now);
    }

    /// Drops the writes older than any watch lag worth waiting for (their objects were never
    /// reconciled again: deleted). Controllers call it periodically; writes call it as the
    /// memo grows.
    pub fn prune(&self) {
        lock(&self.0).prune(Instant::now());
    }

    /// Drops what is remembered about `key` (it is gone, or our write failed).
    pub fn forget<Q: Eq + Hash + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        lock(&self.0).remove(key);
    }

    /// Our write of `key` while the cache has not shown it yet. `shown` says whether the cached
    /// copy has caught up with it; once it has, the write is forgotten and `None` returned: go by
    /// the cache.
    pub fn unseen<Q: Eq + Hash + ?Sized>(
        &self,
        key: &Q,
        shown: impl FnOnce(&V) -> bool,
    ) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let mut entries = lock(&self.0);
        let ours = entries.get(key)?;
        if shown(ours) {
            entries.remove(key);
            return None;
        }
        Some(ours.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_copy_has_caught_up_at_our_version_or_a_later_one() {
        assert!(caught_up(Some("10"), Some("10")));
        assert!(caught_up(Some("10"), Some("11")), "someone wrote after us");
        assert!(!caught_up(Some("10"), Some("9")), "the cache is behind");
        assert!(caught_up(Some("a"), Some("a")));
        assert!(
            !caught_up(Some("b"), Some("a")),
            "not numbers: only equality"
        );
        assert!(!caught_up(None, None));
    }

    #[test]
    fn a_write_stands_until_the_cache_shows_it_then_the_cache_wins() {
        let memo = Memo::<String, u32>::default();
        assert_eq!(memo.unseen("k", |_| false), None, "nothing written");
        memo.record("k".into(), 2);
        assert_eq!(memo.unseen("k", |ours| *ours == 1), Some(2), "cache behind");
        assert_eq!(memo.unseen("k", |ours| *ours == 2), None, "cache caught up");
        assert_eq!(memo.unseen("k", |_| false), None, "forgotten once shown");
        memo.record("k".into(), 3);
        memo.forget("k");
        assert_eq!(memo.unseen("k", |_| false), None);
    }

    #[test]
    fn writes_never_looked_at_again_do_not_pile_up() {
        let memo = Memo::<u32, u32>::default();
        let start = Instant::now();
        // Objects written once and deleted, one a second for an hour.
        for i in 0..3600 {
            memo.record_at(i, i, start + Duration::from_secs(u64::from(i)));
        }
        let most = 2 * REMEMBERED_FOR.as_secs() as usize;
        assert!(memo.len() <= most, "{} remembered", memo.len());
        assert_eq!(
            memo.unseen(&3599, |_| false),
            Some(3599),
            "the latest stays"
        );
    }
}
