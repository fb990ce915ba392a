//! The default plugins, one file each, and the profile that orders them as Kubernetes' default
//! MultiPoint list does (filters: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit, PodTopologySpread; scores with Kubernetes' weights:
//! TaintToleration 3, NodeAffinity 2, NodeResourcesFit 1, PodTopologySpread 2,
//! NodeResourcesBalancedAllocation 1).
//!
//! Not implemented (their objects are not served yet): the volume plugins, InterPodAffinity,
//! ImageLocality; DefaultPreemption only as far as the FitError's message (see `schedule.rs`).

pub mod balanced_allocation;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use super::framework::{ClusterEvent, FilterPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin};

/// The plugins of one scheduler profile, per extension point, in the order they run.
#[derive(Clone)]
pub struct Profile {
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub score: Vec<Arc<dyn ScorePlugin>>,
}

impl Profile {
    /// Kubernetes' default profile (minus the plugins listed in this module's doc).
    pub fn default_profile() -> Profile {
        let unschedulable = Arc::new(node_unschedulable::NodeUnschedulable);
        let node_name = Arc::new(node_name::NodeName);
        let taints = Arc::new(taint_toleration::TaintToleration);
        let affinity = Arc::new(node_affinity::NodeAffinity);
        let ports = Arc::new(node_ports::NodePorts);
        let fit = Arc::new(node_resources_fit::NodeResourcesFit);
        let spread = Arc::new(pod_topology_spread::PodTopologySpread);
        let balanced = Arc::new(balanced_allocation::BalancedAllocation);
        Profile {
            pre_filter: vec![affinity.clone(), ports.clone(), spread.clone()],
            filter: vec![
                unschedulable,
                node_name,
                taints.clone(),
                affinity.clone(),
                ports,
                fit.clone(),
                spread.clone(),
            ],
            pre_score: vec![taints.clone(), affinity.clone(), spread.clone(), balanced.clone()],
            score: vec![taints, affinity, fit, spread, balanced],
        }
    }

    /// Every plugin's name with the cluster events it registered, for the queue.
    pub fn events(&self) -> Vec<(&'static str, &'static [ClusterEvent])> {
        let mut out: Vec<(&'static str, &'static [ClusterEvent])> = Vec::new();
        let names = self
            .filter
            .iter()
            .map(|p| (p.name(), p.events()))
            .chain(self.pre_filter.iter().map(|p| (p.name(), p.events())))
            .chain(self.score.iter().map(|p| (p.name(), p.events())));
        for (name, events) in names {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, events));
            }
        }
        out
    }
}
