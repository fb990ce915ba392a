//! The scheduling framework: what plugins see (`PodInfo`, `NodeInfo`, `CycleState`), what they
//! answer (`Status`), the extension-point traits, and the cluster events a plugin declares so
//! the queue knows when a pod it rejected is worth retrying.
//!
//! Extension points run in Kubernetes' order: PreFilter (once per pod, precomputes state) →
//! Filter (per node, must not allocate on success) → PreScore (once, over the feasible nodes) →
//! Score (per feasible node, 0..=100) → NormalizeScore (over all of one plugin's scores).

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::resources::{Resources, pod_requests};

/// Highest score a Score plugin may give a node (after normalization).
pub const MAX_NODE_SCORE: i64 = 100;

/// Outcome class of a plugin call, as Kubernetes' `framework.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    /// The node does not fit now; preemption (freeing resources) might make it fit.
    Unschedulable,
    /// The node cannot fit this pod whatever is evicted (labels, taints, name).
    UnschedulableAndUnresolvable,
    /// Internal error: the pod goes to backoff, not to the unschedulable set.
    Error,
    /// PreFilter/PreScore: this plugin has nothing to do for the pod; its Filter/Score is skipped.
    Skip,
}

/// A plugin's answer: a code, human reasons (they become the FitError histogram), and the
/// plugin that failed (filled in by the framework).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
    pub plugin: &'static str,
}

impl Status {
    pub const fn success() -> Status {
        Status { code: Code::Success, reasons: Vec::new(), plugin: "" }
    }
    pub const fn skip() -> Status {
        Status { code: Code::Skip, reasons: Vec::new(), plugin: "" }
    }
    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status { code, reasons: vec![reason.into()], plugin: "" }
    }
    pub fn with_reasons(code: Code, reasons: Vec<Cow<'static, str>>) -> Status {
        Status { code, reasons, plugin: "" }
    }
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
    /// The reasons joined as Kubernetes' `Status.Message()` does.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// The kind of object a cluster event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventResource {
    Pod,
    /// A pod already bound to a node (Kubernetes' `AssignedPod`); used by plugins that count pods.
    AssignedPod,
    Node,
}

/// What happened to the object: a bit set, so a plugin registers several actions at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionType(pub u32);

impl ActionType {
    pub const ADD: ActionType = ActionType(1);
    pub const DELETE: ActionType = ActionType(1 << 1);
    pub const UPDATE_NODE_ALLOCATABLE: ActionType = ActionType(1 << 2);
    pub const UPDATE_NODE_LABEL: ActionType = ActionType(1 << 3);
    pub const UPDATE_NODE_TAINT: ActionType = ActionType(1 << 4);
    pub const UPDATE_NODE_CONDITION: ActionType = ActionType(1 << 5);
    pub const UPDATE_NODE_ANNOTATION: ActionType = ActionType(1 << 6);
    pub const UPDATE_POD_LABEL: ActionType = ActionType(1 << 7);
    pub const UPDATE_POD_SCALE_DOWN: ActionType = ActionType(1 << 8);
    pub const UPDATE_POD_TOLERATION: ActionType = ActionType(1 << 9);
    pub const UPDATE_POD_SCHEDULING_GATES_ELIMINATED: ActionType = ActionType(1 << 10);
    /// Any other update (e.g. Node spec.unschedulable, which Kubernetes reports as a taint change).
    pub const UPDATE_OTHER: ActionType = ActionType(1 << 11);
    pub const ALL: ActionType = ActionType(u32::MAX);

    pub const fn or(self, other: ActionType) -> ActionType {
        ActionType(self.0 | other.0)
    }
    pub const fn intersects(self, other: ActionType) -> bool {
        self.0 & other.0 != 0
    }
}

/// A change in the cluster that may make a parked pod schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    pub resource: EventResource,
    pub action: ActionType,
}

impl ClusterEvent {
    pub const fn new(resource: EventResource, action: ActionType) -> ClusterEvent {
        ClusterEvent { resource, action }
    }
    /// True when a plugin registered for `self` cares about `event`. A `Pod` registration also
    /// covers `AssignedPod` events (an assigned pod is a pod).
    pub fn covers(&self, event: &ClusterEvent) -> bool {
        let resource_ok = self.resource == event.resource
            || (self.resource == EventResource::Pod && event.resource == EventResource::AssignedPod);
        resource_ok && self.action.intersects(event.action)
    }
}

/// A host port a container binds: (protocol, hostIP, hostPort); empty IP means 0.0.0.0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

const ANY_IP: &str = "0.0.0.0";

impl HostPort {
    /// Whether two bindings cannot coexist: same protocol and port, and the same IP or either
    /// one the wildcard.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// The host ports of a pod's containers and sidecar init containers.
fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else { return Vec::new() };
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| HostPort {
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            ip: p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| ANY_IP.to_string()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

/// "namespace/name", the key pods are known by in the cache and the queue.
pub type PodKey = String;

/// A pod with what the scheduler derives from it once (requests, ports), shared by the
/// cache's node entries and by the scheduling cycle.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: PodKey,
    /// Real requests (containers, sidecars, init peaks, overhead).
    pub requests: Resources,
    /// cpu/memory with the scoring defaults for containers that request none.
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let (requests, non_zero) = match pod.spec.as_ref() {
            Some(spec) => (pod_requests(spec, false), pod_requests(spec, true)),
            None => (Resources::default(), Resources::default()),
        };
        PodInfo {
            key: pod_key(&pod),
            requests,
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports: pod_host_ports(&pod),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            pod,
        }
    }
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.pod.metadata.labels.as_ref()
    }
    pub fn spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.pod.spec.as_ref()
    }
    /// Being deleted (spread counting skips such pods).
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
}

/// "namespace/name" of a pod.
pub fn pod_key(pod: &Pod) -> PodKey {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

/// A node and what is placed on it: its pods (bound and assumed), their summed requests, the
/// host ports they hold. Invariant: `requested`, `non_zero_*` and `used_ports` are exactly the
/// sums over `pods`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    /// `status.allocatable` (or `capacity` when a node reports no allocatable).
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    /// Host ports in use, with how many pods hold each.
    pub used_ports: Vec<(HostPort, u32)>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo {
            node: node.clone(),
            name: String::new(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            used_ports: Vec::new(),
        };
        info.set_node(node);
        info
    }

    /// Replaces the Node object, keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let list = status.and_then(|s| s.allocatable.as_ref()).or_else(|| status.and_then(|s| s.capacity.as_ref()));
        self.allocatable = list.map(Resources::from_list).unwrap_or_default();
        self.node = node;
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.metadata.labels.as_ref()
    }

    pub fn taints(&self) -> &[Taint] {
        self.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests, 1);
        self.non_zero_milli_cpu = self.non_zero_milli_cpu.saturating_add(pod.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_add(pod.non_zero_memory);
        for port in &pod.host_ports {
            match self.used_ports.iter_mut().find(|(p, _)| p == port) {
                Some((_, count)) => *count += 1,
                None => self.used_ports.push((port.clone(), 1)),
            }
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `key`; returns it if it was there.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let index = self.pods.iter().position(|p| p.key == key)?;
        let pod = self.pods.swap_remove(index);
        self.requested.add(&pod.requests, -1);
        self.non_zero_milli_cpu -= pod.non_zero_milli_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|(p, _)| p == port) {
                self.used_ports[i].1 -= 1;
                if self.used_ports[i].1 == 0 {
                    self.used_ports.swap_remove(i);
                }
            }
        }
        Some(pod)
    }
}

/// Per-cycle state plugins write in PreFilter/PreScore and read in Filter/Score, one value per
/// type. A handful of entries, so a linear scan of `TypeId`s beats hashing.
#[derive(Default)]
pub struct CycleState {
    entries: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.entries.iter_mut().find(|(t, _)| *t == id) {
            Some(entry) => entry.1 = Box::new(value),
            None => self.entries.push((id, Box::new(value))),
        }
    }
    pub fn read<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries.iter().find(|(t, _)| *t == id).and_then(|(_, v)| v.downcast_ref())
    }
}

/// What every plugin has: a name (Kubernetes' plugin name, used in messages and by the queue)
/// and the events that may make a pod it rejected schedulable.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }
}

/// Once per pod before any Filter: precompute, or reject the pod outright.
/// Returns Success, Skip (this plugin's Filter is not run for the pod), Unschedulable*, Error.
pub trait PreFilterPlugin: Plugin {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status;
}

/// Per node: can the pod run there? Must be cheap and allocation-free on success.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Once per pod over the feasible nodes (and all nodes, for counting): precompute for Score.
/// Skip means this plugin's Score is not run (its contribution is 0 for every node).
pub trait PreScorePlugin: Plugin {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, feasible: &[&NodeInfo], all: &[NodeInfo]) -> Status;
}

/// Per feasible node: a score; then NormalizeScore over all of this plugin's scores, which
/// must leave every score in 0..=MAX_NODE_SCORE.
pub trait ScorePlugin: Plugin {
    fn weight(&self) -> i64;
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}
}

/// Kubernetes' `DefaultNormalizeScore`: scale so the highest score is MAX_NODE_SCORE, optionally
/// reversed (highest raw → 0). All zero: stays 0, or MAX_NODE_SCORE when reversed.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *score / max;
        *score = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}
