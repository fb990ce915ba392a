//! The Deployment's status: the counts `kubectl rollout status` reads, and the conditions
//! `Available`, `Progressing` (with the progress deadline) and `ReplicaFailure`, with
//! Kubernetes' reasons and messages. Written only when it changed.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Rollout, available_replicas, ready_replicas, spec_replicas, status_replicas};
use crate::controllers::action::Plan;
use crate::controllers::replicaset::nanos_between;

pub(super) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub(super) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub(super) const RS_UPDATED: &str = "ReplicaSetUpdated";
pub(super) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(super) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(super) const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub(super) const PAUSED: &str = "DeploymentPaused";
pub(super) const RESUMED: &str = "DeploymentResumed";
const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// `progressDeadlineSeconds` is set and not "never" (MaxInt32).
pub(super) fn has_progress_deadline(spec: &DeploymentSpec) -> bool {
    spec.progress_deadline_seconds.is_some_and(|seconds| seconds != i32::MAX)
}

pub(super) fn condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn get<'s>(status: &'s DeploymentStatus, type_: &str) -> Option<&'s DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// Kubernetes' `SetDeploymentCondition`: same status and reason → no change; same status →
/// the transition time is kept; the condition moves to the end of the list.
pub(super) fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_);
    status.conditions.get_or_insert_with(Vec::new).push(condition);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Paused → Progressing Unknown "DeploymentPaused"; resumed → "DeploymentResumed" (not after a
/// timeout, which stays until progress).
pub(super) fn check_paused_condition(rollout: &mut Rollout<'_>) {
    if !has_progress_deadline(rollout.spec) {
        return;
    }
    let now = rollout.now;
    let paused = rollout.paused();
    let status = rollout.working.status.get_or_insert_with(Default::default);
    let reason = get(status, "Progressing").and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT) {
        return;
    }
    let paused_condition = reason.as_deref() == Some(PAUSED);
    if paused && !paused_condition {
        set_condition(status, condition("Progressing", "Unknown", PAUSED, "Deployment is paused", now));
    } else if !paused && paused_condition {
        set_condition(status, condition("Progressing", "Unknown", RESUMED, "Deployment is resumed", now));
    }
}

/// An existing new ReplicaSet and no Progressing condition yet.
pub(super) fn found_new_replica_set(rollout: &mut Rollout<'_>, name: &str) {
    if !has_progress_deadline(rollout.spec) {
        return;
    }
    let status = rollout.working.status.get_or_insert_with(Default::default);
    if get(status, "Progressing").is_none() {
        let message = format!("Found new replica set \"{name}\"");
        set_condition(status, condition("Progressing", "True", FOUND_NEW_RS, &message, rollout.now));
    }
}

pub(super) fn created_new_replica_set(rollout: &mut Rollout<'_>, name: &str) {
    if !has_progress_deadline(rollout.spec) {
        return;
    }
    let status = rollout.working.status.get_or_insert_with(Default::default);
    let message = format!("Created new replica set \"{name}\"");
    set_condition(status, condition("Progressing", "True", NEW_RS_CREATED, &message, rollout.now));
}

/// The rollout is done: every replica updated and available, no old ones, spec observed.
pub(super) fn deployment_complete(deployment: &Deployment, status: Option<&DeploymentStatus>) -> bool {
    let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = status else { return replicas == 0 && deployment.metadata.generation.unwrap_or(0) == 0 };
    status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0)
}

/// Kubernetes' `DeploymentProgressing`: more updated, fewer old, more ready or more available
/// replicas than the status last written says.
fn progressing(old: Option<&DeploymentStatus>, new: &DeploymentStatus) -> bool {
    let count = |value: Option<i32>| value.unwrap_or(0);
    let (old_updated, old_replicas, old_ready, old_available) = old.map_or((0, 0, 0, 0), |s| {
        (count(s.updated_replicas), count(s.replicas), count(s.ready_replicas), count(s.available_replicas))
    });
    count(new.updated_replicas) > old_updated
        || count(new.replicas) - count(new.updated_replicas) < old_replicas - old_updated
        || count(new.ready_replicas) > old_ready
        || count(new.available_replicas) > old_available
}

fn nonzero(value: i32) -> Option<i32> {
    (value != 0).then_some(value)
}

/// Kubernetes' `calculateStatus`, and after a strategy step `syncRolloutStatus` (Progressing,
/// ReplicaFailure, the progress-deadline requeue), into the working Deployment.
pub(super) fn sync_status(rollout: &mut Rollout<'_>, plan: &mut Plan) {
    let now = rollout.now;
    let sets = &rollout.sets;
    let available: i32 = sets.iter().map(available_replicas).sum();
    let total: i32 = sets.iter().map(spec_replicas).sum();
    let mut status = rollout.working.status.clone().unwrap_or_default();
    status.observed_generation = rollout.deployment.metadata.generation.filter(|g| *g != 0);
    status.replicas = nonzero(sets.iter().map(status_replicas).sum());
    status.updated_replicas = nonzero(rollout.new_set().map_or(0, status_replicas));
    status.ready_replicas = nonzero(sets.iter().map(ready_replicas).sum());
    status.available_replicas = nonzero(available);
    status.unavailable_replicas = nonzero((total - available).max(0));
    let available_condition = if available >= rollout.replicas - rollout.max_unavailable() {
        condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now)
    } else {
        condition("Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.", now)
    };
    set_condition(&mut status, available_condition);
    if rollout.rolling_out {
        progress(rollout, &mut status);
        replica_failure(rollout, &mut status);
        if let Some(after) = stuck_requeue(rollout, &status) {
            plan.requeue(after);
        }
    }
    rollout.working.status = Some(status);
}

fn progress(rollout: &Rollout<'_>, status: &mut DeploymentStatus) {
    if !has_progress_deadline(rollout.spec) {
        remove_condition(status, "Progressing");
        return;
    }
    let now = rollout.now;
    let current = get(status, "Progressing").cloned();
    let complete_already = status.replicas == status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if complete_already {
        return;
    }
    let subject = match rollout.new_set() {
        Some(rs) => format!("ReplicaSet \"{}\"", rs.metadata.name.as_deref().unwrap_or("")),
        None => format!("Deployment \"{}\"", rollout.deployment.metadata.name.as_deref().unwrap_or("")),
    };
    if deployment_complete(rollout.deployment, Some(status)) {
        let message = format!("{subject} has successfully progressed.");
        set_condition(status, condition("Progressing", "True", NEW_RS_AVAILABLE, &message, now));
    } else if progressing(rollout.deployment.status.as_ref(), status) {
        let message = format!("{subject} is progressing.");
        let mut updated = condition("Progressing", "True", RS_UPDATED, &message, now);
        if let Some(current) = current.as_ref() {
            if current.status == "True" {
                updated.last_transition_time = current.last_transition_time.clone();
            }
            remove_condition(status, "Progressing");
        }
        set_condition(status, updated);
    } else if timed_out(rollout, status) {
        let message = format!("{subject} has timed out progressing.");
        set_condition(status, condition("Progressing", "False", TIMED_OUT, &message, now));
    }
}

fn timed_out(rollout: &Rollout<'_>, status: &DeploymentStatus) -> bool {
    let Some(current) = get(status, "Progressing") else { return false };
    match current.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => deadline_left(rollout, current).is_some_and(|left| left < 0),
    }
}

/// Nanoseconds from now until lastUpdateTime + progressDeadlineSeconds.
fn deadline_left(rollout: &Rollout<'_>, current: &DeploymentCondition) -> Option<i128> {
    let deadline = i128::from(rollout.spec.progress_deadline_seconds?) * 1_000_000_000;
    let since = current.last_update_time.as_ref()?.0;
    Some(deadline - nanos_between(since, rollout.now))
}

/// Look again just after the progress deadline would pass (Kubernetes' `requeueStuckDeployment`).
fn stuck_requeue(rollout: &Rollout<'_>, status: &DeploymentStatus) -> Option<Duration> {
    if !has_progress_deadline(rollout.spec) {
        return None;
    }
    let current = get(status, "Progressing")?;
    if deployment_complete(rollout.deployment, Some(status)) || current.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let left = deadline_left(rollout, current)?;
    let nanos = u64::try_from(left.max(0)).unwrap_or(u64::MAX);
    Some(Duration::from_nanos(nanos) + Duration::from_secs(1))
}

/// `ReplicaFailure` copied from the new ReplicaSet, else from any ReplicaSet; removed when none.
fn replica_failure(rollout: &Rollout<'_>, status: &mut DeploymentStatus) {
    let failure_of = |rs: &k8s_openapi::api::apps::v1::ReplicaSet| {
        rs.status.as_ref()?.conditions.iter().flatten().find(|c| c.type_ == "ReplicaFailure").cloned()
    };
    let found = rollout.new_set().and_then(failure_of).or_else(|| rollout.sets.iter().find_map(failure_of));
    match found {
        Some(failure) => set_condition(
            status,
            DeploymentCondition {
                type_: failure.type_,
                status: failure.status,
                reason: failure.reason,
                message: failure.message,
                last_update_time: failure.last_transition_time.clone(),
                last_transition_time: failure.last_transition_time,
            },
        ),
        None => remove_condition(status, "ReplicaFailure"),
    }
}
