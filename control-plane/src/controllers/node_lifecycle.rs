//! The node lifecycle controller's decision: which nodes stopped sending heartbeats, the
//! conditions and taints that say so, and the pods that must leave them (taint-based eviction).
//!
//! One [`monitor`] pass looks at every node (Kubernetes runs it every `--node-monitor-period`,
//! 5 s; the runtime does the same and also honours `requeue_after`). It is O(nodes + pods): the
//! runtime passes leases by node name and pods by `spec.nodeName` (indexes it keeps).
//!
//! # Heartbeats are timed by this controller's clock
//! A node is alive while its heartbeat *changes*: the Ready condition's lastHeartbeatTime or its
//! Lease `kube-node-lease/<node>` renewTime. The values are only compared for change, never
//! against `now`, so a kubelet's skewed clock cannot make a node look dead or alive. The moment a
//! change was seen is [`HealthRecord::probe_time`], by `now` as given to [`monitor`]. The runtime
//! keeps the [`State`] that [`monitor`] returns and passes it to the next pass; a new controller
//! (restart, new leader) starts with `State::default()`, which gives every node a fresh grace
//! period, as Kubernetes does.
//!
//! # Writes
//! Conditions go by `UpdateStatus` (whole node, its resourceVersion); taints by a JSON patch
//! that `test`s the taint list it read and replaces it, so it applies after the status write
//! in the same plan (no resourceVersion needed) and never overwrites a taint added meanwhile. A
//! pod gets one `UpdateStatus` with all its changed conditions (Ready False, DisruptionTarget).
//!
//! # Zones and rate limiting (simplified from Kubernetes, documented here)
//! Nodes are grouped by zone (`topology.kubernetes.io/region` + `/zone` labels; nodes labelled
//! `node.kubernetes.io/exclude-disruption` are not counted). Zone state: FullDisruption if no
//! node is Ready and some are not; PartialDisruption if more than 2 and at least
//! `unhealthy_zone_threshold` of them are not Ready; else Normal. If every zone is in
//! FullDisruption the controller is in *master disruption mode*: it removes the NoExecute
//! not-ready/unreachable taints everywhere and adds none (the likeliest cause is the control
//! plane's own connectivity, not every node dying). Otherwise adding a NoExecute taint to a node
//! not yet carrying one is limited per zone to one node per `1 / rate` seconds (burst 1; the node
//! silent longest goes first): Normal and FullDisruption use `eviction_rate`, PartialDisruption
//! uses `secondary_eviction_rate` in zones larger than `large_cluster_threshold` and no tainting
//! in smaller ones. Swapping not-ready ↔ unreachable and removing taints is never limited.
//!
//! # Taint-based eviction
//! A pod on a node with NoExecute taints it does not tolerate is deleted now; one that tolerates
//! them all is deleted when the earliest `taint.timeAdded + min(tolerationSeconds of the
//! tolerations matching that taint)` passes (no tolerationSeconds: never). Before the delete it
//! gets the `DisruptionTarget` condition and a `TaintManagerEviction` event. Kubernetes counts
//! from when it scheduled the eviction; counting from `timeAdded` makes the decision survive a
//! controller restart (a taint without timeAdded counts from when this controller first saw it).

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::action::{Action, EventRecord, InvolvedObject, NODES, ObjectRef, PODS, PatchType, Plan, Propagation};
use super::endpointslices::to_json;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Nodes with this label are left out of zone disruption counts.
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";
/// The DefaultTolerationSeconds admission's default (`--default-not-ready-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The conditions that turn Unknown when the kubelet goes silent.
const WATCHED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The controller's flags (Kubernetes' names and defaults).
#[derive(Clone, Debug)]
pub struct Config {
    /// `--node-monitor-grace-period`: silence after which a node is Unknown.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted Ready.
    pub node_startup_grace_period: Duration,
    /// `--node-eviction-rate`: nodes per second per zone that get a NoExecute taint.
    pub eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same in a partially disrupted large zone.
    pub secondary_eviction_rate: f64,
    /// `--large-cluster-size-threshold`: zones above this many nodes count as large.
    pub large_cluster_threshold: usize,
    /// `--unhealthy-zone-threshold`: share of not-Ready nodes that makes a zone partially disrupted.
    pub unhealthy_zone_threshold: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

/// What the controller remembers about one node between passes.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthRecord {
    /// The Ready condition's lastHeartbeatTime last seen (compared for change only).
    pub ready_heartbeat: Option<Timestamp>,
    /// The node Lease's renewTime last seen (compared for change only).
    pub lease_renew_time: Option<Timestamp>,
    /// This controller's clock when a heartbeat last changed, or the node was first seen.
    pub probe_time: Timestamp,
    /// The Ready status ("True", "False", "Unknown") after the last pass: a move away from
    /// "True" is the NodeNotReady event.
    pub ready_status: String,
}

/// A zone's health, as Kubernetes names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Everything [`monitor`] carries from one pass to the next; the runtime stores it as is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Per node name.
    pub health: HashMap<String, HealthRecord>,
    /// Per zone key: when a NoExecute taint was last added there (the rate limiter).
    pub last_taint_added: HashMap<String, Timestamp>,
    /// Per zone key, as of the last pass.
    pub zones: HashMap<String, ZoneState>,
    /// Every zone fully disrupted: no NoExecute taints (the runtime logs when this flips).
    pub master_disruption: bool,
    /// Pods (`<namespace>/<name>`) waiting out tolerationSeconds: leaving this set without being
    /// deleted is the "Cancelling deletion" event.
    pub pending_evictions: HashSet<String>,
    /// When this controller first saw a NoExecute taint without timeAdded (`<node>/<key>`).
    pub taint_first_seen: HashMap<String, Timestamp>,
}

/// What one pass decided: the writes, and the state for the next pass.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub plan: Plan,
    pub state: State,
}

/// One monitor pass over every node.
///
/// `leases`: the Leases of `kube-node-lease` by name (= node name). `pods_by_node`: pods by
/// `spec.nodeName`. `previous`: the state the last pass returned.
pub fn monitor<L: Borrow<Lease>, P: Borrow<Pod>>(
    nodes: &[&Node],
    leases: &HashMap<String, L>,
    pods_by_node: &HashMap<String, Vec<P>>,
    previous: &State,
    config: &Config,
    now: Timestamp,
) -> Outcome {
    let mut plan = Plan::default();
    let mut state = State { last_taint_added: previous.last_taint_added.clone(), ..State::default() };
    let mut observed: Vec<Observed<'_>> = Vec::with_capacity(nodes.len());
    for &node in nodes {
        let name = node_name(node);
        let lease = leases.get(name).map(Borrow::borrow);
        let seen = observe(node, lease, previous.health.get(name), config, now, &mut plan);
        state.health.insert(name.to_string(), seen.record.clone());
        observed.push(seen);
    }
    for name in previous.health.keys().filter(|n| !state.health.contains_key(*n)) {
        plan.push(node_event(name, "", "Normal", "RemovingNode", format!("Removing Node {name} from Controller")));
    }

    let zones = zone_states(&observed, config);
    state.master_disruption = !zones.is_empty() && zones.values().all(|z| *z == ZoneState::FullDisruption);
    state.zones = zones;

    let mut waiting: Vec<usize> = Vec::new();
    for (index, seen) in observed.iter_mut().enumerate() {
        match desired_taints(seen, state.master_disruption, now) {
            TaintDecision::Write(taints) => seen.taints_after = taints,
            TaintDecision::NeedsLimiter => waiting.push(index),
        }
    }
    admit_rate_limited(&mut observed, waiting, &mut state, config, now, &mut plan);

    for seen in &observed {
        for taint in seen.taints_after.iter().filter(|t| t.effect == "NoExecute" && t.time_added.is_none()) {
            let key = format!("{}/{}", node_name(seen.node), taint.key);
            let first = previous.taint_first_seen.get(&key).copied().unwrap_or(now);
            state.taint_first_seen.insert(key, first);
        }
    }
    let mut evicted = HashSet::new();
    for seen in &observed {
        patch_taints(seen.node, &seen.taints_after, &mut plan);
        let pods = pods_by_node.get(node_name(seen.node)).map(Vec::as_slice).unwrap_or_default();
        for pod in pods.iter().map(Borrow::borrow) {
            sync_pod(pod, seen, &mut state, &mut evicted, now, &mut plan);
        }
    }
    let cancelled: Vec<&String> =
        previous.pending_evictions.difference(&state.pending_evictions).filter(|k| !evicted.contains(*k)).collect();
    if !cancelled.is_empty() {
        let by_key: HashMap<String, &Pod> =
            pods_by_node.values().flatten().map(Borrow::borrow).map(|p| (pod_key(p), p)).collect();
        for key in cancelled {
            // Still around and no longer doomed: say so. (A deleted pod is simply gone.)
            if let Some(pod) = by_key.get(key).filter(|p| p.metadata.deletion_timestamp.is_none()) {
                plan.push(pod_event(
                    pod,
                    "Normal",
                    "TaintManagerEviction",
                    format!("Cancelling deletion of Pod {key}"),
                ));
            }
        }
    }
    Outcome { plan, state }
}

/// One node after heartbeat bookkeeping: its (possibly updated) conditions and taints.
struct Observed<'a> {
    node: &'a Node,
    record: HealthRecord,
    /// The conditions as written (or as they were).
    conditions: Vec<NodeCondition>,
    /// The node's taints as read.
    taints: Vec<Taint>,
    /// The node's taints as this pass leaves them (what its pods are judged against).
    taints_after: Vec<Taint>,
}

impl Observed<'_> {
    fn ready_status(&self) -> &str {
        self.conditions.iter().find(|c| c.type_ == "Ready").map_or("Unknown", |c| c.status.as_str())
    }
}

/// Heartbeat bookkeeping for one node; conditions to Unknown after the grace period.
fn observe<'a>(
    node: &'a Node,
    lease: Option<&Lease>,
    previous: Option<&HealthRecord>,
    config: &Config,
    now: Timestamp,
    plan: &mut Plan,
) -> Observed<'a> {
    let name = node_name(node);
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let ready_heartbeat =
        conditions.iter().find(|c| c.type_ == "Ready").and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
    let lease_renew_time = lease.and_then(|l| l.spec.as_ref()).and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
    let probe_time = match previous {
        None => {
            plan.push(node_event(
                name,
                uid(node),
                "Normal",
                "RegisteredNode",
                format!("Registered Node {name} in Controller"),
            ));
            now
        }
        Some(record) => {
            let ready_changed = ready_heartbeat.is_some() && ready_heartbeat != record.ready_heartbeat;
            let lease_renewed = match (record.lease_renew_time, lease_renew_time) {
                (None, Some(_)) => true,
                (Some(old), Some(new)) => new > old,
                _ => false,
            };
            if ready_changed || lease_renewed { now } else { record.probe_time }
        }
    };
    let never_posted = !conditions.iter().any(|c| c.type_ == "Ready");
    let grace = if never_posted { config.node_startup_grace_period } else { config.node_monitor_grace_period };
    let silent = elapsed(now, probe_time);
    if silent > grace {
        if mark_unknown(&mut conditions, node, now) {
            let mut updated = node.clone();
            updated.status.get_or_insert_with(Default::default).conditions = Some(conditions.clone());
            plan.push(Action::UpdateStatus { target: node_target(name), object: to_json(&updated) });
        }
    } else {
        plan.requeue(grace - silent + Duration::from_secs(1));
    }
    let ready_status =
        conditions.iter().find(|c| c.type_ == "Ready").map_or("Unknown", |c| c.status.as_str()).to_string();
    if previous.is_some_and(|r| r.ready_status == "True") && ready_status != "True" {
        plan.push(node_event(
            name,
            uid(node),
            "Normal",
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        ));
    }
    let record = HealthRecord { ready_heartbeat, lease_renew_time, probe_time, ready_status };
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    Observed { node, record, conditions, taints_after: taints.clone(), taints }
}

/// Sets the watched conditions Unknown; returns whether anything changed.
fn mark_unknown(conditions: &mut Vec<NodeCondition>, node: &Node, now: Timestamp) -> bool {
    let mut changed = false;
    for kind in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(condition) if condition.status == "Unknown" => {}
            Some(condition) => {
                condition.status = "Unknown".into();
                condition.reason = Some("NodeStatusUnknown".into());
                condition.message = Some("Kubelet stopped posting node status.".into());
                condition.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed
}

fn zone_states(observed: &[Observed<'_>], config: &Config) -> HashMap<String, ZoneState> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for seen in observed {
        if seen.node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION_LABEL)) {
            continue;
        }
        let entry = counts.entry(zone_key(seen.node)).or_default();
        if seen.ready_status() == "True" { entry.0 += 1 } else { entry.1 += 1 }
    }
    counts
        .into_iter()
        .map(|(zone, (ready, not_ready))| {
            let state = if ready == 0 && not_ready > 0 {
                ZoneState::FullDisruption
            } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= config.unhealthy_zone_threshold
            {
                ZoneState::PartialDisruption
            } else {
                ZoneState::Normal
            };
            (zone, state)
        })
        .collect()
}

enum TaintDecision {
    /// The full taint list to have (unchanged lists are skipped by `patch_taints`).
    Write(Vec<Taint>),
    /// A first NoExecute taint is due: only if the zone's limiter allows.
    NeedsLimiter,
}

/// The NoSchedule taints mirroring conditions, and the NoExecute not-ready/unreachable taint.
fn desired_taints(seen: &Observed<'_>, master_disruption: bool, now: Timestamp) -> TaintDecision {
    let mut taints = no_schedule_mirror(seen);
    let wanted = match seen.ready_status() {
        "True" => None,
        "False" => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    let is_ours = |t: &Taint| t.effect == "NoExecute" && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE);
    match wanted {
        _ if master_disruption => taints.retain(|t| !is_ours(t)),
        None => taints.retain(|t| !is_ours(t)),
        Some(key) if taints.iter().any(|t| t.effect == "NoExecute" && t.key == key) => {}
        Some(key) if taints.iter().any(is_ours) => {
            // The swap is immediate: the node was already judged.
            taints.retain(|t| !is_ours(t));
            taints.push(taint(key, "NoExecute", Some(now)));
        }
        Some(_) => return TaintDecision::NeedsLimiter,
    }
    TaintDecision::Write(taints)
}

/// The node's taints with the NoSchedule condition taints made to mirror its conditions.
fn no_schedule_mirror(seen: &Observed<'_>) -> Vec<Taint> {
    let mut taints: Vec<Taint> = seen.taints.clone();
    let wanted = no_schedule_keys(seen);
    taints.retain(|t| t.effect != "NoSchedule" || !is_condition_taint(&t.key) || wanted.contains(&t.key.as_str()));
    for key in wanted {
        if !taints.iter().any(|t| t.effect == "NoSchedule" && t.key == key) {
            taints.push(taint(key, "NoSchedule", None));
        }
    }
    taints
}

fn no_schedule_keys(seen: &Observed<'_>) -> Vec<&'static str> {
    let status = |kind: &str| seen.conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.as_str());
    let mut keys = Vec::new();
    match status("Ready") {
        Some("True") => {}
        Some("False") => keys.push(TAINT_NOT_READY),
        _ => keys.push(TAINT_UNREACHABLE),
    }
    for (kind, key) in [
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
        ("NetworkUnavailable", TAINT_NETWORK_UNAVAILABLE),
    ] {
        if status(kind) == Some("True") {
            keys.push(key);
        }
    }
    if seen.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        keys.push(TAINT_UNSCHEDULABLE);
    }
    keys
}

fn is_condition_taint(key: &str) -> bool {
    [
        TAINT_NOT_READY,
        TAINT_UNREACHABLE,
        TAINT_MEMORY_PRESSURE,
        TAINT_DISK_PRESSURE,
        TAINT_PID_PRESSURE,
        TAINT_NETWORK_UNAVAILABLE,
        TAINT_UNSCHEDULABLE,
    ]
    .contains(&key)
}

fn taint(key: &str, effect: &str, added: Option<Timestamp>) -> Taint {
    Taint { key: key.into(), effect: effect.into(), value: None, time_added: added.map(Time) }
}

/// Nodes due a first NoExecute taint, admitted by their zone's limiter (longest silent first).
fn admit_rate_limited(
    observed: &mut [Observed<'_>],
    mut waiting: Vec<usize>,
    state: &mut State,
    config: &Config,
    now: Timestamp,
    plan: &mut Plan,
) {
    let mut zone_sizes: HashMap<String, usize> = HashMap::new();
    for seen in observed.iter() {
        *zone_sizes.entry(zone_key(seen.node)).or_default() += 1;
    }
    waiting.sort_by(|a, b| {
        let key = |i: usize| (observed[i].record.probe_time, node_name(observed[i].node));
        key(*a).cmp(&key(*b))
    });
    for index in waiting {
        let seen = &mut observed[index];
        let zone = zone_key(seen.node);
        seen.taints_after = no_schedule_mirror(seen);
        let zone_state = state.zones.get(&zone).copied().unwrap_or(ZoneState::Normal);
        let rate = match zone_state {
            ZoneState::Normal | ZoneState::FullDisruption => config.eviction_rate,
            ZoneState::PartialDisruption
                if zone_sizes.get(&zone).copied().unwrap_or(0) > config.large_cluster_threshold =>
            {
                config.secondary_eviction_rate
            }
            ZoneState::PartialDisruption => 0.0,
        };
        if rate <= 0.0 || !rate.is_finite() {
            continue;
        }
        // At most a day between taints, however small the rate.
        let interval = Duration::from_secs_f64((1.0 / rate).min(86_400.0));
        if let Some(since) = state.last_taint_added.get(&zone).map(|t| elapsed(now, *t)).filter(|s| *s < interval) {
            plan.requeue(interval - since);
            continue;
        }
        state.last_taint_added.insert(zone, now);
        let key = if seen.ready_status() == "False" { TAINT_NOT_READY } else { TAINT_UNREACHABLE };
        seen.taints_after.push(taint(key, "NoExecute", Some(now)));
    }
}

/// JSON patch: test the list read, replace it (or a merge patch when there was none).
fn patch_taints(node: &Node, taints: &[Taint], plan: &mut Plan) {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    if same_taints(&current, taints) {
        return;
    }
    let name = node_name(node);
    let (patch_type, patch) = if node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some() {
        let test = json!({ "op": "test", "path": "/spec/taints", "value": to_json(&current) });
        let replace = json!({ "op": "replace", "path": "/spec/taints", "value": to_json(&taints) });
        (PatchType::Json, json!([test, replace]))
    } else {
        (PatchType::Merge, json!({ "spec": { "taints": to_json(&taints) } }))
    };
    plan.push(Action::Patch { target: node_target(name), subresource: None, patch_type, patch });
}

fn same_taints(a: &[Taint], b: &[Taint]) -> bool {
    a.len() == b.len()
        && a.iter().all(|t| b.iter().any(|u| u.key == t.key && u.effect == t.effect && u.value == t.value))
}

/// The pod's share of a pass: Ready False on a not-Ready node; eviction under NoExecute taints.
fn sync_pod(
    pod: &Pod,
    seen: &Observed<'_>,
    state: &mut State,
    evicted: &mut HashSet<String>,
    now: Timestamp,
    plan: &mut Plan,
) {
    if pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    let mut conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut events = Vec::new();
    let mut changed = false;
    if seen.ready_status() != "True" {
        if let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status != "False") {
            ready.status = "False".into();
            ready.last_transition_time = Some(Time(now));
            changed = true;
            events.push(pod_event(pod, "Warning", "NodeNotReady", "Node is not ready".into()));
        }
    }
    let key = pod_key(pod);
    let evict = match eviction_due(pod, seen, state, now) {
        Eviction::Now => true,
        Eviction::After(wait) => {
            plan.requeue(wait);
            state.pending_evictions.insert(key.clone());
            false
        }
        Eviction::Never => false,
    };
    if evict && !conditions.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True") {
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(now)),
            ..PodCondition::default()
        });
        changed = true;
    }
    if changed {
        let mut updated = pod.clone();
        updated.status.get_or_insert_with(Default::default).conditions = Some(conditions);
        plan.push(Action::UpdateStatus { target: pod_target(pod), object: to_json(&updated) });
    }
    for event in events {
        plan.push(event);
    }
    if evict {
        evicted.insert(key.clone());
        plan.push(pod_event(pod, "Normal", "TaintManagerEviction", format!("Marking for deletion Pod {key}")));
        plan.push(Action::Delete {
            target: pod_target(pod),
            uid: pod.metadata.uid.clone(),
            propagation: Some(Propagation::Background),
        });
    }
}

enum Eviction {
    Now,
    After(Duration),
    Never,
}

fn eviction_due(pod: &Pod, seen: &Observed<'_>, state: &State, now: Timestamp) -> Eviction {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let mut due: Option<Duration> = None;
    for taint in seen.taints_after.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else { continue };
        let since = match &taint.time_added {
            Some(added) => added.0,
            None => {
                let key = format!("{}/{}", node_name(seen.node), taint.key);
                state.taint_first_seen.get(&key).copied().unwrap_or(now)
            }
        };
        let allowed = Duration::from_secs(seconds.max(0) as u64);
        let waited = elapsed(now, since);
        let left = allowed.saturating_sub(waited);
        due = Some(due.map_or(left, |d| d.min(left)));
    }
    match due {
        Some(left) if left.is_zero() => Eviction::Now,
        Some(left) => Eviction::After(left),
        None => Eviction::Never,
    }
}

/// Kubernetes' ToleratesTaint: effect empty or equal; empty key with Exists matches any key;
/// Exists ignores the value; Equal (the default) compares it.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The DefaultTolerationSeconds admission (pod create): the tolerations to append so the pod
/// stays 300 s on a not-ready or unreachable node, unless it already tolerates that (a
/// toleration with that key or an empty key, and effect NoExecute or empty, counts).
pub fn default_tolerations(pod: &Pod) -> Vec<Toleration> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let covered = |key: &str| {
        tolerations.iter().any(|t| {
            let t_key = t.key.as_deref().unwrap_or("");
            let t_effect = t.effect.as_deref().unwrap_or("");
            (t_key == key || t_key.is_empty()) && (t_effect == "NoExecute" || t_effect.is_empty())
        })
    };
    [TAINT_NOT_READY, TAINT_UNREACHABLE]
        .into_iter()
        .filter(|key| !covered(key))
        .map(|key| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
            value: None,
        })
        .collect()
}

fn elapsed(now: Timestamp, since: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// Region and zone labels; "" for nodes without them (one zone).
fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str).unwrap_or("");
    let (region, zone) = (get("topology.kubernetes.io/region"), get("topology.kubernetes.io/zone"));
    if region.is_empty() && zone.is_empty() { String::new() } else { format!("{region}:{zone}") }
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

fn uid(node: &Node) -> &str {
    node.metadata.uid.as_deref().unwrap_or("")
}

fn node_target(name: &str) -> ObjectRef {
    ObjectRef { resource: NODES, namespace: None, name: name.to_string() }
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

fn pod_target(pod: &Pod) -> ObjectRef {
    ObjectRef {
        resource: PODS,
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

fn node_event(name: &str, uid: &str, event_type: &'static str, reason: &str, message: String) -> Action {
    Action::Event(EventRecord {
        involved: InvolvedObject {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: None,
            name: name.into(),
            uid: uid.into(),
        },
        event_type,
        reason: reason.into(),
        message,
    })
}

fn pod_event(pod: &Pod, event_type: &'static str, reason: &str, message: String) -> Action {
    Action::Event(EventRecord {
        involved: InvolvedObject {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        },
        event_type,
        reason: reason.into(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    use std::collections::BTreeMap;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn condition(kind: &str, status: &str, heartbeat: i64) -> NodeCondition {
        NodeCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            message: Some("kubelet is posting ready status".into()),
            last_heartbeat_time: Some(Time(at(heartbeat))),
            last_transition_time: Some(Time(at(0))),
        }
    }

    fn node(name: &str, zone: &str, ready: &str, heartbeat: i64) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("topology.kubernetes.io/zone".to_string(), zone.to_string())])),
                resource_version: Some("5".into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![
                    condition("Ready", ready, heartbeat),
                    condition("MemoryPressure", "False", heartbeat),
                    condition("DiskPressure", "False", heartbeat),
                    condition("PIDPressure", "False", heartbeat),
                ]),
                ..NodeStatus::default()
            }),
        }
    }

    fn pod(name: &str, node: &str, tolerations: Vec<Toleration>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), tolerations: Some(tolerations), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec { renew_time: Some(MicroTime(at(renew))), ..LeaseSpec::default() }),
            ..Lease::default()
        }
    }

    fn no_leases() -> HashMap<String, Lease> {
        HashMap::new()
    }

    fn no_pods() -> HashMap<String, Vec<Pod>> {
        HashMap::new()
    }

    fn status_updates(plan: &Plan) -> Vec<(String, Value)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateStatus { target, object } => Some((target.name.clone(), object.clone())),
                _ => None,
            })
            .collect()
    }

    fn events(plan: &Plan) -> Vec<(String, String, String)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some((e.involved.name.clone(), e.reason.clone(), e.message.clone())),
                _ => None,
            })
            .collect()
    }

    /// The taint lists the plan's patches leave on each node.
    fn taints_written(plan: &Plan) -> HashMap<String, Vec<(String, String, bool)>> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Patch { target, patch, .. } => {
                    let list = match patch {
                        Value::Array(ops) => ops.last().and_then(|op| op.get("value")).cloned(),
                        other => other.pointer("/spec/taints").cloned(),
                    }?;
                    let taints: Vec<Taint> = serde_json::from_value(list).ok()?;
                    let taints = taints.into_iter().map(|t| (t.key, t.effect, t.time_added.is_some())).collect();
                    Some((target.name.clone(), taints))
                }
                _ => None,
            })
            .collect()
    }

    use serde_json::Value;

    /// Runs passes with the state carried over, as the runtime does.
    fn pass(
        nodes: &[&Node],
        leases: &HashMap<String, Lease>,
        pods: &HashMap<String, Vec<Pod>>,
        state: &State,
        now: i64,
    ) -> Outcome {
        monitor(nodes, leases, pods, state, &Config::default(), at(now))
    }

    #[test]
    fn a_node_with_a_changing_heartbeat_is_left_alone() {
        let first = pass(&[&node("a", "z", "True", 0)], &no_leases(), &no_pods(), &State::default(), 0);
        assert_eq!(
            events(&first.plan),
            vec![("a".into(), "RegisteredNode".into(), "Registered Node a in Controller".into())]
        );
        let later = node("a", "z", "True", 40);
        let second = pass(&[&later], &no_leases(), &no_pods(), &first.state, 45);
        assert!(second.plan.actions.is_empty(), "{:?}", second.plan);
        assert_eq!(second.state.health["a"].probe_time, at(45), "the change was seen now, by our clock");
        assert_eq!(second.plan.requeue_after, Some(Duration::from_secs(51)));
    }

    #[test]
    fn a_silent_node_goes_unknown_its_pods_unready_and_tainted_then_evicted() {
        let dead = node("dead", "z", "True", 0);
        let alive = node("alive", "z", "True", 0);
        let tolerant = pod("tolerant", "dead", default_tolerations(&pod("x", "dead", vec![])));
        let plain = pod("plain", "dead", vec![]);
        let pods = HashMap::from([("dead".to_string(), vec![tolerant, plain])]);
        let first = pass(&[&dead, &alive], &no_leases(), &pods, &State::default(), 0);
        let alive_later = node("alive", "z", "True", 51);
        let leases = no_leases();
        let quiet = pass(&[&dead, &alive_later], &leases, &pods, &first.state, 50);
        assert!(status_updates(&quiet.plan).is_empty(), "50 s is not past the grace period: {:?}", quiet.plan);

        let out = pass(&[&dead, &alive_later], &leases, &pods, &quiet.state, 51);
        let updates = status_updates(&out.plan);
        let node_status: Node =
            serde_json::from_value(updates.iter().find(|(n, _)| n == "dead").unwrap().1.clone()).unwrap();
        for condition in node_status.status.unwrap().conditions.unwrap() {
            assert_eq!(condition.status, "Unknown", "{}", condition.type_);
            assert_eq!(condition.reason.as_deref(), Some("NodeStatusUnknown"));
            assert_eq!(condition.message.as_deref(), Some("Kubelet stopped posting node status."));
            assert_eq!(condition.last_transition_time, Some(Time(at(51))));
            assert_eq!(condition.last_heartbeat_time, Some(Time(at(0))), "the heartbeat is the kubelet's, untouched");
        }
        let events = events(&out.plan);
        assert!(events.contains(&(
            "dead".into(),
            "NodeNotReady".into(),
            "Node dead status is now: NodeNotReady".into()
        )));
        assert!(events.contains(&("plain".into(), "NodeNotReady".into(), "Node is not ready".into())));
        let taints = taints_written(&out.plan);
        assert_eq!(
            taints["dead"],
            vec![
                (TAINT_UNREACHABLE.to_string(), "NoSchedule".to_string(), false),
                (TAINT_UNREACHABLE.to_string(), "NoExecute".to_string(), true)
            ]
        );
        // The untolerating pod: Ready False and DisruptionTarget in one status write, then deleted.
        let plain_status: Pod =
            serde_json::from_value(updates.iter().find(|(n, _)| n == "plain").unwrap().1.clone()).unwrap();
        let conditions = plain_status.status.unwrap().conditions.unwrap();
        assert!(conditions.iter().any(|c| c.type_ == "Ready" && c.status == "False"));
        assert!(conditions.iter().any(|c| c.type_ == "DisruptionTarget"
            && c.reason.as_deref() == Some("DeletionByTaintManager")
            && c.message.as_deref() == Some("Taint manager: deleting due to NoExecute taint")));
        assert!(events.contains(&(
            "plain".into(),
            "TaintManagerEviction".into(),
            "Marking for deletion Pod ns/plain".into()
        )));
        assert!(out.plan.actions.iter().any(|a| matches!(a, Action::Delete { target, uid, .. }
            if target.name == "plain" && uid.as_deref() == Some("uid-plain"))));
        assert!(
            !out.plan.actions.iter().any(|a| matches!(a, Action::Delete { target, .. } if target.name == "tolerant"))
        );
        assert!(out.state.pending_evictions.contains("ns/tolerant"));
        // The live node's grace deadline (heartbeat seen at 50) comes before the 300 s toleration.
        assert_eq!(out.plan.requeue_after, Some(Duration::from_secs(50)));
    }

    #[test]
    fn a_renewed_lease_keeps_a_node_alive() {
        let stale = node("a", "z", "True", 0);
        let other = node("b", "z", "True", 0);
        let mut state = pass(&[&stale, &other], &no_leases(), &no_pods(), &State::default(), 0).state;
        for t in (10..=120).step_by(10) {
            let leases = HashMap::from([("a".to_string(), lease(t)), ("b".to_string(), lease(t))]);
            let out = pass(&[&stale, &other], &leases, &no_pods(), &state, t);
            assert!(status_updates(&out.plan).is_empty(), "at {t}: {:?}", out.plan);
            state = out.state;
        }
    }

    #[test]
    fn a_node_that_never_posted_gets_the_startup_grace() {
        let mut fresh = node("new", "z", "True", 0);
        fresh.status = None;
        let other = node("b", "z", "True", 0);
        let first = pass(&[&fresh, &other], &no_leases(), &no_pods(), &State::default(), 0);
        let waiting = pass(&[&fresh, &other], &no_leases(), &no_pods(), &first.state, 55);
        assert!(status_updates(&waiting.plan).iter().all(|(n, _)| n != "new"));
        let out = pass(&[&fresh, &other], &no_leases(), &no_pods(), &waiting.state, 61);
        let written: Node = serde_json::from_value(status_updates(&out.plan)[0].1.clone()).unwrap();
        let conditions = written.status.unwrap().conditions.unwrap();
        assert_eq!(conditions.len(), 4);
        assert!(conditions.iter().all(|c| c.reason.as_deref() == Some("NodeStatusNeverUpdated")
            && c.message.as_deref() == Some("Kubelet never posted node status.")));
    }

    #[test]
    fn when_every_node_is_down_nothing_is_evicted_and_execute_taints_go() {
        let mut a = node("a", "z", "Unknown", 0);
        a.spec.as_mut().unwrap().taints = Some(vec![taint(TAINT_UNREACHABLE, "NoExecute", Some(at(0)))]);
        let b = node("b", "z", "False", 0);
        let pods = HashMap::from([("a".to_string(), vec![pod("p", "a", vec![])])]);
        let out = pass(&[&a, &b], &no_leases(), &pods, &State::default(), 1);
        assert!(out.state.master_disruption);
        let taints = taints_written(&out.plan);
        assert!(taints["a"].iter().all(|(_, effect, _)| effect == "NoSchedule"), "{taints:?}");
        assert!(taints["b"].iter().all(|(_, effect, _)| effect == "NoSchedule"), "{taints:?}");
        assert!(!out.plan.actions.iter().any(|a| matches!(a, Action::Delete { .. })));
    }

    #[test]
    fn execute_taints_are_rate_limited_per_zone() {
        let nodes: Vec<Node> = ["a", "b", "c", "d", "e"].iter().map(|n| node(n, "z", "True", 0)).collect();
        let mut refs: Vec<&Node> = nodes.iter().collect();
        let first = pass(&refs, &no_leases(), &no_pods(), &State::default(), 0);
        let down_a = node("a", "z", "False", 1);
        let down_b = node("b", "z", "False", 1);
        refs[0] = &down_a;
        refs[1] = &down_b;
        let out = pass(&refs, &no_leases(), &no_pods(), &first.state, 1);
        let executes = |plan: &Plan| {
            let mut names: Vec<String> = taints_written(plan)
                .into_iter()
                .filter(|(_, t)| t.iter().any(|(k, e, _)| k == TAINT_NOT_READY && e == "NoExecute"))
                .map(|(n, _)| n)
                .collect();
            names.sort();
            names
        };
        assert_eq!(executes(&out.plan), vec!["a".to_string()], "one node per 10 s per zone");
        assert_eq!(
            taints_written(&out.plan)["b"],
            vec![(TAINT_NOT_READY.to_string(), "NoSchedule".to_string(), false)]
        );
        assert_eq!(out.plan.requeue_after, Some(Duration::from_secs(10)));
        let mut tainted_a = down_a.clone();
        tainted_a.spec.as_mut().unwrap().taints =
            Some(vec![taint(TAINT_NOT_READY, "NoSchedule", None), taint(TAINT_NOT_READY, "NoExecute", Some(at(1)))]);
        let mut schedule_b = down_b.clone();
        schedule_b.spec.as_mut().unwrap().taints = Some(vec![taint(TAINT_NOT_READY, "NoSchedule", None)]);
        refs[0] = &tainted_a;
        refs[1] = &schedule_b;
        let early = pass(&refs, &no_leases(), &no_pods(), &out.state, 5);
        assert!(executes(&early.plan).is_empty(), "{:?}", early.plan);
        let due = pass(&refs, &no_leases(), &no_pods(), &early.state, 11);
        assert_eq!(executes(&due.plan), vec!["b".to_string()]);
    }

    #[test]
    fn a_node_back_to_ready_loses_its_taints_and_pending_evictions_are_cancelled() {
        let mut back = node("a", "z", "True", 100);
        back.spec.as_mut().unwrap().taints = Some(vec![
            taint(TAINT_UNREACHABLE, "NoSchedule", None),
            taint(TAINT_UNREACHABLE, "NoExecute", Some(at(0))),
            taint("dedicated", "NoSchedule", None),
        ]);
        let other = node("b", "z", "True", 100);
        let pods = HashMap::from([("a".to_string(), vec![pod("p", "a", default_tolerations(&pod("x", "a", vec![])))])]);
        let state = State { pending_evictions: HashSet::from(["ns/p".to_string()]), ..State::default() };
        let out = pass(&[&back, &other], &no_leases(), &pods, &state, 101);
        assert_eq!(taints_written(&out.plan)["a"], vec![("dedicated".to_string(), "NoSchedule".to_string(), false)]);
        assert!(events(&out.plan).contains(&(
            "p".into(),
            "TaintManagerEviction".into(),
            "Cancelling deletion of Pod ns/p".into()
        )));
        let patch = out.plan.actions.iter().find_map(|a| match a {
            Action::Patch { patch_type, patch, .. } => Some((*patch_type, patch.clone())),
            _ => None,
        });
        let (patch_type, patch) = patch.unwrap();
        assert_eq!(patch_type, PatchType::Json);
        assert_eq!(patch[0]["op"], "test", "the patch only applies to the taints it read");
    }

    #[test]
    fn conditions_and_unschedulable_mirror_into_no_schedule_taints() {
        let mut pressed = node("a", "z", "True", 0);
        pressed.spec.as_mut().unwrap().unschedulable = Some(true);
        let conditions = pressed.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conditions[1].status = "True".into();
        let out = pass(&[&pressed], &no_leases(), &no_pods(), &State::default(), 0);
        let mut keys: Vec<String> = taints_written(&out.plan)["a"].iter().map(|(k, _, _)| k.clone()).collect();
        keys.sort();
        assert_eq!(keys, vec![TAINT_MEMORY_PRESSURE.to_string(), TAINT_UNSCHEDULABLE.to_string()]);
    }

    #[test]
    fn tolerated_taints_evict_after_toleration_seconds_and_zero_means_now() {
        let mut tainted = node("a", "z", "True", 0);
        tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "maintenance".into(),
            effect: "NoExecute".into(),
            value: Some("yes".into()),
            time_added: Some(Time(at(0))),
        }]);
        let tolerate = |seconds: Option<i64>| Toleration {
            key: Some("maintenance".into()),
            operator: Some("Equal".into()),
            value: Some("yes".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
        };
        let pods = HashMap::from([(
            "a".to_string(),
            vec![
                pod("waits", "a", vec![tolerate(Some(60))]),
                pod("now", "a", vec![tolerate(Some(0))]),
                pod("forever", "a", vec![tolerate(None)]),
            ],
        )]);
        let deleted = |plan: &Plan| {
            plan.actions
                .iter()
                .filter_map(|a| match a {
                    Action::Delete { target, .. } => Some(target.name.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let early = pass(&[&tainted], &no_leases(), &pods, &State::default(), 30);
        assert_eq!(deleted(&early.plan), vec!["now".to_string()]);
        assert_eq!(early.plan.requeue_after, Some(Duration::from_secs(30)));
        let late = pass(&[&tainted], &no_leases(), &pods, &early.state, 60);
        assert_eq!(deleted(&late.plan), vec!["waits".to_string(), "now".to_string()]);
    }

    #[test]
    fn default_tolerations_add_both_unless_already_tolerated() {
        let added = default_tolerations(&pod("p", "", vec![]));
        assert_eq!(added.len(), 2);
        assert!(added.iter().all(|t| t.toleration_seconds == Some(300)
            && t.effect.as_deref() == Some("NoExecute")
            && t.operator.as_deref() == Some("Exists")));
        let own = Toleration {
            key: Some(TAINT_UNREACHABLE.into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        let added = default_tolerations(&pod("p", "", vec![own]));
        assert_eq!(added.iter().map(|t| t.key.clone().unwrap()).collect::<Vec<_>>(), vec![TAINT_NOT_READY.to_string()]);
        let everything = Toleration { operator: Some("Exists".into()), ..Toleration::default() };
        assert!(default_tolerations(&pod("p", "", vec![everything])).is_empty());
    }

    #[test]
    fn toleration_matching() {
        let t = taint("k", "NoExecute", None);
        let exists_all = Toleration { operator: Some("Exists".into()), ..Toleration::default() };
        assert!(tolerates(&exists_all, &t));
        let equal_empty_key = Toleration { operator: Some("Equal".into()), ..Toleration::default() };
        assert!(!tolerates(&equal_empty_key, &t));
        let wrong_effect = Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        };
        assert!(!tolerates(&wrong_effect, &t));
        let wrong_value = Toleration { key: Some("k".into()), value: Some("v".into()), ..Toleration::default() };
        assert!(!tolerates(&wrong_value, &t));
    }
}
