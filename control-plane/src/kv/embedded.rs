//! The store replica inside this process: requests go straight to
//! [`keel_store::store::Store`], with no gRPC hop and no serialization.
//!
//! Every request is checked exactly as the store's gRPC layer checks it (the request size
//! limit, then `keel_store::grpc::validate`), so what the embedded store accepts is what
//! `keel store` accepts. Writes are proposals through Raft like any client's; linearizable
//! reads wait at the same read barrier. A watch is a watcher in the store's hub with its own
//! bounded buffer; a task translates what the hub sends and ends (cancelling the watcher)
//! when the consumer drops its [`WatchStream`].

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use keel_store::apply::{self, Applied, Proposal};
use keel_store::error::StoreError;
use keel_store::grpc::{check_size, validate};
use keel_store::raft::lease_calls::LeaseCall;
use keel_store::store::Store;
use keel_store::watch::filter::EventFilter;
use keel_store::watch::hub::{Registration, WatcherKey};
use keel_store::watch::{Outgoing, WatchParams};
use tokio::sync::mpsc;

use super::wire::{self, WatchMessage};
use super::{KeyValue, Kv, KvError, Range, RangeResult, Txn, TxnResult, WATCH_BUFFER, WatchBatch, WatchStream};

/// [`Kv`] on the store member running in this process.
#[derive(Clone)]
pub struct EmbeddedKv {
    /// The member's state, shared with its gRPC services.
    store: Arc<Store>,
}

impl EmbeddedKv {
    pub fn new(store: Arc<Store>) -> EmbeddedKv {
        EmbeddedKv { store }
    }

    /// The member this talks to (tests look at its watch hub).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The store's error as the API server sees it.
    fn error(&self, error: StoreError) -> KvError {
        match error {
            StoreError::Compacted => KvError::Compacted { compact_revision: self.store.engine.compact_revision() },
            StoreError::FutureRevision => KvError::FutureRevision,
            StoreError::LeaseNotFound => KvError::LeaseNotFound,
            StoreError::RequestTooLarge => KvError::TooLarge,
            StoreError::NoLeader
            | StoreError::LeaderChanged
            | StoreError::Stopped
            | StoreError::Timeout
            | StoreError::TooManyRequests => KvError::Unavailable(error.to_string()),
            other => KvError::Other(other.to_string()),
        }
    }

    /// The store's request size limit (`--max-request-bytes`), as its gRPC layer applies it.
    fn check_size(&self, request: &impl prost::Message) -> Result<(), KvError> {
        check_size(request, self.store.limits.max_request_bytes).map_err(|e| self.error(e))
    }

    async fn propose(&self, proposal: Proposal) -> Result<Applied, KvError> {
        self.store.propose(proposal).await.map_err(|e| self.error(e))
    }

    async fn range_now(&self, range: Range) -> Result<RangeResult, KvError> {
        let request = wire::range_request(&range);
        self.check_size(&request)?;
        validate::range(&request).map_err(|e| self.error(e))?;
        let response = self.store.range(&request).await.map_err(|e| self.error(e))?;
        Ok(wire::range_result(response))
    }

    async fn put_now(&self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> Result<(i64, Option<KeyValue>), KvError> {
        let request = wire::put_request(key, value, lease);
        self.check_size(&request)?;
        validate::put(&request).map_err(|e| self.error(e))?;
        match self.propose(Proposal::Put(request)).await? {
            Applied::Put(response) => Ok((wire::revision(&response.header), response.prev_kv.map(wire::key_value))),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_now(&self, key: Vec<u8>, range_end: Option<Vec<u8>>) -> Result<(i64, Vec<KeyValue>), KvError> {
        let request = wire::delete_request(key, range_end);
        self.check_size(&request)?;
        validate::delete_range(&request).map_err(|e| self.error(e))?;
        match self.propose(Proposal::DeleteRange(request)).await? {
            Applied::DeleteRange(response) => {
                Ok((wire::revision(&response.header), response.prev_kvs.into_iter().map(wire::key_value).collect()))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn_now(&self, txn: Txn) -> Result<TxnResult, KvError> {
        let request = wire::txn_request(&txn);
        self.check_size(&request)?;
        validate::txn(&request, self.store.limits.max_txn_ops).map_err(|e| self.error(e))?;
        if !apply::is_write(&request) {
            let response = self.store.read_only_txn(&request).await.map_err(|e| self.error(e))?;
            return wire::txn_result(response);
        }
        match self.propose(Proposal::Txn(request)).await? {
            Applied::Txn(response) => wire::txn_result(response),
            other => Err(unexpected(other)),
        }
    }

    fn watch_now(&self, key: Vec<u8>, range_end: Option<Vec<u8>>, start_revision: i64) -> Result<WatchStream, KvError> {
        let range_end = range_end.unwrap_or_default();
        // The gRPC layer refuses the same (etcd's "watcher range is empty").
        if !range_end.is_empty() && range_end != [0] && key >= range_end {
            return Err(KvError::Other("mvcc: watcher range is empty".into()));
        }
        let filter = EventFilter { key, range_end, no_put: false, no_delete: false, prev_kv: true };
        let params = WatchParams { filter, start_revision, progress_notify: true, fragment: false, watch_id: 0 };
        let (from_hub_tx, from_hub) = mpsc::channel(WATCH_BUFFER);
        let (to_consumer, stream) = mpsc::channel(WATCH_BUFFER);
        match self.store.hub.register(params, from_hub_tx) {
            Registration::Registered { key, .. } => {
                self.store.hub.announced(key);
                tokio::spawn(forward(self.store.clone(), key, from_hub, to_consumer));
            }
            Registration::Compacted { compact_revision, .. } => {
                // A fresh channel has room for one item.
                let _ = to_consumer.try_send(Err(KvError::Compacted { compact_revision }));
            }
        }
        Ok(stream)
    }

    async fn lease_grant_now(&self, ttl_seconds: i64) -> Result<i64, KvError> {
        let ttl_seconds = self.store.lessor.effective_ttl(ttl_seconds).map_err(|e| self.error(e))?;
        let id = self.store.unused_lease_id();
        match self.propose(Proposal::LeaseGrant { id, ttl_seconds }).await? {
            Applied::LeaseGrant { id, .. } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_keep_alive_now(&self, id: i64) -> Result<i64, KvError> {
        match self.store.lease_call(LeaseCall::KeepAlive, id).await.map_err(|e| self.error(e))? {
            Some(ttl) => Ok(ttl.remaining_seconds),
            None => Err(KvError::LeaseNotFound),
        }
    }

    async fn lease_revoke_now(&self, id: i64) -> Result<(), KvError> {
        match self.propose(Proposal::LeaseRevoke { id }).await? {
            Applied::LeaseRevoke { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn compact_now(&self, revision: i64) -> Result<(), KvError> {
        match self.propose(Proposal::Compact { revision }).await? {
            Applied::Compact { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// The store answered a proposal with another kind of outcome: a bug in the store.
fn unexpected(applied: Applied) -> KvError {
    KvError::Other(format!("keel: unexpected apply outcome {applied:?}"))
}

/// Moves one watcher's responses from the hub to the consumer until either side ends, then
/// removes the watcher from the hub. Waiting on a slow consumer is fine: the hub never waits
/// on this buffer, it drops the watcher to catch-up from history instead.
async fn forward(
    store: Arc<Store>,
    key: WatcherKey,
    mut from_hub: mpsc::Receiver<Outgoing>,
    to_consumer: mpsc::Sender<Result<WatchBatch, KvError>>,
) {
    loop {
        let outgoing = tokio::select! {
            _ = to_consumer.closed() => break,
            next = from_hub.recv() => match next {
                Some(outgoing) => outgoing,
                None => break,
            },
        };
        let item = match wire::watch_message(outgoing.response) {
            Ok(WatchMessage::Batch(batch)) => Ok(batch),
            Ok(WatchMessage::Created) => continue,
            Ok(WatchMessage::Canceled { compact_revision, reason }) => Err(canceled(compact_revision, reason)),
            Err(error) => Err(error),
        };
        let last = item.is_err();
        if to_consumer.send(item).await.is_err() || last {
            break;
        }
    }
    store.hub.cancel(key);
}

/// Why the hub ended a watch: it fell behind a compaction (the only reason it cancels one).
fn canceled(compact_revision: i64, reason: String) -> KvError {
    if compact_revision != 0 {
        return KvError::Compacted { compact_revision };
    }
    KvError::Other(format!("watch canceled by the store: {reason}"))
}

impl Kv for EmbeddedKv {
    fn range(&self, range: Range) -> BoxFuture<'_, Result<RangeResult, KvError>> {
        self.range_now(range).boxed()
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> BoxFuture<'_, Result<(i64, Option<KeyValue>), KvError>> {
        self.put_now(key, value, lease).boxed()
    }

    fn delete(&self, key: Vec<u8>, range_end: Option<Vec<u8>>) -> BoxFuture<'_, Result<(i64, Vec<KeyValue>), KvError>> {
        self.delete_now(key, range_end).boxed()
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult, KvError>> {
        self.txn_now(txn).boxed()
    }

    fn watch(
        &self,
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
        start_revision: i64,
    ) -> BoxFuture<'_, Result<WatchStream, KvError>> {
        async move { self.watch_now(key, range_end, start_revision) }.boxed()
    }

    fn lease_grant(&self, ttl_seconds: i64) -> BoxFuture<'_, Result<i64, KvError>> {
        self.lease_grant_now(ttl_seconds).boxed()
    }

    fn lease_keep_alive(&self, id: i64) -> BoxFuture<'_, Result<i64, KvError>> {
        self.lease_keep_alive_now(id).boxed()
    }

    fn lease_revoke(&self, id: i64) -> BoxFuture<'_, Result<(), KvError>> {
        self.lease_revoke_now(id).boxed()
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<(), KvError>> {
        self.compact_now(revision).boxed()
    }
}
