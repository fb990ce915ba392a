//! Server-side apply and `managedFields`.
//!
//! Keel's apply: create when absent; otherwise merge the applied configuration into the live
//! object with strategic-merge rules (lists keyed by their merge keys, so items other managers
//! added survive), after removing the fields this manager applied last time but no longer
//! applies. Each manager's applied field set is recorded in `managedFields` (FieldsV1 form).
//! Ownership conflicts between managers are not detected: the last apply wins, as with
//! `force=true`.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::handlers::write::{Decoded, create_object, decode_body, update_object};
use super::handlers::{Call, respond};
use super::status::ApiError;
use super::{Api, object};

/// Deepest level of fields recorded (bounds work on hostile input).
const MAX_FIELD_DEPTH: usize = 32;

/// The FieldsV1 set of an applied configuration: `{"f:spec": {"f:replicas": {}}}`. Lists are
/// recorded as whole fields.
pub fn field_set(config: &Value) -> Value {
    fn walk(value: &Value, depth: usize) -> Value {
        let mut set = Map::new();
        if let (Some(map), true) = (value.as_object(), depth < MAX_FIELD_DEPTH) {
            for (key, child) in map {
                if matches!(key.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                set.insert(format!("f:{key}"), if child.is_object() { walk(child, depth + 1) } else { json!({}) });
            }
        }
        Value::Object(set)
    }
    let mut set = walk(config, 0);
    if let Some(metadata) = set.get_mut("f:metadata").and_then(Value::as_object_mut) {
        for server_owned in ["f:name", "f:namespace", "f:resourceVersion", "f:uid", "f:managedFields"] {
            metadata.remove(server_owned);
        }
    }
    set
}

/// Removes from `object` the fields in `previous` that are not in `current` (both FieldsV1).
fn remove_dropped_fields(object: &mut Value, previous: &Value, current: &Value, depth: usize) {
    let (Some(object_map), Some(previous)) = (object.as_object_mut(), previous.as_object()) else { return };
    if depth >= MAX_FIELD_DEPTH {
        return;
    }
    for (field, previous_children) in previous {
        let Some(key) = field.strip_prefix("f:") else { continue };
        match current.get(field) {
            None => {
                object_map.remove(key);
            }
            Some(current_children) => {
                if let Some(child) = object_map.get_mut(key) {
                    remove_dropped_fields(child, previous_children, current_children, depth + 1);
                }
            }
        }
    }
}

/// Records (or replaces) `manager`'s entry in `managedFields`; without `fields`, the manager
/// is recorded as owning every field of the object (clients such as kubectl read fieldsV1 of
/// every entry, so it is never left out).
pub fn record_manager(object: &mut Value, manager: &str, operation: &str, api_version: &str, fields: Option<Value>) {
    let fields = fields.unwrap_or_else(|| {
        let mut owned = field_set(object);
        if let Some(map) = owned.as_object_mut() {
            map.remove("f:status");
        }
        owned
    });
    let now = object::now_rfc3339();
    let metadata = object::metadata_mut(object);
    let mut entries: Vec<Value> = metadata.get("managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    entries.retain(|entry| !(entry["manager"] == manager && entry["operation"] == operation));
    let entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    entries.push(entry);
    metadata.insert("managedFields".into(), Value::Array(entries));
}

fn applied_fields(object: &Value, manager: &str) -> Option<Value> {
    object
        .pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|entry| entry["manager"] == manager && entry["operation"] == "Apply")
        .and_then(|entry| entry.get("fieldsV1").cloned())
}

/// PATCH with `application/apply-patch+yaml`.
pub async fn server_side_apply(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let Some(manager) = call.query.field_manager.clone().filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requests require fieldManager to be set",
        ));
    };
    let Decoded { object: config, warnings } = decode_body(resource, call, true)?;
    let name = call.target.name.as_deref().unwrap_or_default();
    if object::name(&config).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request("the name of the applied object does not match the name on the URL"));
    }
    let fields = field_set(&config);
    let namespace = call.target.namespace.as_deref();
    for _ in 0..super::storage::UPDATE_ATTEMPTS {
        let Some(current) = api.storage.get(resource, namespace, name).await? else {
            let mut created = config.clone();
            object::metadata_mut(&mut created).insert("name".into(), json!(name));
            record_manager(&mut created, &manager, "Apply", &resource.api_version(), Some(fields.clone()));
            let stored = create_object(api, call, &mut created, None, "Apply").await?;
            return Ok(respond(StatusCode::CREATED, &stored.object, &warnings));
        };
        let mut merged = current.object.clone();
        if let Some(previous) = applied_fields(&current.object, &manager) {
            remove_dropped_fields(&mut merged, &previous, &fields, 0);
        }
        let mut applied = crate::patch::strategic::apply(resource.group, resource.kind, &merged, &config)
            .map_err(|e| ApiError::invalid_patch(e.to_string()))?;
        record_manager(&mut applied, &manager, "Apply", &resource.api_version(), Some(fields.clone()));
        object::metadata_mut(&mut applied).remove("resourceVersion");
        match update_object(api, call, &current, applied, false).await {
            Err(error) if error.reason == "Conflict" => continue,
            outcome => return Ok(respond(StatusCode::OK, &outcome?.object, &warnings)),
        }
    }
    Err(ApiError::conflict(resource.group, resource.plural, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_name_every_applied_field() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}});
        assert_eq!(field_set(&config), json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:k": {}}}));
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let mut live = json!({"data": {"k": "v", "gone": "x", "other": "y"}, "metadata": {"name": "c"}});
        let previous = json!({"f:data": {"f:k": {}, "f:gone": {}}});
        let current = json!({"f:data": {"f:k": {}}});
        remove_dropped_fields(&mut live, &previous, &current, 0);
        assert_eq!(live["data"], json!({"k": "v", "other": "y"}), "fields of other managers stay");
    }

    #[test]
    fn a_manager_has_one_entry_per_operation() {
        let mut object = json!({"metadata": {"name": "c"}});
        record_manager(&mut object, "kubectl", "Apply", "v1", Some(json!({})));
        record_manager(&mut object, "kubectl", "Apply", "v1", Some(json!({"f:data": {}})));
        record_manager(&mut object, "other", "Update", "v1", None);
        let entries = object["metadata"]["managedFields"].as_array().expect("entries");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["fieldsV1"], json!({"f:data": {}}));
    }
}
