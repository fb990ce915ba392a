//! Store access for the API server: one [`Kv`] trait with etcd v3 semantics.
//!
//! Two implementations: [`embedded::EmbeddedKv`] calls the store replica inside this process
//! (no gRPC hop), [`remote::RemoteKv`] talks to any etcd v3 endpoint (`--store-endpoints`), so
//! the API server runs unchanged on real etcd 3.4.
//!
//! The types here are plain data, not the wire protos, so the API server never depends on how
//! the store is reached. Revisions are etcd revisions: a list's revision is the store revision
//! the read saw, and a watch from revision `r` delivers every change with `mod_revision >= r`.

pub mod embedded;
pub mod remote;
mod wire;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// Events buffered per watch stream before the producer waits (back-pressure toward the store).
pub const WATCH_BUFFER: usize = 256;

/// One key as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// A range read: one key (`range_end` None) or `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub key: Vec<u8>,
    pub range_end: Option<Vec<u8>>,
    /// At most this many keys (0: no limit).
    pub limit: i64,
    /// Read at this revision (0: the current one).
    pub revision: i64,
    /// Only count the keys; `kvs` stays empty.
    pub count_only: bool,
    /// Local read without a linearizability barrier.
    pub serializable: bool,
}

impl Range {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Range {
        Range { key: prefix.to_vec(), range_end: Some(prefix_end(prefix)), ..Range::default() }
    }

    pub fn key(key: &[u8]) -> Range {
        Range { key: key.to_vec(), ..Range::default() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` returned.
    pub more: bool,
    /// How many keys matched in all.
    pub count: i64,
    /// The store's revision when the read was served (the header revision).
    pub revision: i64,
}

/// What a txn compares on one key. A missing key has version, create and mod revision 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Value(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// The key's mod revision equals `revision` (0: the key does not exist).
    pub fn mod_revision(key: &[u8], revision: i64) -> Compare {
        Compare { key: key.to_vec(), op: CompareOp::Equal, target: CompareTarget::ModRevision(revision) }
    }
}

/// One operation inside a txn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// Deletes one key (`range_end` None) or `[key, range_end)`.
    Delete {
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
    },
    Get(Range),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

/// The outcome of one [`TxnOp`], in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// The previous value, if the key existed.
    Put {
        prev: Option<KeyValue>,
    },
    /// How many keys were deleted, and their previous values.
    Delete {
        deleted: i64,
        prev: Vec<KeyValue>,
    },
    Get(RangeResult),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The store revision after the txn (the txn's own revision if it wrote).
    pub revision: i64,
    pub results: Vec<OpResult>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change. For a delete, `kv` holds the key and the deletion's `mod_revision`; `prev` is
/// the value before the change (always asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

/// What a watch stream yields: the changes of one or more revisions in revision order, or
/// (with no events) a progress notification saying the watch has seen everything up to
/// `revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// A running watch. It ends (the receiver yields None, or an error) when the store side ends;
/// dropping it cancels the watch in the store.
pub type WatchStream = mpsc::Receiver<Result<WatchBatch, KvError>>;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The revision asked for is older than the store's compaction point. `compact_revision`
    /// is that point, or 0 when the store did not say (etcd's read error does not; its watch
    /// cancellation does).
    #[error("required revision has been compacted (compact revision {compact_revision})")]
    Compacted { compact_revision: i64 },
    #[error("required revision is a future revision")]
    FutureRevision,
    #[error("lease not found")]
    LeaseNotFound,
    #[error("request is too large")]
    TooLarge,
    /// The store cannot answer now (no leader, member stopping, endpoint unreachable);
    /// worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store: {0}")]
    Other(String),
}

/// Store access with etcd semantics. Object-safe: the API server holds an `Arc<dyn Kv>`.
pub trait Kv: Send + Sync + 'static {
    /// A linearizable (unless `range.serializable`) read.
    fn range(&self, range: Range) -> BoxFuture<'_, Result<RangeResult, KvError>>;

    /// Puts one key; returns the new revision and the previous value.
    fn put(&self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> BoxFuture<'_, Result<(i64, Option<KeyValue>), KvError>>;

    /// Deletes one key or `[key, range_end)`; returns the revision after the delete and the
    /// deleted values.
    fn delete(&self, key: Vec<u8>, range_end: Option<Vec<u8>>) -> BoxFuture<'_, Result<(i64, Vec<KeyValue>), KvError>>;

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult, KvError>>;

    /// Watches `[key, range_end)` (one key when None) from `start_revision` (0: from now on).
    /// Delivers every change exactly once, in revision order, with its previous value, and
    /// progress notifications when idle. A compacted start revision ends the stream with
    /// [`KvError::Compacted`].
    fn watch(
        &self,
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
        start_revision: i64,
    ) -> BoxFuture<'_, Result<WatchStream, KvError>>;

    /// Grants a lease of `ttl_seconds`; returns its id.
    fn lease_grant(&self, ttl_seconds: i64) -> BoxFuture<'_, Result<i64, KvError>>;

    /// Renews a lease once; returns the TTL it now has.
    fn lease_keep_alive(&self, id: i64) -> BoxFuture<'_, Result<i64, KvError>>;

    fn lease_revoke(&self, id: i64) -> BoxFuture<'_, Result<(), KvError>>;

    /// Compacts history up to `revision`.
    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<(), KvError>>;
}

/// The smallest key greater than every key starting with `prefix` (etcd's prefix range end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): the whole keyspace, etcd's "\0".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
