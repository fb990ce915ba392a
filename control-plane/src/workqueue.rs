//! A de-duplicating, rate-limited work queue of keys, as client-go's controllers use.
//!
//! A key is in the queue at most once however often it is added; a key being worked on that
//! is added again is worked on again once its worker is done, never by two workers at once.
//! Failures back off per key (5 ms doubling to 1,000 s, client-go's default) until
//! [`WorkQueue::forget`]; delayed adds wait in a timer heap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;

const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1000);
/// Keys waiting at once (queued plus delayed); adds beyond it are dropped with a warning. Keys
/// are object names, so this bounds a queue far above any cluster Keel serves (10,000 pods).
pub const MAX_KEYS: usize = 1_000_000;

pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    wake: Notify,
    name: &'static str,
    /// `workqueue_depth` and `workqueue_adds_total` for this queue, once instrumented.
    metrics: OnceLock<(Gauge, Counter)>,
}

struct State<K> {
    queue: VecDeque<K>,
    /// Keys waiting in `queue` or to be re-queued when their processing ends.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Delayed keys by due time (ties broken by insertion order).
    delayed: BinaryHeap<Reverse<(Instant, u64, K)>>,
    sequence: u64,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    pub fn new(name: &'static str) -> WorkQueue<K> {
        WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                delayed: BinaryHeap::new(),
                sequence: 0,
                failures: HashMap::new(),
                shut_down: false,
            }),
            wake: Notify::new(),
            name,
            metrics: OnceLock::new(),
        }
    }

    /// Reports this queue's depth and adds under its name from now on.
    pub fn instrument(&self, metrics: &crate::metrics::Metrics) {
        let labels = crate::metrics::NameLabels { name: self.name };
        let depth = metrics.workqueue_depth.get_or_create(&labels).clone();
        let adds = metrics.workqueue_adds.get_or_create(&labels).clone();
        let _ = self.metrics.set((depth, adds));
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Updates the metrics after `state` changed (`added`: a key was newly queued).
    fn observe(&self, state: &State<K>, added: bool) {
        if let Some((depth, adds)) = self.metrics.get() {
            depth.set(state.queue.len() as i64);
            if added {
                adds.inc();
            }
        }
    }

    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.shut_down || state.dirty.contains(&key) {
            return;
        }
        if state.dirty.len() + state.delayed.len() >= MAX_KEYS {
            tracing::warn!(queue = self.name, "work queue full; a key was dropped");
            return;
        }
        state.dirty.insert(key.clone());
        if !state.processing.contains(&key) {
            state.queue.push_back(key);
            self.observe(&state, true);
            drop(state);
            self.wake.notify_one();
        } else {
            self.observe(&state, true);
        }
    }

    /// Adds the key once `delay` has passed.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut state = self.lock();
        if state.shut_down || state.dirty.len() + state.delayed.len() >= MAX_KEYS {
            return;
        }
        state.sequence += 1;
        let sequence = state.sequence;
        state.delayed.push(Reverse((Instant::now() + delay, sequence, key)));
        drop(state);
        self.wake.notify_one();
    }

    /// Adds the key after its back-off, which doubles with every call until `forget`.
    pub fn add_rate_limited(&self, key: K) {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            *failures
        };
        self.add_after(key, backoff(failures));
    }

    /// The key succeeded: its back-off starts over.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to work on; None once the queue is shut down. Call [`done`](Self::done)
    /// with it afterwards.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.wake.notified();
            let wait = {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                promote_due(&mut state);
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    self.observe(&state, false);
                    if !state.queue.is_empty() {
                        self.wake.notify_one();
                    }
                    return Some(key);
                }
                state.delayed.peek().map(|Reverse((due, _, _))| *due)
            };
            match wait {
                Some(due) => {
                    let _ = tokio::time::timeout_at(due, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Work on `key` ended; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.clone());
            self.observe(&state, false);
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Keys waiting now (not counting delayed ones): the `workqueue_depth` metric.
    pub fn depth(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Wakes every worker with None.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.wake.notify_waiters();
        self.wake.notify_one();
    }
}

fn promote_due<K: Clone + Eq + Hash + Ord>(state: &mut State<K>) {
    let now = Instant::now();
    while state.delayed.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
        let Some(Reverse((_, _, key))) = state.delayed.pop() else { break };
        if state.dirty.insert(key.clone()) && !state.processing.contains(&key) {
            state.queue.push_back(key);
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    BACKOFF_BASE.saturating_mul(1u32 << exponent).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_worked_twice_at_once() {
        let queue = WorkQueue::new("test");
        queue.add("a".to_string());
        queue.add("a".to_string());
        queue.add("b".to_string());
        assert_eq!(queue.depth(), 2);
        let first = queue.next().await.expect("a");
        assert_eq!(first, "a");
        queue.add("a".to_string());
        let second = queue.next().await.expect("b");
        assert_eq!(second, "b", "a is being worked on, so it waits");
        queue.done(&second);
        assert_eq!(queue.depth(), 0);
        queue.done(&first);
        assert_eq!(queue.depth(), 1, "a was added while worked on: it comes back");
        assert_eq!(queue.next().await.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn delayed_and_rate_limited_keys_wait_their_turn() {
        let queue = WorkQueue::new("test");
        queue.add_after(1u32, Duration::from_millis(80));
        queue.add_rate_limited(2u32);
        let started = Instant::now();
        assert_eq!(queue.next().await, Some(2));
        assert!(started.elapsed() >= Duration::from_millis(5));
        assert_eq!(queue.next().await, Some(1));
        assert!(started.elapsed() >= Duration::from_millis(80));
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(3), Duration::from_millis(20));
        assert_eq!(backoff(40), BACKOFF_MAX);
        queue.add_rate_limited(2);
        assert_eq!(queue.failures(&2), 2);
        queue.forget(&2);
        assert_eq!(queue.failures(&2), 0);
    }

    #[tokio::test]
    async fn shut_down_wakes_workers() {
        let queue = std::sync::Arc::new(WorkQueue::<u32>::new("test"));
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(worker.await.expect("worker"), None);
    }
}
