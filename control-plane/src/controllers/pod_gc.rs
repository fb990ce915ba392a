//! The pod garbage collector's decision: pods bound to nodes that no longer exist, terminating
//! pods that were never scheduled, and terminated pods beyond a cap are deleted.
//!
//! Inputs the runtime keeps: all pods (the pod informer's list) and the node names (node
//! informer), plus the [`State`] this returns (when each missing node was first noticed). One
//! pass is O(pods + terminated · log terminated); Kubernetes runs it every 20 s.
//!
//! A node missing from the cache may only be late: its pods are deleted once it has been
//! missing for [`Config::quarantine`] (Kubernetes' 40 s; it also re-reads the node from the API,
//! which the runtime may do before carrying out the plan).
//!
//! Orphaned pods first get `DisruptionTarget` ("DeletionByPodGC", "PodGC: node no longer
//! exists") and phase Failed, then are deleted with gracePeriod 0 (`Action::ForceDelete`), as
//! Kubernetes does: no kubelet is left to finish a graceful deletion.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::action::{Action, ObjectRef, PODS, Plan};
use super::endpointslices::to_json;

/// Kubernetes' `--terminated-pod-gc-threshold` default.
pub const DEFAULT_TERMINATED_POD_THRESHOLD: usize = 12_500;
/// How long a node must be missing before its pods go.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(40);

#[derive(Clone, Debug)]
pub struct Config {
    /// Terminated (Succeeded/Failed) pods kept; the oldest beyond it are deleted. 0: no cap.
    pub terminated_pod_threshold: usize,
    pub quarantine: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { terminated_pod_threshold: DEFAULT_TERMINATED_POD_THRESHOLD, quarantine: DEFAULT_QUARANTINE }
    }
}

/// Carried from pass to pass by the runtime.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Node name → when this controller first saw pods bound to it while it was missing.
    pub missing_since: HashMap<String, Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub plan: Plan,
    pub state: State,
}

/// One pass over every pod.
pub fn sync<N: Borrow<str> + std::hash::Hash + Eq>(
    pods: &[&Pod],
    nodes: &HashSet<N>,
    previous: &State,
    config: &Config,
    now: Timestamp,
) -> Outcome {
    let mut plan = Plan::default();
    let mut state = State::default();
    let mut doomed: HashSet<&str> = HashSet::new();
    let mut terminated: Vec<&Pod> = Vec::new();
    for &pod in pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
        match node {
            Some(node) if !nodes.contains(node) => {
                let since = *state
                    .missing_since
                    .entry(node.to_string())
                    .or_insert_with(|| previous.missing_since.get(node).copied().unwrap_or(now));
                let waited = Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO);
                if waited >= config.quarantine {
                    delete_orphan(pod, now, &mut plan);
                    doomed.insert(uid(pod));
                } else {
                    plan.requeue(config.quarantine - waited);
                }
            }
            None if pod.metadata.deletion_timestamp.is_some() => {
                plan.push(delete(pod));
                doomed.insert(uid(pod));
            }
            _ => {}
        }
        if is_terminated(pod) {
            terminated.push(pod);
        }
    }
    if config.terminated_pod_threshold > 0 && terminated.len() > config.terminated_pod_threshold {
        let excess = terminated.len() - config.terminated_pod_threshold;
        // Evicted pods first, then oldest first (Kubernetes' order).
        terminated.sort_by_key(|p| {
            let evicted = p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted");
            (!evicted, p.metadata.creation_timestamp.as_ref().map(|t| t.0), uid(p).to_string())
        });
        for pod in terminated.into_iter().take(excess).filter(|p| !doomed.contains(uid(p))) {
            plan.push(delete(pod));
        }
    }
    Outcome { plan, state }
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn delete_orphan(pod: &Pod, now: Timestamp, plan: &mut Plan) {
    if pod.metadata.deletion_timestamp.is_none() {
        let mut failed = pod.clone();
        let status = failed.status.get_or_insert_with(Default::default);
        if !is_terminated(pod) {
            status.phase = Some("Failed".into());
        }
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByPodGC".into()),
            message: Some("PodGC: node no longer exists".into()),
            last_transition_time: Some(Time(now)),
            ..PodCondition::default()
        });
        plan.push(Action::UpdateStatus { target: target(pod), object: to_json(&failed) });
    }
    plan.push(delete(pod));
}

fn target(pod: &Pod) -> ObjectRef {
    ObjectRef {
        resource: PODS,
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// Pod GC deletes at once (grace 0), as Kubernetes' does: the pods it removes have no kubelet
/// left to finish a graceful deletion, or are terminated already.
fn delete(pod: &Pod) -> Action {
    Action::ForceDelete { target: target(pod), uid: uid(pod).to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(at(created))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: (!node.is_empty()).then(|| node.to_string()), ..PodSpec::default() }),
            status: Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() }),
        }
    }

    fn deleted(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::ForceDelete { target, uid } => {
                    assert!(!uid.is_empty());
                    Some(target.name.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pods_of_a_missing_node_go_after_the_quarantine() {
        let nodes: HashSet<&str> = HashSet::from(["alive"]);
        let orphan = pod("orphan", "gone", "Running", 0);
        let fine = pod("fine", "alive", "Running", 0);
        let first = sync(&[&orphan, &fine], &nodes, &State::default(), &Config::default(), at(0));
        assert!(deleted(&first.plan).is_empty());
        assert_eq!(first.plan.requeue_after, Some(Duration::from_secs(40)));
        let second = sync(&[&orphan, &fine], &nodes, &first.state, &Config::default(), at(40));
        assert_eq!(deleted(&second.plan), vec!["orphan".to_string()]);
        let Action::UpdateStatus { object, .. } = &second.plan.actions[0] else { panic!("{:?}", second.plan) };
        let failed: Pod = serde_json::from_value(object.clone()).unwrap();
        let status = failed.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let condition = status.conditions.unwrap().pop().unwrap();
        assert_eq!(
            (condition.type_.as_str(), condition.reason.as_deref()),
            ("DisruptionTarget", Some("DeletionByPodGC"))
        );
        // A node that comes back is forgotten.
        let nodes: HashSet<&str> = HashSet::from(["alive", "gone"]);
        assert!(sync(&[&orphan], &nodes, &second.state, &Config::default(), at(41)).state.missing_since.is_empty());
    }

    #[test]
    fn terminated_pods_beyond_the_cap_go_oldest_first() {
        let pods: Vec<Pod> = (0..5)
            .map(|i| pod(&format!("done{i}"), "n", if i % 2 == 0 { "Succeeded" } else { "Failed" }, 10 - i))
            .collect();
        let running = pod("running", "n", "Running", 0);
        let mut refs: Vec<&Pod> = pods.iter().collect();
        refs.push(&running);
        let nodes: HashSet<&str> = HashSet::from(["n"]);
        let config = Config { terminated_pod_threshold: 3, ..Config::default() };
        let out = sync(&refs, &nodes, &State::default(), &config, at(100));
        assert_eq!(deleted(&out.plan), vec!["done4".to_string(), "done3".to_string()]);
        let unlimited = Config { terminated_pod_threshold: 0, ..Config::default() };
        assert!(sync(&refs, &nodes, &State::default(), &unlimited, at(100)).plan.is_empty());
    }

    #[test]
    fn terminating_unscheduled_pods_are_deleted() {
        let mut stuck = pod("stuck", "", "Pending", 0);
        stuck.metadata.deletion_timestamp = Some(Time(at(1)));
        let pending = pod("pending", "", "Pending", 0);
        let nodes: HashSet<&str> = HashSet::new();
        let out = sync(&[&stuck, &pending], &nodes, &State::default(), &Config::default(), at(2));
        assert_eq!(deleted(&out.plan), vec!["stuck".to_string()]);
    }
}
