//! The one HTTP/1.1 client the AWS test servers need: moto's control API, GetCallerIdentity on a
//! key's behalf, and the in-repo STS's upstream. hyper-util's client on the hyper stack axum already
//! brings, rather than a second HTTP stack.

use std::{io, time::Duration};

use axum::http::{Method, Request, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// Upper bound on one exchange, body included, so a wedged server fails a test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `req` and reads the whole response body.
pub async fn send(req: Request<Bytes>) -> io::Result<Response<Bytes>> {
    // A client per call: a pooled connection would be owned by whichever test runtime made it,
    // and each #[tokio::test] has its own runtime that ends with the test.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let exchange = async {
        let resp = client
            .request(req.map(Full::new))
            .await
            .map_err(io::Error::other)?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
        Ok(Response::from_parts(parts, body))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HTTP exchange timed out"))?
}

/// Builds and sends a request with the given headers and body.
pub async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> io::Result<Response<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(req.body(body.into()).map_err(io::Error::other)?).await
}
