//! A bound on every Kubernetes API request but watches.
//!
//! kube's client has no request timeout by default (a read timeout would also cut idle watches),
//! so a request sent into a silent network (a NAT that dropped the connection, a partition that
//! drops packets without a reset) waits for ever, and the reconcile that sent it with it. This
//! layer gives every request an answer within `--api-request-timeout`: the reconcile fails like
//! any API error and is retried with backoff, on a new connection. Watches are bounded by the
//! watcher's own idle timeout instead (`--watch-timeout`).

use std::{
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http::Request;
use tower::{BoxError, Layer, Service};

/// The layer: requests (watches aside) that have no response within the duration fail.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

impl<S> Layer<S> for RequestTimeout {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            after: self.0,
        }
    }
}

/// A service whose requests are bounded by [`RequestTimeout`].
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    after: Duration,
}

impl<S, B> Service<Request<B>> for Timed<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let bounded = !is_watch(request.uri()) && !self.after.is_zero();
        let answer = self.inner.call(request);
        let after = self.after;
        Box::pin(async move {
            if !bounded {
                return answer.await.map_err(Into::into);
            }
            match tokio::time::timeout(after, answer).await {
                Ok(answered) => answered.map_err(Into::into),
                Err(_) => Err(format!(
                    "no answer from the Kubernetes API server within {}s (--api-request-timeout)",
                    after.as_secs_f64()
                )
                .into()),
            }
        })
    }
}

/// Whether the request is a watch (`?watch=true`), which stays open by design.
fn is_watch(uri: &http::Uri) -> bool {
    let query = uri.query().unwrap_or_default();
    query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A service that never answers.
    #[derive(Clone)]
    struct Silent;

    impl Service<Request<()>> for Silent {
        type Response = ();
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<(), Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            Box::pin(futures::future::pending())
        }
    }

    fn request(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_request_fails_but_a_watch_waits() {
        let mut timed = RequestTimeout(Duration::from_secs(30)).layer(Silent);
        let err = timed
            .call(request("/api/v1/namespaces/a/secrets/s"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("within 30s"), "{err}");
        let watch = timed.call(request("/api/v1/secrets?labelSelector=x&watch=true"));
        let waited = tokio::time::timeout(Duration::from_secs(3600), watch).await;
        assert!(
            waited.is_err(),
            "a watch is left to the watcher's idle timeout"
        );
        let unbounded = RequestTimeout(Duration::ZERO)
            .layer(Silent)
            .call(request("/api"));
        let waited = tokio::time::timeout(Duration::from_secs(3600), unbounded).await;
        assert!(waited.is_err(), "0 disables the bound");
    }
}
