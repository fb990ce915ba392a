//! Scaling without rolling: when `spec.replicas` changed (`kubectl scale`, an autoscaler) or
//! the Deployment is paused. With one active ReplicaSet it simply gets the new size; in the
//! middle of a rollout the change is spread over the active ReplicaSets in proportion to their
//! sizes (Kubernetes' proportional scaling), so a rollout in progress keeps its shape and the
//! surge bound holds.

use super::history::{DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, cleanup};
use super::{Rollout, available_replicas, creation_order, spec_replicas};

/// Kubernetes' `isScalingEvent`: some active ReplicaSet was sized for another `spec.replicas`.
pub(super) fn is_scaling_event(rollout: &Rollout<'_>) -> bool {
    let desired = rollout.replicas.to_string();
    rollout.sets.iter().filter(|rs| spec_replicas(rs) > 0).any(|rs| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_REPLICAS_ANNOTATION))
            .is_some_and(|value| *value != desired)
    })
}

/// Kubernetes' `sync`: revision bookkeeping of an existing new ReplicaSet, scaling, and (when
/// paused) history cleanup. No new ReplicaSet is created.
pub(super) fn sync_scale(rollout: &mut Rollout<'_>) {
    rollout.sync_revision(false);
    scale(rollout);
    if rollout.paused() {
        cleanup(rollout);
    }
}

fn scale(rollout: &mut Rollout<'_>) {
    let replicas = rollout.replicas;
    if let Some(index) = active_or_latest(rollout) {
        // Also when only its desired/max annotations are stale (Kubernetes returns early then
        // and keeps seeing a scaling event).
        rollout.scale(index, replicas);
        return;
    }
    if rollout.new_index.is_some_and(|index| saturated(rollout, index)) {
        for index in rollout.old_indexes() {
            if spec_replicas(&rollout.sets[index]) > 0 {
                rollout.scale(index, 0);
            }
        }
        return;
    }
    if super::is_recreate(rollout.spec) {
        return;
    }
    proportional(rollout);
}

/// The one active ReplicaSet; with none active, the new one or else the newest old one; with
/// several active, none.
fn active_or_latest(rollout: &Rollout<'_>) -> Option<usize> {
    let active: Vec<usize> = (0..rollout.sets.len()).filter(|&i| spec_replicas(&rollout.sets[i]) > 0).collect();
    match active.as_slice() {
        [only] => Some(*only),
        [] => rollout.new_index.or_else(|| {
            rollout
                .old_indexes()
                .into_iter()
                .max_by(|&a, &b| creation_order(&rollout.sets[a]).cmp(&creation_order(&rollout.sets[b])))
        }),
        _ => None,
    }
}

/// The new ReplicaSet has all `replicas`, was sized for them, and all are available.
fn saturated(rollout: &Rollout<'_>, index: usize) -> bool {
    let rs = &rollout.sets[index];
    let desired = rs.metadata.annotations.as_ref().and_then(|a| a.get(DESIRED_REPLICAS_ANNOTATION));
    desired == Some(&rollout.replicas.to_string())
        && spec_replicas(rs) == rollout.replicas
        && available_replicas(rs) == rollout.replicas
}

/// Spreads `(replicas + maxSurge) − Σ sizes` over the active ReplicaSets: each gets
/// round(size × new maximum / the maximum it was sized for) − size, clamped to what is left to
/// give; the rounding leftover goes to the first (the largest: newest first when growing,
/// oldest first when shrinking); no size below 0.
fn proportional(rollout: &mut Rollout<'_>) {
    let mut active: Vec<usize> = (0..rollout.sets.len()).filter(|&i| spec_replicas(&rollout.sets[i]) > 0).collect();
    let total: i32 = active.iter().map(|&i| spec_replicas(&rollout.sets[i])).sum();
    let allowed = if rollout.replicas > 0 { rollout.replicas + rollout.max_surge() } else { 0 };
    let to_add = allowed - total;
    if to_add == 0 {
        return;
    }
    let sets = &rollout.sets;
    active.sort_by(|&a, &b| {
        let by_size = spec_replicas(&sets[b]).cmp(&spec_replicas(&sets[a]));
        let by_age = creation_order(&sets[a]).cmp(&creation_order(&sets[b]));
        by_size.then(if to_add > 0 { by_age.reverse() } else { by_age })
    });
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::with_capacity(active.len());
    for &index in &active {
        let size = spec_replicas(&rollout.sets[index]);
        let share = proportion(rollout, index, to_add, added);
        sizes.push((index, size + share));
        added += share;
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    for (index, size) in sizes {
        rollout.scale(index, size.max(0));
    }
}

/// Kubernetes' `GetProportion`: this ReplicaSet's share of `to_add`, never past what is left.
fn proportion(rollout: &Rollout<'_>, index: usize, to_add: i32, added: i32) -> i32 {
    let rs = &rollout.sets[index];
    let size = spec_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if rollout.replicas == 0 {
        -size
    } else {
        let new_max = rollout.replicas + rollout.max_surge();
        let sized_for = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MAX_REPLICAS_ANNOTATION))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or_else(|| rollout.deployment.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if sized_for == 0 {
            0
        } else {
            (f64::from(size) * f64::from(new_max) / f64::from(sized_for)).round() as i32 - size
        }
    };
    let left = to_add - added;
    if to_add > 0 { fraction.min(left) } else { fraction.max(left) }
}
