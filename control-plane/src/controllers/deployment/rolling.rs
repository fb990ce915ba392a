//! The RollingUpdate strategy: grow the new ReplicaSet while the total stays within
//! `replicas + maxSurge`, shrink the old ones while availability stays at or above
//! `replicas − maxUnavailable`. One step per sync: the first of "scale the new one", "scale
//! old ones down" that changes anything ends the step; the pods' readiness drives the next.

use k8s_openapi::api::apps::v1::DeploymentSpec;

use super::{Rollout, available_replicas, scaled_value, spec_replicas};

/// `(maxSurge, maxUnavailable)` resolved against `replicas` (Kubernetes' `ResolveFenceposts`):
/// surge rounds up, unavailability down; both 0 → unavailable 1; unavailable at most replicas.
/// Recreate and 0 replicas have no surge and no unavailability.
pub(super) fn fenceposts(spec: &DeploymentSpec, replicas: i32) -> (i32, i32) {
    let strategy = spec.strategy.as_ref();
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") || replicas == 0 {
        return (0, 0);
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let quarter = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("25%".to_owned());
    let surge_value = rolling.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter);
    let unavailable_value = rolling.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&quarter);
    let surge = scaled_value(surge_value, replicas, true).unwrap_or(0).max(0);
    let mut unavailable = scaled_value(unavailable_value, replicas, false).unwrap_or(0).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

/// Kubernetes' `NewRSNewReplicas`: the size the new ReplicaSet may have now (Recreate: all).
pub(super) fn new_replica_set_target(rollout: &Rollout<'_>, new_index: usize) -> i32 {
    let current_new = spec_replicas(&rollout.sets[new_index]);
    if super::is_recreate(rollout.spec) {
        return rollout.replicas;
    }
    let total: i32 = rollout.sets.iter().map(spec_replicas).sum();
    let max_total = rollout.replicas + rollout.max_surge();
    if total >= max_total {
        return current_new;
    }
    let room = (max_total - total).min(rollout.replicas - current_new);
    current_new + room.max(0)
}

/// One RollingUpdate step.
pub(super) fn rollout(rollout: &mut Rollout<'_>) {
    rollout.rolling_out = true;
    rollout.sync_revision(true);
    if rollout.halted {
        return;
    }
    if reconcile_new(rollout) || reconcile_old(rollout) {
        return;
    }
    if super::status::deployment_complete(rollout.deployment, rollout.deployment.status.as_ref()) {
        super::history::cleanup(rollout);
    }
}

/// Scales the new ReplicaSet towards `replicas` within the surge; true when its size changed.
fn reconcile_new(rollout: &mut Rollout<'_>) -> bool {
    let Some(index) = rollout.new_index else { return false };
    let current = spec_replicas(&rollout.sets[index]);
    if current == rollout.replicas {
        return false;
    }
    if current > rollout.replicas {
        return rollout.scale(index, rollout.replicas);
    }
    let target = new_replica_set_target(rollout, index);
    rollout.scale(index, target)
}

/// Scales old ReplicaSets down as far as availability allows; true when any size changed.
fn reconcile_old(rollout: &mut Rollout<'_>) -> bool {
    let old: Vec<usize> = rollout.old_indexes().into_iter().filter(|&i| spec_replicas(&rollout.sets[i]) > 0).collect();
    if old.is_empty() {
        return false;
    }
    let all_pods: i32 = rollout.sets.iter().map(spec_replicas).sum();
    let min_available = rollout.replicas - rollout.max_unavailable();
    let new_unavailable = rollout.new_set().map_or(0, |rs| spec_replicas(rs) - available_replicas(rs));
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let cleaned = cleanup_unhealthy(rollout, &old, max_scaled_down);
    let scaled = scale_down_old(rollout, &old);
    cleaned + scaled > 0
}

/// Old ReplicaSets, oldest first, lose their unavailable replicas first (within `budget`):
/// they cost nothing to remove.
fn cleanup_unhealthy(rollout: &mut Rollout<'_>, old: &[usize], budget: i32) -> i32 {
    let mut total = 0;
    for &index in old {
        if total >= budget {
            break;
        }
        let rs = &rollout.sets[index];
        let (size, available) = (spec_replicas(rs), available_replicas(rs));
        if size == 0 || size <= available {
            continue;
        }
        let down = (budget - total).min(size - available);
        rollout.scale(index, size - down);
        total += down;
    }
    total
}

/// Old ReplicaSets, oldest first, lose as many replicas as the availability above
/// `replicas − maxUnavailable` allows.
fn scale_down_old(rollout: &mut Rollout<'_>, old: &[usize]) -> i32 {
    let min_available = rollout.replicas - rollout.max_unavailable();
    let available: i32 = rollout.sets.iter().map(available_replicas).sum();
    if available <= min_available {
        return 0;
    }
    let allowed = available - min_available;
    let mut total = 0;
    for &index in old {
        if total >= allowed {
            break;
        }
        let size = spec_replicas(&rollout.sets[index]);
        if size == 0 {
            continue;
        }
        let down = size.min(allowed - total);
        rollout.scale(index, size - down);
        total += down;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn spec(surge: Option<IntOrString>, unavailable: Option<IntOrString>) -> DeploymentSpec {
        DeploymentSpec {
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment { max_surge: surge, max_unavailable: unavailable }),
            }),
            ..DeploymentSpec::default()
        }
    }

    #[test]
    fn fenceposts_follow_kubernetes_rounding() {
        let defaults = spec(None, None);
        assert_eq!(fenceposts(&defaults, 3), (1, 0));
        assert_eq!(fenceposts(&defaults, 10), (3, 2));
        assert_eq!(fenceposts(&defaults, 1), (1, 0));
        assert_eq!(fenceposts(&defaults, 0), (0, 0));
        assert_eq!(fenceposts(&spec(Some(IntOrString::Int(0)), Some(IntOrString::Int(0))), 5), (0, 1));
        assert_eq!(fenceposts(&spec(Some(IntOrString::Int(2)), Some(IntOrString::Int(9))), 5), (2, 5));
        let recreate = DeploymentSpec {
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
            ..DeploymentSpec::default()
        };
        assert_eq!(fenceposts(&recreate, 5), (0, 0));
    }
}
