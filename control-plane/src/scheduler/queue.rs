//! The scheduling queue: which pod to schedule next, and when a failed pod is tried again.
//!
//! Parts, as Kubernetes' PriorityQueue:
//! - **activeQ**: ready pods, higher `spec.priority` first, then earlier queue timestamp.
//! - **backoffQ**: pods waiting out their backoff, `initial × 2^(attempts − 1)` capped at
//!   `max` (1 s … 10 s), from their last failure; they move to activeQ when it expires.
//! - **unschedulable set**: pods no node fitted, parked until a cluster event that one of the
//!   plugins that rejected them registered (`on_cluster_event`), or for at most
//!   `max_in_unschedulable` (5 min) after which they move anyway.
//! - **gated**: pods with `spec.schedulingGates`, held until an update removes every gate.
//! - **in flight**: popped and being scheduled; events seen meanwhile are remembered, so a
//!   failure that raced a relevant event goes to backoff instead of being parked (Kubernetes'
//!   in-flight event tracking).
//!
//! Simplifications, documented: queueing hints are "the event matches a registration of a
//! rejecting plugin" (Kubernetes' hints can also answer QueueSkip after looking at the object);
//! an update of a parked pod moves it when its labels, annotations or spec changed (hints
//! would look at which field); parked pods move exactly when they reach 5 min (Kubernetes
//! checks every 30 s); the backoffQ is never popped early when the activeQ is empty.
//!
//! Limits: at most `max_pods` pods (add beyond: `QueueError::Full`); at most
//! `max_in_flight_events` remembered per in-flight pod (more: treated as "a relevant event
//! arrived", which only costs an earlier retry).
//!
//! Only pods for `default-scheduler` that are not bound yet are queued; others are ignored.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::framework::{ClusterEvent, PodKey, pod_key};

pub const SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest a pod stays parked without a relevant event (`podMaxInUnschedulablePodsDuration`).
    pub max_in_unschedulable: Duration,
    pub max_pods: usize,
    pub max_in_flight_events: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(300),
            max_pods: 100_000,
            max_in_flight_events: 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("scheduling queue is full ({0} pods)")]
    Full(usize),
}

/// A pod handed out by `pop`.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<Pod>,
    pub key: PodKey,
    /// Scheduling attempts so far, this one included.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Gated,
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    place: Place,
    attempts: u32,
    /// Orders activeQ among equal priorities: when the pod was added or last failed.
    timestamp: Instant,
    /// Tie-breaker making every ordering key unique.
    seq: u64,
    backoff_expiry: Option<Instant>,
    /// When parked: since when, and the events that can unpark it.
    parked_since: Option<Instant>,
    interests: Vec<ClusterEvent>,
    /// While in flight: events seen, and whether more arrived than are remembered or the pod
    /// itself was updated.
    in_flight_events: Vec<ClusterEvent>,
    in_flight_overflow: bool,
}

impl Entry {
    fn priority(&self) -> i32 {
        self.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
    }
}

/// See the module documentation.
pub struct SchedulingQueue {
    config: QueueConfig,
    plugin_events: HashMap<&'static str, &'static [ClusterEvent]>,
    entries: HashMap<PodKey, Entry>,
    active: BTreeSet<(Reverse<i32>, Instant, u64, PodKey)>,
    backoff: BTreeSet<(Instant, u64, PodKey)>,
    /// Parked pods by the time they must leave at the latest.
    unschedulable: BTreeSet<(Instant, u64, PodKey)>,
    /// Popped and not yet done or failed.
    in_flight: HashSet<PodKey>,
    next_seq: u64,
}

fn is_ours(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let name = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME);
    let bound = spec.and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    name == SCHEDULER_NAME && !bound
}

fn is_gated(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty())
}

/// Whether an update may change the scheduling outcome (not just status or bookkeeping).
fn scheduling_relevant_change(old: &Pod, new: &Pod) -> bool {
    old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
        || old.spec != new.spec
}

impl SchedulingQueue {
    /// `plugin_events`: every plugin's registered events (`Profile::events()`).
    pub fn new(config: QueueConfig, plugin_events: Vec<(&'static str, &'static [ClusterEvent])>) -> SchedulingQueue {
        SchedulingQueue {
            config,
            plugin_events: plugin_events.into_iter().collect(),
            entries: HashMap::new(),
            active: BTreeSet::new(),
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            in_flight: HashSet::new(),
            next_seq: 0,
        }
    }

    /// Pods known to the queue (any part, in flight included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// (activeQ, backoffQ, unschedulable, gated) sizes, for metrics.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let gated = self.entries.values().filter(|e| e.place == Place::Gated).count();
        (self.active.len(), self.backoff.len(), self.unschedulable.len(), gated)
    }

    /// Backoff after `attempts` failed attempts.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut duration = self.config.initial_backoff;
        for _ in 1..attempts {
            if duration >= self.config.max_backoff / 2 {
                return self.config.max_backoff;
            }
            duration *= 2;
        }
        duration.min(self.config.max_backoff)
    }

    /// A new pod (from the informer). Returns whether it is queued (false: not ours, or bound).
    pub fn add(&mut self, pod: Arc<Pod>, now: Instant) -> Result<bool, QueueError> {
        if !is_ours(&pod) {
            return Ok(false);
        }
        let key = pod_key(&pod);
        if self.entries.contains_key(&key) {
            self.update(pod, now)?;
            return Ok(true);
        }
        if self.entries.len() >= self.config.max_pods {
            return Err(QueueError::Full(self.config.max_pods));
        }
        let seq = self.bump();
        let gated = is_gated(&pod);
        let entry = Entry {
            pod,
            place: Place::Gated,
            attempts: 0,
            timestamp: now,
            seq,
            backoff_expiry: None,
            parked_since: None,
            interests: Vec::new(),
            in_flight_events: Vec::new(),
            in_flight_overflow: false,
        };
        self.entries.insert(key.clone(), entry);
        if !gated {
            self.place(&key, Place::Active);
        }
        Ok(true)
    }

    /// A changed pod. Bound or not-ours pods leave the queue.
    pub fn update(&mut self, pod: Arc<Pod>, now: Instant) -> Result<(), QueueError> {
        let key = pod_key(&pod);
        if !is_ours(&pod) {
            self.delete(&key);
            return Ok(());
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            return self.add(pod, now).map(|_| ());
        };
        let relevant = scheduling_relevant_change(&entry.pod, &pod);
        let old_place = entry.place;
        // Take the entry out of its ordered set first: priority may be part of the key.
        self.unplace(&key);
        let Some(entry) = self.entries.get_mut(&key) else { return Ok(()) };
        entry.pod = pod;
        let gated = is_gated(&entry.pod);
        let next = match old_place {
            _ if gated => Place::Gated,
            Place::Gated => Place::Active,
            Place::InFlight => {
                entry.in_flight_overflow |= relevant;
                Place::InFlight
            }
            Place::Unschedulable if relevant => self.ready_or_backoff(&key, now),
            other => other,
        };
        self.place(&key, next);
        Ok(())
    }

    /// The pod is gone (deleted, or bound by someone else).
    pub fn delete(&mut self, key: &str) {
        self.unplace(key);
        self.entries.remove(key);
        self.in_flight.remove(key);
    }

    /// The next pod to schedule, after moving due backoff and overdue parked pods.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        let (_, _, _, key) = self.active.pop_first()?;
        let entry = self.entries.get_mut(&key)?;
        entry.place = Place::InFlight;
        entry.attempts = entry.attempts.saturating_add(1);
        entry.in_flight_events.clear();
        entry.in_flight_overflow = false;
        self.in_flight.insert(key.clone());
        Some(QueuedPod { pod: entry.pod.clone(), key, attempts: entry.attempts })
    }

    /// When `pop` may next return a pod that it cannot now (None: only an event can help).
    /// If activeQ is non-empty, `pop` returns at once and this is not needed.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self.backoff.first().map(|(t, _, _)| *t);
        let parked = self.unschedulable.first().map(|(t, _, _)| *t);
        match (backoff, parked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The in-flight pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        if self.entries.get(key).is_some_and(|e| e.place == Place::InFlight) {
            self.entries.remove(key);
            self.in_flight.remove(key);
        }
    }

    /// The in-flight pod failed. `rejecting_plugins` empty (an error, a failed bind): backoff.
    /// Otherwise parked, unless an event one of them registered arrived during the attempt.
    pub fn failed(&mut self, key: &str, rejecting_plugins: &BTreeSet<&'static str>, now: Instant) {
        let Some(attempts) = self.entries.get(key).filter(|e| e.place == Place::InFlight).map(|e| e.attempts) else {
            return;
        };
        let duration = self.backoff_duration(attempts);
        let interests: Vec<ClusterEvent> =
            rejecting_plugins.iter().flat_map(|p| self.plugin_events.get(p).copied().unwrap_or(&[])).copied().collect();
        let Some(entry) = self.entries.get_mut(key) else { return };
        entry.timestamp = now;
        entry.backoff_expiry = Some(now + duration);
        entry.interests = interests;
        let raced = entry.in_flight_overflow
            || entry.in_flight_events.iter().any(|e| entry.interests.iter().any(|i| i.covers(e)));
        entry.in_flight_events.clear();
        let next = if is_gated(&entry.pod) {
            Place::Gated
        } else if rejecting_plugins.is_empty() || raced {
            Place::Backoff
        } else {
            entry.parked_since = Some(now);
            Place::Unschedulable
        };
        self.place(key, next);
    }

    /// A cluster change: parked pods that one of their rejecting plugins registered it for move
    /// to backoffQ (still backing off) or activeQ; in-flight pods remember it.
    pub fn on_cluster_event(&mut self, event: ClusterEvent, now: Instant) {
        // Only parked and in-flight pods care: walk those sets, not every entry.
        let mut moving = Vec::new();
        for (_, _, key) in &self.unschedulable {
            if self.entries.get(key).is_some_and(|e| e.interests.iter().any(|i| i.covers(&event))) {
                moving.push(key.clone());
            }
        }
        for key in &self.in_flight {
            let Some(entry) = self.entries.get_mut(key) else { continue };
            if entry.in_flight_events.len() < self.config.max_in_flight_events {
                entry.in_flight_events.push(event);
            } else {
                entry.in_flight_overflow = true;
            }
        }
        for key in moving {
            self.unplace(&key);
            let next = self.ready_or_backoff(&key, now);
            self.place(&key, next);
        }
    }

    /// Puts every in-flight pod back into activeQ: a new leadership term starts, and the
    /// cycles and binds of the last one were abandoned.
    pub fn requeue_in_flight(&mut self) {
        let keys: Vec<PodKey> = self.in_flight.drain().collect();
        for key in keys {
            if self.entries.get(&key).is_some_and(|e| e.place == Place::InFlight) {
                self.place(&key, Place::Active);
            }
        }
    }

    fn ready_or_backoff(&self, key: &str, now: Instant) -> Place {
        match self.entries.get(key).and_then(|e| e.backoff_expiry) {
            Some(expiry) if expiry > now => Place::Backoff,
            _ => Place::Active,
        }
    }

    /// Moves expired backoffs to activeQ, and parked pods past `max_in_unschedulable`.
    fn flush(&mut self, now: Instant) {
        while let Some((expiry, _, _)) = self.backoff.first() {
            if *expiry > now {
                break;
            }
            if let Some((_, _, key)) = self.backoff.pop_first() {
                self.set_place(&key, Place::Active);
            }
        }
        while let Some((deadline, _, _)) = self.unschedulable.first() {
            if *deadline > now {
                break;
            }
            if let Some((_, _, key)) = self.unschedulable.pop_first() {
                let next = self.ready_or_backoff(&key, now);
                self.set_place(&key, next);
            }
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Removes the pod from whichever ordered set holds it (the entry stays).
    fn unplace(&mut self, key: &str) {
        let Some(entry) = self.entries.get(key) else { return };
        let owned = key.to_string();
        match entry.place {
            Place::Active => {
                self.active.remove(&(Reverse(entry.priority()), entry.timestamp, entry.seq, owned));
            }
            Place::Backoff => {
                if let Some(expiry) = entry.backoff_expiry {
                    self.backoff.remove(&(expiry, entry.seq, owned));
                }
            }
            Place::Unschedulable => {
                if let Some(since) = entry.parked_since {
                    self.unschedulable.remove(&(since + self.config.max_in_unschedulable, entry.seq, owned));
                }
            }
            Place::Gated | Place::InFlight => {}
        }
    }

    /// Puts the pod into `place`'s ordered set (the pod must be in none).
    fn place(&mut self, key: &str, place: Place) {
        let max_parked = self.config.max_in_unschedulable;
        let Some(entry) = self.entries.get_mut(key) else { return };
        entry.place = place;
        let owned = key.to_string();
        if place == Place::InFlight {
            self.in_flight.insert(owned.clone());
        } else {
            self.in_flight.remove(key);
        }
        match place {
            Place::Active => {
                self.active.insert((Reverse(entry.priority()), entry.timestamp, entry.seq, owned));
            }
            Place::Backoff => {
                let expiry = *entry.backoff_expiry.get_or_insert(entry.timestamp);
                self.backoff.insert((expiry, entry.seq, owned));
            }
            Place::Unschedulable => {
                let since = *entry.parked_since.get_or_insert(entry.timestamp);
                self.unschedulable.insert((since + max_parked, entry.seq, owned));
            }
            Place::Gated | Place::InFlight => {}
        }
    }

    /// For a pod already popped from its set by `flush`.
    fn set_place(&mut self, key: &str, place: Place) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.place = Place::InFlight; // in no set now
        }
        self.place(key, place);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{ActionType, EventResource};
    use crate::scheduler::plugins::Profile;
    use crate::scheduler::testutil::pod_object;
    use serde_json::json;

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(QueueConfig::default(), Profile::default_profile().events())
    }

    fn pod(name: &str, spec: serde_json::Value) -> Arc<Pod> {
        Arc::new(pod_object(name, json!({}), spec))
    }

    fn plain(name: &str) -> Arc<Pod> {
        pod(name, json!({"containers": [{"name": "c"}]}))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn fit() -> BTreeSet<&'static str> {
        ["NodeResourcesFit"].into()
    }

    #[test]
    fn scheduler_queue_orders_by_priority_then_arrival() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(plain("first"), t0).expect("add");
        q.add(pod("urgent", json!({"priority": 100, "containers": [{"name": "c"}]})), t0 + secs(2)).expect("add");
        q.add(plain("second"), t0 + secs(1)).expect("add");
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t0 + secs(3)).map(|p| p.key)).collect();
        assert_eq!(order, vec!["default/urgent", "default/first", "default/second"]);
    }

    #[test]
    fn scheduler_queue_backoff_doubles_from_one_second_to_ten() {
        let q = queue();
        let got: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
        let t0 = Instant::now();
        let mut q = queue();
        q.add(plain("p"), t0).expect("add");
        let mut now = t0;
        for expected in [1, 2, 4, 8, 10] {
            let popped = q.pop(now).expect("ready");
            q.failed(&popped.key, &BTreeSet::new(), now); // an error: backoff, not parked
            assert_eq!(q.next_wakeup(), Some(now + secs(expected)));
            assert!(q.pop(now + secs(expected) - Duration::from_millis(1)).is_none(), "still backing off");
            now += secs(expected);
        }
        assert_eq!(q.pop(now).map(|p| p.attempts), Some(6));
    }

    #[test]
    fn scheduler_queue_unschedulable_pod_moves_on_a_node_add() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(plain("p"), t0).expect("add");
        let popped = q.pop(t0).expect("ready");
        q.failed(&popped.key, &fit(), t0);
        assert_eq!(q.sizes(), (0, 0, 1, 0));
        // An assigned pod was added: NodeResourcesFit did not register that.
        q.on_cluster_event(ClusterEvent::new(EventResource::AssignedPod, ActionType::ADD), t0 + secs(5));
        assert_eq!(q.sizes(), (0, 0, 1, 0));
        q.on_cluster_event(ClusterEvent::new(EventResource::Node, ActionType::ADD), t0 + secs(5));
        assert_eq!(q.sizes(), (1, 0, 0, 0), "backoff (1 s) is over: straight to activeQ");
        assert_eq!(q.pop(t0 + secs(5)).map(|p| p.attempts), Some(2));
        // A second failure, then a node add within its 2 s backoff: backoffQ.
        q.failed("default/p", &fit(), t0 + secs(6));
        q.on_cluster_event(ClusterEvent::new(EventResource::Node, ActionType::UPDATE_NODE_ALLOCATABLE), t0 + secs(7));
        assert_eq!(q.sizes(), (0, 1, 0, 0));
        assert!(q.pop(t0 + secs(7)).is_none());
        assert!(q.pop(t0 + secs(8)).is_some());
    }

    #[test]
    fn scheduler_queue_event_during_the_attempt_skips_parking() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(plain("p"), t0).expect("add");
        let popped = q.pop(t0).expect("ready");
        q.on_cluster_event(ClusterEvent::new(EventResource::AssignedPod, ActionType::DELETE), t0);
        q.failed(&popped.key, &fit(), t0);
        assert_eq!(q.sizes(), (0, 1, 0, 0), "a pod freed resources while we looked: retry after backoff");
    }

    #[test]
    fn scheduler_queue_parked_pods_leave_after_five_minutes() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(plain("p"), t0).expect("add");
        let popped = q.pop(t0).expect("ready");
        q.failed(&popped.key, &["NodeAffinity"].into(), t0);
        assert_eq!(q.next_wakeup(), Some(t0 + secs(300)));
        assert!(q.pop(t0 + secs(299)).is_none());
        assert!(q.pop(t0 + secs(300)).is_some());
    }

    #[test]
    fn scheduler_queue_holds_gated_pods_and_ignores_other_schedulers() {
        let t0 = Instant::now();
        let mut q = queue();
        let gated = pod("g", json!({"containers": [{"name": "c"}], "schedulingGates": [{"name": "wait"}]}));
        assert_eq!(q.add(gated, t0), Ok(true));
        assert_eq!(q.add(pod("other", json!({"schedulerName": "custom", "containers": []})), t0), Ok(false));
        assert_eq!(q.add(pod("bound", json!({"nodeName": "n1", "containers": []})), t0), Ok(false));
        assert!(q.pop(t0).is_none());
        q.update(plain("g"), t0 + secs(1)).expect("update");
        assert_eq!(q.pop(t0 + secs(1)).map(|p| p.key), Some("default/g".to_string()));
        q.done("default/g");
        assert!(q.is_empty());
    }

    #[test]
    fn scheduler_queue_update_of_a_parked_pod_retries_it_and_is_bounded() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(
            QueueConfig { max_pods: 2, ..QueueConfig::default() },
            Profile::default_profile().events(),
        );
        q.add(plain("p"), t0).expect("add");
        let popped = q.pop(t0).expect("ready");
        q.failed(&popped.key, &["TaintToleration"].into(), t0);
        q.update(plain("p"), t0 + secs(2)).expect("same pod");
        assert_eq!(q.sizes(), (0, 0, 1, 0), "no relevant change: stays parked");
        q.update(
            pod("p", json!({"containers": [{"name": "c"}], "tolerations": [{"operator": "Exists"}]})),
            t0 + secs(2),
        )
        .expect("update");
        assert_eq!(q.sizes(), (1, 0, 0, 0));
        q.add(plain("q"), t0).expect("second");
        assert_eq!(q.add(plain("r"), t0), Err(QueueError::Full(2)));
        q.delete("default/p");
        assert_eq!(q.len(), 1);
        assert_eq!(q.sizes(), (1, 0, 0, 0));
    }
}
