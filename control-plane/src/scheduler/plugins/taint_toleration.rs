//! TaintToleration: a node's NoSchedule/NoExecute taints must all be tolerated (Filter);
//! untolerated PreferNoSchedule taints lower a node's score (fewest = 100).

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Toleration;

use crate::scheduler::framework::{
    ActionType, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, NodeInfo, Plugin, PodInfo, PreScorePlugin,
    ScorePlugin, Status, default_normalize,
};
use crate::scheduler::selector::{first_untolerated, tolerates};

pub const NAME: &str = "TaintToleration";

pub struct TaintToleration;

/// The pod's tolerations that can tolerate a PreferNoSchedule taint.
struct PreferTolerations(Vec<Toleration>);

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        const EVENTS: &[ClusterEvent] = &[
            ClusterEvent::new(EventResource::Node, ActionType::ADD.or(ActionType::UPDATE_NODE_TAINT)),
            ClusterEvent::new(EventResource::Pod, ActionType::UPDATE_POD_TOLERATION),
        ];
        EVENTS
    }
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.spec().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match first_untolerated(node.taints(), tolerations(pod), &["NoSchedule", "NoExecute"]) {
            None => Status::success(),
            Some(taint) => Status::new(
                Code::UnschedulableAndUnresolvable,
                Cow::Owned(format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                )),
            ),
        }
    }
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], _: &[NodeInfo]) -> Status {
        let prefer = tolerations(pod)
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
            .cloned()
            .collect();
        state.write(PreferTolerations(prefer));
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    fn weight(&self) -> i64 {
        3
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let prefer = state.read::<PreferTolerations>().map(|p| p.0.as_slice()).unwrap_or(&[]);
        let count = node
            .taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !prefer.iter().any(|tol| tolerates(tol, t)))
            .count();
        Ok(count as i64)
    }
    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use serde_json::json;

    fn tainted(name: &str, taints: serde_json::Value) -> NodeInfo {
        node(name, json!({"spec": {"taints": taints}}))
    }

    #[test]
    fn scheduler_taint_filter_names_the_first_untolerated_taint() {
        let state = CycleState::default();
        let n = tainted(
            "n1",
            json!([
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "db", "effect": "NoExecute"}]),
        );
        let status = TaintToleration.filter(&state, &pod(json!({"containers": []})), &n);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.message(), "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }");
        let p = pod(json!({"containers": [], "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}));
        assert_eq!(TaintToleration.filter(&state, &p, &n).message(), "node(s) had untolerated taint {dedicated: db}");
    }

    #[test]
    fn scheduler_taint_score_prefers_fewer_prefer_no_schedule_taints() {
        let nodes = [
            tainted("a", json!([])),
            tainted("b", json!([{"key": "x", "effect": "PreferNoSchedule"}])),
            tainted(
                "c",
                json!([{"key": "x", "effect": "PreferNoSchedule"}, {"key": "y", "effect": "PreferNoSchedule"}]),
            ),
        ];
        let p = pod(
            json!({"containers": [], "tolerations": [{"key": "y", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        let mut state = CycleState::default();
        TaintToleration.pre_score(&mut state, &p, &[], &[]);
        let mut scores: Vec<i64> = nodes.iter().map(|n| TaintToleration.score(&state, &p, n).unwrap_or(-1)).collect();
        assert_eq!(scores, vec![0, 1, 1]);
        TaintToleration.normalize(&state, &p, &mut scores);
        assert_eq!(scores, vec![100, 0, 0]);
    }
}
