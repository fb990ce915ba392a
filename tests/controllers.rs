//! The controllers end to end, with the real kubectl on `keel up --agents 3 --runtime
//! simulated` (and the same on a real etcd 3.4 through `--store-endpoints`): a Deployment
//! becomes scheduled, running pods; rolling updates stay within maxSurge and maxUnavailable;
//! `kubectl rollout history|undo|restart|pause|resume` and `scale` work unmodified; a Service's
//! Endpoints and EndpointSlices list exactly the ready pods; deleting the Deployment removes
//! its ReplicaSets and pods; `kubectl delete ns` empties the namespace (Terminating meanwhile,
//! new content refused), removes it, and frees its services' node ports.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::control_plane::{Backend, UpCluster};
use common::kube::{eventually, items, json, ok, ok_stdin, wait_nodes_ready};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);
const REPLICAS: usize = 4;
const MAX_SURGE: usize = 1;
const MAX_UNAVAILABLE: usize = 1;

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, labels: {{app: web}}}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: {MAX_SURGE}, maxUnavailable: {MAX_UNAVAILABLE}}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: nginx, image: '{image}', ports: [{{containerPort: 80}}]}}]
"
    )
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
";

fn rollout_status(cluster: &UpCluster) {
    let out = ok(cluster, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

fn pods(cluster: &UpCluster) -> Vec<Value> {
    items(&json(cluster, &["get", "pods", "-l", "app=web"]))
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn terminating(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

fn image(cluster: &UpCluster) -> String {
    json(cluster, &["get", "deploy", "web"])["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until exactly `count` non-terminating pods run, every one Ready.
fn wait_running(cluster: &UpCluster, count: usize) -> Vec<Value> {
    eventually(CONVERGE, &format!("{count} running web pods"), cluster, || {
        let live: Vec<Value> = pods(cluster).into_iter().filter(|p| !terminating(p)).collect();
        (live.len() == count && live.iter().all(|p| p["status"]["phase"] == "Running" && ready(p))).then_some(live)
    })
}

/// The ready pods' IPs, and what the Endpoints and the EndpointSlices list.
fn endpoint_sets(cluster: &UpCluster) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let ready_ips: BTreeSet<String> = pods(cluster)
        .iter()
        .filter(|p| ready(p) && !terminating(p))
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect();
    let endpoints = json(cluster, &["get", "endpoints", "web"]);
    let listed: BTreeSet<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    let slices = json(cluster, &["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let sliced: BTreeSet<String> = items(&slices)
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    (ready_ips, listed, sliced)
}

fn deployments_become_running_pods(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start_with(dir.path(), backend, &["--agents", "3", "--runtime", "simulated"]);
    wait_nodes_ready(&cluster, 3);

    // Apply → rollout status succeeds; pods Running with a node and an IP; ReplicaSet web-<hash>.
    ok_stdin(&cluster, &["apply", "-f", "-"], &deployment("nginx:1.25"));
    ok_stdin(&cluster, &["apply", "-f", "-"], SERVICE);
    rollout_status(&cluster);
    let running = wait_running(&cluster, REPLICAS);
    let hash = running[0]["metadata"]["labels"]["pod-template-hash"].as_str().expect("pod-template-hash").to_string();
    let replica_sets = items(&json(&cluster, &["get", "rs", "-l", "app=web"]));
    assert_eq!(replica_sets.len(), 1);
    assert_eq!(replica_sets[0]["metadata"]["name"], format!("web-{hash}"));
    let wide = ok(&cluster, &["get", "pods", "-l", "app=web", "-o", "wide", "--no-headers"]);
    for line in wide.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[2], "Running", "{wide}");
        assert!(columns[5].starts_with("10.244."), "IP column: {wide}");
        assert!(columns[6].starts_with("hollow-"), "NODE column: {wide}");
    }

    // The Service's Endpoints and EndpointSlices list exactly the ready pods.
    let (ready_ips, listed, sliced) = eventually(CONVERGE, "endpoints = ready pods", &cluster, || {
        let sets = endpoint_sets(&cluster);
        (sets.0.len() == REPLICAS && sets.0 == sets.1 && sets.0 == sets.2).then_some(sets)
    });
    assert_eq!((listed, sliced), (ready_ips.clone(), ready_ips));

    // A rolling update never exceeds maxSurge nor drops below maxUnavailable (sampled).
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let kubeconfig = cluster.kubeconfig();
        let server = format!("https://127.0.0.1:{}", cluster.api_port(1));
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while sampling.load(Ordering::SeqCst) && samples.len() < 2_000 {
                let output = std::process::Command::new(common::require_program("kubectl"))
                    .args(["--kubeconfig", &kubeconfig.to_string_lossy(), "--server", &server])
                    .args(["get", "pods", "-l", "app=web", "-o", "json"])
                    .output();
                if let Ok(output) = output {
                    if let Ok(list) = serde_json::from_slice::<Value>(&output.stdout) {
                        let live: Vec<Value> = items(&list).into_iter().filter(|p| !terminating(p)).collect();
                        samples.push((live.len(), live.iter().filter(|p| ready(p)).count()));
                    }
                }
            }
            samples
        })
    };
    ok(&cluster, &["set", "image", "deploy/web", "nginx=nginx:1.26"]);
    rollout_status(&cluster);
    sampling.store(false, Ordering::SeqCst);
    let samples = sampler.join().expect("sampler");
    assert!(samples.len() >= 5, "too few samples of the rollout: {samples:?}");
    for (live, available) in &samples {
        assert!(*live <= REPLICAS + MAX_SURGE, "{live} pods > replicas + maxSurge: {samples:?}");
        assert!(*available >= REPLICAS - MAX_UNAVAILABLE, "{available} ready < replicas - maxUnavailable: {samples:?}");
    }
    wait_running(&cluster, REPLICAS);
    assert_eq!(items(&json(&cluster, &["get", "rs", "-l", "app=web"])).len(), 2);

    // History shows both revisions; undo restores the old template.
    let history = ok(&cluster, &["rollout", "history", "deploy/web"]);
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    ok(&cluster, &["rollout", "undo", "deploy/web"]);
    rollout_status(&cluster);
    assert_eq!(image(&cluster), "nginx:1.25");
    let annotations = json(&cluster, &["get", "deploy", "web"])["metadata"]["annotations"].clone();
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "3");

    // Restart rolls new pods; pause holds a template change until resume.
    let before: BTreeSet<String> =
        pods(&cluster).iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string)).collect();
    ok(&cluster, &["rollout", "restart", "deploy/web"]);
    rollout_status(&cluster);
    let after: BTreeSet<String> = wait_running(&cluster, REPLICAS)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(before.is_disjoint(&after), "restart kept pods: {before:?} / {after:?}");
    ok(&cluster, &["rollout", "pause", "deploy/web"]);
    ok(&cluster, &["set", "image", "deploy/web", "nginx=nginx:1.27"]);
    std::thread::sleep(Duration::from_secs(2));
    let images: BTreeSet<String> = wait_running(&cluster, REPLICAS)
        .iter()
        .filter_map(|p| p["spec"]["containers"][0]["image"].as_str().map(str::to_string))
        .collect();
    assert_eq!(images, BTreeSet::from(["nginx:1.25".to_string()]), "a paused Deployment rolled");
    ok(&cluster, &["rollout", "resume", "deploy/web"]);
    rollout_status(&cluster);
    eventually(CONVERGE, "pods on nginx:1.27", &cluster, || {
        let live: Vec<Value> = pods(&cluster).into_iter().filter(|p| !terminating(p)).collect();
        (live.len() == REPLICAS && live.iter().all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.27"))
            .then_some(())
    });

    // Scale up and down.
    ok(&cluster, &["scale", "deploy/web", "--replicas=7"]);
    wait_running(&cluster, 7);
    ok(&cluster, &["scale", "deploy/web", "--replicas=2"]);
    wait_running(&cluster, 2);
    eventually(CONVERGE, "endpoints follow the scale-down", &cluster, || {
        let (ready_ips, listed, sliced) = endpoint_sets(&cluster);
        (ready_ips.len() == 2 && ready_ips == listed && ready_ips == sliced).then_some(())
    });

    // Deleting the Deployment (background) removes its ReplicaSets and pods.
    ok(&cluster, &["delete", "deploy", "web"]);
    eventually(CONVERGE, "ReplicaSets and pods gone", &cluster, || {
        (items(&json(&cluster, &["get", "rs", "-l", "app=web"])).is_empty() && pods(&cluster).is_empty()).then_some(())
    });

    // --cascade=orphan: the Deployment goes, its ReplicaSet and pods stay, no longer owned.
    ok_stdin(&cluster, &["apply", "-f", "-"], &deployment("nginx:1.25"));
    wait_running(&cluster, REPLICAS);
    ok(&cluster, &["delete", "deploy", "web", "--cascade=orphan"]);
    assert!(!ok(&cluster, &["get", "deploy", "--ignore-not-found"]).contains("web"), "the Deployment is gone");
    let orphans = items(&json(&cluster, &["get", "rs", "-l", "app=web"]));
    assert_eq!(orphans.len(), 1, "the ReplicaSet stays: {orphans:?}");
    eventually(CONVERGE, "the ReplicaSet released by its deleted owner", &cluster, || {
        let rs = items(&json(&cluster, &["get", "rs", "-l", "app=web"]));
        rs.first().filter(|rs| rs["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty)).map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wait_running(&cluster, REPLICAS).len(), REPLICAS, "the orphaned pods keep running");

    // --cascade=foreground: kubectl returns once the ReplicaSet is gone, and by then its pods
    // are gone too (the owner waits for its dependents).
    let rs = orphans[0]["metadata"]["name"].as_str().expect("a ReplicaSet name").to_string();
    ok(&cluster, &["delete", "rs", &rs, "--cascade=foreground", "--timeout=60s"]);
    assert!(pods(&cluster).is_empty(), "pods outlived their foreground-deleted ReplicaSet: {:?}", pods(&cluster));

    namespace_deletion(&cluster);
}

/// `kubectl delete ns`: Terminating while the namespace controller empties it (creating in it
/// is refused with Kubernetes' NamespaceTerminating), held by an object's finalizer until that
/// is removed, then gone with everything in it; its service's node port is free again.
fn namespace_deletion(cluster: &UpCluster) {
    ok(cluster, &["create", "namespace", "shop"]);
    ok_stdin(cluster, &["apply", "-n", "shop", "-f", "-"], &deployment("nginx:1.25"));
    ok_stdin(cluster, &["apply", "-n", "shop", "-f", "-"], &node_port_service("web", NODE_PORT));
    ok_stdin(cluster, &["apply", "-n", "shop", "-f", "-"], HELD_CONFIGMAP);
    ok(cluster, &["rollout", "status", "deploy/web", "-n", "shop", "--timeout=60s"]);
    let finalizers = json(cluster, &["get", "ns", "shop"])["spec"]["finalizers"].clone();
    assert_eq!(finalizers, serde_json::json!(["kubernetes"]));

    ok(cluster, &["delete", "ns", "shop", "--wait=false"]);
    // Everything else goes; the held configmap keeps the namespace Terminating.
    eventually(CONVERGE, "the namespace emptied but for the held configmap", cluster, || {
        let left: usize = ["pods", "replicasets", "deployments", "services"]
            .iter()
            .map(|kind| items(&json(cluster, &["get", kind, "-n", "shop"])).len())
            .sum();
        (left == 0).then_some(())
    });
    let namespace = json(cluster, &["get", "ns", "shop"]);
    assert_eq!(namespace["status"]["phase"], "Terminating", "{namespace}");
    let refused = cluster.kubectl(&["create", "configmap", "late", "-n", "shop"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "created content in a terminating namespace");
    assert!(
        stderr.contains("configmaps \"late\" is forbidden: unable to create new content in namespace shop because it is being terminated"),
        "not Kubernetes' NamespaceTerminating refusal: {stderr}"
    );

    ok(
        cluster,
        &["patch", "configmap", "held", "-n", "shop", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#],
    );
    ok(cluster, &["wait", "--for=delete", "namespace/shop", "--timeout=90s"]);
    let gone = cluster.kubectl(&["get", "ns", "shop"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "namespace still there");
    for kind in ["pods", "replicasets", "deployments", "services", "configmaps", "endpoints", "endpointslices"] {
        let left = items(&json(cluster, &["get", kind, "-n", "shop"]));
        assert!(left.is_empty(), "{kind} left in the deleted namespace: {left:?}");
    }
    // The deleted service's node port can be claimed again.
    ok_stdin(cluster, &["apply", "-f", "-"], &node_port_service("reclaimed", NODE_PORT));
    ok(cluster, &["delete", "service", "reclaimed"]);
}

/// A configmap whose deletion waits on a finalizer nobody removes but the test.
const HELD_CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: held, finalizers: [example.com/hold]}
data: {a: b}
";

const NODE_PORT: u16 = 30_080;

fn node_port_service(name: &str, node_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80, nodePort: {node_port}}}]
"
    )
}

#[test]
fn deployments_become_running_pods_on_the_embedded_store() {
    deployments_become_running_pods(Backend::Embedded);
}

#[test]
fn deployments_become_running_pods_on_etcd() {
    deployments_become_running_pods(Backend::Etcd);
}
