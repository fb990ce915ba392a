//! Whole-document checks: every served kind, every reference, every operation.

use std::time::Instant;

use serde_json::Value;

use super::*;
use crate::apiserver::resources::{RESOURCES, Resource, in_group_version};

fn v3(group: &str, version: &str) -> Value {
    v3::document(group, version).expect("the document generates")
}

/// Every `$ref` string anywhere in `value`.
fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => found.push(reference),
                    _ => references(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

fn assert_references_resolve(document: &Value, prefix: &str, definitions: &str) {
    let mut found = Vec::new();
    references(document, &mut found);
    assert!(found.len() > 20, "a document refers to its schemas");
    for reference in found {
        let name = reference.strip_prefix(prefix).unwrap_or_else(|| panic!("{reference} is not under {prefix}"));
        assert!(document.pointer(&format!("{definitions}/{name}")).is_some(), "{reference} does not resolve");
    }
}

fn kind_schema<'a>(schemas: &'a Value, resource: &Resource) -> Option<&'a Value> {
    schemas.as_object()?.values().find(|schema| {
        schema["x-kubernetes-group-version-kind"].as_array().is_some_and(|gvks| {
            gvks.iter().any(|gvk| {
                gvk["group"] == resource.group && gvk["version"] == resource.version && gvk["kind"] == resource.kind
            })
        })
    })
}

fn collection_path(resource: &Resource) -> String {
    let base = paths::base_path(resource.group, resource.version);
    match resource.namespaced {
        true => format!("{base}/namespaces/{{namespace}}/{}", resource.plural),
        false => format!("{base}/{}", resource.plural),
    }
}

#[test]
fn every_served_kind_has_a_schema_with_its_gvk_and_its_list() {
    for (group, version) in group_versions() {
        let document = v3(group, version);
        let schemas = &document["components"]["schemas"];
        for resource in in_group_version(group, version) {
            let schema = kind_schema(schemas, resource).unwrap_or_else(|| panic!("no schema for {}", resource.kind));
            assert!(schema["description"].as_str().is_some_and(|d| !d.is_empty()), "{}", resource.kind);
            assert!(schema["properties"]["metadata"].is_object(), "{}", resource.kind);
            let list = schemas.as_object().and_then(|all| {
                all.values()
                    .find(|s| s["x-kubernetes-group-version-kind"][0]["kind"] == format!("{}List", resource.kind))
            });
            assert!(list.is_some_and(|l| l["properties"]["items"]["type"] == "array"), "{}List", resource.kind);
        }
    }
}

#[test]
fn every_reference_resolves_inside_its_document() {
    for (group, version) in group_versions() {
        assert_references_resolve(&v3(group, version), "#/components/schemas/", "/components/schemas");
    }
    assert_references_resolve(&v2::document().expect("v2"), "#/definitions/", "/definitions");
}

#[test]
fn every_resource_has_every_verb_and_subresource() {
    for (group, version) in group_versions() {
        let document = v3(group, version);
        let paths = &document["paths"];
        for resource in in_group_version(group, version) {
            let collection = collection_path(resource);
            let object = format!("{collection}/{{name}}");
            let mut expected = vec![
                (collection.clone(), "get", "list"),
                (collection.clone(), "post", "post"),
                (collection.clone(), "delete", "deletecollection"),
                (object.clone(), "get", "get"),
                (object.clone(), "put", "put"),
                (object.clone(), "patch", "patch"),
                (object.clone(), "delete", "delete"),
            ];
            if resource.namespaced {
                expected.push((format!("{}/{}", paths::base_path(group, version), resource.plural), "get", "list"));
            }
            for subresource in resource.subresources() {
                let path = format!("{object}/{subresource}");
                match subresource {
                    "status" | "scale" => expected.extend([
                        (path.clone(), "get", "get"),
                        (path.clone(), "put", "put"),
                        (path, "patch", "patch"),
                    ]),
                    "binding" | "eviction" => expected.push((path, "post", "post")),
                    "finalize" => expected.push((path, "put", "put")),
                    "log" => expected.push((path, "get", "get")),
                    "exec" => expected.extend([(path.clone(), "get", "connect"), (path, "post", "connect")]),
                    other => panic!("subresource {other} has no expectation"),
                }
            }
            for (path, method, action) in expected {
                let operation = &paths[&path][method];
                assert_eq!(operation["x-kubernetes-action"], action, "{method} {path}");
                assert!(operation["x-kubernetes-group-version-kind"]["kind"].is_string(), "{method} {path}");
                assert!(operation["responses"]["200"].is_object(), "{method} {path}");
            }
            // What makes kubectl send fieldValidation=Strict instead of asking for /openapi/v2.
            let patch = &paths[&object]["patch"];
            assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], resource.kind);
            let parameters = patch["parameters"].as_array().expect("parameters");
            assert!(parameters.iter().any(|p| p["name"] == "fieldValidation"), "{object}");
            let body = &patch["requestBody"]["content"];
            assert!(
                body["application/strategic-merge-patch+json"].is_object()
                    && body["application/apply-patch+yaml"].is_object()
            );
        }
        let root = &paths[&format!("{}/", paths::base_path(group, version))]["get"];
        assert!(root["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].is_string());
    }
}

#[test]
fn the_v2_document_has_every_group_and_encodes_as_protobuf() {
    let document = v2::document().expect("v2");
    assert_eq!(document["swagger"], "2.0");
    for resource in RESOURCES {
        let object = format!("{}/{{name}}", collection_path(resource));
        let patch = &document["paths"][&object]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], resource.kind, "{object}");
        let body = patch["parameters"].as_array().and_then(|p| p.iter().find(|p| p["in"] == "body"));
        assert!(
            body.is_some_and(|b| b["schema"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch")
        );
        assert!(kind_schema(&document["definitions"], resource).is_some(), "{}", resource.kind);
    }
    let strategy = &document["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy");
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    let encoded = v2_protobuf::encode(&document).expect("every key of the document has a protobuf field");
    assert!(encoded.len() > 100_000);
}

#[test]
fn the_index_names_each_document_by_its_content_hash() {
    let documents = v3_documents().as_ref().expect("generated");
    let index: Value = serde_json::from_slice(&documents.index().bytes).expect("json");
    for (group, version) in group_versions() {
        let path = document_path(group, version);
        let document = documents.get(&path).expect("document");
        let url = index["paths"][&path]["serverRelativeURL"].as_str().expect("url");
        assert_eq!(url, format!("/openapi/v3/{path}?hash={}", document.hash));
        assert_eq!(document.hash.len(), 128);
        // Generating again gives the same bytes: the hash is a content hash, stable across
        // restarts and masters.
        let again = Document::json(&v3(group, version)).expect("json");
        assert_eq!(again.hash, document.hash, "{path}");
    }
    assert!(documents.get("apis/apps/v2").is_none());
}

/// Generation time and sizes, for the record (`cargo nextest run … --no-capture`); bounded so a
/// regression that balloons them fails.
#[test]
fn generation_cost() {
    let started = Instant::now();
    let mut total = 0;
    for (group, version) in group_versions() {
        let document = Document::json(&v3(group, version)).expect("json");
        eprintln!("v3 {}: {} bytes", document_path(group, version), document.bytes.len());
        assert!(document.bytes.len() < 8 << 20);
        total += document.bytes.len();
    }
    let v3_elapsed = started.elapsed();
    let started = Instant::now();
    let document = v2::document().expect("v2");
    let json = serde_json::to_vec(&document).expect("json");
    let protobuf = v2_protobuf::encode(&document).expect("protobuf");
    eprintln!(
        "v3: {total} bytes in {v3_elapsed:?}; v2: {} bytes JSON, {} bytes protobuf in {:?}",
        json.len(),
        protobuf.len(),
        started.elapsed()
    );
    assert!(json.len() < 16 << 20);
}
