//! OpenAPI 3.0: one document per group-version (`/openapi/v3/apis/apps/v1`), holding that
//! group-version's paths and exactly the schemas they reach, as Kubernetes serves them.

use serde_json::{Map, Value, json};

use super::paths::{self, Operation, PathItem, Payload, Reply};
use super::schemas::{Builder, Dialect};
use super::{OpenApiError, group_versions, info};
use crate::apiserver::resources::in_group_version;

/// The document of `group`/`version` (core: `""`/`v1`).
pub fn document(group: &str, version: &str) -> Result<Value, OpenApiError> {
    let resources: Vec<_> = in_group_version(group, version).collect();
    if resources.is_empty() {
        return Err(OpenApiError::UnknownGroupVersion(format!("{group}/{version}")));
    }
    let mut builder = Builder::new(Dialect::V3);
    let meta = builder.meta();
    let mut items = vec![paths::group_root(group, version, &meta)];
    for resource in resources {
        let names = builder.resource(resource)?;
        items.extend(paths::for_resource(resource, &names, &meta));
    }
    let schemas = builder.finish(&group_versions());
    let paths: Map<String, Value> = items.iter().map(|item| (item.path.clone(), path_item(item))).collect();
    Ok(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

fn path_item(item: &PathItem) -> Value {
    let mut object = Map::new();
    if !item.parameters.is_empty() {
        object.insert("parameters".to_string(), item.parameters.iter().map(parameter).collect());
    }
    for operation in &item.operations {
        object.insert(operation.method.to_string(), self::operation(operation));
    }
    Value::Object(object)
}

fn operation(operation: &Operation) -> Value {
    let mut object = Map::new();
    object.insert("operationId".to_string(), json!(operation.id));
    object.insert("description".to_string(), json!(operation.description));
    object.insert("tags".to_string(), json!([operation.tag]));
    if !operation.parameters.is_empty() {
        object.insert("parameters".to_string(), operation.parameters.iter().map(parameter).collect());
    }
    if let Some(body) = &operation.body {
        let schema = Dialect::V3.reference(&body.schema);
        let content: Map<String, Value> =
            body.content_types.iter().map(|ct| (ct.to_string(), json!({ "schema": schema }))).collect();
        let mut request = json!({ "content": content });
        if body.required {
            request["required"] = json!(true);
        }
        object.insert("requestBody".to_string(), request);
    }
    let unauthorized = paths::unauthorized();
    let replies = operation.replies.iter().chain(std::iter::once(&unauthorized));
    let responses: Map<String, Value> = replies.map(|r| (r.code.to_string(), reply(r))).collect();
    object.insert("responses".to_string(), Value::Object(responses));
    if let Some(action) = operation.action {
        object.insert("x-kubernetes-action".to_string(), json!(action));
    }
    if let Some(gvk) = operation.gvk {
        object.insert("x-kubernetes-group-version-kind".to_string(), gvk.to_value());
    }
    Value::Object(object)
}

fn reply(reply: &Reply) -> Value {
    let content = |schema: Value, types: &[&str]| -> Map<String, Value> {
        types.iter().map(|ct| (ct.to_string(), json!({ "schema": schema }))).collect()
    };
    match &reply.payload {
        None => json!({ "description": reply.description }),
        Some(Payload::Definition(name, types)) => {
            json!({ "description": reply.description, "content": content(Dialect::V3.reference(name), types) })
        }
        Some(Payload::Text(types)) => {
            json!({ "description": reply.description, "content": content(json!({ "type": "string" }), types) })
        }
    }
}

fn parameter(parameter: &super::parameters::Parameter) -> Value {
    let mut object = json!({
        "name": parameter.name,
        "in": parameter.location.as_str(),
        "description": parameter.description,
        "schema": { "type": parameter.ty.as_str(), "uniqueItems": true },
    });
    if parameter.required {
        object["required"] = json!(true);
    }
    object
}
