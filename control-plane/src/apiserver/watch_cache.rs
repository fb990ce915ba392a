//! The watch cache: one per resource and master. It serves watches (from any resourceVersion)
//! and `resourceVersion=0` lists from memory, so a thousand watching clients cost one store
//! watch, not a thousand.
//!
//! # Design
//! A cache lists its resource from the store (every page at one revision, L), then watches the
//! resource's key prefix through [`Kv::watch`]: one store watch per resource per master. It keeps
//! - the current objects, decoded once, keyed by store key and handed out as `Arc`s;
//! - its revision: the newest store revision it has seen completely, moved by events and by
//!   the store's progress notifications;
//! - a ring of the most recent events ([`Limits::ring_events`]), from which a client resumes
//!   at a resourceVersion without asking the store.
//!
//! The store watch starts a little in the past: up to [`Limits::lookback_revisions`] before L,
//! never before the store's compaction point. Events up to L are history: they go into the
//! ring only (the list already holds their outcome). That is what lets a cache created on first
//! use resume a client whose list came from the store a moment before the cache existed.
//!
//! A watch subscribes: under the cache lock it takes its starting point (a snapshot of the
//! objects, or the ring's events after its resourceVersion) and joins the fan-out, so what it
//! replays and what it then receives meet with neither a gap nor an overlap. The fan-out never
//! waits: every subscriber has a bounded channel, and one whose channel is full is dropped (its
//! stream ends after what was already queued, and the client re-watches from the last
//! resourceVersion it saw, as with kube-apiserver). When the store watch fails (compaction,
//! store unavailable) the cache drops every subscriber, re-lists and starts over after a bounded
//! back-off.
//!
//! # Invariants
//! - A subscriber receives every event after its starting revision exactly once, in revision
//!   order. It never sees a gap: it gets everything, or its stream ends.
//! - The window is complete: every event with a revision above `window_start` is in the ring
//!   or still to come from the store watch. A resourceVersion below it is 410 Expired.
//! - Progress travels down the same channel as events, after them, so a bookmark never claims
//!   a revision whose events the subscriber has not been handed.
//! - The cache lock is never held across an await, and nothing done under it waits for a client.
//!
//! Deliberately absent: paging of cached lists (`resourceVersion=0` answers every object, as
//! kube-apiserver's cache does); consistent reads (lists without a resourceVersion go to the
//! store, see `handlers/read.rs`; a watch without one starts from the cache's snapshot, which
//! may trail the store by the cache's delay, and the changes it missed follow); waiting for a resourceVersion newer than the cache (such a
//! watch simply starts after it, so it sees nothing older); evicting idle caches (a master has
//! at most one per catalog entry).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::object;
use super::resources::Resource;
use super::status::ApiError;
use crate::kv::{Event, EventKind, Kv, KvError, Range, WatchBatch, WatchStream, prefix_end};

/// Keys per page of a cache's initial list (each page is one store round trip).
const LIST_PAGE: i64 = 1_000;
/// The first wait before re-listing after a store watch failed; it doubles up to the maximum.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that ran this long was healthy: the next failure starts the back-off over.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
/// How long a request waits for a cache that is (re)listing before giving up on it.
pub const READY_WAIT: Duration = Duration::from_secs(10);

/// The bounds of one cache.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events the ring keeps. 4,096 is about a minute of history for a resource changing 70
    /// times a second (kube-apiserver aims at 75 s), enough for a client to re-watch after a
    /// dropped connection or a watch timeout without a re-list. Events share their objects
    /// with the object map and with each other (one event's new object is the next one's
    /// old), so the ring holds about one object version per event: with 4 KiB objects, about
    /// 16 MiB per busy resource.
    pub ring_events: usize,
    /// How far back in store revisions the store watch starts after a (re)list. It bounds the
    /// history the store replays for one (re)list; 4,096 revisions cover far more than the
    /// moment between a client's list and the watch that created the cache.
    pub lookback_revisions: i64,
    /// Notices (event batches or progress) queued per subscriber; the same as the `Kv` watch
    /// buffer, so a subscriber is dropped only once it is a whole store buffer behind.
    pub subscriber_buffer: usize,
    /// Watches one cache serves at once; more are refused with 429 until some end.
    pub max_subscribers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { ring_events: 4_096, lookback_revisions: 4_096, subscriber_buffer: 256, max_subscribers: 10_000 }
    }
}

/// One change of one object, decoded once and shared by every subscriber.
#[derive(Debug)]
pub struct CachedEvent {
    /// The store revision of the change (the new resourceVersion).
    pub revision: i64,
    pub key: Vec<u8>,
    /// The object before the change (None: it was created). Its resourceVersion is its own;
    /// a DELETED event must carry `revision` instead.
    pub old: Option<Arc<Value>>,
    /// The object after the change (None: it was deleted).
    pub new: Option<Arc<Value>>,
}

/// What a subscriber's channel carries, in revision order.
#[derive(Clone, Debug)]
pub enum Notice {
    /// The events of one store batch (one or more revisions).
    Events(Arc<[Arc<CachedEvent>]>),
    /// The cache has seen every change up to this revision.
    Progress(i64),
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFrom {
    /// The current objects (sent as ADDED), then every later change.
    Snapshot,
    /// Every change after this revision.
    Revision(i64),
}

/// What a watch starts with before its channel.
pub enum Start {
    /// The objects under the watched prefix, at the subscription's `from` revision.
    Snapshot(Vec<Arc<Value>>),
    /// The ring's events after `from`, oldest first (not yet filtered by prefix).
    Replay(Vec<Arc<CachedEvent>>),
}

/// A watch's place in the fan-out.
pub struct Subscription {
    pub start: Start,
    /// Everything up to this revision is accounted for by `start`; later notices may still
    /// carry events at or below it (a cache behind the client's revision), to be skipped.
    pub from: i64,
    /// Later changes. It ends when the subscriber fell behind or the cache restarted.
    pub notices: mpsc::Receiver<Notice>,
}

/// The objects under a prefix at one revision (a `resourceVersion=0` list).
pub struct Snapshot {
    pub objects: Vec<Arc<Value>>,
    pub revision: i64,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CacheError {
    /// The revision is older than the ring's window.
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: i64, oldest: i64 },
    #[error("the watch cache for {0} is not ready: the store is unavailable or it is re-listing")]
    NotReady(String),
    #[error("too many watches of {0}")]
    TooManyWatches(String),
}

impl From<CacheError> for ApiError {
    fn from(error: CacheError) -> ApiError {
        match &error {
            CacheError::TooOld { .. } => ApiError::gone(error.to_string()),
            CacheError::NotReady(_) => ApiError::unavailable(error.to_string()),
            CacheError::TooManyWatches(_) => ApiError {
                code: http::StatusCode::TOO_MANY_REQUESTS,
                reason: "TooManyRequests",
                message: error.to_string(),
                details: None,
            },
        }
    }
}

/// Every cache of one master, created on first use.
pub struct WatchCaches {
    kv: Arc<dyn Kv>,
    limits: Limits,
    caches: Mutex<HashMap<(&'static str, &'static str), Arc<WatchCache>>>,
}

impl WatchCaches {
    pub fn new(kv: Arc<dyn Kv>, limits: Limits) -> WatchCaches {
        WatchCaches { kv, limits, caches: Mutex::new(HashMap::new()) }
    }

    /// The cache of `resource`, started now if this is its first use.
    pub fn get(&self, resource: &'static Resource) -> Arc<WatchCache> {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches
            .entry((resource.group, resource.plural))
            .or_insert_with(|| WatchCache::start(resource, self.kv.clone(), self.limits))
            .clone()
    }
}

/// One resource's cache. Dropping the last handle stops its store watch.
pub struct WatchCache {
    resource: &'static Resource,
    limits: Limits,
    state: Mutex<State>,
    /// Mirrors `State::ready`, for requests waiting on a (re)listing cache.
    ready: watch::Sender<bool>,
    /// Dropped with the cache, which tells its task to stop.
    _stop: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    /// Listed and watching; false while (re)listing.
    ready: bool,
    /// The current objects by store key, each with its resourceVersion set.
    objects: BTreeMap<Vec<u8>, Arc<Value>>,
    /// Every change up to here is reflected in `objects`.
    revision: i64,
    /// The revision of the last list: events at or below it are history (ring only).
    list_revision: i64,
    /// Every event after this revision is in `ring` or still to come.
    window_start: i64,
    /// The most recent events, oldest first, at most `Limits::ring_events`.
    ring: VecDeque<Arc<CachedEvent>>,
    subscribers: Vec<mpsc::Sender<Notice>>,
}

impl WatchCache {
    /// Creates the cache and spawns the task that fills it (needs a Tokio runtime).
    pub fn start(resource: &'static Resource, kv: Arc<dyn Kv>, limits: Limits) -> Arc<WatchCache> {
        assert!(limits.ring_events > 0 && limits.subscriber_buffer > 0, "watch cache limits must be positive");
        let (stop_tx, stop_rx) = oneshot::channel();
        let cache = Arc::new(WatchCache {
            resource,
            limits,
            state: Mutex::new(State::default()),
            ready: watch::channel(false).0,
            _stop: stop_tx,
        });
        tokio::spawn(run(Arc::downgrade(&cache), kv, stop_rx));
        cache
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest revision the cache has seen completely (0 before its first list).
    pub fn revision(&self) -> i64 {
        self.lock().revision
    }

    /// The objects under `prefix` now, waiting (bounded) for a (re)listing cache.
    pub async fn list(&self, prefix: &[u8]) -> Result<Snapshot, CacheError> {
        self.wait_ready().await?;
        let state = self.ready_state()?;
        Ok(Snapshot { objects: objects_under(&state.objects, prefix), revision: state.revision })
    }

    /// The object at store key `key` as the cache has it now; None when the cache does not
    /// have it or is not ready (the caller then asks the store).
    pub fn cached(&self, key: &[u8]) -> Option<Arc<Value>> {
        let state = self.lock();
        if !state.ready {
            return None;
        }
        state.objects.get(key).cloned()
    }

    /// Joins the fan-out at `from`; `prefix` narrows a snapshot start to one namespace.
    pub async fn subscribe(&self, prefix: &[u8], from: WatchFrom) -> Result<Subscription, CacheError> {
        self.wait_ready().await?;
        let mut state = self.ready_state()?;
        state.subscribers.retain(|subscriber| !subscriber.is_closed());
        if state.subscribers.len() >= self.limits.max_subscribers {
            return Err(CacheError::TooManyWatches(self.resource.qualified_plural()));
        }
        let (start, from) = match from {
            WatchFrom::Snapshot => (Start::Snapshot(objects_under(&state.objects, prefix)), state.revision),
            WatchFrom::Revision(requested) if requested < state.window_start => {
                return Err(CacheError::TooOld { requested, oldest: state.window_start });
            }
            WatchFrom::Revision(requested) => {
                let first = state.ring.partition_point(|event| event.revision <= requested);
                (Start::Replay(state.ring.range(first..).cloned().collect()), requested)
            }
        };
        let (tx, notices) = mpsc::channel(self.limits.subscriber_buffer);
        state.subscribers.push(tx);
        Ok(Subscription { start, from, notices })
    }

    async fn wait_ready(&self) -> Result<(), CacheError> {
        let mut ready = self.ready.subscribe();
        match tokio::time::timeout(READY_WAIT, ready.wait_for(|ready| *ready)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CacheError::NotReady(self.resource.qualified_plural())),
        }
    }

    /// The state, if the cache is (still) ready.
    fn ready_state(&self) -> Result<MutexGuard<'_, State>, CacheError> {
        let state = self.lock();
        if state.ready { Ok(state) } else { Err(CacheError::NotReady(self.resource.qualified_plural())) }
    }

    /// A fresh list at `list_revision`, with the store watch starting after `window_start`.
    fn install(&self, objects: BTreeMap<Vec<u8>, Arc<Value>>, list_revision: i64, window_start: i64) {
        let mut state = self.lock();
        *state = State {
            ready: true,
            objects,
            revision: list_revision,
            list_revision,
            window_start,
            ring: VecDeque::new(),
            subscribers: Vec::new(),
        };
        drop(state);
        self.ready.send_replace(true);
    }

    /// The store watch failed: no longer ready, and every subscriber's stream ends.
    fn reset(&self) {
        let mut state = self.lock();
        state.ready = false;
        state.subscribers.clear();
        drop(state);
        self.ready.send_replace(false);
    }

    /// Takes in one batch from the store watch and hands it to every subscriber.
    fn apply(&self, batch: WatchBatch) {
        let mut state = self.lock();
        if batch.events.is_empty() {
            state.revision = state.revision.max(batch.revision);
            let revision = state.revision;
            // A subscriber too busy for a progress notice is not behind on events: keep it.
            state.subscribers.retain(|subscriber| !subscriber.is_closed());
            for subscriber in &state.subscribers {
                let _ = subscriber.try_send(Notice::Progress(revision));
            }
            return;
        }
        let events: Arc<[Arc<CachedEvent>]> = batch.events.into_iter().map(|event| state.record(event)).collect();
        for event in events.iter() {
            state.remember(event.clone(), self.limits.ring_events);
        }
        let notice = Notice::Events(events);
        // Full means behind: dropping the sender ends that stream after what it holds.
        state.subscribers.retain(|subscriber| subscriber.try_send(notice.clone()).is_ok());
    }
}

impl State {
    /// One store event as a cached event; applied to the objects unless it is history.
    fn record(&mut self, event: Event) -> Arc<CachedEvent> {
        let revision = event.kv.mod_revision;
        let history = revision <= self.list_revision;
        let new = match event.kind {
            EventKind::Put => object::decode_from_store(&event.kv.value, revision).map(Arc::new),
            EventKind::Delete => None,
        };
        let from_store =
            || event.prev.as_ref().and_then(|prev| object::decode_from_store(&prev.value, prev.mod_revision));
        let old = match history {
            true => from_store().map(Arc::new),
            false => self.objects.get(&event.kv.key).cloned().or_else(|| from_store().map(Arc::new)),
        };
        if !history {
            match &new {
                Some(object) => self.objects.insert(event.kv.key.clone(), object.clone()),
                None => self.objects.remove(&event.kv.key),
            };
            self.revision = self.revision.max(revision);
        }
        Arc::new(CachedEvent { revision, key: event.kv.key, old, new })
    }

    /// Appends to the ring; the oldest event falls out, and the window starts at it.
    fn remember(&mut self, event: Arc<CachedEvent>, capacity: usize) {
        self.ring.push_back(event);
        while self.ring.len() > capacity {
            if let Some(evicted) = self.ring.pop_front() {
                self.window_start = self.window_start.max(evicted.revision);
            }
        }
    }
}

/// The objects whose keys start with `prefix`, in key order.
fn objects_under(objects: &BTreeMap<Vec<u8>, Arc<Value>>, prefix: &[u8]) -> Vec<Arc<Value>> {
    objects
        .range(prefix.to_vec()..)
        .take_while(|(key, _)| key.starts_with(prefix))
        .map(|(_, object)| object.clone())
        .collect()
}

/// Why a session (one list and the store watch after it) ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error(transparent)]
    Store(#[from] KvError),
    #[error("the store ended the watch")]
    WatchEnded,
    #[error("the cache is no longer used")]
    CacheGone,
}

/// The cache's task: sessions one after another, with back-off between failures, until the
/// cache is dropped.
async fn run(cache: Weak<WatchCache>, kv: Arc<dyn Kv>, mut stop: oneshot::Receiver<()>) {
    let mut backoff = RESTART_BACKOFF_MIN;
    // The store's compaction point as last reported: no watch can start before it.
    let mut compacted = 0;
    loop {
        let started = Instant::now();
        let end = tokio::select! {
            _ = &mut stop => return,
            end = session(&cache, kv.as_ref(), compacted) => end,
        };
        let Some(live) = cache.upgrade() else { return };
        match &end {
            SessionEnd::CacheGone => return,
            SessionEnd::Store(KvError::Compacted { compact_revision }) => compacted = compacted.max(*compact_revision),
            _ => {}
        }
        tracing::info!(resource = %live.resource.qualified_plural(), error = %end, "watch cache restarts");
        live.reset();
        drop(live);
        if started.elapsed() >= HEALTHY_SESSION {
            backoff = RESTART_BACKOFF_MIN;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}

/// Lists, opens the store watch, then applies its batches until it fails. Holds the cache
/// only while changing it, so dropping the last handle ends the task.
async fn session(cache: &Weak<WatchCache>, kv: &dyn Kv, compacted: i64) -> SessionEnd {
    let (prefix, lookback) = match cache.upgrade() {
        Some(live) => (live.resource.prefix(None).into_bytes(), live.limits.lookback_revisions),
        None => return SessionEnd::CacheGone,
    };
    let (objects, list_revision) = match list_all(kv, &prefix).await {
        Ok(listed) => listed,
        Err(error) => return error.into(),
    };
    let planned = watch_start(list_revision, lookback, compacted);
    let start = match checked_start(kv, &prefix, list_revision, lookback, planned).await {
        Ok(start) => start,
        Err(error) => return error.into(),
    };
    let mut stream = match kv.watch(prefix.clone(), Some(prefix_end(&prefix)), start).await {
        Ok(stream) => stream,
        Err(error) => return error.into(),
    };
    match cache.upgrade() {
        Some(live) => live.install(objects, list_revision, start - 1),
        None => return SessionEnd::CacheGone,
    }
    follow(cache, &mut stream).await
}

async fn follow(cache: &Weak<WatchCache>, stream: &mut WatchStream) -> SessionEnd {
    loop {
        let batch = match stream.recv().await {
            None => return SessionEnd::WatchEnded,
            Some(Err(error)) => return error.into(),
            Some(Ok(batch)) => batch,
        };
        match cache.upgrade() {
            Some(live) => live.apply(batch),
            None => return SessionEnd::CacheGone,
        }
    }
}

/// Where the store watch starts after a list at `list_revision`: `lookback` revisions
/// earlier, but not before the compaction point, and never after the list.
fn watch_start(list_revision: i64, lookback: i64, compacted: i64) -> i64 {
    let earliest = (list_revision - lookback.max(0)).max(compacted).max(0) + 1;
    earliest.min(list_revision + 1)
}

/// `planned`, if the store still has that history (one point read at that revision tells);
/// after a compaction, just after the compaction point, or just after the list when the
/// store does not say where that is (etcd's read error does not). Without this, a cache on a
/// compacted store would start, fail its store watch at once and drop its first watchers.
async fn checked_start(
    kv: &dyn Kv,
    prefix: &[u8],
    list_revision: i64,
    lookback: i64,
    planned: i64,
) -> Result<i64, KvError> {
    if planned > list_revision {
        return Ok(planned);
    }
    match kv.range(Range { revision: planned, ..Range::key(prefix) }).await {
        Ok(_) => Ok(planned),
        Err(KvError::Compacted { compact_revision }) if compact_revision > 0 => {
            Ok(watch_start(list_revision, lookback, compact_revision))
        }
        Err(KvError::Compacted { .. }) => Ok(list_revision + 1),
        Err(other) => Err(other),
    }
}

/// Every object under `prefix`, all pages at the first page's revision.
async fn list_all(kv: &dyn Kv, prefix: &[u8]) -> Result<(BTreeMap<Vec<u8>, Arc<Value>>, i64), KvError> {
    let end = prefix_end(prefix);
    let mut objects = BTreeMap::new();
    let mut next = prefix.to_vec();
    let mut revision = 0;
    loop {
        let range = Range { key: next, range_end: Some(end.clone()), limit: LIST_PAGE, revision, ..Range::default() };
        let page = kv.range(range).await?;
        if revision == 0 {
            revision = page.revision;
        }
        let last_key = page.kvs.last().map(|kv| kv.key.clone());
        for kv in page.kvs {
            if let Some(object) = object::decode_from_store(&kv.value, kv.mod_revision) {
                objects.insert(kv.key, Arc::new(object));
            }
        }
        match last_key {
            Some(mut key) if page.more => {
                key.push(0);
                next = key;
            }
            _ => return Ok((objects, revision)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;
    use futures::future::BoxFuture;
    use serde_json::json;

    use super::*;
    use crate::apiserver::resources;
    use crate::kv::{KeyValue, RangeResult, Txn, TxnResult};

    /// An in-memory `Kv`: current keys, the full event history, and watchers it can fail or
    /// send progress to on demand.
    #[derive(Default)]
    struct FakeKv {
        inner: Mutex<FakeState>,
        ranges: AtomicUsize,
        watches: AtomicUsize,
    }

    #[derive(Default)]
    struct FakeState {
        revision: i64,
        compacted: i64,
        data: BTreeMap<Vec<u8>, KeyValue>,
        history: Vec<Event>,
        watchers: Vec<(Vec<u8>, Vec<u8>, mpsc::Sender<Result<WatchBatch, KvError>>)>,
    }

    fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
        key >= start && key < end
    }

    impl FakeKv {
        fn state(&self) -> MutexGuard<'_, FakeState> {
            self.inner.lock().unwrap_or_else(PoisonError::into_inner)
        }

        fn change(&self, key: &[u8], value: Option<Vec<u8>>) -> i64 {
            let mut state = self.state();
            state.revision += 1;
            let revision = state.revision;
            let prev = state.data.get(key).cloned();
            let (kind, kv) = match value {
                Some(value) => {
                    let kv = KeyValue {
                        key: key.to_vec(),
                        value,
                        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: 0,
                    };
                    state.data.insert(key.to_vec(), kv.clone());
                    (EventKind::Put, kv)
                }
                None => {
                    state.data.remove(key);
                    let kv = KeyValue {
                        key: key.to_vec(),
                        value: vec![],
                        create_revision: 0,
                        mod_revision: revision,
                        version: 0,
                        lease: 0,
                    };
                    (EventKind::Delete, kv)
                }
            };
            let event = Event { kind, kv, prev };
            state.history.push(event.clone());
            state.watchers.retain(|(start, end, tx)| {
                if !in_range(key, start, end) {
                    return true;
                }
                tx.try_send(Ok(WatchBatch { revision, events: vec![event.clone()] })).is_ok()
            });
            revision
        }

        fn put_object(&self, key: &str, name: &str) -> i64 {
            let object = json!({ "metadata": { "name": name, "namespace": "default" }, "data": { "n": name } });
            self.change(key.as_bytes(), Some(object.to_string().into_bytes()))
        }

        fn remove(&self, key: &str) -> i64 {
            self.change(key.as_bytes(), None)
        }

        /// Every watcher gets a progress notification at the current revision.
        fn progress(&self) -> i64 {
            let state = self.state();
            for (_, _, tx) in &state.watchers {
                let _ = tx.try_send(Ok(WatchBatch { revision: state.revision, events: vec![] }));
            }
            state.revision
        }

        /// Every watch ends with `error`.
        fn fail_watches(&self, error: KvError) {
            for (_, _, tx) in self.state().watchers.drain(..) {
                let _ = tx.try_send(Err(error.clone()));
            }
        }
    }

    impl Kv for FakeKv {
        fn range(&self, range: Range) -> BoxFuture<'_, Result<RangeResult, KvError>> {
            self.ranges.fetch_add(1, Ordering::SeqCst);
            let state = self.state();
            let result = if range.revision != 0 && range.revision < state.compacted {
                Err(KvError::Compacted { compact_revision: state.compacted })
            } else {
                let end = range.range_end.clone().unwrap_or_default();
                let all: Vec<KeyValue> =
                    state.data.values().filter(|kv| in_range(&kv.key, &range.key, &end)).cloned().collect();
                let limit = if range.limit > 0 { range.limit as usize } else { usize::MAX };
                let more = all.len() > limit;
                let count = all.len() as i64;
                let kvs = all.into_iter().take(limit).collect();
                Ok(RangeResult { kvs, more, count, revision: state.revision })
            };
            async move { result }.boxed()
        }

        fn put(&self, key: Vec<u8>, value: Vec<u8>, _: i64) -> BoxFuture<'_, Result<(i64, Option<KeyValue>), KvError>> {
            let revision = self.change(&key, Some(value));
            async move { Ok((revision, None)) }.boxed()
        }

        fn delete(&self, key: Vec<u8>, _: Option<Vec<u8>>) -> BoxFuture<'_, Result<(i64, Vec<KeyValue>), KvError>> {
            let revision = self.change(&key, None);
            async move { Ok((revision, vec![])) }.boxed()
        }

        fn txn(&self, _: Txn) -> BoxFuture<'_, Result<TxnResult, KvError>> {
            async { Err(KvError::Other("the fake has no txn".into())) }.boxed()
        }

        fn watch(
            &self,
            key: Vec<u8>,
            range_end: Option<Vec<u8>>,
            start_revision: i64,
        ) -> BoxFuture<'_, Result<WatchStream, KvError>> {
            self.watches.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = mpsc::channel(4_096);
            let mut state = self.state();
            let end = range_end.unwrap_or_default();
            if start_revision > 0 && start_revision < state.compacted {
                let _ = tx.try_send(Err(KvError::Compacted { compact_revision: state.compacted }));
            } else {
                for event in state.history.iter().filter(|e| e.kv.mod_revision >= start_revision) {
                    if in_range(&event.kv.key, &key, &end) {
                        let batch = WatchBatch { revision: event.kv.mod_revision, events: vec![event.clone()] };
                        let _ = tx.try_send(Ok(batch));
                    }
                }
                state.watchers.push((key, end, tx));
            }
            async move { Ok(rx) }.boxed()
        }

        fn lease_grant(&self, _: i64) -> BoxFuture<'_, Result<i64, KvError>> {
            async { Err(KvError::Other("the fake has no leases".into())) }.boxed()
        }

        fn lease_keep_alive(&self, _: i64) -> BoxFuture<'_, Result<i64, KvError>> {
            async { Err(KvError::Other("the fake has no leases".into())) }.boxed()
        }

        fn lease_revoke(&self, _: i64) -> BoxFuture<'_, Result<(), KvError>> {
            async { Err(KvError::Other("the fake has no leases".into())) }.boxed()
        }

        fn compact(&self, revision: i64) -> BoxFuture<'_, Result<(), KvError>> {
            self.state().compacted = revision;
            async { Ok(()) }.boxed()
        }
    }

    fn configmaps() -> &'static Resource {
        resources::find("", "v1", "configmaps").expect("configmaps are in the catalog")
    }

    const PREFIX: &[u8] = b"/registry/configmaps/";

    fn small_limits() -> Limits {
        Limits { ring_events: 8, lookback_revisions: 100, subscriber_buffer: 4, max_subscribers: 100 }
    }

    async fn started(kv: &Arc<FakeKv>, limits: Limits) -> Arc<WatchCache> {
        let cache = WatchCache::start(configmaps(), kv.clone(), limits);
        cache.wait_ready().await.expect("the cache lists and becomes ready");
        cache
    }

    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The revisions of everything a subscriber receives within a moment, and whether its
    /// stream ended.
    async fn drain(subscription: &mut Subscription) -> (Vec<i64>, bool) {
        let mut revisions = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(200), subscription.notices.recv()).await {
                Ok(Some(Notice::Events(events))) => revisions.extend(events.iter().map(|e| e.revision)),
                Ok(Some(Notice::Progress(_))) => {}
                Ok(None) => return (revisions, true),
                Err(_) => return (revisions, false),
            }
        }
    }

    fn replayed(start: &Start) -> Vec<i64> {
        match start {
            Start::Replay(events) => events.iter().map(|e| e.revision).collect(),
            Start::Snapshot(_) => panic!("expected a replay"),
        }
    }

    #[tokio::test]
    async fn a_watch_inside_the_window_replays_the_later_events_then_follows() {
        let kv = Arc::new(FakeKv::default());
        let first = kv.put_object("/registry/configmaps/default/a", "a");
        let cache = started(&kv, small_limits()).await;
        let second = kv.put_object("/registry/configmaps/default/b", "b");
        kv.put_object("/registry/secrets/default/s", "s");
        let third = kv.remove("/registry/configmaps/default/a");
        eventually("the cache saw the delete", || cache.revision() == third).await;

        let mut subscription = cache.subscribe(PREFIX, WatchFrom::Revision(first)).await.expect("subscribe");
        assert_eq!(replayed(&subscription.start), vec![second, third], "exactly the changes after {first}");
        let Start::Replay(events) = &subscription.start else { unreachable!() };
        assert!(events[1].new.is_none() && events[1].old.is_some(), "a delete carries the last state");
        let fourth = kv.put_object("/registry/configmaps/default/c", "c");
        assert_eq!(drain(&mut subscription).await, (vec![fourth], false));

        // A watch from before the cache existed still resumes: the store watch looked back.
        let history = cache.subscribe(PREFIX, WatchFrom::Revision(0)).await.expect("subscribe from 0");
        assert_eq!(replayed(&history.start), vec![first, second, third, fourth]);
        let snapshot = cache.list(PREFIX).await.expect("list");
        assert_eq!(snapshot.revision, fourth);
        let names: Vec<&str> = snapshot.objects.iter().filter_map(|o| object::name(o)).collect();
        assert_eq!(names, vec!["b", "c"]);
        assert_eq!(kv.watches.load(Ordering::SeqCst), 1, "one store watch serves every subscriber");
    }

    #[tokio::test]
    async fn a_watch_before_the_window_is_too_old() {
        let kv = Arc::new(FakeKv::default());
        let cache = started(&kv, small_limits()).await;
        let mut last = 0;
        for i in 0..20 {
            last = kv.put_object("/registry/configmaps/default/x", &format!("x{i}"));
        }
        eventually("the cache saw every write", || cache.revision() == last).await;
        let oldest = last - 8;
        match cache.subscribe(PREFIX, WatchFrom::Revision(oldest - 1)).await {
            Err(error) => {
                assert_eq!(error, CacheError::TooOld { requested: oldest - 1, oldest });
                let status = ApiError::from(error);
                assert_eq!((status.code.as_u16(), status.reason), (410, "Expired"));
                assert_eq!(status.message, format!("too old resource version: {} ({oldest})", oldest - 1));
            }
            Ok(_) => panic!("a revision before the ring must be 410"),
        }
        let edge = cache.subscribe(PREFIX, WatchFrom::Revision(oldest)).await.expect("the window's first revision");
        assert_eq!(replayed(&edge.start).len(), 8);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_without_holding_up_the_others() {
        let kv = Arc::new(FakeKv::default());
        let cache = started(&kv, small_limits()).await;
        let mut slow = cache.subscribe(PREFIX, WatchFrom::Snapshot).await.expect("slow");
        let mut fast = cache.subscribe(PREFIX, WatchFrom::Snapshot).await.expect("fast");
        let fast_seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let fast_seen = fast_seen.clone();
            tokio::spawn(async move {
                while let Some(notice) = fast.notices.recv().await {
                    if let Notice::Events(events) = notice {
                        fast_seen
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend(events.iter().map(|e| e.revision));
                    }
                }
            })
        };
        let mut written = Vec::new();
        for i in 0..50 {
            let revision = kv.put_object("/registry/configmaps/default/y", &format!("y{i}"));
            written.push(revision);
            // The fast subscriber keeps up; the slow one reads nothing.
            eventually("the fast subscriber got the event", || {
                fast_seen.lock().unwrap_or_else(PoisonError::into_inner).last() == Some(&revision)
            })
            .await;
        }
        assert_eq!(*fast_seen.lock().unwrap_or_else(PoisonError::into_inner), written, "every event once, in order");
        assert!(!reader.is_finished(), "the fast subscriber is still subscribed");
        let (received, ended) = drain(&mut slow).await;
        assert!(ended, "the slow subscriber's stream ended");
        assert_eq!(received, written[..received.len()].to_vec(), "what it got is a gap-free prefix");
        assert_eq!(received.len(), small_limits().subscriber_buffer, "it was never waited for");
        reader.abort();
    }

    #[tokio::test]
    async fn a_store_watch_error_re_lists_and_drops_subscribers() {
        let kv = Arc::new(FakeKv::default());
        kv.put_object("/registry/configmaps/default/a", "a");
        let cache = started(&kv, small_limits()).await;
        let mut subscription = cache.subscribe(PREFIX, WatchFrom::Snapshot).await.expect("subscribe");
        let ranges_before = kv.ranges.load(Ordering::SeqCst);
        kv.fail_watches(KvError::Unavailable("leader lost".into()));
        let changed_meanwhile = kv.put_object("/registry/configmaps/default/b", "b");
        let (_, ended) = drain(&mut subscription).await;
        assert!(ended, "a subscriber's stream ends when the cache restarts");
        eventually("the cache re-listed", || {
            kv.ranges.load(Ordering::SeqCst) > ranges_before && cache.revision() >= changed_meanwhile
        })
        .await;
        let snapshot = cache.list(PREFIX).await.expect("list after the restart");
        assert_eq!(snapshot.objects.len(), 2, "the re-list saw the change made while the watch was down");
        assert_eq!(kv.watches.load(Ordering::SeqCst), 2);

        // A compaction past the cache's history: it restarts after the compaction point.
        let compact_at = kv.put_object("/registry/configmaps/default/c", "c");
        kv.state().compacted = compact_at;
        kv.fail_watches(KvError::Compacted { compact_revision: compact_at });
        eventually("the cache restarted after compaction", || kv.watches.load(Ordering::SeqCst) >= 3).await;
        let after = cache.subscribe(PREFIX, WatchFrom::Revision(compact_at)).await.expect("subscribe");
        assert!(replayed(&after.start).is_empty());
        assert!(matches!(
            cache.subscribe(PREFIX, WatchFrom::Revision(compact_at - 2)).await,
            Err(CacheError::TooOld { .. })
        ));

        // A cache started on a compacted store looks back only to the compaction point, so
        // its first store watch holds.
        let watches = kv.watches.load(Ordering::SeqCst);
        let fresh = started(&kv, small_limits()).await;
        let from_compaction = fresh.subscribe(PREFIX, WatchFrom::Revision(compact_at)).await.expect("subscribe");
        assert!(replayed(&from_compaction.start).is_empty());
        let next = kv.put_object("/registry/configmaps/default/d", "d");
        eventually("the fresh cache follows", || fresh.revision() == next).await;
        assert_eq!(kv.watches.load(Ordering::SeqCst), watches + 1, "one store watch, no restart");
    }

    #[tokio::test]
    async fn progress_notifications_advance_the_revision() {
        let kv = Arc::new(FakeKv::default());
        let cache = started(&kv, small_limits()).await;
        let mut subscription = cache.subscribe(PREFIX, WatchFrom::Snapshot).await.expect("subscribe");
        let other = kv.put_object("/registry/secrets/default/s", "s");
        assert!(cache.revision() < other, "a change elsewhere is not seen by the watch");
        assert_eq!(kv.progress(), other);
        eventually("progress moved the revision", || cache.revision() == other).await;
        match tokio::time::timeout(Duration::from_secs(5), subscription.notices.recv()).await {
            Ok(Some(Notice::Progress(revision))) => assert_eq!(revision, other),
            _ => panic!("the subscriber hears about the progress"),
        }
        assert_eq!(cache.list(PREFIX).await.expect("list").revision, other);
    }

    #[tokio::test]
    async fn a_snapshot_watch_is_narrowed_to_its_prefix_and_ends_with_the_cache() {
        let kv = Arc::new(FakeKv::default());
        kv.put_object("/registry/configmaps/default/a", "a");
        kv.put_object("/registry/configmaps/other/b", "b");
        let cache = started(&kv, small_limits()).await;
        let subscription =
            cache.subscribe(b"/registry/configmaps/other/", WatchFrom::Snapshot).await.expect("subscribe");
        match &subscription.start {
            Start::Snapshot(objects) => assert_eq!(objects.len(), 1),
            Start::Replay(_) => panic!("expected a snapshot"),
        }
        let mut notices = subscription.notices;
        drop(cache);
        let ended = tokio::time::timeout(Duration::from_secs(5), notices.recv()).await;
        assert!(matches!(ended, Ok(None)), "dropping the cache ends its watchers");
        eventually("the store watch was dropped", || kv.state().watchers.iter().all(|(_, _, tx)| tx.is_closed())).await;
    }

    #[test]
    fn the_store_watch_starts_in_the_past_but_not_before_compaction() {
        assert_eq!(watch_start(100, 10, 0), 91);
        assert_eq!(watch_start(100, 10, 95), 96);
        assert_eq!(watch_start(5, 10, 0), 1);
        assert_eq!(watch_start(100, 10, 200), 101, "never after the list");
        assert_eq!(watch_start(100, 0, 0), 101);
    }
}
