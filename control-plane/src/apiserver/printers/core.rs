//! Rows for the core cluster objects: namespaces, nodes, configmaps, secrets, serviceaccounts,
//! events and leases.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::{
    AGE, Column, NAME, age, array_at, at, bool_at, column, int_at, map_len, name, or_none, since, str_at, timestamp_at,
    wide,
};

pub(super) const NAMESPACE_COLUMNS: &[Column] =
    &[NAME, column("Status", "string", "Phase of the namespace: Active or Terminating."), AGE];

pub(super) const NODE_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "Readiness of the node, and whether scheduling on it is disabled."),
    column("Roles", "string", "Roles of the node, from its node-role labels."),
    AGE,
    column("Version", "string", "Version of the kubelet on the node."),
    wide("Internal-IP", "string", "First internal IP address of the node."),
    wide("External-IP", "string", "First external IP address of the node."),
    wide("OS-Image", "string", "Operating system image reported by the node."),
    wide("Kernel-Version", "string", "Kernel version reported by the node."),
    wide("Container-Runtime", "string", "Container runtime name and version reported by the node."),
];

pub(super) const CONFIG_MAP_COLUMNS: &[Column] =
    &[NAME, column("Data", "string", "Number of entries in data and binaryData."), AGE];

pub(super) const SECRET_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "Type of the secret, which fixes the keys it must hold."),
    column("Data", "string", "Number of entries in data."),
    AGE,
];

pub(super) const SERVICE_ACCOUNT_COLUMNS: &[Column] =
    &[NAME, column("Secrets", "string", "Number of secrets listed on the service account."), AGE];

pub(super) const EVENT_COLUMNS: &[Column] = &[
    column("Last Seen", "string", "Time since the event was last observed."),
    column("Type", "string", "Normal or Warning."),
    column("Reason", "string", "Short machine-readable cause of the event."),
    column("Object", "string", "The object the event is about, as kind/name."),
    wide("Subobject", "string", "Part of the object the event is about, such as a container."),
    wide("Source", "string", "Component, and host, that reported the event."),
    column("Message", "string", "Human-readable description of the event."),
    wide("First Seen", "string", "Time since the event was first observed."),
    wide("Count", "string", "Number of times the event has been observed."),
    Column { priority: 1, ..NAME },
];

pub(super) const LEASE_COLUMNS: &[Column] =
    &[NAME, column("Holder", "string", "Identity of the current holder of the lease."), AGE];

/// Label prefix naming a node role: `node-role.kubernetes.io/control-plane: ""`.
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// Older label carrying a node role as its value.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(super) fn namespace_cells(namespace: &Value, now: Timestamp) -> Vec<Value> {
    // The phase defaults to Active when the API server stores the namespace.
    let phase = match str_at(namespace, &["status", "phase"]) {
        "" => "Active",
        phase => phase,
    };
    vec![name(namespace).into(), phase.into(), age(namespace, now).into()]
}

pub(super) fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_owned(),
        value => value.to_owned(),
    };
    vec![
        name(node).into(),
        node_status(node).into(),
        or_none(&node_roles(node).join(",")).into(),
        age(node, now).into(),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// "Ready", "NotReady" (the Ready condition is False or Unknown) or "Unknown" (no Ready
/// condition), followed by ",SchedulingDisabled" for a cordoned node.
fn node_status(node: &Value) -> String {
    // The last Ready condition wins, as when Kubernetes indexes conditions by type.
    let ready = array_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|condition| str_at(condition, &["type"]) == "Ready");
    let mut status = match ready {
        Some(condition) if str_at(condition, &["status"]) == "True" => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and the `kubernetes.io/role` label
/// value, sorted and without duplicates.
fn node_roles(node: &Value) -> Vec<String> {
    let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut roles = BTreeSet::new();
    for (key, value) in labels {
        if let Some(role) = key.strip_prefix(NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role.to_owned());
            }
        } else if key == NODE_ROLE_LABEL
            && let Some(role) = value.as_str().filter(|role| !role.is_empty())
        {
            roles.insert(role.to_owned());
        }
    }
    roles.into_iter().collect()
}

/// The first address of `type_` ("InternalIP", "ExternalIP"), `<none>` when there is none.
fn node_address(node: &Value, type_: &str) -> String {
    array_at(node, &["status", "addresses"])
        .iter()
        .find(|address| str_at(address, &["type"]) == type_)
        .map_or_else(|| "<none>".to_owned(), |address| str_at(address, &["address"]).to_owned())
}

pub(super) fn config_map_cells(config_map: &Value, now: Timestamp) -> Vec<Value> {
    let entries = map_len(config_map, &["data"]) + map_len(config_map, &["binaryData"]);
    vec![name(config_map).into(), count(entries).into(), age(config_map, now).into()]
}

pub(super) fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    // The type defaults to Opaque when the API server stores the secret.
    let type_ = match str_at(secret, &["type"]) {
        "" => "Opaque",
        type_ => type_,
    };
    vec![name(secret).into(), type_.into(), count(map_len(secret, &["data"])).into(), age(secret, now).into()]
}

pub(super) fn service_account_cells(account: &Value, now: Timestamp) -> Vec<Value> {
    let secrets = array_at(account, &["secrets"]).len();
    vec![name(account).into(), count(secrets).into(), age(account, now).into()]
}

pub(super) fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(lease).into(), str_at(lease, &["spec", "holderIdentity"]).into(), age(lease, now).into()]
}

/// A collection size as a JSON number.
fn count(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

pub(super) fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match timestamp_at(event, &["firstTimestamp"]) {
        Some(first) => since(Some(first), now),
        // Events written through events.k8s.io carry only eventTime.
        None => since(timestamp_at(event, &["eventTime"]), now),
    };
    let mut last_seen = match timestamp_at(event, &["lastTimestamp"]) {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut occurrences = int_at(event, &["count"]).unwrap_or(0);
    if at(event, &["series"]).is_some() {
        last_seen = since(timestamp_at(event, &["series", "lastObservedTime"]), now);
        occurrences = int_at(event, &["series", "count"]).unwrap_or(0);
    } else if occurrences == 0 {
        // A singleton event written through events.k8s.io has no count.
        occurrences = 1;
    }
    vec![
        last_seen.into(),
        str_at(event, &["type"]).into(),
        str_at(event, &["reason"]).into(),
        involved_object(event).into(),
        str_at(event, &["involvedObject", "fieldPath"]).into(),
        event_source(event).into(),
        str_at(event, &["message"]).trim().into(),
        first_seen.into(),
        occurrences.into(),
        name(event).into(),
    ]
}

/// "pod/web-0": the lower-cased kind and the name, or just the kind when the name is empty.
fn involved_object(event: &Value) -> String {
    let kind = str_at(event, &["involvedObject", "kind"]).to_lowercase();
    match str_at(event, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    }
}

/// "kubelet, node-1": the reporting component and, when known, its host; the events.k8s.io
/// fields stand in for the legacy ones.
fn event_source(event: &Value) -> String {
    let first_non_empty = |primary: &str, fallback: &str| match str_at(event, &["source", primary]) {
        "" => str_at(event, &[fallback]).to_owned(),
        value => value.to_owned(),
    };
    let component = first_non_empty("component", "reportingComponent");
    let host = first_non_empty("host", "reportingInstance");
    if host.is_empty() { component } else { format!("{component}, {host}") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{now, row};
    use super::*;

    fn cells_of(resource: &str, object: &Value) -> Vec<Value> {
        super::super::cells(resource, object, now())
    }

    fn node(labels: Value, unschedulable: bool, conditions: Value) -> Value {
        json!({
            "metadata": {"name": "cp-1", "creationTimestamp": "2026-11-13T10:00:00Z", "labels": labels},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "conditions": conditions,
                "addresses": [{"type": "Hostname", "address": "cp-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.33.2",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-27-amd64",
                    "containerRuntimeVersion": "containerd://1.7.24",
                },
            },
        })
    }

    #[test]
    fn ready_control_plane_node() {
        let node = node(
            json!({"kubernetes.io/hostname": "cp-1", "node-role.kubernetes.io/control-plane": ""}),
            false,
            json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]),
        );
        let expected = row(&[
            "cp-1".into(),
            "Ready".into(),
            "control-plane".into(),
            "10d".into(),
            "v1.33.2".into(),
            "192.168.1.10".into(),
            "<none>".into(),
            "Debian GNU/Linux 12 (bookworm)".into(),
            "6.1.0-27-amd64".into(),
            "containerd://1.7.24".into(),
        ]);
        assert_eq!(cells_of("nodes", &node), expected);
    }

    #[test]
    fn cordoned_and_unhealthy_nodes() {
        let cordoned = node(json!({}), true, json!([{"type": "Ready", "status": "True"}]));
        let row = cells_of("nodes", &cordoned);
        assert_eq!(row[1], "Ready,SchedulingDisabled");
        assert_eq!(row[2], "<none>");

        let unknown = node(json!({}), false, json!([{"type": "Ready", "status": "Unknown"}]));
        assert_eq!(cells_of("nodes", &unknown)[1], "NotReady", "a Ready condition of Unknown reads NotReady");
        let silent = node(json!({}), true, json!([]));
        assert_eq!(cells_of("nodes", &silent)[1], "Unknown,SchedulingDisabled");

        let roles = node(
            json!({"node-role.kubernetes.io/worker": "", "kubernetes.io/role": "ingress", "node-role.kubernetes.io/": "x"}),
            false,
            json!([]),
        );
        assert_eq!(cells_of("nodes", &roles)[2], "ingress,worker");
    }

    #[test]
    fn bare_node_prints_placeholders() {
        let expected = row(&[
            "".into(),
            "Unknown".into(),
            "<none>".into(),
            "<unknown>".into(),
            "".into(),
            "<none>".into(),
            "<none>".into(),
            "<unknown>".into(),
            "<unknown>".into(),
            "<unknown>".into(),
        ]);
        assert_eq!(cells_of("nodes", &json!({})), expected);
    }

    #[test]
    fn namespaces_configmaps_secrets_accounts_leases() {
        let created = "2026-11-23T09:59:15Z";
        let namespace =
            json!({"metadata": {"name": "team-a", "creationTimestamp": created}, "status": {"phase": "Terminating"}});
        assert_eq!(cells_of("namespaces", &namespace), row(&["team-a".into(), "Terminating".into(), "45s".into()]));
        assert_eq!(cells_of("namespaces", &json!({"metadata": {"name": "b"}}))[1], "Active");

        let config_map = json!({
            "metadata": {"name": "cfg", "creationTimestamp": created},
            "data": {"a": "1", "b": "2"},
            "binaryData": {"c": "AA=="},
        });
        assert_eq!(cells_of("configmaps", &config_map), row(&["cfg".into(), 3.into(), "45s".into()]));

        let secret = json!({"metadata": {"name": "tls", "creationTimestamp": created}, "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "AA==", "tls.key": "AA=="}});
        assert_eq!(
            cells_of("secrets", &secret),
            row(&["tls".into(), "kubernetes.io/tls".into(), 2.into(), "45s".into()])
        );
        assert_eq!(cells_of("secrets", &json!({}))[1..3], ["Opaque".into(), Value::from(0)]);

        let account = json!({"metadata": {"name": "default", "creationTimestamp": created}, "secrets": [{"name": "default-token"}]});
        assert_eq!(cells_of("serviceaccounts", &account), row(&["default".into(), 1.into(), "45s".into()]));

        let lease = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": created},
                           "spec": {"holderIdentity": "cp-1_5f2c", "leaseDurationSeconds": 15}});
        assert_eq!(cells_of("leases", &lease), row(&["kube-scheduler".into(), "cp-1_5f2c".into(), "45s".into()]));
        assert_eq!(cells_of("leases", &json!({"spec": {"holderIdentity": null}}))[1], "");
    }

    #[test]
    fn legacy_event() {
        let event = json!({
            "metadata": {"name": "web-0.17f9a3c2", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container app\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2026-11-23T09:40:00Z",
            "lastTimestamp": "2026-11-23T09:59:30Z",
            "count": 42,
            "type": "Warning",
        });
        let expected = row(&[
            "30s".into(),
            "Warning".into(),
            "BackOff".into(),
            "pod/web-0".into(),
            "spec.containers{app}".into(),
            "kubelet, node-1".into(),
            "Back-off restarting failed container app".into(),
            "20m".into(),
            42.into(),
            "web-0.17f9a3c2".into(),
        ]);
        assert_eq!(cells_of("events", &event), expected);
    }

    #[test]
    fn events_k8s_io_event() {
        let event = json!({
            "metadata": {"name": "node-1.17f9"},
            "involvedObject": {"kind": "Node", "name": "node-1"},
            "reason": "Starting",
            "eventTime": "2026-11-23T09:56:59.900000Z",
            "reportingComponent": "kube-proxy",
            "reportingInstance": "kube-proxy-node-1",
            "type": "Normal",
            "firstTimestamp": null,
            "lastTimestamp": null,
        });
        let row = cells_of("events", &event);
        assert_eq!(row[0], "3m", "last seen falls back to first seen");
        assert_eq!(row[3], "node/node-1");
        assert_eq!(row[5], "kube-proxy, kube-proxy-node-1");
        assert_eq!(row[7], "3m");
        assert_eq!(row[8], 1, "a singleton event counts once");

        let series = json!({
            "involvedObject": {"kind": "Namespace"},
            "eventTime": "2026-11-23T09:00:00Z",
            "series": {"count": 7, "lastObservedTime": "2026-11-23T09:59:00.000001Z"},
            "source": {"component": "controller"},
        });
        let row = cells_of("events", &series);
        assert_eq!(row[0], "59s");
        assert_eq!(row[3], "namespace");
        assert_eq!(row[5], "controller");
        assert_eq!(row[7], "60m");
        assert_eq!(row[8], 7);

        let bare = cells_of("events", &json!({}));
        assert_eq!(bare[0], "<unknown>");
        assert_eq!(bare[7], "<unknown>");
        assert_eq!(bare[8], 1);
    }
}
