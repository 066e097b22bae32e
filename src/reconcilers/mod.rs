//! The reconcilers: the namespaced kind, the cluster kind and the ServiceAccount reconciler.

pub mod cluster;
pub mod image_pull_secrets;
pub mod namespaced;
pub mod service_accounts;
