//! NodePorts: a pod's host ports must be free on the node.

use crate::scheduler::framework::{
    ActionType, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, NodeInfo, Plugin, PodInfo,
    PreFilterPlugin, Status,
};

pub const NAME: &str = "NodePorts";
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        const EVENTS: &[ClusterEvent] = &[
            ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE),
            ClusterEvent::new(EventResource::Node, ActionType::ADD),
        ];
        EVENTS
    }
}

impl PreFilterPlugin for NodePorts {
    /// Pods without host ports (nearly all) skip the Filter.
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &[NodeInfo]) -> Status {
        if pod.host_ports.is_empty() { Status::skip() } else { Status::success() }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let taken = pod.host_ports.iter().any(|want| node.used_ports.iter().any(|(used, _)| used.conflicts(want)));
        if taken { Status::new(Code::Unschedulable, REASON) } else { Status::success() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{named_pod, node};
    use serde_json::json;
    use std::sync::Arc;

    fn with_port(name: &str, ip: &str, port: i32, protocol: &str) -> PodInfo {
        named_pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": protocol}]}]}),
        )
    }

    #[test]
    fn scheduler_node_ports_wildcard_conflicts_with_every_ip() {
        let mut n = node("n1", json!({}));
        n.add_pod(Arc::new(with_port("old", "10.0.0.1", 8080, "TCP")));
        let state = CycleState::default();
        let check = |n: &NodeInfo, p: &PodInfo| NodePorts.filter(&state, p, n);
        assert_eq!(check(&n, &with_port("a", "", 8080, "TCP")).message(), REASON, "0.0.0.0 vs a specific IP");
        assert_eq!(check(&n, &with_port("b", "10.0.0.1", 8080, "TCP")).code, Code::Unschedulable);
        assert!(check(&n, &with_port("c", "10.0.0.2", 8080, "TCP")).is_success(), "other IP");
        assert!(check(&n, &with_port("d", "10.0.0.1", 8080, "UDP")).is_success(), "other protocol");
        assert!(check(&n, &with_port("e", "10.0.0.1", 8081, "TCP")).is_success(), "other port");
        n.remove_pod("default/old");
        assert!(check(&n, &with_port("a", "", 8080, "TCP")).is_success(), "freed on removal");
    }
}
