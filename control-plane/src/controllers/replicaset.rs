//! The ReplicaSet controller's decision: keep `spec.replicas` active pods that the ReplicaSet
//! controls, and report what it sees in `status`.
//!
//! [`sync`] is pure: the ReplicaSet, the ReplicaSets and pods of its namespace (from the
//! informer caches, never mutated), the runtime's [`Expectations`] and the time in; a
//! [`Plan`] out, in this order:
//! 1. claim: adopt matching orphans, release owned pods that stopped matching (patches);
//! 2. create the missing pods or delete the surplus (at most [`BURST_REPLICAS`] per sync, only
//!    when the expectations for this ReplicaSet are satisfied), each write followed by its
//!    `SuccessfulCreate` / `SuccessfulDelete` event;
//! 3. `UpdateStatus`, only when the status changed.
//!
//! **Slow start, simplified.** Kubernetes creates pods in parallel batches of 1, 2, 4, … and
//! stops at the first batch with an error. Here the creates are written in order and, as with
//! every plan, the first failed write stops the rest: the same protection (a failing quota is
//! hit once, not 500 times) without the parallelism. A runtime may batch the creates of one plan
//! 1, 2, 4, … in parallel if it keeps "stop after the first failed batch".
//!
//! **Pod names.** A create carries `metadata.generateName: "<rs>-"` and also a `metadata.name`
//! the controller picks the way the API server would (`<rs>-` cut to 58 characters + 5
//! characters of `bcdfghjklmnpqrstvwxz2456789`, derived from the ReplicaSet's UID, the time and
//! the pod's index), so that the `SuccessfulCreate` event written after it can name the pod as
//! Kubernetes' does ("Created pod: web-7d4b9-x2kqz"). A name clash is an ordinary failed write
//! (AlreadyExists): the plan stops, the key is requeued, the next sync picks other names.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as KubeSelector, ObjectMeta, OwnerReference, Time};
use serde_json::{Value, json};

use super::action::{Action, EventRecord, InvolvedObject, ObjectRef, PODS, PatchType, Plan, REPLICA_SETS};
use crate::apiserver::selectors::LabelSelector;

/// Kubernetes' `BurstReplicas`: the most pods one sync creates or deletes, so one huge resize
/// cannot flood the API server; the next sync (after the expectations are met) does the rest.
pub const BURST_REPLICAS: usize = 500;

/// After this long unmet expectations count as met (Kubernetes' `ExpectationsTimeout`): a lost
/// watch event must not stop a ReplicaSet forever.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The alphabet of Kubernetes' generated name suffixes and pod-template-hash values (no vowels,
/// no look-alike characters, so no words and no ambiguity).
pub const NAME_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// Pod annotation: lower cost pods are deleted first on scale down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// How long a generated name may be before its 5 random characters (63 − 5).
const MAX_GENERATED_BASE_CHARS: usize = 58;

/// The key the runtime's work queue and [`Expectations`] use for a ReplicaSet: `<ns>/<name>`.
pub fn key_of(rs: &ReplicaSet) -> String {
    format!("{}/{}", rs.metadata.namespace.as_deref().unwrap_or(""), rs.metadata.name.as_deref().unwrap_or(""))
}

// ---------------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------------

/// What the controller is waiting to see in the pod informer, per ReplicaSet key, so a sync
/// does not create or delete again pods whose earlier creation or deletion the cache has not
/// caught up with yet. Kubernetes' `UIDTrackingControllerExpectations`, as a plain value the
/// runtime owns (one per controller, behind its own lock) and passes to [`sync`] by reference.
///
/// The runtime's contract:
/// - **Before** carrying out a ReplicaSet's plan: [`Expectations::expect_plan`] (it counts the
///   plan's pod creates and records the UIDs of its pod deletes).
/// - A pod create or delete of that plan that fails, or is skipped because an earlier write
///   failed: [`Expectations::observe_creation`] / [`Expectations::observe_deletion`] for it (the
///   informer will never report it). A delete answered NotFound counts as observed too.
/// - Pod informer: ADDED of a pod whose controller ownerRef is a ReplicaSet →
///   `observe_creation(<ns>/<owner>)`; a pod gaining a `deletionTimestamp` or DELETED (also a
///   tombstone) → `observe_deletion(<ns>/<owner>, <pod uid>)` (counted once per UID, so both
///   events for one pod are harmless).
/// - ReplicaSet DELETED → [`Expectations::forget`].
/// - A plan with pod writes that failed: [`Expectations::record_failure`] with the API error
///   (it becomes the `ReplicaFailure` condition on the next sync); a plan carried out in full:
///   [`Expectations::clear_failure`].
#[derive(Debug, Default, Clone)]
pub struct Expectations {
    entries: HashMap<String, Expected>,
    failures: HashMap<String, ManageFailure>,
}

#[derive(Debug, Clone)]
struct Expected {
    /// Creations not yet seen; ≤ 0 means none outstanding.
    creations: i64,
    /// UIDs of pods whose deletion was asked for and not yet seen.
    deletions: BTreeSet<String>,
    /// When the expectations were last set, for [`EXPECTATIONS_TIMEOUT`].
    set_at: Timestamp,
}

/// Why the last pod writes of a ReplicaSet failed, as its `ReplicaFailure` condition says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageFailure {
    /// "FailedCreate" or "FailedDelete".
    pub reason: FailureReason,
    /// The API error's message.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    FailedCreate,
    FailedDelete,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::FailedCreate => "FailedCreate",
            FailureReason::FailedDelete => "FailedDelete",
        }
    }
}

impl Expectations {
    /// Expects `count` more pod creations for `key` (replacing any earlier expectations).
    pub fn expect_creations(&mut self, key: &str, count: usize, now: Timestamp) {
        let entry = self.entry(key, now);
        entry.creations = i64::try_from(count).unwrap_or(i64::MAX);
    }

    /// Expects the deletion of these pods for `key`.
    pub fn expect_deletions(&mut self, key: &str, pod_uids: impl IntoIterator<Item = String>, now: Timestamp) {
        let entry = self.entry(key, now);
        entry.deletions = pod_uids.into_iter().collect();
    }

    /// Sets the expectations of a plan [`sync`] returned for `key`: its pod creates and the UIDs
    /// of its pod deletes. Call it before carrying the plan out.
    pub fn expect_plan(&mut self, key: &str, plan: &Plan, now: Timestamp) {
        let mut creations = 0usize;
        let mut deletions = BTreeSet::new();
        for action in &plan.actions {
            match action {
                Action::Create { resource, .. } if *resource == PODS => creations += 1,
                Action::Delete { target, uid: Some(uid), .. } if target.resource == PODS => {
                    deletions.insert(uid.clone());
                }
                _ => {}
            }
        }
        if creations == 0 && deletions.is_empty() {
            return;
        }
        let entry = self.entry(key, now);
        entry.creations = i64::try_from(creations).unwrap_or(i64::MAX);
        entry.deletions = deletions;
    }

    /// A pod of `key` was seen created (or its create failed or was skipped).
    pub fn observe_creation(&mut self, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.creations -= 1;
        }
    }

    /// The pod `pod_uid` of `key` was seen deleted or terminating (or its delete failed, was
    /// skipped, or found it gone).
    pub fn observe_deletion(&mut self, key: &str, pod_uid: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.deletions.remove(pod_uid);
        }
    }

    /// True when nothing is outstanding for `key`, nothing was ever expected, or the
    /// expectations are older than [`EXPECTATIONS_TIMEOUT`].
    pub fn satisfied(&self, key: &str, now: Timestamp) -> bool {
        let Some(entry) = self.entries.get(key) else { return true };
        if entry.creations <= 0 && entry.deletions.is_empty() {
            return true;
        }
        nanos_between(entry.set_at, now) > EXPECTATIONS_TIMEOUT.as_nanos() as i128
    }

    /// Drops everything about `key` (the ReplicaSet was deleted).
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
        self.failures.remove(key);
    }

    /// Remembers why the last pod writes of `key` failed; the next [`sync`] reports it in the
    /// `ReplicaFailure` condition.
    pub fn record_failure(&mut self, key: &str, failure: ManageFailure) {
        self.failures.insert(key.to_owned(), failure);
    }

    /// The last plan of `key` was carried out in full.
    pub fn clear_failure(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// The recorded failure of `key`, if any.
    pub fn failure(&self, key: &str) -> Option<&ManageFailure> {
        self.failures.get(key)
    }

    fn entry(&mut self, key: &str, now: Timestamp) -> &mut Expected {
        let entry = self.entries.entry(key.to_owned()).or_insert_with(|| Expected {
            creations: 0,
            deletions: BTreeSet::new(),
            set_at: now,
        });
        entry.set_at = now;
        entry
    }
}

/// The Warning event the runtime writes when a pod write of a ReplicaSet plan fails (only the
/// runtime sees the error): `FailedCreate` "Error creating: <err>" or `FailedDelete`
/// "Error deleting: <err>".
pub fn failure_event(rs: &ReplicaSet, failure: &ManageFailure) -> EventRecord {
    let verb = match failure.reason {
        FailureReason::FailedCreate => "creating",
        FailureReason::FailedDelete => "deleting",
    };
    EventRecord {
        involved: involved(&rs.metadata, "ReplicaSet"),
        event_type: "Warning",
        reason: failure.reason.as_str().to_owned(),
        message: format!("Error {verb}: {}", failure.message),
    }
}

// ---------------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------------

/// One sync of `rs`. `replica_sets_in_ns` (may include `rs`) serves the scale-down ranking:
/// pods of sibling ReplicaSets (same controller, e.g. one Deployment) on the same node count.
pub fn sync(
    rs: &ReplicaSet,
    replica_sets_in_ns: &[&ReplicaSet],
    pods_in_ns: &[&Pod],
    expectations: &Expectations,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = rs.spec.as_ref() else { return plan };
    let Some(selector) = selector_of(&spec.selector) else { return plan };
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let key = key_of(rs);

    let owned = claim_pods(rs, &selector, pods_in_ns, deleting, &mut plan);
    let active: Vec<&Pod> = owned.iter().copied().filter(|pod| pod_is_active(pod)).collect();
    let desired = spec.replicas.unwrap_or(1).max(0) as usize;

    let failure = expectations.failure(&key);
    let status = calculate_status(rs, &active, failure, now);
    let status_changed = rs.status.as_ref() != Some(&status);
    // With a recorded failure the status goes first: the retried writes may fail again and stop
    // the plan, and the condition must still reach the API.
    if status_changed && failure.is_some() {
        plan.push(status_update(rs, &status));
    }
    if !deleting && expectations.satisfied(&key, now) {
        if active.len() < desired {
            create_pods(rs, (desired - active.len()).min(BURST_REPLICAS), now, &mut plan);
        } else if active.len() > desired {
            let related = related_pods(rs, replica_sets_in_ns, pods_in_ns);
            delete_pods(rs, &active, &related, (active.len() - desired).min(BURST_REPLICAS), now, &mut plan);
        }
    }
    if status_changed && failure.is_none() {
        plan.push(status_update(rs, &status));
    }
    if let Some(after) = next_availability_check(&active, min_ready_seconds(rs), now) {
        plan.requeue(after);
    }
    plan
}

/// Kubernetes' pod claim: returns the pods `rs` controls after this sync's adoptions, pushing
/// the adopt and release patches.
fn claim_pods<'a>(
    rs: &ReplicaSet,
    selector: &LabelSelector,
    pods: &[&'a Pod],
    deleting: bool,
    plan: &mut Plan,
) -> Vec<&'a Pod> {
    let rs_uid = rs.metadata.uid.as_deref().unwrap_or("");
    let namespace = rs.metadata.namespace.as_deref();
    let mut owned = Vec::new();
    for pod in pods.iter().copied() {
        if pod.metadata.namespace.as_deref() != namespace {
            continue;
        }
        let matches = selector.matches(labels_of(&pod.metadata));
        match controller_of(&pod.metadata) {
            Some(owner) if owner.uid != rs_uid => {}
            Some(_) if matches => owned.push(pod),
            Some(_) => {
                if !deleting {
                    plan.push(release_patch(PODS, &pod.metadata, rs_uid));
                }
            }
            None => {
                if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                    plan.push(adopt_patch(PODS, &pod.metadata, &rs.metadata, "ReplicaSet"));
                    owned.push(pod);
                }
            }
        }
    }
    owned
}

fn create_pods(rs: &ReplicaSet, count: usize, now: Timestamp, plan: &mut Plan) {
    let base = generated_base(rs.metadata.name.as_deref().unwrap_or(""));
    for index in 0..count {
        let name = format!("{base}{}", name_suffix(rs.metadata.uid.as_deref().unwrap_or(""), now, index));
        let pod = pod_from_template(rs, &name);
        plan.push(Action::Create { resource: PODS, namespace: rs.metadata.namespace.clone(), object: pod });
        plan.push(Action::Event(EventRecord {
            involved: involved(&rs.metadata, "ReplicaSet"),
            event_type: "Normal",
            reason: "SuccessfulCreate".to_owned(),
            message: format!("Created pod: {name}"),
        }));
    }
}

/// The pod object for `rs`'s template: template labels, annotations, finalizers and spec, the
/// ReplicaSet as controller (blockOwnerDeletion, so foreground deletion waits for the pod).
fn pod_from_template(rs: &ReplicaSet, name: &str) -> Value {
    let template = rs.spec.as_ref().and_then(|spec| spec.template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let metadata = ObjectMeta {
        name: Some(name.to_owned()),
        generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or(""))),
        namespace: rs.metadata.namespace.clone(),
        labels: template_meta.labels,
        annotations: template_meta.annotations,
        finalizers: template_meta.finalizers,
        owner_references: Some(vec![controller_ref(&rs.metadata, "ReplicaSet")]),
        ..ObjectMeta::default()
    };
    let mut pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata });
    if let Some(spec) = template.spec {
        pod["spec"] = to_json(&spec);
    }
    pod
}

fn delete_pods(rs: &ReplicaSet, active: &[&Pod], related: &[&Pod], count: usize, now: Timestamp, plan: &mut Plan) {
    for pod in pods_to_delete(active, related, count, now) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        plan.push(Action::Delete {
            target: ObjectRef { resource: PODS, namespace: pod.metadata.namespace.clone(), name: name.clone() },
            uid: pod.metadata.uid.clone(),
            propagation: None,
        });
        plan.push(Action::Event(EventRecord {
            involved: involved(&rs.metadata, "ReplicaSet"),
            event_type: "Normal",
            reason: "SuccessfulDelete".to_owned(),
            message: format!("Deleted pod: {name}"),
        }));
    }
}

/// Pods of `rs` and of the ReplicaSets with the same controller (all of one Deployment), for
/// the "more siblings on the same node" rank. A ReplicaSet without a controller has no
/// siblings.
fn related_pods<'a>(rs: &ReplicaSet, replica_sets: &[&ReplicaSet], pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let mut owners: BTreeSet<&str> = BTreeSet::new();
    owners.insert(rs.metadata.uid.as_deref().unwrap_or(""));
    if let Some(parent) = controller_of(&rs.metadata) {
        for sibling in replica_sets {
            if controller_of(&sibling.metadata).is_some_and(|owner| owner.uid == parent.uid) {
                owners.insert(sibling.metadata.uid.as_deref().unwrap_or(""));
            }
        }
    }
    pods.iter()
        .copied()
        .filter(|pod| controller_of(&pod.metadata).is_some_and(|owner| owners.contains(owner.uid.as_str())))
        .collect()
}

/// The `count` pods to delete first, by Kubernetes' ranking (see [`DeletionKey`]).
pub(crate) fn pods_to_delete<'a>(active: &[&'a Pod], related: &[&Pod], count: usize, now: Timestamp) -> Vec<&'a Pod> {
    let mut per_node: HashMap<&str, i64> = HashMap::new();
    for pod in related.iter().filter(|pod| pod_is_active(pod)) {
        *per_node.entry(node_of(pod)).or_default() += 1;
    }
    let mut ranked: Vec<(DeletionKey, &Pod)> = active
        .iter()
        .map(|pod| (DeletionKey::of(pod, per_node.get(node_of(pod)).copied().unwrap_or(0), now), *pod))
        .collect();
    ranked.sort_by(|left, right| left.0.cmp(&right.0));
    ranked.into_iter().take(count).map(|(_, pod)| pod).collect()
}

/// A pod's place in the scale-down order, smallest deleted first: unassigned before assigned;
/// Pending < Unknown < Running; not ready before ready; lower pod-deletion-cost; more active
/// sibling pods on its node; ready more recently (log2 buckets of the time since); more
/// restarts (regular containers, then restartable init containers); newer (log2 buckets); UID.
///
/// Kubernetes compares pairwise and breaks a tie inside a time bucket by UID at once; a key is
/// used here so the order is total (Rust's sort requires it). The two differ only in which of
/// two pods tied in everything but restarts or age buckets goes first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DeletionKey {
    assigned: bool,
    phase: u8,
    ready: bool,
    cost: i32,
    siblings_on_node_negated: i64,
    ready_bucket: i64,
    restarts_negated: i64,
    sidecar_restarts_negated: i64,
    age_bucket: i64,
    uid: String,
}

impl DeletionKey {
    fn of(pod: &Pod, siblings_on_node: i64, now: Timestamp) -> DeletionKey {
        let ready = pod_is_ready(pod);
        let phase = match pod.status.as_ref().and_then(|status| status.phase.as_deref()) {
            Some("Unknown") => 1,
            Some("Running") => 2,
            _ => 0,
        };
        let cost = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(POD_DELETION_COST))
            .and_then(|cost| cost.parse::<i32>().ok())
            .unwrap_or(0);
        let ready_bucket = if ready { age_bucket(ready_since(pod), now) } else { 0 };
        let (restarts, sidecar_restarts) = max_restarts(pod);
        DeletionKey {
            assigned: !node_of(pod).is_empty(),
            phase,
            ready,
            cost,
            siblings_on_node_negated: -siblings_on_node,
            ready_bucket,
            restarts_negated: -restarts,
            sidecar_restarts_negated: -sidecar_restarts,
            age_bucket: age_bucket(pod.metadata.creation_timestamp.as_ref().map(|time| time.0), now),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// floor(log2(nanoseconds since `time`)), −1 for a time not in the past, and smallest of all
/// for no time (Kubernetes treats a zero time as the most recent).
fn age_bucket(time: Option<Timestamp>, now: Timestamp) -> i64 {
    let Some(time) = time else { return i64::MIN };
    let nanos = nanos_between(time, now);
    if nanos <= 0 { -1 } else { i64::from(127 - nanos.leading_zeros() as i32) }
}

fn max_restarts(pod: &Pod) -> (i64, i64) {
    let Some(status) = pod.status.as_ref() else { return (0, 0) };
    let regular = status.container_statuses.iter().flatten().map(|c| i64::from(c.restart_count)).max().unwrap_or(0);
    let sidecars: BTreeSet<&str> = pod
        .spec
        .iter()
        .flat_map(|spec| spec.init_containers.iter().flatten())
        .filter(|container| container.restart_policy.as_deref() == Some("Always"))
        .map(|container| container.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(c.name.as_str()))
        .map(|c| i64::from(c.restart_count))
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// The status Kubernetes' ReplicaSet controller computes: counts over the active owned pods,
/// `ReplicaFailure` from the recorded failure (its first message kept while it lasts).
fn calculate_status(
    rs: &ReplicaSet,
    active: &[&Pod],
    failure: Option<&ManageFailure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|spec| spec.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let template_selector = LabelSelector::from_set(&template_labels.unwrap_or_default());
    let min_ready = min_ready_seconds(rs);
    let count = |predicate: &dyn Fn(&Pod) -> bool| active.iter().filter(|pod| predicate(pod)).count() as i32;
    status.replicas = active.len() as i32;
    status.fully_labeled_replicas = Some(count(&|pod| template_selector.matches(labels_of(&pod.metadata))));
    status.ready_replicas = Some(count(&|pod| pod_is_ready(pod)));
    status.available_replicas = Some(count(&|pod| pod_is_available(pod, min_ready, now)));
    status.observed_generation = rs.metadata.generation;
    let mut conditions = status.conditions.take().unwrap_or_default();
    let existing = conditions.iter().position(|c| c.type_ == "ReplicaFailure");
    match (failure, existing) {
        (Some(failure), None) => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".to_owned(),
            status: "True".to_owned(),
            reason: Some(failure.reason.as_str().to_owned()),
            message: Some(failure.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        (None, Some(index)) => {
            conditions.remove(index);
        }
        _ => {}
    }
    status.conditions = if conditions.is_empty() { None } else { Some(conditions) };
    status
}

fn status_update(rs: &ReplicaSet, status: &ReplicaSetStatus) -> Action {
    let mut object = rs.clone();
    object.status = Some(status.clone());
    let mut value = to_json(&object);
    value["apiVersion"] = json!("apps/v1");
    value["kind"] = json!("ReplicaSet");
    Action::UpdateStatus { target: object_ref(REPLICA_SETS, &rs.metadata), object: value }
}

/// How long until the first ready pod that is not yet available becomes available (+1 s, as
/// availability needs `lastTransitionTime + minReadySeconds` strictly before now).
pub(crate) fn next_availability_check(pods: &[&Pod], min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let window = i128::from(min_ready_seconds) * 1_000_000_000;
    pods.iter()
        .filter(|pod| pod_is_ready(pod) && !pod_is_available(pod, min_ready_seconds, now))
        .map(|pod| match ready_since(pod) {
            Some(since) => (window - nanos_between(since, now)).max(0),
            None => window,
        })
        .min()
        .map(|nanos| Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)) + Duration::from_secs(1))
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|spec| spec.min_ready_seconds).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the Deployment controller
// ---------------------------------------------------------------------------------------------

/// The controller ownerRef of an object.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|owner| owner.controller == Some(true))
}

/// `owner` as its dependents' controller: apps/v1 `kind`, controller and blockOwnerDeletion.
pub(crate) fn controller_ref(owner: &ObjectMeta, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The strategic-merge patch that makes `owner` the controller of `dependent`; the dependent's
/// UID in the body is a precondition (a same-named successor is never adopted).
pub(crate) fn adopt_patch(
    resource: super::action::ResourceRef,
    dependent: &ObjectMeta,
    owner: &ObjectMeta,
    kind: &str,
) -> Action {
    let owner_ref = controller_ref(owner, kind);
    Action::Patch {
        target: object_ref(resource, dependent),
        subresource: None,
        patch_type: PatchType::Strategic,
        patch: json!({ "metadata": {
            "ownerReferences": [{
                "apiVersion": owner_ref.api_version,
                "kind": owner_ref.kind,
                "name": owner_ref.name,
                "uid": owner_ref.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
            "uid": dependent.uid.clone().unwrap_or_default(),
        }}),
    }
}

/// The strategic-merge patch that drops the ownerRef `owner_uid` from `dependent`.
pub(crate) fn release_patch(resource: super::action::ResourceRef, dependent: &ObjectMeta, owner_uid: &str) -> Action {
    Action::Patch {
        target: object_ref(resource, dependent),
        subresource: None,
        patch_type: PatchType::Strategic,
        patch: json!({ "metadata": {
            "ownerReferences": [{ "$patch": "delete", "uid": owner_uid }],
            "uid": dependent.uid.clone().unwrap_or_default(),
        }}),
    }
}

pub(crate) fn object_ref(resource: super::action::ResourceRef, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef { resource, namespace: meta.namespace.clone(), name: meta.name.clone().unwrap_or_default() }
}

pub(crate) fn involved(meta: &ObjectMeta, kind: &str) -> InvolvedObject {
    InvolvedObject {
        api_version: "apps/v1".to_owned(),
        kind: kind.to_owned(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

/// A `metav1.LabelSelector` as a matcher; None when it is malformed (the API server validates
/// selectors, so this only guards against a corrupt object: such an object is left alone).
pub(crate) fn selector_of(selector: &KubeSelector) -> Option<LabelSelector> {
    LabelSelector::from_json(&to_json(selector)).ok()
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

pub(crate) fn labels_of(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    meta.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// Not Succeeded or Failed and not being deleted: counts towards replicas.
pub(crate) fn pod_is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    phase != Some("Succeeded") && phase != Some("Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Not Succeeded or Failed (a terminating pod still runs: Recreate waits for it).
pub(crate) fn pod_is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    phase == Some("Succeeded") || phase == Some("Failed")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.iter().flatten().find(|condition| condition.type_ == "Ready")
}

pub(crate) fn pod_is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|condition| condition.status == "True")
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod).filter(|c| c.status == "True").and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

/// Ready, and ready for longer than `min_ready_seconds` (Kubernetes' `IsPodAvailable`).
pub(crate) fn pod_is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !pod_is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| nanos_between(since, now) > i128::from(min_ready_seconds) * 1_000_000_000)
}

fn node_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).unwrap_or("")
}

pub(crate) fn nanos_between(from: Timestamp, to: Timestamp) -> i128 {
    to.as_nanosecond() - from.as_nanosecond()
}

/// JSON of a k8s-openapi value; these types always serialize.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn generated_base(name: &str) -> String {
    let base = format!("{name}-");
    if base.len() <= MAX_GENERATED_BASE_CHARS {
        return base;
    }
    let mut cut = MAX_GENERATED_BASE_CHARS;
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    base[..cut].to_owned()
}

/// 5 characters of [`NAME_ALPHABET`] from a 64-bit FNV-1a of the owner UID, the time and the
/// index: different for every pod of one sync and for every sync.
fn name_suffix(owner_uid: &str, now: Timestamp, index: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(owner_uid.as_bytes());
    feed(&now.as_nanosecond().to_le_bytes());
    feed(&(index as u64).to_le_bytes());
    let mut suffix = String::with_capacity(5);
    for _ in 0..5 {
        suffix.push(char::from(NAME_ALPHABET[(hash % 27) as usize]));
        hash /= 27;
    }
    suffix
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus, PodTemplateSpec};

    pub(crate) fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid test time")
    }

    pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    pub(crate) fn template(app: &str, image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(labels(&[("app", app)])), ..ObjectMeta::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "main".into(), image: Some(image.into()), ..Container::default() }],
                ..PodSpec::default()
            }),
        }
    }

    fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                generation: Some(1),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: KubeSelector { match_labels: Some(labels(&[("app", "web")])), ..KubeSelector::default() },
                template: Some(template("web", "nginx")),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    /// A pod controlled by `owner_uid` (or an orphan for ""), in `phase`, ready since
    /// `ready_at` seconds when given.
    pub(crate) fn pod(name: &str, owner_uid: &str, app: &str, phase: &str, ready_at: Option<i64>) -> Pod {
        let owners = (!owner_uid.is_empty()).then(|| {
            vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "owner".into(),
                uid: owner_uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        });
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(&[("app", app)])),
                owner_references: owners,
                creation_timestamp: Some(Time(at(0))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some("node-1".into()), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|seconds| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(seconds))),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    fn creates(plan: &Plan) -> Vec<&Value> {
        plan.actions
            .iter()
            .filter_map(|action| match action {
                Action::Create { object, .. } => Some(object),
                _ => None,
            })
            .collect()
    }

    fn deleted(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|action| match action {
                Action::Delete { target, .. } => Some(target.name.clone()),
                _ => None,
            })
            .collect()
    }

    fn status_of(plan: &Plan) -> Option<ReplicaSetStatus> {
        plan.actions.iter().find_map(|action| match action {
            Action::UpdateStatus { object, .. } => serde_json::from_value(object["status"].clone()).ok(),
            _ => None,
        })
    }

    #[test]
    fn creates_missing_pods_with_owner_labels_and_generate_name() {
        let rs = replica_set("web-abc", 3);
        let plan = sync(&rs, &[&rs], &[], &Expectations::default(), at(10));
        let pods = creates(&plan);
        assert_eq!(pods.len(), 3);
        let mut names = BTreeSet::new();
        for pod in &pods {
            assert_eq!(pod["metadata"]["generateName"], "web-abc-");
            assert_eq!(pod["metadata"]["namespace"], "default");
            assert_eq!(pod["metadata"]["labels"], json!({"app": "web"}));
            assert_eq!(
                pod["metadata"]["ownerReferences"],
                json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "uid-web-abc",
                        "controller": true, "blockOwnerDeletion": true}])
            );
            assert_eq!(pod["spec"]["containers"][0]["image"], "nginx");
            let name = pod["metadata"]["name"].as_str().expect("name");
            assert!(name.starts_with("web-abc-") && name.len() == "web-abc-".len() + 5, "{name}");
            assert!(name["web-abc-".len()..].bytes().all(|b| NAME_ALPHABET.contains(&b)));
            names.insert(name.to_owned());
        }
        assert_eq!(names.len(), 3, "distinct names");
        let events: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].reason, "SuccessfulCreate");
        assert!(names.iter().any(|n| events[0].message == format!("Created pod: {n}")));
        // Status: observed generation, zero counts; written last.
        assert!(matches!(plan.actions.last(), Some(Action::UpdateStatus { .. })));
        let status = status_of(&plan).expect("status");
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.replicas, 0);
    }

    #[test]
    fn creates_at_most_the_burst() {
        let rs = replica_set("big", 2000);
        let plan = sync(&rs, &[], &[], &Expectations::default(), at(0));
        assert_eq!(creates(&plan).len(), BURST_REPLICAS);
    }

    #[test]
    fn unsatisfied_expectations_hold_writes_but_not_status_until_they_expire() {
        let rs = replica_set("web-abc", 3);
        let mut expectations = Expectations::default();
        let first = sync(&rs, &[], &[], &expectations, at(0));
        expectations.expect_plan(&key_of(&rs), &first, at(0));
        assert!(!expectations.satisfied("default/web-abc", at(1)));
        let second = sync(&rs, &[], &[], &expectations, at(1));
        assert!(creates(&second).is_empty());
        assert!(status_of(&second).is_some());
        // Observations lower the counter; three of them satisfy it.
        for _ in 0..3 {
            expectations.observe_creation("default/web-abc");
        }
        assert!(expectations.satisfied("default/web-abc", at(1)));
        // Or the 5-minute expiry.
        expectations.expect_creations("default/web-abc", 2, at(0));
        assert!(!expectations.satisfied("default/web-abc", at(300)));
        assert!(expectations.satisfied("default/web-abc", at(301)));
    }

    #[test]
    fn deletion_expectations_count_each_pod_once() {
        let mut expectations = Expectations::default();
        expectations.expect_deletions("ns/rs", ["a".to_owned(), "b".to_owned()], at(0));
        expectations.observe_deletion("ns/rs", "a");
        expectations.observe_deletion("ns/rs", "a");
        assert!(!expectations.satisfied("ns/rs", at(1)));
        expectations.observe_deletion("ns/rs", "b");
        assert!(expectations.satisfied("ns/rs", at(1)));
    }

    #[test]
    fn surplus_deletes_pending_before_running() {
        let rs = replica_set("web-abc", 2);
        let running = pod("running", "uid-web-abc", "web", "Running", Some(-100));
        let pending = pod("pending", "uid-web-abc", "web", "Pending", None);
        let running_two = pod("running-two", "uid-web-abc", "web", "Running", Some(-100));
        let plan = sync(&rs, &[], &[&running, &pending, &running_two], &Expectations::default(), at(0));
        assert_eq!(deleted(&plan), vec!["pending".to_owned()]);
        let Some(Action::Delete { uid, .. }) = plan.actions.iter().find(|a| matches!(a, Action::Delete { .. })) else {
            panic!("a delete");
        };
        assert_eq!(uid.as_deref(), Some("uid-pending"));
    }

    #[test]
    fn ranking_follows_kubernetes_order() {
        let mut unassigned = pod("unassigned", "o", "web", "Pending", None);
        unassigned.spec.as_mut().map(|spec| spec.node_name = None);
        let pending = pod("pending", "o", "web", "Pending", None);
        let unknown = pod("unknown", "o", "web", "Unknown", None);
        let not_ready = pod("running-not-ready", "o", "web", "Running", None);
        let mut costly = pod("ready-costly", "o", "web", "Running", Some(-1000));
        costly.metadata.annotations = Some(labels(&[(POD_DELETION_COST, "100")]));
        let ready_long_ago = pod("ready-long-ago", "o", "web", "Running", Some(-1000));
        let ready_recently = pod("ready-recently", "o", "web", "Running", Some(-1));
        let mut restarted = pod("ready-long-ago-restarted", "o", "web", "Running", Some(-1000));
        restarted.status.as_mut().map(|status| {
            status.container_statuses = Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                name: "main".into(),
                restart_count: 4,
                ..Default::default()
            }])
        });
        let all = [&costly, &ready_long_ago, &restarted, &ready_recently, &not_ready, &unknown, &pending, &unassigned];
        let order: Vec<_> = pods_to_delete(&all, &all, all.len(), at(0))
            .into_iter()
            .map(|pod| pod.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            order,
            [
                "unassigned",
                "pending",
                "unknown",
                "running-not-ready",
                "ready-recently",
                "ready-long-ago-restarted",
                "ready-long-ago",
                "ready-costly"
            ]
        );
    }

    #[test]
    fn more_siblings_on_a_node_goes_first() {
        let crowded = pod("crowded", "o", "web", "Running", Some(-10));
        let mut alone = pod("alone", "o", "web", "Running", Some(-10));
        alone.spec.as_mut().map(|spec| spec.node_name = Some("node-2".into()));
        let sibling = pod("sibling", "other-rs", "web", "Running", Some(-10));
        let order = pods_to_delete(&[&alone, &crowded], &[&alone, &crowded, &sibling], 1, at(0));
        assert_eq!(order[0].metadata.name.as_deref(), Some("crowded"));
    }

    #[test]
    fn adoption_patch_body_is_exact() {
        let rs = replica_set("web-abc", 1);
        let orphan = pod("orphan", "", "web", "Running", Some(-10));
        let plan = sync(&rs, &[], &[&orphan], &Expectations::default(), at(0));
        assert_eq!(
            plan.actions[0],
            Action::Patch {
                target: ObjectRef { resource: PODS, namespace: Some("default".into()), name: "orphan".into() },
                subresource: None,
                patch_type: PatchType::Strategic,
                patch: json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-abc", "uid": "uid-web-abc", "controller": true, "blockOwnerDeletion": true}],
                    "uid": "uid-orphan"}}),
            }
        );
        // The adopted pod counts: nothing is created.
        assert!(creates(&plan).is_empty());
        assert_eq!(status_of(&plan).map(|s| s.replicas), Some(1));
    }

    #[test]
    fn releases_owned_pods_that_stopped_matching_and_ignores_others() {
        let rs = replica_set("web-abc", 0);
        let relabeled = pod("relabeled", "uid-web-abc", "debug", "Running", None);
        let foreign = pod("foreign", "someone-else", "web", "Running", None);
        let plan = sync(&rs, &[], &[&relabeled, &foreign], &Expectations::default(), at(0));
        assert_eq!(
            plan.actions[0],
            Action::Patch {
                target: ObjectRef { resource: PODS, namespace: Some("default".into()), name: "relabeled".into() },
                subresource: None,
                patch_type: PatchType::Strategic,
                patch: json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "uid-web-abc"}],
                    "uid": "uid-relabeled"}}),
            }
        );
        assert!(deleted(&plan).is_empty());
        assert_eq!(plan.actions.len(), 2, "release + status: {:?}", plan.actions);
    }

    #[test]
    fn status_counts_and_min_ready_requeue() {
        let mut rs = replica_set("web-abc", 2);
        rs.spec.as_mut().map(|spec| spec.min_ready_seconds = Some(30));
        let old = pod("old", "uid-web-abc", "web", "Running", Some(-100));
        let fresh = pod("fresh", "uid-web-abc", "web", "Running", Some(-10));
        let plan = sync(&rs, &[], &[&old, &fresh], &Expectations::default(), at(0));
        let status = status_of(&plan).expect("status");
        assert_eq!(status.replicas, 2);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(21)));
        // Unchanged status: no write at all.
        rs.status = Some(status);
        let again = sync(&rs, &[], &[&old, &fresh], &Expectations::default(), at(0));
        assert!(again.actions.is_empty(), "{:?}", again.actions);
    }

    #[test]
    fn recorded_failure_becomes_replica_failure_condition_first_then_clears() {
        let rs = replica_set("web-abc", 1);
        let key = key_of(&rs);
        let mut expectations = Expectations::default();
        expectations
            .record_failure(&key, ManageFailure { reason: FailureReason::FailedCreate, message: "quota".into() });
        let plan = sync(&rs, &[], &[], &expectations, at(0));
        assert!(matches!(plan.actions[0], Action::UpdateStatus { .. }), "status goes first");
        let status = status_of(&plan).expect("status");
        let condition = &status.conditions.clone().expect("conditions")[0];
        assert_eq!((condition.type_.as_str(), condition.status.as_str()), ("ReplicaFailure", "True"));
        assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(condition.message.as_deref(), Some("quota"));
        let mut written = rs.clone();
        written.status = Some(status);
        expectations.clear_failure(&key);
        let pod = pod("p", "uid-web-abc", "web", "Running", None);
        let plan = sync(&written, &[], &[&pod], &expectations, at(1));
        assert_eq!(status_of(&plan).expect("status").conditions, None);
        let event = failure_event(&rs, &ManageFailure { reason: FailureReason::FailedDelete, message: "boom".into() });
        assert_eq!((event.reason.as_str(), event.message.as_str()), ("FailedDelete", "Error deleting: boom"));
    }

    #[test]
    fn deleting_replica_set_only_writes_status() {
        let mut rs = replica_set("web-abc", 3);
        rs.metadata.deletion_timestamp = Some(Time(at(0)));
        let orphan = pod("orphan", "", "web", "Running", None);
        let plan = sync(&rs, &[], &[&orphan], &Expectations::default(), at(0));
        assert_eq!(plan.actions.len(), 1);
        assert!(matches!(plan.actions[0], Action::UpdateStatus { .. }));
    }

    #[test]
    fn terminating_and_finished_pods_do_not_count() {
        let rs = replica_set("web-abc", 2);
        let mut terminating = pod("terminating", "uid-web-abc", "web", "Running", None);
        terminating.metadata.deletion_timestamp = Some(Time(at(0)));
        let done = pod("done", "uid-web-abc", "web", "Succeeded", None);
        let live = pod("live", "uid-web-abc", "web", "Running", None);
        let plan = sync(&rs, &[], &[&terminating, &done, &live], &Expectations::default(), at(0));
        assert_eq!(creates(&plan).len(), 1);
    }

    #[test]
    fn long_names_are_cut_for_the_suffix() {
        assert_eq!(generated_base(&"a".repeat(70)).len(), 58);
        assert_eq!(generated_base("web"), "web-");
    }
}
