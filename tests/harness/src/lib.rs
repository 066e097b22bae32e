//! Test infrastructure for the operator, all serving real HTTP on 127.0.0.1: a fake Amazon ECR
//! Public endpoint, a stateful Kubernetes API server emulator, the real Kubernetes control plane
//! built from Go modules, and for the AWS identity paths moto's STS (IRSA, chained AssumeRole), a
//! fault-injecting proxy in front of it, and an EKS Pod Identity (container credentials)
//! endpoint; a minimal AssumeRole-only STS for the benchmark. [`env`] ties them to the operator
//! for the integration tests, the benchmark and the demo.
pub mod backend;
pub mod container_credentials;
pub mod control_plane;
pub mod ecr;
pub mod env;
pub mod fake_sts;
pub mod http_client;
pub mod kube_api;
pub mod moto;
mod scratch;
pub mod sts_proxy;
