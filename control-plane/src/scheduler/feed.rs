//! Informer callbacks → the scheduler's cache and queue, on every master (leading or not), so a
//! new leader starts with a warm cache and every pending pod already queued.
//!
//! - Pods: bound ones are counted in the cache (which confirms assumed ones) and leave the
//!   queue; unbound ones of `default-scheduler` are queued; the cache's AssignedPod events
//!   move parked pods.
//! - Nodes: into the cache; their events move parked pods.
//! - Services and ReplicaSets: their selectors, for default topology spreading. (Keel serves
//!   no ReplicationControllers or StatefulSets yet, so those spread sources stay empty.)

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};

use super::framework::{ClusterEvent, pod_key};
use super::runner::Shared;
use super::{Selector, SpreadSourceKind};
use crate::components::Informers;
use crate::informer::Change;

/// Registers every callback.
pub fn register(informers: &Informers, shared: &Arc<Shared>) {
    let on_pod = shared.clone();
    informers.pods.on_change(move |change| on_pod.pod_changed(change));
    let on_node = shared.clone();
    informers.nodes.on_change(move |change| on_node.node_changed(change));
    let on_service = shared.clone();
    informers.services.on_change(move |change| {
        let (service, gone) = changed_object(change);
        let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref()).map(Selector::from_map);
        on_service.spread_source(SpreadSourceKind::Service, &service.metadata, selector.filter(|_| !gone));
    });
    let on_replica_set = shared.clone();
    informers.replica_sets.on_change(move |change| {
        let (replica_set, gone): (&Arc<ReplicaSet>, bool) = changed_object(change);
        let selector = replica_set.spec.as_ref().and_then(|s| Selector::from_label_selector(Some(&s.selector)));
        on_replica_set.spread_source(SpreadSourceKind::ReplicaSet, &replica_set.metadata, selector.filter(|_| !gone));
    });
}

/// The object a change is about, and whether it is gone.
fn changed_object<'a, T>(change: &Change<'a, T>) -> (&'a Arc<T>, bool) {
    match change {
        Change::Added(object) => (object, false),
        Change::Updated { new, .. } => (new, false),
        Change::Deleted(object) => (object, true),
    }
}

impl Shared {
    fn pod_changed(&self, change: &Change<'_, Pod>) {
        let now = Instant::now();
        let mut state = self.lock();
        let event = match change {
            Change::Added(pod) | Change::Updated { new: pod, .. } => {
                let event = state.cache.upsert_pod(Arc::clone(pod));
                if let Err(error) = state.queue.update(Arc::clone(pod), now) {
                    tracing::warn!(pod = %pod_key(pod), %error, "not queued for scheduling");
                }
                event
            }
            Change::Deleted(pod) => {
                let key = pod_key(pod);
                state.queue.delete(&key);
                state.cache.remove_pod(&key)
            }
        };
        self.after_change(state, event, now);
    }

    fn node_changed(&self, change: &Change<'_, Node>) {
        let now = Instant::now();
        let mut state = self.lock();
        let event = match change {
            Change::Added(node) | Change::Updated { new: node, .. } => state.cache.upsert_node(Arc::clone(node)),
            Change::Deleted(node) => state.cache.remove_node(node.metadata.name.as_deref().unwrap_or_default()),
        };
        self.after_change(state, event, now);
    }

    fn spread_source(
        &self,
        kind: SpreadSourceKind,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        selector: Option<Selector>,
    ) {
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        self.lock().cache.set_spread_source(kind, namespace, name, selector);
    }

    /// Hands the queue the cluster event (if any) and wakes the scheduling loop.
    fn after_change(
        &self,
        mut state: std::sync::MutexGuard<'_, super::runner::State>,
        event: Option<ClusterEvent>,
        now: Instant,
    ) {
        if let Some(event) = event {
            state.queue.on_cluster_event(event, now);
        }
        let wake = !state.queue.is_empty();
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }
}
