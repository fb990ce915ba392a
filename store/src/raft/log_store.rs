//! The Raft log and vote, in the engine's RocksDB (`raft_log`, `raft_state` keyspaces).
//!
//! Layout: `raft_log` maps the big-endian u64 index to the postcard-encoded entry;
//! `raft_state` holds the vote, the committed log id and the last purged log id.
//!
//! Durability: a vote and a truncation are written with a WAL sync before the call returns
//! (openraft relies on both being on disk). Appends use group commit: `append` writes its batch
//! without a sync (the entries are readable at once) and hands the completion callback to the
//! `raft-log-sync` thread, which syncs the WAL once for every callback queued so far and only
//! then completes them. One WAL serves the log and the state machine, so a sync also makes every
//! earlier state-machine write durable, and a crash keeps a prefix of all writes.
//!
//! The committed log id is not a write of its own: openraft reports it once per entry on every
//! member, and losing the newest one in a crash is allowed (openraft then re-applies less on
//! start and learns the commit from the leader). It waits in memory and rides in the next
//! write this store makes (an append, a vote, a truncation, a purge), or is written when the
//! last handle is dropped.
//!
//! Reads of recent entries come from [`LogTail`], which every append, truncation and purge
//! updates right after RocksDB.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use rocksdb::{ReadOptions, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::mvcc::Engine;
use crate::mvcc::engine::{CF_RAFT_LOG, CF_RAFT_STATE};
use crate::raft::log_tail::LogTail;
use crate::raft::storage_error::{RaftStorageError, Result, decode, encode, encode_sized};
use crate::raft::types::{Entry, LogId, TypeConfig, Vote, entry_size_hint};

/// `raft_state` keys.
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Appends waiting for their WAL sync; a full queue makes `append` wait (back-pressure).
const FLUSH_QUEUE: usize = 1_024;

/// The Raft log store. Cheap to clone; clones share the database and the sync thread, and a
/// clone is the log reader.
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<Engine>,
    flusher: Arc<Flusher>,
    tail: Arc<Mutex<LogTail>>,
}

/// The newest committed log id openraft reported that is not written yet.
#[derive(Default)]
struct UnwrittenCommitted(Mutex<Option<Option<LogId>>>);

impl UnwrittenCommitted {
    fn lock(&self) -> MutexGuard<'_, Option<Option<LogId>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves the unwritten id, if any, into `batch`.
    fn write_into(&self, engine: &Engine, batch: &mut WriteBatch) -> Result<()> {
        if let Some(committed) = self.lock().take() {
            batch.put_cf(engine.cf(CF_RAFT_STATE), KEY_COMMITTED, encode("committed log id", &committed)?);
        }
        Ok(())
    }
}

/// What every clone of the store shares: the `raft-log-sync` thread and its queue, and the
/// committed log id not written yet. Dropping the last handle writes that id, closes the queue
/// and joins the thread, so the thread's hold on the database ends before the drop returns (a
/// database closed by a detached thread while the process exits aborts inside RocksDB).
struct Flusher {
    tx: Option<mpsc::Sender<IOFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    engine: Arc<Engine>,
    committed: UnwrittenCommitted,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let mut batch = WriteBatch::default();
        let written = self.committed.write_into(&self.engine, &mut batch).and_then(|()| {
            if !batch.is_empty() {
                self.engine.db().write_opt(batch, &write_options(false))?;
            }
            Ok(())
        });
        if let Err(error) = written {
            tracing::warn!(%error, "writing the committed log id at shutdown failed");
        }
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            // The thread only finishes the sync in progress; a panic there was already logged.
            let _ = thread.join();
        }
    }
}

impl LogStore {
    /// A log store over `engine`'s database (the same one the state machine applies to).
    /// Starts the `raft-log-sync` thread, which ends when the last clone is dropped.
    pub fn new(engine: Arc<Engine>) -> Result<LogStore> {
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_QUEUE);
        let flusher_engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || run_flusher(&flusher_engine, flush_rx))
            .map_err(|e| RaftStorageError::Thread(e.to_string()))?;
        let flusher = Arc::new(Flusher {
            tx: Some(flush_tx),
            thread: Some(thread),
            engine: engine.clone(),
            committed: UnwrittenCommitted::default(),
        });
        Ok(LogStore { engine, flusher, tail: Arc::default() })
    }

    /// The tail, even if a thread panicked holding it: every change to it is a whole step
    /// (`LogTail` never leaves its entries non-consecutive), so it is still consistent.
    fn tail(&self) -> MutexGuard<'_, LogTail> {
        self.tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_state<T: DeserializeOwned>(&self, key: &[u8], what: &'static str) -> Result<Option<T>> {
        match self.engine.db().get_cf(self.engine.cf(CF_RAFT_STATE), key)? {
            Some(raw) => decode(what, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn write_state<T: Serialize>(&self, key: &[u8], what: &'static str, value: &T, sync: bool) -> Result<()> {
        let mut batch = self.new_batch()?;
        batch.put_cf(self.engine.cf(CF_RAFT_STATE), key, encode(what, value)?);
        self.engine.db().write_opt(batch, &write_options(sync))?;
        Ok(())
    }

    /// A write batch that already carries the unwritten committed log id, if any.
    fn new_batch(&self) -> Result<WriteBatch> {
        let mut batch = WriteBatch::default();
        self.flusher.committed.write_into(&self.engine, &mut batch)?;
        Ok(batch)
    }

    /// The log id of the newest entry present, if any.
    fn last_present_log_id(&self) -> Result<Option<LogId>> {
        let mut iter = self.engine.db().raw_iterator_cf(self.engine.cf(CF_RAFT_LOG));
        iter.seek_to_last();
        iter.status()?;
        match iter.value() {
            Some(raw) => Ok(Some(decode::<Entry>("log entry", raw)?.log_id)),
            None => Ok(None),
        }
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.read_state(KEY_LAST_PURGED, "last purged log id")?;
        let last_log_id = match self.last_present_log_id()? {
            Some(last) => Some(last),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    /// Entries with index in `[start, end)` (`end` None: to the last), in index order.
    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>> {
        if let Some(entries) = self.tail().get(start, end) {
            return Ok(entries);
        }
        let mut options = ReadOptions::default();
        if let Some(end) = end {
            options.set_iterate_upper_bound(end.to_be_bytes().to_vec());
        }
        let mut iter = self.engine.db().raw_iterator_cf_opt(self.engine.cf(CF_RAFT_LOG), options);
        iter.seek(start.to_be_bytes());
        let mut entries = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if key.len() != 8 {
                return Err(RaftStorageError::Corrupt("raft log key is not 8 bytes"));
            }
            entries.push(decode("log entry", value)?);
            iter.next();
        }
        iter.status()?;
        Ok(entries)
    }

    /// Writes `entries` in one batch, without a WAL sync, then keeps them in the tail.
    fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        let cf = self.engine.cf(CF_RAFT_LOG);
        let mut batch = self.new_batch()?;
        let mut written = Vec::new();
        for entry in entries {
            let encoded = encode_sized("log entry", &entry, entry_size_hint(&entry))?;
            batch.put_cf(cf, entry.log_id.index.to_be_bytes(), &encoded);
            written.push((entry, encoded.len()));
        }
        self.engine.db().write_opt(batch, &write_options(false))?;
        let mut tail = self.tail();
        for (entry, size) in written {
            tail.push(entry, size);
        }
        Ok(())
    }

    /// Deletes every entry after `last` (all of them for None), with a WAL sync.
    fn truncate(&self, last: Option<&LogId>) -> Result<()> {
        let from = last.map_or(0, |id| id.index.saturating_add(1));
        let mut batch = self.new_batch()?;
        batch.delete_range_cf(self.engine.cf(CF_RAFT_LOG), from.to_be_bytes(), u64::MAX.to_be_bytes());
        self.engine.db().write_opt(batch, &write_options(true))?;
        self.tail().truncate_after(last.map(|id| id.index));
        Ok(())
    }

    /// Deletes every entry up to and including `upto` and records it as the last purged, in
    /// one batch. No sync: a purge lost in a crash leaves entries that are simply purged again.
    fn purge_upto(&self, upto: &LogId) -> Result<()> {
        let mut batch = self.new_batch()?;
        let end = upto.index.saturating_add(1);
        batch.delete_range_cf(self.engine.cf(CF_RAFT_LOG), 0u64.to_be_bytes(), end.to_be_bytes());
        batch.put_cf(self.engine.cf(CF_RAFT_STATE), KEY_LAST_PURGED, encode("last purged log id", upto)?);
        self.engine.db().write_opt(batch, &write_options(false))?;
        self.tail().purge_upto(upto.index);
        Ok(())
    }
}

fn write_options(sync: bool) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    options
}

/// `[start, end)` of a range of log indexes; `end` None means unbounded.
fn index_bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(start) => *start,
        Bound::Excluded(start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.checked_add(1),
        Bound::Excluded(end) => Some(*end),
        Bound::Unbounded => None,
    };
    (start, end)
}

/// The group-commit loop: one WAL sync completes every append queued before it.
fn run_flusher(engine: &Engine, mut rx: mpsc::Receiver<IOFlushed<TypeConfig>>) {
    let mut group = Vec::with_capacity(FLUSH_QUEUE);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < FLUSH_QUEUE {
            match rx.try_recv() {
                Ok(callback) => group.push(callback),
                Err(_) => break,
            }
        }
        let synced = engine.db().flush_wal(true);
        if let Err(error) = &synced {
            tracing::error!(%error, "syncing the Raft log failed");
        }
        for callback in group.drain(..) {
            let result = match &synced {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::other(format!("raft log sync: {error}"))),
            };
            callback.io_completed(result);
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry>, io::Error> {
        let (start, end) = index_bounds(&range);
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        Ok(self.entries(start, end)?)
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, io::Error> {
        Ok(self.read_state(KEY_VOTE, "vote")?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<TypeConfig>, io::Error> {
        Ok(self.log_state()?)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), io::Error> {
        Ok(self.write_state(KEY_VOTE, "vote", vote, true)?)
    }

    /// Not written here: it rides in this store's next write (module docs). A committed id lost
    /// in a crash is an older one, which openraft handles.
    async fn save_committed(&mut self, committed: Option<LogId>) -> std::result::Result<(), io::Error> {
        *self.flusher.committed.lock() = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, io::Error> {
        if let Some(unwritten) = *self.flusher.committed.lock() {
            return Ok(unwritten);
        }
        Ok(self.read_state::<Option<LogId>>(KEY_COMMITTED, "committed log id")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> std::result::Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.write_entries(entries)?;
        let gone = || io::Error::other("raft log sync thread is gone; entries are not durable");
        let tx = self.flusher.tx.as_ref().ok_or_else(gone)?;
        tx.send(callback).await.map_err(|_| gone())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> std::result::Result<(), io::Error> {
        Ok(self.truncate(last_log_id.as_ref())?)
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), io::Error> {
        Ok(self.purge_upto(&log_id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_bounds_cover_every_range_form() {
        assert_eq!(index_bounds(&(3..7)), (3, Some(7)));
        assert_eq!(index_bounds(&(3..=7)), (3, Some(8)));
        assert_eq!(index_bounds(&(3..)), (3, None));
        assert_eq!(index_bounds(&(..7)), (0, Some(7)));
        assert_eq!(index_bounds(&(..=u64::MAX)), (0, None));
        assert_eq!(index_bounds(&(Bound::Excluded(3), Bound::Unbounded)), (4, None));
    }
}
