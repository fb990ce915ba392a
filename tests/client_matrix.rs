//! The client matrix: the real `kubectl`, the `kube` crate (kube-rs) and the official Python
//! `kubernetes` client (Debian's python3-kubernetes) each list, watch (seeing ADDED, MODIFIED
//! and DELETED in order), create, patch, server-side apply and delete, against a three-master
//! `keel up` on embedded store replicas and on a real etcd 3.4. Each client works under labels
//! of its own, so their watches see only their own objects.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::control_plane::{Backend, UpCluster};
use common::require_program;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// How long a client's watch may take to show its events.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The Python client must finish in this time (its own waits are shorter).
const PYTHON_TIMEOUT: Duration = Duration::from_secs(90);

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write manifest");
    path.to_string_lossy().into_owned()
}

fn configmap_json(name: &str, suite: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"suite": suite}}, "data": {"value": value}})
}

/// kubectl: `get -w` sees what create, patch, apply --server-side and delete do.
fn kubectl_client(cluster: &UpCluster) {
    let suite = "matrix-kubectl";
    let mut watcher = Command::new(require_program("kubectl"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg("--cache-dir")
        .arg(cluster.dir.join("kube-cache-matrix"))
        .args(["get", "configmaps", "-w", "--output-watch-events", "-l", &format!("suite={suite}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watcher.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch is established once kubectl has listed; give it a moment to get there.
    std::thread::sleep(Duration::from_millis(1500));
    let listed = ok(cluster.kubectl(&["get", "configmaps", "-l", &format!("suite={suite}"), "-o", "name"]), "list");
    assert_eq!(listed.trim(), "", "a fresh label lists nothing");
    let one = write(&cluster.dir, "matrix-one.json", &configmap_json("kc-one", suite, "1"));
    ok(cluster.kubectl(&["create", "-f", &one]), "create");
    ok(cluster.kubectl(&["patch", "configmap", "kc-one", "-p", r#"{"data":{"value":"2"}}"#]), "strategic patch");
    let ops = r#"[{"op":"add","path":"/metadata/labels/patched","value":"yes"}]"#;
    ok(cluster.kubectl(&["patch", "configmap", "kc-one", "--type", "json", "-p", ops]), "json patch");
    let two = write(&cluster.dir, "matrix-two.json", &configmap_json("kc-two", suite, "applied"));
    let applied = ok(cluster.kubectl(&["apply", "--server-side", "--field-manager=matrix", "-f", &two]), "ssa");
    assert!(applied.contains("configmap/kc-two serverside-applied"), "{applied}");
    ok(cluster.kubectl(&["delete", "configmap", "kc-one"]), "delete");
    let mut seen = Vec::new();
    let deadline = Instant::now() + WATCH_TIMEOUT;
    while !seen.iter().any(|line: &String| line.starts_with("DELETED")) && Instant::now() < deadline {
        // Lines are "EVENT NAME DATA AGE" (a header first): the event and the name count.
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let words: Vec<&str> = line.split_whitespace().take(2).collect();
            if words.first() != Some(&"EVENT") {
                seen.push(words.join(" "));
            }
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let expected = ["ADDED kc-one", "MODIFIED kc-one", "MODIFIED kc-one", "ADDED kc-two", "DELETED kc-one"];
    assert_eq!(seen, expected, "kubectl get -w");
    ok(cluster.kubectl(&["delete", "configmap", "kc-two"]), "delete kc-two");
}

async fn kube_rs_client(cluster: &UpCluster) {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("read the kubeconfig keel up wrote");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config from the kubeconfig");
    let client = kube::Client::try_from(config).expect("client");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let suite = "matrix-kube";
    let configmap = |name: &str, value: &str| -> ConfigMap {
        let mut map: ConfigMap = serde_json::from_value(configmap_json(name, suite, value)).expect("configmap");
        map.data = Some(BTreeMap::from([("value".to_string(), value.to_string())]));
        map
    };

    let listed = maps.list(&ListParams::default().labels(&format!("suite={suite}"))).await.expect("list");
    assert!(listed.items.is_empty());
    let from = listed.metadata.resource_version.clone().expect("a list has a resourceVersion");

    let created = maps.create(&PostParams::default(), &configmap("kr-one", "1")).await.expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    match maps.create(&PostParams::default(), &configmap("kr-one", "1")).await {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("a duplicate create must be 409 AlreadyExists, got {other:?}"),
    }
    let merge = json!({ "data": { "value": "2" } });
    let patched = maps.patch("kr-one", &PatchParams::default(), &Patch::Merge(&merge)).await.expect("merge patch");
    assert_eq!(patched.data.as_ref().and_then(|d| d.get("value")).map(String::as_str), Some("2"));
    let strategic = json!({ "metadata": { "labels": { "patched": "yes" } } });
    let patched = maps.patch("kr-one", &PatchParams::default(), &Patch::Strategic(&strategic)).await.expect("smp");
    let labels = patched.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("patched").map(String::as_str), Some("yes"));
    let applied = maps
        .patch("kr-two", &PatchParams::apply("keel-test"), &Patch::Apply(&configmap("kr-two", "applied")))
        .await
        .expect("server-side apply creates");
    assert_eq!(applied.data.as_ref().and_then(|d| d.get("value")).map(String::as_str), Some("applied"));
    let deleted = maps.delete("kr-one", &DeleteParams::default()).await.expect("delete");
    assert!(deleted.is_right(), "a ConfigMap's delete answers a Status, as in Kubernetes: {deleted:?}");

    // A watch from the list's resourceVersion sees exactly what happened since, in order.
    let params = WatchParams::default().labels(&format!("suite={suite}")).timeout(20);
    let mut events = maps.watch(&params, &from).await.expect("watch").boxed();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let next = tokio::time::timeout(Duration::from_secs(15), events.try_next()).await;
        let name = |map: ConfigMap| map.metadata.name.unwrap_or_default();
        match next.expect("watch event within 15 s").expect("watch stream") {
            Some(WatchEvent::Added(map)) => seen.push(format!("ADDED {}", name(map))),
            Some(WatchEvent::Modified(map)) => seen.push(format!("MODIFIED {}", name(map))),
            Some(WatchEvent::Deleted(map)) => seen.push(format!("DELETED {}", name(map))),
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Error(error)) => panic!("watch error: {error:?}"),
            None => break,
        }
    }
    assert_eq!(seen, ["ADDED kr-one", "MODIFIED kr-one", "MODIFIED kr-one", "ADDED kr-two", "DELETED kr-one"]);
    maps.delete("kr-two", &DeleteParams::default()).await.expect("delete kr-two");

    // Typed objects of another group.
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments.list(&ListParams::default()).await.expect("list deployments");
}

/// The Python client's own script does its steps and checks (tests/clients/python_client.py).
fn python_client(cluster: &UpCluster) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py");
    let server = format!("https://127.0.0.1:{}", cluster.api_port(1));
    // Debian's python3-kubernetes is installed for Debian's own interpreter.
    let python = Path::new("/usr/bin/python3");
    assert!(python.is_file(), "/usr/bin/python3 is missing: run scripts/setup.sh");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(cluster.kubeconfig())
        .arg(&server)
        .arg("matrix")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let deadline = Instant::now() + PYTHON_TIMEOUT;
    loop {
        match child.try_wait().expect("python status") {
            Some(_) => break,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("python output");
                panic!("the Python client did not finish in {PYTHON_TIMEOUT:?}: {}", text(&output));
            }
        }
    }
    let output = child.wait_with_output().expect("python output");
    assert!(output.status.success(), "the Python client failed: {}", text(&output));
    assert!(text(&output).contains("python client: ok"), "{}", text(&output));
}

async fn run_matrix(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start(dir.path(), backend);
    kubectl_client(&cluster);
    kube_rs_client(&cluster).await;
    python_client(&cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_against_embedded_stores() {
    run_matrix(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_against_etcd() {
    run_matrix(Backend::Etcd).await;
}
