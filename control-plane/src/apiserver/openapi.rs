//! A small OpenAPI v3 document per group-version: enough for kubectl to see that the server
//! validates fields itself (`fieldValidation` on each kind's PATCH), so `kubectl create/apply`
//! send `fieldValidation=Strict` instead of asking for `/openapi/v2`.

use serde_json::{Map, Value, json};

use super::resources::{GROUPS, Resource, in_group_version};

/// A stable hash of a group-version's document, so clients can cache it.
fn document_hash(group: &str, version: &str) -> String {
    let text = serde_json::to_string(&document(group, version)).unwrap_or_default();
    let digest =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ byte as u64).wrapping_mul(0x100_0000_01b3));
    format!("{digest:016X}")
}

fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3`: where each group-version's document is.
pub fn index() -> Value {
    let mut paths = Map::new();
    let all = std::iter::once(("", "v1")).chain(GROUPS.iter().copied());
    for (group, version) in all {
        let path = document_path(group, version);
        let url = format!("/openapi/v3/{path}?hash={}", document_hash(group, version));
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// The document for `api/v1` or `apis/<group>/<version>` (the path after `/openapi/v3/`).
pub fn document_for_path(path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match segments.as_slice() {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return None,
    };
    in_group_version(group, version).next()?;
    Some(document(group, version))
}

fn document(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    for resource in in_group_version(group, version) {
        paths.insert(object_path(resource), object_operations(resource));
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v1.{}.0", super::discovery::KUBERNETES_MINOR) },
        "paths": paths,
        "components": { "schemas": {} },
    })
}

fn object_path(resource: &Resource) -> String {
    let base = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    if resource.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", resource.plural)
    } else {
        format!("{base}/{}/{{name}}", resource.plural)
    }
}

fn object_operations(resource: &Resource) -> Value {
    let gvk = json!({ "group": resource.group, "version": resource.version, "kind": resource.kind });
    let parameter =
        |name: &str| json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } });
    let operation = |action: &str| {
        json!({
            "operationId": format!("{action}{}", resource.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [parameter("dryRun"), parameter("fieldManager"), parameter("fieldValidation")],
        })
    };
    json!({ "patch": operation("patch"), "put": operation("put") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_declares_field_validation_on_patch() {
        let apps = document_for_path("apis/apps/v1").expect("apps/v1");
        let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        let names: Vec<&str> =
            patch["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
        assert!(names.contains(&"fieldValidation"));
        assert!(document_for_path("api/v1").expect("core")["paths"]["/api/v1/nodes/{name}"].is_object());
        assert!(document_for_path("apis/apps/v2").is_none());
    }

    #[test]
    fn the_index_points_at_every_group_version_with_a_hash() {
        let index = index();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().expect("url");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(index["paths"]["api/v1"].is_object());
    }
}
