//! What the process exposes: the admin HTTP server and the Prometheus metrics.

pub mod http;
pub mod metrics;
