//! Swagger 2.0: `/openapi/v2`, one document for every served group-version, for clients older
//! than OpenAPI v3 support (and kubectl's `--output plaintext-openapiv2`). The same paths and
//! schemas as the v3 documents, written the Swagger 2.0 way: definitions under
//! `#/definitions/`, bodies as `in: body` parameters, content types as `consumes`/`produces`.

use serde_json::{Map, Value, json};

use super::paths::{self, Operation, PathItem, Payload, Reply};
use super::schemas::{Builder, Dialect};
use super::{OpenApiError, group_versions, info};
use crate::apiserver::resources::in_group_version;

/// The one v2 document.
pub fn document() -> Result<Value, OpenApiError> {
    let mut builder = Builder::new(Dialect::V2);
    let meta = builder.meta();
    let mut items = Vec::new();
    for (group, version) in group_versions() {
        items.push(paths::group_root(group, version, &meta));
        for resource in in_group_version(group, version) {
            let names = builder.resource(resource)?;
            items.extend(paths::for_resource(resource, &names, &meta));
        }
    }
    let definitions = builder.finish(&group_versions());
    let paths: Map<String, Value> = items.iter().map(|item| (item.path.clone(), path_item(item))).collect();
    Ok(json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
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
    object.insert("schemes".to_string(), json!(["https"]));
    let mut parameters: Vec<Value> = operation.parameters.iter().map(parameter).collect();
    if let Some(body) = &operation.body {
        parameters.push(json!({
            "name": "body",
            "in": "body",
            "required": body.required,
            "schema": Dialect::V2.reference(&body.schema),
        }));
        object.insert("consumes".to_string(), json!(body.content_types));
    }
    if !parameters.is_empty() {
        object.insert("parameters".to_string(), Value::Array(parameters));
    }
    let mut produces: Vec<&str> = Vec::new();
    for reply in &operation.replies {
        let types = match &reply.payload {
            Some(Payload::Definition(_, types) | Payload::Text(types)) => *types,
            None => &[],
        };
        for content_type in types {
            if !produces.contains(content_type) {
                produces.push(content_type);
            }
        }
    }
    object.insert("produces".to_string(), json!(produces));
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
    match &reply.payload {
        None => json!({ "description": reply.description }),
        Some(Payload::Definition(name, _)) => {
            json!({ "description": reply.description, "schema": Dialect::V2.reference(name) })
        }
        Some(Payload::Text(_)) => json!({ "description": reply.description, "schema": { "type": "string" } }),
    }
}

fn parameter(parameter: &super::parameters::Parameter) -> Value {
    let mut object = json!({
        "name": parameter.name,
        "in": parameter.location.as_str(),
        "description": parameter.description,
        "type": parameter.ty.as_str(),
        "uniqueItems": true,
    });
    if parameter.required {
        object["required"] = json!(true);
    }
    object
}
