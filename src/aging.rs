//! A map for what is kept per object only for a while (retry delays, our own recent writes):
//! entries not touched for longer than a horizon are dropped, each time the map has doubled since
//! the last time (so the cost is spread over the inserts) and whenever asked. A tenant creating
//! and deleting objects without end cannot grow it without end.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

/// Entries below which none is dropped as the map grows.
const MIN_PRUNE: usize = 64;

pub struct Aging<K, V> {
    entries: HashMap<K, (Instant, V)>,
    horizon: Duration,
    /// The size at which old entries are next dropped.
    prune_at: usize,
}

impl<K, V> Aging<K, V> {
    /// Entries go once they have not been touched for `horizon`.
    pub fn new(horizon: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            horizon,
            prune_at: MIN_PRUNE,
        }
    }
}

impl<K: Eq + Hash, V> Aging<K, V> {
    /// Sets `key` to `value`, touched `now`.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        self.grown(now);
        self.entries.insert(key, (now, value));
    }

    /// `key`'s value (`fresh()` when it has none), touched `now`.
    pub fn touch(&mut self, key: K, now: Instant, fresh: impl FnOnce() -> V) -> &mut V {
        self.grown(now);
        let (at, value) = self.entries.entry(key).or_insert_with(|| (now, fresh()));
        *at = now;
        value
    }

    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key).map(|(_, v)| v)
    }

    /// Drops `key`; the memory goes back once most entries are gone (after a burst).
    pub fn remove<Q: Eq + Hash + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let removed = self.entries.remove(key).map(|(_, v)| v);
        self.shrink();
        removed
    }

    /// Keeps only the entries `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.entries.retain(|k, _| keep(k));
        self.shrink();
    }

    /// Drops the entries not touched within the horizon before `now`.
    pub fn prune(&mut self, now: Instant) {
        let horizon = self.horizon;
        self.entries
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < horizon);
        self.prune_at = (2 * self.entries.len()).max(MIN_PRUNE);
        self.shrink();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries' allocation, in entries.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Prunes before an insert would take the map to the size set at the last pruning.
    fn grown(&mut self, now: Instant) {
        if self.entries.len() + 1 >= self.prune_at {
            self.prune(now);
        }
    }

    fn shrink(&mut self) {
        if self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
    }
}
