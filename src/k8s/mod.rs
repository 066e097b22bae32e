//! Talking to the Kubernetes API server: cache readiness, status, Events, leader election.

pub mod events;
pub mod leader;
pub mod status;
pub mod synced;
