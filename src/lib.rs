//! Keeps Amazon ECR Public image pull Secrets fresh in Kubernetes.
//!
//! The library holds everything; `main.rs` only parses flags and calls [`run::run`].
//! Pure logic (schedule math, docker config building, token decoding, error classification) lives in
//! modules without I/O and is unit-tested there.

pub mod admin;
pub mod aws;
pub mod config;
pub mod crd;
pub mod duration;
pub mod error;
pub mod k8s;
pub mod reconcilers;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod telemetry;

pub use error::Error;
