//! A readiness gate for watch caches that any number of tasks can wait on.
//!
//! kube-runtime's `Store::wait_until_ready` keeps a single waker (its `DelayedInit` waits on a
//! oneshot receiver, added in <https://github.com/kube-rs/kube/pull/1243>), so with several
//! concurrent waiters on one store some are never woken; reconciles running in parallel would
//! hang. This gate uses a `tokio::sync::watch` channel instead.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use kube::runtime::watcher;
use tokio::sync::watch;

/// Becomes ready once every watch stream registered with it ([`Synced::observer`], before any
/// of them runs) has delivered its first full list.
#[derive(Clone, Default)]
pub struct Synced {
    pending: Arc<AtomicUsize>,
    ready: Arc<watch::Sender<bool>>,
}

impl Synced {
    /// Registers one watch stream: an `inspect` callback for it.
    pub fn observer<K>(&self) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        let mut seen = false;
        move |event| {
            if !seen && matches!(event, Ok(watcher::Event::InitDone)) {
                seen = true;
                if this.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                    this.ready.send_replace(true);
                }
            }
        }
    }

    /// Resolves once every stream has listed once (at once if they have).
    pub async fn wait(&self) {
        self.ready().await;
    }

    /// Like [`Synced::wait`] without borrowing the gate: true once ready, false when every copy
    /// of the gate (and so every stream) was dropped first.
    pub fn ready(&self) -> impl Future<Output = bool> + Send + 'static {
        let mut rx = self.ready.subscribe();
        async move { rx.wait_for(|r| *r).await.is_ok() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn many_waiters_all_wake_once_every_stream_has_listed() {
        let synced = Synced::default();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let s = synced.clone();
                tokio::spawn(async move { s.wait().await })
            })
            .collect();
        let mut a = synced.observer::<()>();
        let mut b = synced.observer::<()>();
        a(&Ok(watcher::Event::InitDone));
        a(&Ok(watcher::Event::InitDone));
        assert!(!*synced.ready.borrow(), "one stream twice is not both");
        b(&Ok(watcher::Event::InitDone));
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("every waiter wakes")
                .unwrap();
        }
    }
}
