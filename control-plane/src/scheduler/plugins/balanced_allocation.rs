//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory would be used in equal
//! shares after placing the pod. Uses real requests (no non-zero defaults).

use crate::scheduler::framework::{
    ClusterEvent, CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, PreScorePlugin, ScorePlugin, Status,
};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        super::node_resources_fit::EVENTS
    }
}

impl PreScorePlugin for BalancedAllocation {
    /// A pod requesting neither cpu nor memory cannot unbalance anything.
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], _: &[NodeInfo]) -> Status {
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 { Status::skip() } else { Status::success() }
    }
}

impl ScorePlugin for BalancedAllocation {
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let resources = [
            (node.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu),
            (node.requested.memory + pod.requests.memory, node.allocatable.memory),
        ];
        let mut fractions = [0f64; 2];
        let mut count = 0;
        for (requested, allocatable) in resources {
            if allocatable == 0 {
                continue;
            }
            fractions[count] = (requested as f64 / allocatable as f64).min(1.0);
            count += 1;
        }
        // Two resources: the standard deviation is half their difference; fewer: 0.
        let deviation = if count == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
        Ok(((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{named_pod, node, pod, requesting};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn scheduler_balanced_allocation_scores_one_minus_half_the_fraction_gap() {
        let state = CycleState::default();
        let mut n = node("n1", json!({}));
        n.add_pod(Arc::new(named_pod("old", json!({}), requesting("1", ""))));
        // cpu (1000+1000)/4000 = 0.5; memory 8Gi/32Gi = 0.25 → std 0.125 → 87.5 → 87.
        assert_eq!(BalancedAllocation.score(&state, &pod(requesting("1", "8Gi")), &n), Ok(87));
        // Over-allocation is capped at 1: cpu 1.0, memory 0 → std 0.5 → 50.
        assert_eq!(BalancedAllocation.score(&state, &pod(requesting("8", "")), &n), Ok(50));
        let mut skip_state = CycleState::default();
        assert_eq!(
            BalancedAllocation.pre_score(&mut skip_state, &pod(requesting("", "")), &[], &[]).code,
            crate::scheduler::framework::Code::Skip
        );
    }
}
