//! Control-plane failover on `keel up --agents 3 --runtime simulated`: both components' Leases
//! have holders; kill -9 of the master holding the controller manager's Lease hands both
//! components to another master, and a Deployment scaled right after the kill converges.

mod common;

use std::time::{Duration, Instant};

use common::control_plane::{Backend, UpCluster};
use common::kube::{eventually, holder, json, master_index, ok, ok_stdin, running_web_pods, wait_nodes_ready};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx}]
";

#[test]
fn a_killed_holder_hands_both_components_over_and_work_converges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start_with(dir.path(), Backend::Embedded, &["--agents", "3", "--runtime", "simulated"]);
    wait_nodes_ready(&cluster, 3);

    let leases = ok(&cluster, &["get", "lease", "-n", "kube-system"]);
    for name in ["kube-controller-manager", "kube-scheduler"] {
        let line = leases.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} Lease: {leases}"));
        assert!(line.split_whitespace().nth(1).is_some_and(|h| h.starts_with("master-")), "{leases}");
    }
    ok_stdin(&cluster, &["apply", "-f", "-"], DEPLOYMENT);
    eventually(CONVERGE, "2 running pods", &cluster, || (running_web_pods(&cluster, 0) == 2).then_some(()));

    let old = holder(&cluster, 0, "kube-controller-manager").expect("a holder");
    let victim = master_index(&old);
    let survivor = (victim + 1) % 3;
    let transitions =
        json(&cluster, &["get", "lease", "-n", "kube-system", "kube-controller-manager"])["spec"]["leaseTransitions"]
            .as_i64()
            .unwrap_or(0);
    let pid = cluster.master_pids()[victim];
    common::send_signal(pid, "KILL");
    let killed = Instant::now();
    let scaled = cluster.kubectl_on(survivor, &["scale", "deploy/web", "--replicas=4"]);
    assert!(scaled.status.success(), "{}", String::from_utf8_lossy(&scaled.stderr));

    let new = eventually(CONVERGE, "a new controller-manager holder", &cluster, || {
        holder(&cluster, survivor, "kube-controller-manager").filter(|h| *h != old)
    });
    assert_ne!(master_index(&new), victim, "the killed master still holds the Lease: {new}");
    eventually(CONVERGE, "4 running pods after the kill", &cluster, || {
        (running_web_pods(&cluster, survivor) == 4).then_some(())
    });
    eprintln!("scaled deployment converged {:?} after the kill", killed.elapsed());
    let lease = {
        let output = cluster
            .kubectl_on(survivor, &["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "json"]);
        serde_json::from_slice::<Value>(&output.stdout).expect("lease JSON")
    };
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) > transitions, "{lease}");
    // The scheduler moved too, if it was on the killed master.
    let scheduler = eventually(CONVERGE, "a live scheduler holder", &cluster, || {
        holder(&cluster, survivor, "kube-scheduler").filter(|h| master_index(h) != victim)
    });
    assert!(scheduler.starts_with("master-"));
}
