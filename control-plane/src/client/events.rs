//! core/v1 Events as the controllers and the scheduler record them.

use serde_json::{Value, json};

use crate::apiserver::object;
use crate::controllers::action::EventRecord;

/// The Event object for `record`, reported by `component` (e.g. "deployment-controller").
/// Named `<involved name>.<random hex>` as client-go's recorder names them (it uses a
/// timestamp in hex; anything unique does).
pub fn event_object(record: &EventRecord, component: &str) -> Value {
    let now = object::now_rfc3339();
    let involved = &record.involved;
    let namespace = involved.namespace.clone().unwrap_or_else(|| "default".to_string());
    let suffix: u64 = rand::random();
    let mut involved_object = json!({
        "apiVersion": involved.api_version,
        "kind": involved.kind,
        "name": involved.name,
        "uid": involved.uid,
    });
    if let Some(ns) = &involved.namespace {
        involved_object["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "name": format!("{}.{suffix:016x}", involved.name), "namespace": namespace },
        "involvedObject": involved_object,
        "reason": record.reason,
        "message": record.message,
        "type": record.event_type,
        "source": { "component": component },
        "reportingComponent": component,
        "reportingInstance": "",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}
