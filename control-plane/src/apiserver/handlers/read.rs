//! get and list, as objects or as kubectl's Table; `resourceVersion=0` lists from the watch
//! cache, every other read from the store.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Call, respond};
use crate::apiserver::options::VersionMatch;
use crate::apiserver::request::Shape;
use crate::apiserver::resources::Resource;
use crate::apiserver::selectors::{FieldSelector, LabelSelector};
use crate::apiserver::status::ApiError;
use crate::apiserver::storage::Page;
use crate::apiserver::watch_cache::CacheError;
use crate::apiserver::{Api, router, table};
use crate::registry::validation::go_quote;

pub async fn get(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let name = call.target.name.as_deref().unwrap_or_default();
    let stored = api.storage.get_existing(resource, call.target.namespace.as_deref(), name).await?;
    Ok(match call.shape {
        Shape::Table => {
            let metadata = json!({ "resourceVersion": stored.revision.to_string() });
            router::typed(table::table(resource, &[stored.object], metadata, true), table::CONTENT_TYPE)
        }
        Shape::Object => respond(StatusCode::OK, &stored.object, &[]),
    })
}

/// The label and field selectors of a request, checked against the resource.
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn parse(resource: &Resource, label_text: &str, field_text: &str) -> Result<Selectors, ApiError> {
        let labels = LabelSelector::parse(label_text).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(field_text).map_err(|e| ApiError::bad_request(e.to_string()))?;
        fields.validate_for(resource.plural).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, resource: &Resource, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels").unwrap_or(&Value::Null);
        self.labels.matches_json(labels) && self.fields.matches(resource.plural, object)
    }
}

/// The revision a store list reads at: 0 (latest, linearizable) unless the client named one
/// it must be exactly at; and the oldest revision the answer may be at.
fn list_revision(call: &Call) -> Result<(i64, i64), ApiError> {
    let named = match call.query.resource_version.as_deref() {
        None | Some("0") => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(revision) if revision >= 0 => revision,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid resource version: resourceVersion: Invalid value: {}: strconv.ParseUint: parsing {}: invalid syntax",
                    go_quote(text),
                    go_quote(text)
                )));
            }
        },
    };
    if call.query.continue_token.is_some() && named > 0 {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    Ok(match call.query.resource_version_match {
        // Any state not older than the named one: the latest is.
        Some(VersionMatch::NotOlderThan) => (0, named),
        _ => (named, 0),
    })
}

/// `resourceVersion=0` means "any recent state": the watch cache answers it (all objects, no
/// paging, as kube-apiserver's cache does). Without a resourceVersion a list is a consistent
/// read from the store; with one, or with a continue token, an exact read at that revision.
pub async fn list(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let selectors = Selectors::parse(resource, &call.query.label_selector, &call.query.field_selector)?;
    let any_recent = call.query.resource_version.as_deref() == Some("0") && call.query.continue_token.is_none();
    // resourceVersionMatch=Exact at "0" is refused when the options are decoded.
    if any_recent && let Some(response) = list_from_cache(api, call, &selectors).await? {
        return Ok(response);
    }
    list_from_store(api, call, &selectors).await
}

/// The list from the watch cache; None when the cache cannot answer now (store unreachable,
/// re-listing), which leaves it to the store.
async fn list_from_cache(api: &Api, call: &Call, selectors: &Selectors) -> Result<Option<Response>, ApiError> {
    let resource = call.target.resource;
    let prefix = resource.prefix(call.target.namespace.as_deref());
    let snapshot = match api.watch_caches.get(resource).list(prefix.as_bytes()).await {
        Ok(snapshot) => snapshot,
        Err(CacheError::NotReady(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let items: Vec<&Value> = snapshot
        .objects
        .iter()
        .map(|object| object.as_ref())
        .filter(|object| selectors.matches(resource, object))
        .collect();
    let metadata = json!({ "resourceVersion": snapshot.revision.to_string() });
    Ok(Some(match call.shape {
        Shape::Table => {
            let rows: Vec<Value> = items.into_iter().cloned().collect();
            router::typed(table::table(resource, &rows, metadata, true), table::CONTENT_TYPE)
        }
        Shape::Object => object_list(resource, &items, metadata),
    }))
}

async fn list_from_store(api: &Api, call: &Call, selectors: &Selectors) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let (revision, not_older_than) = list_revision(call)?;
    let page = api
        .storage
        .list(
            resource,
            call.target.namespace.as_deref(),
            call.query.limit,
            call.query.continue_token.as_deref(),
            revision,
        )
        .await?;
    if page.revision < not_older_than {
        return Err(ApiError::too_large_resource_version(not_older_than, page.revision));
    }
    let Page { items, revision, continue_token, remaining } = page;
    let items: Vec<Value> = items.into_iter().filter(|object| selectors.matches(resource, object)).collect();
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
        if let Some(remaining) = remaining {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(match call.shape {
        Shape::Table => router::typed(table::table(resource, &items, metadata, true), table::CONTENT_TYPE),
        Shape::Object => object_list(resource, &items, metadata),
    })
}

/// A `<Kind>List` of `items`, serialized without copying them.
fn object_list<T: Serialize>(resource: &Resource, items: &[T], metadata: Value) -> Response {
    #[derive(Serialize)]
    struct List<'a, T> {
        kind: String,
        #[serde(rename = "apiVersion")]
        api_version: String,
        metadata: Value,
        items: &'a [T],
    }
    let list = List { kind: format!("{}List", resource.kind), api_version: resource.api_version(), metadata, items };
    match serde_json::to_vec(&list) {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => ApiError::internal(format!("encoding a list: {error}")).into_response(),
    }
}
