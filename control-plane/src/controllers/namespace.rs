//! The namespace controller's decision: empty a Terminating namespace (pods first, then the
//! rest), report progress in its conditions, and finalize it once nothing is left.
//!
//! Inputs the runtime keeps: the Namespace, and what remains in it across every namespaced
//! served resource (index: objects by namespace, per resource), as [`Content`]. O(content).
//!
//! # What the runtime and API server do with it
//! - Finalizing is `Action::Patch` of the `finalize` subresource (a JSON patch that tests and
//!   replaces `spec.finalizers`); the runtime turns it into Kubernetes' PUT
//!   `/api/v1/namespaces/<n>/finalize` of the namespace with the patched finalizers, the only
//!   write that changes `spec.finalizers`. When the list becomes empty on a namespace with
//!   deletionTimestamp (and no `metadata.finalizers`), the API server deletes the namespace.
//! - Creating a namespace sets `spec.finalizers: ["kubernetes"]`; DELETE sets deletionTimestamp
//!   and phase Terminating and keeps the object while spec.finalizers is not empty.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

use super::action::{Action, NAMESPACES, ObjectRef, PODS, PatchType, Plan, Propagation, ResourceRef};
use super::endpointslices::to_json;

/// The finalizer this controller owns in `spec.finalizers`.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";
/// How long an object held by finalizers is guessed to take (Kubernetes' estimate).
pub const FINALIZER_ESTIMATE: Duration = Duration::from_secs(15);
/// Grace assumed for a pod deleted now whose terminationGracePeriodSeconds is unset.
const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// One object still in the namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    pub resource: ResourceRef,
    pub name: String,
    pub uid: String,
    pub finalizers: Vec<String>,
    pub deletion_timestamp: Option<Timestamp>,
    /// Pods: spec.terminationGracePeriodSeconds (for the requeue estimate).
    pub termination_grace_seconds: Option<i64>,
}

impl Content {
    pub fn new(resource: ResourceRef, metadata: &ObjectMeta, termination_grace_seconds: Option<i64>) -> Content {
        Content {
            resource,
            name: metadata.name.clone().unwrap_or_default(),
            uid: metadata.uid.clone().unwrap_or_default(),
            finalizers: metadata.finalizers.clone().unwrap_or_default(),
            deletion_timestamp: metadata.deletion_timestamp.as_ref().map(|t| t.0),
            termination_grace_seconds,
        }
    }
}

/// What to do for one namespace. Active namespaces and finalized ones get an empty plan.
pub fn sync(namespace: &Namespace, content: &[Content], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let finalizers = namespace.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if namespace.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
        return plan;
    }
    let pods_remain = content.iter().any(|c| c.resource == PODS);
    let mut estimate = Duration::ZERO;
    for item in content {
        if item.deletion_timestamp.is_none() && (item.resource == PODS || !pods_remain) {
            plan.push(Action::Delete {
                target: ObjectRef { resource: item.resource, namespace: Some(name.clone()), name: item.name.clone() },
                uid: Some(item.uid.clone()),
                propagation: Some(Propagation::Background),
            });
        }
        estimate = estimate.max(time_left(item, now));
    }
    let conditions = conditions(namespace, content, now);
    let current = namespace.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if conditions != current {
        let mut updated = namespace.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.conditions = Some(conditions);
        status.phase = Some("Terminating".into());
        // First in the plan: it carries the resourceVersion read.
        plan.actions.insert(0, Action::UpdateStatus { target: target(&name), object: to_json(&updated) });
    }
    if content.is_empty() {
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != KUBERNETES_FINALIZER).collect();
        plan.push(Action::Patch {
            target: target(&name),
            subresource: Some("finalize"),
            patch_type: PatchType::Json,
            patch: json!([
                { "op": "test", "path": "/spec/finalizers", "value": finalizers },
                { "op": "replace", "path": "/spec/finalizers", "value": kept },
            ]),
        });
    } else {
        plan.requeue(estimate / 2 + Duration::from_secs(1));
    }
    plan
}

fn target(name: &str) -> ObjectRef {
    ObjectRef { resource: NAMESPACES, namespace: None, name: name.to_string() }
}

/// How long until this item is likely gone.
fn time_left(item: &Content, now: Timestamp) -> Duration {
    if !item.finalizers.is_empty() {
        return FINALIZER_ESTIMATE;
    }
    if item.resource != PODS {
        return Duration::ZERO;
    }
    match item.deletion_timestamp {
        Some(when) => Duration::try_from(when.duration_since(now)).unwrap_or(Duration::ZERO),
        None => Duration::from_secs(item.termination_grace_seconds.unwrap_or(DEFAULT_POD_GRACE_SECONDS).max(0) as u64),
    }
}

/// Kubernetes' five deletion conditions (the "all is well" ones have status False).
fn conditions(namespace: &Namespace, content: &[Content], now: Timestamp) -> Vec<NamespaceCondition> {
    let mut by_resource: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_finalizer: BTreeMap<&str, usize> = BTreeMap::new();
    for item in content {
        *by_resource.entry(format!("{}.{}", item.resource.plural, item.resource.group)).or_default() += 1;
        for finalizer in &item.finalizers {
            *by_finalizer.entry(finalizer.as_str()).or_default() += 1;
        }
    }
    let remaining = if by_resource.is_empty() {
        ("False", "ContentRemoved", "All content successfully removed".to_string())
    } else {
        let list: Vec<String> = by_resource.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
        ("True", "SomeResourcesRemain", format!("Some resources are remaining: {}", list.join(", ")))
    };
    let finalizers = if by_finalizer.is_empty() {
        ("False", "ContentHasNoFinalizers", "All content-preserving finalizers finished".to_string())
    } else {
        let list: Vec<String> = by_finalizer.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        (
            "True",
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {}", list.join(", ")),
        )
    };
    let wanted = [
        (
            "NamespaceDeletionDiscoveryFailure",
            ("False", "ResourcesDiscovered", "All resources successfully discovered".to_string()),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            ("False", "ParsedGroupVersions", "All legacy kube types successfully parsed".to_string()),
        ),
        (
            "NamespaceDeletionContentFailure",
            ("False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization".to_string()),
        ),
        ("NamespaceContentRemaining", remaining),
        ("NamespaceFinalizersRemaining", finalizers),
    ];
    let current = namespace.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    wanted
        .into_iter()
        .map(|(kind, (status, reason, message))| {
            let old = current.iter().find(|c| c.type_ == kind);
            let same = old.is_some_and(|c| {
                c.status == status && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(&message)
            });
            match old {
                Some(old) if same => old.clone(),
                _ => NamespaceCondition {
                    type_: kind.into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::action::{CONFIG_MAPS, DEPLOYMENTS};
    use k8s_openapi::api::core::v1::{NamespaceSpec, NamespaceStatus};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn terminating() -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                deletion_timestamp: Some(Time(at(0))),
                resource_version: Some("9".into()),
                ..ObjectMeta::default()
            },
            spec: Some(NamespaceSpec { finalizers: Some(vec![KUBERNETES_FINALIZER.into()]) }),
            status: Some(NamespaceStatus { phase: Some("Terminating".into()), conditions: None }),
        }
    }

    fn item(resource: ResourceRef, name: &str) -> Content {
        Content {
            resource,
            name: name.into(),
            uid: format!("uid-{name}"),
            finalizers: Vec::new(),
            deletion_timestamp: None,
            termination_grace_seconds: None,
        }
    }

    fn deleted(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { target, uid, .. } => {
                    assert_eq!(uid.as_deref(), Some(format!("uid-{}", target.name).as_str()));
                    Some(target.name.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn written_conditions(plan: &Plan) -> Vec<NamespaceCondition> {
        match &plan.actions[0] {
            Action::UpdateStatus { object, .. } => {
                serde_json::from_value::<Namespace>(object.clone()).unwrap().status.unwrap().conditions.unwrap()
            }
            other => panic!("expected the status first, got {other:?}"),
        }
    }

    #[test]
    fn pods_go_first_and_the_rest_waits() {
        let content = vec![item(PODS, "p1"), item(CONFIG_MAPS, "cm"), item(DEPLOYMENTS, "d")];
        let plan = sync(&terminating(), &content, at(1));
        assert_eq!(deleted(&plan), vec!["p1".to_string()]);
        let conditions = written_conditions(&plan);
        let remaining = conditions.iter().find(|c| c.type_ == "NamespaceContentRemaining").unwrap();
        assert_eq!(remaining.status, "True");
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: configmaps. has 1 resource instances, deployments.apps has 1 resource instances, pods. has 1 resource instances"
            )
        );
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(16)), "30 s default pod grace / 2 + 1");

        let mut going = item(PODS, "p1");
        going.deletion_timestamp = Some(at(20));
        let plan = sync(&terminating(), &[going, item(CONFIG_MAPS, "cm")], at(10));
        assert!(deleted(&plan).is_empty(), "a pod still terminating holds the rest back");
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(6)));

        let plan = sync(&terminating(), &[item(CONFIG_MAPS, "cm"), item(DEPLOYMENTS, "d")], at(30));
        assert_eq!(deleted(&plan), vec!["cm".to_string(), "d".to_string()]);
    }

    #[test]
    fn finalizers_are_reported_and_an_empty_namespace_is_finalized() {
        let mut held = item(CONFIG_MAPS, "cm");
        held.finalizers = vec!["example.com/keep".into()];
        held.deletion_timestamp = Some(at(0));
        let plan = sync(&terminating(), &[held], at(1));
        let conditions = written_conditions(&plan);
        let finalizers = conditions.iter().find(|c| c.type_ == "NamespaceFinalizersRemaining").unwrap();
        assert_eq!(finalizers.reason.as_deref(), Some("SomeFinalizersRemain"));
        assert_eq!(
            finalizers.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances")
        );
        assert!(!plan.actions.iter().any(|a| matches!(a, Action::Patch { .. })));

        let plan = sync(&terminating(), &[], at(2));
        let conditions = written_conditions(&plan);
        assert_eq!(conditions.len(), 5);
        assert!(conditions.iter().all(|c| c.status == "False"), "{conditions:?}");
        let Some(Action::Patch { target, subresource, patch, .. }) = plan.actions.last() else { panic!("{plan:?}") };
        assert_eq!((target.name.as_str(), *subresource), ("team", Some("finalize")));
        assert_eq!(patch[1], json!({ "op": "replace", "path": "/spec/finalizers", "value": [] }));
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn unchanged_conditions_are_not_rewritten_and_active_namespaces_are_left_alone() {
        let plan = sync(&terminating(), &[item(CONFIG_MAPS, "cm")], at(1));
        let mut namespace = terminating();
        namespace.status.as_mut().unwrap().conditions = Some(written_conditions(&plan));
        let again = sync(&namespace, &[item(CONFIG_MAPS, "cm")], at(5));
        assert!(!again.actions.iter().any(|a| matches!(a, Action::UpdateStatus { .. })));
        assert_eq!(deleted(&again), vec!["cm".to_string()]);

        let mut active = terminating();
        active.metadata.deletion_timestamp = None;
        assert!(sync(&active, &[item(PODS, "p")], at(1)).is_empty());
    }
}
