//! kubectl conveniences for the control-plane suites: run-and-check, JSON output, and a
//! bounded poll.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::control_plane::UpCluster;

/// kubectl `args`; its stdout, failing the test (with the cluster's logs) if kubectl fails.
pub fn ok(cluster: &UpCluster, args: &[&str]) -> String {
    let output = cluster.kubectl(args);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// kubectl `args -o json`, parsed.
pub fn json(cluster: &UpCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(cluster, &all)).expect("kubectl -o json prints JSON")
}

/// kubectl with `input` on stdin (`apply -f -`), failing the test if kubectl fails.
pub fn ok_stdin(cluster: &UpCluster, args: &[&str], input: &str) -> String {
    let output = cluster.kubectl_stdin(args, input);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` every 200 ms until it returns Some, failing the test with `what` and the
/// cluster's logs after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, cluster: &UpCluster, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `items` of a list.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Waits for `count` Ready nodes.
pub fn wait_nodes_ready(cluster: &UpCluster, count: usize) {
    eventually(Duration::from_secs(60), &format!("{count} Ready nodes"), cluster, || {
        let nodes = json(cluster, &["get", "nodes"]);
        let ready = items(&nodes)
            .iter()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .count();
        (ready == count).then_some(())
    });
}
