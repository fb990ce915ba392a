//! The server-side apply type table: which lists are list maps (`x-kubernetes-list-type: map`,
//! with their `x-kubernetes-list-map-keys`), which are sets (`x-kubernetes-list-type: set`), and
//! which objects are owned whole (`x-kubernetes-map-type: atomic`), for every served kind.
//!
//! Kubernetes keeps these facts in markers on its Go types (`+listType`, `+listMapKey`,
//! `+mapType`, `+structType`); the structured-merge-diff schema built from them is what the API
//! server merges with. The facts here were read from that schema for Kubernetes v1.33 (the one
//! client-go v0.33 generates for typed apply configurations), walked from each served kind.
//! They differ from strategic merge patch's (`crate::patch::schema`) in places, which is why
//! the two tables are separate: container ports are keyed by `containerPort` *and* `protocol`
//! (`protocol` defaulting to `TCP`) and service ports by `port` and `protocol`, topology spread
//! constraints by `topologyKey` and `whenUnsatisfiable`, `status.hostIPs` of a pod is atomic,
//! and label selectors, node selectors and object references are atomic objects.
//!
//! Like the strategic-merge table the tree is sparse. A [`StructType`] lists only the fields whose
//! behaviour is not the default, and the default is:
//! - an object merges field by field (granular), its fields following the same rules;
//! - a list is atomic (replaced, and owned, as a whole);
//! - a scalar is a leaf.
//!
//! Besides the merge facts, a field may be marked [`Field::zero_present`]: the Go type has a
//! non-pointer struct there, so even an empty object of the kind has it (`metadata`, `spec`,
//! `status`, a pod template's `metadata` and `spec`, a deployment's `strategy`, a container's
//! `resources`). Kubernetes compares against such an empty object when it records who created
//! an object, so these containers are not owned by the creator while the fields inside them are.
//!
//! # For OpenAPI
//! [`root`] gives a kind's type, [`definition`] a type by its OpenAPI definition name, and
//! [`Field::extensions`] the `x-kubernetes-*` values of a property; [`walk`] visits every listed
//! field of a kind with its dotted path. Types owned whole are listed by [`atomic_definitions`]
//! (Kubernetes puts `x-kubernetes-map-type: atomic` on the definition for structs, on the property
//! for maps). A list property the table does not list is atomic; Kubernetes' own OpenAPI marks
//! only some of those explicitly.

/// One key field of a list map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The JSON name of the key field.
    pub name: &'static str,
    /// The value an item that omits the field is keyed by (`protocol: TCP`); without one, an
    /// item must carry the field.
    pub default: Option<KeyDefault>,
}

/// The default value of a key field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDefault {
    Text(&'static str),
    Number(i64),
}

impl KeyDefault {
    #[must_use]
    pub fn to_value(self) -> serde_json::Value {
        match self {
            KeyDefault::Text(text) => serde_json::Value::from(text),
            KeyDefault::Number(number) => serde_json::Value::from(number),
        }
    }
}

/// The items of a list map.
#[derive(Debug, Clone, Copy)]
pub enum Item {
    /// Items merge field by field.
    Struct(&'static StructType),
    /// Items are owned whole (the OpenAPI definition name of their atomic type).
    Atomic(&'static str),
}

/// How server-side apply treats the value of a field.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    /// An object merged field by field, with these fields described.
    Struct(&'static StructType),
    /// A struct owned whole (`+structType=atomic`), by its OpenAPI definition name.
    AtomicStruct(&'static str),
    /// A map owned whole (`+mapType=atomic`).
    AtomicMap,
    /// A list whose items are identified by the values of `keys` (`+listType=map`).
    ListMap { keys: &'static [Key], item: Item },
    /// A list of distinct scalars (`+listType=set`).
    Set,
}

/// One field whose behaviour is not the default.
#[derive(Debug)]
pub struct Field {
    /// The JSON name.
    pub name: &'static str,
    pub ty: FieldType,
    /// The Go field is a non-pointer struct: an empty object of the kind has it as `{}`.
    pub zero_present: bool,
}

/// The described fields of one API type.
#[derive(Debug)]
pub struct StructType {
    /// The OpenAPI definition name (`io.k8s.api.core.v1.Container`).
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// The `x-kubernetes-*` extensions of one property.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extensions {
    /// `x-kubernetes-list-type`: `map` or `set` (`None`: atomic, the default).
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<&'static str>,
    /// `x-kubernetes-map-type`: `atomic` for atomic maps and structs.
    pub map_type: Option<&'static str>,
}

impl StructType {
    /// The described field called `name`.
    #[must_use]
    pub fn field(&'static self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|field| field.name == name)
    }
}

impl Field {
    #[must_use]
    pub fn extensions(&self) -> Extensions {
        match self.ty {
            FieldType::Struct(_) => Extensions::default(),
            FieldType::AtomicStruct(_) | FieldType::AtomicMap => {
                Extensions { map_type: Some("atomic"), ..Extensions::default() }
            }
            FieldType::ListMap { keys, .. } => Extensions {
                list_type: Some("map"),
                list_map_keys: keys.iter().map(|key| key.name).collect(),
                map_type: None,
            },
            FieldType::Set => Extensions { list_type: Some("set"), ..Extensions::default() },
        }
    }
}

/// The type of the objects of `group` (`""` for core) and `kind`, for the served kinds.
#[must_use]
pub fn root(group: &str, kind: &str) -> Option<&'static StructType> {
    let ty = match (group, kind) {
        ("", "Namespace") => &NAMESPACE,
        ("", "Node") => &NODE,
        ("", "Pod") => &POD,
        ("", "Service") => &SERVICE,
        ("", "Endpoints") => &ENDPOINTS,
        ("", "ConfigMap") => &CONFIG_MAP,
        ("", "Secret") => &SECRET,
        ("", "Event") => &EVENT,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("coordination.k8s.io", "Lease") => &LEASE,
        _ => return None,
    };
    Some(ty)
}

/// A described type by its OpenAPI definition name.
#[must_use]
pub fn definition(name: &str) -> Option<&'static StructType> {
    DEFINITIONS.iter().copied().find(|ty| ty.name == name)
}

/// The OpenAPI definitions of the structs owned whole (`x-kubernetes-map-type: atomic`).
#[must_use]
pub fn atomic_definitions() -> &'static [&'static str] {
    &[
        LABEL_SELECTOR,
        NODE_SELECTOR,
        OWNER_REFERENCE,
        OBJECT_REFERENCE,
        LOCAL_OBJECT_REFERENCE,
        TYPED_LOCAL_OBJECT_REFERENCE,
        CONFIG_MAP_KEY_SELECTOR,
        SECRET_KEY_SELECTOR,
        OBJECT_FIELD_SELECTOR,
        RESOURCE_FIELD_SELECTOR,
    ]
}

/// Visits every described field below `ty`, with its dotted path from `ty` (list items are
/// transparent: `spec.template.spec.containers.ports`). Shared types are visited once per path.
pub fn walk(ty: &'static StructType, visit: &mut dyn FnMut(&str, &'static Field)) {
    fn descend(ty: &'static StructType, prefix: &str, depth: usize, visit: &mut dyn FnMut(&str, &'static Field)) {
        // The table is a finite tree; the bound only guards against a cycle added by mistake.
        if depth > 32 {
            return;
        }
        for field in ty.fields {
            let path = if prefix.is_empty() { field.name.to_string() } else { format!("{prefix}.{}", field.name) };
            visit(&path, field);
            match field.ty {
                FieldType::Struct(inner) | FieldType::ListMap { item: Item::Struct(inner), .. } => {
                    descend(inner, &path, depth + 1, visit);
                }
                _ => {}
            }
        }
    }
    descend(ty, "", 0, visit);
}

// Definitions of atomic types.
const LABEL_SELECTOR: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";
const NODE_SELECTOR: &str = "io.k8s.api.core.v1.NodeSelector";
const OWNER_REFERENCE: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference";
const OBJECT_REFERENCE: &str = "io.k8s.api.core.v1.ObjectReference";
const LOCAL_OBJECT_REFERENCE: &str = "io.k8s.api.core.v1.LocalObjectReference";
const TYPED_LOCAL_OBJECT_REFERENCE: &str = "io.k8s.api.core.v1.TypedLocalObjectReference";
const CONFIG_MAP_KEY_SELECTOR: &str = "io.k8s.api.core.v1.ConfigMapKeySelector";
const SECRET_KEY_SELECTOR: &str = "io.k8s.api.core.v1.SecretKeySelector";
const OBJECT_FIELD_SELECTOR: &str = "io.k8s.api.core.v1.ObjectFieldSelector";
const RESOURCE_FIELD_SELECTOR: &str = "io.k8s.api.core.v1.ResourceFieldSelector";

// Constructors that keep the table to one line per field.

const fn leaf(name: &'static str) -> StructType {
    StructType { name, fields: &[] }
}
const fn object(name: &'static str, ty: &'static StructType) -> Field {
    Field { name, ty: FieldType::Struct(ty), zero_present: false }
}
/// A non-pointer struct field (present, as `{}`, in an empty object).
const fn embedded(name: &'static str, ty: &'static StructType) -> Field {
    Field { name, ty: FieldType::Struct(ty), zero_present: true }
}
const fn atomic_struct(name: &'static str, definition: &'static str) -> Field {
    Field { name, ty: FieldType::AtomicStruct(definition), zero_present: false }
}
const fn atomic_map(name: &'static str) -> Field {
    Field { name, ty: FieldType::AtomicMap, zero_present: false }
}
const fn list_map(name: &'static str, keys: &'static [Key], item: &'static StructType) -> Field {
    Field { name, ty: FieldType::ListMap { keys, item: Item::Struct(item) }, zero_present: false }
}
const fn atomic_items(name: &'static str, keys: &'static [Key], definition: &'static str) -> Field {
    Field { name, ty: FieldType::ListMap { keys, item: Item::Atomic(definition) }, zero_present: false }
}
const fn set(name: &'static str) -> Field {
    Field { name, ty: FieldType::Set, zero_present: false }
}
/// A key field that items must carry or that defaults to the empty string.
const fn text_key(name: &'static str) -> Key {
    Key { name, default: Some(KeyDefault::Text("")) }
}

const BY_NAME: &[Key] = &[text_key("name")];
const BY_TYPE: &[Key] = &[text_key("type")];
const BY_IP: &[Key] = &[text_key("ip")];

// --- meta/v1 ---

static OBJECT_META: StructType = StructType {
    name: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    fields: &[set("finalizers"), atomic_items("ownerReferences", &[text_key("uid")], OWNER_REFERENCE)],
};

/// The fields of every kind whose only facts are in its metadata (ConfigMap, Secret, ...).
const METADATA_ONLY: &[Field] = &[embedded("metadata", &OBJECT_META)];

// --- core/v1 ---

static CONFIG_MAP: StructType = StructType { name: "io.k8s.api.core.v1.ConfigMap", fields: METADATA_ONLY };
static SECRET: StructType = StructType { name: "io.k8s.api.core.v1.Secret", fields: METADATA_ONLY };
static ENDPOINTS: StructType = StructType { name: "io.k8s.api.core.v1.Endpoints", fields: METADATA_ONLY };

static NAMESPACE: StructType = StructType {
    name: "io.k8s.api.core.v1.Namespace",
    fields: &[
        embedded("metadata", &OBJECT_META),
        embedded("spec", &NAMESPACE_SPEC),
        embedded("status", &NAMESPACE_STATUS),
    ],
};
static NAMESPACE_SPEC: StructType = leaf("io.k8s.api.core.v1.NamespaceSpec");
static NAMESPACE_STATUS: StructType = StructType {
    name: "io.k8s.api.core.v1.NamespaceStatus",
    fields: &[list_map("conditions", BY_TYPE, &NAMESPACE_CONDITION)],
};
static NAMESPACE_CONDITION: StructType = leaf("io.k8s.api.core.v1.NamespaceCondition");

static NODE: StructType = StructType {
    name: "io.k8s.api.core.v1.Node",
    fields: &[embedded("metadata", &OBJECT_META), embedded("spec", &NODE_SPEC), embedded("status", &NODE_STATUS)],
};
static NODE_SPEC: StructType = StructType { name: "io.k8s.api.core.v1.NodeSpec", fields: &[set("podCIDRs")] };
static NODE_STATUS: StructType = StructType {
    name: "io.k8s.api.core.v1.NodeStatus",
    fields: &[list_map("addresses", BY_TYPE, &NODE_ADDRESS), list_map("conditions", BY_TYPE, &NODE_CONDITION)],
};
static NODE_ADDRESS: StructType = leaf("io.k8s.api.core.v1.NodeAddress");
static NODE_CONDITION: StructType = leaf("io.k8s.api.core.v1.NodeCondition");

static POD: StructType = StructType {
    name: "io.k8s.api.core.v1.Pod",
    fields: &[embedded("metadata", &OBJECT_META), embedded("spec", &POD_SPEC), embedded("status", &POD_STATUS)],
};
static POD_TEMPLATE_SPEC: StructType = StructType {
    name: "io.k8s.api.core.v1.PodTemplateSpec",
    fields: &[embedded("metadata", &OBJECT_META), embedded("spec", &POD_SPEC)],
};
static POD_SPEC: StructType = StructType {
    name: "io.k8s.api.core.v1.PodSpec",
    fields: &[
        object("affinity", &AFFINITY),
        list_map("containers", BY_NAME, &CONTAINER),
        list_map("ephemeralContainers", BY_NAME, &EPHEMERAL_CONTAINER),
        list_map("hostAliases", BY_IP, &HOST_ALIAS),
        atomic_items("imagePullSecrets", BY_NAME, LOCAL_OBJECT_REFERENCE),
        list_map("initContainers", BY_NAME, &CONTAINER),
        atomic_map("nodeSelector"),
        list_map("resourceClaims", BY_NAME, &POD_RESOURCE_CLAIM),
        object("resources", &RESOURCE_REQUIREMENTS),
        list_map("schedulingGates", BY_NAME, &POD_SCHEDULING_GATE),
        list_map(
            "topologySpreadConstraints",
            &[text_key("topologyKey"), text_key("whenUnsatisfiable")],
            &TOPOLOGY_SPREAD_CONSTRAINT,
        ),
        list_map("volumes", BY_NAME, &VOLUME),
    ],
};
static AFFINITY: StructType =
    StructType { name: "io.k8s.api.core.v1.Affinity", fields: &[object("nodeAffinity", &NODE_AFFINITY)] };
static NODE_AFFINITY: StructType = StructType {
    name: "io.k8s.api.core.v1.NodeAffinity",
    fields: &[atomic_struct("requiredDuringSchedulingIgnoredDuringExecution", NODE_SELECTOR)],
};
static HOST_ALIAS: StructType = leaf("io.k8s.api.core.v1.HostAlias");
static POD_RESOURCE_CLAIM: StructType = leaf("io.k8s.api.core.v1.PodResourceClaim");
static POD_SCHEDULING_GATE: StructType = leaf("io.k8s.api.core.v1.PodSchedulingGate");
static TOPOLOGY_SPREAD_CONSTRAINT: StructType = StructType {
    name: "io.k8s.api.core.v1.TopologySpreadConstraint",
    fields: &[atomic_struct("labelSelector", LABEL_SELECTOR)],
};

/// What `Container` and `EphemeralContainer` share.
const CONTAINER_FIELDS: &[Field] = &[
    list_map("env", BY_NAME, &ENV_VAR),
    list_map(
        "ports",
        &[
            Key { name: "containerPort", default: Some(KeyDefault::Number(0)) },
            Key { name: "protocol", default: Some(KeyDefault::Text("TCP")) },
        ],
        &CONTAINER_PORT,
    ),
    embedded("resources", &RESOURCE_REQUIREMENTS),
    list_map("volumeDevices", &[text_key("devicePath")], &VOLUME_DEVICE),
    list_map("volumeMounts", &[text_key("mountPath")], &VOLUME_MOUNT),
];
static CONTAINER: StructType = StructType { name: "io.k8s.api.core.v1.Container", fields: CONTAINER_FIELDS };
static EPHEMERAL_CONTAINER: StructType =
    StructType { name: "io.k8s.api.core.v1.EphemeralContainer", fields: CONTAINER_FIELDS };
static CONTAINER_PORT: StructType = leaf("io.k8s.api.core.v1.ContainerPort");
static VOLUME_DEVICE: StructType = leaf("io.k8s.api.core.v1.VolumeDevice");
static VOLUME_MOUNT: StructType = leaf("io.k8s.api.core.v1.VolumeMount");
static RESOURCE_REQUIREMENTS: StructType = StructType {
    name: "io.k8s.api.core.v1.ResourceRequirements",
    fields: &[list_map("claims", BY_NAME, &RESOURCE_CLAIM)],
};
static RESOURCE_CLAIM: StructType = leaf("io.k8s.api.core.v1.ResourceClaim");
static ENV_VAR: StructType =
    StructType { name: "io.k8s.api.core.v1.EnvVar", fields: &[object("valueFrom", &ENV_VAR_SOURCE)] };
static ENV_VAR_SOURCE: StructType = StructType {
    name: "io.k8s.api.core.v1.EnvVarSource",
    fields: &[
        atomic_struct("configMapKeyRef", CONFIG_MAP_KEY_SELECTOR),
        atomic_struct("fieldRef", OBJECT_FIELD_SELECTOR),
        atomic_struct("resourceFieldRef", RESOURCE_FIELD_SELECTOR),
        atomic_struct("secretKeyRef", SECRET_KEY_SELECTOR),
    ],
};

static VOLUME: StructType = StructType {
    name: "io.k8s.api.core.v1.Volume",
    fields: &[
        object("cephfs", &CEPHFS_SOURCE),
        object("cinder", &CINDER_SOURCE),
        object("csi", &CSI_SOURCE),
        object("ephemeral", &EPHEMERAL_SOURCE),
        object("flexVolume", &FLEX_SOURCE),
        object("iscsi", &ISCSI_SOURCE),
        object("rbd", &RBD_SOURCE),
        object("scaleIO", &SCALE_IO_SOURCE),
        object("storageos", &STORAGEOS_SOURCE),
    ],
};
/// A volume source whose only fact is an atomic `secretRef`.
const SECRET_REF: &[Field] = &[atomic_struct("secretRef", LOCAL_OBJECT_REFERENCE)];
static CEPHFS_SOURCE: StructType = StructType { name: "io.k8s.api.core.v1.CephFSVolumeSource", fields: SECRET_REF };
static CINDER_SOURCE: StructType = StructType { name: "io.k8s.api.core.v1.CinderVolumeSource", fields: SECRET_REF };
static FLEX_SOURCE: StructType = StructType { name: "io.k8s.api.core.v1.FlexVolumeSource", fields: SECRET_REF };
static ISCSI_SOURCE: StructType = StructType { name: "io.k8s.api.core.v1.ISCSIVolumeSource", fields: SECRET_REF };
static RBD_SOURCE: StructType = StructType { name: "io.k8s.api.core.v1.RBDVolumeSource", fields: SECRET_REF };
static SCALE_IO_SOURCE: StructType = StructType { name: "io.k8s.api.core.v1.ScaleIOVolumeSource", fields: SECRET_REF };
static STORAGEOS_SOURCE: StructType =
    StructType { name: "io.k8s.api.core.v1.StorageOSVolumeSource", fields: SECRET_REF };
static CSI_SOURCE: StructType = StructType {
    name: "io.k8s.api.core.v1.CSIVolumeSource",
    fields: &[atomic_struct("nodePublishSecretRef", LOCAL_OBJECT_REFERENCE)],
};
static EPHEMERAL_SOURCE: StructType = StructType {
    name: "io.k8s.api.core.v1.EphemeralVolumeSource",
    fields: &[object("volumeClaimTemplate", &PVC_TEMPLATE)],
};
static PVC_TEMPLATE: StructType = StructType {
    name: "io.k8s.api.core.v1.PersistentVolumeClaimTemplate",
    fields: &[embedded("metadata", &OBJECT_META), embedded("spec", &PVC_SPEC)],
};
static PVC_SPEC: StructType = StructType {
    name: "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
    fields: &[atomic_struct("dataSource", TYPED_LOCAL_OBJECT_REFERENCE), atomic_struct("selector", LABEL_SELECTOR)],
};

static POD_STATUS: StructType = StructType {
    name: "io.k8s.api.core.v1.PodStatus",
    fields: &[
        list_map("conditions", BY_TYPE, &POD_CONDITION),
        list_map("podIPs", BY_IP, &POD_IP),
        list_map("resourceClaimStatuses", BY_NAME, &POD_RESOURCE_CLAIM_STATUS),
    ],
};
static POD_CONDITION: StructType = leaf("io.k8s.api.core.v1.PodCondition");
static POD_IP: StructType = leaf("io.k8s.api.core.v1.PodIP");
static POD_RESOURCE_CLAIM_STATUS: StructType = leaf("io.k8s.api.core.v1.PodResourceClaimStatus");

static SERVICE: StructType = StructType {
    name: "io.k8s.api.core.v1.Service",
    fields: &[embedded("metadata", &OBJECT_META), embedded("spec", &SERVICE_SPEC), embedded("status", &SERVICE_STATUS)],
};
static SERVICE_SPEC: StructType = StructType {
    name: "io.k8s.api.core.v1.ServiceSpec",
    fields: &[
        list_map(
            "ports",
            &[
                Key { name: "port", default: Some(KeyDefault::Number(0)) },
                Key { name: "protocol", default: Some(KeyDefault::Text("TCP")) },
            ],
            &SERVICE_PORT,
        ),
        atomic_map("selector"),
    ],
};
static SERVICE_PORT: StructType = leaf("io.k8s.api.core.v1.ServicePort");
static SERVICE_STATUS: StructType = StructType {
    name: "io.k8s.api.core.v1.ServiceStatus",
    fields: &[list_map("conditions", BY_TYPE, &META_CONDITION), embedded("loadBalancer", &LOAD_BALANCER_STATUS)],
};
static LOAD_BALANCER_STATUS: StructType = leaf("io.k8s.api.core.v1.LoadBalancerStatus");
static META_CONDITION: StructType = leaf("io.k8s.apimachinery.pkg.apis.meta.v1.Condition");

static EVENT: StructType = StructType {
    name: "io.k8s.api.core.v1.Event",
    fields: &[
        embedded("metadata", &OBJECT_META),
        atomic_struct("involvedObject", OBJECT_REFERENCE),
        atomic_struct("related", OBJECT_REFERENCE),
        embedded("source", &EVENT_SOURCE),
    ],
};
static EVENT_SOURCE: StructType = leaf("io.k8s.api.core.v1.EventSource");

static SERVICE_ACCOUNT: StructType = StructType {
    name: "io.k8s.api.core.v1.ServiceAccount",
    fields: &[
        embedded("metadata", &OBJECT_META),
        // ObjectReference.name is optional, so it has no default: every item must name one.
        atomic_items("secrets", &[Key { name: "name", default: None }], OBJECT_REFERENCE),
    ],
};

// --- discovery/v1 ---

static ENDPOINT_SLICE: StructType = StructType { name: "io.k8s.api.discovery.v1.EndpointSlice", fields: METADATA_ONLY };

// --- apps/v1 ---

static DEPLOYMENT: StructType = StructType {
    name: "io.k8s.api.apps.v1.Deployment",
    fields: &[
        embedded("metadata", &OBJECT_META),
        embedded("spec", &DEPLOYMENT_SPEC),
        embedded("status", &DEPLOYMENT_STATUS),
    ],
};
static DEPLOYMENT_SPEC: StructType = StructType {
    name: "io.k8s.api.apps.v1.DeploymentSpec",
    fields: &[
        atomic_struct("selector", LABEL_SELECTOR),
        embedded("strategy", &DEPLOYMENT_STRATEGY),
        embedded("template", &POD_TEMPLATE_SPEC),
    ],
};
static DEPLOYMENT_STRATEGY: StructType = leaf("io.k8s.api.apps.v1.DeploymentStrategy");
static DEPLOYMENT_STATUS: StructType = StructType {
    name: "io.k8s.api.apps.v1.DeploymentStatus",
    fields: &[list_map("conditions", BY_TYPE, &DEPLOYMENT_CONDITION)],
};
static DEPLOYMENT_CONDITION: StructType = leaf("io.k8s.api.apps.v1.DeploymentCondition");

static REPLICA_SET: StructType = StructType {
    name: "io.k8s.api.apps.v1.ReplicaSet",
    fields: &[
        embedded("metadata", &OBJECT_META),
        embedded("spec", &REPLICA_SET_SPEC),
        embedded("status", &REPLICA_SET_STATUS),
    ],
};
static REPLICA_SET_SPEC: StructType = StructType {
    name: "io.k8s.api.apps.v1.ReplicaSetSpec",
    fields: &[atomic_struct("selector", LABEL_SELECTOR), embedded("template", &POD_TEMPLATE_SPEC)],
};
static REPLICA_SET_STATUS: StructType = StructType {
    name: "io.k8s.api.apps.v1.ReplicaSetStatus",
    fields: &[list_map("conditions", BY_TYPE, &REPLICA_SET_CONDITION)],
};
static REPLICA_SET_CONDITION: StructType = leaf("io.k8s.api.apps.v1.ReplicaSetCondition");

// --- coordination.k8s.io/v1 ---

static LEASE: StructType = StructType {
    name: "io.k8s.api.coordination.v1.Lease",
    fields: &[embedded("metadata", &OBJECT_META), embedded("spec", &LEASE_SPEC)],
};
static LEASE_SPEC: StructType = leaf("io.k8s.api.coordination.v1.LeaseSpec");

/// Every described type, for [`definition`].
static DEFINITIONS: &[&StructType] = &[
    &OBJECT_META,
    &CONFIG_MAP,
    &SECRET,
    &ENDPOINTS,
    &NAMESPACE,
    &NAMESPACE_SPEC,
    &NAMESPACE_STATUS,
    &NAMESPACE_CONDITION,
    &NODE,
    &NODE_SPEC,
    &NODE_STATUS,
    &NODE_ADDRESS,
    &NODE_CONDITION,
    &POD,
    &POD_TEMPLATE_SPEC,
    &POD_SPEC,
    &AFFINITY,
    &NODE_AFFINITY,
    &HOST_ALIAS,
    &POD_RESOURCE_CLAIM,
    &POD_SCHEDULING_GATE,
    &TOPOLOGY_SPREAD_CONSTRAINT,
    &CONTAINER,
    &EPHEMERAL_CONTAINER,
    &CONTAINER_PORT,
    &VOLUME_DEVICE,
    &VOLUME_MOUNT,
    &RESOURCE_REQUIREMENTS,
    &RESOURCE_CLAIM,
    &ENV_VAR,
    &ENV_VAR_SOURCE,
    &VOLUME,
    &CEPHFS_SOURCE,
    &CINDER_SOURCE,
    &FLEX_SOURCE,
    &ISCSI_SOURCE,
    &RBD_SOURCE,
    &SCALE_IO_SOURCE,
    &STORAGEOS_SOURCE,
    &CSI_SOURCE,
    &EPHEMERAL_SOURCE,
    &PVC_TEMPLATE,
    &PVC_SPEC,
    &POD_STATUS,
    &POD_CONDITION,
    &POD_IP,
    &POD_RESOURCE_CLAIM_STATUS,
    &SERVICE,
    &SERVICE_SPEC,
    &SERVICE_PORT,
    &SERVICE_STATUS,
    &LOAD_BALANCER_STATUS,
    &META_CONDITION,
    &EVENT,
    &EVENT_SOURCE,
    &SERVICE_ACCOUNT,
    &ENDPOINT_SLICE,
    &DEPLOYMENT,
    &DEPLOYMENT_SPEC,
    &DEPLOYMENT_STRATEGY,
    &DEPLOYMENT_STATUS,
    &DEPLOYMENT_CONDITION,
    &REPLICA_SET,
    &REPLICA_SET_SPEC,
    &REPLICA_SET_STATUS,
    &REPLICA_SET_CONDITION,
    &LEASE,
    &LEASE_SPEC,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The extensions at a dotted path from a kind's root.
    fn facts(group: &str, kind: &str, path: &str) -> Extensions {
        let mut found = None;
        walk(root(group, kind).expect("served kind"), &mut |at, field| {
            if at == path {
                found = Some(field.extensions());
            }
        });
        found.unwrap_or_default()
    }

    fn list_map(keys: &[&'static str]) -> Extensions {
        Extensions { list_type: Some("map"), list_map_keys: keys.to_vec(), map_type: None }
    }

    #[test]
    fn list_maps_have_kubernetes_keys() {
        let cases = [
            ("", "Pod", "spec.containers", &["name"][..]),
            ("", "Pod", "spec.containers.ports", &["containerPort", "protocol"]),
            ("", "Pod", "spec.initContainers.env", &["name"]),
            ("", "Pod", "spec.ephemeralContainers.volumeMounts", &["mountPath"]),
            ("", "Pod", "spec.containers.volumeDevices", &["devicePath"]),
            ("", "Pod", "spec.containers.resources.claims", &["name"]),
            ("", "Pod", "spec.topologySpreadConstraints", &["topologyKey", "whenUnsatisfiable"]),
            ("", "Pod", "spec.volumes", &["name"]),
            ("", "Pod", "spec.hostAliases", &["ip"]),
            ("", "Pod", "spec.imagePullSecrets", &["name"]),
            ("", "Pod", "status.conditions", &["type"]),
            ("", "Pod", "status.podIPs", &["ip"]),
            ("", "Service", "spec.ports", &["port", "protocol"]),
            ("", "Node", "status.addresses", &["type"]),
            ("", "ServiceAccount", "secrets", &["name"]),
            ("apps", "Deployment", "spec.template.spec.containers.ports", &["containerPort", "protocol"]),
            ("apps", "ReplicaSet", "status.conditions", &["type"]),
            ("coordination.k8s.io", "Lease", "metadata.ownerReferences", &["uid"]),
        ];
        for (group, kind, path, keys) in cases {
            assert_eq!(facts(group, kind, path), list_map(keys), "{kind} {path}");
        }
    }

    #[test]
    fn sets_and_atomic_objects() {
        let set = Extensions { list_type: Some("set"), ..Extensions::default() };
        let atomic = Extensions { map_type: Some("atomic"), ..Extensions::default() };
        assert_eq!(facts("", "ConfigMap", "metadata.finalizers"), set);
        assert_eq!(facts("", "Node", "spec.podCIDRs"), set);
        for (group, kind, path) in [
            ("apps", "Deployment", "spec.selector"),
            ("", "Pod", "spec.nodeSelector"),
            ("", "Service", "spec.selector"),
            ("", "Event", "involvedObject"),
            ("", "Pod", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
            ("", "Pod", "spec.containers.env.valueFrom.secretKeyRef"),
        ] {
            assert_eq!(facts(group, kind, path), atomic, "{kind} {path}");
        }
        // Lists the table does not describe are atomic: no extension.
        assert_eq!(facts("", "Pod", "status.hostIPs"), Extensions::default());
        assert_eq!(facts("", "Pod", "spec.tolerations"), Extensions::default());
    }

    #[test]
    fn every_served_kind_has_a_root_and_definitions_resolve() {
        for resource in crate::apiserver::resources::RESOURCES {
            let ty = root(resource.group, resource.kind).unwrap_or_else(|| panic!("{} has no type", resource.kind));
            assert!(ty.field("metadata").is_some_and(|m| m.zero_present), "{}", resource.kind);
        }
        assert!(root("example.com", "Widget").is_none());
        assert!(root("", "Deployment").is_none(), "the group matters");
        let container = definition("io.k8s.api.core.v1.Container").expect("container");
        assert_eq!(
            container.field("ports").map(|f| f.extensions().list_map_keys),
            Some(vec!["containerPort", "protocol"])
        );
        for ty in DEFINITIONS {
            assert_eq!(definition(ty.name).map(|d| d.name), Some(ty.name));
        }
        assert!(atomic_definitions().contains(&"io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"));
    }
}
