//! create, update, patch and delete: decode (strictly when asked), default, validate, run the
//! resource's hooks, then one guarded store write.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::read::Selectors;
use super::{Call, respond};
use crate::apiserver::request::FieldValidation;
use crate::apiserver::resources::Resource;
use crate::apiserver::status::ApiError;
use crate::apiserver::storage::{Stored, UPDATE_ATTEMPTS};
use crate::apiserver::{Api, apply, hooks, object, protobuf};
use crate::registry::{defaults, strict, validation};

/// A decoded body and the field warnings it earned (fieldValidation=Warn).
pub struct Decoded {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Decodes a JSON (or YAML) body; under Strict, unknown or duplicate fields are a 400.
pub fn decode_body(resource: &Resource, call: &Call, yaml: bool) -> Result<Decoded, ApiError> {
    if call.body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if call.content_type == protobuf::CONTENT_TYPE {
        // client-go's typed clients (kubectl create configmap, …) send protobuf and never
        // retry as JSON. Protobuf holds no unknown or duplicate fields to warn about.
        let object = protobuf::decode(resource.kind, &call.body).map_err(|error| match error {
            protobuf::ProtobufError::UnsupportedKind(_) => ApiError::unsupported_media_type(&call.content_type),
            other => ApiError::bad_request(other.to_string()),
        })?;
        return Ok(Decoded { object, warnings: Vec::new() });
    }
    if !matches!(call.content_type.as_str(), "application/json" | "application/yaml" | "application/apply-patch+yaml")
        && !call.content_type.ends_with("+json")
    {
        // CBOR bodies: clients fall back to JSON on a 415.
        return Err(ApiError::unsupported_media_type(&call.content_type));
    }
    let checked = match yaml {
        true => strict::field_problems_yaml(resource.plural, &call.body),
        false => strict::field_problems(resource.plural, &call.body),
    };
    let (object, problems) = checked.map_err(|e| ApiError::bad_request(e.message()))?;
    if !object.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    match call.query.field_validation {
        FieldValidation::Strict if !problems.is_empty() => {
            Err(ApiError::bad_request(format!("strict decoding error: {}", problems.join(", "))))
        }
        FieldValidation::Warn => Ok(Decoded { object, warnings: problems }),
        _ => Ok(Decoded { object, warnings: Vec::new() }),
    }
}

/// apiVersion/kind must name this resource (filled in when absent).
fn check_type(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    for (field, expected) in [("apiVersion", api_version.as_str()), ("kind", resource.kind)] {
        match object.get(field).and_then(Value::as_str) {
            None | Some("") => object[field] = json!(expected),
            Some(given) if given == expected => {}
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({api_version}) or kind {given:?} is not {}",
                    object.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                    resource.kind
                )));
            }
        }
    }
    Ok(())
}

/// The namespace in the body must agree with the path's.
fn check_namespace(call: &Call, object: &Value) -> Result<(), ApiError> {
    if let (Some(path_namespace), Some(body_namespace)) =
        (call.target.namespace.as_deref(), object::meta_str(object, "namespace"))
    {
        if !body_namespace.is_empty() && body_namespace != path_namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Defaults, then validation (422 with causes).
fn admit(resource: &Resource, object: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    defaults::apply_defaults(resource.plural, object);
    let causes = validation::validate(resource.plural, object, old);
    if causes.is_empty() {
        return Ok(());
    }
    let name = object::name(object).unwrap_or("");
    Err(ApiError::invalid(resource.group, resource.kind, name, &causes))
}

pub async fn create(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let Decoded { mut object, warnings } = decode_body(resource, call, call.content_type.contains("yaml"))?;
    let manager = apply::update_manager(call);
    let created = create_object(api, call, &mut object, Some(&manager), "Update").await?;
    Ok(respond(StatusCode::CREATED, &created.object, &warnings))
}

/// The create path shared with server-side apply. With a `manager` and the `Update` operation
/// the creation is recorded in `managedFields`; an apply records its entry before calling.
pub async fn create_object(
    api: &Api,
    call: &Call,
    object: &mut Value,
    manager: Option<&str>,
    operation: &str,
) -> Result<Stored, ApiError> {
    let resource = call.target.resource;
    check_type(resource, object)?;
    check_namespace(call, object)?;
    let namespace = call.target.namespace.as_deref();
    object::prepare_for_create(object, namespace.filter(|_| resource.namespaced), resource.tracks_generation());
    let Some(name) = object::name(object).map(str::to_string) else {
        let causes = [validation::FieldCause {
            reason: "FieldValueRequired",
            message: "Required value: name or generateName is required".into(),
            field: "metadata.name".into(),
        }];
        return Err(ApiError::invalid(resource.group, resource.kind, "", &causes));
    };
    hooks::before_create(resource, object);
    admit(resource, object, None)?;
    hooks::check_namespace_open(api, resource, namespace, &name).await?;
    if let Some(manager) = manager.filter(|_| operation == "Update") {
        apply::track_create(call, object, manager);
    }
    hooks::create(api, resource, namespace, &name, object, call.write_mode()).await
}

/// The checks every update passes, whatever produced the new object (PUT, patch, apply).
pub async fn update_object(
    api: &Api,
    call: &Call,
    current: &Stored,
    mut object: Value,
    status_only: bool,
) -> Result<Stored, ApiError> {
    let resource = call.target.resource;
    let namespace = call.target.namespace.as_deref();
    let name = call.target.name.as_deref().unwrap_or_default();
    check_type(resource, &mut object)?;
    check_namespace(call, &object)?;
    if object::name(&object).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            object::name(&object).unwrap_or("")
        )));
    }
    let precondition = object::meta_str(&object, "resourceVersion").map(str::to_string);
    if let Some(expected) = precondition.filter(|rv| !rv.is_empty()) {
        if expected != current.revision.to_string() {
            return Err(ApiError::conflict(resource.group, resource.plural, name));
        }
    }
    // An apply computed its managedFields already (kept through a `/status` write); every other
    // write is recorded as an Update below.
    let applied_entries = apply::applied_entries(call, &object);
    if status_only {
        object::keep_all_but_status(&mut object, &current.object);
    } else if resource.has_status {
        object::keep_status(&mut object, &current.object);
    }
    object::prepare_for_update(&mut object, &current.object, resource.tracks_generation());
    hooks::before_update(resource, &mut object, &current.object);
    admit(resource, &mut object, Some(&current.object))?;
    match applied_entries {
        Some(entries) => apply::set_entries(&mut object, entries),
        None => apply::track_update(call, &current.object, &mut object),
    }
    if apply::unchanged(&object, &current.object) {
        return Ok(current.clone());
    }
    let mode = call.write_mode();
    if hooks::finalized(resource, &object) {
        return api.storage.delete(resource, namespace, name, current.revision, mode).await;
    }
    api.storage.update(resource, namespace, name, &object, current.revision, mode).await
}

pub async fn update(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let Decoded { object, warnings } = decode_body(resource, call, call.content_type.contains("yaml"))?;
    let name = call.target.name.as_deref().unwrap_or_default();
    let current = api.storage.get_existing(resource, call.target.namespace.as_deref(), name).await?;
    let status_only = call.target.subresource.as_deref() == Some("status");
    let updated = update_object(api, call, &current, object, status_only).await?;
    Ok(respond(StatusCode::OK, &updated.object, &warnings))
}

/// The patch types kubectl and clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub fn patch_type(content_type: &str) -> Result<PatchType, ApiError> {
    match content_type {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// `current` with `patch` applied.
pub fn apply_patch(resource: &Resource, kind: PatchType, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let parse_error = |e: serde_json::Error| ApiError::bad_request(format!("error decoding patch: {e}"));
    match kind {
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_slice(body).map_err(parse_error)?;
            let mut patched = current.clone();
            json_patch::patch(&mut patched, &operations).map_err(|e| {
                ApiError::invalid_patch(format!("the server rejected our request due to an error in our request: {e}"))
            })?;
            Ok(patched)
        }
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body).map_err(parse_error)?;
            let mut patched = current.clone();
            json_patch::merge(&mut patched, &patch);
            Ok(patched)
        }
        PatchType::Strategic => {
            let patch: Value = serde_json::from_slice(body).map_err(parse_error)?;
            crate::patch::strategic::apply(resource.group, resource.kind, current, &patch)
                .map_err(|e| ApiError::invalid_patch(e.to_string()))
        }
        PatchType::Apply => Err(ApiError::internal("apply patches go through server-side apply")),
    }
}

pub async fn patch(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let kind = patch_type(&call.content_type)?;
    if kind == PatchType::Apply {
        return apply::server_side_apply(api, call).await;
    }
    let warnings = patch_field_warnings(resource, call, kind)?;
    let namespace = call.target.namespace.as_deref();
    let name = call.target.name.as_deref().unwrap_or_default();
    let status_only = call.target.subresource.as_deref() == Some("status");
    // Retried on conflict unless the patch itself names a resourceVersion.
    for _ in 0..UPDATE_ATTEMPTS {
        let current = api.storage.get_existing(resource, namespace, name).await?;
        let patched = apply_patch(resource, kind, &current.object, &call.body)?;
        match update_object(api, call, &current, patched, status_only).await {
            Err(error) if error.reason == "Conflict" && !patch_names_version(&call.body) => continue,
            outcome => return Ok(respond(StatusCode::OK, &outcome?.object, &warnings)),
        }
    }
    Err(ApiError::conflict(resource.group, resource.plural, name))
}

/// Unknown or duplicate fields in a merge or strategic patch body (JSON patches have no
/// object shape to check).
fn patch_field_warnings(resource: &Resource, call: &Call, kind: PatchType) -> Result<Vec<String>, ApiError> {
    if kind == PatchType::Json || call.query.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let (_, problems) =
        strict::field_problems(resource.plural, &call.body).map_err(|e| ApiError::bad_request(e.message()))?;
    let problems: Vec<String> = problems.into_iter().filter(|p| !p.contains("$")).collect();
    if call.query.field_validation == FieldValidation::Strict && !problems.is_empty() {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", problems.join(", "))));
    }
    Ok(problems)
}

fn patch_names_version(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|patch| patch.pointer("/metadata/resourceVersion").cloned())
        .is_some_and(|rv| !rv.is_null())
}

pub async fn delete(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let namespace = call.target.namespace.as_deref();
    let name = call.target.name.as_deref().unwrap_or_default();
    let current = api.storage.get_existing(resource, namespace, name).await?;
    let uid = object::meta_str(&current.object, "uid").map(str::to_string);
    let preconditions = call.query.preconditions.clone().unwrap_or_default();
    if preconditions.uid.as_ref().is_some_and(|expected| Some(expected) != uid.as_ref()) {
        return Err(ApiError::conflict(resource.group, resource.plural, name));
    }
    if preconditions.resource_version.as_ref().is_some_and(|rv| *rv != current.revision.to_string()) {
        return Err(ApiError::conflict(resource.group, resource.plural, name));
    }
    let options = hooks::DeleteOptions {
        grace_period_seconds: call.query.grace_period_seconds,
        propagation_policy: propagation(call),
    };
    let deletion = hooks::delete(api, resource, namespace, name, current, &options, call.write_mode()).await?;
    Ok(respond(StatusCode::OK, &deletion_response(resource, &deletion), &[]))
}

/// What a DELETE answers: the object while its deletion is pending; once it is gone, the
/// object for the resources Kubernetes returns it for (pods, services, namespaces, service
/// accounts: `ReturnDeletedObject`), otherwise a Success Status naming it.
fn deletion_response(resource: &Resource, deletion: &hooks::Deletion) -> Value {
    let object = &deletion.stored.object;
    let returns_object = matches!(resource.plural, "pods" | "services" | "namespaces" | "serviceaccounts");
    if !deletion.immediate || returns_object {
        return object.clone();
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": object::meta_str(object, "name").unwrap_or_default(),
            "group": resource.group,
            "kind": resource.plural,
            "uid": object::meta_str(object, "uid").unwrap_or_default(),
        },
    })
}

pub async fn delete_collection(api: &Api, call: &Call) -> Result<Response, ApiError> {
    use futures::{StreamExt, TryStreamExt};
    let resource = call.target.resource;
    let selectors = Selectors::parse(resource, &call.query.label_selector, &call.query.field_selector)?;
    let page = api.storage.list(resource, call.target.namespace.as_deref(), 0, None, 0).await?;
    let mode = call.write_mode();
    let options = hooks::DeleteOptions {
        grace_period_seconds: call.query.grace_period_seconds,
        propagation_policy: propagation(call),
    };
    let matching: Vec<Value> = page.items.into_iter().filter(|o| selectors.matches(resource, o)).collect();
    let deleted: Vec<Option<Value>> = futures::stream::iter(matching)
        .map(|object| delete_listed(api, resource, object, &options, mode))
        .buffered(DELETE_COLLECTION_WORKERS)
        .try_collect()
        .await?;
    let list = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": { "resourceVersion": page.revision.to_string() },
        "items": deleted.into_iter().flatten().collect::<Vec<_>>(),
    });
    Ok(respond(StatusCode::OK, &list, &[]))
}

/// Items of a collection delete removed at once (kube-apiserver deletes a collection's items
/// from parallel workers too); each is its own store txn, and the store batches them.
const DELETE_COLLECTION_WORKERS: usize = 16;

/// Deletes one listed item of a collection delete: the listed version first; one changed since
/// (a controller's status write) is read again and deleted as it is now, as kube-apiserver's
/// per-item deletes retry. None when it was gone already.
async fn delete_listed(
    api: &Api,
    resource: &Resource,
    object: Value,
    options: &hooks::DeleteOptions<'_>,
    mode: crate::apiserver::storage::WriteMode,
) -> Result<Option<Value>, ApiError> {
    let Some(name) = object::name(&object).map(str::to_string) else { return Ok(None) };
    let namespace = object::meta_str(&object, "namespace").map(str::to_string);
    let revision = object::meta_str(&object, "resourceVersion").and_then(|rv| rv.parse().ok()).unwrap_or(0);
    let mut current = Stored { object, revision };
    for _ in 0..UPDATE_ATTEMPTS {
        match hooks::delete(api, resource, namespace.as_deref(), &name, current, options, mode).await {
            Ok(deletion) => return Ok(Some(deletion.stored.object)),
            Err(error) if error.code == StatusCode::NOT_FOUND => return Ok(None),
            Err(error) if error.reason == "Conflict" => {
                match api.storage.get(resource, namespace.as_deref(), &name).await? {
                    Some(now) => current = now,
                    None => return Ok(None),
                }
            }
            Err(error) => return Err(error),
        }
    }
    Err(ApiError::conflict(resource.group, resource.plural, &name))
}

/// The delete's propagation policy: `propagationPolicy`, or the deprecated `orphanDependents`.
fn propagation(call: &Call) -> Option<&str> {
    match (call.query.propagation_policy.as_deref(), call.query.orphan_dependents) {
        (Some(policy), _) => Some(policy),
        (None, Some(true)) => Some("Orphan"),
        (None, Some(false)) => Some("Background"),
        (None, None) => None,
    }
}
