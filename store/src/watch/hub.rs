//! The watch hub: every watcher of this member, live delivery and catch-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::proto::PbWatchResponse as WatchResponse;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::filter::EventFilter;
use crate::header::HeaderSource;
use crate::mvcc::{ChangeSet, Engine, Event, history};

/// Events read from history per catch-up step: bounds memory per slow watcher.
const CATCH_UP_EVENTS: usize = 1_000;
/// The last catch-up step (run under the hub lock) covers at most this many revisions;
/// a watcher further behind takes another unlocked step first.
const FINAL_STEP_REVISIONS: i64 = 256;
/// How often the catch-up thread looks at unsynced watchers without being woken.
const CATCH_UP_TICK: Duration = Duration::from_millis(100);

/// One response on its way to a client, with the watcher's fragmentation choice.
#[derive(Debug)]
pub struct Outgoing {
    pub response: WatchResponse,
    pub fragment: bool,
}

/// A watch as the client asked for it.
#[derive(Clone, Debug, Default)]
pub struct WatchParams {
    pub filter: EventFilter,
    /// 0: from the next revision. Otherwise the first revision to deliver.
    pub start_revision: i64,
    pub progress_notify: bool,
    pub fragment: bool,
    pub watch_id: i64,
}

/// Identifies a watcher inside the hub (unique across streams).
pub type WatcherKey = u64;

pub enum Registration {
    /// Registered; the created response must carry `revision`, then `announced` must be called.
    Registered { key: WatcherKey, revision: i64 },
    /// The start revision is compacted: answer created, then canceled with `compact_revision`.
    Compacted { compact_revision: i64, revision: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Registered, created response not yet queued: deliver nothing yet.
    Announcing,
    /// Behind: the catch-up thread owns delivery.
    Unsynced,
    /// Up to date: `publish` delivers.
    Synced,
}

struct Watcher {
    params: WatchParams,
    tx: mpsc::Sender<Outgoing>,
    /// The next revision this watcher must receive.
    next_revision: i64,
    phase: Phase,
}

struct HubState {
    watchers: HashMap<WatcherKey, Watcher>,
    next_key: WatcherKey,
    /// The last revision handed to `publish`; synced watchers have everything up to it.
    last_published: i64,
}

pub struct WatchHub {
    state: Mutex<HubState>,
    engine: Arc<Engine>,
    header: Arc<HeaderSource>,
    wake_tx: std_mpsc::SyncSender<()>,
    wake_rx: Mutex<Option<std_mpsc::Receiver<()>>>,
    progress_interval: Duration,
    /// Set by [`WatchHub::stop_catch_up`]: the catch-up thread ends at its next wake.
    stopped: AtomicBool,
    /// The catch-up thread, for whoever stops the member to join before the database closes.
    catch_up_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WatchHub {
    pub fn new(engine: Arc<Engine>, header: Arc<HeaderSource>, progress_interval: Duration) -> Arc<WatchHub> {
        let (wake_tx, wake_rx) = std_mpsc::sync_channel(1);
        let last_published = engine.committed_revision();
        Arc::new(WatchHub {
            state: Mutex::new(HubState { watchers: HashMap::new(), next_key: 1, last_published }),
            engine,
            header,
            wake_tx,
            wake_rx: Mutex::new(Some(wake_rx)),
            progress_interval,
            stopped: AtomicBool::new(false),
            catch_up_thread: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Every update under this lock is a whole-field assignment or map insert/remove, so
        // the state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }

    /// Starts the catch-up thread (once).
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let receiver = self.wake_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(receiver) = receiver else { return Ok(()) };
        let hub = Arc::downgrade(self);
        let thread = std::thread::Builder::new().name("watch-catch-up".into()).spawn(move || {
            let mut last_progress = Instant::now();
            loop {
                let woken = receiver.recv_timeout(CATCH_UP_TICK);
                if matches!(woken, Err(std_mpsc::RecvTimeoutError::Disconnected)) {
                    return;
                }
                let Some(hub) = hub.upgrade() else { return };
                if hub.stopped.load(Ordering::SeqCst) {
                    return;
                }
                if last_progress.elapsed() >= hub.progress_interval {
                    hub.send_progress_notifications();
                    last_progress = Instant::now();
                }
                hub.catch_up_all();
            }
        })?;
        *self.catch_up_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(())
    }

    /// Ends the catch-up thread after the step it is in (unsynced watchers get nothing more)
    /// and hands it over to be joined; None if it never started or was already handed over.
    pub fn stop_catch_up(&self) -> Option<std::thread::JoinHandle<()>> {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake();
        self.catch_up_thread.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub fn register(&self, params: WatchParams, tx: mpsc::Sender<Outgoing>) -> Registration {
        let mut state = self.lock();
        let current = state.last_published;
        let compact_revision = self.engine.compact_revision();
        let start = params.start_revision;
        if start != 0 && start < compact_revision {
            return Registration::Compacted { compact_revision, revision: current };
        }
        let next_revision = if start == 0 { current + 1 } else { start };
        let key = state.next_key;
        state.next_key += 1;
        state.watchers.insert(key, Watcher { params, tx, next_revision, phase: Phase::Announcing });
        Registration::Registered { key, revision: current }
    }

    /// The created response is queued: the watcher may receive events now.
    pub fn announced(&self, key: WatcherKey) {
        if let Some(watcher) = self.lock().watchers.get_mut(&key) {
            watcher.phase = Phase::Unsynced;
        }
        self.wake();
    }

    pub fn cancel(&self, key: WatcherKey) -> bool {
        self.lock().watchers.remove(&key).is_some()
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// The highest revision R such that every watcher in `keys` has been sent every event up
    /// to R: what a progress response may truthfully claim.
    pub fn progress_revision(&self, keys: impl Iterator<Item = WatcherKey>) -> i64 {
        let state = self.lock();
        let mut revision = state.last_published;
        for key in keys {
            if let Some(w) = state.watchers.get(&key).filter(|w| w.phase != Phase::Synced) {
                revision = revision.min(w.next_revision - 1);
            }
        }
        revision
    }

    /// After a Raft snapshot replaced the store: every synced watcher goes back to catching up
    /// from history (which holds the revisions the snapshot skipped, unless they are compacted,
    /// in which case the watcher is cancelled with the compact revision).
    pub fn resync_all(&self) {
        let mut state = self.lock();
        for watcher in state.watchers.values_mut().filter(|w| w.phase == Phase::Synced) {
            watcher.phase = Phase::Unsynced;
        }
        state.last_published = state.last_published.max(self.engine.committed_revision());
        drop(state);
        self.wake();
    }

    /// Delivers committed revisions, oldest first, to every synced watcher. Never blocks: a
    /// watcher whose buffer is full drops to unsynced and catches up from history later.
    pub fn publish(&self, changes: &[ChangeSet]) {
        let Some(last) = changes.last() else { return };
        let mut state = self.lock();
        let mut fell_behind = false;
        let mut closed = Vec::new();
        for (key, watcher) in state.watchers.iter_mut().filter(|(_, w)| w.phase == Phase::Synced) {
            let first = watcher.next_revision;
            for set in changes.iter().filter(|s| s.revision >= first) {
                let mut events = Vec::new();
                watcher.params.filter.select_into(&set.events, &mut events);
                if !events.is_empty() {
                    match self.send(watcher, set.revision, events) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            watcher.phase = Phase::Unsynced;
                            fell_behind = true;
                            break;
                        }
                        Err(TrySendError::Closed(_)) => {
                            closed.push(*key);
                            break;
                        }
                    }
                }
                watcher.next_revision = set.revision + 1;
            }
        }
        for key in closed {
            state.watchers.remove(&key);
        }
        state.last_published = last.revision;
        drop(state);
        if fell_behind {
            self.wake();
        }
    }

    fn send(&self, watcher: &Watcher, revision: i64, events: Vec<Event>) -> Result<(), TrySendError<Outgoing>> {
        let response = WatchResponse {
            header: Some(self.header.header(revision)),
            watch_id: watcher.params.watch_id,
            events,
            ..Default::default()
        };
        watcher.tx.try_send(Outgoing { response, fragment: watcher.params.fragment })
    }

    fn send_progress_notifications(&self) {
        let state = self.lock();
        let revision = state.last_published;
        for watcher in state.watchers.values() {
            if watcher.phase == Phase::Synced && watcher.params.progress_notify {
                let response = WatchResponse {
                    header: Some(self.header.header(revision)),
                    watch_id: watcher.params.watch_id,
                    ..Default::default()
                };
                let _ = watcher.tx.try_send(Outgoing { response, fragment: false });
            }
        }
    }

    fn catch_up_all(&self) {
        let pending: Vec<(WatcherKey, i64, EventFilter)> = self
            .lock()
            .watchers
            .iter()
            .filter(|(_, w)| w.phase == Phase::Unsynced)
            .map(|(k, w)| (*k, w.next_revision, w.params.filter.clone()))
            .collect();
        for (key, next_revision, filter) in pending {
            if let Err(error) = self.catch_up(key, next_revision, &filter) {
                tracing::warn!(%error, "watch catch-up failed; will retry");
            }
        }
    }

    /// Moves one unsynced watcher forward: unlocked history steps while it is far behind,
    /// then a final step under the lock that makes it synced.
    fn catch_up(&self, key: WatcherKey, mut next_revision: i64, filter: &EventFilter) -> crate::error::Result<()> {
        loop {
            // While a snapshot replaces the store, history is half gone: wait for the next tick.
            let epoch = self.engine.data_epoch();
            if epoch % 2 == 1 {
                return Ok(());
            }
            if next_revision < self.engine.compact_revision() {
                self.cancel_compacted(key);
                return Ok(());
            }
            let committed = self.engine.committed_revision();
            if committed - next_revision < FINAL_STEP_REVISIONS {
                break;
            }
            let (sets, covered) = history::read(&self.engine, next_revision, committed, CATCH_UP_EVENTS)?;
            if self.engine.data_epoch() != epoch {
                return Ok(());
            }
            if next_revision < self.engine.compact_revision() {
                self.cancel_compacted(key);
                return Ok(());
            }
            let mut state = self.lock();
            let Some(watcher) = state.watchers.get_mut(&key) else { return Ok(()) };
            if watcher.phase != Phase::Unsynced || watcher.next_revision != next_revision {
                return Ok(());
            }
            if !self.deliver(watcher, filter, &sets, covered) {
                return Ok(());
            }
            next_revision = watcher.next_revision;
        }
        let mut state = self.lock();
        let last_published = state.last_published;
        let Some(watcher) = state.watchers.get_mut(&key) else { return Ok(()) };
        if watcher.phase != Phase::Unsynced || watcher.next_revision != next_revision {
            return Ok(());
        }
        if next_revision <= last_published {
            let epoch = self.engine.data_epoch();
            let (sets, covered) = history::read(&self.engine, next_revision, last_published, usize::MAX)?;
            if epoch % 2 == 1 || self.engine.data_epoch() != epoch {
                return Ok(());
            }
            if !self.deliver(watcher, filter, &sets, covered) {
                return Ok(());
            }
        }
        watcher.phase = Phase::Synced;
        Ok(())
    }

    /// Sends the matching events of `sets` as one response; on success the watcher has
    /// everything up to `covered`. Returns false if the buffer is full (or gone).
    fn deliver(&self, watcher: &mut Watcher, filter: &EventFilter, sets: &[ChangeSet], covered: i64) -> bool {
        let mut events = Vec::new();
        for set in sets {
            filter.select_into(&set.events, &mut events);
        }
        if !events.is_empty() && self.send(watcher, covered, events).is_err() {
            return false;
        }
        watcher.next_revision = covered + 1;
        true
    }

    fn cancel_compacted(&self, key: WatcherKey) {
        let mut state = self.lock();
        let Some(watcher) = state.watchers.get(&key) else { return };
        let response = WatchResponse {
            header: Some(self.header.header(0)),
            watch_id: watcher.params.watch_id,
            canceled: true,
            compact_revision: self.engine.compact_revision(),
            ..Default::default()
        };
        match watcher.tx.try_send(Outgoing { response, fragment: false }) {
            Err(TrySendError::Full(_)) => {}
            _ => {
                state.watchers.remove(&key);
            }
        }
    }
}
