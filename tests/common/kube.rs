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

/// An extra `keel agent --runtime simulated` process on the cluster, killed by PID when it is
/// dropped (however the test ends).
pub struct ExtraAgent(pub std::process::Child);

impl ExtraAgent {
    /// Starts one simulated node named `<prefix>1` with `extra` agent flags, logging to
    /// `<log_dir>/<prefix>agent.log`.
    pub fn start(cluster: &UpCluster, log_dir: &std::path::Path, prefix: &str, extra: &[&str]) -> ExtraAgent {
        let log = std::fs::File::create(log_dir.join(format!("{prefix}agent.log"))).expect("agent log");
        let child = std::process::Command::new(super::keel_bin())
            .args(["agent", "--runtime", "simulated", "--nodes", "1", "--name-prefix", prefix])
            .args(["--node-ip-range", "172.30.0.0/16"])
            .args(extra)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the extra agent");
        ExtraAgent(child)
    }

    /// Kills it now (its node stops heartbeating).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ExtraAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The holder identity of `kube-system/<lease>`, read through `master`.
pub fn holder(cluster: &UpCluster, master: usize, lease: &str) -> Option<String> {
    let output = cluster.kubectl_on(master, &["get", "lease", "-n", "kube-system", lease, "-o", "json"]);
    let lease: Value = serde_json::from_slice(&output.stdout).ok()?;
    lease["spec"]["holderIdentity"].as_str().filter(|h| !h.is_empty()).map(str::to_string)
}

/// `master-2_<suffix>` → 1.
pub fn master_index(identity: &str) -> usize {
    let name = identity.split('_').next().unwrap_or_default();
    name.trim_start_matches("master-").parse::<usize>().expect("holder names a master") - 1
}

/// Non-terminating Running pods labelled `app=web`, read through `master` (0 if it fails).
pub fn running_web_pods(cluster: &UpCluster, master: usize) -> usize {
    let output = cluster.kubectl_on(master, &["get", "pods", "-l", "app=web", "-o", "json"]);
    let Ok(list) = serde_json::from_slice::<Value>(&output.stdout) else { return 0 };
    items(&list)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running")
        .count()
}
