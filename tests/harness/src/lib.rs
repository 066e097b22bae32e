//! Test infrastructure for the operator: a fake Amazon ECR Public endpoint and a stateful
//! Kubernetes API server emulator, both serving real HTTP on 127.0.0.1.
pub mod ecr;
pub mod kube_api;
