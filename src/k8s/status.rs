//! The status writer, for both kinds: server-side apply of the status subresource, only when the
//! status differs from the current one, where the current one is our own last write until the
//! watch has shown it. What a status says is decided in `controller::report`.

use std::fmt::Debug;

use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::object::HasStatus,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::memo::Memo;
use crate::{
    Error,
    crd::{ClusterEcrPublicPullSecret, EcrPublicPullSecret, MANAGER},
};

/// A resource whose status the operator reports.
pub trait Reported:
    Resource<DynamicType = ()>
    + HasStatus<Status: Serialize + Clone + PartialEq + Send + Sync>
    + Clone
    + DeserializeOwned
    + Debug
{
    /// The API its status is written through.
    fn api(client: Client, obj: &Self) -> Api<Self>;
}

impl Reported for EcrPublicPullSecret {
    fn api(client: Client, obj: &Self) -> Api<Self> {
        Api::namespaced(client, &obj.namespace().unwrap_or_default())
    }
}

impl Reported for ClusterEcrPublicPullSecret {
    fn api(client: Client, _: &Self) -> Api<Self> {
        Api::all(client)
    }
}

/// Writes the status of resources of one kind.
pub struct StatusWriter<K: Reported> {
    client: Client,
    last: LastWritten<K::Status>,
}

impl<K: Reported> StatusWriter<K> {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            last: LastWritten::default(),
        }
    }

    /// Drops status writes of resources that are gone.
    pub fn prune(&self) {
        self.last.prune();
    }

    /// The resource's current status: our own last write until the watch has caught up with it.
    pub fn current(&self, obj: &K) -> Option<K::Status> {
        self.last.current(obj.meta().uid.as_deref(), obj.status())
    }

    /// Writes `desired` unless `current` already is exactly that. Returns whether it wrote (not
    /// when the resource is gone: deleted while it was reconciled, it has nobody to report to).
    pub async fn write(
        &self,
        obj: &K,
        current: Option<&K::Status>,
        desired: K::Status,
    ) -> Result<bool, Error> {
        if current == Some(&desired) {
            return Ok(false);
        }
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": desired,
        });
        let written = K::api(self.client.clone(), obj)
            .patch_status(
                &obj.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        match written {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if let Some(uid) = obj.uid() {
            self.last.record(uid, desired);
        }
        Ok(true)
    }
}

/// Our own last status write per resource (by UID), until the watch cache shows it. A reconcile
/// that starts before the watch has caught up must compare against what we wrote, or it would
/// write the same status again (and announce a change that already happened).
pub struct LastWritten<S>(Memo<String, S>);

impl<S> Default for LastWritten<S> {
    fn default() -> Self {
        Self(Memo::default())
    }
}

impl<S: Clone + PartialEq> LastWritten<S> {
    /// The current status: ours while the cache has not shown it yet, else the cached one (also
    /// for an object without a UID, which we never wrote).
    pub fn current(&self, uid: Option<&str>, cached: Option<&S>) -> Option<S> {
        uid.and_then(|uid| self.0.unseen(uid, |ours| cached == Some(ours)))
            .or_else(|| cached.cloned())
    }

    pub fn record(&self, uid: String, written: S) {
        self.0.record(uid, written);
    }

    /// Drops writes the cache should long have shown (their resources are gone).
    pub fn prune(&self) {
        self.0.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_last_write_stands_until_the_cache_shows_it() {
        let last = LastWritten::default();
        let u = Some("u");
        assert_eq!(
            last.current(u, Some(&1)),
            Some(1),
            "nothing written: the cache"
        );
        last.record("u".into(), 2);
        assert_eq!(last.current(u, Some(&1)), Some(2), "cache behind: ours");
        assert_eq!(last.current(u, None), Some(2));
        assert_eq!(last.current(None, Some(&1)), Some(1), "no UID: the cache");
        assert_eq!(last.current(u, Some(&2)), Some(2), "cache caught up");
        assert_eq!(
            last.current(u, Some(&3)),
            Some(3),
            "once seen, later changes by others win"
        );
    }
}
