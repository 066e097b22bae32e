//! Retry delays after failures, per object, for every reconciler: exponential from
//! `--retry-backoff-base` up to `--retry-backoff-max`, with jitter ([`schedule::backoff`]), and
//! back to the start after a success.
//!
//! An object that failed and was then deleted never succeeds to reset its entry, so entries that
//! have not failed again for twice the longest delay (a failing object retries within it) are
//! dropped as the table grows: a tenant creating and deleting failing resources cannot grow it.

use std::{
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{aging::Aging, lock, schedule};

/// Failed attempts per object key, and when the last one failed.
pub struct Backoff<K> {
    base: Duration,
    max: Duration,
    /// Entries that have not failed again for twice the longest delay go.
    attempts: Mutex<Aging<K, u32>>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempts: Mutex::new(Aging::new(2 * max)),
        }
    }

    /// How long to wait before retrying `key` after one more failure.
    pub fn next(&self, key: &K) -> Duration {
        self.next_at(key, Instant::now())
    }

    fn next_at(&self, key: &K, now: Instant) -> Duration {
        let mut attempts = lock(&self.attempts);
        let n = attempts.touch(key.clone(), now, || 0);
        let delay = schedule::backoff(*n, self.base, self.max, fastrand::f64());
        *n = n.saturating_add(1);
        delay
    }

    /// Keeps only the entries of objects that still exist (one that failed and was then
    /// deleted never succeeds to reset its entry).
    pub fn retain(&self, exists: impl Fn(&K) -> bool) {
        lock(&self.attempts).retain(exists);
    }

    /// `key` succeeded (or is gone): its next failure waits the base delay again. A burst of
    /// failures across thousands of resources (AWS down) grows the table; it gives the memory
    /// back once most of them have recovered.
    pub fn reset(&self, key: &K) {
        lock(&self.attempts).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_object_up_to_the_maximum_and_restart_after_success() {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(800));
        let first = backoff.next(&"a");
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        for _ in 0..10 {
            assert!(backoff.next(&"a") <= Duration::from_millis(800));
        }
        assert!(backoff.next(&"a") >= Duration::from_millis(400), "grown");
        assert!(
            backoff.next(&"b") <= Duration::from_millis(200),
            "per object"
        );
        backoff.reset(&"a");
        assert!(backoff.next(&"a") <= Duration::from_millis(200), "reset");
    }

    #[test]
    fn the_table_gives_memory_back_once_a_burst_of_failures_has_recovered() {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(800));
        for key in 0..10_000 {
            backoff.next(&key);
        }
        let grown = lock(&backoff.attempts).capacity();
        for key in 0..10_000 {
            backoff.reset(&key);
        }
        let after = lock(&backoff.attempts).capacity();
        assert!(grown >= 10_000 && after < 100, "{grown} -> {after}");
    }

    #[test]
    fn objects_that_failed_and_went_away_are_dropped() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let start = Instant::now();
        // A failing resource created and deleted every second, for an hour; one that keeps
        // failing (and retrying every minute) beside them.
        for i in 0..3600u64 {
            let now = start + Duration::from_secs(i);
            backoff.next_at(&i, now);
            if i % 60 == 0 {
                backoff.next_at(&u64::MAX, now);
            }
        }
        let left = lock(&backoff.attempts);
        assert!(left.len() <= 2 * 120 + 1, "{} entries", left.len());
        assert!(
            left.get(&u64::MAX).is_some_and(|n| *n == 60),
            "still failing"
        );
    }
}
