//! Subresources: `status` (the status half of an object), `scale` (an autoscaling/v1 Scale
//! over `spec.replicas`), `binding` (assigns a pod to a node), `eviction` (a delete that a
//! PodDisruptionBudget could refuse; Keel serves none, so every eviction is allowed),
//! `finalize` (a namespace's `spec.finalizers`, emptied by the namespace controller), and
//! `log`/`exec`, which need a node agent and answer so until agents serve them.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::write::{PatchType, apply_patch, patch_type, update, update_object};
use super::{Call, respond};
use crate::apiserver::request::Verb;
use crate::apiserver::status::ApiError;
use crate::apiserver::storage::{Stored, UPDATE_ATTEMPTS};
use crate::apiserver::{Api, object};

pub async fn handle(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let subresource = call.target.subresource.as_deref().unwrap_or_default();
    if !resource.subresources().contains(&subresource) {
        return Err(ApiError::path_not_found());
    }
    match (subresource, call.verb) {
        ("status", Verb::Get) => super::read::get(api, call).await,
        ("status", Verb::Update) => update(api, call).await,
        ("status", Verb::Patch) => super::write::patch(api, call).await,
        ("scale", Verb::Get | Verb::Update | Verb::Patch) => scale(api, call).await,
        ("binding", Verb::Create) => bind(api, call).await,
        ("eviction", Verb::Create) => evict(api, call).await,
        ("finalize", Verb::Update) => finalize(api, call).await,
        ("log" | "exec", _) => Err(node_agent_needed(api, call).await),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({subresource})"
        ))),
    }
}

/// The Scale view of a deployment or replicaset.
fn scale_of(stored: &Stored) -> Value {
    let object = &stored.object;
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object::meta_str(object, "name"),
            "namespace": object::meta_str(object, "namespace"),
            "uid": object::meta_str(object, "uid"),
            "resourceVersion": stored.revision.to_string(),
            "creationTimestamp": object::meta_str(object, "creationTimestamp"),
        },
        "spec": { "replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1) },
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

async fn scale(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let namespace = call.target.namespace.as_deref();
    let name = call.target.name.as_deref().unwrap_or_default();
    for _ in 0..UPDATE_ATTEMPTS {
        let current = api.storage.get_existing(resource, namespace, name).await?;
        let scale = scale_of(&current);
        let wanted = match call.verb {
            Verb::Get => return Ok(respond(StatusCode::OK, &scale, &[])),
            Verb::Update => serde_json::from_slice::<Value>(&call.body)
                .map_err(|e| ApiError::bad_request(format!("invalid Scale: {e}")))?,
            _ => match patch_type(&call.content_type)? {
                PatchType::Apply => return Err(ApiError::unsupported_media_type(&call.content_type)),
                kind => apply_patch(resource, kind, &scale, &call.body)?,
            },
        };
        let Some(replicas) = wanted.pointer("/spec/replicas").and_then(Value::as_i64) else {
            let causes = [crate::registry::validation::FieldCause {
                reason: "FieldValueRequired",
                message: "Required value".into(),
                field: "spec.replicas".into(),
            }];
            return Err(ApiError::invalid("autoscaling", "Scale", name, &causes));
        };
        let expected = wanted.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
        if !expected.is_empty() && expected != current.revision.to_string() {
            return Err(ApiError::conflict(resource.group, resource.plural, name));
        }
        let mut updated = current.object.clone();
        updated["spec"]["replicas"] = json!(replicas);
        object::metadata_mut(&mut updated).remove("resourceVersion");
        match update_object(api, call, &current, updated, false).await {
            Err(error) if error.reason == "Conflict" && expected.is_empty() => continue,
            outcome => return Ok(respond(StatusCode::OK, &scale_of(&outcome?), &[])),
        }
    }
    Err(ApiError::conflict(resource.group, resource.plural, name))
}

/// POST pods/<name>/binding: sets `spec.nodeName` once.
async fn bind(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let namespace = call.target.namespace.as_deref();
    let name = call.target.name.as_deref().unwrap_or_default();
    let binding: Value =
        serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("invalid Binding: {e}")))?;
    let Some(node) = binding.pointer("/target/name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        let causes = [crate::registry::validation::FieldCause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: "target.name".into(),
        }];
        return Err(ApiError::invalid("", "Binding", name, &causes));
    };
    let node = node.to_string();
    api.storage
        .guaranteed_update(resource, namespace, name, call.write_mode(), |current| {
            let mut pod = current.object;
            if object::meta_str(&pod, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict("", "pods", name));
            }
            match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(assigned) if !assigned.is_empty() => Err(ApiError {
                    message: format!("pod {name} is already assigned to node \"{assigned}\""),
                    ..ApiError::conflict("", "pods", name)
                }),
                _ => {
                    pod["spec"]["nodeName"] = json!(node);
                    set_scheduled_condition(&mut pod);
                    object::metadata_mut(&mut pod).remove("resourceVersion");
                    Ok(Some(pod))
                }
            }
        })
        .await?;
    let status = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 });
    Ok(respond(StatusCode::CREATED, &status, &[]))
}

fn set_scheduled_condition(pod: &mut Value) {
    let condition = json!({ "type": "PodScheduled", "status": "True", "lastTransitionTime": object::now_rfc3339() });
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conditions = pod["status"].as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(conditions)) = conditions {
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(condition);
    }
}

/// Logs and exec are served by the pod's node agent.
async fn node_agent_needed(api: &Api, call: &Call) -> ApiError {
    let name = call.target.name.as_deref().unwrap_or_default();
    match api.storage.get_existing(call.target.resource, call.target.namespace.as_deref(), name).await {
        Err(error) => error,
        Ok(pod) => match pod.object.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            None => ApiError::bad_request(format!("pod {name} does not have a host assigned")),
            Some(node) => ApiError::unavailable(format!("the node agent of {node} does not serve logs or exec yet")),
        },
    }
}

/// POST pods/<name>/eviction (policy/v1 Eviction): deletes the pod with the eviction's
/// deleteOptions. Answers 201 with a Success Status, as Kubernetes does.
async fn evict(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let namespace = call.target.namespace.as_deref();
    let name = call.target.name.as_deref().unwrap_or_default();
    let eviction: Value =
        serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("invalid Eviction: {e}")))?;
    if let Some(named) = eviction.pointer("/metadata/name").and_then(Value::as_str) {
        if named != name {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object".to_string()));
        }
    }
    let options = eviction.get("deleteOptions").cloned().unwrap_or(Value::Null);
    let current = api.storage.get_existing(resource, namespace, name).await?;
    let precondition = |field: &str| options.pointer(&format!("/preconditions/{field}")).and_then(Value::as_str);
    if precondition("uid").is_some_and(|uid| Some(uid) != object::meta_str(&current.object, "uid")) {
        return Err(ApiError::conflict(resource.group, resource.plural, name));
    }
    if precondition("resourceVersion").is_some_and(|rv| rv != current.revision.to_string()) {
        return Err(ApiError::conflict(resource.group, resource.plural, name));
    }
    let grace = options.get("gracePeriodSeconds").and_then(Value::as_i64);
    let dry_run = options.get("dryRun").and_then(Value::as_array).is_some_and(|d| d.iter().any(|v| v == "All"));
    let mode = if dry_run { crate::apiserver::storage::WriteMode::DryRun } else { call.write_mode() };
    let propagation = options.get("propagationPolicy").and_then(Value::as_str);
    let options =
        crate::apiserver::hooks::DeleteOptions { grace_period_seconds: grace, propagation_policy: propagation };
    crate::apiserver::hooks::delete(api, resource, namespace, name, current, &options, mode).await?;
    let status = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 });
    Ok(respond(StatusCode::CREATED, &status, &[]))
}

/// PUT namespaces/<name>/finalize: only `spec.finalizers` changes (Kubernetes' finalize
/// strategy). A terminating namespace left with no finalizer of either kind is deleted then,
/// as Kubernetes' namespace store does on such an update.
async fn finalize(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let name = call.target.name.as_deref().unwrap_or_default();
    let sent: Value =
        serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("invalid Namespace: {e}")))?;
    if object::name(&sent).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            object::name(&sent).unwrap_or("")
        )));
    }
    let finalizers = match sent.pointer("/spec/finalizers") {
        None | Some(Value::Null) => json!([]),
        Some(list @ Value::Array(_)) => list.clone(),
        Some(_) => return Err(ApiError::bad_request("spec.finalizers must be a list of strings".to_string())),
    };
    let expected = object::meta_str(&sent, "resourceVersion").filter(|rv| !rv.is_empty()).map(str::to_string);
    let mode = call.write_mode();
    for _ in 0..UPDATE_ATTEMPTS {
        let current = api.storage.get_existing(resource, None, name).await?;
        if expected.as_ref().is_some_and(|rv| *rv != current.revision.to_string()) {
            return Err(ApiError::conflict(resource.group, resource.plural, name));
        }
        let mut namespace = current.object.clone();
        crate::apiserver::hooks::set_namespace_finalizers(&mut namespace, finalizers.clone());
        let causes = crate::registry::validation::validate(resource.plural, &namespace, Some(&current.object));
        if !causes.is_empty() {
            return Err(ApiError::invalid(resource.group, resource.kind, name, &causes));
        }
        object::metadata_mut(&mut namespace).remove("resourceVersion");
        let outcome = if crate::apiserver::hooks::finalized(resource, &namespace) {
            api.storage.delete(resource, None, name, current.revision, mode).await.map(|_| {
                // The answer is the namespace as its finalize left it.
                Stored { object: namespace, revision: current.revision }
            })
        } else {
            api.storage.update(resource, None, name, &namespace, current.revision, mode).await
        };
        match outcome {
            Err(error) if error.reason == "Conflict" && expected.is_none() => continue,
            outcome => return Ok(respond(StatusCode::OK, &outcome?.object, &[])),
        }
    }
    Err(ApiError::conflict(resource.group, resource.plural, name))
}
