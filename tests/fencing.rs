//! Fencing on `keel up --agents 3 --runtime simulated`: the master holding the components'
//! Leases is paused with SIGSTOP past its lease, another master takes over and does the work
//! (a scale-up converges), and the paused master is resumed. It makes **zero** successful
//! writes after the new leader's term began: the store revision of its last accepted fenced
//! write (`keel_fence_last_accepted_revision`, from its own `/metrics`) stays below the fence
//! key's revision, which the new holder's acquisition wrote (read with the real etcdctl). A
//! watch on the pods over the whole run sees no pod bound to two nodes.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::control_plane::{Backend, UpCluster};
use common::kube::{eventually, holder, master_index, ok, ok_stdin, running_web_pods, wait_nodes_ready};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);
const COMPONENTS: [&str; 2] = ["kube-controller-manager", "kube-scheduler"];

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx}]
";

/// A child process stopped by PID when the test ends however it ends (and a paused master
/// resumed first, so the cluster's teardown can stop it).
struct Guard {
    child: Option<Child>,
    paused: Option<u32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pid) = self.paused.take() {
            common::send_signal(pid, "CONT");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One sample of `metric{name="<component>"}` (or with `component`/`result` labels) from a
/// master's /metrics.
fn metric(cluster: &UpCluster, master: usize, prefix: &str) -> Option<f64> {
    let output = cluster.kubectl_on(master, &["get", "--raw", "/metrics"]);
    assert!(output.status.success(), "/metrics: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// The mod revision of a component's fence key: where the current term began.
fn fence_revision(cluster: &UpCluster, component: &str) -> i64 {
    let key = format!("/registry/keel.dev/fences/{component}");
    let output = cluster.etcdctl(&["get", &key, "-w", "json"]);
    assert!(output.status.success(), "etcdctl get {key}: {}", String::from_utf8_lossy(&output.stderr));
    let answer: Value = serde_json::from_slice(&output.stdout).expect("etcdctl prints JSON");
    answer["kvs"][0]["mod_revision"].as_i64().unwrap_or_else(|| panic!("no fence key {key}: {answer}"))
}

#[test]
fn a_paused_holder_makes_no_write_once_resumed_and_no_pod_is_bound_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start_with(dir.path(), Backend::Embedded, &["--agents", "3", "--runtime", "simulated"]);
    wait_nodes_ready(&cluster, 3);
    let watch_log = dir.path().join("pod-watch.json");
    let watcher = Command::new(common::require_program("kubectl"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["get", "pods", "-A", "--watch", "--output-watch-events", "-o", "json"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&watch_log).expect("watch log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pod watch");
    let mut guard = Guard { child: Some(watcher), paused: None };

    ok_stdin(&cluster, &["apply", "-f", "-"], DEPLOYMENT);
    eventually(CONVERGE, "3 running pods", &cluster, || (running_web_pods(&cluster, 0) == 3).then_some(()));

    // Pause the controller manager's holder (usually both components' holder).
    let old = holder(&cluster, 0, "kube-controller-manager").expect("a holder");
    let paused = master_index(&old);
    let other = (paused + 1) % 3;
    let held: Vec<&str> = COMPONENTS
        .iter()
        .copied()
        .filter(|c| holder(&cluster, other, c).is_some_and(|h| master_index(&h) == paused))
        .collect();
    let pid = cluster.master_pids()[paused];
    common::send_signal(pid, "STOP");
    guard.paused = Some(pid);

    // Another master takes over and does the work the paused one would have done.
    let scaled = cluster.kubectl_on(other, &["scale", "deploy/web", "--replicas=6"]);
    assert!(scaled.status.success(), "{}", String::from_utf8_lossy(&scaled.stderr));
    for component in &held {
        let new = eventually(CONVERGE, &format!("a new {component} holder"), &cluster, || {
            holder(&cluster, other, component).filter(|h| master_index(h) != paused)
        });
        assert_ne!(master_index(&new), paused);
    }
    eventually(CONVERGE, "6 running pods under the new leader", &cluster, || {
        (running_web_pods(&cluster, other) == 6).then_some(())
    });

    // Resume: whatever the old holder still had in flight must be refused.
    common::send_signal(pid, "CONT");
    guard.paused = None;
    ok(&cluster, &["scale", "deploy/web", "--replicas=4"]);
    eventually(CONVERGE, "4 running pods", &cluster, || (running_web_pods(&cluster, other) == 4).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    for component in &held {
        let term = fence_revision(&cluster, component);
        let last = metric(&cluster, paused, &format!("keel_fence_last_accepted_revision{{name=\"{component}\"}}"))
            .expect("the paused master reports its last accepted fenced write");
        assert!(
            (last as i64) < term,
            "{component}: the resumed master had a write accepted at revision {last}, in the term that began at {term}"
        );
        let rejected = metric(
            &cluster,
            paused,
            &format!("keel_fenced_writes_total{{component=\"{component}\",result=\"rejected\"}}"),
        )
        .unwrap_or(0.0);
        eprintln!("{component}: the resumed master had {rejected} fenced writes refused");
        // It is not leading again: the new holder still holds.
        assert!(holder(&cluster, other, component).is_some_and(|h| master_index(&h) != paused));
    }

    // No pod was ever bound to two nodes.
    drop(guard);
    let log = std::fs::read_to_string(&watch_log).expect("watch log");
    let mut nodes: HashMap<String, String> = HashMap::new();
    let mut events = 0;
    for event in serde_json::Deserializer::from_str(&log).into_iter::<Value>().map_while(Result::ok) {
        events += 1;
        let object = &event["object"];
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let Some(node) = object["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else { continue };
        let first = nodes.entry(uid.clone()).or_insert_with(|| node.to_string());
        assert_eq!(first, node, "pod {uid} was bound to {first} and then to {node}");
    }
    assert!(events > 0 && nodes.len() >= 6, "the watch saw {events} events for {} bound pods", nodes.len());
}
