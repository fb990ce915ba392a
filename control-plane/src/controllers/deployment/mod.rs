//! The Deployment controller's decision: roll a Deployment's pod template out through
//! ReplicaSets, one step per sync, as Kubernetes' deployment controller does.
//!
//! [`sync`] is pure: the Deployment, the ReplicaSets and pods of its namespace (informer
//! caches, never mutated) and the time in, a [`Plan`] out. Layout:
//! - `mod.rs`: the entry, ReplicaSet claiming, and [`Rollout`], the working state of one sync
//!   (copies of the owned ReplicaSets and of the Deployment's annotations and status that the
//!   steps change; written once each at the end).
//! - `hash.rs`: the pod-template-hash and "same template ignoring the hash".
//! - `history.rs`: revisions, the new ReplicaSet's annotations, revision-history, cleanup.
//! - `rolling.rs`, `recreate.rs`: the two strategies.
//! - `scaling.rs`: scaling events and proportional scaling (also the paused path).
//! - `status.rs`: status, the Available / Progressing / ReplicaFailure conditions, requeues.
//!
//! **The contract with the runtime** (beyond "carry the plan out in order, stop at the first
//! failed write, requeue with back-off"):
//! - Enqueue a Deployment on its own events and on every event of a ReplicaSet it controls (or
//!   that its selector matches, for adoption), and of a pod whose ReplicaSet it controls (only
//!   Recreate reads pods). Pass all ReplicaSets and pods of its namespace.
//! - **Hash collisions** need nothing special. The new ReplicaSet is created under
//!   `<deployment>-<hash>`. If a ReplicaSet of that name already exists that is not this
//!   Deployment's ReplicaSet for the current template, the sync sees it in the cache and plans,
//!   instead of the create, an `UpdateStatus` raising `status.collisionCount` by one (a new hash
//!   next time). If the cache has not seen it yet, the create fails with AlreadyExists: that is
//!   an ordinary failed write (stop, requeue with back-off); a later sync sees it and bumps.
//! - Other errors creating the new ReplicaSet: the runtime may write [`create_failed`]'s plan
//!   (Progressing False `ReplicaSetCreateError` + Warning event), as only it sees the error.
//! - Every ReplicaSet write is a PUT with the cached `resourceVersion`, one per ReplicaSet per
//!   plan; the Deployment's status (with its revision annotation, which `/status` keeps) is one
//!   `UpdateStatus`, last.
//! - The plan's `requeue_after` covers minReadySeconds of the ReplicaSets it waits on and the
//!   progress deadline.

mod hash;
mod history;
mod recreate;
mod rolling;
mod scaling;
#[cfg(test)]
mod sim;
mod status;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::action::{Action, DEPLOYMENTS, EventRecord, Plan, REPLICA_SETS};
use super::replicaset::{
    adopt_patch, controller_of, involved, labels_of, object_ref, release_patch, selector_of, to_json,
};

pub use hash::{POD_TEMPLATE_HASH, equal_ignore_hash, pod_template_hash};
pub use history::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
};

/// One sync of `deployment`, in Kubernetes' order: claim ReplicaSets; being deleted → status
/// only; paused → scale only; a changed `spec.replicas` → scale only; else one step of the
/// strategy. Always ends with the status.
pub fn sync(deployment: &Deployment, replica_sets_in_ns: &[&ReplicaSet], pods_in_ns: &[&Pod], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = deployment.spec.as_ref() else { return plan };
    let Some(selector) = selector_of(&spec.selector) else { return plan };
    if selector.is_empty() {
        return selecting_all(deployment, plan);
    }
    let deleting = deployment.metadata.deletion_timestamp.is_some();
    let claimed = claim_replica_sets(deployment, &selector, replica_sets_in_ns, deleting, &mut plan);
    if !plan.actions.is_empty() {
        // Adoption changed those ReplicaSets' resourceVersions: work with them after the cache
        // has the patched objects (their events requeue this Deployment; the requeue is a net).
        plan.requeue(Duration::from_secs(1));
        return plan;
    }
    let mut rollout = Rollout::new(deployment, spec, claimed, replica_sets_in_ns, now);
    if deleting {
        rollout.sync_revision(false);
        return rollout.finish(plan);
    }
    status::check_paused_condition(&mut rollout);
    if rollout.paused() || scaling::is_scaling_event(&rollout) {
        scaling::sync_scale(&mut rollout);
    } else if is_recreate(spec) {
        recreate::rollout(&mut rollout, pods_in_ns);
    } else {
        rolling::rollout(&mut rollout);
    }
    rollout.finish(plan)
}

/// The plan after creating the new ReplicaSet failed with an error other than AlreadyExists
/// (Kubernetes' `ReplicaSetCreateError`): Progressing False with the error, and a Warning
/// event. `replica_set` is the name of the ReplicaSet the failed create was for.
pub fn create_failed(deployment: &Deployment, replica_set: &str, error: &str, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let message = format!("Failed to create new replica set \"{replica_set}\": {error}");
    if deployment.spec.as_ref().is_some_and(status::has_progress_deadline) {
        let mut working = deployment.clone();
        let deployment_status = working.status.get_or_insert_with(Default::default);
        let condition = status::condition("Progressing", "False", status::FAILED_RS_CREATE, &message, now);
        status::set_condition(deployment_status, condition);
        if working.status != deployment.status {
            plan.push(deployment_status_update(&working));
        }
    }
    plan.push(Action::Event(EventRecord {
        involved: involved(&deployment.metadata, "Deployment"),
        event_type: "Warning",
        reason: status::FAILED_RS_CREATE.to_owned(),
        message,
    }));
    plan
}

/// An empty selector would select every pod of the namespace: Kubernetes refuses to act on it
/// and says so (and still records that it saw the generation).
fn selecting_all(deployment: &Deployment, mut plan: Plan) -> Plan {
    plan.push(Action::Event(EventRecord {
        involved: involved(&deployment.metadata, "Deployment"),
        event_type: "Warning",
        reason: "SelectingAll".to_owned(),
        message: "This deployment is selecting all pods. A non-empty selector is required.".to_owned(),
    }));
    let observed = deployment.status.as_ref().and_then(|s| s.observed_generation);
    if observed < deployment.metadata.generation {
        let mut working = deployment.clone();
        working.status.get_or_insert_with(Default::default).observed_generation = deployment.metadata.generation;
        plan.push(deployment_status_update(&working));
    }
    plan
}

/// The ReplicaSets `deployment` controls after this sync's claims; pushes the adopt (orphans
/// its selector matches, not while either side is being deleted) and release (controlled, no
/// longer matching, not while the Deployment is being deleted) patches.
fn claim_replica_sets(
    deployment: &Deployment,
    selector: &crate::apiserver::selectors::LabelSelector,
    replica_sets: &[&ReplicaSet],
    deleting: bool,
    plan: &mut Plan,
) -> Vec<ReplicaSet> {
    let uid = deployment.metadata.uid.as_deref().unwrap_or("");
    let namespace = deployment.metadata.namespace.as_deref();
    let mut owned = Vec::new();
    for rs in replica_sets.iter().copied() {
        if rs.metadata.namespace.as_deref() != namespace {
            continue;
        }
        let matches = selector.matches(labels_of(&rs.metadata));
        match controller_of(&rs.metadata) {
            Some(owner) if owner.uid != uid => {}
            Some(_) if matches => owned.push(rs.clone()),
            Some(_) if !deleting => plan.push(release_patch(REPLICA_SETS, &rs.metadata, uid)),
            Some(_) => {}
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                plan.push(adopt_patch(REPLICA_SETS, &rs.metadata, &deployment.metadata, "Deployment"));
            }
            None => {}
        }
    }
    owned
}

fn is_recreate(spec: &DeploymentSpec) -> bool {
    spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// A pending write of one ReplicaSet of this sync, with the events that follow it.
struct Touched {
    index: usize,
    created: bool,
    events: Vec<EventRecord>,
}

/// The working state of one sync: what the steps have decided so far.
pub(super) struct Rollout<'a> {
    pub(super) deployment: &'a Deployment,
    pub(super) spec: &'a DeploymentSpec,
    /// All ReplicaSets of the namespace, to detect a name taken by someone else.
    pub(super) namespace_sets: &'a [&'a ReplicaSet],
    pub(super) now: Timestamp,
    /// `spec.replicas` (default 1).
    pub(super) replicas: i32,
    /// The Deployment as its status write will send it (annotations and status changed).
    pub(super) working: Deployment,
    /// The owned ReplicaSets, oldest first, as they will be after this sync.
    pub(super) sets: Vec<ReplicaSet>,
    /// Which of `sets` is the new ReplicaSet (template equal to the Deployment's).
    pub(super) new_index: Option<usize>,
    touched: Vec<Touched>,
    /// Old ReplicaSets to delete (history cleanup), after the writes.
    deletions: Vec<Action>,
    /// A strategy ran (not the scale-only or status-only paths): the status gets Kubernetes'
    /// rollout conditions (Progressing, ReplicaFailure) and the progress-deadline requeue.
    pub(super) rolling_out: bool,
    /// Set when the sync must stop after writing status (a hash collision).
    pub(super) halted: bool,
}

impl<'a> Rollout<'a> {
    fn new(
        deployment: &'a Deployment,
        spec: &'a DeploymentSpec,
        mut sets: Vec<ReplicaSet>,
        namespace_sets: &'a [&'a ReplicaSet],
        now: Timestamp,
    ) -> Rollout<'a> {
        sets.sort_by(|a, b| creation_order(a).cmp(&creation_order(b)));
        let new_index = sets.iter().position(|rs| {
            rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &spec.template))
        });
        Rollout {
            deployment,
            spec,
            namespace_sets,
            now,
            replicas: spec.replicas.unwrap_or(1),
            working: deployment.clone(),
            sets,
            new_index,
            touched: Vec::new(),
            deletions: Vec::new(),
            rolling_out: false,
            halted: false,
        }
    }

    pub(super) fn paused(&self) -> bool {
        self.spec.paused == Some(true)
    }

    pub(super) fn new_set(&self) -> Option<&ReplicaSet> {
        self.new_index.map(|index| &self.sets[index])
    }

    /// Indexes of the old ReplicaSets, oldest first.
    pub(super) fn old_indexes(&self) -> Vec<usize> {
        (0..self.sets.len()).filter(|index| Some(*index) != self.new_index).collect()
    }

    /// `maxSurge` resolved against replicas (0 for Recreate).
    pub(super) fn max_surge(&self) -> i32 {
        rolling::fenceposts(self.spec, self.replicas).0
    }

    /// `maxUnavailable` resolved against replicas (0 for Recreate or 0 replicas).
    pub(super) fn max_unavailable(&self) -> i32 {
        rolling::fenceposts(self.spec, self.replicas).1
    }

    /// Kubernetes' `getAllReplicaSetsAndSyncRevision`: brings the new ReplicaSet's revision
    /// and annotations up to date, or (when `create`) creates it.
    pub(super) fn sync_revision(&mut self, create: bool) {
        history::sync_new_replica_set(self, create);
    }

    /// Sets the size of `sets[index]` (and its desired/max annotations); records a
    /// `ScalingReplicaSet` event when the size changes. Returns whether it did.
    pub(super) fn scale(&mut self, index: usize, replicas: i32) -> bool {
        let desired = self.replicas.to_string();
        let max = (self.replicas + self.max_surge()).to_string();
        let rs = &mut self.sets[index];
        let current = spec_replicas(rs);
        let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
        let annotations_changed = annotations.get(DESIRED_REPLICAS_ANNOTATION) != Some(&desired)
            || annotations.get(MAX_REPLICAS_ANNOTATION) != Some(&max);
        if current == replicas && !annotations_changed {
            return false;
        }
        annotations.insert(DESIRED_REPLICAS_ANNOTATION.to_owned(), desired);
        annotations.insert(MAX_REPLICAS_ANNOTATION.to_owned(), max);
        rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        let name = rs.metadata.name.clone().unwrap_or_default();
        let event = (current != replicas).then(|| {
            let direction = if replicas > current { "up" } else { "down" };
            self.scaling_event(format!("Scaled {direction} replica set {name} from {current} to {replicas}"))
        });
        self.touch(index, false, event);
        current != replicas
    }

    fn scaling_event(&self, message: String) -> EventRecord {
        EventRecord {
            involved: involved(&self.deployment.metadata, "Deployment"),
            event_type: "Normal",
            reason: "ScalingReplicaSet".to_owned(),
            message,
        }
    }

    /// Marks `sets[index]` for writing (created: POST, else PUT), keeping first-touch order.
    pub(super) fn touch(&mut self, index: usize, created: bool, event: Option<EventRecord>) {
        let position = match self.touched.iter().position(|t| t.index == index) {
            Some(position) => position,
            None => {
                self.touched.push(Touched { index, created, events: Vec::new() });
                self.touched.len() - 1
            }
        };
        self.touched[position].events.extend(event);
    }

    /// The plan: the ReplicaSet writes in the order first decided, each followed by its
    /// events, then the Deployment's status if it changed, and the requeue.
    fn finish(mut self, mut plan: Plan) -> Plan {
        if !self.halted {
            status::sync_status(&mut self, &mut plan);
        }
        for touched in std::mem::take(&mut self.touched) {
            let rs = &self.sets[touched.index];
            let mut object = to_json(rs);
            object["apiVersion"] = json!("apps/v1");
            object["kind"] = json!("ReplicaSet");
            if touched.created {
                plan.push(Action::Create { resource: REPLICA_SETS, namespace: rs.metadata.namespace.clone(), object });
            } else {
                plan.push(Action::Update { target: object_ref(REPLICA_SETS, &rs.metadata), object });
            }
            for event in touched.events {
                plan.push(Action::Event(event));
            }
        }
        plan.actions.append(&mut self.deletions);
        if self.working.status != self.deployment.status
            || self.working.metadata.annotations != self.deployment.metadata.annotations
        {
            plan.push(deployment_status_update(&self.working));
        }
        plan
    }
}

fn deployment_status_update(deployment: &Deployment) -> Action {
    let mut object = to_json(deployment);
    object["apiVersion"] = json!("apps/v1");
    object["kind"] = json!("Deployment");
    Action::UpdateStatus { target: object_ref(DEPLOYMENTS, &deployment.metadata), object }
}

/// Oldest first; ties by name (Kubernetes' `ReplicaSetsByCreationTimestamp`).
pub(super) fn creation_order(rs: &ReplicaSet) -> (Option<Timestamp>, String) {
    (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone().unwrap_or_default())
}

pub(super) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().map_or(0, |spec| spec.replicas.unwrap_or(1))
}

pub(super) fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |status| status.replicas)
}

pub(super) fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|status| status.available_replicas).unwrap_or(0)
}

pub(super) fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|status| status.ready_replicas).unwrap_or(0)
}

/// An int-or-percent of `total`, rounded up or down (Kubernetes' `GetScaledValueFromIntOrPercent`);
/// None for a malformed value (validation rejects those).
pub(super) fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match value {
        IntOrString::Int(value) => Some(*value),
        IntOrString::String(text) => {
            let percent: i64 = text.strip_suffix('%')?.parse().ok()?;
            let product = percent * i64::from(total);
            let scaled = if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
            i32::try_from(scaled).ok()
        }
    }
}
