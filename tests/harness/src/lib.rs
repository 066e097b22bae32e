//! Test infrastructure for the operator, all serving real HTTP on 127.0.0.1, for the tests, the
//! benchmark and the demo alike.
//!
//! # What is the reference, and what the emulators are for
//!
//! The references are the real things: the Kubernetes control plane built from pinned Go modules
//! ([`control_plane`]: etcd, kube-apiserver, kube-controller-manager) and moto ([`moto`]) for
//! STS. Every functional scenario runs against them (the `real_api_server::` twins of
//! `on_both_apis!`, and the `real_` tests).
//!
//! The in-repo emulators exist for four things only, and grow only when one of them needs it:
//! - **the demo** (`cargo run --example demo`): the real controller on a machine without Go;
//! - **fault injection** the real servers cannot be made to produce on cue: API errors and
//!   watch faults ([`kube_api`]), ECR Public failures, throttling and held requests ([`ecr`]),
//!   STS errors and short-lived credentials ([`sts`], as a proxy in front of moto);
//! - **the benchmark**: tens of thousands of resources and identities, where the emulator's
//!   speed and the standalone [`sts`] keep the measurement on the operator;
//! - **the fast loop**: `cargo test` without the Go build, each scenario's emulator twin.
//!
//! The Kubernetes emulator must agree with the real server wherever a twin runs on both; it is
//! not meant to imitate more of Kubernetes than those scenarios exercise. ECR Public has no
//! third-party emulator, so [`ecr`] is the only one (it checks the SigV4 scope
//! `us-east-1/ecr-public` as the real endpoint would).
//!
//! # Modules
//!
//! [`env`] ties the servers to the operator (`Env::start_on(Api::Emulator | Api::Real)`);
//! [`backend`] is one interface over both Kubernetes APIs (the emulator's state, or a
//! watch-kept mirror of the real server plus its audit log); [`container_credentials`] is the
//! EKS Pod Identity endpoint; [`http_client`] the one HTTP client the servers use.
pub mod backend;
pub mod black_hole;
pub mod container_credentials;
pub mod control_plane;
pub mod ecr;
pub mod env;
pub mod http_client;
pub mod kube_api;
pub mod moto;
mod scratch;
pub mod sts;
