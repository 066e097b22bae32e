//! Keeps Amazon ECR Public image pull Secrets fresh in Kubernetes.
//!
//! The library holds everything; `main.rs` only parses flags and calls [`controller::run`].
//! Pure logic (schedule math, docker config building, token decoding, error classification) lives in
//! modules without I/O and is unit-tested there.

pub mod aws;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod diagnose;
pub mod duration;
pub mod error;
pub mod events;
pub mod http;
pub mod identity;
pub mod image_pull_secrets;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod service_accounts;
pub mod status;
pub mod synced;
pub mod telemetry;
pub mod token;

pub use error::Error;
