//! The paths and operations of every served resource, in a form both renderings ([`super::v3`]
//! and [`super::v2`]) share: which path, which method, which Kubernetes action, which
//! parameters, which body and which replies.
//!
//! The set follows the resource catalog and the routing of `handlers`: list, watch (a list with
//! `watch=true`), create and deletecollection on the collection; get, replace, patch and delete on
//! an object; the subresources the catalog gives a resource (status, scale, binding, eviction, finalize, log, exec);
//! and, for namespaced kinds, the list across all namespaces. Keel serves no `/watch/` paths
//! (deprecated in Kubernetes), so none are described.

use super::parameters::{self, Parameter};
use super::schemas::{Gvk, MetaNames, ResourceNames};
use crate::apiserver::resources::Resource;

/// What JSON responses are served as.
pub const JSON: &[&str] = &["application/json"];
/// What list responses are served as: a list, or with `watch=true` a stream of events.
pub const LIST: &[&str] = &["application/json", "application/json;stream=watch"];
/// What request bodies may be sent as (JSON, YAML, and protobuf for the kinds it decodes).
pub const ANY: &[&str] = &["*/*"];
/// The patch types.
pub const PATCHES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
/// Logs and exec streams.
pub const TEXT: &[&str] = &["text/plain", "application/json"];

/// One path and its operations.
#[derive(Debug, Clone)]
pub struct PathItem {
    pub path: String,
    /// The parameters every operation of the path takes (`{name}`, `{namespace}`, `pretty`).
    pub parameters: Vec<Parameter>,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    /// The lower-case HTTP method.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    /// `x-kubernetes-action`: get, list, post, put, patch, delete, deletecollection, connect.
    pub action: Option<&'static str>,
    pub gvk: Option<Gvk>,
    pub tag: String,
    pub parameters: Vec<Parameter>,
    pub body: Option<Body>,
    pub replies: Vec<Reply>,
}

#[derive(Debug, Clone)]
pub struct Body {
    /// The definition the body is.
    pub schema: String,
    pub content_types: &'static [&'static str],
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: &'static str,
    pub description: &'static str,
    pub payload: Option<Payload>,
}

#[derive(Debug, Clone)]
pub enum Payload {
    /// A definition, served as these content types.
    Definition(String, &'static [&'static str]),
    /// Plain text (logs, exec streams).
    Text(&'static [&'static str]),
}

/// How one group-version names itself in operation ids and tags.
struct Naming {
    /// `CoreV1`, `AppsV1`, `CoordinationV1`.
    id: String,
    /// `core_v1`, `apps_v1`, `coordination_v1`.
    tag: String,
}

impl Naming {
    fn new(group: &str, version: &str) -> Naming {
        let words: Vec<&str> = match group {
            "" => vec!["core"],
            group => group.trim_end_matches(".k8s.io").split('.').collect(),
        };
        let title: String = words.iter().map(|w| capitalize(w)).collect();
        let tag_words: String =
            words.iter().enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { capitalize(w) }).collect();
        Naming { id: format!("{title}{}", capitalize(version)), tag: format!("{tag_words}_{version}") }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn base_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") }
}

/// The group-version's own path: its APIResourceList.
pub fn group_root(group: &str, version: &str, meta: &MetaNames) -> PathItem {
    let naming = Naming::new(group, version);
    PathItem {
        path: format!("{}/", base_path(group, version)),
        parameters: Vec::new(),
        operations: vec![Operation {
            method: "get",
            id: format!("get{}APIResources", naming.id),
            description: "get the resources this group-version serves".to_string(),
            action: None,
            gvk: None,
            tag: naming.tag,
            parameters: Vec::new(),
            body: None,
            replies: ok(Payload::Definition(meta.api_resource_list.clone(), JSON)),
        }],
    }
}

/// Builds the operations of one resource.
struct Describer<'a> {
    resource: &'a Resource,
    names: &'a ResourceNames,
    meta: &'a MetaNames,
    naming: Naming,
    /// `Namespaced` in operation ids of namespaced kinds.
    scope: &'static str,
}

/// Every path of one served resource.
pub fn for_resource(resource: &Resource, names: &ResourceNames, meta: &MetaNames) -> Vec<PathItem> {
    let describer = Describer {
        resource,
        names,
        meta,
        naming: Naming::new(resource.group, resource.version),
        scope: if resource.namespaced { "Namespaced" } else { "" },
    };
    let mut items = vec![describer.collection(), describer.object()];
    if resource.namespaced {
        items.push(describer.all_namespaces());
    }
    for subresource in resource.subresources() {
        items.extend(describer.subresource(subresource));
    }
    items
}

impl Describer<'_> {
    fn gvk(&self) -> Gvk {
        Gvk { group: self.resource.group, version: self.resource.version, kind: self.resource.kind }
    }

    fn collection_path(&self) -> String {
        let base = base_path(self.resource.group, self.resource.version);
        match self.resource.namespaced {
            true => format!("{base}/namespaces/{{namespace}}/{}", self.resource.plural),
            false => format!("{base}/{}", self.resource.plural),
        }
    }

    fn object_path(&self) -> String {
        format!("{}/{{name}}", self.collection_path())
    }

    /// `{namespace}` (when namespaced) and `pretty`, and `{name}` first for object paths.
    fn path_parameters(&self, named: bool) -> Vec<Parameter> {
        let mut parameters = Vec::new();
        if named {
            parameters.push(parameters::name(self.resource.kind));
        }
        if self.resource.namespaced {
            parameters.push(parameters::namespace());
        }
        parameters.push(parameters::pretty());
        parameters
    }

    /// An operation on this resource's kind; `verb` and `suffix` make its id
    /// (`read` + `CoreV1` + `Namespaced` + `Pod` + `Status`).
    fn operation(&self, method: &'static str, verb: &str, suffix: &str, action: &'static str) -> Operation {
        Operation {
            method,
            id: format!("{verb}{}{}{}{suffix}", self.naming.id, self.scope, self.resource.kind),
            description: String::new(),
            action: Some(action),
            gvk: Some(self.gvk()),
            tag: self.naming.tag.clone(),
            parameters: Vec::new(),
            body: None,
            replies: Vec::new(),
        }
    }

    fn collection(&self) -> PathItem {
        let kind = self.resource.kind;
        let list = Payload::Definition(self.names.list.clone(), LIST);
        let object = || Payload::Definition(self.names.kind.clone(), JSON);
        let operations = vec![
            Operation {
                description: format!("list or watch {kind} objects"),
                parameters: parameters::list(),
                replies: ok(list),
                ..self.operation("get", "list", "", "list")
            },
            Operation {
                description: format!("create a {kind}"),
                parameters: parameters::write(),
                body: Some(body(&self.names.kind, ANY, true)),
                replies: [
                    reply("200", "OK", object()),
                    reply("201", "Created", object()),
                    reply("202", "Accepted", object()),
                ]
                .into(),
                ..self.operation("post", "create", "", "post")
            },
            Operation {
                id: format!("delete{}Collection{}{kind}", self.naming.id, self.scope),
                description: format!("delete a collection of {kind} objects"),
                parameters: parameters::delete_collection(),
                body: Some(body(&self.meta.delete_options, ANY, false)),
                replies: ok(Payload::Definition(self.names.list.clone(), JSON)),
                ..self.operation("delete", "delete", "", "deletecollection")
            },
        ];
        PathItem { path: self.collection_path(), parameters: self.path_parameters(false), operations }
    }

    fn all_namespaces(&self) -> PathItem {
        let kind = self.resource.kind;
        let base = base_path(self.resource.group, self.resource.version);
        let operation = Operation {
            id: format!("list{}{kind}ForAllNamespaces", self.naming.id),
            description: format!("list or watch {kind} objects in every namespace"),
            parameters: parameters::list(),
            replies: ok(Payload::Definition(self.names.list.clone(), LIST)),
            ..self.operation("get", "list", "", "list")
        };
        PathItem {
            path: format!("{base}/{}", self.resource.plural),
            parameters: vec![parameters::pretty()],
            operations: vec![operation],
        }
    }

    fn object(&self) -> PathItem {
        let kind = self.resource.kind;
        let object = || Payload::Definition(self.names.kind.clone(), JSON);
        let mut operations = self.read_write(&self.names.kind, "", &format!("a {kind}"));
        operations.push(Operation {
            description: format!("delete a {kind}"),
            parameters: parameters::delete(),
            body: Some(body(&self.meta.delete_options, ANY, false)),
            replies: [reply("200", "OK", object()), reply("202", "Accepted", object())].into(),
            ..self.operation("delete", "delete", "", "delete")
        });
        PathItem { path: self.object_path(), parameters: self.path_parameters(true), operations }
    }

    /// get, replace (put) and patch of an object or of its status or scale, whose body and
    /// reply are the definition `schema`.
    fn read_write(&self, schema: &str, suffix: &str, what: &str) -> Vec<Operation> {
        let payload = || Payload::Definition(schema.to_string(), JSON);
        vec![
            Operation {
                description: format!("read {what}"),
                replies: ok(payload()),
                ..self.operation("get", "read", suffix, "get")
            },
            Operation {
                description: format!("replace {what}"),
                parameters: parameters::write(),
                body: Some(body(schema, ANY, true)),
                replies: [reply("200", "OK", payload()), reply("201", "Created", payload())].into(),
                ..self.operation("put", "replace", suffix, "put")
            },
            Operation {
                description: format!("partially update {what}"),
                parameters: parameters::patch(),
                body: Some(body(&self.meta.patch, PATCHES, true)),
                replies: [reply("200", "OK", payload()), reply("201", "Created", payload())].into(),
                ..self.operation("patch", "patch", suffix, "patch")
            },
        ]
    }

    fn subresource(&self, subresource: &str) -> Option<PathItem> {
        let kind = self.resource.kind;
        let operations = match subresource {
            "status" => self.read_write(&self.names.kind, "Status", &format!("the status of a {kind}")),
            "scale" => {
                let scale = self.names.scale.as_deref()?;
                let gvk = Gvk { group: "autoscaling", version: "v1", kind: "Scale" };
                let mut operations = self.read_write(scale, "Scale", &format!("the scale of a {kind}"));
                operations.iter_mut().for_each(|operation| operation.gvk = Some(gvk));
                operations
            }
            "binding" => {
                let binding = self.names.binding.as_deref()?;
                let gvk = Gvk { kind: "Binding", ..self.gvk() };
                vec![self.create_subresource(binding, gvk, "Binding", &format!("bind a {kind} to a node"))]
            }
            "eviction" => {
                let eviction = self.names.eviction.as_deref()?;
                let gvk = Gvk { group: "policy", version: "v1", kind: "Eviction" };
                vec![self.create_subresource(eviction, gvk, "Eviction", &format!("create eviction of a {kind}"))]
            }
            "finalize" => {
                // Kubernetes serves only PUT here: replaceCoreV1NamespaceFinalize.
                let mut operations =
                    self.read_write(&self.names.kind, "Finalize", &format!("finalize the specified {kind}"));
                operations.retain(|operation| operation.method == "put");
                operations
            }
            "log" => vec![Operation {
                description: format!("read the log of a {kind}'s container"),
                parameters: parameters::log(),
                replies: ok(Payload::Text(TEXT)),
                ..self.operation("get", "read", "Log", "get")
            }],
            "exec" => ["get", "post"]
                .into_iter()
                .map(|method| Operation {
                    id: format!("connect{}{}{}{kind}Exec", self.naming.id, capitalize(method), self.scope),
                    description: format!("run a command in a {kind}'s container"),
                    gvk: Some(Gvk { kind: "PodExecOptions", ..self.gvk() }),
                    parameters: parameters::exec(),
                    replies: ok(Payload::Text(TEXT)),
                    ..self.operation(method, "connect", "Exec", "connect")
                })
                .collect(),
            _ => return None,
        };
        let path = format!("{}/{subresource}", self.object_path());
        Some(PathItem { path, parameters: self.path_parameters(true), operations })
    }

    /// A POST that takes and answers `definition` (Binding, Eviction).
    fn create_subresource(&self, definition: &str, gvk: Gvk, suffix: &str, description: &str) -> Operation {
        let payload = || Payload::Definition(definition.to_string(), JSON);
        Operation {
            description: description.to_string(),
            gvk: Some(gvk),
            parameters: parameters::write(),
            body: Some(body(definition, ANY, true)),
            replies: [
                reply("200", "OK", payload()),
                reply("201", "Created", payload()),
                reply("202", "Accepted", payload()),
            ]
            .into(),
            ..self.operation("post", "create", suffix, "post")
        }
    }
}

fn body(schema: &str, content_types: &'static [&'static str], required: bool) -> Body {
    Body { schema: schema.to_string(), content_types, required }
}

fn reply(code: &'static str, description: &'static str, payload: Payload) -> Reply {
    Reply { code, description, payload: Some(payload) }
}

/// 200 with `payload`.
fn ok(payload: Payload) -> Vec<Reply> {
    vec![reply("200", "OK", payload)]
}

/// The reply every operation lists besides its own, as Kubernetes does: Keel answers 401 to a
/// request without a verified client certificate.
pub fn unauthorized() -> Reply {
    Reply { code: "401", description: "Unauthorized", payload: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::openapi::schemas::{Builder, Dialect};
    use crate::apiserver::resources::find;

    fn paths_of(group: &str, plural: &str) -> Vec<PathItem> {
        let resource = find(group, "v1", plural).expect("served");
        let mut builder = Builder::new(Dialect::V3);
        let names = builder.resource(resource).expect("typed");
        let meta = builder.meta();
        for_resource(resource, &names, &meta)
    }

    fn operation<'a>(items: &'a [PathItem], path: &str, method: &str) -> &'a Operation {
        let item = items.iter().find(|i| i.path == path).unwrap_or_else(|| panic!("no path {path}"));
        item.operations.iter().find(|o| o.method == method).unwrap_or_else(|| panic!("no {method} {path}"))
    }

    #[test]
    fn names_follow_kubernetes_operation_ids_and_tags() {
        assert_eq!(Naming::new("", "v1").id, "CoreV1");
        assert_eq!(Naming::new("coordination.k8s.io", "v1").id, "CoordinationV1");
        assert_eq!(Naming::new("rbac.authorization.k8s.io", "v1").tag, "rbacAuthorization_v1");
        let pods = paths_of("", "pods");
        assert_eq!(operation(&pods, "/api/v1/namespaces/{namespace}/pods", "get").id, "listCoreV1NamespacedPod");
        assert_eq!(operation(&pods, "/api/v1/pods", "get").id, "listCoreV1PodForAllNamespaces");
        let status = operation(&pods, "/api/v1/namespaces/{namespace}/pods/{name}/status", "put");
        assert_eq!(status.id, "replaceCoreV1NamespacedPodStatus");
        let exec = operation(&pods, "/api/v1/namespaces/{namespace}/pods/{name}/exec", "post");
        assert_eq!((exec.id.as_str(), exec.action), ("connectCoreV1PostNamespacedPodExec", Some("connect")));
        let binding = operation(&pods, "/api/v1/namespaces/{namespace}/pods/{name}/binding", "post");
        assert_eq!(binding.gvk.map(|g| g.kind), Some("Binding"));
    }

    #[test]
    fn every_verb_of_a_resource_has_its_operation() {
        let deployments = paths_of("apps", "deployments");
        let collection = "/apis/apps/v1/namespaces/{namespace}/deployments";
        let object = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}";
        let actions: Vec<(&str, &str, &str)> = vec![
            (collection, "get", "list"),
            (collection, "post", "post"),
            (collection, "delete", "deletecollection"),
            (object, "get", "get"),
            (object, "put", "put"),
            (object, "patch", "patch"),
            (object, "delete", "delete"),
        ];
        for (path, method, action) in actions {
            let found = operation(&deployments, path, method);
            assert_eq!(found.action, Some(action), "{method} {path}");
            assert_eq!(found.gvk.map(|g| g.kind), Some("Deployment"));
        }
        let patch = operation(&deployments, object, "patch");
        assert!(patch.parameters.iter().any(|p| p.name == "fieldValidation"));
        assert_eq!(patch.body.as_ref().map(|b| b.content_types), Some(PATCHES));
        let scale = operation(&deployments, &format!("{object}/scale"), "patch");
        assert_eq!(scale.gvk.map(|g| (g.group, g.kind)), Some(("autoscaling", "Scale")));
        assert_eq!(scale.id, "patchAppsV1NamespacedDeploymentScale");
        let nodes = paths_of("", "nodes");
        assert_eq!(operation(&nodes, "/api/v1/nodes/{name}", "get").id, "readCoreV1Node");
        assert!(nodes.iter().all(|i| !i.path.contains("{namespace}")), "nodes are cluster-scoped");
    }
}
