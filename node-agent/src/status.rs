//! Pod status as the kubelet writes it, computed from the pod and its sandbox. Pure: no I/O,
//! the clock is an argument.
//!
//! - phase per the kubelet's getPhase (init containers are not run by the simulated runtime and
//!   are reported completed once the sandbox exists);
//! - conditions PodReadyToStartContainers, Initialized, Ready, ContainersReady in that order
//!   (PodScheduled is the binder's and kept), lastTransitionTime kept while a status holds;
//! - containerStatuses sorted by name, `<runtime>://<id>` container IDs; hostIP(s), podIP(s),
//!   startTime; every timestamp truncated to whole seconds (RFC 3339, `Z`).
//!
//! [`patch`] wraps it as the kubelet's strategic-merge patch of `pods/<name>/status`: the UID as
//! a precondition and `$setElementOrder/conditions` fixing the conditions' order.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::model::Pod;
use crate::runtime::{ContainerState, ContainerStatus, SandboxStatus};

/// The conditions the agent writes, in the kubelet's order (PodScheduled last: the kubelet
/// reports it True for a pod it runs, which matters for pods created with `spec.nodeName`).
pub const OWNED_CONDITIONS: [&str; 5] =
    ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];

/// Kubernetes' `metav1.Time` text: whole seconds, UTC.
pub fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Kubernetes' `metav1.MicroTime` text (Lease renewTime): microseconds, UTC.
pub fn micro_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// What status is computed from.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub sandbox: Option<&'a SandboxStatus>,
    /// The node's InternalIP.
    pub host_ip: &'a str,
    /// The first time the agent generated status for this pod (kept across updates).
    pub start_time: &'a str,
    /// `simulated`, `containerd`: the container ID prefix.
    pub runtime_name: &'a str,
    /// True once the agent stopped the pod for its deletion: the phase becomes terminal.
    pub terminating: bool,
    pub now: Timestamp,
}

/// Counts of the regular containers' states, for the phase.
#[derive(Default)]
struct Counts {
    waiting: usize,
    running: usize,
    succeeded: usize,
    failed: usize,
}

fn latest<'a>(sandbox: Option<&'a SandboxStatus>, name: &str) -> Option<&'a ContainerStatus> {
    sandbox?.containers.iter().rev().find(|c| c.name == name)
}

/// The kubelet's getPhase for regular containers.
fn phase(inputs: &Inputs<'_>) -> String {
    if let Some(phase) = inputs.pod.status.phase.as_deref().filter(|_| inputs.pod.is_terminal()) {
        return phase.to_string();
    }
    let mut counts = Counts::default();
    for container in &inputs.pod.spec.containers {
        match latest(inputs.sandbox, &container.name).map(|c| &c.state) {
            None | Some(ContainerState::Created) => counts.waiting += 1,
            Some(ContainerState::Running { .. }) => counts.running += 1,
            Some(ContainerState::Exited { exit_code: 0, .. }) => counts.succeeded += 1,
            Some(ContainerState::Exited { .. }) => counts.failed += 1,
        }
    }
    let stopped = counts.succeeded + counts.failed;
    let phase = if counts.waiting > 0 {
        "Pending"
    } else if counts.running > 0 {
        "Running"
    } else if stopped > 0 && inputs.terminating {
        if counts.failed == 0 { "Succeeded" } else { "Failed" }
    } else if stopped > 0 {
        match inputs.pod.spec.restart_policy.as_deref().unwrap_or("Always") {
            "Always" => "Running",
            _ if counts.failed == 0 => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    };
    phase.to_string()
}

fn state_json(status: Option<&ContainerStatus>, container_id: &str) -> Value {
    match status.map(|s| &s.state) {
        None | Some(ContainerState::Created) => json!({"waiting": {"reason": "ContainerCreating"}}),
        Some(ContainerState::Running { started_at }) => json!({"running": {"startedAt": time(*started_at)}}),
        Some(ContainerState::Exited { started_at, finished_at, exit_code, reason }) => json!({"terminated": {
            "containerID": container_id,
            "exitCode": exit_code,
            "finishedAt": time(*finished_at),
            "reason": reason,
            "startedAt": time(*started_at),
        }}),
    }
}

fn container_statuses(inputs: &Inputs<'_>) -> (Vec<Value>, Vec<String>) {
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    let mut containers: Vec<_> = inputs.pod.spec.containers.iter().collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    for container in containers {
        let status = latest(inputs.sandbox, &container.name);
        let running = matches!(status.map(|s| &s.state), Some(ContainerState::Running { .. }));
        let started = running;
        if !running {
            unready.push(container.name.clone());
        }
        let container_id = status.map(|s| format!("{}://{}", inputs.runtime_name, s.id)).unwrap_or_default();
        let mut entry = json!({
            "image": container.image,
            "imageID": status.map(|s| s.image_id.clone()).unwrap_or_default(),
            "lastState": {},
            "name": container.name,
            "ready": running,
            "restartCount": 0,
            "started": started,
            "state": state_json(status, &container_id),
        });
        if !container_id.is_empty() {
            entry["containerID"] = json!(container_id);
        }
        statuses.push(entry);
    }
    (statuses, unready)
}

/// The init containers, reported completed once the sandbox exists (the simulated runtime does
/// not run them), waiting before.
fn init_container_statuses(inputs: &Inputs<'_>) -> Vec<Value> {
    inputs
        .pod
        .spec
        .init_containers
        .iter()
        .map(|container| {
            let state = match inputs.sandbox {
                Some(sandbox) => json!({"terminated": {
                    "exitCode": 0,
                    "finishedAt": time(sandbox.created_at),
                    "reason": "Completed",
                    "startedAt": time(sandbox.created_at),
                }}),
                None => json!({"waiting": {"reason": "PodInitializing"}}),
            };
            json!({"image": container.image, "imageID": "", "lastState": {}, "name": container.name,
                   "ready": inputs.sandbox.is_some(), "restartCount": 0, "started": false, "state": state})
        })
        .collect()
}

/// One condition, keeping the pod's lastTransitionTime while the status is unchanged.
fn condition(pod: &Pod, kind: &str, status: bool, reason: Option<&str>, message: Option<String>, now: &str) -> Value {
    let status_text = if status { "True" } else { "False" };
    let previous = pod.status.conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    let transition = previous
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status_text))
        .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
        .unwrap_or(now);
    let mut condition = Map::new();
    condition.insert("lastProbeTime".into(), Value::Null);
    condition.insert("lastTransitionTime".into(), json!(transition));
    if let Some(message) = message {
        condition.insert("message".into(), json!(message));
    }
    if let Some(reason) = reason {
        condition.insert("reason".into(), json!(reason));
    }
    condition.insert("status".into(), json!(status_text));
    condition.insert("type".into(), json!(kind));
    Value::Object(condition)
}

/// Readiness gates all True, or the kubelet's reason why not.
fn gates_message(pod: &Pod) -> Option<String> {
    let conditions: BTreeMap<&str, &str> = pod
        .status
        .conditions
        .iter()
        .filter_map(|c| Some((c.get("type")?.as_str()?, c.get("status")?.as_str()?)))
        .collect();
    let mut messages = Vec::new();
    for gate in &pod.spec.readiness_gates {
        match conditions.get(gate.condition_type.as_str()) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gate.condition_type
            )),
            Some(&"True") => {}
            Some(other) => messages.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {other}",
                gate.condition_type
            )),
        }
    }
    (!messages.is_empty()).then(|| messages.join(", "))
}

fn conditions(inputs: &Inputs<'_>, phase: &str, unready: &[String]) -> Vec<Value> {
    let pod = inputs.pod;
    let now = time(inputs.now);
    let sandbox_ready = inputs.sandbox.is_some_and(|s| s.ready && s.ip.is_some());
    let initialized = inputs.sandbox.is_some() || pod.spec.init_containers.is_empty();
    let (containers_ready, reason, message) = match phase {
        "Succeeded" => (false, Some("PodCompleted"), None),
        "Failed" => (false, Some("PodFailed"), None),
        _ if unready.is_empty() => (true, None, None),
        _ => (
            false,
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        ),
    };
    let initialized_condition = if initialized {
        condition(pod, "Initialized", true, phase.eq("Succeeded").then_some("PodCompleted"), None, &now)
    } else {
        let names: Vec<&str> = pod.spec.init_containers.iter().map(|c| c.name.as_str()).collect();
        let message = format!("containers with incomplete status: [{}]", names.join(" "));
        condition(pod, "Initialized", false, Some("ContainersNotInitialized"), Some(message), &now)
    };
    let ready = match (containers_ready, gates_message(pod)) {
        (false, _) => condition(pod, "Ready", false, reason, message.clone(), &now),
        (true, Some(gates)) => condition(pod, "Ready", false, Some("ReadinessGatesNotReady"), Some(gates), &now),
        (true, None) => condition(pod, "Ready", true, None, None, &now),
    };
    vec![
        condition(pod, "PodReadyToStartContainers", sandbox_ready, None, None, &now),
        initialized_condition,
        ready,
        condition(pod, "ContainersReady", containers_ready, reason, message, &now),
        condition(pod, "PodScheduled", true, None, None, &now),
    ]
}

/// The status object the agent writes.
pub fn generate(inputs: &Inputs<'_>) -> Value {
    let phase = phase(inputs);
    let (statuses, unready) = container_statuses(inputs);
    let mut status = Map::new();
    status.insert("conditions".into(), Value::Array(conditions(inputs, &phase, &unready)));
    status.insert("containerStatuses".into(), Value::Array(statuses));
    status.insert("hostIP".into(), json!(inputs.host_ip));
    status.insert("hostIPs".into(), json!([{"ip": inputs.host_ip}]));
    if !inputs.pod.spec.init_containers.is_empty() {
        status.insert("initContainerStatuses".into(), Value::Array(init_container_statuses(inputs)));
    }
    status.insert("phase".into(), json!(phase));
    if let Some(ip) = inputs.sandbox.and_then(|s| s.ip) {
        status.insert("podIP".into(), json!(ip.to_string()));
        status.insert("podIPs".into(), json!([{"ip": ip.to_string()}]));
    }
    status.insert("startTime".into(), json!(inputs.start_time));
    Value::Object(status)
}

/// The strategic-merge patch of `pods/<name>/status` carrying `status`. Conditions merge by
/// `type`, so a field a condition no longer has (a reason once it is True) is sent as null, as
/// the kubelet's computed patch deletes it.
pub fn patch(pod: &Pod, status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        for condition in conditions.iter_mut() {
            let kind = condition.get("type").cloned();
            let old = pod.status.conditions.iter().find(|c| c.get("type") == kind.as_ref());
            if let (Some(old), Some(new)) = (old.and_then(Value::as_object), condition.as_object_mut()) {
                for field in old.keys() {
                    if !new.contains_key(field) {
                        new.insert(field.clone(), Value::Null);
                    }
                }
            }
        }
    }
    let mut order: Vec<Value> = OWNED_CONDITIONS.iter().map(|kind| json!({"type": kind})).collect();
    for other in &pod.status.conditions {
        if let Some(kind) = other.get("type").and_then(Value::as_str).filter(|k| !OWNED_CONDITIONS.contains(k)) {
            order.push(json!({"type": kind}));
        }
    }
    if let Some(object) = status.as_object_mut() {
        object.insert("$setElementOrder/conditions".into(), Value::Array(order));
    }
    json!({"metadata": {"uid": pod.metadata.uid}, "status": status})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, PodSpec};
    use std::net::IpAddr;

    fn pod(containers: &[&str]) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.uid = "u1".into();
        pod.spec = PodSpec {
            node_name: Some("hollow-1".into()),
            containers: containers.iter().map(|n| Container { name: n.to_string(), image: "nginx".into() }).collect(),
            ..PodSpec::default()
        };
        pod.status.conditions =
            vec![json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"})];
        pod
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_750_000_000 + seconds).expect("valid")
    }

    fn sandbox(states: &[(&str, ContainerState)]) -> SandboxStatus {
        SandboxStatus {
            id: "s1".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            name: "p".into(),
            node: "hollow-1".into(),
            ip: Some("10.244.1.2".parse::<IpAddr>().expect("ip")),
            created_at: at(0),
            ready: true,
            containers: states
                .iter()
                .enumerate()
                .map(|(i, (name, state))| ContainerStatus {
                    id: format!("c{i}"),
                    name: name.to_string(),
                    image: "nginx".into(),
                    image_id: "simulated://nginx".into(),
                    state: state.clone(),
                })
                .collect(),
        }
    }

    fn inputs<'a>(pod: &'a Pod, sandbox: Option<&'a SandboxStatus>, terminating: bool) -> Inputs<'a> {
        Inputs {
            pod,
            sandbox,
            host_ip: "172.31.0.1",
            start_time: "2025-06-15T15:06:40Z",
            runtime_name: "simulated",
            terminating,
            now: at(5),
        }
    }

    fn condition_of<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"].as_array().expect("conditions").iter().find(|c| c["type"] == kind).expect(kind)
    }

    #[test]
    fn before_the_sandbox_the_pod_is_pending_with_containers_creating() {
        let pod = pod(&["web", "app"]);
        let status = generate(&inputs(&pod, None, false));
        assert_eq!(status["phase"], "Pending");
        let types: Vec<&str> =
            status["conditions"].as_array().expect("c").iter().map(|c| c["type"].as_str().expect("t")).collect();
        assert_eq!(types, OWNED_CONDITIONS);
        assert_eq!(condition_of(&status, "PodReadyToStartContainers")["status"], "False");
        let ready = condition_of(&status, "Ready");
        assert_eq!(
            (ready["reason"].as_str(), ready["message"].as_str()),
            (Some("ContainersNotReady"), Some("containers with unready status: [app web]"))
        );
        assert_eq!(status["containerStatuses"][0]["name"], "app", "sorted by name");
        assert_eq!(status["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");
        assert!(status.get("podIP").is_none());
    }

    #[test]
    fn running_containers_make_the_pod_running_and_ready_with_its_ip() {
        let pod = pod(&["app"]);
        let sandbox = sandbox(&[("app", ContainerState::Running { started_at: at(3) })]);
        let status = generate(&inputs(&pod, Some(&sandbox), false));
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["podIP"], "10.244.1.2");
        assert_eq!(status["podIPs"], json!([{"ip": "10.244.1.2"}]));
        assert_eq!(status["hostIP"], "172.31.0.1");
        assert_eq!(condition_of(&status, "Ready")["status"], "True");
        assert_eq!(condition_of(&status, "Ready")["lastTransitionTime"], "2025-06-15T15:06:45Z");
        let container = &status["containerStatuses"][0];
        assert_eq!(container["containerID"], "simulated://c0");
        assert_eq!(container["state"]["running"]["startedAt"], "2025-06-15T15:06:43Z");
        assert_eq!((container["ready"].as_bool(), container["started"].as_bool()), (Some(true), Some(true)));
    }

    #[test]
    fn a_transition_time_is_kept_while_the_status_holds() {
        let mut pod = pod(&["app"]);
        pod.status
            .conditions
            .push(json!({"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-02T00:00:00Z"}));
        let sandbox = sandbox(&[("app", ContainerState::Running { started_at: at(3) })]);
        let status = generate(&inputs(&pod, Some(&sandbox), false));
        assert_eq!(condition_of(&status, "Ready")["lastTransitionTime"], "2025-01-02T00:00:00Z");
        assert_eq!(condition_of(&status, "ContainersReady")["lastTransitionTime"], "2025-06-15T15:06:45Z");
    }

    #[test]
    fn the_phase_follows_exits_restart_policy_and_termination() {
        let exited = |code| ContainerState::Exited {
            started_at: at(1),
            finished_at: at(2),
            exit_code: code,
            reason: "x".into(),
        };
        let mut never = pod(&["a"]);
        never.spec.restart_policy = Some("Never".into());
        let ok = sandbox(&[("a", exited(0))]);
        let bad = sandbox(&[("a", exited(1))]);
        assert_eq!(generate(&inputs(&never, Some(&ok), false))["phase"], "Succeeded");
        assert_eq!(generate(&inputs(&never, Some(&bad), false))["phase"], "Failed");
        let always = pod(&["a"]);
        assert_eq!(generate(&inputs(&always, Some(&bad), false))["phase"], "Running");
        assert_eq!(generate(&inputs(&always, Some(&ok), true))["phase"], "Succeeded");
        let done = generate(&inputs(&always, Some(&ok), true));
        assert_eq!(condition_of(&done, "Ready")["reason"], "PodCompleted");
        assert_eq!(done["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0);
    }

    #[test]
    fn a_terminal_phase_never_changes_back() {
        let mut pod = pod(&["a"]);
        pod.status.phase = Some("Failed".into());
        let sandbox = sandbox(&[("a", ContainerState::Running { started_at: at(1) })]);
        assert_eq!(generate(&inputs(&pod, Some(&sandbox), false))["phase"], "Failed");
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut pod = pod(&["a"]);
        pod.spec.readiness_gates = vec![crate::model::ReadinessGate { condition_type: "example.com/lb".into() }];
        let sandbox = sandbox(&[("a", ContainerState::Running { started_at: at(1) })]);
        let status = generate(&inputs(&pod, Some(&sandbox), false));
        let ready = condition_of(&status, "Ready");
        assert_eq!(ready["reason"], "ReadinessGatesNotReady");
        assert_eq!(
            ready["message"],
            "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
        );
        assert_eq!(condition_of(&status, "ContainersReady")["status"], "True");
    }

    #[test]
    fn the_patch_orders_conditions_and_carries_the_uid() {
        let pod = pod(&["a"]);
        let patch = patch(&pod, &generate(&inputs(&pod, None, false)));
        assert_eq!(patch["metadata"]["uid"], "u1");
        let order: Vec<&str> = patch["status"]["$setElementOrder/conditions"]
            .as_array()
            .expect("order")
            .iter()
            .map(|c| c["type"].as_str().expect("t"))
            .collect();
        assert_eq!(order, ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]);
    }

    #[test]
    fn the_patch_deletes_fields_a_condition_no_longer_has() {
        let mut pod = pod(&["a"]);
        pod.status.conditions.push(json!({"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "m", "lastTransitionTime": "2025-01-01T00:00:00Z"}));
        let sandbox = sandbox(&[("a", ContainerState::Running { started_at: at(1) })]);
        let patch = patch(&pod, &generate(&inputs(&pod, Some(&sandbox), false)));
        let ready = condition_of(&patch["status"], "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"], &ready["message"]),
            (&json!("True"), &Value::Null, &Value::Null)
        );
        assert!(ready.as_object().expect("object").contains_key("reason"), "sent as an explicit null");
    }

    #[test]
    fn times_are_truncated_to_seconds_and_micro_times_keep_microseconds() {
        let at = Timestamp::from_microsecond(1_750_000_000_123_456).expect("valid");
        assert_eq!(time(at), "2025-06-15T15:06:40Z");
        assert_eq!(micro_time(at), "2025-06-15T15:06:40.123456Z");
    }
}
