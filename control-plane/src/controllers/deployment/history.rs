//! Revisions: which ReplicaSet is the new one and its number, the annotations `kubectl rollout
//! history|undo` read, and the cleanup of old ReplicaSets beyond `revisionHistoryLimit`.
//!
//! A rollback (`kubectl rollout undo`, done client side by patching the Deployment's template
//! back to an old ReplicaSet's) needs nothing special here: that ReplicaSet becomes the new one
//! and gets the next revision, its previous revision moving to `revision-history`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::hash::{POD_TEMPLATE_HASH, pod_template_hash};
use super::{Rollout, creation_order, spec_replicas, status_replicas};
use crate::controllers::action::{Action, REPLICA_SETS};
use crate::controllers::replicaset::{controller_of, controller_ref, object_ref};

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Kubernetes' limit on the revision-history annotation, oldest entries dropped first.
const REVISION_HISTORY_MAX_CHARS: usize = 2000;

/// Deployment annotations that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    DEPRECATED_ROLLBACK_TO,
];

/// A ReplicaSet's revision; 0 when unset or not a number.
pub(super) fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Kubernetes' `getNewReplicaSet`: an existing new ReplicaSet gets the next revision (if it
/// is behind) and the Deployment's annotations; otherwise, when `create`, the new ReplicaSet is
/// created (or a hash collision is recorded). The Deployment's revision annotation and the
/// Progressing condition follow.
pub(super) fn sync_new_replica_set(rollout: &mut Rollout<'_>, create: bool) {
    let max_old = rollout.old_indexes().iter().map(|&i| revision(&rollout.sets[i])).max().unwrap_or(0);
    let new_revision = max_old + 1;
    if let Some(index) = rollout.new_index {
        let min_ready = rollout.spec.min_ready_seconds;
        let annotations_changed = set_new_annotations(rollout, index, new_revision, true);
        let rs_spec = rollout.sets[index].spec.get_or_insert_with(Default::default);
        let min_ready_changed = rs_spec.min_ready_seconds != min_ready;
        rs_spec.min_ready_seconds = min_ready;
        if annotations_changed || min_ready_changed {
            rollout.touch(index, false, None);
        }
        let rs_revision = revision(&rollout.sets[index]).to_string();
        let rs_name = rollout.sets[index].metadata.name.clone().unwrap_or_default();
        set_deployment_revision(rollout, &rs_revision);
        super::status::found_new_replica_set(rollout, &rs_name);
        return;
    }
    if create {
        create_new_replica_set(rollout, new_revision);
    }
}

fn create_new_replica_set(rollout: &mut Rollout<'_>, new_revision: i64) {
    let deployment = rollout.deployment;
    let collision_count = deployment.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&rollout.spec.template, collision_count);
    let name = format!("{}-{hash}", deployment.metadata.name.as_deref().unwrap_or(""));
    let namespace = deployment.metadata.namespace.as_deref();
    let taken = rollout
        .namespace_sets
        .iter()
        .any(|rs| rs.metadata.namespace.as_deref() == namespace && rs.metadata.name.as_deref() == Some(name.as_str()));
    if taken {
        // Not ours for this template (ours would have been found as the new ReplicaSet):
        // another hash next time.
        let status = rollout.working.status.get_or_insert_with(Default::default);
        status.collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
        rollout.halted = true;
        return;
    }
    let mut template = rollout.spec.template.clone();
    let template_meta = template.metadata.get_or_insert_with(Default::default);
    template_meta.labels.get_or_insert_with(Default::default).insert(POD_TEMPLATE_HASH.to_owned(), hash.clone());
    let labels = template_meta.labels.clone();
    let mut selector = rollout.spec.selector.clone();
    selector.match_labels.get_or_insert_with(Default::default).insert(POD_TEMPLATE_HASH.to_owned(), hash);
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: deployment.metadata.namespace.clone(),
            labels,
            owner_references: Some(vec![controller_ref(&deployment.metadata, "Deployment")]),
            // Only for ordering inside this sync (the API server sets the real one).
            creation_timestamp: Some(Time(rollout.now)),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: rollout.spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    rollout.sets.push(rs);
    let index = rollout.sets.len() - 1;
    rollout.new_index = Some(index);
    let replicas = super::rolling::new_replica_set_target(rollout, index);
    rollout.sets[index].spec.get_or_insert_with(Default::default).replicas = Some(replicas);
    set_new_annotations(rollout, index, new_revision, false);
    let event =
        (replicas > 0).then(|| rollout.scaling_event(format!("Scaled up replica set {name} from 0 to {replicas}")));
    rollout.touch(index, true, event);
    set_deployment_revision(rollout, &new_revision.to_string());
    super::status::created_new_replica_set(rollout, &name);
    // The object sent must not carry the local creation time.
    rollout.sets[index].metadata.creation_timestamp = None;
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copies the Deployment's annotations (minus
/// [`NOT_COPIED`]; never removes any), raises the revision to `new_revision` if behind
/// (recording the old one in revision-history), and for a ReplicaSet being created sets the
/// desired/max replicas. Returns whether anything changed.
fn set_new_annotations(rollout: &mut Rollout<'_>, index: usize, new_revision: i64, exists: bool) -> bool {
    let desired = rollout.replicas;
    let max = desired + rollout.max_surge();
    let deployment_annotations = rollout.deployment.metadata.annotations.clone().unwrap_or_default();
    let rs = &mut rollout.sets[index];
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in &deployment_annotations {
        if NOT_COPIED.contains(&key.as_str()) || annotations.get(key) == Some(value) {
            continue;
        }
        annotations.insert(key.clone(), value.clone());
        changed = true;
    }
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(revision)) => revision,
        // Kubernetes leaves a ReplicaSet with a garbled revision alone.
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        annotations.insert(REVISION_ANNOTATION.to_owned(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            push_history(annotations, &old);
        }
    }
    if !exists {
        for (key, value) in
            [(DESIRED_REPLICAS_ANNOTATION, desired.to_string()), (MAX_REPLICAS_ANNOTATION, max.to_string())]
        {
            if annotations.get(key) != Some(&value) {
                annotations.insert(key.to_owned(), value);
                changed = true;
            }
        }
    }
    changed
}

/// Appends `old` to the revision-history, dropping the oldest entries to stay within
/// [`REVISION_HISTORY_MAX_CHARS`] (and not appending at all if `old` alone is too long).
fn push_history(annotations: &mut BTreeMap<String, String>, old: &str) {
    let current = annotations.get(REVISION_HISTORY_ANNOTATION).cloned().unwrap_or_default();
    let mut entries: Vec<&str> = if current.is_empty() { Vec::new() } else { current.split(',').collect() };
    entries.push(old);
    while entries.len() > 1 && entries.join(",").len() > REVISION_HISTORY_MAX_CHARS {
        entries.remove(0);
    }
    let joined = entries.join(",");
    if joined.len() <= REVISION_HISTORY_MAX_CHARS {
        annotations.insert(REVISION_HISTORY_ANNOTATION.to_owned(), joined);
    }
}

fn set_deployment_revision(rollout: &mut Rollout<'_>, revision: &str) {
    let annotations = rollout.working.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION_ANNOTATION).map(String::as_str) != Some(revision) {
        annotations.insert(REVISION_ANNOTATION.to_owned(), revision.to_owned());
    }
}

/// Kubernetes' `cleanupDeployment`: of the old ReplicaSets not being deleted, sorted by
/// revision (then age), the ones beyond `revisionHistoryLimit` are deleted, except any that
/// still has replicas or whose latest spec its controller has not observed. No limit set →
/// nothing is deleted.
pub(super) fn cleanup(rollout: &mut Rollout<'_>) {
    let Some(limit) = rollout.spec.revision_history_limit else { return };
    // A ReplicaSet this sync writes is not cleaned up in the same plan.
    let touched: Vec<usize> = rollout.touched.iter().map(|t| t.index).collect();
    let mut cleanable: Vec<&ReplicaSet> = rollout
        .old_indexes()
        .into_iter()
        .filter(|index| !touched.contains(index))
        .map(|index| &rollout.sets[index])
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = cleanable.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return;
    }
    cleanable.sort_by(|a, b| (revision(a), creation_order(a)).cmp(&(revision(b), creation_order(b))));
    let mut deletions = Vec::new();
    for rs in cleanable.into_iter().take(excess as usize) {
        let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
        let busy = status_replicas(rs) != 0 || spec_replicas(rs) != 0;
        if busy || rs.metadata.generation.unwrap_or(0) > observed || controller_of(&rs.metadata).is_none() {
            continue;
        }
        deletions.push(Action::Delete {
            target: object_ref(REPLICA_SETS, &rs.metadata),
            uid: rs.metadata.uid.clone(),
            propagation: None,
        });
    }
    rollout.deletions.extend(deletions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_history_keeps_the_newest_within_the_limit() {
        let mut annotations = BTreeMap::new();
        push_history(&mut annotations, "1");
        push_history(&mut annotations, "3");
        assert_eq!(annotations[REVISION_HISTORY_ANNOTATION], "1,3");
        let long = "9".repeat(1500);
        push_history(&mut annotations, &long);
        push_history(&mut annotations, &long);
        assert_eq!(annotations[REVISION_HISTORY_ANNOTATION], long);
    }
}
