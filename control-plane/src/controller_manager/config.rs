//! The controllers' `keel master` flags, with kube-controller-manager's names and defaults.

use std::time::Duration;

use crate::controllers::{node_ipam, node_lifecycle, pod_gc};
use crate::election::parse_duration;

#[derive(Clone, Debug, clap::Args)]
pub struct ControllerConfig {
    /// How long a node may be silent before it is marked Unknown.
    #[arg(long, value_parser = parse_duration, default_value = "50s")]
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never reported Ready.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub node_startup_grace_period: Duration,
    /// How often the node lifecycle controller looks at every node.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub node_monitor_period: Duration,
    /// Terminated pods kept before the oldest are deleted (0: no limit).
    #[arg(long, default_value_t = pod_gc::DEFAULT_TERMINATED_POD_THRESHOLD)]
    pub terminated_pod_gc_threshold: usize,
    /// The pod network, split into one `spec.podCIDR` per node.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// The prefix length of each node's podCIDR.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
}

impl ControllerConfig {
    pub fn node_lifecycle(&self) -> node_lifecycle::Config {
        node_lifecycle::Config {
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_startup_grace_period: self.node_startup_grace_period,
            ..node_lifecycle::Config::default()
        }
    }

    pub fn pod_gc(&self) -> pod_gc::Config {
        pod_gc::Config { terminated_pod_threshold: self.terminated_pod_gc_threshold, ..pod_gc::Config::default() }
    }

    /// Checked at start (`validate`), so this never falls back in practice.
    pub fn node_ipam(&self) -> node_ipam::Config {
        node_ipam::Config::new(&self.cluster_cidr, self.node_cidr_mask_size).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), node_ipam::CidrError> {
        node_ipam::Config::new(&self.cluster_cidr, self.node_cidr_mask_size).map(|_| ())
    }
}
