//! What the process exposes: the admin HTTP server (`/metrics`, `/livez`, `/readyz`) in
//! [`http`], and the Prometheus metrics in [`metrics`].

pub mod http;
pub mod metrics;
