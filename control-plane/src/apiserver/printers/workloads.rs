//! Deployment and ReplicaSet rows.
//!
//! Both show replica counts, and in wide output the pod template's containers and images and the
//! label selector. The two selector cells differ on purpose, as in Kubernetes: a deployment prints
//! an empty selector as "" and a bad one as `<invalid>`, a replicaset prints `<none>` and `<error>`.

use jiff::Timestamp;
use serde_json::Value;

use super::{AGE, Column, NAME, age, at, column, containers_and_images, int_at, name, wide};
use crate::apiserver::selectors::LabelSelector;

pub(super) const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Ready replicas out of desired replicas."),
    column("Up-to-date", "string", "Replicas running the latest pod template."),
    column("Available", "string", "Replicas ready for at least minReadySeconds."),
    AGE,
    wide("Containers", "string", "Names of each container in the template."),
    wide("Images", "string", "Images referenced by each container in the template."),
    wide("Selector", "string", "Label selector for the pods the deployment manages."),
];

pub(super) const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "Number of replicas the replicaset should run."),
    column("Current", "integer", "Number of replicas the replicaset runs now."),
    column("Ready", "integer", "Number of the replicaset's pods that are ready."),
    AGE,
    wide("Containers", "string", "Names of each container in the template."),
    wide("Images", "string", "Images referenced by each container in the template."),
    wide("Selector", "string", "Label selector for the pods the replicaset manages."),
];

/// `spec.replicas` defaults to 1 when the API server stores the object.
const DEFAULT_REPLICAS: i64 = 1;

pub(super) fn deployment_cells(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let ready = int_at(deployment, &["status", "readyReplicas"]).unwrap_or(0);
    let (containers, images) =
        containers_and_images(at(deployment, &["spec", "template", "spec"]).unwrap_or(&Value::Null));
    let selector = match selector(deployment) {
        Ok(selector) => selector.to_string(),
        Err(_) => "<invalid>".to_owned(),
    };
    vec![
        name(deployment).into(),
        format!("{ready}/{}", desired_replicas(deployment)).into(),
        int_at(deployment, &["status", "updatedReplicas"]).unwrap_or(0).into(),
        int_at(deployment, &["status", "availableReplicas"]).unwrap_or(0).into(),
        age(deployment, now).into(),
        containers.into(),
        images.into(),
        selector.into(),
    ]
}

pub(super) fn replica_set_cells(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(at(replica_set, &["spec", "template", "spec"]).unwrap_or(&Value::Null));
    let selector = match selector(replica_set).map(|selector| selector.to_string()) {
        Ok(text) if text.is_empty() => "<none>".to_owned(),
        Ok(text) => text,
        Err(_) => "<error>".to_owned(),
    };
    vec![
        name(replica_set).into(),
        desired_replicas(replica_set).into(),
        int_at(replica_set, &["status", "replicas"]).unwrap_or(0).into(),
        int_at(replica_set, &["status", "readyReplicas"]).unwrap_or(0).into(),
        age(replica_set, now).into(),
        containers.into(),
        images.into(),
        selector.into(),
    ]
}

fn desired_replicas(object: &Value) -> i64 {
    int_at(object, &["spec", "replicas"]).unwrap_or(DEFAULT_REPLICAS)
}

/// `spec.selector` as a label selector; an unset selector selects nothing and prints as "".
fn selector(object: &Value) -> Result<LabelSelector, crate::apiserver::selectors::SelectorError> {
    LabelSelector::from_json(at(object, &["spec", "selector"]).unwrap_or(&Value::Null))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{now, row};
    use super::*;

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"},
                {"name": "exporter", "image": "nginx/nginx-prometheus-exporter:1.3"},
            ]},
        })
    }

    #[test]
    fn deployment_rolling_out() {
        let deployment = json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-11-22T09:00:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}],
                },
                "template": template(),
            },
            "status": {"replicas": 4, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3},
        });
        let expected = row(&[
            "web".into(),
            "3/3".into(),
            2.into(),
            3.into(),
            "25h".into(),
            "nginx,exporter".into(),
            "nginx:1.27,nginx/nginx-prometheus-exporter:1.3".into(),
            "app=web,tier in (edge,front)".into(),
        ]);
        assert_eq!(cells_of("deployments", &deployment), expected);
    }

    #[test]
    fn deployment_without_status_or_selector() {
        let deployment = json!({
            "metadata": {"name": "new"},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i"}]}}},
        });
        let expected = row(&[
            "new".into(),
            "0/1".into(),
            0.into(),
            0.into(),
            "<unknown>".into(),
            "a".into(),
            "i".into(),
            "".into(),
        ]);
        assert_eq!(cells_of("deployments", &deployment), expected);
        let invalid = json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}}});
        assert_eq!(cells_of("deployments", &invalid)[7], "<invalid>");
    }

    #[test]
    fn replica_set_row() {
        let replica_set = json!({
            "metadata": {"name": "web-7d4b9c", "creationTimestamp": "2026-11-23T09:58:30Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 1},
        });
        let expected = row(&[
            "web-7d4b9c".into(),
            3.into(),
            3.into(),
            1.into(),
            "90s".into(),
            "nginx,exporter".into(),
            "nginx:1.27,nginx/nginx-prometheus-exporter:1.3".into(),
            "app=web,pod-template-hash=7d4b9c".into(),
        ]);
        assert_eq!(cells_of("replicasets", &replica_set), expected);
    }

    #[test]
    fn replica_set_selector_placeholders() {
        let scaled_down = json!({"spec": {"replicas": 0, "selector": {}}});
        let row = cells_of("replicasets", &scaled_down);
        assert_eq!(row[1], 0, "an explicit zero is not replaced by the default");
        assert_eq!(row[7], "<none>");
        let bad = json!({"spec": {"selector": {"matchLabels": {"app": "-web"}}}});
        assert_eq!(cells_of("replicasets", &bad)[7], "<error>");
        assert_eq!(cells_of("replicasets", &json!({}))[7], "<none>");
    }

    fn cells_of(resource: &str, object: &Value) -> Vec<Value> {
        super::super::cells(resource, object, now())
    }
}
