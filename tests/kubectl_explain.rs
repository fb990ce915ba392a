//! The real installed `kubectl` reading Keel's OpenAPI documents: `kubectl explain` from the v3
//! documents (and from the v2 protobuf document with `--output plaintext-openapiv2`), and
//! client-side `kubectl apply` computing its strategic merge patch from the v3 schema's patch
//! extensions, against a three-master `keel up` cluster.

mod common;

use std::process::Output;

use common::control_plane::{Backend, UpCluster};
use keel_control_plane::apiserver::resources::RESOURCES;
use serde_json::Value;

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs kubectl, asserts it succeeded and wrote nothing to stderr (a warning there means kubectl
/// could not use the served documents and fell back to something else), returns stdout.
fn clean(cluster: &UpCluster, args: &[&str]) -> String {
    let output = cluster.kubectl(args);
    assert!(output.status.success(), "kubectl {} failed: {}", args.join(" "), text(&output));
    assert!(output.stderr.is_empty(), "kubectl {} warned: {}", args.join(" "), text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_contains(output: &str, expected: &[&str], what: &str) {
    for needle in expected {
        assert!(output.contains(needle), "{what}: no {needle:?} in:\n{output}");
    }
}

fn explain_deployment_strategy(cluster: &UpCluster) {
    let output = clean(cluster, &["explain", "deployment.spec.strategy"]);
    assert_contains(
        &output,
        &[
            "GROUP:      apps",
            "KIND:       Deployment",
            "VERSION:    v1",
            "FIELD: strategy <DeploymentStrategy>",
            "DESCRIPTION:",
            "The deployment strategy to use to replace existing pods with new ones.",
            "FIELDS:",
            "rollingUpdate\t<RollingUpdateDeployment>",
            "Rolling update config params. Present only if DeploymentStrategyType =",
            "type\t<string>",
            "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\".",
        ],
        "explain deployment.spec.strategy",
    );
}

fn explain_pod_containers(cluster: &UpCluster) {
    let output = clean(cluster, &["explain", "pods.spec.containers"]);
    assert_contains(
        &output,
        &[
            "KIND:       Pod",
            "VERSION:    v1",
            "FIELD: containers <[]Container>",
            "List of containers belonging to the pod.",
            "A single application container that you want to run within a pod.",
            "FIELDS:",
            "name\t<string> -required-",
            "image\t<string>",
            "Container image name.",
            "ports\t<[]ContainerPort>",
            "resources\t<ResourceRequirements>",
        ],
        "explain pods.spec.containers",
    );
    assert!(!output.contains("GROUP:"), "core kinds have no group line:\n{output}");
    let nested = clean(cluster, &["explain", "pods.spec.containers.ports.containerPort"]);
    assert_contains(&nested, &["FIELD: containerPort <integer>", "Number of port to expose"], "explain a leaf");
}

fn explain_service_recursively(cluster: &UpCluster) {
    let output = clean(cluster, &["explain", "svc", "--recursive"]);
    assert_contains(
        &output,
        &[
            "KIND:       Service",
            "Service is a named abstraction of software service",
            "FIELDS:",
            "spec\t<ServiceSpec>",
            "    clusterIP\t<string>",
            "    ports\t<[]ServicePort>",
            "      targetPort\t<IntOrString>",
            "      protocol\t<string>",
            "  status\t<ServiceStatus>",
        ],
        "explain svc --recursive",
    );
    // Kubernetes requires a Service's metadata no more than its spec (k8s-openapi's Rust types
    // would say otherwise).
    let metadata = output.lines().find(|line| line.starts_with("  metadata\t")).expect("a metadata line");
    assert!(!metadata.contains("-required-"), "{metadata}");
}

/// Every served kind, in every served group, explains with its group, version and fields.
fn explain_every_served_kind(cluster: &UpCluster) {
    for resource in RESOURCES {
        let name = resource.qualified_plural();
        let output = clean(cluster, &["explain", &name]);
        let mut expected = vec![format!("KIND:       {}", resource.kind), format!("VERSION:    {}", resource.version)];
        if !resource.group.is_empty() {
            expected.push(format!("GROUP:      {}", resource.group));
        }
        expected.extend(["DESCRIPTION:".to_string(), "FIELDS:".to_string(), "metadata\t<ObjectMeta>".to_string()]);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_contains(&output, &expected, &format!("explain {name}"));
        let description = output.split("DESCRIPTION:").nth(1).and_then(|rest| rest.lines().nth(1)).unwrap_or("");
        assert!(!description.trim().is_empty(), "explain {name} has an empty description:\n{output}");
    }
    let missing = cluster.kubectl(&["explain", "deployment.spec.bogus"]);
    assert!(!missing.status.success(), "a field that does not exist is an error: {}", text(&missing));
    assert!(text(&missing).contains("bogus"), "{}", text(&missing));
}

/// `--output plaintext-openapiv2` reads `/openapi/v2` as client-go does: gnostic protobuf.
fn explain_from_openapi_v2(cluster: &UpCluster) {
    let output = clean(cluster, &["explain", "--output", "plaintext-openapiv2", "deployment.spec.strategy"]);
    assert_contains(
        &output,
        &[
            "KIND:     Deployment",
            "VERSION:  apps/v1",
            "RESOURCE: strategy <Object>",
            "DeploymentStrategy describes how to replace existing pods with new ones.",
            "rollingUpdate\t<Object>",
            "Rolling update config params.",
        ],
        "explain --output plaintext-openapiv2",
    );
    let containers = clean(cluster, &["explain", "--output", "plaintext-openapiv2", "pods.spec.containers"]);
    assert_contains(&containers, &["RESOURCE: containers <[]Object>", "name\t<string> -required-"], "v2 containers");
}

fn raw_documents(cluster: &UpCluster) {
    let index: Value = serde_json::from_str(&clean(cluster, &["get", "--raw", "/openapi/v3"])).expect("index is JSON");
    for path in ["api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1", "apis/coordination.k8s.io/v1"] {
        let url = index["paths"][path]["serverRelativeURL"].as_str().unwrap_or_else(|| panic!("no {path}: {index}"));
        assert!(url.starts_with(&format!("/openapi/v3/{path}?hash=")), "{url}");
        let document: Value = serde_json::from_str(&clean(cluster, &["get", "--raw", url])).expect("JSON");
        assert_eq!(document["openapi"], "3.0.0");
    }
    let v2: Value = serde_json::from_str(&clean(cluster, &["get", "--raw", "/openapi/v2"])).expect("v2 is JSON");
    assert_eq!(v2["swagger"], "2.0");
    let patch = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: patched
spec:
  selector: {matchLabels: {app: patched}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
  template:
    metadata: {labels: {app: patched}}
    spec:
      volumes: [{name: data, emptyDir: {}}]
      containers:
      - name: main
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: fast}]
        volumeMounts: [{name: data, mountPath: /data}]
"#;

/// Client-side apply: kubectl computes the strategic merge patch from the v3 schema (merge keys
/// for containers and env, `retainKeys` for volumes and the strategy) without asking for
/// `/openapi/v2` and without a warning, and the server applies it.
fn client_side_apply_uses_the_schema(cluster: &UpCluster) {
    let path = cluster.dir.join("patched.yaml");
    std::fs::write(&path, DEPLOYMENT).expect("write manifest");
    let path = path.to_string_lossy().into_owned();
    assert_contains(&clean(cluster, &["apply", "-f", &path]), &["deployment.apps/patched created"], "apply 1");
    let changed = DEPLOYMENT
        .replace("nginx:1.25", "nginx:1.26")
        .replace("value: fast", "value: safe")
        .replace("emptyDir: {}", "configMap: {name: settings}")
        .replace("maxSurge: 1", "maxSurge: 25%");
    std::fs::write(&path, changed).expect("rewrite manifest");
    let output = cluster.kubectl(&["apply", "-f", &path, "-v=6"]);
    assert!(output.status.success(), "apply 2: {}", text(&output));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!log.contains("/openapi/v2"), "kubectl fell back to /openapi/v2:\n{log}");
    assert!(!log.contains("warning"), "{log}");
    assert!(log.contains("fieldValidation=Strict"), "kubectl leaves validation to the server:\n{log}");
    let object: Value =
        serde_json::from_str(&clean(cluster, &["get", "deployment", "patched", "-o", "json"])).expect("JSON");
    let container = &object["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.26");
    assert_eq!(container["env"][0]["value"], "safe");
    assert_eq!(container["ports"][0]["containerPort"], 80, "{object}");
    let volume = &object["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["configMap"]["name"], "settings");
    assert!(volume.get("emptyDir").is_none(), "retainKeys clears the other volume source: {volume}");
    assert_eq!(object["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
}

#[test]
fn kubectl_explain_and_apply_read_the_served_openapi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start(dir.path(), Backend::Embedded);
    explain_deployment_strategy(&cluster);
    explain_pod_containers(&cluster);
    explain_service_recursively(&cluster);
    explain_every_served_kind(&cluster);
    explain_from_openapi_v2(&cluster);
    raw_documents(&cluster);
    client_side_apply_uses_the_schema(&cluster);
}
