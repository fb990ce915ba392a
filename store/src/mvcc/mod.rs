//! The MVCC engine: etcd's revisioned key-value model on RocksDB.
//!
//! Revision semantics (etcd's, exactly):
//! * The store starts at revision 1. Every write request that changes something gets the next
//!   main revision; each change inside it gets a sub revision 0, 1, 2, ... A write that changes
//!   nothing (a delete matching no key, a read-only txn) does not bump the revision.
//! * A key's `create_revision` is the main revision of the put that created the current
//!   generation, `mod_revision` the last change, `version` counts puts in the generation (a
//!   delete ends the generation; a re-create starts at version 1 again).
//! * Reading at revision R sees, for each key, its newest version at or below R; a tombstone
//!   there means the key does not exist at R.
//! * Compaction at C forgets every version that is not visible at C or later: for each key the
//!   newest version at or below C survives (unless it is a tombstone below C). Reads below C
//!   fail with "compacted". The logical part (the compact revision) takes effect at once; the
//!   physical deletion runs in the background.
//!
//! Layout: [`codec`] (byte layouts), [`engine`] (the RocksDB handle, reads, revision state),
//! [`range`] (RangeRequest evaluation), [`write`] (changes inside one revision),
//! [`latest`] (recently written keys' newest versions, for the applier), [`history`] (changes
//! by revision, for watches), [`compact`] (physical compaction).

pub mod codec;
pub mod compact;
pub mod engine;
pub mod history;
pub mod latest;
pub mod range;
pub mod write;

pub use engine::Engine;

/// etcd's wire KeyValue is the engine's value type: reads hand it out without conversion.
pub type KeyValue = etcd_client::proto::PbKeyValue;
/// etcd's wire Event.
pub type Event = etcd_client::proto::PbEvent;

/// etcd's `mvccpb.Event_EventType`.
pub const EVENT_PUT: i32 = 0;
pub const EVENT_DELETE: i32 = 1;

/// A position in the store's history: main revision (per write request) and sub revision
/// (per change inside that request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Every write request's changes at one main revision, in order: what watchers receive.
#[derive(Clone, Debug, Default)]
pub struct ChangeSet {
    pub revision: i64,
    /// Events with `prev_kv` filled in when the key existed before (stripped per watcher).
    pub events: Vec<Event>,
}
