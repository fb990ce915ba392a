//! PodTopologySpread: keeps matching pods spread across topology domains (zones, hosts).
//!
//! Filter (`whenUnsatisfiable: DoNotSchedule`): placing the pod in the node's domain must not
//! make `matching pods in the domain + self − global minimum` exceed `maxSkew`; the minimum is
//! over eligible domains and is 0 while fewer than `minDomains` domains exist.
//! Score (`ScheduleAnyway`, or the system defaults for pods selected by a Service, RC, RS or
//! StatefulSet): per constraint `count × ln(domains + 2) + (maxSkew − 1)`, normalized so the
//! least crowded node scores 100.
//! Eligible nodes carry every constraint's key and pass the inclusion policies
//! (`nodeAffinityPolicy` default Honor: the pod's nodeSelector/required affinity;
//! `nodeTaintsPolicy` default Ignore, Honor: no untolerated NoSchedule/NoExecute taint).
//! Terminating pods and pods of other namespaces are never counted.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Toleration, TopologySpreadConstraint};

use crate::scheduler::framework::{
    ActionType, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Status,
};
use crate::scheduler::selector::{RequiredNodeAffinity, Selector, first_untolerated};

pub const NAME: &str = "PodTopologySpread";
pub const REASON_MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";
pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// The selector the system default constraints use for this pod: the union of the selectors of
/// the Services, ReplicationControllers, ReplicaSets and StatefulSets selecting it. Written into
/// the cycle state by the scheduler (the cache knows those objects); absent or `None`: no
/// default constraints.
pub struct DefaultSpreadSelector(pub Option<Selector>);

pub struct PodTopologySpread;

#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None`: a nil labelSelector, which selects nothing.
    selector: Option<Selector>,
    min_domains: i64,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn from_spec(c: &TopologySpreadConstraint, pod: &PodInfo) -> Constraint {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        if let (Some(selector), Some(labels)) = (selector.as_mut(), pod.labels()) {
            for key in c.match_label_keys.iter().flatten() {
                if let Some(value) = labels.get(key) {
                    selector.require_label(key, value);
                }
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    fn system_default(key: &str, max_skew: i64, selector: &Selector) -> Constraint {
        Constraint {
            max_skew,
            topology_key: key.to_string(),
            selector: Some(selector.clone()),
            min_domains: 1,
            honor_affinity: true,
            honor_taints: false,
        }
    }

    /// Matching pods on one node: not terminating, same namespace. An empty selector
    /// (Everything) counts nothing, as Kubernetes does.
    fn count(&self, node: &NodeInfo, namespace: &str) -> i64 {
        let Some(selector) = self.selector.as_ref().filter(|s| !s.is_empty()) else { return 0 };
        node.pods
            .iter()
            .filter(|p| !p.terminating() && p.namespace() == namespace && selector.matches(p.labels()))
            .count() as i64
    }
}

/// What the inclusion policies need from the pod.
struct Eligibility {
    affinity: RequiredNodeAffinity,
    tolerations: Vec<Toleration>,
}

impl Eligibility {
    fn of(pod: &PodInfo) -> Eligibility {
        Eligibility {
            affinity: pod.spec().map(RequiredNodeAffinity::of).unwrap_or_default(),
            tolerations: pod.spec().and_then(|s| s.tolerations.clone()).unwrap_or_default(),
        }
    }
    fn includes(&self, c: &Constraint, node: &NodeInfo) -> bool {
        (!c.honor_affinity || self.affinity.matches(&node.name, node.labels()))
            && (!c.honor_taints
                || first_untolerated(node.taints(), &self.tolerations, &["NoSchedule", "NoExecute"]).is_none())
    }
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    let labels = node.labels();
    constraints.iter().all(|c| labels.is_some_and(|l| l.contains_key(&c.topology_key)))
}

fn label<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a str> {
    node.labels().and_then(|l| l.get(key)).map(String::as_str)
}

fn constraints_for(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    pod.spec()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint::from_spec(c, pod))
        .collect()
}

fn has_spec_constraints(pod: &PodInfo) -> bool {
    pod.spec().and_then(|s| s.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty())
}

/// PreFilter → Filter: per DoNotSchedule constraint, matching pods per eligible domain and the
/// global minimum.
struct FilterState {
    constraints: Vec<Constraint>,
    domains: Vec<HashMap<String, i64>>,
    minimum: Vec<i64>,
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        const EVENTS: &[ClusterEvent] = &[
            ClusterEvent::new(
                EventResource::Pod,
                ActionType::ADD
                    .or(ActionType::UPDATE_POD_LABEL)
                    .or(ActionType::UPDATE_POD_TOLERATION)
                    .or(ActionType::DELETE),
            ),
            ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD
                    .or(ActionType::DELETE)
                    .or(ActionType::UPDATE_NODE_LABEL)
                    .or(ActionType::UPDATE_NODE_TAINT),
            ),
        ];
        EVENTS
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status {
        let constraints = constraints_for(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return Status::skip();
        }
        let eligibility = Eligibility::of(pod);
        let mut domains: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in nodes.iter().filter(|n| has_all_keys(n, &constraints)) {
            for (i, c) in constraints.iter().enumerate() {
                if !eligibility.includes(c, node) {
                    continue;
                }
                let value = label(node, &c.topology_key).unwrap_or("");
                *domains[i].entry(value.to_string()).or_insert(0) += c.count(node, pod.namespace());
            }
        }
        let minimum = constraints
            .iter()
            .zip(&domains)
            .map(|(c, d)| if (d.len() as i64) < c.min_domains { 0 } else { d.values().copied().min().unwrap_or(0) })
            .collect();
        state.write(FilterState { constraints, domains, minimum });
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>() else { return Status::success() };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = label(node, &c.topology_key) else {
                return Status::new(Code::UnschedulableAndUnresolvable, REASON_MISSING_LABEL);
            };
            let self_match = i64::from(c.selector.as_ref().is_some_and(|sel| sel.matches(pod.labels())));
            let matching = s.domains[i].get(value).copied().unwrap_or(0);
            if matching + self_match - s.minimum[i] > c.max_skew {
                return Status::new(Code::Unschedulable, REASON_SKEW);
            }
        }
        Status::success()
    }
}

/// PreScore → Score/NormalizeScore.
struct ScoreState {
    constraints: Vec<Constraint>,
    /// Feasible nodes lacking a key are ignored (score 0) when the pod set its own constraints.
    require_all_keys: bool,
    /// Per constraint (non-hostname keys): matching pods per domain seen among feasible nodes.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: ln(number of domains + 2).
    weights: Vec<f64>,
}

/// Score of a node ignored for spreading; NormalizeScore turns it into 0.
const IGNORED: i64 = -1;

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, feasible: &[&NodeInfo], all: &[NodeInfo]) -> Status {
        let own = has_spec_constraints(pod);
        let constraints = if own {
            constraints_for(pod, "ScheduleAnyway")
        } else {
            match state.read::<DefaultSpreadSelector>().and_then(|d| d.0.as_ref()) {
                Some(selector) if !selector.is_empty() => vec![
                    Constraint::system_default(HOSTNAME, 3, selector),
                    Constraint::system_default(ZONE, 5, selector),
                ],
                _ => Vec::new(),
            }
        };
        if constraints.is_empty() || feasible.is_empty() {
            return Status::skip();
        }
        let require_all_keys = own;
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        let mut ignored = 0usize;
        for node in feasible {
            if require_all_keys && !has_all_keys(node, &constraints) {
                ignored += 1;
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != HOSTNAME {
                    counts[i].entry(label(node, &c.topology_key).unwrap_or("").to_string()).or_insert(0);
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, d)| {
                let size = if c.topology_key == HOSTNAME { feasible.len() - ignored } else { d.len() };
                ((size + 2) as f64).ln()
            })
            .collect();
        let eligibility = Eligibility::of(pod);
        for node in all {
            if require_all_keys && !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == HOSTNAME || !eligibility.includes(c, node) {
                    continue;
                }
                if let Some(count) = counts[i].get_mut(label(node, &c.topology_key).unwrap_or("")) {
                    *count += c.count(node, pod.namespace());
                }
            }
        }
        state.write(ScoreState { constraints, require_all_keys, counts, weights });
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn weight(&self) -> i64 {
        2
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<ScoreState>() else { return Ok(0) };
        if s.require_all_keys && !has_all_keys(node, &s.constraints) {
            return Ok(IGNORED);
        }
        let mut score = 0f64;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = label(node, &c.topology_key) else { continue };
            let count = if c.topology_key == HOSTNAME {
                c.count(node, pod.namespace())
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }
    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s != IGNORED);
        let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for score in scores.iter_mut() {
            *score = if *score == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{named_pod, node, requesting};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn zoned(name: &str, zone: &str, app_pods: usize) -> NodeInfo {
        let mut n = node(name, json!({"metadata": {"labels": {ZONE: zone}}}));
        for i in 0..app_pods {
            n.add_pod(Arc::new(named_pod(&format!("{name}-{i}"), json!({"app": "web"}), requesting("", ""))));
        }
        n
    }

    fn spreading(when: &str, max_skew: i32, extra: Value) -> PodInfo {
        let mut constraint = json!({"maxSkew": max_skew, "topologyKey": ZONE, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}});
        if let (Some(c), Value::Object(extra)) = (constraint.as_object_mut(), extra) {
            c.extend(extra);
        }
        named_pod(
            "new",
            json!({"app": "web"}),
            json!({"containers": [{"name": "c"}], "topologySpreadConstraints": [constraint]}),
        )
    }

    #[test]
    fn scheduler_topology_spread_filter_keeps_skew_within_max_skew() {
        let nodes = vec![zoned("a1", "a", 2), zoned("b1", "b", 1), zoned("c1", "c", 1), node("bare", json!({}))];
        let p = spreading("DoNotSchedule", 1, json!({}));
        let mut state = CycleState::default();
        assert!(PodTopologySpread.pre_filter(&mut state, &p, &nodes).is_success());
        // min is 1 (zones b, c): a → 2+1-1 = 2 > 1; b → 1+1-1 = 1 ok.
        let a = PodTopologySpread.filter(&state, &p, &nodes[0]);
        assert_eq!((a.code, a.message().as_str()), (Code::Unschedulable, REASON_SKEW));
        assert!(PodTopologySpread.filter(&state, &p, &nodes[1]).is_success());
        let bare = PodTopologySpread.filter(&state, &p, &nodes[3]);
        assert_eq!((bare.code, bare.message().as_str()), (Code::UnschedulableAndUnresolvable, REASON_MISSING_LABEL));
        // minDomains 4 > 3 domains: the global minimum counts as 0, so b → 1+1-0 = 2 > 1.
        let p = spreading("DoNotSchedule", 1, json!({"minDomains": 4}));
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, &p, &nodes);
        assert_eq!(PodTopologySpread.filter(&state, &p, &nodes[1]).code, Code::Unschedulable);
    }

    #[test]
    fn scheduler_topology_spread_node_affinity_policy_limits_the_domains() {
        // Zone b has no matching pods but the pod's nodeSelector excludes it (Honor): min is
        // then zone a's 1, so a node in zone a still takes the pod at maxSkew 1.
        let nodes = vec![zoned("a1", "a", 1), zoned("b1", "b", 0)];
        let mut p = spreading("DoNotSchedule", 1, json!({}));
        let mut pod = (*p.pod).clone();
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_selector = Some([(ZONE.to_string(), "a".to_string())].into());
        }
        p = PodInfo::new(Arc::new(pod));
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, &p, &nodes);
        assert!(PodTopologySpread.filter(&state, &p, &nodes[0]).is_success());
        let ignore = spreading("DoNotSchedule", 1, json!({"nodeAffinityPolicy": "Ignore"}));
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, &ignore, &nodes);
        assert_eq!(PodTopologySpread.filter(&state, &ignore, &nodes[0]).code, Code::Unschedulable);
    }

    #[test]
    fn scheduler_topology_spread_score_favours_emptier_domains() {
        let nodes = vec![zoned("a1", "a", 3), zoned("b1", "b", 1), zoned("c1", "c", 0)];
        let p = spreading("ScheduleAnyway", 1, json!({}));
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::default();
        assert!(PodTopologySpread.pre_score(&mut state, &p, &feasible, &nodes).is_success());
        // 3 domains: weight ln(5) = 1.609; maxSkew 1 adds 0. a 3·1.609 = 4.83 → 5, b → 2, c → 0.
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread.score(&state, &p, n).unwrap_or(-9)).collect();
        assert_eq!(scores, vec![5, 2, 0]);
        PodTopologySpread.normalize(&state, &p, &mut scores);
        // 100·(max + min − s)/max: a 0, b 100·3/5 = 60, c 100.
        assert_eq!(scores, vec![0, 60, 100]);
    }

    #[test]
    fn scheduler_topology_spread_system_defaults_need_a_selecting_owner() {
        let nodes = vec![zoned("a1", "a", 2), zoned("b1", "b", 0)];
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let p = named_pod("new", json!({"app": "web"}), requesting("", ""));
        let mut state = CycleState::default();
        assert_eq!(PodTopologySpread.pre_score(&mut state, &p, &feasible, &nodes).code, Code::Skip);
        state.write(DefaultSpreadSelector(Some(Selector::from_map(&[("app".to_string(), "web".to_string())].into()))));
        assert!(PodTopologySpread.pre_score(&mut state, &p, &feasible, &nodes).is_success());
        // hostname: 2 nodes → ln 4 = 1.386, maxSkew 3 adds 2; zone: 2 domains → ln 4, adds 4.
        // a1: 2·1.386+2 + 2·1.386+4 = 11.55 → 12; b1: 0+2+0+4 = 6.
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread.score(&state, &p, n).unwrap_or(-9)).collect();
        assert_eq!(scores, vec![12, 6]);
        PodTopologySpread.normalize(&state, &p, &mut scores);
        assert_eq!(scores, vec![50, 100]); // 100·(12+6−12)/12 = 50
    }
}
