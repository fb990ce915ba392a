//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint (DaemonSet pods do).

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::Taint;

use crate::scheduler::framework::{
    ActionType, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, NodeInfo, Plugin, PodInfo, Status,
};
use crate::scheduler::selector::tolerates;

pub const NAME: &str = "NodeUnschedulable";
pub const REASON: &str = "node(s) were unschedulable";

static UNSCHEDULABLE_TAINT: LazyLock<Taint> = LazyLock::new(|| Taint {
    key: "node.kubernetes.io/unschedulable".to_string(),
    effect: "NoSchedule".to_string(),
    value: None,
    time_added: None,
});

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
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

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let cordoned = node.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if !cordoned {
            return Status::success();
        }
        let tolerations = pod.spec().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        if tolerations.iter().any(|t| tolerates(t, &UNSCHEDULABLE_TAINT)) {
            Status::success()
        } else {
            Status::new(Code::UnschedulableAndUnresolvable, REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use serde_json::json;

    #[test]
    fn scheduler_node_unschedulable_needs_the_toleration() {
        let cordoned = node("n1", json!({"spec": {"unschedulable": true}}));
        let state = CycleState::default();
        let plain = pod(json!({"containers": [{"name": "c"}]}));
        let status = NodeUnschedulable.filter(&state, &plain, &cordoned);
        assert_eq!((status.code, status.message().as_str()), (Code::UnschedulableAndUnresolvable, REASON));
        let tolerant = pod(json!({"containers": [{"name": "c"}], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}));
        assert!(NodeUnschedulable.filter(&state, &tolerant, &cordoned).is_success());
        assert!(NodeUnschedulable.filter(&state, &plain, &node("n2", json!({}))).is_success());
    }
}
