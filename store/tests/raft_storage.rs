//! Raft storage on a real RocksDB in a temporary directory: openraft's storage conformance
//! suite, then Keel's own guarantees: the log and vote survive a restart, a partly applied
//! entry is not applied twice after a crash, a snapshot moved to a fresh member reproduces the
//! store exactly (and watchers catch up across it), and `keel store restore` drops Raft's
//! bookkeeping.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::proto::{PbDeleteRequest as DeleteRangeRequest, PbPutRequest as PutRequest};
use keel_store::apply::{Applier, Proposal};
use keel_store::header::HeaderSource;
use keel_store::lease::Lessor;
use keel_store::mvcc::Engine;
use keel_store::mvcc::engine::{CF_META, CF_RAFT_STATE, META_RAFT_PREFIX, STATE_MACHINE_CFS};
use keel_store::raft::applied::{self, AppliedMarker, PublishedMember};
use keel_store::raft::log_store::LogStore;
use keel_store::raft::state_machine::StateMachine;
use keel_store::raft::types::{Command, Entry, LogId, ProposalBatch, TypeConfig, Vote};
use keel_store::watch::filter::EventFilter;
use keel_store::watch::hub::Registration;
use keel_store::watch::{WatchHub, WatchParams};
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;
use openraft::{EntryPayload, Membership, RaftTypeConfig, StorageError};
use tempfile::TempDir;

/// One member's Raft storage, opened in a directory.
struct Member {
    engine: Arc<Engine>,
    lessor: Arc<Lessor>,
    hub: Arc<WatchHub>,
    log: LogStore,
    sm: StateMachine,
    _compactions: std::sync::mpsc::Receiver<i64>,
}

fn open_member(dir: &Path) -> Member {
    let engine = Arc::new(Engine::open(&dir.join("db")).expect("open engine"));
    let lessor = Arc::new(Lessor::new(2));
    let hub = WatchHub::new(engine.clone(), Arc::new(HeaderSource::new(1, 1, 2)), Duration::from_secs(600));
    let (compactions, compactions_rx) = std::sync::mpsc::channel();
    let log = LogStore::new(engine.clone()).expect("log store");
    let sm = StateMachine::open(engine.clone(), lessor.clone(), hub.clone(), compactions, dir.join("snapshots"))
        .expect("state machine");
    Member { engine, lessor, hub, log, sm, _compactions: compactions_rx }
}

impl Member {
    /// Drops everything and waits until background threads let go of the database.
    fn close(self) {
        let Member { engine, log, sm, hub, lessor, _compactions } = self;
        drop((log, sm, hub, lessor));
        close_engine(engine);
    }
}

fn close_engine(mut engine: Arc<Engine>) {
    for _ in 0..500 {
        match Arc::try_unwrap(engine) {
            Ok(engine) => return drop(engine),
            Err(shared) => engine = shared,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the engine is still in use");
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let Member { log, sm, .. } = open_member(dir.path());
        Ok((dir, log, sm))
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(<TypeConfig as RaftTypeConfig>::LeaderId::new_committed(term, 1), index)
}

fn put(key: &str, value: &str) -> Proposal {
    Proposal::Put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
}

fn requests(id: LogId, proposals: Vec<Proposal>) -> Entry {
    Entry { log_id: id, payload: EntryPayload::Normal(Command::Requests(ProposalBatch::new(proposals))) }
}

fn blank(id: LogId) -> Entry {
    Entry { log_id: id, payload: EntryPayload::Blank }
}

async fn apply(sm: &mut StateMachine, entries: Vec<Entry>) {
    let stream = futures::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))));
    sm.apply(stream).await.expect("apply");
}

async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.expect("append");
    rx.await.expect("flush callback").expect("flushed");
}

/// A keyspace's records.
type Records = Vec<(Box<[u8]>, Box<[u8]>)>;

/// Every record of the state machine's keyspaces.
fn dump(engine: &Engine) -> Vec<(&'static str, Records)> {
    STATE_MACHINE_CFS
        .iter()
        .map(|name| (*name, engine.iter_cf(name).map(|record| record.expect("read")).collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn openraft_storage_suite() {
    Suite::<TypeConfig, LogStore, StateMachine, Builder, TempDir>::test_all(Builder).await.expect("suite");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_state_vote_and_committed_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = open_member(dir.path());
    append(&mut member.log, (1..=6).map(|i| blank(log_id(1, i))).collect()).await;
    let vote = Vote::new(3, 1);
    member.log.save_vote(&vote).await.expect("vote");
    member.log.purge(log_id(1, 2)).await.expect("purge");
    member.log.save_committed(Some(log_id(1, 5))).await.expect("committed");
    member.log.truncate_after(Some(log_id(1, 5))).await.expect("truncate");
    member.close();

    let mut member = open_member(dir.path());
    let state = member.log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 5)));
    assert_eq!(member.log.read_vote().await.expect("read vote"), Some(vote));
    assert_eq!(member.log.read_committed().await.expect("read committed"), Some(log_id(1, 5)));
    let entries = member.log.try_get_log_entries(0..100).await.expect("entries");
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, vec![3, 4, 5]);

    member.log.purge(log_id(1, 5)).await.expect("purge all");
    member.close();
    let mut member = open_member(dir.path());
    let state = member.log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
    assert_eq!(state.last_log_id, Some(log_id(1, 5)), "an empty log reports the last purged id as last");
    member.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_committed_id_rides_in_the_next_write_or_is_written_at_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = open_member(dir.path());
    let stored = |engine: &Engine| {
        engine.db().get_cf(engine.cf(CF_RAFT_STATE), b"committed").expect("read raft_state").is_some()
    };
    append(&mut member.log, (1..=4).map(|i| blank(log_id(1, i))).collect()).await;
    member.log.save_committed(Some(log_id(1, 2))).await.expect("committed");
    assert!(!stored(&member.engine), "saving the committed id is not a write of its own");
    assert_eq!(member.log.read_committed().await.expect("read"), Some(log_id(1, 2)));
    append(&mut member.log, vec![blank(log_id(1, 5))]).await;
    assert!(stored(&member.engine), "the next append carries the committed id");
    // A newer id with no write after it is written when the log store is dropped.
    member.log.save_committed(Some(log_id(1, 4))).await.expect("committed");
    member.close();

    let mut member = open_member(dir.path());
    assert_eq!(member.log.read_committed().await.expect("read"), Some(log_id(1, 4)));
    member.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partly_applied_entry_is_not_applied_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = open_member(dir.path());
    apply(&mut member.sm, vec![requests(log_id(1, 1), vec![put("a", "1")])]).await;
    assert_eq!(member.engine.committed_revision(), 2);
    member.close();

    // A crash in the middle of entry 2: the batches of its first two requests reached the
    // disk, each with the marker the state machine writes into it; the third did not.
    {
        let engine = Arc::new(Engine::open(&dir.path().join("db")).expect("open engine"));
        let lessor = Arc::new(Lessor::new(2));
        lessor.reload(&engine).expect("leases");
        let mut applier = Applier::new(engine.clone(), lessor);
        for (done, proposal) in [put("b", "1"), put("c", "1")].iter().enumerate() {
            let marker =
                AppliedMarker { last_complete: Some(log_id(1, 1)), partial: Some((log_id(1, 2), done as u32 + 1)) };
            let (outcome, _) = applier.apply_with(proposal, |batch| {
                applied::put_marker(&engine, batch, &marker).expect("marker");
            });
            outcome.expect("applied");
        }
        drop(applier);
        close_engine(engine);
    }

    let mut member = open_member(dir.path());
    let (applied, _) = member.sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(1, 1)), "a partly applied entry is not reported as applied");
    // openraft re-applies the whole entry.
    apply(&mut member.sm, vec![requests(log_id(1, 2), vec![put("b", "1"), put("c", "1"), put("d", "1")])]).await;
    assert_eq!(member.engine.committed_revision(), 5, "b and c are not applied a second time");
    for (key, revision) in [("b", 3), ("c", 4), ("d", 5)] {
        let kv = member.engine.get_at(key.as_bytes(), 5).expect("read").expect("present");
        assert_eq!((kv.mod_revision, kv.version), (revision, 1), "key {key}");
    }
    assert_eq!(member.sm.applied_state().await.expect("applied state").0, Some(log_id(1, 2)));
    member.close();

    let mut member = open_member(dir.path());
    assert_eq!(member.sm.applied_state().await.expect("applied state").0, Some(log_id(1, 2)));
    assert_eq!(member.engine.committed_revision(), 5);
    member.close();
}

/// Entries that exercise every keyspace: membership, keys, a lease with a key, a delete, a
/// compaction and a published member.
fn history() -> Vec<Entry> {
    let members: BTreeSet<u64> = [1, 2, 3].into();
    let leased = Proposal::Put(PutRequest { key: "c".into(), value: "leased".into(), lease: 7, ..Default::default() });
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(Membership::new_with_defaults(vec![members], [])),
        },
        requests(
            log_id(1, 2),
            vec![put("a", "1"), put("b", "1"), Proposal::LeaseGrant { id: 7, ttl_seconds: 60 }, leased],
        ),
        requests(
            log_id(1, 3),
            vec![
                Proposal::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() }),
                put("b", "2"),
                Proposal::Compact { revision: 3 },
            ],
        ),
        Entry {
            log_id: log_id(2, 4),
            payload: EntryPayload::Normal(Command::PublishMember {
                id: 2,
                name: "two".into(),
                client_urls: vec!["http://two:2379".into()],
            }),
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_installed_on_a_fresh_member_reproduces_the_store() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = open_member(source_dir.path());
    apply(&mut source.sm, history()).await;
    let snapshot = source.sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, 4)));
    assert_eq!(snapshot.meta.last_membership.log_id(), &Some(log_id(1, 1)));

    // The receiving side of a transfer writes the file somewhere and hands it over.
    let dir = tempfile::tempdir().expect("tempdir");
    let received = dir.path().join("received.tmp");
    std::fs::copy(&snapshot.snapshot.path, &received).expect("copy");
    let mut member = open_member(dir.path());
    member
        .sm
        .install_snapshot(
            &snapshot.meta,
            keel_store::raft::types::SnapshotFile { path: received.clone(), size_bytes: snapshot.snapshot.size_bytes },
        )
        .await
        .expect("install");
    assert!(!received.exists(), "the state machine took the file over");

    assert_eq!(dump(&member.engine), dump(&source.engine));
    assert_eq!(member.engine.committed_revision(), source.engine.committed_revision());
    assert_eq!(member.engine.compact_revision(), 3);
    assert!(member.lessor.exists(7), "the lease table is reloaded");
    let published = applied::published_members(&member.engine).expect("members");
    assert_eq!(
        published.get(&2),
        Some(&PublishedMember { name: "two".into(), client_urls: vec!["http://two:2379".into()] })
    );
    let expected_state = (snapshot.meta.last_log_id, snapshot.meta.last_membership.clone());
    assert_eq!(member.sm.applied_state().await.expect("applied"), expected_state);
    let current = member.sm.get_current_snapshot().await.expect("current").expect("a current snapshot");
    assert_eq!(current.meta, snapshot.meta);

    // Applying goes on from the snapshot's revision, and everything survives a restart.
    let revision = source.engine.committed_revision();
    apply(&mut member.sm, vec![requests(log_id(2, 5), vec![put("e", "1")])]).await;
    assert_eq!(member.engine.committed_revision(), revision + 1);
    member.close();
    let mut member = open_member(dir.path());
    assert_eq!(member.engine.committed_revision(), revision + 1);
    assert_eq!(member.sm.applied_state().await.expect("applied").0, Some(log_id(2, 5)));
    let current = member.sm.get_current_snapshot().await.expect("current").expect("a current snapshot");
    assert_eq!(current.meta, snapshot.meta);
    assert!(current.snapshot.path.exists());
    member.close();
    source.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn watchers_catch_up_across_an_installed_snapshot() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = open_member(source_dir.path());
    let puts = (0..5).map(|i| put(&format!("k{i}"), "v")).collect();
    apply(&mut source.sm, vec![blank(log_id(1, 1)), requests(log_id(1, 2), puts)]).await;
    let snapshot = source.sm.get_snapshot_builder().await.build_snapshot().await.expect("build");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = open_member(dir.path());
    member.hub.start().expect("catch-up thread");
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let filter = EventFilter { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    let Registration::Registered { key, .. } = member.hub.register(WatchParams { filter, ..Default::default() }, tx)
    else {
        panic!("registration failed");
    };
    member.hub.announced(key);
    tokio::time::sleep(Duration::from_millis(300)).await;

    member.sm.install_snapshot(&snapshot.meta, snapshot.snapshot).await.expect("install");
    let mut revisions = Vec::new();
    while revisions.len() < 5 {
        let outgoing =
            tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("events arrive").expect("stream open");
        revisions.extend(outgoing.response.events.iter().filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)));
    }
    assert_eq!(revisions, vec![2, 3, 4, 5, 6], "every revision the snapshot skipped, once, in order");
    member.close();
    source.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_for_a_new_cluster_drops_raft_bookkeeping() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = open_member(source_dir.path());
    apply(&mut source.sm, history()).await;
    let snapshot = source.sm.get_snapshot_builder().await.build_snapshot().await.expect("build");

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(&dir.path().join("db")).expect("open engine");
    keel_store::snapshot::restore(&snapshot.snapshot.path, &engine).expect("restore");
    let raft_keys: Vec<_> =
        engine.iter_cf(CF_META).map(|r| r.expect("read").0).filter(|k| k.starts_with(META_RAFT_PREFIX)).collect();
    assert!(raft_keys.is_empty(), "left Raft keys: {raft_keys:?}");
    assert_eq!(dump(&engine)[0], dump(&source.engine)[0], "the keys themselves are all there");
    assert_eq!(applied::read_marker(&engine).expect("marker"), AppliedMarker::default());
    drop(engine);
    source.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_snapshot_is_refused_before_anything_is_loaded() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = open_member(source_dir.path());
    apply(&mut source.sm, history()).await;
    let snapshot = source.sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
    let bytes = std::fs::read(&snapshot.snapshot.path).expect("read snapshot");

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(&dir.path().join("db")).expect("open engine");
    let flipped = dir.path().join("flipped");
    let mut damaged = bytes.clone();
    damaged[20] ^= 0xFF;
    std::fs::write(&flipped, &damaged).expect("write");
    let error = keel_store::snapshot::load(&flipped, &engine).expect_err("a flipped byte");
    assert!(matches!(error, keel_store::snapshot::SnapshotError::Checksum), "{error}");
    let truncated = dir.path().join("truncated");
    std::fs::write(&truncated, &bytes[..bytes.len() - 512]).expect("write");
    let error = keel_store::snapshot::load(&truncated, &engine).expect_err("a truncated file");
    assert!(matches!(error, keel_store::snapshot::SnapshotError::Checksum), "{error}");
    assert!(dump(&engine).iter().all(|(_, records)| records.is_empty()), "nothing was loaded");
    drop(engine);
    source.close();
}
