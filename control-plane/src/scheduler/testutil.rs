//! Builders for the scheduler's unit tests: nodes and pods from compact JSON.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::framework::{NodeInfo, PodInfo};

/// A Node named `name` with scheduler_perf's capacity (cpu 4, memory 32Gi, pods 110) unless
/// `extra` sets `status`; `extra` is merged at the top level (`metadata` keys are merged too).
pub fn node_object(name: &str, extra: Value) -> Node {
    let mut object = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}},
    });
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            if key == "metadata" {
                if let (Some(meta), Value::Object(more)) = (object["metadata"].as_object_mut(), value) {
                    for (k, v) in more {
                        if k == "labels" {
                            if let (Some(l), Value::Object(add)) = (meta["labels"].as_object_mut(), v) {
                                l.extend(add);
                            }
                        } else {
                            meta.insert(k, v);
                        }
                    }
                }
            } else {
                object[key] = value;
            }
        }
    }
    serde_json::from_value(object).unwrap_or_else(|e| panic!("test node {name}: {e}"))
}

pub fn node(name: &str, extra: Value) -> NodeInfo {
    NodeInfo::new(Arc::new(node_object(name, extra)))
}

/// A pod in namespace `default` with this `spec`, named after a counter.
pub fn pod_object(name: &str, labels: Value, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("test pod {name}: {e}"))
}

pub fn pod(spec: Value) -> PodInfo {
    PodInfo::new(Arc::new(pod_object("p", json!({}), spec)))
}

pub fn named_pod(name: &str, labels: Value, spec: Value) -> PodInfo {
    PodInfo::new(Arc::new(pod_object(name, labels, spec)))
}

/// A one-container pod spec requesting `cpu` and `memory` (empty: not requested).
pub fn requesting(cpu: &str, memory: &str) -> Value {
    let mut requests = serde_json::Map::new();
    if !cpu.is_empty() {
        requests.insert("cpu".into(), json!(cpu));
    }
    if !memory.is_empty() {
        requests.insert("memory".into(), json!(memory));
    }
    json!({"containers": [{"name": "c", "resources": {"requests": requests}}]})
}
