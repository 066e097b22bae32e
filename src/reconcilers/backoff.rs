//! Retry delays after failures, per object, for every reconciler: exponential from
//! `--retry-backoff-base` up to `--retry-backoff-max`, with jitter ([`schedule::backoff`]), and
//! back to the start after a success.

use std::{collections::HashMap, hash::Hash, sync::Mutex, time::Duration};

use crate::{lock, schedule};

/// Failed attempts per object key.
pub struct Backoff<K> {
    base: Duration,
    max: Duration,
    attempts: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempts: Mutex::default(),
        }
    }

    /// How long to wait before retrying `key` after one more failure.
    pub fn next(&self, key: &K) -> Duration {
        let mut attempts = lock(&self.attempts);
        let n = attempts.entry(key.clone()).or_insert(0);
        let delay = schedule::backoff(*n, self.base, self.max, fastrand::f64());
        *n = n.saturating_add(1);
        delay
    }

    /// `key` succeeded (or is gone): its next failure waits the base delay again.
    pub fn reset(&self, key: &K) {
        let mut attempts = lock(&self.attempts);
        if attempts.remove(key).is_some() && attempts.len() < attempts.capacity() / 4 {
            // A burst of failures across thousands of resources (AWS down) grows the table; it
            // gives the memory back once most of them have recovered.
            attempts.shrink_to_fit();
        }
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
}
