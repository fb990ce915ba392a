//! A hollow node's Node object and its registration, as the kubelet makes them.
//!
//! The Node is POSTed with its full status (labels, conditions in the kubelet's order with its
//! reasons and messages, capacity and allocatable, addresses, nodeInfo). If it exists already
//! (an agent restart) its status is PATCHed instead, so stale Unknown conditions turn Ready at
//! once. Every `REPORT_EVERY` lease renewals the node re-PATCHes its status with fresh
//! heartbeats: the kubelet's nodeStatusReportFrequency (5 min; liveness itself is the Lease).

use std::net::Ipv4Addr;

use bytes::Bytes;
use http::Method;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, Client};
use crate::status::time;

/// The kubelet version hollow nodes report (the API server serves v1.33).
pub const KUBELET_VERSION: &str = "v1.33.0";
/// The kubelet's hard eviction threshold memory.available, taken from allocatable.
const EVICTION_MEMORY_BYTES: u64 = 100 << 20;
/// Simulated disk: 100 GiB, 10 % kept free (nodefs.available).
const EPHEMERAL_STORAGE_BYTES: u64 = 100 << 30;

/// What every node of one agent has.
#[derive(Clone, Debug)]
pub struct Shape {
    pub cpu: String,
    pub memory_bytes: u64,
    pub max_pods: u32,
    pub runtime_version: String,
    /// Fresh per agent process, as a real boot ID is per boot.
    pub boot_id: String,
}

/// One node this agent runs.
#[derive(Clone, Debug)]
pub struct HollowNode {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// `Ki`, `Mi`, `Gi`, `Ti` or plain bytes (what `--memory` takes).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// The Go architecture name of this machine (kubelet's `runtime.GOARCH`).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// 32 hex digits derived from `seed` (machine ID and system UUID must be stable per node).
fn stable_hex(seed: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(32);
    for round in 0..2u8 {
        for byte in seed.bytes().chain([round]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{hash:016x}"));
    }
    out
}

fn conditions(now: &str) -> Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"lastHeartbeatTime": now, "lastTransitionTime": now, "message": message,
               "reason": reason, "status": status, "type": kind})
    };
    json!([
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ])
}

/// The Node's status: what registration carries and the periodic report re-sends.
pub fn node_status(node: &HollowNode, shape: &Shape, now: Timestamp) -> Value {
    let now = time(now);
    let memory_ki = shape.memory_bytes / 1024;
    let allocatable_memory_ki = shape.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES) / 1024;
    let uuid = stable_hex(&node.name);
    json!({
        "addresses": [
            {"address": node.ip.to_string(), "type": "InternalIP"},
            {"address": node.name, "type": "Hostname"},
        ],
        "allocatable": {
            "cpu": shape.cpu,
            "ephemeral-storage": (EPHEMERAL_STORAGE_BYTES / 10 * 9).to_string(),
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "memory": format!("{allocatable_memory_ki}Ki"),
            "pods": shape.max_pods.to_string(),
        },
        "capacity": {
            "cpu": shape.cpu,
            "ephemeral-storage": format!("{}Ki", EPHEMERAL_STORAGE_BYTES / 1024),
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "memory": format!("{memory_ki}Ki"),
            "pods": shape.max_pods.to_string(),
        },
        "conditions": conditions(&now),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": arch(),
            "bootID": shape.boot_id,
            "containerRuntimeVersion": shape.runtime_version,
            "kernelVersion": kernel_version(),
            "kubeProxyVersion": "",
            "kubeletVersion": KUBELET_VERSION,
            "machineID": uuid,
            "operatingSystem": "linux",
            "osImage": "Keel hollow node",
            "systemUUID": format!("{}-{}-{}-{}-{}", &uuid[0..8], &uuid[8..12], &uuid[12..16], &uuid[16..20], &uuid[20..32]),
        },
    })
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The whole Node the agent POSTs.
pub fn node_object(node: &HollowNode, shape: &Shape, now: Timestamp) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "beta.kubernetes.io/arch": arch(),
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch(),
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
            },
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {},
        "status": node_status(node, shape, now),
    })
}

#[derive(Deserialize)]
struct Created {
    metadata: CreatedMeta,
}

#[derive(Deserialize)]
struct CreatedMeta {
    uid: String,
}

/// Registers `node` (or refreshes the status of the Node that exists); the Node's UID.
pub async fn register(client: &Client, node: &HollowNode, shape: &Shape) -> Result<String, ApiError> {
    let body =
        serde_json::to_vec(&node_object(node, shape, Timestamp::now())).map_err(|e| ApiError::Decode(e.to_string()))?;
    let response = client.request(Method::POST, "/api/v1/nodes", Some("application/json"), Bytes::from(body)).await?;
    if response.status.as_u16() != 409 {
        return Ok(response.json::<Created>()?.metadata.uid);
    }
    report_status(client, node, shape).await
}

/// PATCHes the Node's status with fresh conditions and heartbeats; the Node's UID.
pub async fn report_status(client: &Client, node: &HollowNode, shape: &Shape) -> Result<String, ApiError> {
    let patch = json!({"status": node_status(node, shape, Timestamp::now())});
    let body = serde_json::to_vec(&patch).map_err(|e| ApiError::Decode(e.to_string()))?;
    let path = format!("/api/v1/nodes/{}/status", node.name);
    let response =
        client.request(Method::PATCH, &path, Some("application/strategic-merge-patch+json"), Bytes::from(body)).await?;
    Ok(response.json::<Created>()?.metadata.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            cpu: "4".into(),
            memory_bytes: 8 << 30,
            max_pods: 110,
            runtime_version: "simulated://0.1.0".into(),
            boot_id: "b".into(),
        }
    }

    #[test]
    fn quantities_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("8Gi"), Some(8 << 30));
        assert_eq!(parse_bytes("512Mi"), Some(512 << 20));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("8G"), None);
        assert_eq!(parse_bytes("Gi"), None);
    }

    #[test]
    fn a_node_carries_kubelet_labels_conditions_and_resources() {
        let node = HollowNode { name: "hollow-1".into(), ip: Ipv4Addr::new(172, 31, 0, 1) };
        let object = node_object(&node, &shape(), Timestamp::from_second(1_750_000_000).expect("t"));
        assert_eq!(object["metadata"]["labels"]["kubernetes.io/hostname"], "hollow-1");
        assert_eq!(object["metadata"]["labels"]["kubernetes.io/os"], "linux");
        let kinds: Vec<&str> = object["status"]["conditions"]
            .as_array()
            .expect("c")
            .iter()
            .map(|c| c["type"].as_str().expect("t"))
            .collect();
        assert_eq!(kinds, ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]);
        assert_eq!(object["status"]["conditions"][3]["reason"], "KubeletReady");
        assert_eq!(object["status"]["conditions"][3]["lastHeartbeatTime"], "2025-06-15T15:06:40Z");
        assert_eq!(object["status"]["capacity"]["pods"], "110");
        assert_eq!(object["status"]["capacity"]["memory"], "8388608Ki");
        assert_eq!(object["status"]["allocatable"]["memory"], "8286208Ki");
        assert_eq!(object["status"]["addresses"][0], json!({"address": "172.31.0.1", "type": "InternalIP"}));
        assert_eq!(object["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        let uuid = object["status"]["nodeInfo"]["systemUUID"].as_str().expect("uuid");
        assert_eq!(uuid.len(), 36);
        assert_ne!(stable_hex("hollow-1"), stable_hex("hollow-2"));
    }
}
