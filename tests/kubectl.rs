//! The real installed `kubectl` against a three-master `keel up` cluster: the everyday
//! commands, watches, bad input, and cross-master consistency. The same suite runs with the
//! API servers on embedded store replicas and on a real etcd 3.4 (`--store-endpoints`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::control_plane::{Backend, UpCluster};
use common::require_program;
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
        ports: [{containerPort: 80}]
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels: {kubernetes.io/hostname: node-1}
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: box
  labels: {app: box}
spec:
  nodeName: node-1
  containers:
  - name: main
    image: busybox
    command: [sleep, "3600"]
"#;

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fails(output: Output, what: &str) -> String {
    assert!(!output.status.success(), "{what} should have failed: {}", text(&output));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(cluster: &UpCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = ok(cluster.kubectl(&all), &args.join(" "));
    serde_json::from_str(&out).expect("kubectl -o json prints JSON")
}

fn write_manifest(cluster: &UpCluster, name: &str, body: &str) -> String {
    let path = cluster.dir.join(name);
    std::fs::write(&path, body).expect("write manifest");
    path.to_string_lossy().into_owned()
}

fn discovery_and_info(cluster: &UpCluster) {
    let version: Value =
        serde_json::from_str(&ok(cluster.kubectl(&["version", "-o", "json"]), "version")).expect("json");
    assert_eq!(version["serverVersion"]["minor"], "33", "{version}");
    let resources = ok(cluster.kubectl(&["api-resources"]), "api-resources");
    for expected in ["deployments", "apps/v1", "pods", "endpointslices", "leases", "configmaps"] {
        assert!(resources.contains(expected), "api-resources lacks {expected}: {resources}");
    }
    let info = ok(cluster.kubectl(&["cluster-info"]), "cluster-info");
    assert!(info.contains("is running at"), "{info}");
    let health = ok(cluster.kubectl(&["get", "--raw", "/healthz"]), "get --raw /healthz");
    assert_eq!(health, "ok");
    let namespaces = ok(cluster.kubectl(&["get", "namespaces"]), "get namespaces");
    assert!(namespaces.contains("kube-system") && namespaces.contains("STATUS"), "{namespaces}");
}

fn create_and_get(cluster: &UpCluster) {
    let node = write_manifest(cluster, "node.yaml", NODE);
    assert!(ok(cluster.kubectl(&["create", "-f", &node]), "create node").contains("node/node-1 created"));
    let nodes = ok(cluster.kubectl(&["get", "nodes"]), "get nodes");
    assert!(nodes.contains("node-1") && nodes.contains("ROLES"), "{nodes}");
    let deployment = write_manifest(cluster, "deployment.yaml", DEPLOYMENT);
    let created = ok(cluster.kubectl(&["create", "-f", &deployment]), "create deployment");
    assert!(created.contains("deployment.apps/web created"), "{created}");
    let again = fails(cluster.kubectl(&["create", "-f", &deployment]), "second create");
    assert!(again.contains("AlreadyExists") && again.contains("already exists"), "{again}");
    let table = ok(cluster.kubectl(&["get", "deployments"]), "get deployments");
    assert!(table.contains("UP-TO-DATE") && table.contains("web"), "{table}");
    let pod = write_manifest(cluster, "pod.yaml", POD);
    ok(cluster.kubectl(&["create", "-f", &pod]), "create pod");
    let wide = ok(cluster.kubectl(&["get", "pods", "-A", "-o", "wide"]), "get pods -A -o wide");
    assert!(wide.contains("NAMESPACE") && wide.contains("NODE") && wide.contains("node-1"), "{wide}");
    let all = ok(cluster.kubectl(&["get", "all"]), "get all");
    assert!(all.contains("deployment.apps/web") && all.contains("pod/box"), "{all}");
    let yaml = ok(cluster.kubectl(&["get", "deployment", "web", "-o", "yaml"]), "-o yaml");
    assert!(yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:"), "{yaml}");
    let name = ok(cluster.kubectl(&["get", "deployments", "-o", "name"]), "-o name");
    assert_eq!(name.trim(), "deployment.apps/web");
    let object = json(cluster, &["get", "deployment", "web"]);
    assert_eq!(object["metadata"]["generation"], 1);
    assert_eq!(object["spec"]["strategy"]["type"], "RollingUpdate", "defaults applied");
    let labels = ok(cluster.kubectl(&["get", "pods", "--show-labels"]), "--show-labels");
    assert!(labels.contains("app=box"), "{labels}");
    let selected = ok(cluster.kubectl(&["get", "pods", "-l", "app=box", "-o", "name"]), "-l");
    assert_eq!(selected.trim(), "pod/box");
    let none = ok(cluster.kubectl(&["get", "pods", "-l", "app=nope", "-o", "name"]), "-l no match");
    assert_eq!(none.trim(), "");
    let by_field =
        ok(cluster.kubectl(&["get", "pods", "--field-selector", "spec.nodeName=node-1", "-o", "name"]), "fs");
    assert_eq!(by_field.trim(), "pod/box");
    let described = ok(cluster.kubectl(&["describe", "pod", "box"]), "describe pod");
    assert!(described.contains("Name:") && described.contains("box") && described.contains("busybox"), "{described}");
    let described = ok(cluster.kubectl(&["describe", "deployment", "web"]), "describe deployment");
    assert!(described.contains("nginx:1.25"), "{described}");
}

/// A ConfigMap manifest, written to a file for `kubectl apply -f` (sent as JSON).
fn configmap(cluster: &UpCluster, name: &str, data: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    let manifest =
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data});
    write_manifest(cluster, &format!("cm-{name}.json"), &manifest.to_string())
}

/// kubectl's generators build objects with client-go's typed clients, which send protobuf.
fn generators(cluster: &UpCluster) {
    let created =
        ok(cluster.kubectl(&["create", "configmap", "gen", "--from-literal=a=1", "--from-literal=b=two"]), "cm");
    assert!(created.contains("configmap/gen created"), "{created}");
    let map = json(cluster, &["get", "configmap", "gen"]);
    assert_eq!(map["data"], serde_json::json!({"a": "1", "b": "two"}));
    assert!(map["metadata"]["creationTimestamp"].is_string(), "the server stamps it: {map}");

    ok(cluster.kubectl(&["create", "secret", "generic", "gen", "--from-literal=p=q"]), "secret");
    let secret = json(cluster, &["get", "secret", "gen"]);
    assert_eq!(secret["data"]["p"], "cQ==", "{secret}");
    assert_eq!(secret["type"], "Opaque");

    ok(cluster.kubectl(&["create", "namespace", "gen"]), "namespace");
    assert_eq!(json(cluster, &["get", "namespace", "gen"])["status"]["phase"], "Active");
    ok(cluster.kubectl(&["create", "serviceaccount", "gen", "-n", "gen"]), "serviceaccount");
    assert_eq!(json(cluster, &["get", "serviceaccount", "gen", "-n", "gen"])["metadata"]["namespace"], "gen");

    ok(cluster.kubectl(&["create", "service", "clusterip", "gen", "--tcp=80:8080"]), "service");
    let service = json(cluster, &["get", "service", "gen"]);
    assert_eq!(service["spec"]["ports"][0]["port"], 80, "{service}");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080, "{service}");
    assert_eq!(service["spec"]["selector"]["app"], "gen");

    let args = ["create", "deployment", "gen", "--image=busybox", "--replicas=0", "--port=80", "--", "sleep", "60"];
    ok(cluster.kubectl(&args), "deployment");
    let deployment = json(cluster, &["get", "deployment", "gen"]);
    assert_eq!(deployment["spec"]["replicas"], 0, "an explicit zero is kept: {deployment}");
    assert_eq!(container(&deployment)["image"], "busybox");
    assert_eq!(container(&deployment)["command"], serde_json::json!(["sleep", "60"]));
    assert_eq!(container(&deployment)["ports"][0]["containerPort"], 80);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"]["app"], "gen");
}

fn container(object: &Value) -> &Value {
    &object["spec"]["template"]["spec"]["containers"][0]
}

fn apply_and_patch(cluster: &UpCluster) {
    let first = DEPLOYMENT.replace("name: web", "name: api").replace("{app: web}", "{app: api}");
    let path = write_manifest(cluster, "api.yaml", &first);
    assert!(ok(cluster.kubectl(&["apply", "-f", &path]), "apply 1").contains("deployment.apps/api created"));
    let second = first.replace("nginx:1.25", "nginx:1.26").replace("replicas: 1", "replicas: 2");
    std::fs::write(&path, second).expect("rewrite");
    assert!(ok(cluster.kubectl(&["apply", "-f", &path]), "apply 2").contains("deployment.apps/api configured"));
    let api = json(cluster, &["get", "deployment", "api"]);
    assert_eq!(container(&api)["image"], "nginx:1.26");
    assert_eq!(container(&api)["ports"][0]["containerPort"], 80, "container ports survive apply: {api}");
    assert_eq!(api["spec"]["replicas"], 2);
    assert_eq!(api["metadata"]["generation"], 2, "a spec change bumps generation");

    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";
    let path = write_manifest(cluster, "cm.yaml", config);
    assert!(ok(cluster.kubectl(&["apply", "--server-side", "-f", &path]), "ssa 1").contains("serverside-applied"));
    std::fs::write(&path, config.replace("fast", "safe")).expect("rewrite");
    ok(cluster.kubectl(&["apply", "--server-side", "-f", &path]), "ssa 2");
    let settings = json(cluster, &["get", "configmap", "settings", "--show-managed-fields"]);
    assert_eq!(settings["data"]["mode"], "safe");
    assert!(settings["metadata"]["managedFields"].as_array().is_some_and(|m| !m.is_empty()));

    ok(
        cluster.kubectl(&["patch", "deployment", "web", "--type", "merge", "-p", r#"{"spec":{"replicas":2}}"#]),
        "merge",
    );
    let ops = r#"[{"op":"add","path":"/metadata/labels/tier","value":"front"}]"#;
    ok(cluster.kubectl(&["patch", "deployment", "web", "--type", "json", "-p", ops]), "json patch");
    let strategic = r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"nginx:1.27"}]}}}}"#;
    ok(cluster.kubectl(&["patch", "deployment", "web", "--type", "strategic", "-p", strategic]), "strategic");
    let web = json(cluster, &["get", "deployment", "web"]);
    assert_eq!(web["spec"]["replicas"], 2);
    assert_eq!(web["metadata"]["labels"]["tier"], "front");
    assert_eq!(container(&web)["image"], "nginx:1.27");
    assert_eq!(container(&web)["ports"][0]["containerPort"], 80, "strategic patch keeps ports: {web}");

    ok(cluster.kubectl(&["label", "deployment", "web", "team=blue"]), "label");
    ok(cluster.kubectl(&["annotate", "deployment", "web", "note=hello"]), "annotate");
    let web = json(cluster, &["get", "deployment", "web"]);
    assert_eq!(web["metadata"]["labels"]["team"], "blue");
    assert_eq!(web["metadata"]["annotations"]["note"], "hello");
    assert!(ok(cluster.kubectl(&["scale", "deployment", "web", "--replicas=3"]), "scale").contains("scaled"));
    let web = json(cluster, &["get", "deployment", "web"]);
    assert_eq!(web["spec"]["replicas"], 3);
}

/// `kubectl get -w` sees a configmap's life: ADDED, MODIFIED, DELETED.
fn watch_events(cluster: &UpCluster) {
    let mut watcher = Command::new(require_program("kubectl"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg("--cache-dir")
        .arg(cluster.dir.join("kube-cache-w"))
        .args(["get", "configmaps", "-w", "--output-watch-events", "-l", "watched=yes"])
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
    std::thread::sleep(Duration::from_millis(1500));
    let w1 = configmap(cluster, "w1", &[("a", "1")]);
    ok(cluster.kubectl(&["create", "-f", &w1]), "create w1");
    ok(cluster.kubectl(&["label", "configmap", "w1", "watched=yes"]), "label w1");
    ok(cluster.kubectl(&["annotate", "configmap", "w1", "x=y"]), "annotate w1");
    ok(cluster.kubectl(&["delete", "configmap", "w1"]), "delete w1");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l: &String| l.starts_with("DELETED")) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let kinds: Vec<&str> = seen.iter().filter_map(|l| l.split_whitespace().next()).filter(|k| *k != "EVENT").collect();
    // Labelling makes w1 match the selector (ADDED), the annotation modifies it, then it goes.
    assert_eq!(kinds, vec!["ADDED", "MODIFIED", "DELETED"], "watch output: {seen:?}");
}

fn cross_master_and_store(cluster: &UpCluster) {
    let manifest = configmap(cluster, "from-three", &[("k", "v3")]);
    ok(cluster.kubectl_on(2, &["create", "-f", &manifest]), "create on master 3");
    let read = ok(cluster.kubectl_on(1, &["get", "configmap", "from-three", "-o", "jsonpath={.data.k}"]), "get on 2");
    assert_eq!(read, "v3");
    let stored =
        ok(cluster.etcdctl(&["get", "/registry/deployments/default/web", "--print-value-only"]), "etcdctl get");
    let object: Value = serde_json::from_str(stored.trim()).expect("the store holds JSON");
    assert_eq!(object["kind"], "Deployment");
    assert_eq!(object["metadata"]["name"], "web");
}

fn deletion(cluster: &UpCluster) {
    let ghost = POD.replace("name: box", "name: ghost").replace("nodeName: node-1", "nodeName: gone-node");
    let path = write_manifest(cluster, "ghost.yaml", &ghost);
    ok(cluster.kubectl(&["create", "-f", &path]), "create ghost pod");
    let started = Instant::now();
    let deleted = ok(cluster.kubectl(&["delete", "pod", "ghost", "--grace-period=2"]), "graceful delete");
    assert!(deleted.contains("pod \"ghost\" deleted"), "{deleted}");
    assert!(started.elapsed() >= Duration::from_secs(2), "a grace period was honoured");
    let gone = fails(cluster.kubectl(&["get", "pod", "ghost"]), "get deleted pod");
    assert!(gone.contains("NotFound"), "{gone}");
    assert!(ok(cluster.kubectl(&["delete", "deployment", "api"]), "delete").contains("deleted"));
    let missing = fails(cluster.kubectl(&["delete", "pod", "nope"]), "delete missing");
    assert!(missing.contains("Error from server (NotFound): pods \"nope\" not found"), "{missing}");
}

fn bad_input(cluster: &UpCluster) {
    let invalid = DEPLOYMENT.replace("name: web", "name: broken").replace("        image: nginx:1.25\n", "");
    let path = write_manifest(cluster, "broken.yaml", &invalid);
    let error = fails(cluster.kubectl(&["create", "-f", &path]), "invalid create");
    assert!(
        error.contains("is invalid") && error.contains("spec.template.spec.containers[0].image: Required value"),
        "{error}"
    );
    let unknown = DEPLOYMENT.replace("name: web", "name: odd").replace("  replicas: 1", "  replicas: 1\n  bogus: true");
    let path = write_manifest(cluster, "odd.yaml", &unknown);
    let error = fails(cluster.kubectl(&["create", "-f", &path]), "unknown field");
    assert!(error.contains("strict decoding error") && error.contains("unknown field \"spec.bogus\""), "{error}");
    let mut stale = json(cluster, &["get", "deployment", "web"]);
    ok(cluster.kubectl(&["label", "deployment", "web", "bump=1"]), "bump");
    stale["metadata"]["labels"]["stale"] = Value::from("yes");
    let path = write_manifest(cluster, "stale.json", &stale.to_string());
    let error = fails(cluster.kubectl(&["replace", "-f", &path]), "stale replace");
    assert!(error.contains("Conflict") && error.contains("the object has been modified"), "{error}");
    // Query parameters as kube-apiserver decodes them.
    let bad_limit = fails(cluster.kubectl(&["get", "--raw", "/api/v1/configmaps?limit=abc"]), "limit=abc");
    assert!(bad_limit.contains("strconv.ParseInt: parsing \"abc\": invalid syntax"), "{bad_limit}");
    let raw = "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact";
    let bad_match = fails(cluster.kubectl(&["get", "--raw", raw]), "match without rv");
    assert!(bad_match.contains("resourceVersionMatch is forbidden unless resourceVersion is provided"), "{bad_match}");
    // `watch=True` (the Python client's spelling) is a watch: events, not a list.
    let raw = "/api/v1/namespaces/default/configmaps?watch=True&timeoutSeconds=1";
    let events = ok(cluster.kubectl(&["get", "--raw", raw]), "watch=True");
    assert!(events.lines().all(|line| line.starts_with("{\"type\":\"ADDED\"")), "{events}");
    assert!(!events.is_empty() && !events.contains("ConfigMapList"), "{events}");
    let huge = "x".repeat(4 * 1024 * 1024);
    let path = configmap(cluster, "huge", &[("data", &huge)]);
    let error = fails(cluster.kubectl(&["create", "-f", &path]), "huge");
    assert!(error.contains("Request entity too large") || error.contains("413"), "{error}");
    let anonymous = Command::new(require_program("kubectl"))
        .args(["--kubeconfig", "/dev/null", "--server", &format!("https://127.0.0.1:{}", cluster.api_port(0))])
        .arg("--certificate-authority")
        .arg(cluster.pki("ca.crt"))
        // A credential Keel does not accept (without any, kubectl would prompt for a password).
        .args(["--token", "not-a-keel-credential", "get", "pods"])
        .stdin(Stdio::null())
        .output()
        .expect("anonymous kubectl");
    let error = fails(anonymous, "anonymous get");
    // kubectl words a 401 during discovery as "asked for the client to provide credentials".
    assert!(error.contains("Unauthorized") || error.contains("provide credentials"), "{error}");
}

fn run_suite(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start(dir.path(), backend);
    discovery_and_info(&cluster);
    create_and_get(&cluster);
    apply_and_patch(&cluster);
    generators(&cluster);
    watch_events(&cluster);
    cross_master_and_store(&cluster);
    deletion(&cluster);
    bad_input(&cluster);
}

#[test]
fn kubectl_against_three_masters_on_embedded_stores() {
    run_suite(Backend::Embedded);
}

#[test]
fn kubectl_against_three_masters_on_etcd() {
    run_suite(Backend::Etcd);
}
