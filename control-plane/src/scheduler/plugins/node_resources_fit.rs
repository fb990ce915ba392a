//! NodeResourcesFit: the pod's requests must fit the node's free allocatable (Filter); nodes
//! with more free cpu/memory score higher (LeastAllocated, cpu and memory weight 1 each).

use std::borrow::Cow;

use crate::scheduler::framework::{
    ActionType, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo,
    ScorePlugin, Status,
};

pub const NAME: &str = "NodeResourcesFit";

pub struct NodeResourcesFit;

/// What frees or adds room on a node: the events both resource plugins register.
pub const EVENTS: &[ClusterEvent] = &[
    ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE.or(ActionType::UPDATE_POD_SCALE_DOWN)),
    ClusterEvent::new(EventResource::Node, ActionType::ADD.or(ActionType::UPDATE_NODE_ALLOCATABLE)),
];

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        EVENTS
    }
}

/// Every reason the pod does not fit on `node` (empty: it fits). Not short-circuiting: the
/// FitError histogram counts each missing resource.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<Cow<'static, str>> {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.pods {
        reasons.push(Cow::Borrowed("Too many pods"));
    }
    let want = &pod.requests;
    if want.is_zero() {
        return reasons;
    }
    let free = |alloc: i64, used: i64| alloc.saturating_sub(used);
    if want.milli_cpu > 0 && want.milli_cpu > free(node.allocatable.milli_cpu, node.requested.milli_cpu) {
        reasons.push(Cow::Borrowed("Insufficient cpu"));
    }
    if want.memory > 0 && want.memory > free(node.allocatable.memory, node.requested.memory) {
        reasons.push(Cow::Borrowed("Insufficient memory"));
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage > free(node.allocatable.ephemeral_storage, node.requested.ephemeral_storage)
    {
        reasons.push(Cow::Borrowed("Insufficient ephemeral-storage"));
    }
    for (name, amount) in &want.scalar {
        if *amount > 0 && *amount > free(node.allocatable.scalar(name), node.requested.scalar(name)) {
            reasons.push(Cow::Owned(format!("Insufficient {name}")));
        }
    }
    reasons
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() { Status::success() } else { Status::with_reasons(Code::Unschedulable, reasons) }
    }
}

/// LeastAllocated for one resource: the free share after placing the pod, 0..=100.
fn least_requested(requested: i64, allocatable: i64) -> i64 {
    if allocatable == 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

impl ScorePlugin for NodeResourcesFit {
    fn weight(&self) -> i64 {
        1
    }
    /// Uses the non-zero sums, so pods without requests still spread.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let resources = [
            (node.non_zero_milli_cpu + pod.non_zero_milli_cpu, node.allocatable.milli_cpu),
            (node.non_zero_memory + pod.non_zero_memory, node.allocatable.memory),
        ];
        let (mut total, mut weights) = (0, 0);
        for (requested, allocatable) in resources {
            if allocatable == 0 {
                continue;
            }
            total += least_requested(requested, allocatable);
            weights += 1;
        }
        Ok(if weights == 0 { 0 } else { total / weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{named_pod, node, pod, requesting};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn scheduler_fit_filter_lists_every_insufficient_resource() {
        let state = CycleState::default();
        let mut n = node(
            "n1",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "1", "example.com/gpu": "1"}}}),
        );
        let big = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m", "memory": "2Gi", "example.com/gpu": "2"}}}]}),
        );
        assert_eq!(
            NodeResourcesFit.filter(&state, &big, &n).reasons,
            vec!["Insufficient cpu", "Insufficient memory", "Insufficient example.com/gpu"]
        );
        n.add_pod(Arc::new(named_pod("other", json!({}), requesting("", ""))));
        let none = pod(requesting("", ""));
        let status = NodeResourcesFit.filter(&state, &none, &n);
        assert_eq!((status.code, status.message().as_str()), (Code::Unschedulable, "Too many pods"));
        let small = node("n2", json!({}));
        assert!(
            NodeResourcesFit.filter(&state, &pod(requesting("4", "32Gi")), &small).is_success(),
            "exactly full fits"
        );
        assert_eq!(
            NodeResourcesFit.filter(&state, &pod(requesting("4001m", "")), &small).message(),
            "Insufficient cpu"
        );
    }

    #[test]
    fn scheduler_fit_score_is_least_allocated_with_non_zero_defaults() {
        let state = CycleState::default();
        let mut n = node("n1", json!({}));
        // Node: cpu 4000m, memory 32Gi. An existing pod requesting 1 cpu, 8Gi.
        n.add_pod(Arc::new(named_pod("old", json!({}), requesting("1", "8Gi"))));
        let p = pod(requesting("1", "8Gi"));
        // cpu (4000-2000)*100/4000 = 50; memory (32-16)*100/32 = 50 → 50.
        assert_eq!(NodeResourcesFit.score(&state, &p, &n), Ok(50));
        // A pod with no requests counts 100m and 200Mi: cpu (4000-1100)*100/4000 = 72;
        // memory (32Gi-8Gi-200Mi)*100/32Gi = 74 (74.39) → (72+74)/2 = 73.
        assert_eq!(NodeResourcesFit.score(&state, &pod(requesting("", "")), &n), Ok(73));
        assert_eq!(NodeResourcesFit.score(&state, &pod(requesting("5", "")), &n), Ok(37), "cpu over → 0, memory 74");
    }
}
