//! Logging setup. Logs go to stderr as text or JSON; no token or password is ever a field.
//!
//! The user's filter (`RUST_LOG`, the chart's free-text `logLevel`) can raise any target to any
//! level, but not the AWS SDK's above DEBUG: at TRACE its orchestrator logs the raw response body
//! and the decoded output (ECR Public's authorization token is not marked sensitive), and SigV4
//! logs the canonical request with the session token. That ceiling is a second filter the user's
//! cannot lift.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::{EnvFilter, filter::filter_fn, fmt, prelude::*};

use crate::config::LogFormat;

/// Target prefixes logged at DEBUG at most, whatever the filter says.
const AT_MOST_DEBUG: &[&str] = &["aws_"];

/// Whether `meta` may be logged at all, whatever the user's filter says.
fn below_ceiling(meta: &Metadata<'_>) -> bool {
    allowed(meta.target(), *meta.level())
}

/// More verbose levels compare greater: DEBUG and what is more severe pass for every target.
fn allowed(target: &str, level: Level) -> bool {
    level <= Level::DEBUG || !AT_MOST_DEBUG.iter().any(|p| target.starts_with(p))
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(filter_fn(below_ceiling));
    // Colour only for a person at a terminal: piped to a file or a log pipeline, escape codes
    // are noise.
    let ansi = std::io::stderr().is_terminal();
    let result = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .try_init(),
    };
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_is_never_traced_whatever_the_filter_says() {
        let orchestrator = "aws_smithy_runtime::client::orchestrator::http";
        assert!(!allowed(orchestrator, Level::TRACE));
        assert!(!allowed("aws_sigv4::http_request::sign", Level::TRACE));
        assert!(allowed(orchestrator, Level::DEBUG));
        assert!(allowed(orchestrator, Level::WARN));
        assert!(allowed("kube_client::client", Level::TRACE));
        let ours = "ecr_public_pull_secret_operator::controller::sync";
        assert!(allowed(ours, Level::TRACE));
    }
}
