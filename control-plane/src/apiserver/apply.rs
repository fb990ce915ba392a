//! Server-side apply and `managedFields`, the API server's side of [`crate::fieldmanager`].
//!
//! - [`server_side_apply`]: `PATCH` with `application/apply-patch+yaml`, on an object or its
//!   `/status`. It creates the object when absent; otherwise it merges the configuration into the
//!   live object, answers 409 with Kubernetes' message and `FieldManagerConflict` causes when the
//!   apply would change fields other managers own (unless `force=true`), and removes what the
//!   manager stopped applying when nobody else owns it. The result is written through the
//!   ordinary create and update paths (defaults, validation, dry run, one guarded store write).
//! - [`track_create`] and [`track_update`]: every other write records its ownership as an
//!   `Update` entry (with the subresource for `/status` and `/scale`), for the manager
//!   [`update_manager`] names.
//!
//! Field management never fails an ordinary write: if the entries cannot be computed (an object
//! that does not fit its type), the live object's entries are kept, as Kubernetes does.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::handlers::write::{Decoded, create_object, decode_body, update_object};
use super::handlers::{Call, respond};
use super::resources::Resource;
use super::status::ApiError;
use super::{Api, object};
use crate::fieldmanager::{self, Context, FieldManagerError, Shape};

/// The longest manager name Kubernetes keeps from a User-Agent.
const MAX_MANAGER_BYTES: usize = 128;

/// The manager of a non-apply write: `fieldManager`, or, as Kubernetes derives it, the
/// User-Agent up to its first `/` (printable characters, at most 128 bytes).
pub fn update_manager(call: &Call) -> String {
    if let Some(manager) = call.query.field_manager.as_deref().filter(|m| !m.is_empty()) {
        return manager.to_string();
    }
    let agent = call.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let prefix = agent.split('/').next().unwrap_or("");
    let mut manager = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if manager.len() + c.len_utf8() > MAX_MANAGER_BYTES {
            break;
        }
        manager.push(c);
    }
    manager
}

/// The field-management context of a request on `resource`, for objects with these top-level
/// fields.
fn context<'a>(call: &'a Call, api_version: &'a str, now: &'a str, objects: &[&Value]) -> Context<'a> {
    let resource = call.target.resource;
    let subresource = call.target.subresource.as_deref().unwrap_or("");
    let top_level = objects.iter().filter_map(|o| o.as_object()).flat_map(|m| m.keys().map(String::as_str));
    Context {
        shape: Shape::root(resource.group, resource.kind),
        api_version,
        subresource,
        ignored: fieldmanager::reset_fields(resource.has_status, subresource, top_level),
        now,
    }
}

/// Records `manager`'s creation of `object` (after defaulting, before the store write).
pub fn track_create(call: &Call, object: &mut Value, manager: &str) {
    let api_version = call.target.resource.api_version();
    let now = object::now_rfc3339();
    let ctx = context(call, &api_version, &now, &[object]);
    let recorded = fieldmanager::update(&ctx, None, object, manager);
    store_entries(object, recorded, None);
}

/// Records an update of `live` into `object` (after defaulting, before the no-op check and the
/// store write); the manager is [`update_manager`]'s.
pub fn track_update(call: &Call, live: &Value, object: &mut Value) {
    let api_version = call.target.resource.api_version();
    let now = object::now_rfc3339();
    let manager = update_manager(call);
    let ctx = context(call, &api_version, &now, &[live, object]);
    let recorded = fieldmanager::update(&ctx, Some(live), object, &manager);
    store_entries(object, recorded, Some(live));
}

/// For an apply, the `managedFields` it computed (`Some(None)`: none remain); `None` for every
/// other write. Taken before the update path resets parts of the object.
pub fn applied_entries(call: &Call, object: &Value) -> Option<Option<Value>> {
    call.content_type.starts_with("application/apply-patch").then(|| object.pointer("/metadata/managedFields").cloned())
}

fn store_entries(object: &mut Value, recorded: Result<Option<Value>, FieldManagerError>, live: Option<&Value>) {
    let entries = match recorded {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(%error, "managedFields not updated; keeping the stored entries");
            live.and_then(|l| l.pointer("/metadata/managedFields")).cloned()
        }
    };
    set_entries(object, entries);
}

/// Sets (or, with `None`, removes) `metadata.managedFields`.
pub fn set_entries(object: &mut Value, entries: Option<Value>) {
    let metadata = object::metadata_mut(object);
    match entries {
        Some(entries) => metadata.insert("managedFields".into(), entries),
        None => metadata.remove("managedFields"),
    };
}

/// `new` is `current` as stored (the resourceVersion aside): writing it would change nothing.
pub fn unchanged(new: &Value, current: &Value) -> bool {
    let without_version = |object: &Value| {
        let mut copy = object.clone();
        if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
        copy
    };
    without_version(new) == without_version(current)
}

/// The 409 of an apply that conflicts with other managers.
fn conflict_error(conflicts: &fieldmanager::Conflicts) -> ApiError {
    let causes: Vec<Value> = conflicts
        .causes()
        .into_iter()
        .map(|(message, field)| json!({ "reason": "FieldManagerConflict", "message": message, "field": field }))
        .collect();
    ApiError {
        code: StatusCode::CONFLICT,
        reason: "Conflict",
        message: conflicts.message(),
        details: Some(json!({ "causes": causes })),
    }
}

/// Errors of the field manager, as Kubernetes answers them.
fn apply_error(error: FieldManagerError, resource: &Resource, namespace: Option<&str>, name: &str) -> ApiError {
    match error {
        FieldManagerError::Conflicts(conflicts) => conflict_error(&conflicts),
        FieldManagerError::Typed(error) => ApiError::internal(format!(
            "failed to create typed patch object ({}/{name}; {}, Kind={}): {error}",
            namespace.unwrap_or(""),
            group_version_text(&resource.api_version()),
            resource.kind
        )),
        managed @ FieldManagerError::Managed(_) => ApiError::internal(managed.to_string()),
    }
}

/// `apps/v1` or `/v1`: how Kubernetes prints a group-version in a kind.
fn group_version_text(api_version: &str) -> String {
    if api_version.contains('/') { api_version.to_string() } else { format!("/{api_version}") }
}

/// The checks Kubernetes makes on an applied configuration before merging it.
fn check_config(resource: &Resource, config: &Value, name: &str) -> Result<(), ApiError> {
    if config.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let api_version = config.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != resource.api_version() || kind != resource.kind {
        let group_version = if api_version.is_empty() { "/".to_string() } else { group_version_text(api_version) };
        return Err(ApiError::bad_request(format!("invalid object type: {group_version}, Kind={kind}")));
    }
    if object::name(config).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request("the name of the applied object does not match the name on the URL"));
    }
    Ok(())
}

/// PATCH with `application/apply-patch+yaml`.
pub async fn server_side_apply(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let Some(manager) = call.query.field_manager.clone().filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requests require fieldManager to be set",
        ));
    };
    // Decoding checks the fields (and gives the warnings); the configuration itself is the body
    // as sent, since the decoded object has the type's required fields filled in, and an apply
    // owns exactly what it sends.
    let Decoded { object: decoded, warnings } = decode_body(resource, call, true)?;
    let config = serde_yaml::from_slice::<Value>(&call.body).ok().filter(Value::is_object).unwrap_or(decoded);
    let name = call.target.name.as_deref().unwrap_or_default();
    check_config(resource, &config, name)?;
    let status_only = call.target.subresource.as_deref() == Some("status");
    // A configuration that names a resourceVersion is a precondition: a conflict is final.
    let precondition = config.pointer("/metadata/resourceVersion").is_some_and(|v| !v.is_null());
    let namespace = call.target.namespace.as_deref();
    let api_version = resource.api_version();
    for _ in 0..super::storage::UPDATE_ATTEMPTS {
        let current = api.storage.get(resource, namespace, name).await?;
        if current.is_none() && status_only {
            return Err(ApiError::not_found(resource.group, resource.plural, name));
        }
        let now = object::now_rfc3339();
        let live = current.as_ref().map(|c| &c.object);
        let objects: Vec<&Value> = live.into_iter().chain([&config]).collect();
        let ctx = context(call, &api_version, &now, &objects);
        let applied = fieldmanager::apply(&ctx, live, &config, &manager, call.query.force)
            .map_err(|error| apply_error(error, resource, namespace, name))?;
        let Some(current) = current else {
            let mut created = applied;
            object::metadata_mut(&mut created).insert("name".into(), json!(name));
            let stored = create_object(api, call, &mut created, None, "Apply").await?;
            return Ok(respond(StatusCode::CREATED, &stored.object, &warnings));
        };
        match update_object(api, call, &current, applied, status_only).await {
            Err(error) if error.reason == "Conflict" && !precondition => continue,
            outcome => return Ok(respond(StatusCode::OK, &outcome?.object, &warnings)),
        }
    }
    Err(ApiError::conflict(resource.group, resource.plural, name))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderMap;

    use super::*;
    use crate::apiserver::request::{self, OptionsKind, Shape as ResponseShape};

    fn call(path: &str, query: &str, user_agent: Option<&str>) -> Call {
        let mut headers = HeaderMap::new();
        if let Some(agent) = user_agent {
            headers.insert(http::header::USER_AGENT, agent.parse().expect("header"));
        }
        Call {
            target: request::parse_path(path).expect("path"),
            verb: request::Verb::Update,
            query: request::Query::decode(&request::Params::parse(Some(query)).expect("params"), OptionsKind::Update)
                .expect("query"),
            shape: ResponseShape::Object,
            content_type: "application/json".into(),
            body: Bytes::new(),
            headers,
            fence: None,
        }
    }

    #[test]
    fn managers_default_to_the_user_agent_prefix() {
        let path = "/api/v1/namespaces/default/configmaps/c";
        assert_eq!(update_manager(&call(path, "fieldManager=mine", Some("kubectl/v1.32"))), "mine");
        assert_eq!(update_manager(&call(path, "", Some("kubectl/v1.32.4 (linux/amd64) kubernetes/abc"))), "kubectl");
        assert_eq!(update_manager(&call(path, "", Some("Python-urllib"))), "Python-urllib");
        assert_eq!(update_manager(&call(path, "", None)), "");
        assert_eq!(update_manager(&call(path, "", Some(&"x".repeat(300)))).len(), MAX_MANAGER_BYTES);
    }

    #[test]
    fn conflicts_answer_409_with_causes() {
        let conflicts = fieldmanager::Conflicts(vec![fieldmanager::Conflict {
            manager: fieldmanager::managed::ManagerId::update("alice", "apps/v1", ""),
            path: vec![
                fieldmanager::PathElement::Field("spec".into()),
                fieldmanager::PathElement::Field("replicas".into()),
            ],
        }]);
        let status = conflict_error(&conflicts).to_status();
        assert_eq!(status["code"], 409);
        assert_eq!(status["reason"], "Conflict");
        assert_eq!(
            status["message"],
            "Apply failed with 1 conflict: conflict with \"alice\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alice\" using apps/v1", "field": ".spec.replicas"}])
        );
    }

    #[test]
    fn applied_configurations_are_checked_as_kubernetes_checks_them() {
        let configmaps = crate::apiserver::resources::find("", "v1", "configmaps").expect("configmaps");
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert!(check_config(configmaps, &ok, "c").is_ok());
        let with_entries =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": []}});
        assert_eq!(
            check_config(configmaps, &with_entries, "c").map_err(|e| e.message),
            Err("metadata.managedFields must be nil".into())
        );
        let wrong = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(
            check_config(configmaps, &wrong, "c").map_err(|e| e.message),
            Err("invalid object type: apps/v1, Kind=ConfigMap".into())
        );
        assert!(check_config(configmaps, &ok, "other").is_err());
    }

    #[test]
    fn the_main_resource_resets_status_and_status_resets_the_rest() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}, "status": {}});
        let main = call("/api/v1/namespaces/default/pods/p", "", None);
        let ctx = context(&main, "v1", "now", &[&pod]);
        assert_eq!(ctx.ignored.to_fields_v1(), json!({"f:status": {}}));
        let status = call("/api/v1/namespaces/default/pods/p/status", "", None);
        let ctx = context(&status, "v1", "now", &[&pod]);
        assert_eq!(ctx.subresource, "status");
        assert_eq!(
            ctx.ignored.to_fields_v1(),
            json!({"f:apiVersion": {}, "f:kind": {}, "f:metadata": {}, "f:spec": {}})
        );
    }

    #[test]
    fn only_the_resource_version_may_differ_in_a_no_op() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "5"}, "data": {"k": "v"}});
        let b = json!({"metadata": {"name": "x"}, "data": {"k": "v"}});
        assert!(unchanged(&b, &a));
        assert!(!unchanged(&json!({"metadata": {"name": "x"}, "data": {"k": "w"}}), &a));
    }
}
