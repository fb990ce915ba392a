//! A de-duplicating work queue of pod keys, as client-go's workqueue: a key waiting is queued
//! once however often it is added, and a key being worked on is handed to no other worker
//! (added meanwhile, it comes back once the worker is done). Its length is therefore bounded by
//! the number of distinct keys: the pods on this agent's nodes, at most `--max-pods` each.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    /// Keys waiting in `queue` (or to be re-queued when their worker is done).
    dirty: HashSet<String>,
    /// Keys a worker holds now.
    processing: HashSet<String>,
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add(&self, key: &str) {
        let mut state = self.lock();
        if !state.dirty.insert(key.to_string()) {
            return;
        }
        if state.processing.contains(key) {
            return;
        }
        state.queue.push_back(key.to_string());
        drop(state);
        self.ready.notify_one();
    }

    /// Adds `key` after `delay` (a retry, a timed re-check).
    pub fn add_after(&self, key: &str, delay: Duration) {
        let queue = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key);
        });
    }

    /// The next key; the caller must call [`WorkQueue::done`] with it.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    if !state.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &str) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.to_string());
            drop(state);
            self.ready.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_never_handed_out_twice_at_once() {
        let queue = WorkQueue::default();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        let first = queue.next().await;
        assert_eq!(first, "a");
        queue.add("a");
        assert_eq!(queue.next().await, "b", "a is being worked on: not handed out again");
        assert!(queue.is_empty());
        queue.done("a");
        assert_eq!(queue.next().await, "a", "added while processing: queued again when done");
        queue.done("a");
        queue.done("b");
        assert!(queue.is_empty());
    }
}
