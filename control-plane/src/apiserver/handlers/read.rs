//! get and list, as objects or as kubectl's Table.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Call, respond};
use crate::apiserver::request::Shape;
use crate::apiserver::resources::Resource;
use crate::apiserver::selectors::{FieldSelector, LabelSelector};
use crate::apiserver::status::ApiError;
use crate::apiserver::storage::Page;
use crate::apiserver::{Api, router, table};

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

/// The revision a list reads at: 0 (latest, linearizable) unless the client named one.
/// `resourceVersion=0` means "any recent state", which the latest is.
fn list_revision(call: &Call) -> Result<i64, ApiError> {
    match call.query.resource_version.as_deref() {
        None | Some("0") => Ok(0),
        Some(text) => {
            text.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {text:?}")))
        }
    }
}

pub async fn list(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let selectors = Selectors::parse(resource, &call.query.label_selector, &call.query.field_selector)?;
    let page = api
        .storage
        .list(
            resource,
            call.target.namespace.as_deref(),
            call.query.limit,
            call.query.continue_token.as_deref(),
            list_revision(call)?,
        )
        .await?;
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
        Shape::Object => {
            let list = json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version(),
                "metadata": metadata,
                "items": items,
            });
            respond(StatusCode::OK, &list, &[])
        }
    })
}
