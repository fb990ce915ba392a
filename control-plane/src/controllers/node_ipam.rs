//! The node IPAM controller's decision: every node gets a `spec.podCIDR` of its own, cut from
//! the cluster CIDR (default 10.244.0.0/16 into /24s); a CIDR held by a node is never given to
//! another.
//!
//! Inputs: all nodes (the node informer's list) and the [`State`] this returns. The state
//! remembers what this controller handed out and has not yet seen on the node: without it a
//! second pass running before the cache shows the first pass's patch could hand the same CIDR
//! out again. O(nodes) per pass.
//!
//! Writes are merge patches setting `spec.podCIDR` and `spec.podCIDRs` (set once; Kubernetes
//! forbids changing them). When the range is exhausted the node gets a `CIDRNotAvailable` event.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use thiserror::Error;

use super::action::{Action, EventRecord, InvolvedObject, NODES, ObjectRef, PatchType, Plan};

/// `--cluster-cidr` default in Keel (flannel's and kubeadm guides').
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// `--node-cidr-mask-size` default for IPv4.
pub const DEFAULT_NODE_MASK: u8 = 24;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}: expected a.b.c.d/n")]
    Invalid(String),
    #[error("node mask /{node} must be at least the cluster mask /{cluster} and at most /30")]
    Mask { cluster: u8, node: u8 },
}

/// The cluster CIDR and how it is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    network: u32,
    cluster_mask: u8,
    node_mask: u8,
}

impl Config {
    /// `cluster_cidr` like "10.244.0.0/16"; `node_mask` like 24. Host bits are cleared.
    pub fn new(cluster_cidr: &str, node_mask: u8) -> Result<Config, CidrError> {
        let (network, cluster_mask) =
            parse_cidr(cluster_cidr).ok_or_else(|| CidrError::Invalid(cluster_cidr.into()))?;
        if node_mask < cluster_mask || node_mask > 30 {
            return Err(CidrError::Mask { cluster: cluster_mask, node: node_mask });
        }
        Ok(Config { network: network & mask(cluster_mask), cluster_mask, node_mask })
    }

    /// How many node CIDRs the range holds.
    pub fn capacity(&self) -> u32 {
        1u32 << (self.node_mask - self.cluster_mask)
    }

    fn index_of(&self, cidr: &str) -> Option<u32> {
        let (address, bits) = parse_cidr(cidr)?;
        if bits != self.node_mask || address & mask(self.cluster_mask) != self.network {
            return None;
        }
        Some((address - self.network) >> (32 - self.node_mask))
    }

    fn cidr(&self, index: u32) -> String {
        let address = self.network + (index << (32 - self.node_mask));
        format!("{}/{}", Ipv4Addr::from(address), self.node_mask)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config { network: u32::from(Ipv4Addr::new(10, 244, 0, 0)), cluster_mask: 16, node_mask: DEFAULT_NODE_MASK }
    }
}

fn mask(bits: u8) -> u32 {
    if bits == 0 { 0 } else { u32::MAX << (32 - bits) }
}

fn parse_cidr(cidr: &str) -> Option<(u32, u8)> {
    let (address, bits) = cidr.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
    Some((u32::from(address), bits))
}

/// Carried from pass to pass by the runtime.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Node name → the CIDR index this controller patched onto it, until the node shows it.
    pub in_flight: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub plan: Plan,
    pub state: State,
}

/// One pass: a CIDR for each node without one.
pub fn sync(nodes: &[&Node], previous: &State, config: &Config) -> Outcome {
    let mut plan = Plan::default();
    let mut state = State::default();
    let mut used: HashSet<u32> = HashSet::with_capacity(nodes.len());
    let mut needy: Vec<&Node> = Vec::new();
    for &node in nodes {
        match pod_cidr(node) {
            Some(cidr) => {
                if let Some(index) = config.index_of(cidr) {
                    used.insert(index);
                }
            }
            None => needy.push(node),
        }
    }
    // Handed out, not yet seen: still taken (and, for a node still without one, re-sent).
    let present: HashSet<&str> = nodes.iter().map(|n| name(n)).collect();
    for (node, index) in &previous.in_flight {
        if present.contains(node.as_str()) {
            used.insert(*index);
        }
    }
    needy.sort_by_key(|n| (n.metadata.creation_timestamp.as_ref().map(|t| t.0), name(n).to_string()));
    let mut cursor = 0u32;
    for node in needy {
        let index = match previous.in_flight.get(name(node)) {
            Some(index) => Some(*index),
            None => {
                while cursor < config.capacity() && used.contains(&cursor) {
                    cursor += 1;
                }
                (cursor < config.capacity()).then_some(cursor)
            }
        };
        let Some(index) = index else {
            plan.push(Action::Event(EventRecord {
                involved: InvolvedObject {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    namespace: None,
                    name: name(node).into(),
                    uid: node.metadata.uid.clone().unwrap_or_default(),
                },
                event_type: "Normal",
                reason: "CIDRNotAvailable".into(),
                message: format!("Node {} status is now: CIDRNotAvailable", name(node)),
            }));
            continue;
        };
        used.insert(index);
        state.in_flight.insert(name(node).to_string(), index);
        let cidr = config.cidr(index);
        plan.push(Action::Patch {
            target: ObjectRef { resource: NODES, namespace: None, name: name(node).into() },
            subresource: None,
            patch_type: PatchType::Merge,
            patch: json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } }),
        });
    }
    Outcome { plan, state }
}

fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).filter(|c| !c.is_empty())
}

fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            spec: Some(NodeSpec { pod_cidr: cidr.map(str::to_string), ..NodeSpec::default() }),
            status: None,
        }
    }

    fn assigned(plan: &Plan) -> Vec<(String, String)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Patch { target, patch, .. } => {
                    Some((target.name.clone(), patch["spec"]["podCIDR"].as_str()?.to_string()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn nodes_get_free_slash_24s_and_held_ones_are_skipped() {
        let a = node("a", Some("10.244.0.0/24"));
        let b = node("b", None);
        let c = node("c", None);
        let out = sync(&[&a, &b, &c], &State::default(), &Config::default());
        assert_eq!(
            assigned(&out.plan),
            vec![("b".into(), "10.244.1.0/24".into()), ("c".into(), "10.244.2.0/24".into())]
        );
        // The cache has not caught up: the same CIDRs again, none handed to a newcomer.
        let d = node("d", None);
        let again = sync(&[&a, &b, &c, &d], &out.state, &Config::default());
        let mut got = assigned(&again.plan);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("b".into(), "10.244.1.0/24".into()),
                ("c".into(), "10.244.2.0/24".into()),
                ("d".into(), "10.244.3.0/24".into())
            ]
        );
        // Once the nodes show them, nothing is in flight any more.
        let (b, c, d) =
            (node("b", Some("10.244.1.0/24")), node("c", Some("10.244.2.0/24")), node("d", Some("10.244.3.0/24")));
        let settled = sync(&[&a, &b, &c, &d], &again.state, &Config::default());
        assert!(settled.plan.is_empty() && settled.state.in_flight.is_empty());
    }

    #[test]
    fn a_full_range_is_reported_not_reused() {
        let config = Config::new("10.0.0.0/23", 24).unwrap();
        assert_eq!(config.capacity(), 2);
        let (a, b, c) = (node("a", Some("10.0.0.0/24")), node("b", Some("10.0.1.0/24")), node("c", None));
        let out = sync(&[&a, &b, &c], &State::default(), &config);
        assert!(assigned(&out.plan).is_empty());
        assert!(matches!(&out.plan.actions[..], [Action::Event(e)] if e.reason == "CIDRNotAvailable"));
        // A deleted node's CIDR is free again.
        let out = sync(&[&a, &c], &State::default(), &config);
        assert_eq!(assigned(&out.plan), vec![("c".into(), "10.0.1.0/24".into())]);
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(Config::new("10.244.0.0/16", 24).unwrap(), Config::default());
        assert!(matches!(Config::new("10.244.0.0", 24), Err(CidrError::Invalid(_))));
        assert!(matches!(Config::new("10.244.0.0/16", 8), Err(CidrError::Mask { .. })));
    }
}
