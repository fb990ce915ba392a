//! Defaulting: the fields Kubernetes fills in when a request leaves them out.
//!
//! [`apply_defaults`] mirrors the `SetDefaults_*` functions of Kubernetes 1.33 (core/v1 and
//! apps/v1) plus the few values the API server's create path adds to every object of a kind
//! (a namespace's `kubernetes` finalizer and `Active` phase, a pod's priority when no priority
//! class names one, a single-stack IPv4 family for services). It never replaces a value the
//! request set, with two exceptions Kubernetes makes too: the `kubernetes.io/metadata.name` label
//! of a namespace always equals its name, and resource quantities are rewritten in canonical form
//! (rounded up to thousandths: `0.5` becomes `500m`, `1024Mi` becomes `1Gi`).
//!
//! Pods get pod-level defaults (`enableServiceLinks`, requests copied from limits, priority);
//! templates inside deployments and replica sets get only the pod *spec* defaults, exactly as in
//! Kubernetes, so a stored deployment looks like one stored by Kubernetes.
//!
//! Defaulting is idempotent, so it may run on updates as well as creates. Two create-only steps of
//! Kubernetes' namespace strategy are left to the caller: it also appends `kubernetes` to a
//! non-empty finalizer list and resets a new namespace's status; here a list sent by the client is
//! kept as sent and a status phase is only filled when missing.
//!
//! Values of the wrong JSON type are left alone; defaulting never fails and never panics.

use serde_json::{Map, Value, json};

use super::validation::Quantity;

/// Fills Kubernetes' defaults into `object` of `resource` (a plural such as `pods`).
pub fn apply_defaults(resource: &str, object: &mut Value) {
    match resource {
        "pods" => default_pod(object),
        "deployments" => default_deployment(object),
        "replicasets" => default_replica_set(object),
        "services" => default_service(object),
        "secrets" => set_if_absent(object, "type", json!("Opaque")),
        "namespaces" => default_namespace(object),
        "endpoints" => default_endpoints(object),
        "endpointslices" => default_endpoint_slice(object),
        "nodes" => default_node(object),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers.
// ---------------------------------------------------------------------------------------------

/// Sets `key` to `value` unless the object already has a non-null `key`. No-op on non-objects.
fn set_if_absent(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        let present = map.get(key).is_some_and(|v| !v.is_null());
        if !present {
            map.insert(key.to_string(), value);
        }
    }
}

/// The object at `key`, created empty when absent or null; `None` when `object` (or the member)
/// is not an object.
fn child_object<'a>(object: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    set_if_absent(object, key, Value::Object(Map::new()));
    object.get_mut(key).filter(|v| v.is_object())
}

/// The existing object at `key`, if it is one.
fn existing_object<'a>(object: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    object.get_mut(key).filter(|v| v.is_object())
}

/// Mutable elements of the array at `key`, or nothing.
fn array_items<'a>(object: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    object.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten()
}

fn text<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is_absent(object: &Value, key: &str) -> bool {
    object.get(key).is_none_or(Value::is_null)
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates.
// ---------------------------------------------------------------------------------------------

fn default_pod(pod: &mut Value) {
    let Some(spec) = child_object(pod, "spec") else { return };
    for list in ["containers", "initContainers"] {
        for container in array_items(spec, list) {
            default_requests_from_limits(container);
        }
    }
    set_if_absent(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        default_host_network_ports(spec);
    }
    // What the Priority admission plugin sets when no priority class applies.
    if text(spec, "priorityClassName").is_empty() {
        set_if_absent(spec, "priority", json!(0));
        set_if_absent(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    default_pod_spec(spec);
}

/// With limits but no requests for a resource, the request equals the limit (pods only).
fn default_requests_from_limits(container: &mut Value) {
    let Some(resources) = existing_object(container, "resources") else { return };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else { return };
    let Some(requests) = child_object(resources, "requests").and_then(Value::as_object_mut) else { return };
    for (name, limit) in limits {
        requests.entry(name).or_insert(limit);
    }
}

fn default_host_network_ports(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        for container in array_items(spec, list) {
            for port in array_items(container, "ports") {
                let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                if host_port == 0
                    && let Some(container_port) = port.get("containerPort").cloned()
                    && let Some(map) = port.as_object_mut()
                {
                    map.insert("hostPort".to_string(), container_port);
                }
            }
        }
    }
}

/// `SetDefaults_PodSpec` and everything nested in a pod spec (containers, volumes, probes).
fn default_pod_spec(spec: &mut Value) {
    set_if_absent(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "restartPolicy", json!("Always"));
    set_if_absent(spec, "securityContext", json!({}));
    set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in array_items(spec, list) {
            default_container(container);
        }
    }
    for volume in array_items(spec, "volumes") {
        default_volume(volume);
    }
}

fn default_container(container: &mut Value) {
    if !container.is_object() {
        return;
    }
    let pull_policy = if image_tag_is_latest(text(container, "image")) { "Always" } else { "IfNotPresent" };
    set_if_absent(container, "imagePullPolicy", json!(pull_policy));
    set_if_absent(container, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_absent(container, "terminationMessagePolicy", json!("File"));
    set_if_absent(container, "resources", json!({}));
    for port in array_items(container, "ports") {
        set_if_absent(port, "protocol", json!("TCP"));
    }
    for var in array_items(container, "env") {
        let field_ref = var.get_mut("valueFrom").and_then(|from| existing_object(from, "fieldRef"));
        if let Some(field_ref) = field_ref {
            set_if_absent(field_ref, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing_object(container, probe) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = existing_object(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(http_get) = existing_object(lifecycle, hook).and_then(|h| existing_object(h, "httpGet")) {
                default_http_get(http_get);
            }
        }
    }
    if let Some(resources) = existing_object(container, "resources") {
        canonicalize_quantities(resources);
    }
}

/// Kubernetes pulls `:latest` images (and untagged, undigested ones) every time.
fn image_tag_is_latest(image: &str) -> bool {
    if image.is_empty() || image.contains('@') {
        return false;
    }
    let name_start = image.rfind('/').map_or(0, |slash| slash + 1);
    let (repository, tag) = match image[name_start..].rfind(':') {
        Some(colon) => (&image[..name_start + colon], Some(&image[name_start + colon + 1..])),
        None => (image, None),
    };
    // An upper-case repository does not parse as a reference; Kubernetes then uses no tag.
    let repository_path = repository.split_once('/').map_or(repository, |(host, rest)| {
        if host.contains('.') || host.contains(':') || host == "localhost" { rest } else { repository }
    });
    if repository_path.chars().any(|c| c.is_ascii_uppercase()) {
        return false;
    }
    tag.is_none_or(|t| t == "latest")
}

fn default_probe(probe: &mut Value) {
    for (key, default) in
        [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)]
    {
        let unset = probe.get(key).and_then(Value::as_i64).unwrap_or(0) == 0;
        if unset && let Some(map) = probe.as_object_mut() {
            map.insert(key.to_string(), json!(default));
        }
    }
    if let Some(http_get) = existing_object(probe, "httpGet") {
        default_http_get(http_get);
    }
}

fn default_http_get(action: &mut Value) {
    if text(action, "path").is_empty()
        && let Some(map) = action.as_object_mut()
    {
        map.insert("path".to_string(), json!("/"));
    }
    if text(action, "scheme").is_empty()
        && let Some(map) = action.as_object_mut()
    {
        map.insert("scheme".to_string(), json!("HTTP"));
    }
}

/// Volume sources a volume may name; a volume naming none becomes an `emptyDir`.
const VOLUME_SOURCE_KEYS: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

/// Default file mode of projected files: 0644.
const DEFAULT_FILE_MODE: i64 = 0o644;

fn default_volume(volume: &mut Value) {
    if !volume.is_object() {
        return;
    }
    if VOLUME_SOURCE_KEYS.iter().all(|key| is_absent(volume, key)) {
        set_if_absent(volume, "emptyDir", json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = existing_object(volume, source) {
            set_if_absent(source, "defaultMode", json!(DEFAULT_FILE_MODE));
        }
    }
    if let Some(host_path) = existing_object(volume, "hostPath") {
        set_if_absent(host_path, "type", json!(""));
    }
    if let Some(projected) = existing_object(volume, "projected") {
        for source in array_items(projected, "sources") {
            if let Some(token) = existing_object(source, "serviceAccountToken") {
                set_if_absent(token, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(image) = existing_object(volume, "image") {
        let policy = if image_tag_is_latest(text(image, "reference")) { "Always" } else { "IfNotPresent" };
        set_if_absent(image, "pullPolicy", json!(policy));
    }
}

/// Rewrites every parsable quantity of `limits` and `requests` in canonical form, rounded up to
/// thousandths (`SetDefaults_ResourceList`). Unparsable values are left for validation to report.
fn canonicalize_quantities(resources: &mut Value) {
    for list in ["limits", "requests"] {
        let Some(map) = resources.get_mut(list).and_then(Value::as_object_mut) else { continue };
        for value in map.values_mut() {
            let raw = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if let Some(quantity) = Quantity::parse(&raw) {
                *value = Value::String(quantity.round_up_to_milli().canonical());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads.
// ---------------------------------------------------------------------------------------------

fn default_template(spec: &mut Value) {
    let Some(template) = child_object(spec, "template") else { return };
    if let Some(pod_spec) = child_object(template, "spec") {
        default_pod_spec(pod_spec);
    }
}

fn default_deployment(deployment: &mut Value) {
    let Some(spec) = child_object(deployment, "spec") else { return };
    set_if_absent(spec, "replicas", json!(1));
    if let Some(strategy) = child_object(spec, "strategy") {
        set_if_absent(strategy, "type", json!("RollingUpdate"));
        if text(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child_object(strategy, "rollingUpdate")
        {
            set_if_absent(rolling, "maxUnavailable", json!("25%"));
            set_if_absent(rolling, "maxSurge", json!("25%"));
        }
    }
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
    set_if_absent(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

fn default_replica_set(replica_set: &mut Value) {
    let Some(spec) = child_object(replica_set, "spec") else { return };
    set_if_absent(spec, "replicas", json!(1));
    default_template(spec);
}

// ---------------------------------------------------------------------------------------------
// Services and networking objects.
// ---------------------------------------------------------------------------------------------

fn default_service(service: &mut Value) {
    let Some(spec) = child_object(service, "spec") else { return };
    set_if_absent(spec, "sessionAffinity", json!("None"));
    default_session_affinity_config(spec);
    set_if_absent(spec, "type", json!("ClusterIP"));
    let service_type = text(spec, "type").to_string();
    for port in array_items(spec, "ports") {
        set_if_absent(port, "protocol", json!("TCP"));
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if let (true, Some(number)) = (target_unset, port.get("port").cloned())
            && let Some(map) = port.as_object_mut()
        {
            map.insert("targetPort".to_string(), number);
        }
    }
    let has_external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible = matches!(service_type.as_str(), "NodePort" | "LoadBalancer")
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible
        && text(spec, "externalTrafficPolicy").is_empty()
        && let Some(map) = spec.as_object_mut()
    {
        map.insert("externalTrafficPolicy".to_string(), json!("Cluster"));
    }
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_if_absent(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_if_absent(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // The registry's IP-family defaulting for a single-stack IPv4 cluster.
    if service_type != "ExternalName" {
        set_if_absent(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_if_absent(spec, "ipFamilies", json!(["IPv4"]));
    }
}

fn default_session_affinity_config(spec: &mut Value) {
    match text(spec, "sessionAffinity") {
        "None" => {
            if let Some(map) = spec.as_object_mut() {
                map.remove("sessionAffinityConfig");
            }
        }
        "ClientIP" => {
            let timeout = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds").filter(|v| !v.is_null());
            if timeout.is_none()
                && let Some(map) = spec.as_object_mut()
            {
                map.insert("sessionAffinityConfig".to_string(), json!({"clientIP": {"timeoutSeconds": 10800}}));
            }
        }
        _ => {}
    }
}

fn default_endpoints(endpoints: &mut Value) {
    for subset in array_items(endpoints, "subsets") {
        for port in array_items(subset, "ports") {
            set_if_absent(port, "protocol", json!("TCP"));
        }
    }
}

fn default_endpoint_slice(slice: &mut Value) {
    for port in array_items(slice, "ports") {
        set_if_absent(port, "name", json!(""));
        set_if_absent(port, "protocol", json!("TCP"));
    }
}

fn default_node(node: &mut Value) {
    let Some(status) = existing_object(node, "status") else { return };
    if let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned() {
        set_if_absent(status, "allocatable", capacity);
    }
}

fn default_namespace(namespace: &mut Value) {
    let name = namespace.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if !name.is_empty()
        && let Some(labels) = child_object(namespace, "metadata").and_then(|meta| child_object(meta, "labels"))
        && let Some(map) = labels.as_object_mut()
    {
        map.insert("kubernetes.io/metadata.name".to_string(), json!(name));
    }
    if let Some(spec) = child_object(namespace, "spec") {
        // An empty list is absent to Go; a non-empty one is the caller's to keep or extend.
        let empty = spec.get("finalizers").and_then(Value::as_array).is_some_and(Vec::is_empty);
        if (empty || is_absent(spec, "finalizers"))
            && let Some(map) = spec.as_object_mut()
        {
            map.insert("finalizers".to_string(), json!(["kubernetes"]));
        }
    }
    if let Some(status) = child_object(namespace, "status") {
        set_if_absent(status, "phase", json!("Active"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(resource: &str, mut object: Value) -> Value {
        apply_defaults(resource, &mut object);
        object
    }

    #[test]
    fn minimal_pod_gets_kubernetes_defaults() {
        let pod = defaulted(
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx",
                "ports": [{"containerPort": 80}]}]}}),
        );
        let expected_spec = json!({
            "containers": [{
                "name": "c", "image": "nginx", "imagePullPolicy": "Always",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0, "restartPolicy": "Always", "schedulerName": "default-scheduler", "securityContext": {},
            "terminationGracePeriodSeconds": 30
        });
        assert_eq!(pod["spec"], expected_spec);
    }

    #[test]
    fn user_values_survive_pod_defaulting() {
        let pod = defaulted(
            "pods",
            json!({"spec": {"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 5,
                "enableServiceLinks": false, "schedulerName": "mine", "securityContext": {"runAsUser": 1000},
                "containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never",
                    "terminationMessagePolicy": "FallbackToLogsOnError", "ports": [{"containerPort": 53,
                        "protocol": "UDP"}]}]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], json!("Never"));
        assert_eq!(spec["dnsPolicy"], json!("Default"));
        assert_eq!(spec["terminationGracePeriodSeconds"], json!(5));
        assert_eq!(spec["enableServiceLinks"], json!(false));
        assert_eq!(spec["schedulerName"], json!("mine"));
        assert_eq!(spec["securityContext"], json!({"runAsUser": 1000}));
        let container = &spec["containers"][0];
        assert_eq!(container["imagePullPolicy"], json!("Never"));
        assert_eq!(container["terminationMessagePolicy"], json!("FallbackToLogsOnError"));
        assert_eq!(container["ports"][0]["protocol"], json!("UDP"));
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry.local:5000/team/app", "Always"),
            ("registry.local:5000/team/app:v2", "IfNotPresent"),
            ("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "IfNotPresent"),
            ("Upper/Case", "IfNotPresent"),
            ("", "IfNotPresent"),
        ];
        for (image, policy) in cases {
            let pod = defaulted("pods", json!({"spec": {"containers": [{"name": "c", "image": image}]}}));
            assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], json!(policy), "{image}");
        }
    }

    #[test]
    fn pod_requests_copy_limits_and_quantities_become_canonical() {
        let pod = defaulted(
            "pods",
            json!({"spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": 0.5, "memory": "1024Mi"}, "requests": {"memory": "1.5Gi"}}}]}}),
        );
        let resources = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(resources["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(resources["requests"], json!({"cpu": "500m", "memory": "1536Mi"}));
    }

    #[test]
    fn probes_volumes_and_env_are_defaulted() {
        let pod = defaulted(
            "pods",
            json!({"spec": {"containers": [{"name": "c", "image": "i:1",
                "livenessProbe": {"httpGet": {"port": 8080}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}],
                "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "app"}}]}}),
        );
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["livenessProbe"],
            json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], json!("v1"));
        assert_eq!(pod["spec"]["volumes"][0], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(pod["spec"]["volumes"][1]["configMap"]["defaultMode"], json!(420));
    }

    #[test]
    fn minimal_deployment_gets_kubernetes_defaults() {
        let deployment = defaulted(
            "deployments",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web",
                    "image": "nginx:1.27"}]}}}}),
        );
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], json!(1));
        assert_eq!(spec["revisionHistoryLimit"], json!(10));
        assert_eq!(spec["progressDeadlineSeconds"], json!(600));
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod_spec = &spec["template"]["spec"];
        assert_eq!(pod_spec["restartPolicy"], json!("Always"));
        assert_eq!(pod_spec["terminationGracePeriodSeconds"], json!(30));
        assert_eq!(pod_spec["containers"][0]["imagePullPolicy"], json!("IfNotPresent"));
        // Pod-level defaults are not applied to templates, as in Kubernetes.
        assert!(pod_spec.get("enableServiceLinks").is_none());
        assert!(pod_spec.get("priority").is_none());
    }

    #[test]
    fn deployment_user_values_survive() {
        let deployment = defaulted(
            "deployments",
            json!({"spec": {"replicas": 0, "revisionHistoryLimit": 2, "progressDeadlineSeconds": 30,
                "strategy": {"type": "Recreate"}, "template": {"spec": {"containers": []}}}}),
        );
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], json!(0));
        assert_eq!(spec["revisionHistoryLimit"], json!(2));
        assert_eq!(spec["progressDeadlineSeconds"], json!(30));
        assert_eq!(spec["strategy"], json!({"type": "Recreate"}));
        let rolling = defaulted("deployments", json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1}}}}));
        assert_eq!(rolling["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": 1, "maxUnavailable": "25%"}));
    }

    #[test]
    fn replica_set_defaults() {
        let rs = defaulted(
            "replicasets",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        );
        assert_eq!(rs["spec"]["replicas"], json!(1));
        assert_eq!(rs["spec"]["template"]["spec"]["dnsPolicy"], json!("ClusterFirst"));
    }

    #[test]
    fn minimal_service_gets_kubernetes_defaults() {
        let service = defaulted("services", json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}));
        assert_eq!(
            service["spec"],
            json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "type": "ClusterIP",
                "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
        );
    }

    #[test]
    fn service_type_specific_defaults_and_user_values() {
        let service = defaulted(
            "services",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP",
                "ports": [{"port": 443, "targetPort": "https", "protocol": "UDP"}]}}),
        );
        let spec = &service["spec"];
        assert_eq!(spec["externalTrafficPolicy"], json!("Cluster"));
        assert_eq!(spec["allocateLoadBalancerNodePorts"], json!(true));
        assert_eq!(spec["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));
        assert_eq!(spec["ports"][0], json!({"port": 443, "targetPort": "https", "protocol": "UDP"}));
        let external = defaulted("services", json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert!(external["spec"].get("ipFamilies").is_none());
        assert_eq!(external["spec"]["sessionAffinity"], json!("None"));
        assert!(external["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn minimal_namespace_gets_kubernetes_defaults() {
        let namespace = defaulted("namespaces", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(
            namespace,
            json!({"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        );
        let custom = defaulted(
            "namespaces",
            json!({"metadata": {"name": "b", "labels": {"x": "y", "kubernetes.io/metadata.name": "wrong"}},
                "spec": {"finalizers": ["example.com/cleanup"]}, "status": {"phase": "Terminating"}}),
        );
        assert_eq!(custom["metadata"]["labels"], json!({"x": "y", "kubernetes.io/metadata.name": "b"}));
        assert_eq!(custom["spec"]["finalizers"], json!(["example.com/cleanup"]));
        let empty = defaulted("namespaces", json!({"metadata": {"name": "c"}, "spec": {"finalizers": []}}));
        assert_eq!(empty["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(custom["status"]["phase"], json!("Terminating"));
    }

    #[test]
    fn secrets_nodes_and_endpoints() {
        assert_eq!(defaulted("secrets", json!({}))["type"], json!("Opaque"));
        assert_eq!(defaulted("secrets", json!({"type": "kubernetes.io/tls"}))["type"], json!("kubernetes.io/tls"));
        let node = defaulted("nodes", json!({"status": {"capacity": {"cpu": "4"}}}));
        assert_eq!(node["status"]["allocatable"], json!({"cpu": "4"}));
        let endpoints = defaulted("endpoints", json!({"subsets": [{"ports": [{"port": 80}]}]}));
        assert_eq!(endpoints["subsets"][0]["ports"][0]["protocol"], json!("TCP"));
        let slice = defaulted("endpointslices", json!({"ports": [{"port": 80}]}));
        assert_eq!(slice["ports"][0], json!({"port": 80, "name": "", "protocol": "TCP"}));
        assert_eq!(
            defaulted("serviceaccounts", json!({"metadata": {"name": "a"}})),
            json!({"metadata": {"name": "a"}})
        );
    }

    #[test]
    fn malformed_shapes_do_not_panic() {
        for resource in
            ["pods", "deployments", "replicasets", "services", "namespaces", "nodes", "endpoints", "secrets"]
        {
            for object in [
                json!(null),
                json!([]),
                json!("x"),
                json!({"spec": 5}),
                json!({"spec": {"containers": 5}}),
                json!({"spec": {"containers": [5, null], "template": [], "ports": [1]}}),
                json!({"metadata": []}),
            ] {
                let mut object = object;
                apply_defaults(resource, &mut object);
            }
        }
    }
}
