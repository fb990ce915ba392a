//! Resource requests: parse the verb and options, read the body (bounded), and hand over to
//! [`read`] (get, list), [`watch`], [`write`] (create, update, patch, delete) or
//! [`subresource`] (status, scale, binding, log, exec).

pub mod read;
pub mod subresource;
pub mod watch;
pub mod write;

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

use super::options::DeleteBody;
use super::request::{self, OptionsKind, Params, Query, Shape, Target, Verb};
use super::status::ApiError;
use super::storage::{Fence, WriteMode};
use super::{Api, MAX_BODY_BYTES};
use crate::pki::ClientIdentity;

/// One request, parsed: what handlers work from.
pub struct Call {
    pub target: Target,
    pub verb: Verb,
    pub query: Query,
    pub shape: Shape,
    pub content_type: String,
    pub body: Bytes,
    pub headers: HeaderMap,
    /// The leadership term an in-process caller (the scheduler, a controller) writes under:
    /// its writes then succeed only while that term lasts. Only in-process callers can set it
    /// (a request extension, never a header).
    pub fence: Option<Fence>,
}

impl Call {
    /// Whether this request's writes reach the store (`dryRun=All`: they do not).
    pub fn write_mode(&self) -> WriteMode {
        match self.fence {
            _ if self.query.dry_run => WriteMode::DryRun,
            Some(fence) => WriteMode::Fenced(fence),
            None => WriteMode::Commit,
        }
    }
}

pub async fn handle(
    api: Arc<Api>,
    _identity: Option<ClientIdentity>,
    target: Target,
    request: Request<Body>,
) -> Response {
    let started = std::time::Instant::now();
    let mut observed = crate::metrics::ObservedRequest {
        verb: method_label(request.method()),
        resource: target.resource,
        subresource: target.subresource.clone().unwrap_or_default(),
        scope: match (&target.name, &target.namespace) {
            (Some(_), _) => "resource",
            (None, Some(_)) => "namespace",
            (None, None) => "cluster",
        },
        dry_run: false,
    };
    let response = match prepare(target, request).await {
        Ok(call) => {
            observed.verb = verb_label(call.verb, &call.content_type);
            observed.dry_run = call.query.dry_run;
            dispatch(api.clone(), call).await.unwrap_or_else(IntoResponse::into_response)
        }
        Err(error) => error.into_response(),
    };
    api.metrics.observe_request(observed, response.status().as_u16(), started.elapsed());
    response
}

/// Kubernetes' `verb` label: the request's verb in capitals, APPLY for server-side apply.
fn verb_label(verb: Verb, content_type: &str) -> &'static str {
    match verb {
        Verb::Get => "GET",
        Verb::List => "LIST",
        Verb::Watch => "WATCH",
        Verb::Create => "POST",
        Verb::Update => "PUT",
        Verb::Patch if content_type.starts_with("application/apply-patch") => "APPLY",
        Verb::Patch => "PATCH",
        Verb::Delete => "DELETE",
        Verb::DeleteCollection => "DELETECOLLECTION",
    }
}

/// The label of a request refused before its verb was known.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

async fn prepare(target: Target, request: Request<Body>) -> Result<Call, ApiError> {
    let (parts, body) = request.into_parts();
    let params = Params::parse(parts.uri.query())?;
    let verb = request::verb(&parts.method, &target, &params)?;
    let content_type = request::content_type(&parts.headers);
    let body = read_body(body).await?;
    let query = decode_options(&params, verb, &content_type, &body)?;
    let fence = parts.extensions.get::<Fence>().copied();
    Ok(Call {
        shape: request::shape(&parts.headers),
        content_type,
        target,
        verb,
        query,
        body,
        headers: parts.headers,
        fence,
    })
}

/// The options of the request's verb. A delete with a body takes its DeleteOptions from the
/// body alone (kube-apiserver reads the query's only without one).
fn decode_options(params: &Params, verb: Verb, content_type: &str, body: &[u8]) -> Result<Query, ApiError> {
    let kind = match verb {
        Verb::Get => OptionsKind::Get,
        Verb::List | Verb::Watch => OptionsKind::List,
        Verb::Create => OptionsKind::Create,
        Verb::Update => OptionsKind::Update,
        Verb::Patch => OptionsKind::Patch { apply: content_type.starts_with("application/apply-patch") },
        Verb::Delete | Verb::DeleteCollection if !body.is_empty() => {
            let mut query = match verb {
                Verb::DeleteCollection => Query::decode(params, OptionsKind::List)?,
                _ => Query::decode(params, OptionsKind::Get)?,
            };
            query.apply_delete(&DeleteBody::parse(body)?)?;
            return Ok(query);
        }
        Verb::Delete => OptionsKind::Delete,
        Verb::DeleteCollection => OptionsKind::DeleteCollection,
    };
    Query::decode(params, kind)
}

/// The whole body, or 413 past [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY_BYTES)),
        Err(error) => Err(ApiError::bad_request(format!("reading the request body: {error}"))),
    }
}

async fn dispatch(api: Arc<Api>, call: Call) -> Result<Response, ApiError> {
    if call.target.subresource.is_some() {
        return subresource::handle(&api, &call).await;
    }
    match call.verb {
        Verb::Get => read::get(&api, &call).await,
        Verb::List => read::list(&api, &call).await,
        Verb::Watch => watch::watch(api, call).await,
        Verb::Create => write::create(&api, &call).await,
        Verb::Update => write::update(&api, &call).await,
        Verb::Patch => write::patch(&api, &call).await,
        Verb::Delete => write::delete(&api, &call).await,
        Verb::DeleteCollection => write::delete_collection(&api, &call).await,
    }
}

/// A JSON answer with a status code and optional `Warning` headers.
pub fn respond(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let mut response = (code, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response();
    for warning in warnings.iter().take(32) {
        let text = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}
