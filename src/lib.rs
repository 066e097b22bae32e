//! Keeps Amazon ECR Public image pull Secrets fresh in Kubernetes.
//!
//! The library holds everything; `main.rs` only parses flags and calls [`run::run`]. Where a
//! resource is observed, planned, written and reported, in order:
//!
//! - [`controller::builder`]: the watch event becomes a reconcile, wrapped the same way for both
//!   kinds (finalizer, metrics, error policy, Events);
//! - [`controller::sync`]: the one sync, top to bottom: it checks the spec
//!   ([`controller::spec`]), observes each Secret ([`controller::secret_io`]), plans it
//!   ([`controller::plan`], pure), fetches one token ([`aws`]), writes, and reports
//!   ([`controller::report`], pure) through the status writer ([`k8s::status`]);
//! - [`controller::kinds`]: the little that differs between `EcrPublicPullSecret` and
//!   `ClusterEcrPublicPullSecret`.
//!
//! Around that path: [`crd`], [`pull_secret`], [`schedule`], [`duration`] are what users write,
//! what the operator writes and when (pure); [`k8s`] talks to the API server (watches, caches,
//! the memo of our own writes, Events, the Lease); [`aws`] is where tokens come from (identities,
//! their permissions and credentials, the ECR Public call, the per-identity cache); [`admin`] is
//! what the process exposes (metrics, health); [`config`], [`telemetry`] and [`run`] wire the
//! process together.

pub mod admin;
pub mod aging;
pub mod aws;
pub mod config;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod error;
pub mod hosts;
pub mod k8s;
pub mod pull_secret;
pub mod run;
pub mod schedule;
pub mod telemetry;

pub use error::Error;

/// Locks a mutex that only guards in-memory maps: poisoning only follows a panic elsewhere, and
/// the maps stay consistent enough to go on.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
