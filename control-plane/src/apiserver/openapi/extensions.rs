//! Per-field vendor extensions (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! and the server-side apply types `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`), added to the generated definitions from the project's own tables.
//!
//! Kubernetes derives these extensions from Go struct tags; Keel keeps the same facts in tables
//! (the patch metadata of [`crate::patch::schema`], the server-side apply list types). The walk
//! here starts at each served kind's definition and visits every field below it, following
//! references into other definitions, and asks each [`FieldExtensions`] source what belongs on
//! each field and on each definition it reaches (`x-kubernetes-map-type` sits on struct types,
//! the list extensions on fields). A table plugs in by implementing the trait and joining
//! [`SOURCES`]: one line.
//!
//! Definitions are shared (PodSpec sits under Pods, Deployments and ReplicaSets), so an extension
//! lands on the definition's field and holds for every path that reaches it. A source that gives
//! the same field different values on two paths is a bug in its table: the first value is kept and
//! the conflict is reported (a unit test keeps the set of conflicts empty).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::schemas::{Dialect, Gvk};
use crate::fieldmanager::schema as apply;
use crate::patch::schema::{self as patch, FieldType, ListStrategy};

/// The walk goes at most this deep below a kind (a Deployment's container ports are about 8
/// levels down); it bounds the walk should a schema ever refer to itself.
const MAX_DEPTH: usize = 24;

/// What a site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The field `path` ends with, declared by `definition`; its extensions go on the field's
    /// schema.
    Field,
    /// `definition` itself, reached through the field `path` ends with (empty for the kind's own
    /// definition); its extensions go on the definition.
    Definition,
}

/// Where the walk is, as a source sees it.
pub struct FieldSite<'a> {
    /// The kind the walk started from.
    pub group: &'a str,
    pub kind: &'a str,
    /// The field names from the kind's root down to this field, this one last. List items add
    /// no name: a Pod's container ports are `["spec", "containers", "ports"]`.
    pub path: &'a [&'a str],
    /// The definition that declares the field, or that is the target
    /// (`io.k8s.api.core.v1.PodSpec`).
    pub definition: &'a str,
    pub target: Target,
}

/// A table of per-field facts that become vendor extensions.
pub trait FieldExtensions: Sync {
    /// Appends the extensions (name, value) the field or definition at `site` carries.
    fn extensions(&self, site: &FieldSite<'_>, out: &mut Vec<(&'static str, Value)>);
}

/// Every source of field extensions, asked in this order.
static SOURCES: &[&dyn FieldExtensions] = &[&PatchMetadata, &ApplyTypes];

/// An extension found twice with different values.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub definition: String,
    /// None for an extension of the definition itself.
    pub field: Option<String>,
    pub extension: &'static str,
    pub kept: Value,
    pub ignored: Value,
}

/// What the walk decided for each (definition, field or None for the definition): the
/// extensions to set.
type Found = BTreeMap<(String, Option<String>), Vec<(&'static str, Value)>>;

/// Adds every source's extensions to the fields of `definitions`, starting from the kinds in
/// `roots` (each with its definition name).
pub fn annotate(definitions: &mut Map<String, Value>, dialect: Dialect, roots: &[(Gvk, &str)]) {
    for conflict in annotate_with(definitions, dialect, roots, SOURCES) {
        tracing::warn!(?conflict, "conflicting OpenAPI field extensions; the first is served");
    }
}

fn annotate_with(
    definitions: &mut Map<String, Value>,
    dialect: Dialect,
    roots: &[(Gvk, &str)],
    sources: &[&dyn FieldExtensions],
) -> Vec<Conflict> {
    let mut found = Found::new();
    let mut conflicts = Vec::new();
    for (gvk, root) in roots {
        let mut walk = Walk {
            definitions: &*definitions,
            dialect,
            gvk: *gvk,
            sources,
            found: &mut found,
            conflicts: &mut conflicts,
        };
        walk.visit(root, &mut Vec::new());
    }
    for ((definition, field), extensions) in found {
        let target = definitions.get_mut(&definition).and_then(|d| match &field {
            Some(field) => d.get_mut("properties").and_then(|properties| properties.get_mut(field)),
            None => Some(d),
        });
        if let Some(Value::Object(schema)) = target {
            for (name, value) in extensions {
                schema.insert(name.to_string(), value);
            }
        }
    }
    conflicts
}

struct Walk<'w> {
    definitions: &'w Map<String, Value>,
    dialect: Dialect,
    gvk: Gvk,
    sources: &'w [&'w dyn FieldExtensions],
    found: &'w mut Found,
    conflicts: &'w mut Vec<Conflict>,
}

impl<'w> Walk<'w> {
    fn visit(&mut self, definition: &str, path: &mut Vec<&'w str>) {
        if path.len() >= MAX_DEPTH {
            return;
        }
        let definitions: &'w Map<String, Value> = self.definitions;
        self.record(definition, None, path);
        let Some(properties) = definitions.get(definition).and_then(|d| d.get("properties")).and_then(Value::as_object)
        else {
            return;
        };
        for (field, schema) in properties {
            path.push(field.as_str());
            self.record(definition, Some(field), path);
            if let Some(next) = referenced(schema, self.dialect) {
                self.visit(next, path);
            }
            path.pop();
        }
    }

    fn record(&mut self, definition: &str, field: Option<&str>, path: &[&str]) {
        let target = if field.is_some() { Target::Field } else { Target::Definition };
        let site = FieldSite { group: self.gvk.group, kind: self.gvk.kind, path, definition, target };
        let mut extensions = Vec::new();
        for source in self.sources {
            source.extensions(&site, &mut extensions);
        }
        if extensions.is_empty() {
            return;
        }
        let entry = self.found.entry((definition.to_string(), field.map(str::to_string))).or_default();
        for (name, value) in extensions {
            match entry.iter().find(|(known, _)| *known == name) {
                Some((_, kept)) if *kept != value => self.conflicts.push(Conflict {
                    definition: definition.to_string(),
                    field: field.map(str::to_string),
                    extension: name,
                    kept: kept.clone(),
                    ignored: value,
                }),
                Some(_) => {}
                None => entry.push((name, value)),
            }
        }
    }
}

/// The definition a field's schema refers to: directly, through a single `allOf`, or through the
/// items of a list.
fn referenced(schema: &Value, dialect: Dialect) -> Option<&str> {
    fn direct(schema: &Value) -> Option<&Value> {
        schema.get("$ref").or_else(|| schema.get("allOf").and_then(|all| all.get(0)).and_then(|one| one.get("$ref")))
    }
    let reference = direct(schema).or_else(|| schema.get("items").and_then(direct))?;
    reference.as_str()?.strip_prefix(dialect.ref_prefix())
}

/// The strategic merge patch metadata of [`crate::patch::schema`], as Kubernetes publishes its
/// patch struct tags: `x-kubernetes-patch-strategy` (`merge`, `retainKeys`, or both) and
/// `x-kubernetes-patch-merge-key`. kubectl computes a client-side apply patch from these, so
/// they must say what the server's own strategic merge does.
pub struct PatchMetadata;

impl FieldExtensions for PatchMetadata {
    fn extensions(&self, site: &FieldSite<'_>, out: &mut Vec<(&'static str, Value)>) {
        if site.target != Target::Field {
            return;
        }
        let Some(field) = patch_field(site.group, site.kind, site.path) else { return };
        let (merge, merge_key) = match field.ty {
            FieldType::List { strategy: ListStrategy::Keyed { merge_key }, .. } => (true, Some(merge_key)),
            FieldType::List { strategy: ListStrategy::Set, .. } => (true, None),
            FieldType::List { strategy: ListStrategy::Atomic, .. } | FieldType::Object(_) => (false, None),
        };
        let strategy = match (merge, field.retain_keys) {
            (true, true) => "merge,retainKeys",
            (true, false) => "merge",
            (false, true) => "retainKeys",
            (false, false) => return,
        };
        out.push(("x-kubernetes-patch-strategy", json!(strategy)));
        if let Some(key) = merge_key {
            out.push(("x-kubernetes-patch-merge-key", json!(key)));
        }
    }
}

/// The patch table's entry for the field at `path` below a kind, descending through objects and
/// list items.
fn patch_field(group: &str, kind: &str, path: &[&str]) -> Option<&'static patch::Field> {
    let (last, parents) = path.split_last()?;
    let mut ty = patch::lookup(group, kind)?;
    for name in parents {
        let field = ty.field(name)?;
        ty = field.object_type().or(field.item_type())?;
    }
    ty.field(last)
}

/// The server-side apply types of [`crate::fieldmanager::schema`], as Kubernetes publishes its
/// `+listType`, `+listMapKey` and `+mapType`/`+structType` markers: what clients such as
/// kubectl and kube-rs read to know how a list or map merges under apply.
pub struct ApplyTypes;

impl FieldExtensions for ApplyTypes {
    fn extensions(&self, site: &FieldSite<'_>, out: &mut Vec<(&'static str, Value)>) {
        if site.target == Target::Definition {
            if apply::atomic_definitions().contains(&site.definition) {
                out.push(("x-kubernetes-map-type", json!("atomic")));
            }
            return;
        }
        let Some(field) = apply_field(site.group, site.kind, site.path) else { return };
        let extensions = field.extensions();
        if let Some(list_type) = extensions.list_type {
            out.push(("x-kubernetes-list-type", json!(list_type)));
        }
        if !extensions.list_map_keys.is_empty() {
            out.push(("x-kubernetes-list-map-keys", json!(extensions.list_map_keys)));
        }
        // An atomic struct carries the marker on its definition (above), an atomic map on the field.
        if matches!(field.ty, apply::FieldType::AtomicMap) {
            out.push(("x-kubernetes-map-type", json!("atomic")));
        }
    }
}

/// The apply table's entry for the field at `path` below a kind, through structs and list-map
/// items.
fn apply_field(group: &str, kind: &str, path: &[&str]) -> Option<&'static apply::Field> {
    let (last, parents) = path.split_last()?;
    let mut ty = apply::root(group, kind)?;
    for name in parents {
        ty = match ty.field(name)?.ty {
            apply::FieldType::Struct(inner) | apply::FieldType::ListMap { item: apply::Item::Struct(inner), .. } => {
                inner
            }
            _ => return None,
        };
    }
    ty.field(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::openapi::schemas::Builder;
    use crate::apiserver::resources::{RESOURCES, find};

    fn definitions_for(resources: &[&crate::apiserver::resources::Resource]) -> (Map<String, Value>, Vec<Conflict>) {
        let mut builder = Builder::new(Dialect::V3);
        let names: Vec<(Gvk, String)> = resources
            .iter()
            .map(|r| {
                let gvk = Gvk { group: r.group, version: r.version, kind: r.kind };
                (gvk, builder.resource(r).expect("typed").kind)
            })
            .collect();
        let mut definitions = builder.finish(&[]);
        for schema in definitions.values_mut() {
            strip_patch_extensions(schema);
        }
        let roots: Vec<(Gvk, &str)> = names.iter().map(|(gvk, name)| (*gvk, name.as_str())).collect();
        let conflicts = annotate_with(&mut definitions, Dialect::V3, &roots, SOURCES);
        (definitions, conflicts)
    }

    fn strip_patch_extensions(schema: &mut Value) {
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for property in properties.values_mut().filter_map(Value::as_object_mut) {
                property.remove("x-kubernetes-patch-strategy");
                property.remove("x-kubernetes-patch-merge-key");
            }
        }
    }

    fn field<'a>(definitions: &'a Map<String, Value>, definition: &str, field: &str) -> &'a Value {
        &definitions[definition]["properties"][field]
    }

    #[test]
    fn patch_tags_become_extensions_where_kubernetes_has_them() {
        let all: Vec<_> = RESOURCES.iter().collect();
        let (definitions, conflicts) = definitions_for(&all);
        assert_eq!(conflicts, Vec::new(), "the patch table disagrees with itself on a shared definition");
        let containers = field(&definitions, "io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let volumes = field(&definitions, "io.k8s.api.core.v1.PodSpec", "volumes");
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let ports = field(&definitions, "io.k8s.api.core.v1.Container", "ports");
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let strategy = field(&definitions, "io.k8s.api.apps.v1.DeploymentSpec", "strategy");
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert!(strategy.get("x-kubernetes-patch-merge-key").is_none());
        let finalizers = field(&definitions, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers");
        assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
        let service_ports = field(&definitions, "io.k8s.api.core.v1.ServiceSpec", "ports");
        assert_eq!(service_ports["x-kubernetes-patch-merge-key"], "port");
        // Atomic lists and plain fields carry nothing.
        let tolerations = field(&definitions, "io.k8s.api.core.v1.PodSpec", "tolerations");
        assert!(tolerations.get("x-kubernetes-patch-strategy").is_none(), "{tolerations}");
        let image = field(&definitions, "io.k8s.api.core.v1.Container", "image");
        assert!(image.get("x-kubernetes-patch-strategy").is_none());
    }

    #[test]
    fn apply_types_become_extensions_where_kubernetes_has_them() {
        let all: Vec<_> = RESOURCES.iter().collect();
        let (definitions, conflicts) = definitions_for(&all);
        assert_eq!(conflicts, Vec::new(), "the apply table disagrees with itself on a shared definition");
        let containers = field(&definitions, "io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let ports = field(&definitions, "io.k8s.api.core.v1.Container", "ports");
        assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
        let finalizers = field(&definitions, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers");
        assert_eq!(finalizers["x-kubernetes-list-type"], "set");
        let owners = field(&definitions, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences");
        assert_eq!(owners["x-kubernetes-list-map-keys"], json!(["uid"]));
        let node_selector = field(&definitions, "io.k8s.api.core.v1.PodSpec", "nodeSelector");
        assert_eq!(node_selector["x-kubernetes-map-type"], "atomic");
        let selector = &definitions["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"];
        assert_eq!(selector["x-kubernetes-map-type"], "atomic", "an atomic struct says so on its definition");
        let image = field(&definitions, "io.k8s.api.core.v1.Container", "image");
        assert!(image.get("x-kubernetes-list-type").is_none());
    }

    #[test]
    fn the_walk_reaches_fields_below_list_items_and_templates() {
        let deployments = find("apps", "v1", "deployments").expect("deployments");
        let (definitions, _) = definitions_for(&[deployments]);
        // Deployment → spec → template → spec → containers → env.
        let env = field(&definitions, "io.k8s.api.core.v1.Container", "env");
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
    }

    /// A second table plugs in beside the patch metadata, and a table that contradicts itself is
    /// reported.
    #[test]
    fn another_source_plugs_in_and_conflicts_are_reported() {
        struct ListTypes;
        impl FieldExtensions for ListTypes {
            fn extensions(&self, site: &FieldSite<'_>, out: &mut Vec<(&'static str, Value)>) {
                match site.target {
                    Target::Field if site.path.last() == Some(&"containers") => {
                        out.push(("x-kubernetes-list-type", json!("map")));
                    }
                    Target::Field if site.path == ["metadata", "finalizers"] => {
                        out.push(("x-kubernetes-list-type", json!(site.kind)));
                    }
                    Target::Definition if site.definition == "io.k8s.api.core.v1.LocalObjectReference" => {
                        out.push(("x-kubernetes-map-type", json!("atomic")));
                    }
                    _ => {}
                }
            }
        }
        let pods = find("", "v1", "pods").expect("pods");
        let configmaps = find("", "v1", "configmaps").expect("configmaps");
        let mut builder = Builder::new(Dialect::V3);
        let pod = builder.resource(pods).expect("typed").kind;
        let configmap = builder.resource(configmaps).expect("typed").kind;
        let mut definitions = builder.finish(&[]);
        let gvk = |kind| Gvk { group: "", version: "v1", kind };
        let roots = [(gvk("Pod"), pod.as_str()), (gvk("ConfigMap"), configmap.as_str())];
        let conflicts = annotate_with(&mut definitions, Dialect::V3, &roots, &[&PatchMetadata, &ListTypes]);
        let containers = field(&definitions, "io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let reference = &definitions["io.k8s.api.core.v1.LocalObjectReference"];
        assert_eq!(reference["x-kubernetes-map-type"], "atomic");
        assert!(reference["properties"]["name"].get("x-kubernetes-map-type").is_none());
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].kept, "Pod");
        assert_eq!(conflicts[0].ignored, "ConfigMap");
    }
}
