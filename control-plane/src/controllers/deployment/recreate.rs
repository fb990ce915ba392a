//! The Recreate strategy: every old pod is gone before a new one starts (for applications that
//! cannot run two versions at once). Steps: scale old ReplicaSets to 0; wait until they report
//! no replicas and none of their pods still runs; create or scale the new ReplicaSet to
//! `replicas`; when complete, clean up history.

use k8s_openapi::api::core::v1::Pod;

use super::{Rollout, spec_replicas, status_replicas};
use crate::controllers::replicaset::{controller_of, pod_is_terminal};

pub(super) fn rollout(rollout: &mut Rollout<'_>, pods_in_ns: &[&Pod]) {
    rollout.rolling_out = true;
    rollout.sync_revision(false);
    let mut scaled_down = false;
    for index in rollout.old_indexes() {
        if spec_replicas(&rollout.sets[index]) > 0 {
            scaled_down |= rollout.scale(index, 0);
        }
    }
    if scaled_down || old_pods_running(rollout, pods_in_ns) {
        return;
    }
    if rollout.new_index.is_none() {
        rollout.sync_revision(true);
        if rollout.halted {
            return;
        }
    }
    if let Some(index) = rollout.new_index {
        rollout.scale(index, rollout.replicas);
    }
    if super::status::deployment_complete(rollout.deployment, rollout.deployment.status.as_ref()) {
        super::history::cleanup(rollout);
    }
}

/// Whether an old ReplicaSet still reports replicas or has a pod that has not finished
/// (Pending, Running, Unknown, or terminating).
fn old_pods_running(rollout: &Rollout<'_>, pods: &[&Pod]) -> bool {
    let old = rollout.old_indexes();
    if old.iter().any(|&index| status_replicas(&rollout.sets[index]) > 0) {
        return true;
    }
    let old_uids: Vec<&str> = old.iter().filter_map(|&index| rollout.sets[index].metadata.uid.as_deref()).collect();
    pods.iter().any(|pod| {
        controller_of(&pod.metadata).is_some_and(|owner| old_uids.contains(&owner.uid.as_str()))
            && !pod_is_terminal(pod)
    })
}
