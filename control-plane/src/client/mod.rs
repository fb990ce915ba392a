//! The in-process API client of the scheduler and the controllers.
//!
//! A call is an ordinary HTTP request handed straight to the API server's router in the same
//! process ([`router::serve`]): the same decoding, defaulting, admission, validation, field
//! management and storage as kubectl's requests, without TLS, sockets or a second process.
//! A client made with [`Client::fenced`] carries its leadership term as a request extension,
//! and the API server adds the fence to every write's store txn (`storage::WriteMode::Fenced`).

mod events;

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

pub use events::event_object;

use crate::apiserver::Api;
use crate::apiserver::router;
use crate::apiserver::storage::{FENCED_MESSAGE, Fence};
use crate::controllers::action::{Action, ObjectRef, PatchType, Plan, Propagation, ResourceRef};
use crate::pki::ClientIdentity;

/// Responses larger than this are refused (a list of 10,000 pods is about 7 MiB).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ClientError {
    /// The API server answered with a Status error.
    #[error("{code} {reason}: {message}")]
    Status { code: u16, reason: String, message: String },
    /// The write was refused because this holder's leadership is over: never retry it.
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("response: {0}")]
    Response(String),
}

impl ClientError {
    pub fn code(&self) -> u16 {
        match self {
            ClientError::Status { code, .. } => *code,
            ClientError::Fenced(_) => 403,
            ClientError::Response(_) => 500,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == 404
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Status { reason, .. } if reason == "Conflict")
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, ClientError::Status { reason, .. } if reason == "AlreadyExists")
    }

    /// A create refused because its namespace is being deleted (Kubernetes' NamespaceTerminating
    /// cause): the controllers let such a create go, as Kubernetes' do.
    pub fn is_namespace_terminating(&self) -> bool {
        matches!(self, ClientError::Status { code: 403, message, .. } if message.ends_with("because it is being terminated"))
    }
}

/// A caller inside the master: an identity, a user agent (the default field manager) and
/// maybe a fence.
#[derive(Clone)]
pub struct Client {
    api: Arc<Api>,
    identity: ClientIdentity,
    user_agent: &'static str,
    fence: Option<Fence>,
}

impl Client {
    pub fn new(api: Arc<Api>, user: &str, user_agent: &'static str) -> Client {
        let identity = ClientIdentity { user: user.to_string(), groups: vec!["system:masters".to_string()] };
        Client { api, identity, user_agent, fence: None }
    }

    /// The same client, writing under `fence`.
    pub fn fenced(&self, fence: Fence) -> Client {
        Client { fence: Some(fence), ..self.clone() }
    }

    pub fn fence(&self) -> Option<Fence> {
        self.fence
    }

    /// The master's metrics (the components report theirs there).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.api.metrics
    }

    /// One request; the JSON answer or the Status error.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let bytes = body.map(Value::to_string).unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, self.user_agent)
            .body(Body::from(bytes))
            .map_err(|error| ClientError::Response(format!("building the request: {error}")))?;
        if let Some(fence) = self.fence {
            request.extensions_mut().insert(fence);
        }
        let response = router::serve(self.api.clone(), Some(self.identity.clone()), request).await;
        let status = response.status();
        let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES);
        let bytes = limited
            .collect()
            .await
            .map_err(|error| ClientError::Response(format!("reading the response: {error}")))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|error| ClientError::Response(format!("{status}: not JSON: {error}")))?;
        if status.is_success() {
            return Ok(value);
        }
        Err(status_error(status, &value))
    }

    pub async fn get(&self, target: &ObjectRef) -> Result<Value, ClientError> {
        self.request(Method::GET, &object_path(target, None), JSON, None).await
    }

    pub async fn create(
        &self,
        resource: ResourceRef,
        namespace: Option<&str>,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.request(Method::POST, &collection_path(resource, namespace), JSON, Some(object)).await
    }

    pub async fn update(&self, target: &ObjectRef, object: &Value) -> Result<Value, ClientError> {
        self.request(Method::PUT, &object_path(target, None), JSON, Some(object)).await
    }

    pub async fn update_subresource(
        &self,
        target: &ObjectRef,
        subresource: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.request(Method::PUT, &object_path(target, Some(subresource)), JSON, Some(object)).await
    }

    pub async fn patch(
        &self,
        target: &ObjectRef,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        let content_type = match patch_type {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        };
        self.request(Method::PATCH, &object_path(target, subresource), content_type, Some(patch)).await
    }

    pub async fn delete(
        &self,
        target: &ObjectRef,
        uid: Option<&str>,
        propagation: Option<Propagation>,
        grace_period_seconds: Option<i64>,
    ) -> Result<Value, ClientError> {
        let mut options = serde_json::json!({ "kind": "DeleteOptions", "apiVersion": "v1" });
        if let Some(uid) = uid {
            options["preconditions"] = serde_json::json!({ "uid": uid });
        }
        if let Some(propagation) = propagation {
            options["propagationPolicy"] = Value::from(match propagation {
                Propagation::Background => "Background",
                Propagation::Foreground => "Foreground",
                Propagation::Orphan => "Orphan",
            });
        }
        if let Some(grace) = grace_period_seconds {
            options["gracePeriodSeconds"] = Value::from(grace);
        }
        self.request(Method::DELETE, &object_path(target, None), JSON, Some(&options)).await
    }

    /// POST pods/<name>/binding: assigns the pod (checked against `uid`) to `node`.
    pub async fn bind(&self, namespace: &str, name: &str, uid: &str, node: &str) -> Result<Value, ClientError> {
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": name, "namespace": namespace, "uid": uid },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node },
        });
        let target = ObjectRef {
            resource: crate::controllers::action::PODS,
            namespace: Some(namespace.into()),
            name: name.into(),
        };
        self.request(Method::POST, &object_path(&target, Some("binding")), JSON, Some(&binding)).await
    }

    /// Carries out one action.
    pub async fn run(&self, action: &Action) -> Result<Value, ClientError> {
        match action {
            Action::Create { resource, namespace, object } => {
                self.create(*resource, namespace.as_deref(), object).await
            }
            Action::Update { target, object } => self.update(target, object).await,
            Action::UpdateStatus { target, object } => self.update_subresource(target, "status", object).await,
            Action::Patch { target, subresource, patch_type, patch } => {
                self.patch(target, *subresource, *patch_type, patch).await
            }
            Action::Delete { target, uid, propagation } => {
                self.delete(target, uid.as_deref(), *propagation, None).await
            }
            Action::ForceDelete { target, uid } => {
                self.delete(target, Some(uid), Some(Propagation::Background), Some(0)).await
            }
            Action::Event(record) => {
                let event = event_object(record, self.user_agent);
                let namespace = record.involved.namespace.clone().unwrap_or_else(|| "default".to_string());
                self.create(crate::controllers::action::EVENTS, Some(&namespace), &event).await
            }
        }
    }

    /// Carries out a plan in order. A failed event is logged and skipped; any other failure
    /// stops the plan and says which action failed (the caller requeues the key; a fenced
    /// failure ends the leadership).
    pub async fn run_plan(&self, plan: &Plan) -> Result<(), PlanFailure> {
        for (index, action) in plan.actions.iter().enumerate() {
            match self.run(action).await {
                Ok(_) => {}
                Err(error @ ClientError::Fenced(_)) => return Err(PlanFailure { index, error }),
                Err(error) if matches!(action, Action::Event(_)) => {
                    tracing::debug!(%error, "an event was not recorded");
                }
                // Nothing can be created in a terminating namespace; its content is going anyway.
                Err(error) if error.is_namespace_terminating() && matches!(action, Action::Create { .. }) => {
                    tracing::debug!(%error, "a create in a terminating namespace was let go");
                }
                // Gone already is what a delete wanted.
                Err(error)
                    if error.is_not_found() && matches!(action, Action::Delete { .. } | Action::ForceDelete { .. }) => {
                }
                Err(error) => return Err(PlanFailure { index, error }),
            }
        }
        Ok(())
    }
}

/// The action of a plan that failed (`plan.actions[index]`; the ones after it were not run).
#[derive(Debug)]
pub struct PlanFailure {
    pub index: usize,
    pub error: ClientError,
}

const JSON: &str = "application/json";

fn status_error(status: StatusCode, value: &Value) -> ClientError {
    let message = value.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
    if status == StatusCode::FORBIDDEN && message.starts_with(FENCED_MESSAGE) {
        return ClientError::Fenced(message);
    }
    let reason = value.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
    ClientError::Status { code: status.as_u16(), reason, message }
}

/// `/api/v1/namespaces/ns/pods` or `/apis/apps/v1/deployments`.
pub fn collection_path(resource: ResourceRef, namespace: Option<&str>) -> String {
    let root = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    match namespace {
        Some(namespace) => format!("{root}/namespaces/{namespace}/{}", resource.plural),
        None => format!("{root}/{}", resource.plural),
    }
}

pub fn object_path(target: &ObjectRef, subresource: Option<&str>) -> String {
    let base = format!("{}/{}", collection_path(target.resource, target.namespace.as_deref()), target.name);
    match subresource {
        Some(subresource) => format!("{base}/{subresource}"),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::action::{DEPLOYMENTS, NODES, PODS};

    #[test]
    fn paths_follow_the_api_layout() {
        assert_eq!(collection_path(PODS, Some("default")), "/api/v1/namespaces/default/pods");
        assert_eq!(collection_path(NODES, None), "/api/v1/nodes");
        let web = ObjectRef { resource: DEPLOYMENTS, namespace: Some("team".into()), name: "web".into() };
        assert_eq!(object_path(&web, Some("status")), "/apis/apps/v1/namespaces/team/deployments/web/status");
    }

    #[test]
    fn a_fenced_refusal_is_told_apart_from_other_403s() {
        let fenced = serde_json::json!({ "message": format!("{FENCED_MESSAGE}: kube-scheduler lost it"), "reason": "Forbidden" });
        assert!(matches!(status_error(StatusCode::FORBIDDEN, &fenced), ClientError::Fenced(_)));
        let other = serde_json::json!({ "message": "nodes may not", "reason": "Forbidden" });
        assert!(matches!(status_error(StatusCode::FORBIDDEN, &other), ClientError::Status { code: 403, .. }));
    }
}
