//! Pod rows, including the one-word status kubectl users read first.
//!
//! The STATUS cell is not a stored field: like kube-apiserver, it is derived from the phase, the
//! pod's reason, the init containers (in order), then the app containers (the first one waiting or
//! terminated wins), and finally the deletion timestamp. READY and RESTARTS count sidecars (init containers with
//! `restartPolicy: Always`) as app containers.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::Value;

use super::{
    AGE, Column, NAME, age, array_at, at, bool_at, column, int_at, name, or_none, since, str_at, timestamp_at, wide,
};

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Ready containers out of all containers, sidecars included."),
    column("Status", "string", "Summary of the pod's phase and of its containers' states."),
    column("Restarts", "string", "Container restarts, and how long ago the latest one ended."),
    AGE,
    wide("IP", "string", "First IP address allocated to the pod."),
    wide("Node", "string", "Node the pod is bound to."),
    wide("Nominated Node", "string", "Node the scheduler nominated for the pod after preempting pods there."),
    wide("Readiness Gates", "string", "Readiness gates whose condition is true, out of all gates."),
];

/// The pod's reason when its node stopped responding and the pod is being deleted.
const NODE_LOST_REASON: &str = "NodeLost";

pub(super) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = Summary::of(pod);
    let restarts = summary.restarts_cell(now);
    vec![
        name(pod).into(),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.reason.into(),
        restarts.into(),
        age(pod, now).into(),
        or_none(pod_ip(pod)).into(),
        or_none(str_at(pod, &["spec", "nodeName"])).into(),
        or_none(str_at(pod, &["status", "nominatedNodeName"])).into(),
        readiness_gates(pod).into(),
    ]
}

/// The derived READY, STATUS and RESTARTS values.
struct Summary {
    /// Ready app containers plus started-and-ready sidecars.
    ready: usize,
    /// App containers plus sidecars.
    total: usize,
    /// The STATUS cell.
    reason: String,
    /// Restarts counted for the RESTARTS cell, with the latest restart among them.
    restarts: Restarts,
}

/// A restart count with the time the most recent counted restart ended.
#[derive(Default, Clone, Copy)]
struct Restarts {
    /// Sum of the counted containers' `restartCount`.
    count: i64,
    /// Latest `lastState.terminated.finishedAt` among them: the "(5m ago)" part.
    latest: Option<Timestamp>,
}

impl Restarts {
    /// Counts one container status: its `restartCount` and `lastState.terminated.finishedAt`.
    fn add(&mut self, status: &Value) {
        self.count = self.count.saturating_add(int_at(status, &["restartCount"]).unwrap_or(0));
        let finished = timestamp_at(status, &["lastState", "terminated", "finishedAt"]);
        self.latest = self.latest.max(finished);
    }
}

/// What one init container status means for the pod's progress.
enum InitStep {
    /// Finished successfully; look at the next one.
    Done,
    /// A sidecar that started; it counts towards READY when ready.
    SidecarStarted { ready: bool },
    /// Initialization stops here, and this is the pod's status.
    Blocked(String),
}

impl Summary {
    fn of(pod: &Value) -> Summary {
        let init_specs = array_at(pod, &["spec", "initContainers"]);
        let sidecars = sidecar_names(init_specs);
        let sidecar_count = init_specs.iter().filter(|spec| is_sidecar(spec)).count();
        let mut summary = Summary {
            ready: 0,
            total: array_at(pod, &["spec", "containers"]).len() + sidecar_count,
            reason: initial_reason(pod),
            restarts: Restarts::default(),
        };
        let mut sidecar_restarts = Restarts::default();
        let mut initializing = false;
        let init_statuses = array_at(pod, &["status", "initContainerStatuses"]);
        for (index, status) in init_statuses.iter().enumerate() {
            summary.restarts.add(status);
            let sidecar = sidecars.get(str_at(status, &["name"])).copied().unwrap_or(false);
            if sidecar {
                sidecar_restarts.add(status);
            }
            match init_step(status, sidecar, index, init_specs.len()) {
                InitStep::Done => {}
                InitStep::SidecarStarted { ready } => summary.ready += usize::from(ready),
                InitStep::Blocked(reason) => {
                    summary.reason = reason;
                    initializing = true;
                    break;
                }
            }
        }
        if !initializing || first_condition_true(pod, "Initialized") {
            summary.restarts = sidecar_restarts;
            summary.scan_app_containers(pod);
        }
        summary.apply_deletion(pod);
        summary
    }

    /// Walks the app containers from last to first, so the first one (in spec order) that is
    /// waiting or terminated sets the status.
    fn scan_app_containers(&mut self, pod: &Value) {
        let mut has_running = false;
        for status in array_at(pod, &["status", "containerStatuses"]).iter().rev() {
            self.restarts.add(status);
            if let Some(reason) = container_reason(status) {
                self.reason = reason;
            } else if bool_at(status, &["ready"]) && at(status, &["state", "running"]).is_some() {
                has_running = true;
                self.ready += 1;
            }
        }
        // A container that completed while another still runs: the pod is still running.
        if self.reason == "Completed" && has_running {
            self.reason = if any_condition_true(pod, "Ready") { "Running" } else { "NotReady" }.to_owned();
        }
    }

    /// A pod being deleted reads "Terminating" until it reaches a terminal phase, or "Unknown" when
    /// its node was lost.
    fn apply_deletion(&mut self, pod: &Value) {
        if at(pod, &["metadata", "deletionTimestamp"]).is_none() {
            return;
        }
        let phase = str_at(pod, &["status", "phase"]);
        if str_at(pod, &["status", "reason"]) == NODE_LOST_REASON {
            self.reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            self.reason = "Terminating".to_owned();
        }
    }

    /// "3", or "3 (5m ago)" when the latest counted restart has an end time.
    fn restarts_cell(&self, now: Timestamp) -> String {
        match self.restarts.latest {
            Some(latest) if self.restarts.count != 0 => {
                format!("{} ({} ago)", self.restarts.count, since(Some(latest), now))
            }
            _ => self.restarts.count.to_string(),
        }
    }
}

/// The status before looking at containers: the phase, overridden by the pod's reason, overridden
/// by a scheduling gate.
fn initial_reason(pod: &Value) -> String {
    let mut reason = str_at(pod, &["status", "phase"]);
    let pod_reason = str_at(pod, &["status", "reason"]);
    if !pod_reason.is_empty() {
        reason = pod_reason;
    }
    let gated = array_at(pod, &["status", "conditions"]).iter().any(|condition| {
        str_at(condition, &["type"]) == "PodScheduled" && str_at(condition, &["reason"]) == "SchedulingGated"
    });
    if gated { "SchedulingGated".to_owned() } else { reason.to_owned() }
}

/// Init container names mapped to whether they are sidecars; a later duplicate name wins.
fn sidecar_names(init_specs: &[Value]) -> BTreeMap<&str, bool> {
    init_specs.iter().map(|spec| (str_at(spec, &["name"]), is_sidecar(spec))).collect()
}

/// An init container that keeps running next to the app containers.
fn is_sidecar(init_spec: &Value) -> bool {
    str_at(init_spec, &["restartPolicy"]) == "Always"
}

/// Classifies init container number `index` (of `init_count` declared).
fn init_step(status: &Value, sidecar: bool, index: usize, init_count: usize) -> InitStep {
    let terminated = at(status, &["state", "terminated"]);
    if let Some(terminated) = terminated
        && int_at(terminated, &["exitCode"]).unwrap_or(0) == 0
    {
        return InitStep::Done;
    }
    if sidecar && bool_at(status, &["started"]) {
        return InitStep::SidecarStarted { ready: bool_at(status, &["ready"]) };
    }
    if let Some(terminated) = terminated {
        return InitStep::Blocked(format!("Init:{}", terminated_reason(terminated)));
    }
    let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
    if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
        return InitStep::Blocked(format!("Init:{waiting_reason}"));
    }
    InitStep::Blocked(format!("Init:{index}/{init_count}"))
}

/// The status an app container imposes on the pod: its waiting reason, else its terminated
/// reason (or signal, or exit code); `None` when it is running or has no state.
fn container_reason(status: &Value) -> Option<String> {
    let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
    if at(status, &["state", "waiting"]).is_some() && !waiting_reason.is_empty() {
        return Some(waiting_reason.to_owned());
    }
    at(status, &["state", "terminated"]).map(terminated_reason)
}

/// A terminated state's reason, else "Signal:N" when killed by a signal, else "ExitCode:N".
fn terminated_reason(terminated: &Value) -> String {
    let reason = str_at(terminated, &["reason"]);
    if !reason.is_empty() {
        return reason.to_owned();
    }
    match int_at(terminated, &["signal"]).unwrap_or(0) {
        0 => format!("ExitCode:{}", int_at(terminated, &["exitCode"]).unwrap_or(0)),
        signal => format!("Signal:{signal}"),
    }
}

/// Whether the first condition of `type_` has status "True".
fn first_condition_true(pod: &Value, type_: &str) -> bool {
    array_at(pod, &["status", "conditions"])
        .iter()
        .find(|condition| str_at(condition, &["type"]) == type_)
        .is_some_and(|condition| str_at(condition, &["status"]) == "True")
}

/// Whether any condition of `type_` has status "True".
fn any_condition_true(pod: &Value, type_: &str) -> bool {
    array_at(pod, &["status", "conditions"])
        .iter()
        .any(|condition| str_at(condition, &["type"]) == type_ && str_at(condition, &["status"]) == "True")
}

/// The pod's first IP: `status.podIPs[0].ip`, or `status.podIP` for a status written with only the
/// singular field (Kubernetes fills one from the other when decoding).
fn pod_ip(pod: &Value) -> &str {
    match array_at(pod, &["status", "podIPs"]).first() {
        Some(first) => str_at(first, &["ip"]),
        None => str_at(pod, &["status", "podIP"]),
    }
}

/// "1/2": gates whose condition is "True", out of all gates; `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = array_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_owned();
    }
    let passed = gates.iter().filter(|gate| first_condition_true(pod, str_at(gate, &["conditionType"]))).count();
    format!("{passed}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{now, row};
    use super::*;

    /// A pod named web-0, created three hours before [`now`], with the given spec and status.
    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2026-11-23T07:00:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn status_of(pod: &Value) -> String {
        cells(pod, now())[2].as_str().expect("status cell is a string").to_owned()
    }

    fn two_containers() -> Value {
        json!({"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}]})
    }

    #[test]
    fn running_pod_with_a_restart() {
        let pod = pod(
            two_containers(),
            json!({
                "phase": "Running",
                "podIP": "10.244.1.7",
                "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-23T07:00:05Z"}}},
                    {"name": "log", "ready": true, "restartCount": 1,
                     "state": {"running": {"startedAt": "2026-11-23T09:55:00Z"}},
                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-23T09:54:58Z"}}},
                ],
            }),
        );
        let expected = row(&[
            "web-0".into(),
            "2/2".into(),
            "Running".into(),
            "1 (5m2s ago)".into(),
            "3h".into(),
            "10.244.1.7".into(),
            "node-1".into(),
            "<none>".into(),
            "<none>".into(),
        ]);
        assert_eq!(cells(&pod, now()), expected);
    }

    #[test]
    fn pending_unscheduled_pod() {
        let pod = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}),
        );
        let expected = row(&[
            "web-0".into(),
            "0/1".into(),
            "Pending".into(),
            "0".into(),
            "3h".into(),
            "<none>".into(),
            "<none>".into(),
            "<none>".into(),
            "<none>".into(),
        ]);
        assert_eq!(cells(&pod, now()), expected);
    }

    #[test]
    fn container_creating_and_scheduling_gated() {
        let creating = pod(
            two_containers(),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "log", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
            ]}),
        );
        assert_eq!(status_of(&creating), "ContainerCreating");
        let gated = pod(
            two_containers(),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(status_of(&gated), "SchedulingGated");
    }

    #[test]
    fn terminating_pod() {
        let mut pod = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "log", "ready": true, "restartCount": 0, "state": {"running": {}}},
            ]}),
        );
        pod["metadata"]["deletionTimestamp"] = json!("2026-11-23T09:59:30Z");
        let row = cells(&pod, now());
        assert_eq!(row[1], "2/2");
        assert_eq!(row[2], "Terminating");
        assert_eq!(row[3], "0");

        pod["status"]["reason"] = json!(NODE_LOST_REASON);
        assert_eq!(status_of(&pod), "Unknown", "a lost node's pods read Unknown while being deleted");

        pod["status"]["reason"] = json!(null);
        pod["status"]["phase"] = json!("Succeeded");
        pod["status"]["containerStatuses"] = json!([
            {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "log", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        ]);
        assert_eq!(status_of(&pod), "Completed", "a pod that already finished is not shown as Terminating");

        pod["status"]["phase"] = json!("Failed");
        pod["status"]["containerStatuses"][1] =
            json!({"name": "log", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}});
        assert_eq!(status_of(&pod), "Completed", "nor is a pod that already failed");
    }

    #[test]
    fn crash_loop_back_off_pod() {
        let pod = pod(
            json!({"nodeName": "node-2", "containers": [{"name": "app"}]}),
            json!({"phase": "Running", "podIPs": [{"ip": "10.244.2.9"}], "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 4,
                 "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s"}},
                 "lastState": {"terminated": {"exitCode": 2, "reason": "Error", "finishedAt": "2026-11-23T09:59:00Z"}}},
            ]}),
        );
        let row = cells(&pod, now());
        assert_eq!(row[1], "0/1");
        assert_eq!(row[2], "CrashLoopBackOff");
        assert_eq!(row[3], "4 (60s ago)");
        assert_eq!(row[5], "10.244.2.9");
        assert_eq!(row[6], "node-2");
    }

    #[test]
    fn completed_pod() {
        let pod = pod(
            json!({"containers": [{"name": "job"}], "restartPolicy": "Never"}),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "job", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-11-23T08:00:00Z"}}},
            ]}),
        );
        let row = cells(&pod, now());
        assert_eq!(row[1], "0/1");
        assert_eq!(row[2], "Completed");
        assert_eq!(row[3], "0");
    }

    #[test]
    fn terminated_without_reason_shows_signal_or_exit_code() {
        let with = |terminated: Value| {
            pod(
                json!({"containers": [{"name": "app"}]}),
                json!({"phase": "Failed", "containerStatuses": [
                    {"name": "app", "state": {"terminated": terminated}},
                ]}),
            )
        };
        assert_eq!(status_of(&with(json!({"exitCode": 137, "signal": 9}))), "Signal:9");
        assert_eq!(status_of(&with(json!({"exitCode": 3}))), "ExitCode:3");
        assert_eq!(status_of(&with(json!({"exitCode": 137, "reason": "OOMKilled"}))), "OOMKilled");
    }

    #[test]
    fn completed_container_next_to_a_running_one() {
        let mut pod = pod(
            two_containers(),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
                {"name": "app", "ready": true, "state": {"running": {}}},
                {"name": "log", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ]}),
        );
        // The scan runs from the last container, so "Completed" is seen before the running one.
        assert_eq!(status_of(&pod), "NotReady");
        pod["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(status_of(&pod), "Running");
    }

    #[test]
    fn init_containers_progress() {
        let spec = json!({
            "initContainers": [{"name": "migrate"}, {"name": "seed"}],
            "containers": [{"name": "app"}],
        });
        let waiting = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "migrate", "state": {"running": {}}},
                {"name": "seed", "state": {"waiting": {"reason": "PodInitializing"}}},
            ], "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(status_of(&waiting), "Init:0/2");

        let second = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "seed", "state": {"running": {}}},
            ]}),
        );
        assert_eq!(status_of(&second), "Init:1/2");

        let crashing = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "migrate", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-23T09:58:00Z"}}},
                {"name": "seed", "state": {"waiting": {"reason": "PodInitializing"}}},
            ]}),
        );
        let row = cells(&crashing, now());
        assert_eq!(row[2], "Init:CrashLoopBackOff");
        assert_eq!(row[3], "3 (2m ago)", "init container restarts count while the pod initializes");

        let failed = pod(
            spec,
            json!({"phase": "Failed", "initContainerStatuses": [
                {"name": "migrate", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}},
            ]}),
        );
        assert_eq!(status_of(&failed), "Init:Error");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let pod = pod(
            json!({
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}],
                "containers": [{"name": "app"}],
            }),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "proxy", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-23T09:00:00Z"}}},
                    {"name": "setup", "restartCount": 5, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-23T09:50:00Z"}}},
                ],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
            }),
        );
        let row = cells(&pod, now());
        assert_eq!(row[1], "2/2");
        assert_eq!(row[2], "Running");
        assert_eq!(row[3], "2 (60m ago)", "once initialized, only sidecar and app restarts count");
    }

    #[test]
    fn wide_columns() {
        let mut pod = pod(
            json!({"containers": [{"name": "app"}], "readinessGates": [
                {"conditionType": "example.com/lb-ready"}, {"conditionType": "example.com/dns-ready"},
            ]}),
            json!({"phase": "Pending", "podIP": "10.0.0.3", "nominatedNodeName": "node-3", "conditions": [
                {"type": "example.com/lb-ready", "status": "True"},
                {"type": "example.com/dns-ready", "status": "False"},
            ]}),
        );
        let row = cells(&pod, now());
        assert_eq!(row[5], "10.0.0.3", "podIP alone is used when podIPs is unset");
        assert_eq!(row[6], "<none>");
        assert_eq!(row[7], "node-3");
        assert_eq!(row[8], "1/2");
        pod["status"]["conditions"] = json!([]);
        assert_eq!(cells(&pod, now())[8], "0/2");
    }

    #[test]
    fn empty_pod_prints_placeholders() {
        let expected = row(&[
            "".into(),
            "0/0".into(),
            "".into(),
            "0".into(),
            "<unknown>".into(),
            "<none>".into(),
            "<none>".into(),
            "<none>".into(),
            "<none>".into(),
        ]);
        assert_eq!(cells(&json!({}), now()), expected);
    }
}
