//! Our own writes, remembered until the watch shows them.
//!
//! A reconcile may start (triggered by something else) after this process wrote an object and
//! before the watch has delivered that write: the cache is older than what we know. Planning
//! from the cache then would write the same thing again (a Secret, a status) or fail on a stale
//! precondition (a ServiceAccount patch). So each write is remembered here, and a reconcile goes
//! by it until the cached copy has caught up; then it is forgotten and the cache is the truth
//! again (also for changes others make later).

use std::{borrow::Borrow, collections::HashMap, hash::Hash, sync::Mutex};

use crate::lock;

/// The last write per object key, until the cache shows it.
pub struct Memo<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    /// Remembers `written` as our latest write of `key`.
    pub fn record(&self, key: K, written: V) {
        lock(&self.0).insert(key, written);
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
        let mut written = lock(&self.0);
        let ours = written.get(key)?;
        if shown(ours) {
            written.remove(key);
            return None;
        }
        Some(ours.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
