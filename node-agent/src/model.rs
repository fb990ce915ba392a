//! The few fields of Pods and Nodes the agent reads, as serde views of the API's JSON (unknown
//! fields ignored): decoding only these keeps a pod event cheap.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub resource_version: String,
    pub deletion_timestamp: Option<String>,
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    pub restart_policy: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub readiness_gates: Vec<ReadinessGate>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessGate {
    #[serde(default)]
    pub condition_type: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Option<String>,
    /// Kept as JSON: conditions the agent does not own are read back as they are.
    #[serde(default)]
    pub conditions: Vec<Value>,
    pub start_time: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

impl Pod {
    /// `namespace/name`, the work queue's key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    pub fn node(&self) -> &str {
        self.spec.node_name.as_deref().unwrap_or_default()
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// The grace period for stopping its containers: deletionGracePeriodSeconds, else the
    /// spec's (default 30).
    pub fn grace_seconds(&self) -> i64 {
        self.metadata.deletion_grace_period_seconds.or(self.spec.termination_grace_period_seconds).unwrap_or(30).max(0)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs", default)]
    pub pod_cidrs: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub spec: NodeSpec,
}

impl Node {
    /// The node's IPv4 pod range: the first of podCIDRs, else podCIDR.
    pub fn pod_cidr(&self) -> Option<String> {
        self.spec
            .pod_cidrs
            .iter()
            .chain(self.spec.pod_cidr.iter())
            .find(|cidr| !cidr.is_empty() && !cidr.contains(':'))
            .cloned()
    }
}

/// Decodes a watched object, `None` (and a log line) if it is not the expected shape.
pub fn decode<T: serde::de::DeserializeOwned>(object: Value) -> Option<T> {
    match serde_json::from_value(object) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(%error, "skipping an object that does not decode");
            None
        }
    }
}
