//! One scheduling cycle: pick a node for one pod (Kubernetes' `schedulePod`).
//!
//! PreFilter → Filter over the nodes from a rotating start index until enough feasible nodes
//! are found → PreScore → Score → NormalizeScore → weighted sum → the best node, ties broken
//! uniformly at random (reservoir sampling). Pure: the cache, the randomness and the profile
//! are passed in; the caller assumes the pod in the cache and binds it.
//!
//! Cost: per pod, a few small allocations (PodInfo, cycle state, the feasible list); per node,
//! none on the success path. Scratch buffers live in the `Scheduler` and are reused.
//!
//! Preemption is not implemented. When no node fits, the FitError's message carries the
//! "preemption: ..." suffix Kubernetes' DefaultPreemption writes when it finds no candidate:
//! UnschedulableAndUnresolvable nodes count as "Preemption is not helpful for scheduling";
//! an Unschedulable node without lower-priority pods as "No preemption victims found for
//! incoming pod"; one that still fails with its lower-priority pods removed, with that
//! failure's reasons. A node that would fit after evicting lower-priority pods (where
//! Kubernetes would preempt) counts as "Preemption is not supported by Keel's scheduler".

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use rand::Rng;

use super::cache::Cache;
use super::framework::{Code, CycleState, MAX_NODE_SCORE, NodeInfo, PodInfo, Status};
use super::plugins::Profile;
use super::plugins::pod_topology_spread::DefaultSpreadSelector;

/// Below this many nodes every node is filtered; above, at least this many feasible are sought.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Adaptive percentage floor.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;
/// Adaptive percentage at zero nodes, minus one point per 125 nodes.
const BASE_PERCENTAGE_OF_NODES_TO_SCORE: usize = 50;

pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const REASON_NO_PREEMPTION: &str = "Preemption is not supported by Keel's scheduler";

/// Scheduler settings (Kubernetes' KubeSchedulerConfiguration fields that matter here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// 0: adaptive (50 − nodes/125 %, at least 5 %); 1..=100: that percentage.
    pub percentage_of_nodes_to_score: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { percentage_of_nodes_to_score: 0 }
    }
}

/// The pod fits no node: Kubernetes' FitError, with its exact message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// `0/N nodes are available: ... preemption: ...`, as the PodScheduled condition and the
    /// FailedScheduling event show it.
    pub message: String,
    /// Plugins that rejected the pod on some node (or in PreFilter): the queue retries the pod
    /// only on events these registered.
    pub rejecting_plugins: BTreeSet<&'static str>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("no nodes available to schedule pods")]
    NoNodes,
    #[error("{0}")]
    Unschedulable(FitError),
    /// A plugin failed internally (condition reason "SchedulerError"); retry with backoff.
    #[error("running {plugin}: {message}")]
    Internal { plugin: &'static str, message: String },
}

impl ScheduleError {
    /// The plugins to hand `SchedulingQueue::failed` (empty: retry after backoff only).
    pub fn rejecting_plugins(&self) -> BTreeSet<&'static str> {
        match self {
            ScheduleError::Unschedulable(fit) => fit.rejecting_plugins.clone(),
            _ => BTreeSet::new(),
        }
    }
}

/// How many feasible nodes to look for among `all` (Kubernetes' numFeasibleNodesToFind).
pub fn num_feasible_nodes_to_find(all: usize, percentage: u32) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return all;
    }
    let percentage = if percentage == 0 {
        BASE_PERCENTAGE_OF_NODES_TO_SCORE.saturating_sub(all / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE)
    } else {
        percentage as usize
    };
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The "count reason" histogram, sorted as strings and joined, as FitError.Error() does.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for reason in reasons {
        *counts.entry(reason).or_insert(0) += 1;
    }
    let mut lines: Vec<String> = counts.into_iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    lines.sort();
    lines.join(", ")
}

/// Runs a profile's plugins; keeps the rotating start index and scratch space between pods.
pub struct Scheduler {
    profile: Profile,
    config: Config,
    /// Where the next cycle's node scan starts (continues round-robin after the last one).
    next_start_node_index: usize,
    feasible: Vec<usize>,
    totals: Vec<i64>,
    scores: Vec<i64>,
}

impl Scheduler {
    pub fn new(profile: Profile, config: Config) -> Scheduler {
        Scheduler {
            profile,
            config,
            next_start_node_index: 0,
            feasible: Vec::new(),
            totals: Vec::new(),
            scores: Vec::new(),
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Picks the node for `pod`. Does not change the cache: on Ok the caller assumes the pod
    /// there (`Cache::assume`) and binds it.
    pub fn schedule_one(&mut self, pod: &PodInfo, cache: &Cache, rng: &mut impl Rng) -> Result<String, ScheduleError> {
        let nodes = cache.nodes();
        if nodes.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        let mut state = CycleState::default();
        state.write(DefaultSpreadSelector(cache.default_spread_selector(pod)));
        let mut skipped: Vec<&'static str> = Vec::new();
        for plugin in &self.profile.pre_filter {
            let status = plugin.pre_filter(&mut state, pod, nodes);
            match status.code {
                Code::Success => {}
                Code::Skip => skipped.push(plugin.name()),
                Code::Error => return Err(internal(plugin.name(), &status)),
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    return Err(self.pre_filter_rejection(pod, nodes, plugin.name(), &status));
                }
            }
        }
        let filters: Vec<_> = self.profile.filter.iter().filter(|p| !skipped.contains(&p.name())).cloned().collect();
        let wanted = num_feasible_nodes_to_find(nodes.len(), self.config.percentage_of_nodes_to_score);
        let start = self.next_start_node_index % nodes.len();
        self.feasible.clear();
        let mut processed = 0;
        for offset in 0..nodes.len() {
            let index = (start + offset) % nodes.len();
            processed += 1;
            if filters.iter().all(|f| f.filter(&state, pod, &nodes[index]).is_success()) {
                self.feasible.push(index);
                if self.feasible.len() >= wanted {
                    break;
                }
            }
        }
        self.next_start_node_index = (start + processed) % nodes.len();
        if self.feasible.is_empty() {
            return Err(self.filter_rejection(pod, nodes, &state, &filters));
        }
        if self.feasible.len() == 1 {
            return Ok(nodes[self.feasible[0]].name.clone());
        }
        let best = self.score(pod, nodes, &mut state, rng)?;
        Ok(nodes[best].name.clone())
    }

    /// Scores the feasible nodes; returns the chosen node's index in `nodes`.
    fn score(
        &mut self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        state: &mut CycleState,
        rng: &mut impl Rng,
    ) -> Result<usize, ScheduleError> {
        let feasible_nodes: Vec<&NodeInfo> = self.feasible.iter().map(|&i| &nodes[i]).collect();
        let mut skipped: Vec<&'static str> = Vec::new();
        for plugin in &self.profile.pre_score {
            let status = plugin.pre_score(state, pod, &feasible_nodes, nodes);
            match status.code {
                Code::Success => {}
                Code::Skip => skipped.push(plugin.name()),
                _ => return Err(internal(plugin.name(), &status)),
            }
        }
        self.totals.clear();
        self.totals.resize(feasible_nodes.len(), 0);
        for plugin in self.profile.score.iter().filter(|p| !skipped.contains(&p.name())) {
            self.scores.clear();
            for node in &feasible_nodes {
                let score = plugin.score(state, pod, node).map_err(|s| internal(plugin.name(), &s))?;
                self.scores.push(score);
            }
            plugin.normalize(state, pod, &mut self.scores);
            for (total, &score) in self.totals.iter_mut().zip(&self.scores) {
                if !(0..=MAX_NODE_SCORE).contains(&score) {
                    return Err(ScheduleError::Internal {
                        plugin: plugin.name(),
                        message: format!("score {score} outside [0, {MAX_NODE_SCORE}]"),
                    });
                }
                *total += score * plugin.weight();
            }
        }
        // Reservoir sampling: the k-th node tying the best so far replaces it with chance 1/k.
        let (mut best, mut best_score, mut ties) = (0usize, i64::MIN, 0u32);
        for (position, &total) in self.totals.iter().enumerate() {
            if total > best_score {
                (best, best_score, ties) = (position, total, 1);
            } else if total == best_score {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = position;
                }
            }
        }
        Ok(self.feasible[best])
    }

    fn pre_filter_rejection(
        &self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        plugin: &'static str,
        status: &Status,
    ) -> ScheduleError {
        let statuses: Vec<Status> = vec![Status { plugin, ..status.clone() }; nodes.len()];
        let mut message = format!("0/{} nodes are available: {}.", nodes.len(), status.message());
        message.push(' ');
        message.push_str(&self.preemption_message(pod, nodes, &CycleState::default(), &[], &statuses));
        ScheduleError::Unschedulable(FitError {
            num_all_nodes: nodes.len(),
            message,
            rejecting_plugins: [plugin].into(),
        })
    }

    /// Every node failed a filter: re-run the filters on all of them for their reasons (the
    /// success path records nothing per node, to stay allocation-free).
    fn filter_rejection(
        &self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        state: &CycleState,
        filters: &[std::sync::Arc<dyn super::framework::FilterPlugin>],
    ) -> ScheduleError {
        let statuses: Vec<Status> = nodes.iter().map(|n| run_filters(filters, state, pod, n)).collect();
        let rejecting_plugins = statuses.iter().map(|s| s.plugin).filter(|p| !p.is_empty()).collect();
        let mut message = format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            histogram(statuses.iter().flat_map(|s| s.reasons.iter().map(|r| r.as_ref())))
        );
        message.push(' ');
        message.push_str(&self.preemption_message(pod, nodes, state, filters, &statuses));
        ScheduleError::Unschedulable(FitError { num_all_nodes: nodes.len(), message, rejecting_plugins })
    }

    /// DefaultPreemption's PostFilter message when it finds no candidate (module doc).
    fn preemption_message(
        &self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        state: &CycleState,
        filters: &[std::sync::Arc<dyn super::framework::FilterPlugin>],
        statuses: &[Status],
    ) -> String {
        if pod.spec().and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return "preemption: not eligible due to preemptionPolicy=Never.".to_string();
        }
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        for (node, status) in nodes.iter().zip(statuses) {
            if status.code != Code::Unschedulable {
                reasons.push(Cow::Borrowed(REASON_NOT_HELPFUL));
                continue;
            }
            let victims: Vec<&str> =
                node.pods.iter().filter(|p| p.priority < pod.priority).map(|p| p.key.as_str()).collect();
            if victims.is_empty() {
                reasons.push(Cow::Borrowed(REASON_NO_VICTIMS));
                continue;
            }
            let mut without = node.clone();
            for key in victims {
                without.remove_pod(key);
            }
            let after = run_filters(filters, state, pod, &without);
            if after.is_success() {
                reasons.push(Cow::Borrowed(REASON_NO_PREEMPTION));
            } else {
                reasons.extend(after.reasons);
            }
        }
        format!("preemption: 0/{} nodes are available: {}.", nodes.len(), histogram(reasons.iter().map(|r| r.as_ref())))
    }
}

fn internal(plugin: &'static str, status: &Status) -> ScheduleError {
    ScheduleError::Internal { plugin, message: status.message() }
}

/// The first failing filter's status on `node` (with its plugin name), or Success.
fn run_filters(
    filters: &[std::sync::Arc<dyn super::framework::FilterPlugin>],
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Status {
    for filter in filters {
        let status = filter.filter(state, pod, node);
        if !status.is_success() {
            return Status { plugin: filter.name(), ..status };
        }
    }
    Status::success()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node_object, pod, pod_object, requesting};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Instant;

    fn cache_of(nodes: Vec<k8s_openapi::api::core::v1::Node>) -> Cache {
        let mut cache = Cache::default();
        for n in nodes {
            cache.upsert_node(Arc::new(n));
        }
        cache
    }

    fn scheduler() -> Scheduler {
        Scheduler::new(Profile::default_profile(), Config::default())
    }

    #[test]
    fn scheduler_feasible_node_count_follows_the_adaptive_percentage() {
        assert_eq!(num_feasible_nodes_to_find(99, 0), 99);
        assert_eq!(num_feasible_nodes_to_find(100, 0), 100);
        assert_eq!(num_feasible_nodes_to_find(500, 0), 230); // 50 − 4 = 46 %
        assert_eq!(num_feasible_nodes_to_find(5000, 0), 500); // 50 − 40 = 10 %
        assert_eq!(num_feasible_nodes_to_find(10_000, 0), 500); // floor 5 %
        assert_eq!(num_feasible_nodes_to_find(1000, 1), 100, "at least 100");
        assert_eq!(num_feasible_nodes_to_find(1000, 100), 1000);
    }

    #[test]
    fn scheduler_fit_error_message_matches_kubernetes() {
        let cache = cache_of(vec![
            node_object(
                "cp",
                json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
            ),
            node_object("w1", json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})),
            node_object("w2", json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})),
        ]);
        let err = scheduler().schedule_one(&pod(requesting("2", "")), &cache, &mut StdRng::seed_from_u64(1));
        let Err(ScheduleError::Unschedulable(fit)) = err else { panic!("expected a FitError, got {err:?}") };
        assert_eq!(
            fit.message,
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod."
        );
        assert_eq!(fit.rejecting_plugins, ["NodeResourcesFit", "TaintToleration"].into());
        let never = pod(
            json!({"preemptionPolicy": "Never", "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}),
        );
        let err = scheduler().schedule_one(&never, &cache, &mut StdRng::seed_from_u64(1)).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
                 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
                .to_string())
        );
        let empty = Cache::default();
        let err = scheduler().schedule_one(&pod(requesting("", "")), &empty, &mut StdRng::seed_from_u64(1));
        assert_eq!(err.map_err(|e| e.to_string()), Err("no nodes available to schedule pods".to_string()));
    }

    #[test]
    fn scheduler_histogram_sorts_count_and_reason_as_strings() {
        // Kubernetes sorts "count reason" strings: "10 b" before "2 a".
        let reasons = std::iter::repeat_n("b", 10).chain(std::iter::repeat_n("a", 2));
        assert_eq!(histogram(reasons), "10 b, 2 a");
    }

    #[test]
    fn scheduler_lower_priority_pods_change_the_preemption_reason() {
        let mut cache = cache_of(vec![node_object(
            "n1",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}),
        )]);
        let mut low = pod_object("low", json!({}), requesting("900m", ""));
        if let Some(spec) = low.spec.as_mut() {
            spec.node_name = Some("n1".into());
        }
        cache.upsert_pod(Arc::new(low));
        let mut high = pod_object("high", json!({}), requesting("500m", ""));
        if let Some(spec) = high.spec.as_mut() {
            spec.priority = Some(1000);
        }
        let err = scheduler().schedule_one(&PodInfo::new(Arc::new(high)), &cache, &mut StdRng::seed_from_u64(1));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err(format!(
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 {REASON_NO_PREEMPTION}."
            ))
        );
    }

    #[test]
    fn scheduler_three_nodes_one_fits() {
        let small = json!({"status": {"allocatable": {"cpu": "1", "memory": "32Gi", "pods": "110"}}});
        let cache =
            cache_of(vec![node_object("a", small.clone()), node_object("big", json!({})), node_object("c", small)]);
        let mut s = scheduler();
        for seed in 0..20 {
            let chosen = s.schedule_one(&pod(requesting("2", "1Gi")), &cache, &mut StdRng::seed_from_u64(seed));
            assert_eq!(chosen, Ok("big".to_string()));
        }
    }

    #[test]
    fn scheduler_prefers_the_least_allocated_node() {
        let mut cache = cache_of(vec![node_object("busy", json!({})), node_object("idle", json!({}))]);
        let mut busy = pod_object("busy-pod", json!({}), requesting("2", "16Gi"));
        if let Some(spec) = busy.spec.as_mut() {
            spec.node_name = Some("busy".into());
        }
        cache.upsert_pod(Arc::new(busy));
        let chosen = scheduler().schedule_one(&pod(requesting("100m", "500Mi")), &cache, &mut StdRng::seed_from_u64(3));
        assert_eq!(chosen, Ok("idle".to_string()));
    }

    #[test]
    fn scheduler_ties_spread_evenly_over_equal_nodes() {
        let cache = cache_of((0..4).map(|i| node_object(&format!("n{i}"), json!({}))).collect());
        let mut s = scheduler();
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts: HashMap<String, usize> = HashMap::new();
        let rounds = 4000;
        for _ in 0..rounds {
            let node = s.schedule_one(&pod(requesting("100m", "")), &cache, &mut rng).unwrap_or_default();
            *counts.entry(node).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4, "{counts:?}");
        // Each node expects 1000 (binomial sd ≈ 27): ±150 is > 5 sd.
        for (node, count) in &counts {
            assert!((850..=1150).contains(count), "{node} chosen {count} of {rounds}: {counts:?}");
        }
    }

    #[test]
    fn scheduler_assumed_pods_prevent_overcommit() {
        let mut cache = cache_of(vec![
            node_object("a", json!({"status": {"allocatable": {"cpu": "1", "memory": "4Gi", "pods": "110"}}})),
            node_object("b", json!({"status": {"allocatable": {"cpu": "1", "memory": "4Gi", "pods": "110"}}})),
        ]);
        let mut s = scheduler();
        let mut rng = StdRng::seed_from_u64(11);
        let now = Instant::now();
        for i in 0..4 {
            let p = Arc::new(pod_object(&format!("p{i}"), json!({}), requesting("500m", "")));
            let node = s.schedule_one(&PodInfo::new(p.clone()), &cache, &mut rng).expect("fits");
            cache.assume(p, &node, now).expect("assume");
        }
        for n in cache.nodes() {
            assert_eq!(n.requested.milli_cpu, 1000, "{} full, not over", n.name);
        }
        let fifth = PodInfo::new(Arc::new(pod_object("p4", json!({}), requesting("500m", ""))));
        let err = s.schedule_one(&fifth, &cache, &mut rng);
        assert!(
            matches!(&err, Err(ScheduleError::Unschedulable(f)) if f.message.starts_with("0/2 nodes are available: 2 Insufficient cpu.")),
            "{err:?}"
        );
    }

    #[test]
    fn scheduler_scan_stops_at_num_feasible_and_rotates() {
        let cache = cache_of((0..200).map(|i| node_object(&format!("n{i:03}"), json!({}))).collect());
        let mut s = scheduler();
        let mut rng = StdRng::seed_from_u64(5);
        s.schedule_one(&pod(requesting("", "")), &cache, &mut rng).expect("fits");
        // 200 nodes → max(5, 50 − 1) = 49 % → 98 → at least 100 feasible, then stop.
        assert_eq!(s.next_start_node_index, 100);
        s.schedule_one(&pod(requesting("", "")), &cache, &mut rng).expect("fits");
        assert_eq!(s.next_start_node_index, 0);
    }
}
