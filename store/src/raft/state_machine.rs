//! The Raft state machine: applies committed entries to the MVCC engine through the
//! deterministic [`Applier`], and builds and installs snapshots.
//!
//! Crash consistency: every RocksDB batch the state machine writes carries the applied marker
//! ([`AppliedMarker`]) describing the state *after* that batch, so after a crash the engine and
//! the marker agree exactly, even in the middle of an entry that batches several write
//! requests. openraft then re-applies from the last complete entry, and the requests of a
//! partly applied entry that are already in the engine are skipped (deterministic apply makes
//! the rest come out the same). Writes are not synced: the Raft log is the durable record, and
//! one WAL keeps the engine a prefix of what was applied.
//!
//! After each apply call the applied revisions become visible (`publish_committed`), their
//! watch events go out, compactions are handed to the compactor, and only then are the
//! clients answered, so a client can read its write on this member once it has its answer.
//!
//! Installing a snapshot replaces the state machine's keyspaces in place, guarded by a durable
//! "installing" record in `raft_state`: a crash in the middle reinstalls on the next open.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::apply::{Applier, Proposal, PutRun};
use crate::error::StoreError;
use crate::lease::Lessor;
use crate::mvcc::engine::{CF_META, CF_RAFT_STATE, META_SCHEDULED_COMPACT, STATE_MACHINE_CFS};
use crate::mvcc::{ChangeSet, Engine};
use crate::raft::applied::{self, AppliedMarker, PublishedMember};
use crate::raft::snapshot_store::{Snapshot, SnapshotBuilder, SnapshotStore};
use crate::raft::storage_error::{RaftStorageError, Result, decode, encode};
use crate::raft::types::{
    Command, CommandOutcome, Entry, LogId, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::snapshot;
use crate::watch::WatchHub;

/// `raft_state` key of an install in progress (an [`InstallRecord`]).
const KEY_INSTALLING: &[u8] = b"installing";
/// Entries applied before their effects are published and their clients answered, at most:
/// bounds what one apply call holds in memory.
const PUBLISH_EVERY: usize = 256;
/// Deletes per batch while wiping the state machine's keyspaces.
const WIPE_BATCH: usize = 10_000;

/// The durable note of an install in progress: which snapshot replaces the state machine.
#[derive(Debug, Serialize, Deserialize)]
struct InstallRecord {
    meta: SnapshotMeta,
    file_name: String,
    size_bytes: u64,
}

/// What applied entries produced that is not yet published or answered.
#[derive(Default)]
struct Pending {
    entries: usize,
    changes: Vec<ChangeSet>,
    compact_to: Vec<i64>,
    responses: Vec<(ApplyResponder<TypeConfig>, CommandOutcome)>,
}

/// The state machine of one member: the engine plus what Raft needs to know about it.
pub struct StateMachine {
    engine: Arc<Engine>,
    lessor: Arc<Lessor>,
    hub: Arc<WatchHub>,
    compactions: std::sync::mpsc::Sender<i64>,
    applier: Applier,
    /// What the engine's applied marker says (kept in step with every write).
    marker: AppliedMarker,
    membership: StoredMembership,
    snapshots: Arc<SnapshotStore>,
    /// The log index of the last entry whose effects are published (readers wait on it).
    applied_index: tokio::sync::watch::Sender<u64>,
}

impl StateMachine {
    /// Opens the state machine over `engine` (opened by the caller, shared with the log store
    /// and readers). `lessor` and `hub` are the member's lease table and watch hub; the lease
    /// table is reloaded from the engine here. `compactions` receives each compaction whose
    /// physical part should run (the compactor's channel). Raft snapshots live in
    /// `snapshot_dir` (created if missing).
    ///
    /// If a snapshot install was interrupted by a crash, it is redone before this returns.
    pub fn open(
        engine: Arc<Engine>,
        lessor: Arc<Lessor>,
        hub: Arc<WatchHub>,
        compactions: std::sync::mpsc::Sender<i64>,
        snapshot_dir: PathBuf,
    ) -> Result<StateMachine> {
        let snapshots = Arc::new(SnapshotStore::open(snapshot_dir)?);
        if let Some(record) = read_install_record(&engine)? {
            tracing::warn!(snapshot = %record.file_name, "redoing a Raft snapshot install a crash interrupted");
            finish_install(&engine, &snapshots, &record)?;
        }
        snapshots.remove_strays()?;
        lessor.reload(&engine)?;
        let marker = applied::read_marker(&engine)?;
        let membership = applied::read_membership(&engine)?;
        let applier = Applier::new(engine.clone(), lessor.clone());
        let (applied_index, _) = tokio::sync::watch::channel(marker.last_complete.map_or(0, |id| id.index));
        Ok(StateMachine { engine, lessor, hub, compactions, applier, marker, membership, snapshots, applied_index })
    }

    /// The last completely applied log id and the last applied membership.
    pub fn applied(&self) -> (Option<LogId>, StoredMembership) {
        (self.marker.last_complete, self.membership.clone())
    }

    /// Follows the log index of the last entry whose effects are visible to readers: it moves
    /// after the engine's committed revision does, before the entry's client is answered.
    pub fn applied_index(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// The snapshot directory's current snapshot, if any.
    pub fn current_snapshot(&self) -> Option<Snapshot> {
        self.snapshots.current()
    }

    /// Applies one entry; its effects go to `pending`. Returns its answer.
    fn apply_entry(&mut self, entry: &Entry, pending: &mut Pending) -> Result<CommandOutcome> {
        let log_id = &entry.log_id;
        if self.marker.last_complete.as_ref() >= Some(log_id) {
            tracing::warn!(%log_id, "skipping an entry that is already applied");
            return Ok(CommandOutcome::default());
        }
        if let Some((partial, _)) = &self.marker.partial
            && partial != log_id
        {
            return Err(RaftStorageError::Corrupt("the partly applied entry is not the next one applied"));
        }
        match &entry.payload {
            EntryPayload::Blank => self.finish_entry(log_id, |_, _| Ok(())),
            EntryPayload::Membership(membership) => {
                let stored = StoredMembership::new(Some(*log_id), membership.clone());
                self.finish_entry(log_id, |engine, batch| applied::put_membership(engine, batch, &stored))?;
                self.membership = stored;
                Ok(CommandOutcome::default())
            }
            EntryPayload::Normal(Command::PublishMember { id, name, client_urls }) => {
                let member = PublishedMember { name: name.clone(), client_urls: client_urls.clone() };
                self.finish_entry(log_id, |engine, batch| applied::put_member(engine, batch, *id, &member))
            }
            EntryPayload::Normal(Command::Requests(batch)) => self.apply_requests(log_id, batch.proposals(), pending),
        }
    }

    /// Applies an entry's write requests in order, skipping those a crash left applied.
    ///
    /// Runs of puts share one write (`PutRun`); every write carries the marker of the state
    /// after its last request.
    fn apply_requests(
        &mut self,
        log_id: &LogId,
        proposals: &[Proposal],
        pending: &mut Pending,
    ) -> Result<CommandOutcome> {
        let done = self.marker.requests_done(log_id) as usize;
        let mut outcomes = Vec::with_capacity(proposals.len());
        for _ in 0..done.min(proposals.len()) {
            outcomes.push(Err(StoreError::Internal("applied before a restart; its answer is lost".into())));
        }
        let mut run = PutRun::default();
        // The marker after the last request in `run`.
        let mut run_marker = self.marker.clone();
        let mut complete_on_disk = false;
        for (index, proposal) in proposals.iter().enumerate().skip(done) {
            let after = if index + 1 == proposals.len() {
                AppliedMarker { last_complete: Some(*log_id), partial: None }
            } else {
                let requests_done =
                    u32::try_from(index + 1).map_err(|_| RaftStorageError::Corrupt("entry too large"))?;
                AppliedMarker { last_complete: self.marker.last_complete, partial: Some((*log_id, requests_done)) }
            };
            // Whatever the run cannot take reads the store: the run is written first.
            if !run.accepts(proposal) {
                complete_on_disk |= self.write_run(&mut run, &run_marker)?;
            }
            let (outcome, effects) = match proposal {
                Proposal::Put(request) => {
                    let applied = self.applier.apply_into(request, &mut run);
                    run_marker = after;
                    applied
                }
                _ => {
                    let marker_bytes = encode("applied marker", &after)?;
                    let meta_cf = self.engine.cf(CF_META);
                    let batches_before = self.applier.batches_written();
                    let applied = self
                        .applier
                        .apply_with(proposal, |batch| batch.put_cf(meta_cf, applied::META_APPLIED, &marker_bytes));
                    if self.applier.batches_written() != batches_before {
                        complete_on_disk = after.partial.is_none();
                        self.marker = after;
                    }
                    applied
                }
            };
            if let Err(error @ (StoreError::Storage(_) | StoreError::Corrupt(_))) = &outcome {
                // Not a request's answer but a broken store: other members applied this entry.
                return Err(RaftStorageError::Store(StoreError::Internal(format!("applying {log_id}: {error}"))));
            }
            pending.changes.extend(effects.changes);
            pending.compact_to.extend(effects.compact_to);
            outcomes.push(outcome);
        }
        complete_on_disk |= self.write_run(&mut run, &run_marker)?;
        if !complete_on_disk {
            self.finish_entry(log_id, |_, _| Ok(()))?;
        }
        self.marker = AppliedMarker::complete(log_id);
        Ok(CommandOutcome(outcomes))
    }

    /// Writes the puts in `run` with `marker`, if there are any; returns whether that completed
    /// the entry on disk.
    fn write_run(&mut self, run: &mut PutRun, marker: &AppliedMarker) -> Result<bool> {
        if run.is_empty() {
            return Ok(false);
        }
        let marker_bytes = encode("applied marker", marker)?;
        let meta_cf = self.engine.cf(CF_META);
        self.applier.write_run(run, |batch| batch.put_cf(meta_cf, applied::META_APPLIED, &marker_bytes))?;
        self.marker = marker.clone();
        Ok(marker.partial.is_none())
    }

    /// Writes the complete marker for `log_id` together with `extra` records, in one batch.
    fn finish_entry(
        &mut self,
        log_id: &LogId,
        extra: impl FnOnce(&Engine, &mut WriteBatch) -> Result<()>,
    ) -> Result<CommandOutcome> {
        let marker = AppliedMarker::complete(log_id);
        let mut batch = WriteBatch::default();
        applied::put_marker(&self.engine, &mut batch, &marker)?;
        extra(&self.engine, &mut batch)?;
        self.engine.db().write_opt(batch, &unsynced())?;
        self.marker = marker;
        Ok(CommandOutcome::default())
    }

    /// Moves the published applied index, waking readers only when it changes.
    fn set_applied_index(&self, index: u64) {
        self.applied_index.send_if_modified(|applied| std::mem::replace(applied, index) != index);
    }

    /// Makes everything applied so far visible, then answers its clients.
    fn publish(&self, pending: &mut Pending) {
        self.engine.publish_committed(self.applier.revision());
        if let Some(last) = self.marker.last_complete {
            self.set_applied_index(last.index);
        }
        self.hub.publish(&pending.changes);
        for revision in pending.compact_to.drain(..) {
            let _ = self.compactions.send(revision);
        }
        for (responder, outcome) in pending.responses.drain(..) {
            responder.send(outcome);
        }
        pending.changes.clear();
        pending.entries = 0;
    }

    /// Replaces the state machine with the snapshot in `file` (handed over by the caller).
    async fn install(&mut self, meta: &SnapshotMeta, file: SnapshotFile) -> Result<()> {
        let engine = self.engine.clone();
        let snapshots = self.snapshots.clone();
        let meta_owned = meta.clone();
        tokio::task::spawn_blocking(move || {
            let file_name = snapshots.adopt(&meta_owned, &file.path)?;
            let record = InstallRecord { meta: meta_owned, file_name, size_bytes: file.size_bytes };
            write_install_record(&engine, Some(&record))?;
            finish_install(&engine, &snapshots, &record)
        })
        .await
        .map_err(|e| RaftStorageError::Thread(e.to_string()))??;
        self.after_replace(meta)
    }

    /// Brings the in-memory state in line with a replaced engine.
    fn after_replace(&mut self, meta: &SnapshotMeta) -> Result<()> {
        self.lessor.reload(&self.engine)?;
        self.applier = Applier::new(self.engine.clone(), self.lessor.clone());
        self.marker = AppliedMarker { last_complete: meta.last_log_id, partial: None };
        self.membership = meta.last_membership.clone();
        self.set_applied_index(meta.last_log_id.map_or(0, |id| id.index));
        self.hub.resync_all();
        if let Some(revision) = self.engine.meta_i64(META_SCHEDULED_COMPACT)? {
            let _ = self.compactions.send(revision);
        }
        Ok(())
    }
}

fn unsynced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(false);
    options
}

fn read_install_record(engine: &Engine) -> Result<Option<InstallRecord>> {
    match engine.db().get_cf(engine.cf(CF_RAFT_STATE), KEY_INSTALLING)? {
        Some(raw) => decode("install record", &raw).map(Some),
        None => Ok(None),
    }
}

/// Sets (Some) or clears (None) the install record, with a WAL sync.
fn write_install_record(engine: &Engine, record: Option<&InstallRecord>) -> Result<()> {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    let cf = engine.cf(CF_RAFT_STATE);
    match record {
        Some(record) => engine.db().put_cf_opt(cf, KEY_INSTALLING, encode("install record", record)?, &options)?,
        None => engine.db().delete_cf_opt(cf, KEY_INSTALLING, &options)?,
    }
    Ok(())
}

/// The install after its record is durable (also the redo after a crash): make the snapshot
/// current, replace the engine's state with it, clear the record.
fn finish_install(engine: &Engine, snapshots: &SnapshotStore, record: &InstallRecord) -> Result<()> {
    snapshots.switch_installed(&record.meta, &record.file_name, record.size_bytes)?;
    replace_state(engine, &snapshots.dir().join(&record.file_name), &record.meta)?;
    write_install_record(engine, None)
}

/// Wipes the state machine's keyspaces, loads `file`, records `meta` as applied, syncs, and
/// re-reads the engine's revisions. Readers that care (watch catch-up) see the data epoch odd
/// meanwhile.
fn replace_state(engine: &Engine, file: &std::path::Path, meta: &SnapshotMeta) -> Result<()> {
    engine.set_replacing(true);
    let outcome = wipe_and_load(engine, file, meta);
    engine.set_replacing(false);
    outcome
}

fn wipe_and_load(engine: &Engine, file: &std::path::Path, meta: &SnapshotMeta) -> Result<()> {
    for name in STATE_MACHINE_CFS {
        wipe(engine, name)?;
    }
    snapshot::load(file, engine)?;
    let mut batch = WriteBatch::default();
    let marker = AppliedMarker { last_complete: meta.last_log_id, partial: None };
    applied::put_marker(engine, &mut batch, &marker)?;
    applied::put_membership(engine, &mut batch, &meta.last_membership)?;
    engine.db().write_opt(batch, &unsynced())?;
    engine.db().flush_wal(true)?;
    engine.reload_revisions()?;
    Ok(())
}

/// Deletes every key of one keyspace, in bounded batches.
fn wipe(engine: &Engine, name: &str) -> Result<()> {
    let cf = engine.cf(name);
    let mut batch = WriteBatch::default();
    for item in engine.db().iterator_cf(cf, IteratorMode::Start) {
        let (key, _) = item?;
        batch.delete_cf(cf, key);
        if batch.len() >= WIPE_BATCH {
            engine.db().write_opt(std::mem::take(&mut batch), &unsynced())?;
        }
    }
    engine.db().write_opt(batch, &unsynced())?;
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> std::result::Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok(self.applied())
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> std::result::Result<(), io::Error>
    where
        Strm:
            Stream<Item = std::result::Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + openraft::OptionalSend,
    {
        let mut pending = Pending::default();
        // On the leader (its lessor is primary), let the tasks already waiting run first:
        // openraft asks for an apply right after it tells the committer the entry is committed,
        // and yielding lets the next entry be proposed and sent to the followers before this
        // one's requests are applied, instead of after (on a loaded three-member cluster, puts
        // were about 7% faster). A follower applies at once: the writes it forwarded wait for
        // this apply, and what it has queued is less urgent (yielding there too cost about 6%).
        if self.lessor.is_primary() {
            tokio::task::yield_now().await;
        }
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let outcome = self.apply_entry(&entry, &mut pending)?;
            if let Some(responder) = responder {
                pending.responses.push((responder, outcome));
            }
            pending.entries += 1;
            if pending.entries >= PUBLISH_EVERY {
                self.publish(&mut pending);
            }
        }
        self.publish(&mut pending);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots.start_build(self.engine.clone())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> std::result::Result<(), io::Error> {
        self.install(meta, snapshot).await?;
        tracing::info!(last_log_id = ?meta.last_log_id, revision = self.engine.committed_revision(), "installed a Raft snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> std::result::Result<Option<Snapshot>, io::Error> {
        Ok(self.snapshots.current())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use etcd_client::proto::{PbDeleteRequest as DeleteRangeRequest, PbPutRequest as PutRequest};
    use openraft::vote::RaftLeaderIdExt;
    use openraft::{RaftSnapshotBuilder, RaftTypeConfig};

    use super::*;
    use crate::header::HeaderSource;
    use crate::mvcc::engine::CF_KV;
    use crate::raft::types::ProposalBatch;

    fn open(dir: &std::path::Path) -> (Arc<Engine>, StateMachine) {
        let engine = Arc::new(Engine::open(&dir.join("db")).expect("open engine"));
        let lessor = Arc::new(Lessor::new(2));
        let hub = WatchHub::new(engine.clone(), Arc::new(HeaderSource::new(1, 1, 2)), Duration::from_secs(600));
        let (compactions, _) = std::sync::mpsc::channel();
        let sm = StateMachine::open(engine.clone(), lessor, hub, compactions, dir.join("snapshots")).expect("open");
        (engine, sm)
    }

    fn close(sm: StateMachine, mut engine: Arc<Engine>) {
        drop(sm);
        for _ in 0..500 {
            match Arc::try_unwrap(engine) {
                Ok(engine) => return drop(engine),
                Err(shared) => engine = shared,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the engine is still in use");
    }

    async fn apply_puts(sm: &mut StateMachine, index: u64, keys: &[&str]) {
        let proposals = keys
            .iter()
            .map(|k| {
                Proposal::Put(PutRequest { key: k.as_bytes().to_vec(), value: b"v".to_vec(), ..Default::default() })
            })
            .collect();
        let log_id = LogId::new(<TypeConfig as RaftTypeConfig>::LeaderId::new_committed(1, 1), index);
        let entry = Entry { log_id, payload: EntryPayload::Normal(Command::Requests(ProposalBatch::new(proposals))) };
        sm.apply(futures::stream::iter([Ok((entry, None))])).await.expect("apply");
    }

    fn keys(engine: &Engine) -> Vec<Box<[u8]>> {
        engine.iter_cf(CF_KV).map(|r| r.expect("read").0).collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_interrupted_install_is_redone_on_open() {
        let source_dir = tempfile::tempdir().expect("tempdir");
        let (source_engine, mut source) = open(source_dir.path());
        apply_puts(&mut source, 1, &["a", "b", "c"]).await;
        let snapshot = source.get_snapshot_builder().await.build_snapshot().await.expect("build");

        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, mut target) = open(dir.path());
        apply_puts(&mut target, 1, &["x", "y"]).await;
        // The install got as far as a durable record and half a wipe, then the member crashed.
        let file_name = target.snapshots.adopt(&snapshot.meta, &snapshot.snapshot.path).expect("adopt");
        let record = InstallRecord { meta: snapshot.meta.clone(), file_name, size_bytes: snapshot.snapshot.size_bytes };
        write_install_record(&engine, Some(&record)).expect("record");
        wipe(&engine, CF_KV).expect("wipe");
        close(target, engine);

        let (engine, target) = open(dir.path());
        assert_eq!(keys(&engine), keys(&source_engine));
        assert_eq!(engine.committed_revision(), 4);
        assert_eq!(target.applied().0, snapshot.meta.last_log_id);
        assert!(read_install_record(&engine).expect("read").is_none(), "the record is cleared");
        let current = target.current_snapshot().expect("current snapshot");
        assert_eq!(current.meta, snapshot.meta);
        close(target, engine);
        close(source, source_engine);
    }

    fn put(key: &str, value: &str) -> Proposal {
        Proposal::Put(PutRequest { key: key.into(), value: value.into(), prev_kv: true, ..Default::default() })
    }

    /// Runs of puts share one write; the outcomes, the watch events and the stored records
    /// must be exactly those of applying the requests one at a time.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_entry_applies_as_its_requests_one_at_a_time() {
        let proposals = vec![
            put("a", "1"),
            put("b", "1"),
            // The same key again in the same run: it must see the first put.
            put("a", "2"),
            Proposal::LeaseGrant { id: 7, ttl_seconds: 60 },
            Proposal::Put(PutRequest { key: "c".into(), value: "leased".into(), lease: 7, ..Default::default() }),
            // Refused, and writes nothing: no such lease; the key is absent.
            Proposal::Put(PutRequest { key: "d".into(), lease: 8, ..Default::default() }),
            Proposal::Put(PutRequest { key: "e".into(), ignore_value: true, ..Default::default() }),
            put("b", "2"),
            Proposal::DeleteRange(DeleteRangeRequest { key: "a".into(), prev_kv: true, ..Default::default() }),
            put("a", "3"),
            Proposal::Put(PutRequest { key: "b".into(), ignore_value: true, prev_kv: true, ..Default::default() }),
            Proposal::LeaseRevoke { id: 7 },
            put("c", "again"),
        ];
        let log_id = LogId::new(<TypeConfig as RaftTypeConfig>::LeaderId::new_committed(1, 1), 1);

        let batched_dir = tempfile::tempdir().expect("tempdir");
        let (batched_engine, mut batched) = open(batched_dir.path());
        let entry =
            Entry { log_id, payload: EntryPayload::Normal(Command::Requests(ProposalBatch::new(proposals.clone()))) };
        let mut pending = Pending::default();
        let outcome = batched.apply_entry(&entry, &mut pending).expect("apply");

        let single_dir = tempfile::tempdir().expect("tempdir");
        let (single_engine, single) = open(single_dir.path());
        let mut applier = Applier::new(single_engine.clone(), single.lessor.clone());
        let mut expected_changes = Vec::new();
        let mut expected = Vec::new();
        for proposal in &proposals {
            let (outcome, effects) = applier.apply(proposal);
            expected_changes.extend(effects.changes);
            expected.push(outcome);
        }

        assert_eq!(format!("{:?}", outcome.0), format!("{expected:?}"));
        assert_eq!(format!("{:?}", pending.changes), format!("{expected_changes:?}"));
        assert_eq!(batched.applier.revision(), applier.revision());
        for cf in [CF_KV, crate::mvcc::engine::CF_REV, crate::mvcc::engine::CF_LEASE_KEYS] {
            let records = |engine: &Engine| engine.iter_cf(cf).map(|r| r.expect("read")).collect::<Vec<_>>();
            assert_eq!(records(&batched_engine), records(&single_engine), "keyspace {cf}");
        }
        assert_eq!(batched.applied().0, Some(log_id));
        drop(applier);
        close(single, single_engine);
        close(batched, batched_engine);
    }
}
