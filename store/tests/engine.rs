//! The MVCC engine and state machine against a real RocksDB in a temporary directory:
//! revision rules, compaction (logical and physical) and history.

use std::sync::Arc;

use etcd_client::proto::{
    PbDeleteRequest as DeleteRangeRequest, PbPutRequest as PutRequest, PbRangeRequest as RangeRequest,
};
use keel_store::apply::{Applied, Applier, Proposal};
use keel_store::error::StoreError;
use keel_store::lease::Lessor;
use keel_store::mvcc::{EVENT_DELETE, EVENT_PUT, Engine, compact, history, range};

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    applier: Applier,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(Engine::open(&dir.path().join("db")).expect("open engine"));
    let applier = Applier::new(engine.clone(), Arc::new(Lessor::new(2)));
    Fixture { _dir: dir, engine, applier }
}

impl Fixture {
    fn apply(&mut self, proposal: Proposal) -> Result<Applied, StoreError> {
        let (outcome, _) = self.applier.apply(&proposal);
        self.engine.publish_committed(self.applier.revision());
        outcome
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        let request = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        match self.apply(Proposal::Put(request)) {
            Ok(Applied::Put(response)) => response.header.map(|h| h.revision).unwrap_or_default(),
            other => panic!("put failed: {other:?}"),
        }
    }

    fn delete(&mut self, key: &str, end: &str) -> i64 {
        let request = DeleteRangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
        match self.apply(Proposal::DeleteRange(request)) {
            Ok(Applied::DeleteRange(response)) => response.deleted,
            other => panic!("delete failed: {other:?}"),
        }
    }

    fn get(&self, key: &str, revision: i64) -> Option<(String, i64, i64, i64)> {
        self.engine
            .get_at(key.as_bytes(), revision)
            .expect("get")
            .map(|kv| (String::from_utf8(kv.value).expect("utf8"), kv.create_revision, kv.mod_revision, kv.version))
    }

    fn keys(&self, start: &str, end: &str, revision: i64) -> Vec<String> {
        let request = RangeRequest { key: start.into(), range_end: end.into(), ..Default::default() };
        range::evaluate(&self.engine, &request, revision, None)
            .expect("range")
            .kvs
            .into_iter()
            .map(|kv| String::from_utf8(kv.key).expect("utf8"))
            .collect()
    }
}

#[test]
fn revisions_versions_and_generations() {
    let mut f = fixture();
    assert_eq!(f.engine.committed_revision(), 1, "a fresh store is at revision 1");
    assert_eq!(f.put("a", "1"), 2);
    assert_eq!(f.put("a", "1"), 3, "re-putting the same value bumps the revision");
    assert_eq!(f.get("a", 3), Some(("1".into(), 2, 3, 2)));
    assert_eq!(f.delete("zzz", ""), 0);
    assert_eq!(f.engine.committed_revision(), 3, "a delete of nothing is no revision");
    assert_eq!(f.delete("a", ""), 1);
    assert_eq!(f.get("a", 4), None);
    assert_eq!(f.put("a", "2"), 5);
    assert_eq!(f.get("a", 5), Some(("2".into(), 5, 5, 1)), "a new generation starts at version 1");
    assert_eq!(f.get("a", 3), Some(("1".into(), 2, 3, 2)), "history stays readable");
}

#[test]
fn ranges_see_keys_with_zero_bytes_and_prefixes_in_order() {
    let mut f = fixture();
    for key in ["a", "a\0", "a\0b", "ab", "b", "\u{7f}"] {
        f.put(key, "v");
    }
    let now = f.engine.committed_revision();
    assert_eq!(f.keys("a", "b", now), vec!["a", "a\0", "a\0b", "ab"]);
    assert_eq!(f.keys("a\0", "\0", now), vec!["a\0", "a\0b", "ab", "b", "\u{7f}"]);
    assert_eq!(f.keys("a", "", now), vec!["a"]);
    f.delete("a\0", "ab");
    assert_eq!(f.keys("a", "b", f.engine.committed_revision()), vec!["a", "ab"]);
    assert_eq!(f.keys("a", "b", now), vec!["a", "a\0", "a\0b", "ab"], "the old revision still sees them");
}

#[test]
fn compaction_keeps_what_is_visible_at_or_after_it() {
    let mut f = fixture();
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    f.put("b", "1"); // 4
    f.delete("b", ""); // 5
    f.put("c", "1"); // 6
    f.put("a", "3"); // 7
    assert!(matches!(f.apply(Proposal::Compact { revision: 8 }), Err(StoreError::FutureRevision)));
    f.apply(Proposal::Compact { revision: 6 }).expect("compact");
    assert!(matches!(f.apply(Proposal::Compact { revision: 6 }), Err(StoreError::Compacted)));
    assert!(matches!(f.engine.check_read_revision(5, 7), Err(StoreError::Compacted)));
    compact::run(&f.engine, 6).expect("physical compaction");
    assert_eq!(f.get("a", 6), Some(("2".into(), 2, 3, 2)));
    assert_eq!(f.get("a", 7), Some(("3".into(), 2, 7, 3)));
    assert_eq!(f.get("b", 6), None);
    assert_eq!(f.get("c", 6), Some(("1".into(), 6, 6, 1)));
    assert_eq!(f.get("a", 2), None, "versions older than the compacted view are gone");
    let (sets, covered) = history::read(&f.engine, 6, 7, usize::MAX).expect("history");
    assert_eq!(covered, 7);
    let revisions: Vec<i64> = sets.iter().map(|s| s.revision).collect();
    assert_eq!(revisions, vec![6, 7], "history from the compact revision on is complete");
}

#[test]
fn history_has_events_in_revision_order_with_prev_kv() {
    let mut f = fixture();
    f.put("k", "1");
    f.put("k", "2");
    f.delete("k", "");
    let (sets, covered) = history::read(&f.engine, 2, 4, usize::MAX).expect("history");
    assert_eq!(covered, 4);
    let kinds: Vec<(i64, i32)> = sets.iter().map(|s| (s.revision, s.events[0].r#type)).collect();
    assert_eq!(kinds, vec![(2, EVENT_PUT), (3, EVENT_PUT), (4, EVENT_DELETE)]);
    let delete = &sets[2].events[0];
    assert_eq!(delete.prev_kv.as_ref().map(|kv| kv.value.clone()), Some(b"2".to_vec()));
    assert_eq!(delete.kv.as_ref().map(|kv| kv.mod_revision), Some(4));
    let (partial, covered) = history::read(&f.engine, 2, 4, 1).expect("bounded history");
    assert_eq!((partial.len(), covered), (1, 2), "a bounded read stops at a revision boundary");
}

#[test]
fn reopening_keeps_revision_compaction_and_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let engine = Arc::new(Engine::open(&path).expect("open"));
        let mut applier = Applier::new(engine.clone(), Arc::new(Lessor::new(2)));
        for i in 0..100 {
            let put = PutRequest { key: format!("k{i}").into_bytes(), value: b"v".to_vec(), ..Default::default() };
            applier.apply(&Proposal::Put(put)).0.expect("put");
        }
        applier.apply(&Proposal::Compact { revision: 50 }).0.expect("compact");
        engine.db().flush_wal(true).expect("sync");
    }
    let engine = Engine::open(&path).expect("reopen");
    assert_eq!(engine.committed_revision(), 101);
    assert_eq!(engine.compact_revision(), 50);
    assert!(engine.get_at(b"k99", 101).expect("get").is_some());
}

#[test]
fn every_change_of_a_key_is_seen_by_the_next_put_of_it() {
    // Puts interleaved with range deletes and lease revocations: each put's prev_kv, version and
    // create revision must match the key's newest version read from RocksDB just before it.
    let mut f = fixture();
    let lease = 7;
    for i in 0..300u32 {
        let key = format!("k{}", i % 10);
        match i % 23 {
            3 => {
                f.delete("k3", "k6");
                continue;
            }
            5 => {
                f.apply(Proposal::LeaseGrant { id: lease, ttl_seconds: 60 }).expect("grant");
            }
            11 => {
                // Revokes the lease (if granted this round) and deletes the keys attached to it.
                let _ = f.apply(Proposal::LeaseRevoke { id: lease });
                continue;
            }
            _ => {}
        }
        let before = f.engine.get_at(key.as_bytes(), f.engine.committed_revision()).expect("read");
        let with_lease = (5..11).contains(&(i % 23)) && i % 2 == 0;
        let request = PutRequest {
            key: key.clone().into(),
            value: format!("v{i}").into(),
            lease: if with_lease { lease } else { 0 },
            prev_kv: true,
            ..Default::default()
        };
        let Ok(Applied::Put(response)) = f.apply(Proposal::Put(request)) else { panic!("put {key} failed") };
        assert_eq!(response.prev_kv, before, "prev_kv of put {i} ({key})");
        let after = f.engine.get_at(key.as_bytes(), f.engine.committed_revision()).expect("read").expect("just put");
        assert_eq!(after.version, before.as_ref().map_or(1, |kv| kv.version + 1), "version after put {i}");
        assert_eq!(
            after.create_revision,
            before.as_ref().map_or(after.mod_revision, |kv| kv.create_revision),
            "create revision after put {i}"
        );
    }
}
