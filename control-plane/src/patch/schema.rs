//! Patch metadata for the built-in kinds: which lists merge, by which key, and which objects clear
//! unlisted fields (`retainKeys`).
//!
//! Kubernetes keeps this metadata in the Go struct tags of its API types (`patchStrategy:"merge"`,
//! `patchMergeKey:"name"`, `patchStrategy:"merge,retainKeys"`). Keel has no Go types, so the same
//! facts live here as a tree of `&'static` descriptors: a [`StructType`] lists only the fields
//! whose patch behaviour differs from the default, and a field that is not listed behaves like a
//! field of an unknown type (objects merge key by key, lists are replaced). That keeps the table
//! down to the paths that lead to a mergeable list.
//!
//! The facts were derived from the Kubernetes v1.33 API: the patch tags, cross-checked against the
//! list-merge metadata of the `k8s-openapi` crate. Where the two disagree the patch tag wins,
//! because strategic merge patch reads only the patch tag: for example `resources.claims` in a
//! container is a `listType=map` for server-side apply but has no patch tag, so it is atomic here.
//! Likewise Kubernetes declares several keys for some list maps (container ports are keyed by
//! `containerPort` and `protocol` for server-side apply) but strategic merge patch uses the single
//! `patchMergeKey`, so only that key is recorded.

/// How the items of a list field combine with the items already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the stored list wholesale: lists without a patch strategy, and
    /// every list of a kind this table does not know.
    Atomic,
    /// A list of scalars merged as an ordered set (`patchStrategy:"merge"` without a merge key),
    /// such as `metadata.finalizers`.
    Set,
    /// A list of objects merged item by item; items are the same when their `merge_key` values are.
    Keyed {
        /// The field that identifies an item (`patchMergeKey`).
        merge_key: &'static str,
    },
}

/// What the table knows about the value of one field.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    /// An object whose own fields are described by the given type.
    Object(&'static StructType),
    /// A list merged by `strategy`. For keyed lists `item` describes the fields of each item.
    List {
        /// How patch items combine with stored items.
        strategy: ListStrategy,
        /// The type of each item, when the items are objects with interesting fields of their own.
        item: Option<&'static StructType>,
    },
}

/// One field of a [`StructType`] whose patch behaviour is not the default.
#[derive(Debug)]
pub struct Field {
    /// The JSON name of the field.
    pub name: &'static str,
    /// What the value of the field is.
    pub ty: FieldType,
    /// The `retainKeys` strategy: a patch for this object (or for each item of this list) may carry
    /// `$retainKeys` to clear the stored fields it does not list. Kubernetes uses it for union types
    /// such as a Deployment's `strategy` and a Pod's `volumes`, where setting one member must clear
    /// the others. The server applies a `$retainKeys` directive wherever it appears; this flag
    /// records where clients are expected to send one.
    pub retain_keys: bool,
}

/// The patch-relevant fields of one API type.
#[derive(Debug)]
pub struct StructType {
    /// The Go type name, used in documentation and diagnostics.
    pub name: &'static str,
    /// The fields whose patch behaviour is not the default; unlisted fields merge like unknown ones.
    pub fields: &'static [Field],
}

impl StructType {
    /// The metadata of the field called `name`, if it differs from the default.
    #[must_use]
    pub fn field(&'static self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|field| field.name == name)
    }
}

impl Field {
    /// The type of the object stored in this field, if it is an object with known fields.
    #[must_use]
    pub fn object_type(&self) -> Option<&'static StructType> {
        match self.ty {
            FieldType::Object(ty) => Some(ty),
            FieldType::List { .. } => None,
        }
    }

    /// How this field merges when its value is a list; [`ListStrategy::Atomic`] for non-list fields.
    #[must_use]
    pub fn list_strategy(&self) -> ListStrategy {
        match self.ty {
            FieldType::List { strategy, .. } => strategy,
            FieldType::Object(_) => ListStrategy::Atomic,
        }
    }

    /// The type of each item of this list field, if known.
    #[must_use]
    pub fn item_type(&self) -> Option<&'static StructType> {
        match self.ty {
            FieldType::List { item, .. } => item,
            FieldType::Object(_) => None,
        }
    }
}

/// The schema of the top-level object of the given API group (`""` for core) and kind, or `None`
/// for a kind the table does not know. Versions are not distinguished: the built-in kinds listed
/// here have the same patch metadata in every served version.
#[must_use]
pub fn lookup(group: &str, kind: &str) -> Option<&'static StructType> {
    let ty = match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("", "ReplicationController") => &REPLICATION_CONTROLLER,
        ("", "Service") => &SERVICE,
        ("", "Endpoints") => &ENDPOINTS,
        ("", "Node") => &NODE,
        ("", "Namespace") => &NAMESPACE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "PersistentVolumeClaim") => &PERSISTENT_VOLUME_CLAIM,
        ("", "ConfigMap" | "Secret" | "Event") | ("events.k8s.io", "Event") | ("coordination.k8s.io", "Lease") => {
            &METADATA_ONLY
        }
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("batch", "Job") => &JOB,
        ("batch", "CronJob") => &CRON_JOB,
        _ => return None,
    };
    Some(ty)
}

// Constructors that keep the table below to one line per field.

/// A type whose fields all behave by default: it exists to name list items and objects.
const fn leaf(name: &'static str) -> StructType {
    StructType { name, fields: &[] }
}

/// An object field with known fields.
const fn object(name: &'static str, ty: &'static StructType) -> Field {
    Field { name, ty: FieldType::Object(ty), retain_keys: false }
}

/// An object field with the `retainKeys` strategy.
const fn object_retaining(name: &'static str, ty: &'static StructType) -> Field {
    Field { name, ty: FieldType::Object(ty), retain_keys: true }
}

/// A list of objects merged by `merge_key`.
const fn keyed(name: &'static str, merge_key: &'static str, item: &'static StructType) -> Field {
    Field {
        name,
        ty: FieldType::List { strategy: ListStrategy::Keyed { merge_key }, item: Some(item) },
        retain_keys: false,
    }
}

/// A list of objects merged by `merge_key` whose items have the `retainKeys` strategy.
const fn keyed_retaining(name: &'static str, merge_key: &'static str, item: &'static StructType) -> Field {
    Field {
        name,
        ty: FieldType::List { strategy: ListStrategy::Keyed { merge_key }, item: Some(item) },
        retain_keys: true,
    }
}

/// A list of scalars merged as a set.
const fn set(name: &'static str) -> Field {
    Field { name, ty: FieldType::List { strategy: ListStrategy::Set, item: None }, retain_keys: false }
}

/// A list replaced wholesale. Only listed where readers are likely to expect a merge (tolerations,
/// taints): an unlisted list is atomic anyway.
const fn atomic(name: &'static str) -> Field {
    Field { name, ty: FieldType::List { strategy: ListStrategy::Atomic, item: None }, retain_keys: false }
}

// --- meta/v1 ---

static OBJECT_META: StructType = StructType {
    name: "ObjectMeta",
    fields: &[set("finalizers"), keyed("ownerReferences", "uid", &OWNER_REFERENCE), atomic("managedFields")],
};
static OWNER_REFERENCE: StructType = leaf("OwnerReference");

/// Kinds whose only mergeable lists are in `metadata` (`ConfigMap`, `Secret`, `Event`, `Lease`).
static METADATA_ONLY: StructType =
    StructType { name: "ObjectWithMetadata", fields: &[object("metadata", &OBJECT_META)] };

// --- core/v1: pods ---

static POD: StructType = StructType {
    name: "Pod",
    fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC), object("status", &POD_STATUS)],
};
static POD_TEMPLATE: StructType = StructType {
    name: "PodTemplate",
    fields: &[object("metadata", &OBJECT_META), object("template", &POD_TEMPLATE_SPEC)],
};
static POD_TEMPLATE_SPEC: StructType =
    StructType { name: "PodTemplateSpec", fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC)] };

static POD_SPEC: StructType = StructType {
    name: "PodSpec",
    fields: &[
        keyed_retaining("volumes", "name", &VOLUME),
        keyed("initContainers", "name", &CONTAINER),
        keyed("containers", "name", &CONTAINER),
        // EphemeralContainer has the same mergeable fields as Container.
        keyed("ephemeralContainers", "name", &CONTAINER),
        keyed("imagePullSecrets", "name", &LOCAL_OBJECT_REFERENCE),
        keyed("hostAliases", "ip", &HOST_ALIAS),
        keyed("topologySpreadConstraints", "topologyKey", &TOPOLOGY_SPREAD_CONSTRAINT),
        keyed("schedulingGates", "name", &POD_SCHEDULING_GATE),
        keyed_retaining("resourceClaims", "name", &POD_RESOURCE_CLAIM),
        atomic("tolerations"),
        atomic("readinessGates"),
    ],
};
static VOLUME: StructType = leaf("Volume");
static LOCAL_OBJECT_REFERENCE: StructType = leaf("LocalObjectReference");
static HOST_ALIAS: StructType = leaf("HostAlias");
static TOPOLOGY_SPREAD_CONSTRAINT: StructType = leaf("TopologySpreadConstraint");
static POD_SCHEDULING_GATE: StructType = leaf("PodSchedulingGate");
static POD_RESOURCE_CLAIM: StructType = leaf("PodResourceClaim");

static CONTAINER: StructType = StructType {
    name: "Container",
    fields: &[
        keyed("ports", "containerPort", &CONTAINER_PORT),
        keyed("env", "name", &ENV_VAR),
        keyed("volumeMounts", "mountPath", &VOLUME_MOUNT),
        keyed("volumeDevices", "devicePath", &VOLUME_DEVICE),
        atomic("args"),
        atomic("command"),
        atomic("envFrom"),
    ],
};
static CONTAINER_PORT: StructType = leaf("ContainerPort");
static ENV_VAR: StructType = leaf("EnvVar");
static VOLUME_MOUNT: StructType = leaf("VolumeMount");
static VOLUME_DEVICE: StructType = leaf("VolumeDevice");

static POD_STATUS: StructType = StructType {
    name: "PodStatus",
    fields: &[
        keyed("conditions", "type", &CONDITION),
        keyed("podIPs", "ip", &POD_IP),
        keyed("hostIPs", "ip", &HOST_IP),
        keyed_retaining("resourceClaimStatuses", "name", &POD_RESOURCE_CLAIM_STATUS),
        // Container statuses are written whole by the kubelet; they are atomic lists.
        atomic("containerStatuses"),
        atomic("initContainerStatuses"),
        atomic("ephemeralContainerStatuses"),
    ],
};
static POD_IP: StructType = leaf("PodIP");
static HOST_IP: StructType = leaf("HostIP");
static POD_RESOURCE_CLAIM_STATUS: StructType = leaf("PodResourceClaimStatus");

/// The item type of every `status.conditions` list merged by `type`.
static CONDITION: StructType = leaf("Condition");

/// A `status` whose only mergeable list is `conditions` (keyed by `type`), shared by the kinds
/// that have one.
static CONDITIONS_STATUS: StructType =
    StructType { name: "StatusWithConditions", fields: &[keyed("conditions", "type", &CONDITION)] };

// --- core/v1: other kinds ---

static REPLICATION_CONTROLLER: StructType = StructType {
    name: "ReplicationController",
    fields: &[object("metadata", &OBJECT_META), object("spec", &TEMPLATED_SPEC), object("status", &CONDITIONS_STATUS)],
};

/// A workload `spec` whose only mergeable content is its pod `template`.
static TEMPLATED_SPEC: StructType =
    StructType { name: "WorkloadSpec", fields: &[object("template", &POD_TEMPLATE_SPEC)] };

static SERVICE: StructType = StructType {
    name: "Service",
    fields: &[object("metadata", &OBJECT_META), object("spec", &SERVICE_SPEC), object("status", &CONDITIONS_STATUS)],
};
static SERVICE_SPEC: StructType = StructType { name: "ServiceSpec", fields: &[keyed("ports", "port", &SERVICE_PORT)] };
static SERVICE_PORT: StructType = leaf("ServicePort");

static ENDPOINTS: StructType =
    StructType { name: "Endpoints", fields: &[object("metadata", &OBJECT_META), atomic("subsets")] };

static NODE: StructType = StructType {
    name: "Node",
    fields: &[object("metadata", &OBJECT_META), object("spec", &NODE_SPEC), object("status", &NODE_STATUS)],
};
static NODE_SPEC: StructType = StructType { name: "NodeSpec", fields: &[set("podCIDRs"), atomic("taints")] };
static NODE_STATUS: StructType = StructType {
    name: "NodeStatus",
    fields: &[keyed("addresses", "type", &NODE_ADDRESS), keyed("conditions", "type", &CONDITION), atomic("images")],
};
static NODE_ADDRESS: StructType = leaf("NodeAddress");

static NAMESPACE: StructType = StructType {
    name: "Namespace",
    fields: &[object("metadata", &OBJECT_META), object("spec", &NAMESPACE_SPEC), object("status", &CONDITIONS_STATUS)],
};
/// `spec.finalizers` of a Namespace is atomic, unlike `metadata.finalizers`.
static NAMESPACE_SPEC: StructType = StructType { name: "NamespaceSpec", fields: &[atomic("finalizers")] };

static SERVICE_ACCOUNT: StructType = StructType {
    name: "ServiceAccount",
    fields: &[
        object("metadata", &OBJECT_META),
        keyed("secrets", "name", &OBJECT_REFERENCE),
        // Unlike a PodSpec's, a ServiceAccount's imagePullSecrets has no patch strategy.
        atomic("imagePullSecrets"),
    ],
};
static OBJECT_REFERENCE: StructType = leaf("ObjectReference");

static PERSISTENT_VOLUME_CLAIM: StructType = StructType {
    name: "PersistentVolumeClaim",
    fields: &[object("metadata", &OBJECT_META), object("status", &CONDITIONS_STATUS)],
};

// --- discovery/v1 ---

/// EndpointSlice lists carry no patch strategy: all are atomic.
static ENDPOINT_SLICE: StructType = StructType {
    name: "EndpointSlice",
    fields: &[object("metadata", &OBJECT_META), atomic("endpoints"), atomic("ports")],
};

// --- apps/v1 ---

static DEPLOYMENT: StructType = StructType {
    name: "Deployment",
    fields: &[object("metadata", &OBJECT_META), object("spec", &DEPLOYMENT_SPEC), object("status", &CONDITIONS_STATUS)],
};
static DEPLOYMENT_SPEC: StructType = StructType {
    name: "DeploymentSpec",
    fields: &[object("template", &POD_TEMPLATE_SPEC), object_retaining("strategy", &DEPLOYMENT_STRATEGY)],
};
static DEPLOYMENT_STRATEGY: StructType = leaf("DeploymentStrategy");

static REPLICA_SET: StructType = StructType {
    name: "ReplicaSet",
    fields: &[object("metadata", &OBJECT_META), object("spec", &TEMPLATED_SPEC), object("status", &CONDITIONS_STATUS)],
};

static STATEFUL_SET: StructType = StructType {
    name: "StatefulSet",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &STATEFUL_SET_SPEC),
        object("status", &CONDITIONS_STATUS),
    ],
};
static STATEFUL_SET_SPEC: StructType = StructType {
    name: "StatefulSetSpec",
    fields: &[object("template", &POD_TEMPLATE_SPEC), atomic("volumeClaimTemplates")],
};

static DAEMON_SET: StructType = StructType {
    name: "DaemonSet",
    fields: &[object("metadata", &OBJECT_META), object("spec", &TEMPLATED_SPEC), object("status", &CONDITIONS_STATUS)],
};

// --- batch/v1 ---

static JOB: StructType = StructType {
    name: "Job",
    fields: &[object("metadata", &OBJECT_META), object("spec", &TEMPLATED_SPEC), object("status", &CONDITIONS_STATUS)],
};
static CRON_JOB: StructType =
    StructType { name: "CronJob", fields: &[object("metadata", &OBJECT_META), object("spec", &CRON_JOB_SPEC)] };
static CRON_JOB_SPEC: StructType =
    StructType { name: "CronJobSpec", fields: &[object("jobTemplate", &JOB_TEMPLATE_SPEC)] };
static JOB_TEMPLATE_SPEC: StructType = StructType {
    name: "JobTemplateSpec",
    fields: &[object("metadata", &OBJECT_META), object("spec", &TEMPLATED_SPEC)],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows a dotted path of field names from a kind's root; list fields continue into their
    /// item type.
    fn resolve(group: &str, kind: &str, path: &str) -> &'static Field {
        let mut ty = lookup(group, kind).expect("kind is in the table");
        let mut names = path.split('.').peekable();
        loop {
            let name = names.next().expect("path is not empty");
            let field = ty.field(name).unwrap_or_else(|| panic!("{kind}: no field {name} in {}", ty.name));
            if names.peek().is_none() {
                return field;
            }
            ty = field.object_type().or(field.item_type()).expect("field has a type to descend into");
        }
    }

    fn key_of(group: &str, kind: &str, path: &str) -> ListStrategy {
        resolve(group, kind, path).list_strategy()
    }

    #[test]
    fn merge_keys_match_kubernetes_patch_tags() {
        let keyed = |merge_key| ListStrategy::Keyed { merge_key };
        let cases = [
            ("", "Pod", "spec.containers", keyed("name")),
            ("", "Pod", "spec.initContainers.ports", keyed("containerPort")),
            ("", "Pod", "spec.ephemeralContainers.env", keyed("name")),
            ("", "Pod", "spec.containers.volumeMounts", keyed("mountPath")),
            ("", "Pod", "spec.containers.volumeDevices", keyed("devicePath")),
            ("", "Pod", "spec.volumes", keyed("name")),
            ("", "Pod", "spec.hostAliases", keyed("ip")),
            ("", "Pod", "spec.topologySpreadConstraints", keyed("topologyKey")),
            ("", "Pod", "spec.imagePullSecrets", keyed("name")),
            ("", "Pod", "status.conditions", keyed("type")),
            ("", "Pod", "status.podIPs", keyed("ip")),
            ("", "Service", "spec.ports", keyed("port")),
            ("", "Node", "status.addresses", keyed("type")),
            ("", "ServiceAccount", "secrets", keyed("name")),
            ("apps", "Deployment", "spec.template.spec.containers.env", keyed("name")),
            ("apps", "Deployment", "metadata.ownerReferences", keyed("uid")),
            ("batch", "CronJob", "spec.jobTemplate.spec.template.spec.containers", keyed("name")),
            ("", "Pod", "metadata.finalizers", ListStrategy::Set),
            ("", "Node", "spec.podCIDRs", ListStrategy::Set),
            ("", "Pod", "spec.tolerations", ListStrategy::Atomic),
            ("", "Node", "spec.taints", ListStrategy::Atomic),
            ("", "ServiceAccount", "imagePullSecrets", ListStrategy::Atomic),
            ("", "Namespace", "spec.finalizers", ListStrategy::Atomic),
        ];
        for (group, kind, path, expected) in cases {
            assert_eq!(key_of(group, kind, path), expected, "{group}/{kind} {path}");
        }
    }

    #[test]
    fn retain_keys_fields() {
        assert!(resolve("apps", "Deployment", "spec.strategy").retain_keys);
        assert!(resolve("", "Pod", "spec.volumes").retain_keys);
        assert!(resolve("", "Pod", "spec.resourceClaims").retain_keys);
        assert!(!resolve("", "Pod", "spec.containers").retain_keys);
    }

    #[test]
    fn unknown_kinds_and_fields_have_no_metadata() {
        assert!(lookup("example.com", "Widget").is_none());
        // Group matters: a core Deployment does not exist.
        assert!(lookup("", "Deployment").is_none());
        let pod = lookup("", "Pod").expect("Pod is known");
        assert!(pod.field("nonexistent").is_none());
    }
}
