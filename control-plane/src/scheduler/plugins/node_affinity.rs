//! NodeAffinity: `spec.nodeSelector` and required node-affinity terms (Filter); preferred terms
//! add their weights to a node's score, normalized so the best node gets 100.

use crate::scheduler::framework::{
    ActionType, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, NodeInfo, Plugin, PodInfo,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Status, default_normalize,
};
use crate::scheduler::selector::{NodeTerm, RequiredNodeAffinity};

pub const NAME: &str = "NodeAffinity";
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

/// The pod's compiled hard constraints (PreFilter → Filter).
struct Required(RequiredNodeAffinity);
/// The pod's compiled preferred terms with their weights (PreScore → Score).
struct Preferred(Vec<(i64, NodeTerm)>);

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        const EVENTS: &[ClusterEvent] =
            &[ClusterEvent::new(EventResource::Node, ActionType::ADD.or(ActionType::UPDATE_NODE_LABEL))];
        EVENTS
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _: &[NodeInfo]) -> Status {
        let required = pod.spec().map(RequiredNodeAffinity::of).unwrap_or_default();
        if required.is_empty() {
            return Status::skip();
        }
        state.write(Required(required));
        Status::success()
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        match state.read::<Required>() {
            Some(Required(required)) if !required.matches(&node.name, node.labels()) => {
                Status::new(Code::UnschedulableAndUnresolvable, REASON)
            }
            _ => Status::success(),
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], _: &[NodeInfo]) -> Status {
        let preferred: Vec<(i64, NodeTerm)> = pod
            .spec()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), NodeTerm::compile(&t.preference)))
            .collect();
        if preferred.is_empty() {
            return Status::skip();
        }
        state.write(Preferred(preferred));
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn weight(&self) -> i64 {
        2
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let terms = state.read::<Preferred>().map(|p| p.0.as_slice()).unwrap_or(&[]);
        Ok(terms.iter().filter(|(_, t)| t.matches(&node.name, node.labels())).map(|(w, _)| w).sum())
    }
    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use serde_json::json;

    #[test]
    fn scheduler_node_affinity_filter_ands_selector_and_ors_terms() {
        let p = pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}]}}}}));
        let mut state = CycleState::default();
        assert!(NodeAffinity.pre_filter(&mut state, &p, &[]).is_success());
        let labelled = |name: &str, labels: serde_json::Value| node(name, json!({"metadata": {"labels": labels}}));
        assert!(NodeAffinity.filter(&state, &p, &labelled("n1", json!({"disk": "ssd", "zone": "a"}))).is_success());
        assert!(NodeAffinity.filter(&state, &p, &labelled("n3", json!({"disk": "ssd"}))).is_success());
        let status = NodeAffinity.filter(&state, &p, &labelled("n2", json!({"disk": "ssd", "zone": "b"})));
        assert_eq!((status.code, status.message().as_str()), (Code::UnschedulableAndUnresolvable, REASON));
        assert!(!NodeAffinity.filter(&state, &p, &labelled("n1", json!({"zone": "a"}))).is_success());
        assert_eq!(
            NodeAffinity.pre_filter(&mut CycleState::default(), &pod(json!({"containers": []})), &[]).code,
            Code::Skip
        );
    }

    #[test]
    fn scheduler_node_affinity_score_sums_preferred_weights_then_scales_to_100() {
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 3, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}}));
        let nodes = [
            node("a", json!({"metadata": {"labels": {"zone": "a", "gpu": "1"}}})),
            node("b", json!({"metadata": {"labels": {"zone": "a"}}})),
            node("c", json!({"metadata": {"labels": {"gpu": "1"}}})),
            node("d", json!({})),
        ];
        let mut state = CycleState::default();
        assert!(NodeAffinity.pre_score(&mut state, &p, &[], &[]).is_success());
        let mut scores: Vec<i64> = nodes.iter().map(|n| NodeAffinity.score(&state, &p, n).unwrap_or(-1)).collect();
        assert_eq!(scores, vec![8, 5, 3, 0]);
        NodeAffinity.normalize(&state, &p, &mut scores);
        assert_eq!(scores, vec![100, 62, 37, 0]); // 100·5/8 = 62, 100·3/8 = 37 (integer division)
    }
}
