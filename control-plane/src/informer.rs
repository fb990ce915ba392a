//! Informers: typed, in-memory copies of one resource, kept current from the API server's watch
//! cache in the same process, with change callbacks that feed the work queues.
//!
//! Why the watch cache and not kube-runtime's reflector over HTTP: the scheduler and the
//! controllers run inside a master, beside that master's watch caches. Subscribing in process
//! costs no TLS, no socket and no JSON encoding per event (the cache hands out the decoded
//! objects; an informer turns each into its k8s-openapi type once), and it starts from the
//! cache's snapshot, so a new leader's informers are synced in milliseconds.
//!
//! # Invariants
//! - Objects in an informer are never mutated: readers get `Arc`s and copy what they change.
//! - Callbacks run on the informer's task after the store reflects the change, so a worker
//!   woken by a callback sees at least that change.
//! - A subscription that ends (the informer fell behind, the cache re-listed) is replaced by a
//!   fresh snapshot; objects missing from it are reported deleted, so no delete is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::apiserver::Api;
use crate::apiserver::resources::Resource;
use crate::apiserver::watch_cache::{Notice, Start, WatchFrom};

/// The wait before re-subscribing after a failed subscription.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(200);

/// What changed.
pub enum Change<'a, T> {
    Added(&'a Arc<T>),
    Updated { old: &'a Arc<T>, new: &'a Arc<T> },
    Deleted(&'a Arc<T>),
}

type Callback<T> = Box<dyn Fn(&Change<'_, T>) + Send + Sync>;

/// Objects by namespace ("" for cluster-scoped), then name.
pub type Index<T> = BTreeMap<String, HashMap<String, Arc<T>>>;

pub struct Informer<T> {
    resource: &'static Resource,
    objects: RwLock<Index<T>>,
    callbacks: Mutex<Vec<Callback<T>>>,
    synced: watch::Sender<bool>,
}

impl<T> Informer<T>
where
    T: k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    /// An informer of `resource` and the future that keeps it. Spawn the future after
    /// registering the callbacks, so they hear about the initial objects too; the informer
    /// stops when that task is aborted (the caller owns it) and the last `Arc` is dropped.
    pub fn new(
        api: Arc<Api>,
        resource: &'static Resource,
    ) -> (Arc<Informer<T>>, impl std::future::Future<Output = ()> + Send + 'static) {
        let informer = Arc::new(Informer {
            resource,
            objects: RwLock::new(BTreeMap::new()),
            callbacks: Mutex::new(Vec::new()),
            synced: watch::channel(false).0,
        });
        let keeping = run(api, informer.clone());
        (informer, keeping)
    }

    /// Calls `callback` for every later change (register before waiting for the sync to
    /// hear about the initial objects too).
    pub fn on_change(&self, callback: impl Fn(&Change<'_, T>) + Send + Sync + 'static) {
        self.callbacks.lock().unwrap_or_else(PoisonError::into_inner).push(Box::new(callback));
    }

    /// Waits until the first snapshot is in.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|synced| *synced).await;
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<T>> {
        self.read().get(namespace).and_then(|objects| objects.get(name)).cloned()
    }

    /// The objects of one namespace ("" for cluster-scoped resources).
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<T>> {
        self.read().get(namespace).map(|objects| objects.values().cloned().collect()).unwrap_or_default()
    }

    pub fn list(&self) -> Vec<Arc<T>> {
        self.read().values().flat_map(|objects| objects.values().cloned()).collect()
    }

    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the whole index under its lock (keep `f` short).
    pub fn with<R>(&self, f: impl FnOnce(&Index<T>) -> R) -> R {
        f(&self.read())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index<T>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, change: &Change<'_, T>) {
        for callback in self.callbacks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            callback(change);
        }
    }

    fn decode(&self, value: &Value) -> Option<Arc<T>> {
        match T::deserialize(value) {
            Ok(object) => Some(Arc::new(object)),
            Err(error) => {
                tracing::warn!(resource = self.resource.plural, %error, "an object the informer cannot decode");
                None
            }
        }
    }

    /// Replaces the whole index with a snapshot, reporting the differences.
    fn install(&self, snapshot: &[Arc<Value>]) {
        let mut fresh: Index<T> = BTreeMap::new();
        for value in snapshot {
            if let Some(object) = self.decode(value) {
                let (namespace, name) = key_of(object.metadata());
                fresh.entry(namespace).or_default().insert(name, object);
            }
        }
        let old = std::mem::replace(&mut *self.objects.write().unwrap_or_else(PoisonError::into_inner), fresh);
        let current = self.read().clone();
        for (namespace, objects) in &current {
            for (name, new) in objects {
                match old.get(namespace).and_then(|o| o.get(name)) {
                    None => self.notify(&Change::Added(new)),
                    Some(previous) if version(&**previous) != version(&**new) => {
                        self.notify(&Change::Updated { old: previous, new })
                    }
                    Some(_) => {}
                }
            }
        }
        for (namespace, objects) in &old {
            for (name, gone) in objects {
                if current.get(namespace).is_none_or(|o| !o.contains_key(name)) {
                    self.notify(&Change::Deleted(gone));
                }
            }
        }
        self.synced.send_replace(true);
    }

    fn apply(&self, old: Option<&Value>, new: Option<&Value>) {
        match new.and_then(|value| self.decode(value)) {
            Some(object) => {
                let (namespace, name) = key_of(object.metadata());
                let previous = self
                    .objects
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(namespace)
                    .or_default()
                    .insert(name, object.clone());
                match previous {
                    Some(previous) => self.notify(&Change::Updated { old: &previous, new: &object }),
                    None => self.notify(&Change::Added(&object)),
                }
            }
            None => {
                let Some(gone) = old.and_then(|value| self.decode(value)) else { return };
                let (namespace, name) = key_of(gone.metadata());
                let removed = {
                    let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
                    let removed = objects.get_mut(&namespace).and_then(|o| o.remove(&name));
                    if objects.get(&namespace).is_some_and(HashMap::is_empty) {
                        objects.remove(&namespace);
                    }
                    removed
                };
                if let Some(removed) = removed {
                    self.notify(&Change::Deleted(&removed));
                }
            }
        }
    }
}

fn key_of(meta: &ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn version<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(object: &T) -> Option<&str> {
    object.metadata().resource_version.as_deref()
}

async fn run<T>(api: Arc<Api>, informer: Arc<Informer<T>>)
where
    T: k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    let cache = api.watch_caches.get(informer.resource);
    let prefix = informer.resource.prefix(None).into_bytes();
    loop {
        let subscription = match cache.subscribe(&prefix, WatchFrom::Snapshot).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::debug!(resource = informer.resource.plural, %error, "informer waiting for its watch cache");
                tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                continue;
            }
        };
        let from = subscription.from;
        let Start::Snapshot(objects) = subscription.start else {
            // A snapshot subscription always starts with a snapshot; anything else would be
            // a cache bug, and subscribing again recovers from it.
            tracing::error!(
                resource = informer.resource.plural,
                "the watch cache answered a snapshot subscription with a replay"
            );
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            continue;
        };
        informer.install(&objects);
        let mut notices = subscription.notices;
        while let Some(notice) = notices.recv().await {
            let Notice::Events(events) = notice else { continue };
            for event in events.iter().filter(|event| event.revision > from) {
                informer.apply(event.old.as_deref(), event.new.as_deref());
            }
        }
        tracing::debug!(resource = informer.resource.plural, "informer subscription ended; re-syncing");
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}
