//! What a controller's sync decides, as data: the writes to make and when to look again.
//!
//! Every controller's decision logic is a pure function from the objects it reads (taken from
//! the informer caches, never mutated) and the time to a [`Plan`]. The controller runtime
//! carries the plan out through the in-process API client, fenced by the controller manager's
//! leadership, in the order given; a failed write stops the rest of the plan and requeues the
//! key with back-off. Keeping decisions pure keeps them testable without a cluster.

use std::time::Duration;

use serde_json::Value;

/// A served resource, named as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResourceRef {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

pub const PODS: ResourceRef = ResourceRef { group: "", version: "v1", plural: "pods" };
pub const NODES: ResourceRef = ResourceRef { group: "", version: "v1", plural: "nodes" };
pub const NAMESPACES: ResourceRef = ResourceRef { group: "", version: "v1", plural: "namespaces" };
pub const SERVICES: ResourceRef = ResourceRef { group: "", version: "v1", plural: "services" };
pub const ENDPOINTS: ResourceRef = ResourceRef { group: "", version: "v1", plural: "endpoints" };
pub const SERVICE_ACCOUNTS: ResourceRef = ResourceRef { group: "", version: "v1", plural: "serviceaccounts" };
pub const EVENTS: ResourceRef = ResourceRef { group: "", version: "v1", plural: "events" };
pub const CONFIG_MAPS: ResourceRef = ResourceRef { group: "", version: "v1", plural: "configmaps" };
pub const SECRETS: ResourceRef = ResourceRef { group: "", version: "v1", plural: "secrets" };
pub const DEPLOYMENTS: ResourceRef = ResourceRef { group: "apps", version: "v1", plural: "deployments" };
pub const REPLICA_SETS: ResourceRef = ResourceRef { group: "apps", version: "v1", plural: "replicasets" };
pub const ENDPOINT_SLICES: ResourceRef =
    ResourceRef { group: "discovery.k8s.io", version: "v1", plural: "endpointslices" };
pub const LEASES: ResourceRef = ResourceRef { group: "coordination.k8s.io", version: "v1", plural: "leases" };

/// Which object a write is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub resource: ResourceRef,
    /// None for cluster-scoped resources.
    pub namespace: Option<String>,
    pub name: String,
}

/// The patch types the API server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/json-patch+json`
    Json,
}

/// DeleteOptions.propagationPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// One write. Objects are JSON (`serde_json::to_value` of the k8s-openapi type).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// POST; `object` may use `metadata.generateName`.
    Create { resource: ResourceRef, namespace: Option<String>, object: Value },
    /// PUT of the whole object (`metadata.resourceVersion` set: a conflict means "look again").
    Update { target: ObjectRef, object: Value },
    /// PUT of `/status` (the whole object, `metadata.resourceVersion` set).
    UpdateStatus { target: ObjectRef, object: Value },
    /// PATCH of the object or of a subresource (`Some("status")`).
    Patch { target: ObjectRef, subresource: Option<&'static str>, patch_type: PatchType, patch: Value },
    /// DELETE, with a UID precondition when given (never deletes a same-named successor).
    Delete { target: ObjectRef, uid: Option<String>, propagation: Option<Propagation> },
    /// DELETE with `gracePeriodSeconds: 0` and a UID precondition: for pods no kubelet is left
    /// to finish a graceful deletion of (their node is gone).
    ForceDelete { target: ObjectRef, uid: String },
    /// A core/v1 Event about `involved` (best effort: a failed event never fails the plan).
    Event(EventRecord),
}

/// An Event as `kubectl describe` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// The object the event is about: kind, namespace, name, uid, apiVersion.
    pub involved: InvolvedObject,
    /// "Normal" or "Warning".
    pub event_type: &'static str,
    /// e.g. "ScalingReplicaSet", "SuccessfulCreate".
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InvolvedObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// The result of one sync: writes in order, then maybe a later look.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Sync this key again after this long even if nothing changes (minReadySeconds,
    /// progress deadlines, tolerationSeconds, grace periods).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Keeps the earliest of the requeue times asked for.
    pub fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |current| current.min(after)));
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.requeue_after.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_keeps_the_earliest() {
        let mut plan = Plan::default();
        assert!(plan.is_empty());
        plan.requeue(Duration::from_secs(5));
        plan.requeue(Duration::from_secs(2));
        plan.requeue(Duration::from_secs(9));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(2)));
    }
}
