//! Leader election with a coordination.k8s.io Lease (kube-lease-manager): only the holder runs the
//! controller. A follower takes over once the holder stops renewing (within the lease duration).
//! A leader that learns it lost the lease stops its controller and the process exits, so a fresh
//! start re-joins as a follower with clean state.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::info;

use crate::{crd::MANAGER, error::StartError};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

/// Leadership of this process: `true` while it holds the lease. Dropping it releases the lease.
pub struct Leadership {
    rx: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Leadership {
    /// Starts competing for the lease.
    pub async fn start(client: Client, s: &LeaseSettings) -> Result<Leadership, StartError> {
        let secs = s.duration.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(client, &s.name)
            .with_namespace(&s.namespace)
            .with_identity(&s.identity)
            .with_duration(secs)
            // Renew a third of the duration before expiry: tolerates a slow API call or two.
            .with_grace((secs / 3).max(1))
            // One field manager per identity: a contender's server-side apply of
            // holderIdentity then conflicts (409) with the holder's instead of overwriting it,
            // so two replicas never take the same free Lease at once (with one manager shared
            // by all, an apply takes over a field its own manager already holds).
            .with_field_manager(format!("{MANAGER}-lease-{}", s.identity))
            .build()
            .await
            .map_err(|source| StartError::LeaderElection {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                source,
            })?;
        let (rx, task) = manager.watch().await;
        info!(lease = %s.name, namespace = %s.namespace, identity = %s.identity, "competing for leadership");
        Ok(Leadership { rx, task })
    }

    /// Waits until this process holds the lease. `false` if the election stopped.
    pub async fn acquired(&mut self) -> bool {
        self.rx.wait_for(|leader| *leader).await.is_ok()
    }

    /// Gives the lease up so a follower takes over at once instead of after the lease duration.
    pub async fn release(self) {
        let Leadership { rx, task } = self;
        drop(rx);
        // The manager releases the lease when its channel closes; do not hang shutdown on it.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    /// Resolves when leadership is lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|leader| !*leader).await;
        }
    }
}
