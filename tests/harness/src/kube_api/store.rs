//! The object store: every object by resource/namespace/name, the global resourceVersion, the
//! bounded event history watches resume from, and the live watch registrations.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::meta::{meta_mut, owner_uids, uid_of};
use super::registry::ResourceDef;

/// Default number of events kept for watches resuming from an older resourceVersion; older
/// ones get 410 Expired, as after etcd compaction.
pub const HISTORY_LIMIT: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub resource: String,
    /// Empty for cluster-scoped objects.
    pub ns: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(resource: &str, ns: Option<&str>, name: &str) -> Self {
        ObjKey {
            resource: resource.into(),
            ns: ns.unwrap_or_default().into(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub ty: EventType,
    pub resource: String,
    pub ns: String,
    pub object: Arc<Value>,
    /// The object before a modification, for selector transitions.
    pub prev: Option<Arc<Value>>,
}

struct WatcherReg {
    resource: String,
    ns: Option<String>,
    tx: mpsc::UnboundedSender<Arc<Event>>,
}

pub struct Store {
    pub rv: u64,
    defs: BTreeMap<String, Arc<ResourceDef>>,
    objects: HashMap<String, BTreeMap<(String, String), Arc<Value>>>,
    uids: HashMap<String, ObjKey>,
    dependents: HashMap<String, BTreeSet<ObjKey>>,
    history: VecDeque<Arc<Event>>,
    /// Highest resourceVersion no longer in `history`.
    compacted: u64,
    /// The resourceVersion each resource was registered at: like a watch cache started then,
    /// watches cannot resume from before it.
    born: HashMap<String, u64>,
    /// The resourceVersion of each resource's latest event (what its watch cache has seen).
    latest: HashMap<String, u64>,
    history_limit: usize,
    watchers: Vec<WatcherReg>,
    changes: watch::Sender<u64>,
}

impl Store {
    pub fn new(changes: watch::Sender<u64>) -> Self {
        Store {
            rv: 1,
            defs: BTreeMap::new(),
            objects: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            history: VecDeque::new(),
            compacted: 1,
            born: HashMap::new(),
            latest: HashMap::new(),
            history_limit: HISTORY_LIMIT,
            watchers: Vec::new(),
            changes,
        }
    }

    pub fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn def(&self, key: &str) -> Option<Arc<ResourceDef>> {
        self.defs.get(key).cloned()
    }

    pub fn defs(&self) -> impl Iterator<Item = &Arc<ResourceDef>> {
        self.defs.values()
    }

    pub fn register(&mut self, def: ResourceDef) {
        self.born.entry(def.key()).or_insert(self.rv);
        self.defs.insert(def.key(), Arc::new(def));
        self.notify();
    }

    pub fn unregister(&mut self, key: &str) {
        self.defs.remove(key);
        self.born.remove(key);
        self.latest.remove(key);
        self.notify();
    }

    /// The resourceVersion a watch cache of `resource` would be at: its latest event, or when
    /// it was registered.
    pub fn resource_rv(&self, resource: &str) -> u64 {
        self.latest
            .get(resource)
            .or_else(|| self.born.get(resource))
            .copied()
            .unwrap_or(self.rv)
    }

    pub fn get(&self, key: &ObjKey) -> Option<Arc<Value>> {
        self.objects
            .get(&key.resource)?
            .get(&(key.ns.clone(), key.name.clone()))
            .cloned()
    }

    pub fn by_uid(&self, uid: &str) -> Option<&ObjKey> {
        self.uids.get(uid)
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<ObjKey> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects of `resource` (in `ns` if given), ordered by namespace then name.
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(all) = self.objects.get(resource) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => all
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => all.values().cloned().collect(),
        }
    }

    /// Keys of every namespaced object in `ns`, across resources.
    pub fn keys_in_namespace(&self, ns: &str) -> Vec<ObjKey> {
        let mut out = Vec::new();
        for (resource, all) in &self.objects {
            for (n, name) in all
                .range((ns.to_string(), String::new())..)
                .map(|(k, _)| k)
                .take_while(|(n, _)| n == ns)
            {
                out.push(ObjKey {
                    resource: resource.clone(),
                    ns: n.clone(),
                    name: name.clone(),
                });
            }
        }
        out
    }

    pub fn keys_of(&self, resource: &str) -> Vec<ObjKey> {
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(|all| all.keys())
            .map(|(ns, name)| ObjKey {
                resource: resource.into(),
                ns: ns.clone(),
                name: name.clone(),
            })
            .collect()
    }

    fn index(&mut self, key: &ObjKey, old: Option<&Value>, new: Option<&Value>) {
        if let Some(old) = old {
            self.uids.remove(uid_of(old));
            for owner in owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&owner) {
                    set.remove(key);
                    if set.is_empty() {
                        self.dependents.remove(&owner);
                    }
                }
            }
        }
        if let Some(new) = new {
            self.uids.insert(uid_of(new).to_string(), key.clone());
            for owner in owner_uids(new) {
                self.dependents
                    .entry(owner)
                    .or_default()
                    .insert(key.clone());
            }
        }
    }

    /// Stores `obj` at a fresh resourceVersion and emits ADDED or MODIFIED.
    pub fn commit(&mut self, key: &ObjKey, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        let prev = self
            .objects
            .entry(key.resource.clone())
            .or_default()
            .insert((key.ns.clone(), key.name.clone()), obj.clone());
        self.index(key, prev.as_deref(), Some(&obj));
        let ty = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(key, ty, obj.clone(), prev);
        obj
    }

    /// Removes the object, emitting DELETED with `last` (default: the stored object) at a fresh
    /// resourceVersion.
    pub fn remove(&mut self, key: &ObjKey, last: Option<Value>) -> Option<Arc<Value>> {
        let stored = self
            .objects
            .get_mut(&key.resource)?
            .remove(&(key.ns.clone(), key.name.clone()))?;
        self.index(key, Some(&stored), None);
        self.rv += 1;
        let mut last = last.unwrap_or_else(|| (*stored).clone());
        meta_mut(&mut last).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let last = Arc::new(last);
        self.emit(key, EventType::Deleted, last.clone(), Some(stored));
        Some(last)
    }

    fn emit(&mut self, key: &ObjKey, ty: EventType, object: Arc<Value>, prev: Option<Arc<Value>>) {
        let event = Arc::new(Event {
            rv: self.rv,
            ty,
            resource: key.resource.clone(),
            ns: key.ns.clone(),
            object,
            prev,
        });
        self.latest.insert(key.resource.clone(), self.rv);
        self.history.push_back(event.clone());
        self.trim_history();
        self.watchers.retain(|w| {
            if w.resource != key.resource || w.ns.as_ref().is_some_and(|n| *n != key.ns) {
                return !w.tx.is_closed();
            }
            w.tx.send(event.clone()).is_ok()
        });
        self.notify();
    }

    /// Events of `resource` after `rv`, or `Err(oldest)` with the oldest resourceVersion a watch
    /// can start from when `rv` is older: compacted away, or from before the resource existed.
    pub fn events_since(
        &self,
        resource: &str,
        ns: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Arc<Event>>, u64> {
        let oldest = self
            .compacted
            .max(self.born.get(resource).copied().unwrap_or(0));
        if rv < oldest {
            return Err(oldest);
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self
            .history
            .range(start..)
            .filter(|e| e.resource == resource && ns.is_none_or(|n| n == e.ns))
            .cloned()
            .collect())
    }

    pub fn subscribe(
        &mut self,
        resource: &str,
        ns: Option<&str>,
    ) -> mpsc::UnboundedReceiver<Arc<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(WatcherReg {
            resource: resource.into(),
            ns: ns.map(String::from),
            tx,
        });
        rx
    }

    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit;
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Ends every open watch stream (their receivers see the channel close).
    pub fn close_watches(&mut self) {
        self.watchers.clear();
        self.notify();
    }
}
