//! `/metrics` on every master of `keel up --agents 3 --runtime simulated`, read with the real
//! kubectl (`get --raw /metrics`): etcd's names for the embedded store, Kubernetes' for the API
//! server, the scheduler, the work queues and leader election, and the fence's counter; exactly
//! one master leads each component.

mod common;

use std::time::Duration;

use common::control_plane::{Backend, UpCluster};
use common::kube::{eventually, ok_stdin, wait_nodes_ready};

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: counted}
spec:
  containers: [{name: main, image: busybox}]
";

fn scrape(cluster: &UpCluster, master: usize) -> String {
    let output = cluster.kubectl_on(master, &["get", "--raw", "/metrics"]);
    assert!(output.status.success(), "/metrics on master {master}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[test]
fn every_master_serves_etcd_and_kubernetes_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start_with(dir.path(), Backend::Embedded, &["--agents", "3", "--runtime", "simulated"]);
    wait_nodes_ready(&cluster, 3);
    ok_stdin(&cluster, &["apply", "-f", "-"], POD);
    eventually(Duration::from_secs(60), "a scheduled attempt counted", &cluster, || {
        (0..3)
            .any(|m| sample(&scrape(&cluster, m), "scheduler_schedule_attempts_total{result=\"scheduled\"").is_some())
            .then_some(())
    });

    let mut leading = [0.0, 0.0];
    let mut store_leaders = 0.0;
    for master in 0..3 {
        let listed = cluster.kubectl_on(master, &["get", "pods"]);
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
        let text = scrape(&cluster, master);
        assert_eq!(sample(&text, "etcd_server_has_leader "), Some(1.0), "master {master}");
        assert!(sample(&text, "etcd_server_leader_changes_seen_total ").is_some_and(|v| v >= 1.0), "master {master}");
        assert!(sample(&text, "etcd_mvcc_db_total_size_in_bytes ").is_some_and(|v| v > 0.0), "master {master}");
        assert!(sample(&text, "etcd_debugging_mvcc_current_revision ").is_some_and(|v| v > 1.0), "master {master}");
        store_leaders += sample(&text, "etcd_server_is_leader ").unwrap_or(0.0);
        let list = "apiserver_request_total{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"pods\"";
        assert!(text.contains(list), "master {master}: kubectl's list is not counted");
        assert!(text.contains("apiserver_request_duration_seconds_bucket{"), "master {master}: no latency histogram");
        assert!(text.contains("workqueue_depth{name=\"deployment\"}"), "master {master}: no work queue depth");
        for (i, name) in ["kube-scheduler", "kube-controller-manager"].iter().enumerate() {
            let status = sample(&text, &format!("leader_election_master_status{{name=\"{name}\"}}"));
            assert!(status.is_some(), "master {master}: no leader_election_master_status for {name}");
            leading[i] += status.unwrap_or(0.0);
        }
        assert!(text.trim_end().ends_with("# EOF"), "master {master}: not OpenMetrics text");
    }
    assert_eq!(store_leaders, 1.0, "exactly one store leader");
    assert_eq!(leading, [1.0, 1.0], "exactly one master leads each component");
    let all: String = (0..3).map(|m| scrape(&cluster, m)).collect();
    assert!(
        all.contains("keel_fenced_writes_total{component=\"kube-scheduler\",result=\"accepted\"}"),
        "the scheduler's bind was a fenced write"
    );
}
