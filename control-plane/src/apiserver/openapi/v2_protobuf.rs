//! The v2 document in gnostic's protobuf encoding (`openapi.v2.Document` of
//! `openapiv2/OpenAPIv2.proto`), which client-go's `OpenAPISchema()` asks for and decodes with
//! `proto.Unmarshal`.
//!
//! The encoder walks the JSON document [`super::v2`] builds and writes each key as the field
//! gnostic's schema gives it. It covers the parts of Swagger 2.0 that document uses (and the
//! keywords a JSON Schema from k8s-openapi may carry); anything else is an [`EncodeError`] naming
//! the key, so a new keyword fails a unit test instead of being dropped silently. Vendor extensions
//! are gnostic `NamedAny`s whose value is the YAML text of the JSON value (JSON is YAML), which is
//! how gnostic itself stores them and how kube-openapi reads them back.

use serde_json::{Map, Value};

/// Schemas nest at most this deep in the document (definitions refer to each other instead of
/// nesting; a list of maps of strings is the deepest inline shape).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{context}: no protobuf field for {key:?}")]
    UnknownKey { context: &'static str, key: String },
    #[error("{context}: {key:?} has an unexpected JSON type")]
    WrongType { context: &'static str, key: String },
    #[error("schemas nest deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Encodes the v2 document.
pub fn encode(document: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    for (key, value) in object(document, "Document", "document")? {
        match key.as_str() {
            "swagger" => put_string(&mut out, 1, string(value, "Document", key)?),
            "info" => put_message(&mut out, 2, |out| info(out, value))?,
            "paths" => put_message(&mut out, 8, |out| paths(out, value))?,
            "definitions" => put_message(&mut out, 9, |out| named_schemas(out, value, "Definitions"))?,
            "schemes" => put_strings(&mut out, 5, value, "Document", key)?,
            "consumes" => put_strings(&mut out, 6, value, "Document", key)?,
            "produces" => put_strings(&mut out, 7, value, "Document", key)?,
            other if other.starts_with("x-") => put_extension(&mut out, 16, other, value),
            other => return Err(unknown("Document", other)),
        }
    }
    Ok(out)
}

fn info(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    for (key, value) in object(value, "Info", "info")? {
        match key.as_str() {
            "title" => put_string(out, 1, string(value, "Info", key)?),
            "version" => put_string(out, 2, string(value, "Info", key)?),
            "description" => put_string(out, 3, string(value, "Info", key)?),
            other if other.starts_with("x-") => put_extension(out, 7, other, value),
            other => return Err(unknown("Info", other)),
        }
    }
    Ok(())
}

fn paths(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    for (path, item) in object(value, "Paths", "paths")? {
        put_message(out, 2, |out| {
            put_string(out, 1, path);
            put_message(out, 2, |out| path_item(out, item))
        })?;
    }
    Ok(())
}

fn path_item(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    for (key, value) in object(value, "PathItem", "path")? {
        let field = match key.as_str() {
            "get" => 2,
            "put" => 3,
            "post" => 4,
            "delete" => 5,
            "options" => 6,
            "head" => 7,
            "patch" => 8,
            "parameters" => {
                for parameter in array(value, "PathItem", key)? {
                    put_message(out, 9, |out| parameters_item(out, parameter))?;
                }
                continue;
            }
            other if other.starts_with("x-") => {
                put_extension(out, 10, other, value);
                continue;
            }
            other => return Err(unknown("PathItem", other)),
        };
        put_message(out, field, |out| operation(out, value))?;
    }
    Ok(())
}

fn operation(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    const CONTEXT: &str = "Operation";
    for (key, value) in object(value, CONTEXT, "operation")? {
        match key.as_str() {
            "tags" => put_strings(out, 1, value, CONTEXT, key)?,
            "summary" => put_string(out, 2, string(value, CONTEXT, key)?),
            "description" => put_string(out, 3, string(value, CONTEXT, key)?),
            "operationId" => put_string(out, 5, string(value, CONTEXT, key)?),
            "produces" => put_strings(out, 6, value, CONTEXT, key)?,
            "consumes" => put_strings(out, 7, value, CONTEXT, key)?,
            "parameters" => {
                for parameter in array(value, CONTEXT, key)? {
                    put_message(out, 8, |out| parameters_item(out, parameter))?;
                }
            }
            "responses" => put_message(out, 9, |out| responses(out, value))?,
            "schemes" => put_strings(out, 10, value, CONTEXT, key)?,
            "deprecated" => put_bool(out, 11, boolean(value, CONTEXT, key)?),
            other if other.starts_with("x-") => put_extension(out, 13, other, value),
            other => return Err(unknown(CONTEXT, other)),
        }
    }
    Ok(())
}

/// `ParametersItem { Parameter parameter = 1; }` → `Parameter { BodyParameter body_parameter = 1;
/// NonBodyParameter non_body_parameter = 2; }` → `NonBodyParameter { … query = 3; path = 4; }`.
fn parameters_item(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    let location = value.get("in").and_then(Value::as_str).unwrap_or_default();
    put_message(out, 1, |out| match location {
        "body" => put_message(out, 1, |out| body_parameter(out, value)),
        "query" => put_message(out, 2, |out| put_message(out, 3, |out| non_body_parameter(out, value, QUERY))),
        "path" => put_message(out, 2, |out| put_message(out, 4, |out| non_body_parameter(out, value, PATH))),
        other => Err(unknown("Parameter.in", other)),
    })
}

fn body_parameter(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    const CONTEXT: &str = "BodyParameter";
    for (key, value) in object(value, CONTEXT, "parameter")? {
        match key.as_str() {
            "description" => put_string(out, 1, string(value, CONTEXT, key)?),
            "name" => put_string(out, 2, string(value, CONTEXT, key)?),
            "in" => put_string(out, 3, string(value, CONTEXT, key)?),
            "required" => put_bool(out, 4, boolean(value, CONTEXT, key)?),
            "schema" => put_message(out, 5, |out| schema(out, value, 0))?,
            other if other.starts_with("x-") => put_extension(out, 6, other, value),
            other => return Err(unknown(CONTEXT, other)),
        }
    }
    Ok(())
}

/// The field numbers of a query or path parameter (the two messages number them differently).
struct NonBodyFields {
    context: &'static str,
    required: u32,
    location: u32,
    description: u32,
    name: u32,
    ty: u32,
    format: u32,
    unique_items: u32,
    vendor_extension: u32,
}

const QUERY: NonBodyFields = NonBodyFields {
    context: "QueryParameterSubSchema",
    required: 1,
    location: 2,
    description: 3,
    name: 4,
    ty: 6,
    format: 7,
    unique_items: 20,
    vendor_extension: 23,
};
const PATH: NonBodyFields = NonBodyFields {
    context: "PathParameterSubSchema",
    required: 1,
    location: 2,
    description: 3,
    name: 4,
    ty: 5,
    format: 6,
    unique_items: 19,
    vendor_extension: 22,
};

fn non_body_parameter(out: &mut Vec<u8>, value: &Value, fields: NonBodyFields) -> Result<(), EncodeError> {
    let context = fields.context;
    for (key, value) in object(value, context, "parameter")? {
        match key.as_str() {
            "required" => put_bool(out, fields.required, boolean(value, context, key)?),
            "in" => put_string(out, fields.location, string(value, context, key)?),
            "description" => put_string(out, fields.description, string(value, context, key)?),
            "name" => put_string(out, fields.name, string(value, context, key)?),
            "type" => put_string(out, fields.ty, string(value, context, key)?),
            "format" => put_string(out, fields.format, string(value, context, key)?),
            "uniqueItems" => put_bool(out, fields.unique_items, boolean(value, context, key)?),
            other if other.starts_with("x-") => put_extension(out, fields.vendor_extension, other, value),
            other => return Err(unknown(context, other)),
        }
    }
    Ok(())
}

/// `Responses { repeated NamedResponseValue response_code = 1; }`, each
/// `ResponseValue { Response response = 1; }`.
fn responses(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    for (code, reply) in object(value, "Responses", "responses")? {
        if code.starts_with("x-") {
            put_extension(out, 2, code, reply);
            continue;
        }
        put_message(out, 1, |out| {
            put_string(out, 1, code);
            put_message(out, 2, |out| put_message(out, 1, |out| response(out, reply)))
        })?;
    }
    Ok(())
}

fn response(out: &mut Vec<u8>, value: &Value) -> Result<(), EncodeError> {
    for (key, value) in object(value, "Response", "response")? {
        match key.as_str() {
            "description" => put_string(out, 1, string(value, "Response", key)?),
            // SchemaItem { Schema schema = 1; }
            "schema" => put_message(out, 2, |out| put_message(out, 1, |out| schema(out, value, 0)))?,
            other if other.starts_with("x-") => put_extension(out, 5, other, value),
            other => return Err(unknown("Response", other)),
        }
    }
    Ok(())
}

/// `Definitions` and `Properties`: `repeated NamedSchema additional_properties = 1;`.
fn named_schemas(out: &mut Vec<u8>, value: &Value, context: &'static str) -> Result<(), EncodeError> {
    named_schemas_at(out, value, context, 0)
}

fn named_schemas_at(out: &mut Vec<u8>, value: &Value, context: &'static str, depth: usize) -> Result<(), EncodeError> {
    for (name, value) in object(value, context, "schemas")? {
        put_message(out, 1, |out| {
            put_string(out, 1, name);
            put_message(out, 2, |out| schema(out, value, depth + 1))
        })?;
    }
    Ok(())
}

fn schema(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), EncodeError> {
    const CONTEXT: &str = "Schema";
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep);
    }
    for (key, value) in object(value, CONTEXT, "schema")? {
        match key.as_str() {
            "$ref" => put_string(out, 1, string(value, CONTEXT, key)?),
            "format" => put_string(out, 2, string(value, CONTEXT, key)?),
            "title" => put_string(out, 3, string(value, CONTEXT, key)?),
            "description" => put_string(out, 4, string(value, CONTEXT, key)?),
            "default" => put_any(out, 5, value),
            "multipleOf" => put_double(out, 6, number(value, CONTEXT, key)?),
            "maximum" => put_double(out, 7, number(value, CONTEXT, key)?),
            "exclusiveMaximum" => put_bool(out, 8, boolean(value, CONTEXT, key)?),
            "minimum" => put_double(out, 9, number(value, CONTEXT, key)?),
            "exclusiveMinimum" => put_bool(out, 10, boolean(value, CONTEXT, key)?),
            "maxLength" => put_int(out, 11, integer(value, CONTEXT, key)?),
            "minLength" => put_int(out, 12, integer(value, CONTEXT, key)?),
            "pattern" => put_string(out, 13, string(value, CONTEXT, key)?),
            "maxItems" => put_int(out, 14, integer(value, CONTEXT, key)?),
            "minItems" => put_int(out, 15, integer(value, CONTEXT, key)?),
            "uniqueItems" => put_bool(out, 16, boolean(value, CONTEXT, key)?),
            "maxProperties" => put_int(out, 17, integer(value, CONTEXT, key)?),
            "minProperties" => put_int(out, 18, integer(value, CONTEXT, key)?),
            "required" => put_strings(out, 19, value, CONTEXT, key)?,
            "enum" => {
                for item in array(value, CONTEXT, key)? {
                    put_any(out, 20, item);
                }
            }
            // AdditionalPropertiesItem { oneof { Schema schema = 1; bool boolean = 2; } }
            "additionalProperties" => put_message(out, 21, |out| match value {
                Value::Bool(allowed) => {
                    // A oneof member is written even when it is the default value.
                    put_key(out, 2, WIRE_VARINT);
                    put_varint(out, u64::from(*allowed));
                    Ok(())
                }
                schema_value => put_message(out, 1, |out| schema(out, schema_value, depth + 1)),
            })?,
            // TypeItem { repeated string value = 1; }
            "type" => put_message(out, 22, |out| match value {
                Value::String(single) => {
                    put_string(out, 1, single);
                    Ok(())
                }
                list => put_strings(out, 1, list, CONTEXT, key),
            })?,
            // ItemsItem { repeated Schema schema = 1; }
            "items" => put_message(out, 23, |out| match value {
                Value::Array(list) => {
                    list.iter().try_for_each(|item| put_message(out, 1, |out| schema(out, item, depth + 1)))
                }
                single => put_message(out, 1, |out| schema(out, single, depth + 1)),
            })?,
            "allOf" => {
                for item in array(value, CONTEXT, key)? {
                    put_message(out, 24, |out| schema(out, item, depth + 1))?;
                }
            }
            "properties" => put_message(out, 25, |out| named_schemas_at(out, value, "Properties", depth))?,
            "discriminator" => put_string(out, 26, string(value, CONTEXT, key)?),
            "readOnly" => put_bool(out, 27, boolean(value, CONTEXT, key)?),
            "example" => put_any(out, 30, value),
            other if other.starts_with("x-") => put_extension(out, 31, other, value),
            other => return Err(unknown(CONTEXT, other)),
        }
    }
    Ok(())
}

// --- JSON access ------------------------------------------------------------------------------

fn object<'a>(value: &'a Value, context: &'static str, key: &str) -> Result<&'a Map<String, Value>, EncodeError> {
    value.as_object().ok_or_else(|| wrong_type(context, key))
}

fn array<'a>(value: &'a Value, context: &'static str, key: &str) -> Result<&'a Vec<Value>, EncodeError> {
    value.as_array().ok_or_else(|| wrong_type(context, key))
}

fn string<'a>(value: &'a Value, context: &'static str, key: &str) -> Result<&'a str, EncodeError> {
    value.as_str().ok_or_else(|| wrong_type(context, key))
}

fn boolean(value: &Value, context: &'static str, key: &str) -> Result<bool, EncodeError> {
    value.as_bool().ok_or_else(|| wrong_type(context, key))
}

fn integer(value: &Value, context: &'static str, key: &str) -> Result<i64, EncodeError> {
    value.as_i64().ok_or_else(|| wrong_type(context, key))
}

fn number(value: &Value, context: &'static str, key: &str) -> Result<f64, EncodeError> {
    value.as_f64().ok_or_else(|| wrong_type(context, key))
}

fn unknown(context: &'static str, key: &str) -> EncodeError {
    EncodeError::UnknownKey { context, key: key.to_string() }
}

fn wrong_type(context: &'static str, key: &str) -> EncodeError {
    EncodeError::WrongType { context, key: key.to_string() }
}

// --- protobuf wire format ---------------------------------------------------------------------

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LENGTH_DELIMITED: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LENGTH_DELIMITED);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A proto3 string: the empty string is the default and is not written.
fn put_string(out: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        put_bytes(out, field, value.as_bytes());
    }
}

fn put_strings(
    out: &mut Vec<u8>,
    field: u32,
    value: &Value,
    context: &'static str,
    key: &str,
) -> Result<(), EncodeError> {
    for item in array(value, context, key)? {
        // Repeated strings keep their empty members: their position is data.
        put_bytes(out, field, string(item, context, key)?.as_bytes());
    }
    Ok(())
}

fn put_bool(out: &mut Vec<u8>, field: u32, value: bool) {
    if value {
        put_key(out, field, WIRE_VARINT);
        put_varint(out, 1);
    }
}

fn put_int(out: &mut Vec<u8>, field: u32, value: i64) {
    if value != 0 {
        put_key(out, field, WIRE_VARINT);
        put_varint(out, value as u64);
    }
}

fn put_double(out: &mut Vec<u8>, field: u32, value: f64) {
    if value != 0.0 {
        put_key(out, field, WIRE_FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// A nested message, written by `body` into a scratch buffer and then length-prefixed. Empty
/// messages are still written: a present empty message differs from an absent one.
fn put_message(
    out: &mut Vec<u8>,
    field: u32,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut inner = Vec::new();
    body(&mut inner)?;
    put_bytes(out, field, &inner);
    Ok(())
}

/// `Any { string yaml = 2; }` holding a JSON value as YAML text.
fn put_any(out: &mut Vec<u8>, field: u32, value: &Value) {
    let mut inner = Vec::new();
    put_string(&mut inner, 2, &value.to_string());
    put_bytes(out, field, &inner);
}

/// `NamedAny { string name = 1; Any value = 2; }`.
fn put_extension(out: &mut Vec<u8>, field: u32, name: &str, value: &Value) {
    let mut inner = Vec::new();
    put_string(&mut inner, 1, name);
    put_any(&mut inner, 2, value);
    put_bytes(out, field, &inner);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A minimal reader of the wire format: (field, bytes of a length-delimited value).
    fn fields(mut bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut found = Vec::new();
        let varint = |bytes: &mut &[u8]| -> u64 {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = bytes[0];
                *bytes = &bytes[1..];
                value |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    break;
                }
            }
            value
        };
        while !bytes.is_empty() {
            let key = varint(&mut bytes);
            let (field, wire) = ((key >> 3) as u32, key & 7);
            match wire {
                0 => found.push((field, varint(&mut bytes).to_le_bytes().to_vec())),
                1 => {
                    found.push((field, bytes[..8].to_vec()));
                    bytes = &bytes[8..];
                }
                2 => {
                    let len = varint(&mut bytes) as usize;
                    found.push((field, bytes[..len].to_vec()));
                    bytes = &bytes[len..];
                }
                other => panic!("unexpected wire type {other}"),
            }
        }
        found
    }

    fn field(bytes: &[u8], number: u32) -> Vec<Vec<u8>> {
        fields(bytes).into_iter().filter(|(n, _)| *n == number).map(|(_, b)| b).collect()
    }

    #[test]
    fn a_document_encodes_as_gnostic_reads_it() {
        let document = json!({
            "swagger": "2.0",
            "info": { "title": "Kubernetes", "version": "v1.33.0" },
            "paths": { "/api/v1/pods": { "get": {
                "operationId": "listCoreV1PodForAllNamespaces",
                "parameters": [{ "name": "watch", "in": "query", "type": "boolean", "uniqueItems": true }],
                "responses": { "200": { "description": "OK", "schema": { "$ref": "#/definitions/P" } } },
                "x-kubernetes-action": "list",
            } } },
            "definitions": { "P": {
                "type": "object",
                "properties": { "spec": { "$ref": "#/definitions/S", "description": "the spec" } },
                "x-kubernetes-group-version-kind": [{ "group": "", "version": "v1", "kind": "Pod" }],
            } },
        });
        let bytes = encode(&document).expect("encodes");
        assert_eq!(field(&bytes, 1), [b"2.0".to_vec()]);
        let definitions = &field(&bytes, 9)[0];
        let named = &field(definitions, 1)[0];
        assert_eq!(field(named, 1), [b"P".to_vec()]);
        let schema = &field(named, 2)[0];
        assert_eq!(field(&field(schema, 22)[0], 1), [b"object".to_vec()]);
        let extension = &field(schema, 31)[0];
        assert_eq!(field(extension, 1), [b"x-kubernetes-group-version-kind".to_vec()]);
        let yaml = &field(&field(extension, 2)[0], 2)[0];
        let parsed: Value = serde_json::from_slice(yaml).expect("the extension's YAML is its JSON");
        assert_eq!(parsed[0]["kind"], "Pod");
        let property = &field(&field(&field(schema, 25)[0], 1)[0], 2)[0];
        assert_eq!(field(property, 1), [b"#/definitions/S".to_vec()]);
        assert_eq!(field(property, 4), [b"the spec".to_vec()]);
        // paths → NamedPathItem → PathItem.get → parameters → Parameter → NonBodyParameter → query.
        let item = &field(&field(&bytes, 8)[0], 2)[0];
        let get = &field(&field(item, 2)[0], 2)[0];
        let query = &field(&field(&field(&field(get, 8)[0], 1)[0], 2)[0], 3)[0];
        assert_eq!(field(query, 4), [b"watch".to_vec()]);
        assert_eq!(field(query, 6), [b"boolean".to_vec()]);
    }

    #[test]
    fn unknown_keys_are_errors_not_silence() {
        let document = json!({ "swagger": "2.0", "definitions": { "X": { "oneOf": [] } } });
        assert_eq!(encode(&document), Err(EncodeError::UnknownKey { context: "Schema", key: "oneOf".into() }));
    }
}
