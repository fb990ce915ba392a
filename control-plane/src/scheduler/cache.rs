//! The scheduler's view of the cluster: every node with the pods on it, bound and assumed.
//!
//! Fed by the informers (`upsert_node`, `remove_node`, `upsert_pod`, `remove_pod`, each
//! returning the cluster event to hand the queue) and by the scheduling loop (`assume` right
//! after a node is chosen, `forget` when the bind fails, `finish_binding` when it succeeded).
//!
//! Invariants:
//! - A pod is counted on at most one node; an assumed pod counts from `assume` on, so the next
//!   cycle sees its resources even before the bind's watch event arrives (no overcommit).
//! - An assumed pod is confirmed by the first `upsert_pod` that shows it bound (to any node:
//!   the API server's word wins), removed by `forget`, or expires at its deadline
//!   (`cleanup_expired`) if neither happens, so a lost watch event cannot leak its resources.
//! - Terminal pods (Succeeded/Failed) free their resources at once.
//! - Pods bound to a node the cache does not know yet are kept aside and counted when it
//!   arrives; a removed node's pods are kept aside the same way.
//!
//! Scheduling runs directly against the cache (`&Cache`), not a copy: Kubernetes snapshots
//! because its binding cycle runs concurrently with informer updates; here the caller holds
//! the cache (one owner or one lock) for a cycle, then calls `assume`. No NodeInfo is cloned per
//! pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};

use super::framework::{ActionType, ClusterEvent, EventResource, NodeInfo, PodInfo, PodKey, pod_key};
use super::selector::Selector;

/// How long an assumed pod counts without confirmation, from `assume` or `finish_binding`.
/// Covers a bind call plus the watch event's delay with a wide margin.
pub const ASSUMED_TTL_DEFAULT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("pod {0} is already in the scheduler cache")]
    AlreadyPresent(PodKey),
    #[error("node {0} is not in the scheduler cache")]
    UnknownNode(String),
}

/// Kinds of objects whose selectors define a pod's default topology spreading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpreadSourceKind {
    Service,
    ReplicationController,
    ReplicaSet,
    StatefulSet,
}

#[derive(Debug)]
struct CachedPod {
    node: String,
    info: Arc<PodInfo>,
    /// Set while the pod is assumed and not yet confirmed by the API server.
    assumed_deadline: Option<Instant>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Cache {
    /// Nodes in scan order (the scheduler's rotating start index walks this).
    nodes: Vec<NodeInfo>,
    /// Node name → position in `nodes`.
    index: HashMap<String, usize>,
    /// Pods (bound or assumed) on nodes not in `nodes`, by node name.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    pods: HashMap<PodKey, CachedPod>,
    assumed: HashSet<PodKey>,
    assumed_ttl: Duration,
    /// Per namespace: (kind, name, selector) of the objects that spread their pods by default.
    spread_sources: HashMap<String, Vec<(SpreadSourceKind, String, Selector)>>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(ASSUMED_TTL_DEFAULT)
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// What changed between two versions of a Node, as queue actions.
fn node_update_actions(old: &Node, new: &Node) -> ActionType {
    let mut action = ActionType(0);
    let status = |n: &Node| n.status.as_ref().map(|s| (s.allocatable.clone(), s.capacity.clone()));
    if status(old) != status(new) {
        action = action.or(ActionType::UPDATE_NODE_ALLOCATABLE);
    }
    if old.metadata.labels != new.metadata.labels {
        action = action.or(ActionType::UPDATE_NODE_LABEL);
    }
    let taints = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    if taints(old) != taints(new) {
        action = action.or(ActionType::UPDATE_NODE_TAINT);
    }
    if old.status.as_ref().map(|s| &s.conditions) != new.status.as_ref().map(|s| &s.conditions) {
        action = action.or(ActionType::UPDATE_NODE_CONDITION);
    }
    if old.metadata.annotations != new.metadata.annotations {
        action = action.or(ActionType::UPDATE_NODE_ANNOTATION);
    }
    action
}

impl Cache {
    pub fn new(assumed_ttl: Duration) -> Cache {
        Cache {
            nodes: Vec::new(),
            index: HashMap::new(),
            orphans: HashMap::new(),
            pods: HashMap::new(),
            assumed: HashSet::new(),
            assumed_ttl,
            spread_sources: HashMap::new(),
        }
    }

    /// The nodes, in scan order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Number of pods counted (bound and assumed).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains(key)
    }

    /// Adds or replaces a Node. Returns the event for the queue (None: nothing relevant changed).
    pub fn upsert_node(&mut self, node: Arc<Node>) -> Option<ClusterEvent> {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            let action = node_update_actions(&self.nodes[i].node, &node);
            self.nodes[i].set_node(node);
            return (action.0 != 0).then_some(ClusterEvent::new(EventResource::Node, action));
        }
        let mut info = NodeInfo::new(node);
        for pod in self.orphans.remove(&name).into_iter().flatten() {
            info.add_pod(pod);
        }
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        Some(ClusterEvent::new(EventResource::Node, ActionType::ADD))
    }

    /// Removes a Node; its pods stay counted aside until they are removed or it comes back.
    pub fn remove_node(&mut self, name: &str) -> Option<ClusterEvent> {
        let i = self.index.remove(name)?;
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        if !info.pods.is_empty() {
            self.orphans.insert(name.to_string(), info.pods);
        }
        Some(ClusterEvent::new(EventResource::Node, ActionType::DELETE))
    }

    fn place(&mut self, node: &str, info: Arc<PodInfo>) {
        match self.index.get(node) {
            Some(&i) => self.nodes[i].add_pod(info),
            None => self.orphans.entry(node.to_string()).or_default().push(info),
        }
    }

    fn unplace(&mut self, node: &str, key: &str) {
        match self.index.get(node) {
            Some(&i) => {
                self.nodes[i].remove_pod(key);
            }
            None => {
                if let Some(pods) = self.orphans.get_mut(node) {
                    pods.retain(|p| p.key != key);
                    if pods.is_empty() {
                        self.orphans.remove(node);
                    }
                }
            }
        }
    }

    fn take(&mut self, key: &str) -> Option<CachedPod> {
        let cached = self.pods.remove(key)?;
        self.assumed.remove(key);
        self.unplace(&cached.node, key);
        Some(cached)
    }

    /// A pod from the informer. Bound pods are counted on their node (confirming an assumed
    /// one); terminal pods are dropped; unbound pods are not the cache's business (unless
    /// assumed: the bind is in flight). Returns the AssignedPod event for the queue.
    pub fn upsert_pod(&mut self, pod: Arc<Pod>) -> Option<ClusterEvent> {
        let key = pod_key(&pod);
        if is_terminal(&pod) {
            return self.remove_pod(&key);
        }
        let Some(node) = bound_node(&pod).map(str::to_string) else {
            if self.assumed.contains(&key) {
                return None;
            }
            return self.remove_pod(&key);
        };
        let info = Arc::new(PodInfo::new(pod));
        let old = self.take(&key);
        let action = match &old {
            None => ActionType::ADD,
            Some(old) if old.assumed_deadline.is_some() => ActionType::ADD,
            Some(old) => {
                let mut action = ActionType(0);
                if old.info.labels() != info.labels() {
                    action = action.or(ActionType::UPDATE_POD_LABEL);
                }
                let (o, n) = (&old.info.requests, &info.requests);
                if n.milli_cpu < o.milli_cpu || n.memory < o.memory || n.ephemeral_storage < o.ephemeral_storage {
                    action = action.or(ActionType::UPDATE_POD_SCALE_DOWN);
                }
                let tolerations = |p: &PodInfo| p.spec().map(|s| s.tolerations.clone());
                if tolerations(&old.info) != tolerations(&info) {
                    action = action.or(ActionType::UPDATE_POD_TOLERATION);
                }
                action
            }
        };
        self.place(&node, info.clone());
        self.pods.insert(key, CachedPod { node, info, assumed_deadline: None });
        (action.0 != 0).then_some(ClusterEvent::new(EventResource::AssignedPod, action))
    }

    /// A pod deleted (or gone terminal). Returns the AssignedPod Delete event if it was counted.
    pub fn remove_pod(&mut self, key: &str) -> Option<ClusterEvent> {
        self.take(key).map(|_| ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE))
    }

    /// Counts `pod` on `node` now, before its bind completes; it expires `assumed_ttl` after
    /// `now` unless confirmed, forgotten or extended by `finish_binding`.
    pub fn assume(&mut self, pod: Arc<Pod>, node: &str, now: Instant) -> Result<(), CacheError> {
        let key = pod_key(&pod);
        if self.pods.contains_key(&key) {
            return Err(CacheError::AlreadyPresent(key));
        }
        if !self.index.contains_key(node) {
            return Err(CacheError::UnknownNode(node.to_string()));
        }
        let info = Arc::new(PodInfo::new(pod));
        self.place(node, info.clone());
        self.assumed.insert(key.clone());
        self.pods
            .insert(key, CachedPod { node: node.to_string(), info, assumed_deadline: Some(now + self.assumed_ttl) });
        Ok(())
    }

    /// The bind call succeeded: the assumed pod now waits `assumed_ttl` from `now` for its
    /// watch event.
    pub fn finish_binding(&mut self, key: &str, now: Instant) {
        if let Some(cached) = self.pods.get_mut(key).filter(|c| c.assumed_deadline.is_some()) {
            cached.assumed_deadline = Some(now + self.assumed_ttl);
        }
    }

    /// The bind failed: stop counting the assumed pod. Returns whether it was assumed.
    pub fn forget(&mut self, key: &str) -> bool {
        if !self.assumed.contains(key) {
            return false;
        }
        self.take(key).is_some()
    }

    /// Drops assumed pods whose deadline has passed; returns their keys.
    pub fn cleanup_expired(&mut self, now: Instant) -> Vec<PodKey> {
        let expired: Vec<PodKey> = self
            .assumed
            .iter()
            .filter(|k| self.pods.get(*k).and_then(|c| c.assumed_deadline).is_some_and(|d| d <= now))
            .cloned()
            .collect();
        for key in &expired {
            self.take(key);
        }
        expired
    }

    /// Records (Some) or removes (None) the selector of a Service, RC, ReplicaSet or
    /// StatefulSet, for default topology spreading. Empty selectors select nothing.
    pub fn set_spread_source(
        &mut self,
        kind: SpreadSourceKind,
        namespace: &str,
        name: &str,
        selector: Option<Selector>,
    ) {
        let entries = self.spread_sources.entry(namespace.to_string()).or_default();
        entries.retain(|(k, n, _)| !(*k == kind && n == name));
        if let Some(selector) = selector.filter(|s| !s.is_empty()) {
            entries.push((kind, name.to_string(), selector));
        }
        if entries.is_empty() {
            self.spread_sources.remove(namespace);
        }
    }

    /// The union of the selectors of every spread source selecting `pod` (None: none does).
    pub fn default_spread_selector(&self, pod: &PodInfo) -> Option<Selector> {
        let mut combined: Option<Selector> = None;
        for (_, _, selector) in self.spread_sources.get(pod.namespace()).into_iter().flatten() {
            if selector.matches(pod.labels()) {
                combined.get_or_insert_with(Selector::default).extend(selector);
            }
        }
        combined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node_object, pod_object, requesting};
    use serde_json::json;

    fn bound(name: &str, node: &str, cpu: &str) -> Arc<Pod> {
        let mut pod = pod_object(name, json!({}), requesting(cpu, ""));
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.to_string());
        }
        Arc::new(pod)
    }

    #[test]
    fn scheduler_cache_counts_bound_pods_and_frees_terminal_ones() {
        let mut cache = Cache::default();
        assert_eq!(
            cache.upsert_pod(bound("early", "n1", "1")),
            Some(ClusterEvent::new(EventResource::AssignedPod, ActionType::ADD))
        );
        cache.upsert_node(Arc::new(node_object("n1", json!({}))));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(1000), "pod bound before its node arrived");
        let mut done = (*bound("early", "n1", "1")).clone();
        done.status =
            Some(k8s_openapi::api::core::v1::PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
        assert_eq!(cache.upsert_pod(Arc::new(done)).map(|e| e.action), Some(ActionType::DELETE));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(0));
        assert_eq!(cache.pod_count(), 0);
    }

    #[test]
    fn scheduler_cache_assumed_pods_count_until_confirmed_forgotten_or_expired() {
        let t0 = Instant::now();
        let mut cache = Cache::new(Duration::from_secs(30));
        cache.upsert_node(Arc::new(node_object("n1", json!({}))));
        cache.upsert_node(Arc::new(node_object("n2", json!({}))));
        let pending = |name: &str| Arc::new(pod_object(name, json!({}), requesting("1", "")));
        cache.assume(pending("a"), "n1", t0).expect("assume a");
        assert_eq!(cache.assume(pending("a"), "n1", t0), Err(CacheError::AlreadyPresent("default/a".into())));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
        // Confirmed on another node than assumed: the API server's word wins.
        cache.upsert_pod(bound("a", "n2", "1"));
        assert!(!cache.is_assumed("default/a"));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(0));
        assert_eq!(cache.node("n2").map(|n| n.requested.milli_cpu), Some(1000));
        assert!(cache.cleanup_expired(t0 + Duration::from_secs(60)).is_empty(), "confirmed pods never expire");
        // Forgotten after a failed bind.
        cache.assume(pending("b"), "n1", t0).expect("assume b");
        assert!(cache.forget("default/b"));
        assert_eq!(cache.node("n1").map(|n| n.pods.len()), Some(0));
        // Expired when never confirmed.
        cache.assume(pending("c"), "n1", t0).expect("assume c");
        cache.finish_binding("default/c", t0 + Duration::from_secs(10));
        assert!(cache.cleanup_expired(t0 + Duration::from_secs(39)).is_empty());
        assert_eq!(cache.cleanup_expired(t0 + Duration::from_secs(40)), vec!["default/c".to_string()]);
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(0));
    }

    #[test]
    fn scheduler_cache_node_events_describe_the_change() {
        let mut cache = Cache::default();
        let n = |extra| Arc::new(node_object("n1", extra));
        assert_eq!(cache.upsert_node(n(json!({}))).map(|e| e.action), Some(ActionType::ADD));
        assert_eq!(cache.upsert_node(n(json!({}))), None);
        let tainted = cache.upsert_node(n(json!({"spec": {"unschedulable": true}})));
        assert_eq!(tainted.map(|e| e.action), Some(ActionType::UPDATE_NODE_TAINT));
        let labelled =
            cache.upsert_node(n(json!({"spec": {"unschedulable": true}, "metadata": {"labels": {"a": "b"}}})));
        assert_eq!(labelled.map(|e| e.action), Some(ActionType::UPDATE_NODE_LABEL));
        cache.upsert_pod(bound("p", "n1", "1"));
        assert_eq!(cache.remove_node("n1").map(|e| e.action), Some(ActionType::DELETE));
        assert!(cache.nodes().is_empty());
        cache.upsert_node(n(json!({})));
        assert_eq!(cache.node("n1").map(|n| n.pods.len()), Some(1), "pods of a removed node come back with it");
    }
}
