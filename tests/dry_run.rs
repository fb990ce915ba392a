//! `--dry-run=server` with the real kubectl writes nothing: after every dry-run command the
//! store (every key with its value and revisions, read with the real etcdctl, but for the
//! leases, fences and events the control plane renews on its own) is exactly as it was, and kubectl prints what it prints against Kubernetes. `kubectl diff` shows a change and
//! makes none; a dry-run Service claims no cluster IP. On embedded stores and on real etcd.

mod common;

use std::process::Output;

use common::control_plane::{Backend, UpCluster};
use serde_json::Value;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: nginx:1.25
"#;

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n";

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  nodeName: node-1
  containers: [{name: main, image: busybox}]
"#;

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn manifest(cluster: &UpCluster, name: &str, body: &str) -> String {
    let path = cluster.dir.join(name);
    std::fs::write(&path, body).expect("write manifest");
    path.to_string_lossy().into_owned()
}

/// Keys the control plane rewrites on its own while the test runs: leader election renewals,
/// the fences they move, and events. Everything else must hold still.
const BACKGROUND: [&str; 3] = ["/registry/leases/", "/registry/events/", "/registry/keel.dev/fences/"];

/// The store as etcdctl sees it, minus the background keys: every key with its value and
/// revisions (a write to any of them changes its mod_revision).
fn store_state(cluster: &UpCluster) -> Vec<Value> {
    let out = ok(cluster.etcdctl(&["get", "", "--from-key", "-w", "json"]), "etcdctl get --from-key");
    let state: Value = serde_json::from_str(&out).expect("etcdctl prints JSON");
    let kvs = state["kvs"].as_array().cloned().unwrap_or_default();
    kvs.into_iter().filter(|kv| !BACKGROUND.iter().any(|prefix| decoded_key(kv).starts_with(prefix))).collect()
}

/// etcdctl's JSON carries keys in base64 (as k8s-openapi's ByteString does).
fn decoded_key(kv: &Value) -> String {
    let key: k8s_openapi::ByteString = serde_json::from_value(kv["key"].clone()).expect("a base64 key");
    String::from_utf8_lossy(&key.0).into_owned()
}

/// Waits until the controllers are done with what the test created (nothing outside the
/// background keys changes for two seconds).
fn settle(cluster: &UpCluster) {
    let mut last = store_state(cluster);
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let now = store_state(cluster);
        if now == last {
            return;
        }
        last = now;
    }
    panic!("the store did not settle within a minute");
}

/// Runs a dry-run kubectl command; it must succeed, print `expected`, and leave the store as
/// it was.
fn dry(cluster: &UpCluster, args: &[&str], expected: &str) {
    let before = store_state(cluster);
    let printed = ok(cluster.kubectl(args), &args.join(" "));
    assert!(printed.contains(expected), "`kubectl {}` printed {printed:?}, not {expected:?}", args.join(" "));
    let after = store_state(cluster);
    assert!(before == after, "`kubectl {}` changed the store's contents", args.join(" "));
}

fn get(cluster: &UpCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(cluster.kubectl(&all), &args.join(" "))).expect("kubectl -o json prints JSON")
}

fn run(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    // node-1 never reports status; the node lifecycle controller leaves it alone for the test.
    let quiet_node = ["--master-arg=--node-startup-grace-period=1h", "--master-arg=--node-monitor-grace-period=1h"];
    let cluster = UpCluster::start_with(dir.path(), backend, &quiet_node);
    let web = manifest(&cluster, "web.yaml", DEPLOYMENT);
    ok(cluster.kubectl(&["apply", "-f", &web]), "apply web");
    ok(cluster.kubectl(&["create", "-f", &manifest(&cluster, "node.yaml", NODE)]), "create node");
    ok(cluster.kubectl(&["create", "-f", &manifest(&cluster, "pod.yaml", POD)]), "create pod");
    ok(cluster.kubectl(&["create", "namespace", "team"]), "create namespace");
    ok(cluster.kubectl(&["create", "configmap", "settings", "--from-literal=mode=fast"]), "create configmap");
    let changed = manifest(&cluster, "web-changed.yaml", &DEPLOYMENT.replace("nginx:1.25", "nginx:1.26"));
    let new_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\ndata: {a: b}\n";
    let new_map = manifest(&cluster, "fresh.yaml", new_map);

    settle(&cluster);

    let server = "--dry-run=server";
    dry(&cluster, &["delete", "deployment", "web", server], "deployment.apps \"web\" deleted (server dry run)");
    dry(&cluster, &["delete", "pod", "box", server], "pod \"box\" deleted (server dry run)");
    dry(&cluster, &["delete", "namespace", "team", server], "namespace \"team\" deleted (server dry run)");
    dry(&cluster, &["apply", "-f", &changed, server], "deployment.apps/web configured (server dry run)");
    dry(
        &cluster,
        &["apply", "--server-side", "--force-conflicts", "-f", &changed, server],
        "deployment.apps/web serverside-applied (server dry run)",
    );
    dry(&cluster, &["create", "-f", &new_map, server], "configmap/fresh created (server dry run)");
    // kubectl 1.33's patch sets its printer's operation after the dry-run suffix and so
    // prints no "(server dry run)", whatever the server.
    dry(
        &cluster,
        &["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":4}}"#, server],
        "deployment.apps/web patched",
    );
    dry(
        &cluster,
        &["patch", "configmap", "settings", "--type", "json", "-p", r#"[{"op":"remove","path":"/data"}]"#, server],
        "configmap/settings patched",
    );
    dry(&cluster, &["replace", "-f", &changed, server], "deployment.apps/web replaced (server dry run)");
    dry(
        &cluster,
        &["scale", "deployment", "web", "--replicas=5", server],
        "deployment.apps/web scaled (server dry run)",
    );
    dry(
        &cluster,
        &["label", "deployment", "web", "tier=front", server],
        "deployment.apps/web labeled (server dry run)",
    );
    dry(&cluster, &["annotate", "pod", "box", "note=x", server], "pod/box annotated (server dry run)");
    dry(
        &cluster,
        &["patch", "configmap", "settings", "--type", "merge", "-p", r#"{"data":{"mode":"slow"}}"#, server],
        "configmap/settings patched",
    );
    // A delete of the whole collection (kubectl deletes one by one, so this goes raw).
    dry(&cluster, &["delete", "--raw", "/api/v1/namespaces/default/configmaps?dryRun=All"], "ConfigMapList");
    dry(&cluster, &["delete", "--raw", "/api/v1/namespaces/default/pods?dryRun=All"], "\"box\"");

    // A dry-run answer is the object as it would be, with the server's defaults and checks.
    let created = get(&cluster, &["create", "-f", &new_map, server]);
    assert!(created["metadata"]["uid"].is_string(), "a dry-run create shows the server's fields: {created}");
    let patched = get(&cluster, &["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":7}}"#, server]);
    assert_eq!(patched["spec"]["replicas"], 7, "the answer is the patched object: {patched}");
    assert_eq!(patched["metadata"]["generation"], 2, "as it would be stored: {patched}");
    let invalid = cluster.kubectl(&["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":-1}}"#, server]);
    assert!(
        text(&invalid).contains("spec.replicas: Invalid value: -1"),
        "a dry run still validates: {}",
        text(&invalid)
    );

    // A dry-run Service shows the cluster IP it would get and claims none.
    let before = store_state(&cluster);
    let service = get(&cluster, &["create", "service", "clusterip", "dry", "--tcp=80", server]);
    let ip = service["spec"]["clusterIP"].as_str().expect("a dry-run service shows a cluster IP");
    assert!(ip.starts_with("10."), "{service}");
    assert_eq!(store_state(&cluster), before, "a dry-run service claimed something");
    let missing = cluster.kubectl(&["get", "service", "dry"]);
    assert!(text(&missing).contains("NotFound"), "{}", text(&missing));

    // diff compares against a dry-run apply and changes nothing.
    let before = store_state(&cluster);
    let diff = cluster.kubectl(&["diff", "-f", &changed]);
    assert_eq!(diff.status.code(), Some(1), "kubectl diff exits 1 when objects differ: {}", text(&diff));
    let shown = text(&diff);
    let changed_line = |sign: char, text: &str| shown.lines().any(|l| l.starts_with(sign) && l.contains(text));
    assert!(changed_line('-', "image: nginx:1.25") && changed_line('+', "image: nginx:1.26"), "{shown}");
    assert!(changed_line('-', "generation: 1") && changed_line('+', "generation: 2"), "{shown}");
    assert_eq!(store_state(&cluster), before, "kubectl diff changed the store");

    // The live objects are untouched, and nothing lingers marked for deletion.
    let live = get(&cluster, &["get", "deployment", "web"]);
    assert_eq!(live["spec"]["replicas"], 1);
    assert_eq!(live["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25");
    assert!(get(&cluster, &["get", "pod", "box"])["metadata"].get("deletionTimestamp").is_none());
    assert_eq!(get(&cluster, &["get", "namespace", "team"])["status"]["phase"], "Active");

    // An unknown dryRun value is refused before anything happens.
    let raw = "/api/v1/namespaces/default/configmaps?dryRun=Maybe";
    let refused = cluster.kubectl(&["create", "--raw", raw, "-f", &new_map]);
    assert!(!refused.status.success(), "dryRun=Maybe must be refused: {}", text(&refused));
    assert!(get(&cluster, &["get", "configmaps"])["items"].as_array().is_some_and(|items| items.len() == 1));

    // The same commands without --dry-run do change the store (the comparison can fail).
    let before = store_state(&cluster);
    ok(cluster.kubectl(&["apply", "-f", &changed]), "real apply");
    let after = store_state(&cluster);
    assert!(after != before, "a real apply changes the contents");
}

#[test]
fn server_dry_runs_write_nothing_on_embedded_stores() {
    run(Backend::Embedded);
}

#[test]
fn server_dry_runs_write_nothing_on_etcd() {
    run(Backend::Etcd);
}
