//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.

use crate::scheduler::framework::{
    ActionType, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, NodeInfo, Plugin, PodInfo, Status,
};

pub const NAME: &str = "NodeName";
pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        const EVENTS: &[ClusterEvent] = &[ClusterEvent::new(EventResource::Node, ActionType::ADD)];
        EVENTS
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.spec().and_then(|s| s.node_name.as_deref()) {
            Some(wanted) if !wanted.is_empty() && wanted != node.name => {
                Status::new(Code::UnschedulableAndUnresolvable, REASON)
            }
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use serde_json::json;

    #[test]
    fn scheduler_node_name_rejects_other_nodes() {
        let p = pod(json!({"nodeName": "n2", "containers": [{"name": "c"}]}));
        let state = CycleState::default();
        assert!(NodeName.filter(&state, &p, &node("n2", json!({}))).is_success());
        let status = NodeName.filter(&state, &p, &node("n1", json!({})));
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.message(), REASON);
    }
}
