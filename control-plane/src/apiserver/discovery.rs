//! Discovery: `/version`, `/api`, `/apis` (aggregated v2 when asked, plain otherwise),
//! `/api/v1` and `/apis/<group>/<version>` resource lists. All built from the resource catalog.

use serde_json::{Value, json};

use super::resources::{GROUPS, RESOURCES, Resource, in_group_version};

/// The Kubernetes minor version our types are (k8s-openapi feature `v1_33`). The installed
/// kubectl is a dispatcher that runs the kubectl matching this minor.
pub const KUBERNETES_MINOR: &str = "33";

/// The content type of aggregated discovery.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-keel.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// Whether `Accept` asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2")
}

fn scope(resource: &Resource) -> &'static str {
    if resource.namespaced { "Namespaced" } else { "Cluster" }
}

/// The kind and verbs a subresource answers with.
fn subresource_kind(resource: &Resource, subresource: &str) -> (Value, &'static [&'static str]) {
    let own = json!({ "group": resource.group, "version": resource.version, "kind": resource.kind });
    match subresource {
        "scale" => (json!({ "group": "autoscaling", "version": "v1", "kind": "Scale" }), &["get", "patch", "update"]),
        "binding" => (json!({ "group": "", "version": "v1", "kind": "Binding" }), &["create"]),
        "eviction" => (json!({ "group": "policy", "version": "v1", "kind": "Eviction" }), &["create"]),
        "finalize" => (own, &["update"]),
        "log" => (own, &["get"]),
        "exec" => (json!({ "group": "", "version": "v1", "kind": "PodExecOptions" }), &["create", "get"]),
        _ => (own, &["get", "patch", "update"]),
    }
}

fn aggregated_resource(resource: &Resource) -> Value {
    let subresources: Vec<Value> = resource
        .subresources()
        .into_iter()
        .map(|sub| {
            let (kind, verbs) = subresource_kind(resource, sub);
            json!({ "subresource": sub, "responseKind": kind, "verbs": verbs })
        })
        .collect();
    let mut entry = json!({
        "resource": resource.plural,
        "responseKind": { "group": resource.group, "version": resource.version, "kind": resource.kind },
        "scope": scope(resource),
        "singularResource": resource.singular,
        "verbs": resource.verbs(),
    });
    if !resource.short_names.is_empty() {
        entry["shortNames"] = json!(resource.short_names);
    }
    if !resource.categories.is_empty() {
        entry["categories"] = json!(resource.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = Value::Array(subresources);
    }
    entry
}

fn aggregated_group(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = in_group_version(group, version).map(aggregated_resource).collect();
    json!({
        "metadata": { "name": group, "creationTimestamp": null },
        "versions": [{ "version": version, "resources": resources, "freshness": "Current" }],
    })
}

fn aggregated_list(items: Vec<Value>) -> Value {
    json!({ "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items })
}

/// `/api` with aggregated discovery: the core group.
pub fn aggregated_core() -> Value {
    aggregated_list(vec![aggregated_group("", "v1")])
}

/// `/apis` with aggregated discovery: every named group.
pub fn aggregated_groups() -> Value {
    aggregated_list(GROUPS.iter().map(|(group, version)| aggregated_group(group, version)).collect())
}

/// Plain `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let group_version = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{ "groupVersion": group_version, "version": version }],
        "preferredVersion": { "groupVersion": group_version, "version": version },
    })
}

/// Plain `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|(group, version)| group_entry(group, version)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`.
pub fn api_group(group: &str) -> Option<Value> {
    let (group, version) = GROUPS.iter().find(|(g, _)| *g == group)?;
    let mut entry = group_entry(group, version);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

/// `/api/v1` or `/apis/<group>/<version>`: an APIResourceList, None for an unknown one.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut entries = Vec::new();
    for resource in in_group_version(group, version) {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs(),
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        if !resource.categories.is_empty() {
            entry["categories"] = json!(resource.categories);
        }
        entries.push(entry);
        for sub in resource.subresources() {
            let (kind, verbs) = subresource_kind(resource, sub);
            entries.push(json!({
                "name": format!("{}/{sub}", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "group": kind["group"],
                "version": kind["version"],
                "kind": kind["kind"],
                "verbs": verbs,
            }));
        }
    }
    if entries.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries }))
}

/// Every resource in category `all`, for tests and `get all`.
pub fn category_all() -> impl Iterator<Item = &'static Resource> {
    RESOURCES.iter().filter(|r| r.categories.contains(&"all"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_core_lists_pods_with_subresources() {
        let core = aggregated_core();
        let resources = core["items"][0]["versions"][0]["resources"].as_array().expect("resources");
        let pods = resources.iter().find(|r| r["resource"] == "pods").expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let subresources: Vec<&str> =
            pods["subresources"].as_array().expect("subs").iter().filter_map(|s| s["subresource"].as_str()).collect();
        assert_eq!(subresources, vec!["status", "binding", "eviction", "log", "exec"]);
    }

    #[test]
    fn plain_lists_name_subresources_with_a_slash() {
        let apps = resource_list("apps", "v1").expect("apps/v1");
        let names: Vec<&str> =
            apps["resources"].as_array().expect("resources").iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"deployments/scale"), "{names:?}");
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert!(resource_list("apps", "v9").is_none());
        assert_eq!(version()["minor"], KUBERNETES_MINOR);
    }
}
