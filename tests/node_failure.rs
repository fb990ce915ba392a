//! Node failure on `keel up`: a node whose agent dies turns Ready=Unknown within the
//! controller's grace period, gets the unreachable taints, and its pods are evicted after
//! their tolerationSeconds and re-created on the other nodes.

mod common;

use std::time::Duration;

use common::control_plane::{Backend, UpCluster};
use common::kube::{ExtraAgent, eventually, items, json, ok_stdin, wait_nodes_ready};
use serde_json::Value;

/// `--node-monitor-grace-period` given to the masters (Kubernetes' default is 50 s). Above
/// the 10 s in which `keel up`'s own nodes renew their Leases (a quarter of 40 s), or they
/// would go Unknown between renewals too.
const GRACE: Duration = Duration::from_secs(15);
const CONVERGE: Duration = Duration::from_secs(60);
const REPLICAS: usize = 6;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
      containers: [{name: nginx, image: nginx}]
";

fn pods(cluster: &UpCluster) -> Vec<Value> {
    items(&json(cluster, &["get", "pods", "-l", "app=web"]))
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

fn running_on(pods: &[Value], node: &str) -> usize {
    pods.iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running" && node_of(p) == node
        })
        .count()
}

#[test]
fn a_dead_node_goes_unknown_is_tainted_and_its_pods_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grace = format!("--master-arg=--node-monitor-grace-period={}s", GRACE.as_secs());
    let cluster =
        UpCluster::start_with(dir.path(), Backend::Embedded, &["--agents", "2", "--runtime", "simulated", &grace]);
    let mut agent = ExtraAgent::start(&cluster, dir.path(), "failing-", &["--node-lease-duration-seconds", "4"]);
    wait_nodes_ready(&cluster, 3);

    ok_stdin(&cluster, &["apply", "-f", "-"], DEPLOYMENT);
    // (ScheduleAnyway: a DoNotSchedule spread would count the dead node's empty domain and
    // leave the replacements Pending, as in Kubernetes.)
    eventually(CONVERGE, "6 running pods, some on failing-1", &cluster, || {
        let pods = pods(&cluster);
        let running: usize = ["hollow-1", "hollow-2", "failing-1"].iter().map(|n| running_on(&pods, n)).sum();
        (running == REPLICAS && running_on(&pods, "failing-1") >= 1).then_some(())
    });

    agent.kill();
    let node = eventually(GRACE * 4, "failing-1 Ready=Unknown", &cluster, || {
        let node = json(&cluster, &["get", "node", "failing-1"]);
        let unknown = node["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "Unknown"));
        unknown.then_some(node)
    });
    let ready = node["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Ready")).cloned();
    assert_eq!(ready.as_ref().map(|r| r["reason"].clone()), Some(Value::from("NodeStatusUnknown")), "{node}");
    let taints = eventually(CONVERGE, "unreachable taints", &cluster, || {
        let node = json(&cluster, &["get", "node", "failing-1"]);
        let taints: Vec<(String, String)> = node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| (t["key"].as_str().unwrap_or("").to_string(), t["effect"].as_str().unwrap_or("").to_string()))
            .collect();
        let wanted = |effect: &str| taints.iter().any(|(k, e)| k == "node.kubernetes.io/unreachable" && e == effect);
        (wanted("NoSchedule") && wanted("NoExecute")).then_some(taints)
    });
    assert!(!taints.is_empty());

    // Evicted after tolerationSeconds (2 s), re-created on the live nodes.
    eventually(CONVERGE, "6 running pods on the live nodes", &cluster, || {
        let pods = pods(&cluster);
        let live = running_on(&pods, "hollow-1") + running_on(&pods, "hollow-2");
        let on_dead =
            pods.iter().filter(|p| node_of(p) == "failing-1" && p["metadata"]["deletionTimestamp"].is_null()).count();
        (live == REPLICAS && on_dead == 0).then_some(())
    });
}
