//! The scheduler end to end, with the real kubectl on `keel up --agents 3 --runtime simulated`
//! (three hollow nodes of 4 CPUs and 8 GiB): Kubernetes' message for a pod no node fits and
//! its placement once a big enough node joins; nodeSelector, required and preferred node
//! affinity, taints and tolerations, `kubectl cordon/uncordon/drain`, topology spread within
//! maxSkew, ties spread evenly; and no node ever over its allocatable.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::control_plane::{Backend, UpCluster};
use common::kube::{ExtraAgent, eventually, items, json, ok, ok_stdin, wait_nodes_ready};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(60);
const NODES: [&str; 3] = ["hollow-1", "hollow-2", "hollow-3"];

fn start_cluster(dir: &std::path::Path) -> UpCluster {
    let cluster = UpCluster::start_with(dir, Backend::Embedded, &["--agents", "3", "--runtime", "simulated"]);
    wait_nodes_ready(&cluster, 3);
    cluster
}

fn pod(name: &str, spec_extra: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
{spec_extra}
  containers: [{{name: main, image: busybox, resources: {{requests: {{cpu: '{cpu}'}}}}}}]
"
    )
}

fn deployment(name: &str, replicas: usize, spec_extra: &str, cpu: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{spec_extra}
      containers: [{{name: main, image: busybox, resources: {{requests: {{cpu: '{cpu}'}}}}}}]
"
    )
}

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string()
}

/// Waits until pod `name` is bound; its node.
fn bound_node(cluster: &UpCluster, name: &str) -> String {
    eventually(SETTLE, &format!("pod {name} bound"), cluster, || {
        let node = node_of(&json(cluster, &["get", "pod", name]));
        (!node.is_empty()).then_some(node)
    })
}

/// Waits until the `app=<label>` pods that are not terminating are `count`, all bound; their
/// count per node.
fn placed(cluster: &UpCluster, label: &str, count: usize) -> BTreeMap<String, usize> {
    eventually(SETTLE, &format!("{count} bound {label} pods"), cluster, || {
        let pods = items(&json(cluster, &["get", "pods", "-l", &format!("app={label}")]));
        let live: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        if live.len() != count || live.iter().any(|p| node_of(p).is_empty()) {
            return None;
        }
        let mut per_node = BTreeMap::new();
        for pod in live {
            *per_node.entry(node_of(pod)).or_insert(0) += 1;
        }
        Some(per_node)
    })
}

fn pod_scheduled_condition(pod: &Value) -> Option<Value> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled").cloned()
}

/// CPU requested on each node by its non-terminal pods, in millicores.
fn requested_milli_cpu(cluster: &UpCluster) -> BTreeMap<String, i64> {
    let mut per_node = BTreeMap::new();
    for pod in items(&json(cluster, &["get", "pods", "-A"])) {
        let node = node_of(&pod);
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let cpu: i64 = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| milli(c["resources"]["requests"]["cpu"].as_str().unwrap_or("0")))
            .sum();
        *per_node.entry(node).or_insert(0) += cpu;
    }
    per_node
}

fn milli(cpu: &str) -> i64 {
    match cpu.strip_suffix('m') {
        Some(m) => m.parse().expect("millicores"),
        None => (cpu.parse::<f64>().expect("cores") * 1000.0) as i64,
    }
}

#[test]
fn a_pod_too_big_for_every_node_waits_with_kubernetes_message_until_a_big_node_joins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path());
    ok_stdin(&cluster, &["apply", "-f", "-"], &pod("huge", "", "8"));
    let condition = eventually(SETTLE, "PodScheduled=False on huge", &cluster, || {
        pod_scheduled_condition(&json(&cluster, &["get", "pod", "huge"])).filter(|c| c["status"] == "False")
    });
    assert_eq!(condition["reason"], "Unschedulable", "{condition}");
    assert_eq!(
        condition["message"],
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption \
         victims found for incoming pod.",
        "{condition}"
    );
    let pods = ok(&cluster, &["get", "pod", "huge"]);
    assert!(pods.contains("Pending"), "{pods}");
    let events =
        ok(&cluster, &["get", "events", "--field-selector", "reason=FailedScheduling,involvedObject.name=huge"]);
    assert!(events.contains("Insufficient cpu"), "a FailedScheduling event: {events}");

    let _big = ExtraAgent::start(&cluster, dir.path(), "big-", &["--cpu", "16"]);
    assert_eq!(bound_node(&cluster, "huge"), "big-1");
    let condition = eventually(SETTLE, "PodScheduled=True on huge", &cluster, || {
        pod_scheduled_condition(&json(&cluster, &["get", "pod", "huge"])).filter(|c| c["status"] == "True")
    });
    assert!(condition["message"].is_null(), "{condition}");
    let events = ok(&cluster, &["get", "events", "--field-selector", "reason=Scheduled,involvedObject.name=huge"]);
    assert!(events.contains("Successfully assigned default/huge to big-1"), "{events}");
}

#[test]
fn selectors_affinity_taints_cordon_drain_spread_and_allocatable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path());

    // nodeSelector.
    ok(&cluster, &["label", "node", "hollow-2", "disk=ssd"]);
    ok_stdin(&cluster, &["apply", "-f", "-"], &pod("fast", "  nodeSelector: {disk: ssd}", "100m"));
    assert_eq!(bound_node(&cluster, "fast"), "hollow-2");

    // Required node affinity.
    let required = "  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [hollow-3]}]";
    ok_stdin(&cluster, &["apply", "-f", "-"], &pod("pinned", required, "100m"));
    assert_eq!(bound_node(&cluster, "pinned"), "hollow-3");

    // Preferred node affinity: every replica goes where preferred while it fits.
    let preferred = "      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference:
              matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [hollow-1]}]";
    ok_stdin(&cluster, &["apply", "-f", "-"], &deployment("liked", 2, preferred, "100m"));
    assert_eq!(placed(&cluster, "liked", 2), BTreeMap::from([("hollow-1".to_string(), 2)]));

    // Taints: an untolerated NoSchedule taint keeps pods off; a toleration lets one on.
    ok(&cluster, &["taint", "node", "hollow-1", "dedicated=gpu:NoSchedule"]);
    ok_stdin(&cluster, &["apply", "-f", "-"], &deployment("plain", 6, "", "100m"));
    let plain = placed(&cluster, "plain", 6);
    assert!(!plain.contains_key("hollow-1"), "untolerated taint ignored: {plain:?}");
    let tolerating = "  nodeSelector: {kubernetes.io/hostname: hollow-1}
  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]";
    ok_stdin(&cluster, &["apply", "-f", "-"], &pod("gpu", tolerating, "100m"));
    assert_eq!(bound_node(&cluster, "gpu"), "hollow-1");
    ok(&cluster, &["taint", "node", "hollow-1", "dedicated-"]);

    // Cordon: no new pod lands on the node; uncordon lets them back.
    ok(&cluster, &["cordon", "hollow-3"]);
    ok(&cluster, &["scale", "deploy/plain", "--replicas=12"]);
    let before = plain.get("hollow-3").copied().unwrap_or(0);
    let cordoned = placed(&cluster, "plain", 12);
    assert_eq!(cordoned.get("hollow-3").copied().unwrap_or(0), before, "a pod landed on a cordoned node: {cordoned:?}");
    ok(&cluster, &["uncordon", "hollow-3"]);

    // Drain: the node is cordoned and its Deployment pods move to the others.
    let out = ok(
        &cluster,
        &["drain", "hollow-2", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=60s"],
    );
    assert!(out.contains("node/hollow-2 drained"), "{out}");
    let drained = placed(&cluster, "plain", 12);
    assert!(!drained.contains_key("hollow-2"), "pods still on the drained node: {drained:?}");
    assert_eq!(json(&cluster, &["get", "node", "hollow-2"])["spec"]["unschedulable"], true);
    ok(&cluster, &["uncordon", "hollow-2"]);
    ok(
        &cluster,
        &[
            "delete",
            "deploy/plain",
            "deploy/liked",
            "pod/fast",
            "pod/pinned",
            "pod/gpu",
            "--ignore-not-found",
            "--wait=true",
        ],
    );
    eventually(SETTLE, "the earlier pods gone", &cluster, || {
        items(&json(&cluster, &["get", "pods"])).is_empty().then_some(())
    });

    // Topology spread: maxSkew 1 over hostnames, whatever else is placed.
    let spread = "      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}";
    ok_stdin(&cluster, &["apply", "-f", "-"], &deployment("spread", 7, spread, "100m"));
    let counts = placed(&cluster, "spread", 7);
    let (min, max) = min_max(&counts);
    assert!(max - min <= 1, "skew above 1: {counts:?}");

    // Ties: equal nodes get equal shares.
    ok_stdin(&cluster, &["apply", "-f", "-"], &deployment("even", 9, "", "100m"));
    let counts = placed(&cluster, "even", 9);
    let (min, max) = min_max(&counts);
    assert!(max - min <= 1, "equal nodes got unequal shares: {counts:?}");

    // Allocatable: 30 pods of 500m on 3 × 4 CPUs (less what runs already): each node takes
    // as many as fit, the rest wait as Unschedulable, and no node is ever over its 4000m.
    let before = requested_milli_cpu(&cluster);
    ok_stdin(&cluster, &["apply", "-f", "-"], &deployment("heavy", 30, "", "500m"));
    let fitting: usize = NODES.iter().map(|n| ((4000 - before.get(*n).copied().unwrap_or(0)) / 500) as usize).sum();
    eventually(SETTLE, "heavy pods bound up to capacity, the rest Unschedulable", &cluster, || {
        let pods = items(&json(&cluster, &["get", "pods", "-l", "app=heavy"]));
        let unbound: Vec<&Value> = pods.iter().filter(|p| node_of(p).is_empty()).collect();
        let reported = unbound.iter().all(|p| {
            pod_scheduled_condition(p).is_some_and(|c| c["status"] == "False" && c["reason"] == "Unschedulable")
        });
        (pods.len() == 30 && unbound.len() == 30 - fitting && reported).then_some(())
    });
    for (node, milli_cpu) in requested_milli_cpu(&cluster) {
        assert!(milli_cpu <= 4000, "{node} requests {milli_cpu}m of 4000m");
    }
}

fn min_max(counts: &BTreeMap<String, usize>) -> (usize, usize) {
    let per_node: Vec<usize> = NODES.iter().map(|n| counts.get(*n).copied().unwrap_or(0)).collect();
    (per_node.iter().copied().min().unwrap_or(0), per_node.iter().copied().max().unwrap_or(0))
}
