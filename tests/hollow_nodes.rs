//! Hollow nodes end to end: `keel up --agents 3 --runtime simulated`, then the real kubectl.
//! The nodes register Ready with kubectl's columns, their Leases in kube-node-lease renew, a pod
//! bound by `spec.nodeName` runs with an IP from the podCIDR the node IPAM controller gave its
//! node, `kubectl delete pod` completes because the agent finishes the graceful deletion, and a
//! killed agent stops renewing.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::control_plane::{Backend, UpCluster};
use serde_json::Value;

/// How long the three nodes may take to show Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a bound pod may take to run (start delay 1 s, plus the watch).
const RUNNING_TIMEOUT: Duration = Duration::from_secs(30);
/// Longer than one renewal period (10 s).
const RENEW_WAIT: Duration = Duration::from_secs(12);

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ok(cluster: &UpCluster, args: &[&str]) -> String {
    let output = cluster.kubectl(args);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    text(&output)
}

fn json(cluster: &UpCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(cluster, &all)).expect("kubectl -o json prints JSON")
}

/// Polls `check` until it returns Some, or fails after `timeout` with `what`.
fn eventually<T>(timeout: Duration, what: &str, cluster: &UpCluster, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn renew_times(cluster: &UpCluster) -> Vec<String> {
    let leases = json(cluster, &["get", "leases", "-n", "kube-node-lease"]);
    let mut times: Vec<(String, String)> = leases["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                l["spec"]["renewTime"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    times.sort();
    assert_eq!(times.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["hollow-1", "hollow-2", "hollow-3"]);
    times.into_iter().map(|(_, t)| t).collect()
}

fn pod_manifest(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  containers:\n  - name: app\n    image: nginx:1.25\n"
    )
}

fn wait_running(cluster: &UpCluster, name: &str) -> Value {
    eventually(RUNNING_TIMEOUT, &format!("pod {name} Running"), cluster, || {
        let pod = json(cluster, &["get", "pod", name]);
        (pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()).then_some(pod)
    })
}

fn in_cidr_24(ip: &str, cidr: &str) -> bool {
    let prefix = cidr.trim_end_matches("0/24");
    ip.starts_with(prefix) && ip != cidr.trim_end_matches("/24")
}

#[test]
fn hollow_nodes_register_renew_run_pods_finish_deletions_and_stop_when_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start_with(dir.path(), Backend::Embedded, &["--agents", "3", "--runtime", "simulated"]);

    // Three Ready nodes, with kubectl's columns.
    let table = eventually(READY_TIMEOUT, "3 Ready nodes", &cluster, || {
        let table = ok(&cluster, &["get", "nodes"]);
        (table.lines().filter(|l| l.split_whitespace().nth(1) == Some("Ready")).count() == 3).then_some(table)
    });
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    for (line, name) in lines.zip(["hollow-1", "hollow-2", "hollow-3"]) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns.len(), 5, "{line}");
        assert_eq!((columns[0], columns[1], columns[2], columns[4]), (name, "Ready", "<none>", "v1.33.0"), "{line}");
    }
    let node = json(&cluster, &["get", "node", "hollow-1"]);
    let conditions: Vec<(&str, &str, &str)> = node["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (c["type"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        conditions,
        [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
            ("Ready", "True", "KubeletReady"),
        ]
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "hollow-1");
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.33.0");

    // Leases: holder, duration, owner, and renewals every 10 s.
    let lease = json(&cluster, &["get", "lease", "-n", "kube-node-lease", "hollow-1"]);
    assert_eq!(lease["spec"]["holderIdentity"], "hollow-1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], node["metadata"]["uid"]);
    let before = renew_times(&cluster);
    std::thread::sleep(RENEW_WAIT);
    let after = renew_times(&cluster);
    for (old, new) in before.iter().zip(&after) {
        assert!(new > old, "a Lease was not renewed in {RENEW_WAIT:?}: {old} -> {new}");
    }

    // The node IPAM controller gives every node its own /24 of 10.244.0.0/16.
    let cidrs: Vec<String> = ["hollow-1", "hollow-2", "hollow-3"]
        .iter()
        .map(|name| {
            eventually(READY_TIMEOUT, &format!("{name} has a podCIDR"), &cluster, || {
                json(&cluster, &["get", "node", name])["spec"]["podCIDR"].as_str().map(str::to_string)
            })
        })
        .collect();
    let mut distinct = cidrs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{cidrs:?}");
    assert!(cidrs.iter().all(|c| c.starts_with("10.244.") && c.ends_with(".0/24")), "{cidrs:?}");
    let cidr = cidrs[1].clone();

    // A pod bound to hollow-2 runs with an IP from that CIDR.
    let created = cluster.kubectl_stdin(&["create", "-f", "-"], &pod_manifest("web", "hollow-2"));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let pod = wait_running(&cluster, "web");
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    assert!(in_cidr_24(&ip, &cidr), "{ip} is not in hollow-2's podCIDR {cidr}");
    assert_eq!(pod["status"]["hostIP"], node_ip(&cluster, "hollow-2"));
    let kinds: Vec<(&str, &str)> = pod["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| (c["type"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "True")
        ]
    );
    assert!(
        pod["status"]["conditions"][2].get("reason").is_none(),
        "a True Ready keeps no stale reason: {}",
        pod["status"]
    );
    assert!(pod["status"]["startTime"].as_str().is_some_and(|t| t.ends_with('Z') && !t.contains('.')));
    let container = &pod["status"]["containerStatuses"][0];
    assert_eq!((container["ready"].as_bool(), container["started"].as_bool()), (Some(true), Some(true)));
    assert!(container["containerID"].as_str().is_some_and(|id| id.starts_with("simulated://")));
    let wide = ok(&cluster, &["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    );
    let row: Vec<&str> = wide.lines().nth(1).expect("a row").split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[2], row[3], row[5], row[6]),
        ("web", "1/1", "Running", "0", ip.as_str(), "hollow-2"),
        "{wide}"
    );

    // kubectl delete (grace 30 s) finishes because the agent stops the pod and deletes it.
    let started = Instant::now();
    let deleted = cluster.kubectl(&["delete", "pod", "web", "--timeout=25s"]);
    assert!(deleted.status.success(), "{}\n{}", String::from_utf8_lossy(&deleted.stderr), cluster.logs());
    assert!(started.elapsed() < Duration::from_secs(20), "the deletion took {:?}", started.elapsed());
    let gone = cluster.kubectl(&["get", "pod", "web"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "{}", text(&gone));

    // Killing the agent stops the renewals.
    let agent = cluster.agent_pid().expect("keel up wrote agent.pid");
    common::send_signal(agent, "KILL");
    std::thread::sleep(Duration::from_millis(500));
    let frozen = renew_times(&cluster);
    std::thread::sleep(RENEW_WAIT);
    assert_eq!(renew_times(&cluster), frozen, "Leases renewed after the agent was killed");
}

fn node_ip(cluster: &UpCluster, node: &str) -> Value {
    let node = json(cluster, &["get", "node", node]);
    node["status"]["addresses"][0]["address"].clone()
}
