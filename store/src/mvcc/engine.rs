//! The RocksDB handle and the engine's revision state.
//!
//! Architecture invariant: only the applier (one thread) writes the `kv`, `rev`, `lease` and
//! `lease_keys` keyspaces; the background compactor only deletes versions below the compact
//! revision. Readers never lock: they read at an explicit revision, and MVCC makes every write
//! above that revision invisible to them. That is how a write can sit in RocksDB before it is
//! durable without any reader seeing it: readers use the `committed` revision, which moves
//! only after the WAL is synced.
//!
//! With Raft the same RocksDB also holds the Raft log and vote (`raft_log`, `raft_state`), so
//! one WAL sync makes log entries and applied state durable together. Those two keyspaces are
//! not state-machine data: snapshots and sizes cover only [`STATE_MACHINE_CFS`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions,
};

use super::KeyValue;
use super::codec::{self, TAG_TOMBSTONE};
use crate::error::{Result, StoreError};

pub const CF_KV: &str = "kv";
pub const CF_REV: &str = "rev";
pub const CF_LEASE: &str = "lease";
pub const CF_LEASE_KEYS: &str = "lease_keys";
pub const CF_META: &str = "meta";
/// The Raft log: big-endian u64 index → encoded entry (`raft::log_store`).
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft bookkeeping outside the state machine: vote, committed and purged log ids.
pub const CF_RAFT_STATE: &str = "raft_state";
/// The state machine's keyspaces, in snapshot order: what a snapshot dumps and an install
/// replaces.
pub const STATE_MACHINE_CFS: [&str; 5] = [CF_KV, CF_REV, CF_LEASE, CF_LEASE_KEYS, CF_META];
/// Every keyspace opened.
const ALL_CFS: [&str; 7] = [CF_KV, CF_REV, CF_LEASE, CF_LEASE_KEYS, CF_META, CF_RAFT_LOG, CF_RAFT_STATE];

/// `meta` keys.
pub const META_COMPACT_REVISION: &[u8] = b"compact_revision";
/// The compaction whose physical part has not finished yet (resumed on restart).
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduled_compact_revision";
/// Prefix of the `meta` keys Raft's state machine keeps (applied marker, membership, published
/// members): they travel in Raft snapshots, and `keel store restore` strips them.
pub const META_RAFT_PREFIX: &[u8] = b"raft/";

/// After this many `next()` calls over old versions of one key, seek past them instead.
const NEXT_BEFORE_SEEK: usize = 4;

/// What a scan visitor wants next.
pub enum Visit {
    Continue,
    Stop,
}

pub struct Engine {
    db: Arc<DB>,
    /// Highest revision whose writes are durable; what readers see as "now".
    committed: AtomicI64,
    /// Reads below this revision fail with `Compacted`.
    compacted: AtomicI64,
    /// Odd while a Raft snapshot replaces the state machine's data; bumped at start and end.
    /// Readers that read outside the revision rules (watch catch-up) compare it around a read.
    data_epoch: AtomicU64,
}

impl Engine {
    /// Opens (creating if missing) the engine's RocksDB under `path`.
    pub fn open(path: &Path) -> Result<Engine> {
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.increase_parallelism(2);
        db_options.set_max_background_jobs(2);
        db_options.set_bytes_per_sync(1 << 20);
        // Keep WAL files around for reuse: syncing an already-sized file is one cheap
        // fdatasync instead of a metadata update per group commit.
        db_options.set_recycle_log_file_num(4);
        // Unsynced writes stay in RocksDB's WAL buffer instead of costing a write(2) each: the
        // Raft log's group commit (`flush_wal(true)`) and every synced write write it out in
        // order, so a crash still keeps a prefix of all writes, and nothing is acknowledged
        // before its sync.
        db_options.set_manual_wal_flush(true);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(256 << 20));
        table.set_cache_index_and_filter_blocks(true);
        let descriptors = ALL_CFS.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&table);
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf.set_write_buffer_size(64 << 20);
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&db_options, path, descriptors)?;
        let engine = Engine {
            db: Arc::new(db),
            committed: AtomicI64::new(1),
            compacted: AtomicI64::new(0),
            data_epoch: AtomicU64::new(0),
        };
        engine.reload_revisions()?;
        Ok(engine)
    }

    /// Re-reads the committed and compact revisions from disk: at open, and after a Raft
    /// snapshot replaced the data (the revisions may jump).
    pub fn reload_revisions(&self) -> Result<()> {
        let last = self.last_revision()?;
        let compacted = self.meta_i64(META_COMPACT_REVISION)?.unwrap_or(0);
        self.committed.store(last, Ordering::SeqCst);
        self.compacted.store(compacted, Ordering::SeqCst);
        Ok(())
    }

    /// Marks the start (`true`) or end (`false`) of replacing the state machine's data.
    pub(crate) fn set_replacing(&self, replacing: bool) {
        let odd = self.data_epoch.load(Ordering::Acquire) % 2 == 1;
        if odd != replacing {
            self.data_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Changes whenever a snapshot install starts or ends; odd while one runs. A reader that
    /// sees the same even value before and after its read read consistent data.
    pub fn data_epoch(&self) -> u64 {
        self.data_epoch.load(Ordering::Acquire)
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    pub fn cf(&self, name: &str) -> &ColumnFamily {
        // The column families are created at open, so the handle always exists.
        self.db.cf_handle(name).unwrap_or_else(|| unreachable!("column family {name} is created at open"))
    }

    /// The current (durable, visible) revision.
    pub fn committed_revision(&self) -> i64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Called by the applier after the WAL holding `revision` is synced.
    pub fn publish_committed(&self, revision: i64) {
        debug_assert!(revision >= self.committed_revision());
        self.committed.store(revision, Ordering::Release);
    }

    pub fn compact_revision(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    pub(crate) fn set_compact_revision(&self, revision: i64) {
        self.compacted.store(revision, Ordering::Release);
    }

    /// The revision a read at `requested` (0 = now) uses, against `current`, or etcd's error.
    pub fn check_read_revision(&self, requested: i64, current: i64) -> Result<i64> {
        if requested > current {
            return Err(StoreError::FutureRevision);
        }
        let revision = if requested <= 0 { current } else { requested };
        if revision < self.compact_revision() {
            return Err(StoreError::Compacted);
        }
        Ok(revision)
    }

    /// Highest main revision stored (1 for an empty store, as etcd).
    fn last_revision(&self) -> Result<i64> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_REV));
        iter.seek_to_last();
        iter.status()?;
        match iter.key() {
            Some(raw) => Ok(codec::parse_revision_key(raw)?.main.max(1)),
            None => Ok(1),
        }
    }

    pub fn meta_i64(&self, key: &[u8]) -> Result<Option<i64>> {
        match self.db.get_cf(self.cf(CF_META), key)? {
            Some(raw) => {
                let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt(codec::CorruptRecord { space: "meta", what: "integer is not 8 bytes" })
                })?;
                Ok(Some(i64::from_be_bytes(bytes)))
            }
            None => Ok(None),
        }
    }

    /// The version of `key` visible at `revision`, if the key exists there.
    pub fn get_at(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>> {
        Ok(self.get_version_at(key, revision)?.filter(|(tag, _)| *tag != TAG_TOMBSTONE).map(|(_, kv)| kv))
    }

    /// The newest record of `key` at or below `revision`, tombstones included.
    pub fn get_version_at(&self, key: &[u8], revision: i64) -> Result<Option<(u8, KeyValue)>> {
        self.with_newest_version(key, revision, |_, raw| Ok(codec::decode_record(raw, key.to_vec())?))
    }

    /// Calls `f(escaped key, raw record)` on the newest version of `key` at or below
    /// `revision`, if there is one.
    fn with_newest_version<T>(
        &self,
        key: &[u8],
        revision: i64,
        f: impl FnOnce(&[u8], &[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        let seek = codec::newest_at_key(key, revision);
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_KV));
        iter.seek(&seek);
        iter.status()?;
        let (Some(raw_key), Some(raw_value)) = (iter.key(), iter.value()) else { return Ok(None) };
        let (escaped, _) = codec::split_version_key(raw_key)?;
        if escaped != codec::escaped_part(&seek) {
            return Ok(None);
        }
        f(escaped, raw_value).map(Some)
    }

    /// Visits, in key order, the version of every key in `[key, range_end)` visible at
    /// `revision` (tombstones included, so callers can count or skip them). `range_end` empty
    /// means the single key; `"\0"` means every key >= `key`.
    pub fn scan_visible(
        &self,
        key: &[u8],
        range_end: &[u8],
        revision: i64,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<Visit>,
    ) -> Result<()> {
        if range_end.is_empty() {
            self.with_newest_version(key, revision, |escaped, raw| visit(escaped, raw))?;
            return Ok(());
        }
        let end = (range_end != b"\0").then(|| codec::escape(range_end));
        let mut read_options = ReadOptions::default();
        if let Some(end) = &end {
            read_options.set_iterate_upper_bound(end.clone());
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_KV), read_options);
        iter.seek(codec::seek_key(key));
        let mut current: Vec<u8> = Vec::new();
        let mut done_with_current = false;
        let mut skipped = 0usize;
        while let (Some(raw_key), Some(raw_value)) = (iter.key(), iter.value()) {
            let (escaped, version) = codec::split_version_key(raw_key)?;
            if let Some(end) = &end {
                if escaped >= end.as_slice() {
                    break;
                }
            }
            if escaped != current.as_slice() {
                current.clear();
                current.extend_from_slice(escaped);
                done_with_current = false;
                skipped = 0;
            }
            if done_with_current || version.main > revision {
                skipped += 1;
                if skipped > NEXT_BEFORE_SEEK {
                    let target = if done_with_current {
                        codec::skip_versions_key(&current)
                    } else {
                        seek_within(&current, revision)
                    };
                    iter.seek(&target);
                    skipped = 0;
                } else {
                    iter.next();
                }
                continue;
            }
            done_with_current = true;
            if let Visit::Stop = visit(escaped, raw_value)? {
                return Ok(());
            }
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    /// A full-order iterator over one keyspace, for snapshots and hashing.
    pub fn iter_cf(
        &self,
        name: &str,
    ) -> impl Iterator<Item = std::result::Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>> + '_ {
        self.db.iterator_cf(self.cf(name), IteratorMode::From(&[], Direction::Forward))
    }

    /// Bytes on disk (SST files plus live memtables): etcd's dbSize.
    pub fn size_bytes(&self) -> u64 {
        let property =
            |cf: &ColumnFamily, name: &str| self.db.property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
        STATE_MACHINE_CFS
            .iter()
            .map(|name| {
                let cf = self.cf(name);
                property(cf, "rocksdb.total-sst-files-size") + property(cf, "rocksdb.size-all-mem-tables")
            })
            .sum()
    }

    /// Bytes of live data (estimated live SST data plus memtables): etcd's dbSizeInUse.
    /// Never 0, as etcd's never is (a store always holds its metadata).
    pub fn live_size_bytes(&self) -> u64 {
        let property =
            |cf: &ColumnFamily, name: &str| self.db.property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
        let live: u64 = STATE_MACHINE_CFS
            .iter()
            .map(|name| {
                let cf = self.cf(name);
                property(cf, "rocksdb.estimate-live-data-size") + property(cf, "rocksdb.cur-size-all-mem-tables")
            })
            .sum();
        live.max(1)
    }

    /// Rewrites every keyspace to drop deleted data: etcd's defragment.
    pub fn defragment(&self) -> Result<()> {
        self.db.flush()?;
        for name in STATE_MACHINE_CFS {
            self.db.compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

/// Seek target: the newest version of `escaped` at or below `revision`.
fn seek_within(escaped: &[u8], revision: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len() + 18);
    out.extend_from_slice(escaped);
    out.extend_from_slice(&[0x00, 0x01]);
    out.extend_from_slice(&(!(revision as u64)).to_be_bytes());
    out.extend_from_slice(&(!(i64::MAX as u64)).to_be_bytes());
    out
}
