//! Keeps Amazon ECR Public image pull Secrets fresh in Kubernetes.
//!
//! The library holds everything; `main.rs` only parses flags and calls [`run::run`]. The tree
//! follows a resource's path:
//!
//! - [`crd`], [`pull_secret`], [`schedule`], [`duration`]: what users write, what the operator writes,
//!   and when. Pure: no I/O.
//! - [`k8s`]: talking to the API server: one watch builder whose streams several reconcilers
//!   share, the cache-readiness gate, the memo of our own writes, the status writer, Events and
//!   the leader Lease.
//! - [`aws`]: where tokens come from: the IAM identity a resource uses, its credentials, the ECR
//!   Public call and its error classification, the per-identity token cache, the token itself.
//! - [`reconcilers`]: what the operator does. One core plans (pure, in `plan`), fetches and writes
//!   a Secret; the namespaced kind drives it for one Secret, the cluster kind for one per selected
//!   namespace, and the ServiceAccount reconciler runs beside them. `report` turns outcomes into
//!   status.
//! - [`admin`]: what the process exposes (metrics, health); [`config`], [`telemetry`] and [`run`]
//!   wire the process together.

pub mod admin;
pub mod aws;
pub mod config;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod error;
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
