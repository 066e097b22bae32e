//! A local copy of a real API server's objects, kept by watches, so tests can read and await
//! state synchronously exactly as they do on the emulator.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle};

/// One kind the mirror follows: the emulator's resource key and where the API serves it.
pub struct Kind {
    pub key: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Kind {
    pub fn api_resource(&self) -> ApiResource {
        let api_version = if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version,
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

/// Every kind the operator's tests read: core objects it writes or reads, its two CRDs.
pub const KINDS: &[Kind] = &[
    Kind {
        key: "namespaces",
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
    },
    Kind {
        key: "secrets",
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
    },
    Kind {
        key: "configmaps",
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
    },
    Kind {
        key: "serviceaccounts",
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
    },
    Kind {
        key: "events.events.k8s.io",
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
    },
    Kind {
        key: "leases.coordination.k8s.io",
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
    },
    Kind {
        key: "ecrpublicpullsecrets.ecrpublic.pullsecrets.dev",
        group: "ecrpublic.pullsecrets.dev",
        version: "v1alpha1",
        kind: "EcrPublicPullSecret",
        plural: "ecrpublicpullsecrets",
        namespaced: true,
    },
    Kind {
        key: "clusterecrpublicpullsecrets.ecrpublic.pullsecrets.dev",
        group: "ecrpublic.pullsecrets.dev",
        version: "v1alpha1",
        kind: "ClusterEcrPublicPullSecret",
        plural: "clusterecrpublicpullsecrets",
        namespaced: false,
    },
];

pub fn kind(key: &str) -> &'static Kind {
    KINDS
        .iter()
        .find(|k| k.key == key)
        .unwrap_or_else(|| panic!("the real-cluster mirror does not follow {key:?}"))
}

type Objects = HashMap<&'static str, BTreeMap<(String, String), Value>>;

/// Objects by kind and (namespace, name), as the watches last delivered them.
pub struct Mirror {
    objects: Arc<Mutex<Objects>>,
    changes: watch::Sender<u64>,
    tasks: Vec<JoinHandle<()>>,
}

fn lock(m: &Mutex<Objects>) -> MutexGuard<'_, Objects> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_of(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&meta["namespace"]), s(&meta["name"]))
}

/// A resourceVersion as a number: etcd revisions, which is what kube-apiserver hands out.
pub fn revision(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Mirror {
    /// Watches every kind in [`KINDS`] cluster-wide and returns once each initial list is in.
    pub async fn start(client: &Client) -> Result<Mirror, String> {
        let objects: Arc<Mutex<Objects>> = Arc::default();
        let (changes, _) = watch::channel(0u64);
        let mut tasks = Vec::new();
        let mut synced = Vec::new();
        for kind in KINDS {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            synced.push((kind.key, rx));
            tasks.push(tokio::spawn(follow(
                client.clone(),
                kind,
                objects.clone(),
                changes.clone(),
                tx,
            )));
        }
        for (key, rx) in synced {
            tokio::time::timeout(Duration::from_secs(30), rx)
                .await
                .map_err(|_| format!("the mirror's watch of {key} did not sync within 30 s"))?
                .map_err(|_| format!("the mirror's watch of {key} ended"))?;
        }
        Ok(Mirror {
            objects,
            changes,
            tasks,
        })
    }

    pub fn get(&self, key: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let objects = lock(&self.objects);
        let k = (namespace.unwrap_or_default().to_string(), name.to_string());
        objects.get(key).and_then(|m| m.get(&k)).cloned()
    }

    pub fn list(&self, key: &str, namespace: Option<&str>) -> Vec<Value> {
        let objects = lock(&self.objects);
        objects
            .get(key)
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A receiver that changes whenever any followed object does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Keeps one kind's objects current; signals `synced` after the first complete list.
async fn follow(
    client: Client,
    kind: &'static Kind,
    objects: Arc<Mutex<Objects>>,
    changes: watch::Sender<u64>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let ar = kind.api_resource();
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut synced = Some(synced);
    let mut pending: Option<BTreeMap<(String, String), Value>> = None;
    let mut stream = watcher(api, watcher::Config::default())
        .backoff(ecr_public_pull_secret_operator::k8s::watch::Retry::default())
        .boxed();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else { continue };
        let as_value = |obj: DynamicObject| {
            let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
            // List items come without apiVersion and kind; watch events have them.
            v["apiVersion"] = Value::String(ar.api_version.clone());
            v["kind"] = Value::String(ar.kind.clone());
            v
        };
        let mut all = lock(&objects);
        let current = all.entry(kind.key).or_default();
        match event {
            watcher::Event::Init => pending = Some(BTreeMap::new()),
            watcher::Event::InitApply(obj) => {
                let v = as_value(obj);
                pending.get_or_insert_default().insert(key_of(&v), v);
            }
            watcher::Event::InitDone => {
                *current = pending.take().unwrap_or_default();
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            watcher::Event::Apply(obj) => {
                let v = as_value(obj);
                current.insert(key_of(&v), v);
            }
            watcher::Event::Delete(obj) => {
                let v = as_value(obj);
                current.remove(&key_of(&v));
            }
        }
        drop(all);
        changes.send_modify(|n| *n += 1);
    }
}
