//! Every watch the operator runs: one builder, and one list-and-watch per resource however many
//! reconcilers read it (custom resources and Namespaces are read by a Secret reconciler and by
//! the ServiceAccount reconciler).
//!
//! Why not kube-runtime's shared streams (`reflector::store_shared` + `reflect_shared`)? They
//! broadcast on a bounded channel: the reflector waits for its slowest subscriber, so a slow
//! ServiceAccount pass (its mapper scans every ServiceAccount for each resource event) would
//! hold back the cache and the triggers of Secret rotation (the bounded broadcast of
//! <https://github.com/kube-rs/kube/pull/1449>); and they pass on no deletions
//! (<https://github.com/kube-rs/kube/issues/1590>), which the ServiceAccount reconciler needs (a
//! deleted resource's entries go). Here each subscriber
//! gets its own unbounded queue: the watch never waits for anyone, and a subscriber that lags
//! only holds the events it has not read yet.
//!
//! Every cache drops what the operator never reads: `managedFields` and `kubectl apply`'s
//! `last-applied-configuration` copy, at thousands of objects most of what a cache would hold.
//! The Secret caches go further and keep a projection ([`crate::k8s::cached_secret`]): the few
//! fields a reconcile reads, the token state parsed once, keyed by name and namespace alone.

use std::{fmt::Debug, hash::Hash, sync::Arc, time::Duration};

use futures::{
    Stream, StreamExt, TryStreamExt,
    channel::mpsc::{self, UnboundedReceiver},
    future,
    stream::BoxStream,
};
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt, reflector,
        reflector::{Lookup, ObjectRef, Store},
        utils::Backoff,
        watcher,
        watcher::Event,
    },
};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::synced::Synced;

/// `kubectl apply`'s full copy of the object; never read, often as large as the spec.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One list-and-watch of `K`: a cache, and a stream of changes for each subscriber.
pub struct Watch<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    events: BoxStream<'static, Result<Event<K>, watcher::Error>>,
    subscribers: Vec<Subscriber<K>>,
}

/// Hands one event to one subscriber; false once that subscriber has gone.
type Subscriber<K> = Box<dyn FnMut(&Event<Arc<K>>) -> bool + Send>;

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// Lists and watches `api` with `config` (pages of 500, backoff on errors) once it runs.
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        Self::projected(api, config, slim)
    }

    /// Lists and watches `api` like [`Watch::new`], and drops each object's resourceVersion
    /// too: for the operator's own resources, whose version nothing reads, while kube-runtime
    /// copies it into the key of each cache entry and of each scheduled reconcile.
    pub fn unversioned(api: Api<K>, config: watcher::Config) -> Self {
        Self::projected(api, config, |obj| {
            let mut obj = slim(obj);
            obj.meta_mut().resource_version = None;
            obj
        })
    }
}

impl<K> Watch<K>
where
    K: Lookup + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    /// Lists and watches `api` like [`Watch::new`], caching and passing on `project(object)`
    /// instead of each object.
    pub fn projected<S>(api: Api<S>, config: watcher::Config, project: fn(S) -> K) -> Self
    where
        S: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        S::DynamicType: Default,
    {
        let (store, writer) = reflector::store();
        let watch = watcher(api, config)
            .backoff(Retry::default())
            .map_ok(move |event| map(event, project));
        Self {
            store,
            events: reflector(writer, watch).boxed(),
            subscribers: Vec::new(),
        }
    }

    /// The cache; complete once the first list is in.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of every change from the first list on. Subscribe before [`Watch::run`].
    pub fn subscribe(&mut self) -> Subscription<Arc<K>> {
        let (tx, rx) = mpsc::unbounded();
        self.subscribers.push(Box::new(move |event| {
            tx.unbounded_send(event.clone()).is_ok()
        }));
        Subscription(rx)
    }

    /// Like [`Watch::subscribe`], with each object as a reference by name and namespace only,
    /// for `Controller::reconcile_on`. What a subscriber has not read yet waits in its queue (at
    /// a cold start, most of a list page while the controller is busy): as references, not as
    /// copies of whole objects. And kube-runtime keeps each trigger's reference in its scheduler
    /// (a map and a queue) until the reconcile it causes, and then until the rotation that
    /// reconcile schedules; one made from the object would carry the object's UID into both, a
    /// string per resource the controller never reads (it finds the object by name and
    /// namespace).
    pub fn subscribe_refs(&mut self) -> Subscription<ObjectRef<K>>
    where
        K: Resource<DynamicType = ()>,
    {
        let (tx, rx) = mpsc::unbounded();
        self.subscribers.push(Box::new(move |event| {
            let event = map(event.clone(), |obj| bare_ref(&*obj));
            tx.unbounded_send(event).is_ok()
        }));
        Subscription(rx)
    }

    /// Feeds the cache and the subscribers. Never ends on its own (the watcher retries every
    /// error with backoff); the operator drops it once its reconcilers have stopped.
    pub async fn run(mut self) {
        while let Some(event) = self.events.next().await {
            let event = match event {
                // The object behind an `Arc`, cloned once for any number of subscribers.
                Ok(event) => map(event, Arc::new),
                // Said once here rather than by every reconciler reading the stream.
                Err(error) => {
                    warn!(kind = %K::kind(&K::DynamicType::default()), %error, "watch failed; retrying");
                    continue;
                }
            };
            // A subscriber whose reconciler has stopped is dropped.
            self.subscribers.retain_mut(|send| send(&event));
        }
    }
}

/// The same event with `f` applied to its object.
fn map<A, B>(event: Event<A>, f: impl FnOnce(A) -> B) -> Event<B> {
    match event {
        Event::Apply(a) => Event::Apply(f(a)),
        Event::Delete(a) => Event::Delete(f(a)),
        Event::Init => Event::Init,
        Event::InitApply(a) => Event::InitApply(f(a)),
        Event::InitDone => Event::InitDone,
    }
}

/// Drops what no reconciler reads. Emptied collections are freed, not just cleared: an empty
/// `Vec` keeps its buffer and an empty `BTreeMap` its node, per cached object.
fn slim<K: Resource>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    obj
}

/// `obj`'s cache key with nothing but its name and namespace.
fn bare_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<K> {
    let mut key = ObjectRef::new(obj.meta().name.as_deref().unwrap_or_default());
    key.namespace.clone_from(&obj.meta().namespace);
    key
}

/// One subscriber's view of a [`Watch`]: objects (`Arc<K>`) or references (`ObjectRef<K>`).
pub struct Subscription<T>(UnboundedReceiver<Event<T>>);

impl<T: Send + 'static> Subscription<T> {
    /// Objects added, changed or deleted. The first full list counts towards `synced`.
    pub fn touched(self, synced: &Synced) -> impl Stream<Item = T> + Send + 'static {
        self.objects(synced, true)
    }

    /// Objects added or changed: deletions are left to the garbage collector or a finalizer.
    /// The first full list counts towards `synced`.
    pub fn applied(self, synced: &Synced) -> impl Stream<Item = T> + Send + 'static {
        self.objects(synced, false)
    }

    fn objects(self, synced: &Synced, deleted: bool) -> impl Stream<Item = T> + Send + 'static {
        let events = self
            .0
            .map(Ok::<_, watcher::Error>)
            .inspect(synced.observer());
        let objects = if deleted {
            events.touched_objects()
        } else {
            events.applied_objects()
        };
        objects.filter_map(|o| future::ready(o.ok()))
    }
}

/// How soon a failed list or watch is tried again: from 0.8 s, doubling, at most
/// [`Retry::MAX`], with up to a quarter of jitter; back to the start after a success.
/// kube-runtime's default waits up to 30 s, gentle on a struggling API server, but then the
/// operator resumes up to 30 s after the API server is back; a few watches retried every 5 s
/// are no load.
#[derive(Debug, Clone)]
pub struct Retry {
    next: Duration,
}

impl Retry {
    const MIN: Duration = Duration::from_millis(800);
    pub const MAX: Duration = Duration::from_secs(5);
}

impl Default for Retry {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

impl Iterator for Retry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay.mul_f64(1.0 - fastrand::f64() / 4.0))
    }
}

impl Backoff for Retry {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;
    use crate::crd::{EcrPublicPullSecret, EcrPublicPullSecretSpec};

    #[test]
    fn retries_double_up_to_five_seconds_and_start_over_after_a_success() {
        let mut retry = Retry::default();
        let delays: Vec<Duration> = retry.by_ref().take(6).collect();
        let bounds = [0.8, 1.6, 3.2, 5.0, 5.0, 5.0].map(Duration::from_secs_f64);
        for (delay, most) in delays.iter().zip(bounds) {
            assert!(
                *delay <= most && *delay >= most.mul_f64(0.75),
                "{delay:?} for {most:?}"
            );
        }
        retry.reset();
        assert!(retry.next().unwrap() <= Retry::MIN);
    }

    #[test]
    fn a_bare_reference_finds_the_same_object_without_its_uid() {
        let mut cr = EcrPublicPullSecret::new("pull", EcrPublicPullSecretSpec::default());
        cr.metadata = ObjectMeta {
            name: Some("pull".into()),
            namespace: Some("team-a".into()),
            uid: Some("8d6b3f0e-0000-4000-8000-000000000001".into()),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        };
        let key = bare_ref(&cr);
        assert_eq!(
            key,
            ObjectRef::from_obj(&cr),
            "the store's key for the object"
        );
        assert_eq!(
            (key.name.as_str(), key.namespace.as_deref()),
            ("pull", Some("team-a"))
        );
        assert_eq!((key.extra.uid, key.extra.resource_version), (None, None));
    }
}
