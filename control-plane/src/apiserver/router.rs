//! Routing: the fixed paths (version, health, discovery, OpenAPI) here, every resource path to
//! [`handlers`](super::handlers).

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};
use serde_json::Value;

use super::status::ApiError;
use super::{Api, discovery, handlers, openapi, request};
use crate::pki::ClientIdentity;

/// Paths anyone may read without a client certificate (kube-apiserver's
/// `system:public-info-viewer`).
fn is_public(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz")
}

/// Serves one request from a client with `identity` (None: no verified certificate).
pub async fn serve(api: Arc<Api>, identity: Option<ClientIdentity>, request: Request<Body>) -> Response {
    let path = request.uri().path().to_string();
    if identity.is_none() && !is_public(&path) {
        return ApiError::unauthorized().into_response();
    }
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    match path.as_str() {
        "/version" => json(discovery::version()),
        "/healthz" | "/livez" | "/readyz" => health(&api).await,
        "/api" if discovery::wants_aggregated(&accept) => typed(discovery::aggregated_core(), discovery::AGGREGATED),
        "/api" => json(discovery::api_versions(&api.server_address)),
        "/apis" if discovery::wants_aggregated(&accept) => typed(discovery::aggregated_groups(), discovery::AGGREGATED),
        "/apis" => json(discovery::api_group_list()),
        "/openapi/v3" => openapi::serve_v3_index(request.headers()).await,
        "/openapi/v2" => openapi::serve_v2(request.headers()).await,
        "/metrics" => {
            let text = api.metrics.encode();
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
        }
        _ => route_deeper(api, identity, request, &path).await,
    }
}

async fn route_deeper(api: Arc<Api>, identity: Option<ClientIdentity>, request: Request<Body>, path: &str) -> Response {
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        return openapi::serve_v3(rest, request.uri().query(), request.headers()).await;
    }
    if let Some(check) =
        path.strip_prefix("/healthz/").or(path.strip_prefix("/readyz/")).or(path.strip_prefix("/livez/"))
    {
        return if check == "ping" || check == "etcd" {
            health(&api).await
        } else {
            ApiError::path_not_found().into_response()
        };
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1"] => maybe_json(discovery::resource_list("", "v1")),
        ["apis", group] => maybe_json(discovery::api_group(group)),
        ["apis", group, version] => maybe_json(discovery::resource_list(group, version)),
        _ => match request::parse_path(path) {
            Some(target) => handlers::handle(api, identity, target, request).await,
            None => ApiError::path_not_found().into_response(),
        },
    }
}

/// `ok` when the store answers a read; 500 with the reason otherwise.
async fn health(api: &Api) -> Response {
    let probe = crate::kv::Range { count_only: true, ..crate::kv::Range::key(b"/registry/health") };
    match tokio::time::timeout(std::time::Duration::from_secs(2), api.storage.kv.range(probe)).await {
        Ok(Ok(_)) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response(),
        Ok(Err(error)) => health_failure(&error.to_string()),
        Err(_) => health_failure("store read timed out"),
    }
}

fn health_failure(reason: &str) -> Response {
    let body = format!("[-]etcd failed: {reason}\nhealthz check failed");
    (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

pub fn json(value: Value) -> Response {
    typed(value, "application/json")
}

pub fn typed(value: Value, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn maybe_json(value: Option<Value>) -> Response {
    match value {
        Some(value) => json(value),
        None => ApiError::path_not_found().into_response(),
    }
}
