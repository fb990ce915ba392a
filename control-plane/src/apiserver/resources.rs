//! The resource catalog: every type the API server serves, with what discovery, routing and
//! storage need to know about it. Adding a type starts here.

/// One served resource (a group-version-resource and its kind).
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural path segment, also the store prefix `/registry/<plural>/`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// `kubectl get all` lists the resources in category "all".
    pub categories: &'static [&'static str],
    /// Has a `status` subresource: the main endpoint ignores status changes, `/status`
    /// changes only status.
    pub has_status: bool,
    /// Has a `scale` subresource (autoscaling/v1 Scale over `spec.replicas`).
    pub has_scale: bool,
}

impl Resource {
    /// "v1" or "apps/v1": the `apiVersion` of this resource's objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// "pods" or "deployments.apps": how Kubernetes names the resource in error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// "Pod" or "Deployment.apps": how Kubernetes names the kind in Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() { self.kind.to_string() } else { format!("{}.{}", self.kind, self.group) }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced => format!("/registry/{}/{}/{}", self.plural, namespace, name),
            _ => format!("/registry/{}/{}", self.plural, name),
        }
    }

    /// The store prefix of every object in `namespace` (all of them for None).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => format!("/registry/{}/{}/", self.plural, namespace),
            _ => format!("/registry/{}/", self.plural),
        }
    }

    /// Whether objects carry `metadata.generation`, bumped on spec changes: only kinds whose
    /// Kubernetes strategy sets it (pods, deployments, replicasets, endpointslices among the
    /// served ones; ConfigMaps, Secrets, Services, Namespaces and the rest have none).
    pub fn tracks_generation(&self) -> bool {
        matches!(self.plural, "pods" | "deployments" | "replicasets" | "endpointslices")
    }

    /// The verbs discovery advertises.
    pub fn verbs(&self) -> &'static [&'static str] {
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }

    /// Subresources served under `<name>/<subresource>`.
    pub fn subresources(&self) -> Vec<&'static str> {
        let mut subresources = Vec::new();
        if self.has_status {
            subresources.push("status");
        }
        if self.has_scale {
            subresources.push("scale");
        }
        if self.plural == "pods" {
            subresources.extend(["binding", "eviction", "log", "exec"]);
        }
        if self.plural == "namespaces" {
            subresources.push("finalize");
        }
        subresources
    }
}

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories: &[],
        has_status: false,
        has_scale: false,
    }
}

/// Every served resource, in discovery order.
pub static RESOURCES: &[Resource] = &[
    Resource { has_status: true, ..core("Namespace", "namespaces", "namespace", false, &["ns"]) },
    Resource { has_status: true, ..core("Node", "nodes", "node", false, &["no"]) },
    Resource { has_status: true, categories: &["all"], ..core("Pod", "pods", "pod", true, &["po"]) },
    Resource { has_status: true, categories: &["all"], ..core("Service", "services", "service", true, &["svc"]) },
    core("Endpoints", "endpoints", "endpoints", true, &["ep"]),
    core("ConfigMap", "configmaps", "configmap", true, &["cm"]),
    core("Secret", "secrets", "secret", true, &[]),
    core("Event", "events", "event", true, &["ev"]),
    core("ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"]),
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        has_status: true,
        has_scale: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        has_status: true,
        has_scale: true,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        has_status: false,
        has_scale: false,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        has_status: false,
        has_scale: false,
    },
];

/// The API groups other than core, in discovery order, each with its one version.
pub static GROUPS: &[(&str, &str)] = &[("apps", "v1"), ("discovery.k8s.io", "v1"), ("coordination.k8s.io", "v1")];

/// Namespaces, which other code needs by name (first in the catalog; a test pins it).
pub fn namespaces() -> &'static Resource {
    &RESOURCES[0]
}

/// The resource served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resources of one group-version.
pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_registry_layout() {
        let deployments = find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deployments.key(Some("default"), "web"), "/registry/deployments/default/web");
        assert_eq!(deployments.prefix(None), "/registry/deployments/");
        let nodes = find("", "v1", "nodes").expect("nodes");
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
        assert_eq!(deployments.qualified_kind(), "Deployment.apps");
        assert_eq!(nodes.api_version(), "v1");
        assert_eq!(namespaces().plural, "namespaces");
    }

    #[test]
    fn every_group_in_the_catalog_is_listed_once() {
        for resource in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
            let listed = GROUPS.iter().filter(|(g, v)| *g == resource.group && *v == resource.version).count();
            assert_eq!(listed, 1, "{}", resource.qualified_plural());
        }
        let mut plurals: Vec<_> = RESOURCES.iter().map(|r| r.qualified_plural()).collect();
        plurals.sort();
        plurals.dedup();
        assert_eq!(plurals.len(), RESOURCES.len(), "a resource is listed twice");
    }
}
