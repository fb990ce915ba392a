//! The schemas of one document (`components.schemas` in v3, `definitions` in v2), generated from
//! k8s-openapi's `JsonSchema` implementations: they carry Kubernetes' field descriptions and its
//! definition names (`io.k8s.api.apps.v1.DeploymentStrategy`), so nothing here is written by
//! hand except what Kubernetes adds on top of its Go types: the list kinds, the
//! `x-kubernetes-group-version-kind` of each kind, and the per-field extensions of
//! [`extensions`](super::extensions).
//!
//! A document holds exactly the definitions its kinds and operations reach (schemars adds a
//! definition the first time a schema refers to it), as Kubernetes' per-group-version documents do.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::autoscaling::v1 as autoscaling;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::transform::RemoveRefSiblings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use k8s_openapi::{ListableResource, Resource as TypedResource};
use serde_json::{Map, Value, json};

use super::OpenApiError;
use super::extensions;
use crate::apiserver::resources::Resource;

/// Which OpenAPI version the schemas are written for: it decides where references point and how
/// a reference carries a description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAPI 3.0: `#/components/schemas/…`; a reference with siblings is wrapped in `allOf`
    /// (OpenAPI 3.0 ignores siblings of `$ref`), as Kubernetes' v3 documents do.
    V3,
    /// Swagger 2.0: `#/definitions/…`; the description sits beside `$ref`, as in Kubernetes'
    /// `/openapi/v2`, whose clients (gnostic, kube-openapi) read it there.
    V2,
}

impl Dialect {
    /// What every reference to a definition starts with.
    pub fn ref_prefix(self) -> &'static str {
        match self {
            Dialect::V3 => "#/components/schemas/",
            Dialect::V2 => "#/definitions/",
        }
    }

    /// A reference to the definition `name`.
    pub fn reference(self, name: &str) -> Value {
        json!({ "$ref": format!("{}{name}", self.ref_prefix()) })
    }

    /// A reference with a description beside it, written the way this dialect allows.
    fn described_reference(self, name: &str, description: &str) -> Value {
        match self {
            Dialect::V3 => json!({ "allOf": [self.reference(name)], "description": description }),
            Dialect::V2 => json!({ "$ref": format!("{}{name}", self.ref_prefix()), "description": description }),
        }
    }

    fn generator(self) -> SchemaGenerator {
        SchemaSettings::openapi3()
            .with(|settings| {
                settings.definitions_path = match self {
                    Dialect::V3 => "/components/schemas".into(),
                    Dialect::V2 => "/definitions".into(),
                };
                settings.meta_schema = None;
                settings.transforms = match self {
                    Dialect::V3 => vec![Box::new(RemoveRefSiblings::default())],
                    Dialect::V2 => Vec::new(),
                };
            })
            .into_generator()
    }
}

/// A group-version-kind, as the `x-kubernetes-group-version-kind` extension writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gvk {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

impl Gvk {
    pub fn to_value(self) -> Value {
        json!({ "group": self.group, "version": self.version, "kind": self.kind })
    }
}

/// A Kubernetes kind with its Rust type in k8s-openapi.
pub struct Typed {
    pub gvk: Gvk,
    /// `PodList` for kinds served as lists.
    list_kind: Option<&'static str>,
    /// The type's definition name (`io.k8s.api.core.v1.Pod`).
    name: fn() -> Cow<'static, str>,
    /// Adds the type's schema (and every schema it refers to) to a generator.
    add: fn(&mut SchemaGenerator),
    /// Whether Kubernetes requires `metadata` (its Go field lacks `omitempty`). k8s-openapi
    /// marks `metadata` required on every resource, because its Rust field is not optional;
    /// Kubernetes' documents require it only on a few kinds, such as core/v1 Event.
    metadata_required: bool,
}

impl Typed {
    const fn requiring_metadata(self) -> Typed {
        Typed { metadata_required: true, ..self }
    }
}

fn add_schema<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

const fn listable<T: ListableResource + JsonSchema>() -> Typed {
    Typed {
        gvk: Gvk { group: T::GROUP, version: T::VERSION, kind: T::KIND },
        list_kind: Some(T::LIST_KIND),
        name: T::schema_name,
        add: add_schema::<T>,
        metadata_required: false,
    }
}

const fn single<T: TypedResource + JsonSchema>() -> Typed {
    Typed {
        gvk: Gvk { group: T::GROUP, version: T::VERSION, kind: T::KIND },
        list_kind: None,
        name: T::schema_name,
        add: add_schema::<T>,
        metadata_required: false,
    }
}

/// The Rust type of every kind the catalog serves. A kind added to the catalog needs a line
/// here (a test checks that every catalog entry has one).
static KINDS: &[Typed] = &[
    listable::<core::Namespace>(),
    listable::<core::Node>(),
    listable::<core::Pod>(),
    listable::<core::Service>(),
    listable::<core::Endpoints>(),
    listable::<core::ConfigMap>(),
    listable::<core::Secret>(),
    listable::<core::Event>().requiring_metadata(),
    listable::<core::ServiceAccount>(),
    listable::<apps::Deployment>(),
    listable::<apps::ReplicaSet>(),
    listable::<discovery::EndpointSlice>(),
    listable::<coordination::Lease>(),
];

/// The kinds subresources take and return.
static SCALE: Typed = single::<autoscaling::Scale>();
static BINDING: Typed = single::<core::Binding>();
static EVICTION: Typed = single::<k8s_openapi::api::policy::v1::Eviction>();

/// The typed definition of a served kind.
pub fn typed(group: &str, version: &str, kind: &str) -> Option<&'static Typed> {
    KINDS.iter().find(|t| t.gvk.group == group && t.gvk.version == version && t.gvk.kind == kind)
}

/// The definitions a resource's operations name.
#[derive(Debug, Clone)]
pub struct ResourceNames {
    pub kind: String,
    pub list: String,
    /// `io.k8s.api.autoscaling.v1.Scale`, for resources with a scale subresource.
    pub scale: Option<String>,
    /// `io.k8s.api.core.v1.Binding`, for pods.
    pub binding: Option<String>,
    /// `io.k8s.api.policy.v1.Eviction`, for pods.
    pub eviction: Option<String>,
}

/// The apimachinery definitions every document's operations name.
#[derive(Debug, Clone)]
pub struct MetaNames {
    pub delete_options: String,
    pub status: String,
    pub patch: String,
    pub api_resource_list: String,
}

/// Collects the schemas of one document.
pub struct Builder {
    dialect: Dialect,
    generator: SchemaGenerator,
    /// The kinds added, with the definition names of the kind and its list.
    kinds: Vec<(&'static Typed, String, String)>,
    /// Single kinds added (Scale, Binding), for their group-version-kind.
    singles: Vec<(&'static Typed, String)>,
}

impl Builder {
    pub fn new(dialect: Dialect) -> Builder {
        Builder { dialect, generator: dialect.generator(), kinds: Vec::new(), singles: Vec::new() }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Adds a served resource's kind, its list and its subresources' kinds.
    pub fn resource(&mut self, resource: &Resource) -> Result<ResourceNames, OpenApiError> {
        let typed = typed(resource.group, resource.version, resource.kind)
            .ok_or_else(|| OpenApiError::UntypedKind(resource.qualified_kind()))?;
        let kind = (typed.name)().into_owned();
        let list_kind = typed.list_kind.ok_or_else(|| OpenApiError::UntypedKind(resource.qualified_kind()))?;
        let list = list_name(&kind, typed.gvk.kind, list_kind);
        if !self.kinds.iter().any(|(_, known, _)| *known == kind) {
            (typed.add)(&mut self.generator);
            self.generator.subschema_for::<meta::ListMeta>();
            self.kinds.push((typed, kind.clone(), list.clone()));
        }
        let scale = resource.has_scale.then(|| self.single(&SCALE));
        let binding = resource.subresources().contains(&"binding").then(|| self.single(&BINDING));
        let eviction = resource.subresources().contains(&"eviction").then(|| self.single(&EVICTION));
        Ok(ResourceNames { kind, list, scale, binding, eviction })
    }

    fn single(&mut self, typed: &'static Typed) -> String {
        let name = (typed.name)().into_owned();
        if !self.singles.iter().any(|(_, known)| *known == name) {
            (typed.add)(&mut self.generator);
            self.singles.push((typed, name.clone()));
        }
        name
    }

    /// Adds the apimachinery types every document's operations name.
    pub fn meta(&mut self) -> MetaNames {
        let generator = &mut self.generator;
        generator.subschema_for::<meta::WatchEvent<Value>>();
        let mut name_of = |add: fn(&mut SchemaGenerator), name: fn() -> Cow<'static, str>| {
            add(generator);
            name().into_owned()
        };
        MetaNames {
            delete_options: name_of(add_schema::<meta::DeleteOptions>, meta::DeleteOptions::schema_name),
            status: name_of(add_schema::<meta::Status>, meta::Status::schema_name),
            patch: name_of(add_schema::<meta::Patch>, meta::Patch::schema_name),
            api_resource_list: name_of(add_schema::<meta::APIResourceList>, meta::APIResourceList::schema_name),
        }
    }

    /// The finished definitions: the generated schemas, the list kinds, the group-version-kinds
    /// and the field extensions. `group_versions` are every group-version this server serves:
    /// `DeleteOptions` and `WatchEvent` belong to each of them.
    pub fn finish(mut self, group_versions: &[(&'static str, &'static str)]) -> Map<String, Value> {
        let mut definitions = self.generator.take_definitions(true);
        let list_meta = meta::ListMeta::schema_name();
        for (typed, kind, list) in &self.kinds {
            if !typed.metadata_required {
                metadata_optional(&mut definitions, kind);
            }
            let schema = list_schema(self.dialect, &definitions, kind, list_meta.as_ref(), typed);
            definitions.insert(list.clone(), schema);
            let list_kind = typed.list_kind.unwrap_or_default();
            set_gvk(&mut definitions, kind, &[typed.gvk]);
            set_gvk(&mut definitions, list, &[Gvk { kind: list_kind, ..typed.gvk }]);
        }
        for (typed, name) in &self.singles {
            set_gvk(&mut definitions, name, &[typed.gvk]);
        }
        let core = |kind| Gvk { group: "", version: "v1", kind };
        set_gvk(&mut definitions, &meta::Status::schema_name(), &[core("Status")]);
        set_gvk(&mut definitions, &meta::APIResourceList::schema_name(), &[core("APIResourceList")]);
        for (name, kind) in [
            (meta::DeleteOptions::schema_name(), "DeleteOptions"),
            (meta::WatchEvent::<Value>::schema_name(), "WatchEvent"),
        ] {
            let gvks: Vec<Gvk> = group_versions.iter().map(|&(group, version)| Gvk { group, version, kind }).collect();
            set_gvk(&mut definitions, &name, &gvks);
        }
        kubernetes_scalar_shapes(&mut definitions, self.dialect);
        let roots: Vec<(Gvk, &str)> = self.kinds.iter().map(|(typed, kind, _)| (typed.gvk, kind.as_str())).collect();
        extensions::annotate(&mut definitions, self.dialect, &roots);
        definitions
    }
}

/// `io.k8s.api.core.v1.Pod` → `io.k8s.api.core.v1.PodList`: Kubernetes names a list definition
/// after its kind's.
fn list_name(kind_definition: &str, kind: &str, list_kind: &str) -> String {
    match kind_definition.strip_suffix(kind) {
        Some(prefix) => format!("{prefix}{list_kind}"),
        None => format!("{kind_definition}List"),
    }
}

/// The schema of a kind's list (k8s-openapi has one generic `List<T>` without a schema):
/// `apiVersion` and `kind` as the kind's own schema describes them, `metadata` a `ListMeta`,
/// `items` the kind.
fn list_schema(
    dialect: Dialect,
    definitions: &Map<String, Value>,
    kind: &str,
    list_meta: &str,
    typed: &Typed,
) -> Value {
    let property = |name: &str| definitions.get(kind).and_then(|schema| schema.pointer(&format!("/properties/{name}")));
    let mut properties = Map::new();
    for name in ["apiVersion", "kind"] {
        let fallback = json!({ "type": "string" });
        properties.insert(name.to_string(), property(name).cloned().unwrap_or(fallback));
    }
    let list_kind = typed.list_kind.unwrap_or_default();
    properties.insert(
        "items".to_string(),
        json!({
            "description": format!("The {} objects of the list.", typed.gvk.kind),
            "type": "array",
            "items": dialect.reference(kind),
        }),
    );
    properties.insert(
        "metadata".to_string(),
        dialect.described_reference(list_meta, "Standard list metadata: the resource version and the continue token."),
    );
    json!({
        "description": format!("{list_kind} is a list of {} objects.", typed.gvk.kind),
        "type": "object",
        "properties": properties,
        "required": ["items"],
    })
}

/// Takes `metadata` out of a kind's `required` (see [`Typed::metadata_required`]).
fn metadata_optional(definitions: &mut Map<String, Value>, name: &str) {
    let Some(Value::Object(schema)) = definitions.get_mut(name) else { return };
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

fn set_gvk(definitions: &mut Map<String, Value>, name: &str, gvks: &[Gvk]) {
    if let Some(Value::Object(schema)) = definitions.get_mut(name) {
        let list: Vec<Value> = gvks.iter().map(|gvk| gvk.to_value()).collect();
        schema.insert("x-kubernetes-group-version-kind".to_string(), Value::Array(list));
    }
}

/// k8s-openapi describes IntOrString and Quantity only by `x-kubernetes-int-or-string` (the form
/// a CRD schema needs). Kubernetes gives them the types kube-openapi derives from their Go
/// methods: in v3 a `oneOf` of the two JSON types each accepts, in v2 (which has no `oneOf`)
/// `type: string`; IntOrString also has `format: int-or-string`. Tooling reads these, and
/// `kubectl explain` names a field of a type without a single `type` by its definition
/// (`targetPort <IntOrString>`).
fn kubernetes_scalar_shapes(definitions: &mut Map<String, Value>, dialect: Dialect) {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let shapes = [
        (IntOrString::schema_name(), ["integer", "string"], Some("int-or-string")),
        (Quantity::schema_name(), ["string", "number"], None),
    ];
    for (name, one_of, format) in shapes {
        let Some(Value::Object(schema)) = definitions.get_mut(name.as_ref()) else { continue };
        match dialect {
            Dialect::V3 => {
                let types: Vec<Value> = one_of.iter().map(|ty| json!({ "type": ty })).collect();
                schema.insert("oneOf".to_string(), Value::Array(types));
            }
            Dialect::V2 => {
                schema.insert("type".to_string(), json!("string"));
            }
        }
        if let Some(format) = format {
            schema.insert("format".to_string(), json!(format));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::RESOURCES;

    #[test]
    fn every_catalog_kind_has_a_typed_definition() {
        for resource in RESOURCES {
            let typed = typed(resource.group, resource.version, resource.kind);
            assert!(
                typed.is_some_and(|t| t.list_kind.is_some()),
                "{} has no k8s-openapi type",
                resource.qualified_kind()
            );
        }
    }

    #[test]
    fn list_definitions_are_named_after_their_kind() {
        assert_eq!(list_name("io.k8s.api.core.v1.Pod", "Pod", "PodList"), "io.k8s.api.core.v1.PodList");
        assert_eq!(
            list_name("io.k8s.api.discovery.v1.EndpointSlice", "EndpointSlice", "EndpointSliceList"),
            "io.k8s.api.discovery.v1.EndpointSliceList"
        );
    }

    #[test]
    fn a_kind_carries_its_descriptions_gvk_and_list() {
        let deployments = crate::apiserver::resources::find("apps", "v1", "deployments").expect("deployments");
        let mut builder = Builder::new(Dialect::V3);
        let names = builder.resource(deployments).expect("typed");
        builder.meta();
        let definitions = builder.finish(&[("", "v1"), ("apps", "v1")]);
        let strategy = &definitions["io.k8s.api.apps.v1.DeploymentStrategy"];
        let rolling = &strategy["properties"]["rollingUpdate"];
        assert!(rolling["description"].as_str().is_some_and(|d| d.starts_with("Rolling update config params")));
        assert_eq!(rolling["allOf"][0]["$ref"], "#/components/schemas/io.k8s.api.apps.v1.RollingUpdateDeployment");
        let gvk = &definitions[&names.kind]["x-kubernetes-group-version-kind"];
        assert_eq!(gvk, &json!([{ "group": "apps", "version": "v1", "kind": "Deployment" }]));
        let list = &definitions[&names.list];
        assert_eq!(list["x-kubernetes-group-version-kind"][0]["kind"], "DeploymentList");
        assert_eq!(list["properties"]["items"]["items"]["$ref"], "#/components/schemas/io.k8s.api.apps.v1.Deployment");
        assert_eq!(names.scale.as_deref(), Some("io.k8s.api.autoscaling.v1.Scale"));
        assert_eq!(
            definitions["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"][0]["group"],
            "autoscaling"
        );
        let delete_options = &definitions["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"];
        assert_eq!(delete_options["x-kubernetes-group-version-kind"].as_array().map(Vec::len), Some(2));
        let int_or_string = &definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(int_or_string["format"], "int-or-string");
        assert_eq!(int_or_string["oneOf"], json!([{ "type": "integer" }, { "type": "string" }]));
        assert!(int_or_string.get("type").is_none(), "{int_or_string}");
        let quantity = &definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"];
        assert_eq!(quantity["oneOf"], json!([{ "type": "string" }, { "type": "number" }]));
        assert!(definitions[&names.kind].get("required").is_none(), "a Deployment's metadata is optional");
    }

    #[test]
    fn metadata_is_required_only_where_kubernetes_requires_it() {
        let events = crate::apiserver::resources::find("", "v1", "events").expect("events");
        let mut builder = Builder::new(Dialect::V3);
        let names = builder.resource(events).expect("typed");
        let definitions = builder.finish(&[]);
        let required = definitions[&names.kind]["required"].as_array().expect("required");
        assert!(required.contains(&json!("metadata")) && required.contains(&json!("involvedObject")));
    }

    #[test]
    fn v2_keeps_the_description_beside_the_reference() {
        let pods = crate::apiserver::resources::find("", "v1", "pods").expect("pods");
        let mut builder = Builder::new(Dialect::V2);
        let names = builder.resource(pods).expect("typed");
        let definitions = builder.finish(&[("", "v1")]);
        let spec = &definitions[&names.kind]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(spec["description"].is_string() && spec.get("allOf").is_none(), "{spec}");
        assert_eq!(names.binding.as_deref(), Some("io.k8s.api.core.v1.Binding"));
        assert_eq!(definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"], "string");
        let int_or_string = &definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!((&int_or_string["type"], &int_or_string["format"]), (&json!("string"), &json!("int-or-string")));
    }
}
