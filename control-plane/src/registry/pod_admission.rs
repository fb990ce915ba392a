//! What kube-apiserver adds to a new pod: its QoS class (`status.qosClass`, from the
//! containers' requests and limits) and the DefaultTolerationSeconds admission plugin's
//! tolerations (`node.kubernetes.io/not-ready` and `unreachable`, NoExecute, 300 s) unless the
//! pod tolerates those taints already.

use serde_json::{Value, json};

use crate::controllers::node_lifecycle::{DEFAULT_TOLERATION_SECONDS, TAINT_NOT_READY, TAINT_UNREACHABLE};
use crate::scheduler::{parse_milli, parse_value};

/// Kubernetes' GetPodQOS over containers and init containers: BestEffort when no container
/// requests or limits CPU or memory; Guaranteed when every container limits both and requests
/// (where given) equal the limits; Burstable otherwise.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|field| pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let amount = |container: &Value, kind: &str, resource: &str| -> Option<i64> {
        let text = container.pointer(&format!("/resources/{kind}/{resource}"))?;
        let text = text.as_str().map(str::to_string).unwrap_or_else(|| text.to_string());
        let parsed = if resource == "cpu" { parse_milli(&text) } else { parse_value(&text) };
        parsed.ok().filter(|v| *v != 0)
    };
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for container in &containers {
        for resource in ["cpu", "memory"] {
            let request = amount(container, "requests", resource);
            let limit = amount(container, "limits", resource);
            any |= request.is_some() || limit.is_some();
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(request), Some(limit)) if request != limit => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Adds the default NoExecute tolerations the pod lacks.
pub fn add_default_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    let covered = |list: &[Value], key: &str| {
        list.iter().any(|t| {
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (t_key == key || t_key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        if !covered(list, key) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "main", "image": "busybox", "resources": resources}]}})
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "100m"}}))), "Burstable");
        let equal = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}});
        assert_eq!(qos_class(&pod(equal)), "Guaranteed");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        let unequal = json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(qos_class(&pod(unequal)), "Burstable");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1"}}))), "Burstable");
    }

    #[test]
    fn default_tolerations_are_added_unless_present() {
        let mut plain = pod(json!({}));
        add_default_tolerations(&mut plain);
        let added = plain["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(added.len(), 2);
        assert_eq!(added[0]["key"], TAINT_NOT_READY);
        assert_eq!(added[1]["tolerationSeconds"], 300);

        let mut own = pod(json!({}));
        own["spec"]["tolerations"] =
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]);
        add_default_tolerations(&mut own);
        let list = own["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0]["tolerationSeconds"], 2, "the pod's own toleration stays");

        let mut everything = pod(json!({}));
        everything["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        add_default_tolerations(&mut everything);
        assert_eq!(everything["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
    }
}
