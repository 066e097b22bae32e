//! Tokens belong to an IAM identity, not to a custom resource: this cache holds one token per
//! identity and makes every reconcile that needs one share it.
//!
//! Single flight: the first caller that finds no usable token fetches while holding the identity's
//! slot lock; callers arriving meanwhile wait on that lock and then find the new token (or the
//! failure, remembered for a short time so an outage costs one call per identity per retry window,
//! not one per resource).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use super::identity::Identity;
use super::{TokenSource, token::Token};
use crate::Error;

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

/// Per-identity token cache with single-flight fetches.
pub struct TokenCache {
    source: Arc<dyn TokenSource>,
    slots: Mutex<HashMap<Identity, Arc<tokio::sync::Mutex<Slot>>>>,
    failure_ttl: Duration,
}

impl TokenCache {
    /// `failure_ttl`: how long a failed fetch is answered from memory before AWS is asked again.
    pub fn new(source: Arc<dyn TokenSource>, failure_ttl: Duration) -> Self {
        Self {
            source,
            slots: Mutex::default(),
            failure_ttl,
        }
    }

    fn slot(&self, identity: &Identity) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = crate::lock(&self.slots);
        slots.entry(identity.clone()).or_default().clone()
    }

    /// A token for `identity` for which `usable` holds, fetching one if the cached token is not.
    pub async fn get(
        &self,
        identity: &Identity,
        usable: impl Fn(&Token) -> bool,
    ) -> Result<Fetched, Error> {
        let slot = self.slot(identity);
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
        match self.source.fetch(identity).await {
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

    /// The cached token for `identity`, if any, without fetching.
    pub async fn peek(&self, identity: &Identity) -> Option<Token> {
        self.slot(identity).lock().await.token.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::token::test_token;
    use chrono::Utc;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        fail: Mutex<Option<Error>>,
    }

    impl TokenSource for Counting {
        fn fetch<'a>(&'a self, _: &'a Identity) -> BoxFuture<'a, Result<Token, Error>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
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
    }

    fn source() -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            fail: Mutex::new(None),
        })
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let src = source();
        let cache = Arc::new(TokenCache::new(src.clone(), Duration::from_secs(1)));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(&Identity::Operator, |_| true).await.unwrap() })
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
    async fn unusable_token_is_replaced_once() {
        let src = source();
        let cache = TokenCache::new(src.clone(), Duration::from_secs(1));
        let first = cache
            .get(&Identity::Operator, |_| true)
            .await
            .unwrap()
            .token;
        let second = cache
            .get(&Identity::Operator, |t| *t != first)
            .await
            .unwrap()
            .token;
        assert_ne!(first, second);
        cache
            .get(&Identity::Operator, |t| *t != first)
            .await
            .unwrap();
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_shared_for_a_short_while() {
        let src = source();
        *src.fail.lock().unwrap() = Some(Error::Transient {
            detail: "503".into(),
        });
        let cache = TokenCache::new(src.clone(), Duration::from_secs(60));
        for _ in 0..10 {
            assert_eq!(
                cache
                    .get(&Identity::Operator, |_| true)
                    .await
                    .unwrap_err()
                    .label(),
                "Transient"
            );
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        let cache = TokenCache::new(src.clone(), Duration::ZERO);
        *src.fail.lock().unwrap() = None;
        assert!(cache.get(&Identity::Operator, |_| true).await.is_ok());
    }
}
