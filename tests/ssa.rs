//! Server-side apply with the real kubectl against a three-master `keel up`: conflicts between
//! field managers (409 naming the manager and the fields), `--force-conflicts`, removal of what
//! an applier stops applying, and the `managedFields` that server-side apply, client-side apply,
//! `kubectl replace`, `kubectl edit` and `kubectl scale` leave, compared with the entries of
//! Kubernetes' documented examples ("Server-Side Apply": the ConfigMap example, "Transferring
//! ownership", "Upgrading from client-side apply"). Runs on embedded stores and on real etcd 3.4.

mod common;

use std::process::{Command, Output};

use common::control_plane::{Backend, UpCluster};
use common::require_program;
use serde_json::{Value, json};

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

fn manifest(cluster: &UpCluster, name: &str, body: &Value) -> String {
    let path = cluster.dir.join(name);
    std::fs::write(&path, body.to_string()).expect("write manifest");
    path.to_string_lossy().into_owned()
}

/// The object with its managedFields.
fn get(cluster: &UpCluster, kind: &str, name: &str) -> Value {
    let out = ok(cluster.kubectl(&["get", kind, name, "-o", "json", "--show-managed-fields"]), "get");
    serde_json::from_str(&out).expect("kubectl -o json prints JSON")
}

/// The entries as (manager, operation, subresource, fieldsV1), ordered by operation then
/// manager, after checking what every entry must carry and that the server listed them in
/// Kubernetes' order (`Apply` first, then by time).
fn entries(object: &Value, api_version: &str) -> Vec<(String, String, String, Value)> {
    let list = object["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let order: Vec<(String, String)> = list
        .iter()
        .map(|e| (e["operation"].as_str().unwrap_or("").to_string(), e["time"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(order.windows(2).all(|pair| pair[0] <= pair[1]), "entries out of order: {order:?}");
    let mut found: Vec<_> = list
        .iter()
        .map(|entry| {
            assert_eq!(entry["apiVersion"], api_version, "{entry}");
            assert_eq!(entry["fieldsType"], "FieldsV1", "{entry}");
            let field = |name: &str| entry[name].as_str().unwrap_or("").to_string();
            (field("manager"), field("operation"), field("subresource"), entry["fieldsV1"].clone())
        })
        .collect();
    found.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    found
}

fn entry(manager: &str, operation: &str, subresource: &str, fields: Value) -> (String, String, String, Value) {
    (manager.into(), operation.into(), subresource.into(), fields)
}

/// A ConfigMap manifest; `null` labels or data are left out (an empty map would be applied, and
/// owned, as a value of its own).
fn configmap(name: &str, labels: Value, data: Value) -> Value {
    let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    if !labels.is_null() {
        object["metadata"]["labels"] = labels;
    }
    if !data.is_null() {
        object["data"] = data;
    }
    object
}

fn resource_version(object: &Value) -> String {
    object["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string()
}

/// Two appliers: a 409 that names the other manager and the field, `--force-conflicts`, shared
/// ownership, and removal only of what nobody else owns.
fn conflicts_force_and_removal(cluster: &UpCluster) {
    let labels = json!({"test-label": "test"});
    let alice = manifest(cluster, "alice.json", &configmap("shared", labels.clone(), json!({"key": "some value"})));
    let applied = ok(cluster.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", &alice]), "alice");
    assert!(applied.contains("configmap/shared serverside-applied"), "{applied}");
    let first = get(cluster, "configmap", "shared");
    assert_eq!(
        entries(&first, "v1"),
        vec![entry(
            "alice",
            "Apply",
            "",
            json!({"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}})
        )]
    );
    assert!(first["metadata"]["managedFields"][0]["time"].is_string());

    ok(cluster.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", &alice]), "alice again");
    assert_eq!(
        resource_version(&get(cluster, "configmap", "shared")),
        resource_version(&first),
        "a no-op apply writes nothing"
    );

    let bob_config = configmap("shared", Value::Null, json!({"key": "bob's", "extra": "x"}));
    let bob = manifest(cluster, "bob.json", &bob_config);
    let error = fails(cluster.kubectl(&["apply", "--server-side", "--field-manager=bob", "-f", &bob]), "bob");
    assert!(error.contains("Apply failed with 1 conflict: conflict with \"alice\": .data.key"), "{error}");
    assert!(error.contains("--force-conflicts"), "kubectl explains the way out: {error}");
    let unchanged = get(cluster, "configmap", "shared");
    assert_eq!(resource_version(&unchanged), resource_version(&first), "a conflict writes nothing");
    assert_eq!(unchanged["data"]["key"], "some value");

    ok(
        cluster.kubectl(&["apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", &bob]),
        "bob forced",
    );
    let forced = get(cluster, "configmap", "shared");
    assert_eq!(forced["data"], json!({"key": "bob's", "extra": "x"}));
    assert_eq!(
        entries(&forced, "v1"),
        vec![
            entry("alice", "Apply", "", json!({"f:metadata": {"f:labels": {"f:test-label": {}}}})),
            entry("bob", "Apply", "", json!({"f:data": {"f:key": {}, "f:extra": {}}})),
        ]
    );

    // alice adds two keys; bob takes a share of one (same value: no conflict).
    let alice_more = configmap("shared", labels.clone(), json!({"a1": "1", "a2": "2"}));
    let alice_more = manifest(cluster, "alice-more.json", &alice_more);
    ok(cluster.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", &alice_more]), "alice adds");
    let bob_shares = manifest(
        cluster,
        "bob-shares.json",
        &configmap("shared", Value::Null, json!({"key": "bob's", "extra": "x", "a2": "2"})),
    );
    ok(cluster.kubectl(&["apply", "--server-side", "--field-manager=bob", "-f", &bob_shares]), "bob shares a2");
    // alice stops applying both: a1 goes, a2 stays because bob owns it too.
    let alice_less = manifest(cluster, "alice-less.json", &configmap("shared", labels, Value::Null));
    ok(cluster.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", &alice_less]), "alice drops");
    let pruned = get(cluster, "configmap", "shared");
    assert_eq!(pruned["data"], json!({"key": "bob's", "extra": "x", "a2": "2"}));
    assert_eq!(
        entries(&pruned, "v1"),
        vec![
            entry("alice", "Apply", "", json!({"f:metadata": {"f:labels": {"f:test-label": {}}}})),
            entry("bob", "Apply", "", json!({"f:data": {"f:key": {}, "f:extra": {}, "f:a2": {}}})),
        ]
    );
}

/// kubectl with an editor that rewrites `from` to `to` in what `kubectl edit` opens.
fn kubectl_edit(cluster: &UpCluster, target: &[&str], from: &str, to: &str) -> Output {
    Command::new(require_program("kubectl"))
        .env("KUBE_EDITOR", format!("sed -i -e s/{from}/{to}/"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg("--server")
        .arg(format!("https://127.0.0.1:{}", cluster.api_port(0)))
        .arg("--cache-dir")
        .arg(cluster.dir.join("kube-cache-0"))
        .arg("edit")
        .args(target)
        .output()
        .expect("run kubectl edit")
}

/// The documented ConfigMap: applied server-side, then client-side `kubectl apply`, then
/// `kubectl replace`, then `kubectl edit`, then server-side apply again; every step's entries.
fn server_side_then_client_side_then_edits(cluster: &UpCluster) {
    let labels = json!({"test-label": "test"});
    let original = configmap("test-cm", labels.clone(), json!({"key": "some value"}));
    let path = manifest(cluster, "test-cm.json", &original);
    ok(cluster.kubectl(&["apply", "--server-side", "-f", &path]), "server-side apply");
    let labels_owned = json!({"f:metadata": {"f:labels": {"f:test-label": {}}}});
    let key_owned = json!({"f:data": {"f:key": {}}});
    let documented = json!({"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}});
    assert_eq!(
        entries(&get(cluster, "configmap", "test-cm"), "v1"),
        vec![entry("kubectl", "Apply", "", documented.clone())]
    );

    // Client-side apply of a new value: the updater takes data.key (the documented second
    // example), and owns the annotation it adds.
    let client_side =
        manifest(cluster, "test-cm-v2.json", &configmap("test-cm", labels.clone(), json!({"key": "new value"})));
    let out = cluster.kubectl(&["apply", "-f", &client_side]);
    assert!(out.status.success(), "client-side apply: {}", text(&out));
    assert!(
        text(&out).contains("missing the kubectl.kubernetes.io/last-applied-configuration annotation"),
        "{}",
        text(&out)
    );
    let after_client_side = get(cluster, "configmap", "test-cm");
    assert_eq!(after_client_side["data"]["key"], "new value");
    assert_eq!(
        entries(&after_client_side, "v1"),
        vec![
            entry("kubectl", "Apply", "", labels_owned.clone()),
            entry(
                "kubectl-client-side-apply",
                "Update",
                "",
                json!({"f:data": {"f:key": {}},
                       "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
            ),
        ]
    );

    // A PUT of the object without the annotation: kubectl-replace takes data.key, and the
    // client-side entry, owning nothing any more, disappears.
    let replaced =
        manifest(cluster, "test-cm-v3.json", &configmap("test-cm", labels.clone(), json!({"key": "replaced"})));
    ok(cluster.kubectl(&["replace", "-f", &replaced]), "replace");
    let after_replace = get(cluster, "configmap", "test-cm");
    assert!(after_replace["metadata"].get("annotations").is_none(), "{after_replace}");
    assert_eq!(
        entries(&after_replace, "v1"),
        vec![
            entry("kubectl", "Apply", "", labels_owned.clone()),
            entry("kubectl-replace", "Update", "", key_owned.clone())
        ]
    );

    ok(kubectl_edit(cluster, &["configmap", "test-cm"], "replaced", "edited"), "edit");
    let after_edit = get(cluster, "configmap", "test-cm");
    assert_eq!(after_edit["data"]["key"], "edited");
    assert_eq!(
        entries(&after_edit, "v1"),
        vec![entry("kubectl", "Apply", "", labels_owned), entry("kubectl-edit", "Update", "", key_owned)]
    );

    // Applying the original again conflicts with the last updater, until forced.
    let error = fails(cluster.kubectl(&["apply", "--server-side", "-f", &path]), "apply over an edit");
    assert!(
        error.contains("Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.key"),
        "{error}"
    );
    ok(cluster.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &path]), "forced");
    let back = get(cluster, "configmap", "test-cm");
    assert_eq!(back["data"]["key"], "some value");
    assert_eq!(entries(&back, "v1"), vec![entry("kubectl", "Apply", "", documented)]);
}

/// "Upgrading from client-side apply": an object managed by `kubectl apply` moves to
/// `kubectl apply --server-side` without conflicts (the fields whose value is still the
/// annotation's were kubectl's), and the client-side entry disappears.
fn upgrading_from_client_side_apply(cluster: &UpCluster) {
    let labels = json!({"test-label": "test"});
    let v1 = manifest(cluster, "upgrade-v1.json", &configmap("upgrade", labels.clone(), json!({"key": "one"})));
    ok(cluster.kubectl(&["apply", "-f", &v1]), "client-side create");
    let created = get(cluster, "configmap", "upgrade");
    let client_side = json!({"f:data": {".": {}, "f:key": {}},
        "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                       "f:labels": {".": {}, "f:test-label": {}}}});
    assert_eq!(entries(&created, "v1"), vec![entry("kubectl-client-side-apply", "Update", "", client_side.clone())]);

    let v2_config = configmap("upgrade", labels, json!({"key": "two"}));
    let v2 = manifest(cluster, "upgrade-v2.json", &v2_config);
    ok(cluster.kubectl(&["apply", "--server-side", "-f", &v2]), "server-side apply after client-side");
    let upgraded = get(cluster, "configmap", "upgrade");
    assert_eq!(upgraded["data"]["key"], "two");
    // kubectl (1.26 and later) then applies the annotation alone as `kubectl-last-applied`, folds
    // the client-side entry into its own with a JSON patch of managedFields, and applies again,
    // which leaves its entry exactly the applied fields. Kubernetes ends in the same entries.
    assert_eq!(
        entries(&upgraded, "v1"),
        vec![
            entry(
                "kubectl",
                "Apply",
                "",
                json!({"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}})
            ),
            entry(
                "kubectl-last-applied",
                "Apply",
                "",
                json!({"f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
            ),
        ],
        "{upgraded}"
    );
    let annotation =
        upgraded["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap_or("");
    let recorded: Value = serde_json::from_str(annotation).expect("the annotation holds JSON");
    assert_eq!(recorded["data"]["key"], "two", "the server keeps kubectl's annotation up to date: {annotation}");
}

fn nginx(replicas: Option<i64>) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {"metadata": {"labels": {"app": "nginx"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}},
    });
    if let Some(replicas) = replicas {
        spec["replicas"] = json!(replicas);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}}, "spec": spec})
}

fn owners_of_replicas(object: &Value) -> Vec<(String, String, String)> {
    entries(object, "apps/v1")
        .into_iter()
        .filter(|(_, _, _, fields)| fields["f:spec"].get("f:replicas").is_some())
        .map(|(manager, operation, subresource, _)| (manager, operation, subresource))
        .collect()
}

/// "Transferring ownership" of a Deployment's replicas from the user to an autoscaler (here
/// `kubectl scale`, which writes through /scale as the HPA controller does).
fn transferring_replicas(cluster: &UpCluster) {
    let full = manifest(cluster, "nginx-deployment.json", &nginx(Some(3)));
    ok(cluster.kubectl(&["apply", "--server-side", "-f", &full]), "apply deployment");
    let applied = get(cluster, "deployment", "nginx-deployment");
    let kubectl_fields = &entries(&applied, "apps/v1")[0].3;
    let container = &kubectl_fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(
        container["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}),
        "ports are keyed by containerPort and protocol: {kubectl_fields}"
    );
    assert_eq!(kubectl_fields["f:spec"]["f:selector"], json!({}), "a label selector is owned whole");

    let replicas_only = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"}, "spec": {"replicas": 3}});
    let handover = manifest(cluster, "nginx-replicas-only.json", &replicas_only);
    ok(
        cluster.kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=handover-to-hpa",
            "--validate=false",
            "-f",
            &handover,
        ]),
        "handover",
    );
    let without = manifest(cluster, "nginx-no-replicas.json", &nginx(None));
    ok(cluster.kubectl(&["apply", "--server-side", "-f", &without]), "apply without replicas");
    let handed = get(cluster, "deployment", "nginx-deployment");
    assert_eq!(handed["spec"]["replicas"], 3, "replicas stay: handover-to-hpa owns them");
    assert_eq!(owners_of_replicas(&handed), vec![("handover-to-hpa".into(), "Apply".into(), "".into())]);

    ok(cluster.kubectl(&["scale", "deployment", "nginx-deployment", "--replicas=5"]), "scale");
    let scaled = get(cluster, "deployment", "nginx-deployment");
    assert_eq!(scaled["spec"]["replicas"], 5);
    let managers: Vec<String> = entries(&scaled, "apps/v1").into_iter().map(|e| e.0).collect();
    assert!(
        !managers.contains(&"handover-to-hpa".to_string()),
        "the temporary manager owns nothing and is gone: {managers:?}"
    );
    assert_eq!(owners_of_replicas(&scaled), vec![("kubectl".into(), "Update".into(), "scale".into())]);

    let error = fails(cluster.kubectl(&["apply", "--server-side", "-f", &full]), "user fights the scaler");
    assert!(
        error.contains("conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"),
        "{error}"
    );
}

/// An apply to `/status` owns status fields through an entry for the subresource. (A
/// Service's: no controller writes a ClusterIP Service's status, whereas the deployment
/// controller owns a Deployment's and would rightly conflict.)
fn status_apply(cluster: &UpCluster) {
    ok(cluster.kubectl(&["create", "service", "clusterip", "status-demo", "--tcp=80"]), "create service");
    let status = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "status-demo"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}});
    let path = manifest(cluster, "service-status.json", &status);
    let args = ["apply", "--server-side", "--subresource=status", "--field-manager=status-writer", "-f", &path];
    ok(cluster.kubectl(&args), "status apply");
    let object = get(cluster, "service", "status-demo");
    assert_eq!(object["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.10", "{object}");
    let writer: Vec<_> = entries(&object, "v1").into_iter().filter(|e| e.0 == "status-writer").collect();
    assert_eq!(
        writer,
        vec![entry("status-writer", "Apply", "status", json!({"f:status": {"f:loadBalancer": {"f:ingress": {}}}}))]
    );
    let version = resource_version(&object);
    ok(cluster.kubectl(&args), "status apply again");
    assert_eq!(resource_version(&get(cluster, "service", "status-demo")), version, "a no-op status apply");
}

fn run_suite(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start(dir.path(), backend);
    conflicts_force_and_removal(&cluster);
    server_side_then_client_side_then_edits(&cluster);
    upgrading_from_client_side_apply(&cluster);
    transferring_replicas(&cluster);
    status_apply(&cluster);
}

#[test]
fn server_side_apply_on_embedded_stores() {
    run_suite(Backend::Embedded);
}

#[test]
fn server_side_apply_on_etcd() {
    run_suite(Backend::Etcd);
}
