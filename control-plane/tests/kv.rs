//! Store access with etcd semantics, checked three ways with the same test bodies: the embedded
//! store (`EmbeddedKv` on a store started in this process), `RemoteKv` on a `keel store`
//! process, and `RemoteKv` on a real etcd 3.4 process. Etcd is the reference: a body that
//! passes on etcd encodes etcd's behaviour, and the two Keel paths must match it.
//!
//! The bodies cover what the API server relies on: reads (prefix pages with limit, more and
//! count; reads at an old revision), the create-if-absent / update-if-unchanged /
//! delete-if-unchanged txns, compaction (ranges and watches below it fail with `Compacted`),
//! watches (from the past: every event exactly once, in order, with previous values; from now;
//! dropping one cancels it in the store), leases, the request size limit, and fencing (a
//! deposed holder's writes refused).

mod common;

use std::time::{Duration, Instant};

use common::Fixture;
use keel_control_plane::kv::{
    Compare, Event, EventKind, KeyValue, Kv, KvError, OpResult, Range, Txn, TxnOp, WatchStream, prefix_end,
};

/// How long a test waits for an expected watch event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a watch must stay silent to count as "no more events".
const QUIET: Duration = Duration::from_millis(500);
/// How long a dropped watch may take to leave the store.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

fn b(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

async fn put(kv: &dyn Kv, key: &str, value: &str) -> i64 {
    kv.put(b(key), b(value), 0).await.unwrap_or_else(|e| panic!("put {key}: {e}")).0
}

/// Reads batches until `n` events arrived (progress notifications are skipped). Checks every
/// batch's revision covers its events and that events come in revision order.
async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let mut events: Vec<Event> = Vec::new();
    while events.len() < n {
        let item = tokio::time::timeout_at(deadline, stream.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events after {EVENT_TIMEOUT:?}: {events:?}", events.len()));
        let batch = match item {
            Some(Ok(batch)) => batch,
            Some(Err(error)) => panic!("watch failed after {} events: {error}", events.len()),
            None => panic!("watch ended after {} of {n} events", events.len()),
        };
        for event in &batch.events {
            assert!(batch.revision >= event.kv.mod_revision, "batch at {} holds {event:?}", batch.revision);
            if let Some(last) = events.last() {
                assert!(event.kv.mod_revision >= last.kv.mod_revision, "out of order: {last:?} then {event:?}");
            }
        }
        events.extend(batch.events);
    }
    events
}

/// Asserts that no event arrives for a while (progress notifications are fine).
async fn assert_quiet(stream: &mut WatchStream) {
    let deadline = tokio::time::Instant::now() + QUIET;
    while let Ok(item) = tokio::time::timeout_at(deadline, stream.recv()).await {
        match item {
            Some(Ok(batch)) => assert!(batch.events.is_empty(), "unexpected events {:?}", batch.events),
            Some(Err(error)) => panic!("watch failed: {error}"),
            None => panic!("watch ended"),
        }
    }
}

/// The next item must be the end of the watch with `Compacted`; returns its compact revision.
async fn expect_compacted(stream: &mut WatchStream) -> i64 {
    loop {
        let item = tokio::time::timeout(EVENT_TIMEOUT, stream.recv()).await.expect("no answer from a compacted watch");
        match item {
            Some(Err(KvError::Compacted { compact_revision })) => return compact_revision,
            Some(Ok(batch)) if batch.events.is_empty() => continue,
            other => panic!("expected Compacted, got {other:?}"),
        }
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

/// One event as (kind, key, value, mod revision, previous value).
fn summary(event: &Event) -> (EventKind, String, String, i64, Option<String>) {
    (
        event.kind,
        String::from_utf8_lossy(&event.kv.key).into_owned(),
        String::from_utf8_lossy(&event.kv.value).into_owned(),
        event.kv.mod_revision,
        event.prev.as_ref().map(|p| String::from_utf8_lossy(&p.value).into_owned()),
    )
}

mod bodies {
    use super::*;

    pub async fn put_and_range(f: &Fixture) {
        let kv = &*f.kv;
        let (r1, prev) = kv.put(b("/t/a"), b("1"), 0).await.expect("put");
        assert_eq!(prev, None);
        let r2 = put(kv, "/t/b", "1").await;
        let r3 = put(kv, "/t/c", "1").await;
        let r4 = put(kv, "/u/x", "1").await;
        assert_eq!((r2, r3, r4), (r1 + 1, r1 + 2, r1 + 3), "one revision per put");
        let (r5, prev) = kv.put(b("/t/a"), b("2"), 0).await.expect("re-put");
        let first =
            KeyValue { key: b("/t/a"), value: b("1"), create_revision: r1, mod_revision: r1, version: 1, lease: 0 };
        assert_eq!(prev, Some(first.clone()));

        let page = kv.range(Range { limit: 2, ..Range::prefix(b"/t/") }).await.expect("first page");
        assert_eq!(keys(&page.kvs), ["/t/a", "/t/b"]);
        assert!(page.more);
        assert_eq!(page.count, 3);
        assert_eq!(page.revision, r5);
        assert_eq!(page.kvs[0], KeyValue { value: b("2"), mod_revision: r5, version: 2, ..first.clone() });
        let rest = Range { key: b("/t/b\0"), range_end: Some(prefix_end(b"/t/")), ..Range::default() };
        let rest = kv.range(rest).await.expect("second page");
        assert_eq!(keys(&rest.kvs), ["/t/c"]);
        assert!(!rest.more);
        assert_eq!(rest.count, 1);

        let counted = kv.range(Range { count_only: true, ..Range::prefix(b"/t/") }).await.expect("count");
        assert!(counted.kvs.is_empty());
        assert_eq!(counted.count, 3);
        let missing = kv.range(Range::key(b"/t/none")).await.expect("missing key");
        assert_eq!((missing.kvs.len(), missing.count, missing.revision), (0, 0, r5));
        let serializable = kv.range(Range { serializable: true, ..Range::key(b"/t/c") }).await.expect("serializable");
        assert_eq!(keys(&serializable.kvs), ["/t/c"]);

        // An old revision: the values then, the header still at the current revision.
        let old = kv.range(Range { revision: r1, ..Range::key(b"/t/a") }).await.expect("read at r1");
        assert_eq!(old.kvs, [first]);
        assert_eq!(old.revision, r5);
        let old_page = kv.range(Range { revision: r2, ..Range::prefix(b"/t/") }).await.expect("prefix at r2");
        assert_eq!(keys(&old_page.kvs), ["/t/a", "/t/b"]);
        let future = kv.range(Range { revision: r5 + 100, ..Range::key(b"/t/a") }).await;
        assert_eq!(future, Err(KvError::FutureRevision));
    }

    pub async fn compaction(f: &Fixture) {
        let kv = &*f.kv;
        let r1 = put(kv, "/c/k", "v1").await;
        let r2 = put(kv, "/c/k", "v2").await;
        let r3 = put(kv, "/c/k", "v3").await;
        kv.compact(r2).await.expect("compact");

        let below = kv.range(Range { revision: r1, ..Range::key(b"/c/k") }).await;
        assert!(matches!(below, Err(KvError::Compacted { .. })), "range below the compaction: {below:?}");
        let at = kv.range(Range { revision: r2, ..Range::key(b"/c/k") }).await.expect("range at the compaction");
        assert_eq!(at.kvs[0].value, b("v2"));
        let again = kv.compact(r2).await;
        assert!(matches!(again, Err(KvError::Compacted { .. })), "compacting twice: {again:?}");
        assert_eq!(kv.compact(r3 + 100).await, Err(KvError::FutureRevision));

        let mut stream = kv.watch(b("/c/k"), None, r1).await.expect("watch below the compaction");
        assert_eq!(expect_compacted(&mut stream).await, r2);
        let end = tokio::time::timeout(EVENT_TIMEOUT, stream.recv()).await.expect("stream end");
        assert!(end.is_none(), "a compacted watch ends: {end:?}");

        // Above the compaction the history is whole, previous values included.
        let mut stream = kv.watch(b("/c/k"), None, r3).await.expect("watch above the compaction");
        let events = next_events(&mut stream, 1).await;
        assert_eq!(summary(&events[0]), (EventKind::Put, b_str("/c/k"), b_str("v3"), r3, Some(b_str("v2"))));
    }

    fn b_str(text: &str) -> String {
        text.to_string()
    }

    /// The API server's three txn shapes, each on its success and its failure path.
    pub async fn txn_patterns(f: &Fixture) {
        let kv = &*f.kv;
        let key = b"/x/obj";
        let create = |value: &str| Txn {
            compare: vec![Compare::mod_revision(key, 0)],
            success: vec![TxnOp::Put { key: key.to_vec(), value: b(value), lease: 0 }],
            failure: vec![TxnOp::Get(Range::key(key))],
        };
        let created = kv.txn(create("v1")).await.expect("create");
        assert!(created.succeeded);
        assert_eq!(created.results, [OpResult::Put { prev: None }]);
        let r1 = created.revision;

        let exists = kv.txn(create("other")).await.expect("create again");
        assert!(!exists.succeeded);
        assert_eq!(exists.revision, r1, "a failed compare writes nothing");
        let [OpResult::Get(current)] = exists.results.as_slice() else { panic!("{:?}", exists.results) };
        assert_eq!((current.kvs[0].value.clone(), current.kvs[0].mod_revision), (b("v1"), r1));

        let update = |revision: i64, value: &str| Txn {
            compare: vec![Compare::mod_revision(key, revision)],
            success: vec![TxnOp::Put { key: key.to_vec(), value: b(value), lease: 0 }],
            failure: vec![TxnOp::Get(Range::key(key))],
        };
        let updated = kv.txn(update(r1, "v2")).await.expect("update");
        assert!(updated.succeeded);
        assert_eq!(updated.revision, r1 + 1);
        let [OpResult::Put { prev: Some(prev) }] = updated.results.as_slice() else { panic!("{:?}", updated.results) };
        assert_eq!((prev.value.clone(), prev.mod_revision), (b("v1"), r1));
        let r2 = updated.revision;

        let stale = kv.txn(update(r1, "v3")).await.expect("stale update");
        assert!(!stale.succeeded);
        assert_eq!(stale.revision, r2);
        let [OpResult::Get(current)] = stale.results.as_slice() else { panic!("{:?}", stale.results) };
        assert_eq!((current.kvs[0].value.clone(), current.kvs[0].mod_revision), (b("v2"), r2));

        let delete = |revision: i64| Txn {
            compare: vec![Compare::mod_revision(key, revision)],
            success: vec![TxnOp::Delete { key: key.to_vec(), range_end: None }],
            failure: vec![TxnOp::Get(Range::key(key))],
        };
        let stale = kv.txn(delete(r1)).await.expect("stale delete");
        assert!(!stale.succeeded);
        let deleted = kv.txn(delete(r2)).await.expect("delete");
        assert!(deleted.succeeded);
        assert_eq!(deleted.revision, r2 + 1);
        let [OpResult::Delete { deleted: 1, prev }] = deleted.results.as_slice() else {
            panic!("{:?}", deleted.results)
        };
        assert_eq!((prev[0].value.clone(), prev[0].mod_revision), (b("v2"), r2));

        // A txn that only reads: no revision.
        let read = Txn {
            compare: vec![Compare::mod_revision(key, 0)],
            success: vec![TxnOp::Get(Range::key(key))],
            failure: vec![],
        };
        let read = kv.txn(read).await.expect("read-only txn");
        assert!(read.succeeded);
        assert_eq!(read.revision, r2 + 1);
        let [OpResult::Get(nothing)] = read.results.as_slice() else { panic!("{:?}", read.results) };
        assert_eq!(nothing.count, 0);
    }

    pub async fn delete_returns_previous_values(f: &Fixture) {
        let kv = &*f.kv;
        let r1 = put(kv, "/d/a", "1").await;
        put(kv, "/d/b", "2").await;
        let r3 = put(kv, "/d/c", "3").await;
        let (revision, prev) = kv.delete(b("/d/a"), None).await.expect("delete one");
        assert_eq!(revision, r3 + 1);
        assert_eq!(
            prev,
            [KeyValue { key: b("/d/a"), value: b("1"), create_revision: r1, mod_revision: r1, version: 1, lease: 0 }]
        );
        let (revision, prev) = kv.delete(b("/d/"), Some(prefix_end(b"/d/"))).await.expect("delete a prefix");
        assert_eq!(revision, r3 + 2, "one revision for the whole range");
        assert_eq!(keys(&prev), ["/d/b", "/d/c"]);
        let (revision, prev) = kv.delete(b("/d/a"), None).await.expect("delete a missing key");
        assert_eq!((revision, prev.len()), (r3 + 2, 0), "deleting nothing is no revision");
        assert_eq!(kv.range(Range::prefix(b"/d/")).await.expect("range").count, 0);
    }

    /// History first, then live: every event once, in order, with its previous value.
    pub async fn watch_from_the_past(f: &Fixture) {
        let kv = &*f.kv;
        let start = put(kv, "/w/a", "1").await;
        let r2 = put(kv, "/w/b", "1").await;
        put(kv, "/v/outside", "1").await;
        let r4 = put(kv, "/w/a", "2").await;
        let (r5, _) = kv.delete(b("/w/b"), None).await.expect("delete");
        let both = Txn {
            compare: vec![],
            success: vec![
                TxnOp::Put { key: b("/w/c"), value: b("1"), lease: 0 },
                TxnOp::Put { key: b("/w/d"), value: b("1"), lease: 0 },
            ],
            failure: vec![],
        };
        let r6 = kv.txn(both).await.expect("txn").revision;

        let mut stream = kv.watch(b("/w/"), Some(prefix_end(b"/w/")), start).await.expect("watch");
        let events: Vec<_> = next_events(&mut stream, 6).await.iter().map(summary).collect();
        let s = |t: &str| t.to_string();
        assert_eq!(
            events,
            [
                (EventKind::Put, s("/w/a"), s("1"), start, None),
                (EventKind::Put, s("/w/b"), s("1"), r2, None),
                (EventKind::Put, s("/w/a"), s("2"), r4, Some(s("1"))),
                (EventKind::Delete, s("/w/b"), s(""), r5, Some(s("1"))),
                (EventKind::Put, s("/w/c"), s("1"), r6, None),
                (EventKind::Put, s("/w/d"), s("1"), r6, None),
            ]
        );
        assert_quiet(&mut stream).await;
        let r7 = put(kv, "/w/a", "3").await;
        let live: Vec<_> = next_events(&mut stream, 1).await.iter().map(summary).collect();
        assert_eq!(live, [(EventKind::Put, s("/w/a"), s("3"), r7, Some(s("2")))]);
        assert_quiet(&mut stream).await;
    }

    /// A watch that starts far back while writes continue: it catches up from history and
    /// switches to live delivery without a gap or a duplicate.
    pub async fn watch_catches_up_under_writes(f: &Fixture) {
        const BEFORE: usize = 400;
        const DURING: usize = 200;
        let kv = f.kv.clone();
        let mut written = Vec::new();
        for i in 0..BEFORE {
            let key = format!("/m/{i:04}");
            written.push((key.clone(), put(&*kv, &key, "x").await));
        }
        let mut stream = kv.watch(b("/m/"), Some(prefix_end(b"/m/")), written[0].1).await.expect("watch");
        let writer = {
            let kv = kv.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in BEFORE..BEFORE + DURING {
                    let key = format!("/m/{i:04}");
                    written.push((key.clone(), put(&*kv, &key, "x").await));
                }
                written
            })
        };
        let events = next_events(&mut stream, BEFORE + DURING).await;
        written.extend(writer.await.expect("writer"));
        let seen: Vec<(String, i64)> =
            events.iter().map(|e| (String::from_utf8_lossy(&e.kv.key).into_owned(), e.kv.mod_revision)).collect();
        assert_eq!(seen, written);
        assert_quiet(&mut stream).await;
    }

    pub async fn watch_from_now(f: &Fixture) {
        let kv = &*f.kv;
        put(kv, "/n/k", "0").await;
        let mut stream = kv.watch(b("/n/k"), None, 0).await.expect("watch");
        let r1 = put(kv, "/n/k", "1").await;
        put(kv, "/n/k2", "1").await;
        let (r2, _) = kv.delete(b("/n/k"), None).await.expect("delete");
        let r3 = put(kv, "/n/k", "2").await;
        let events: Vec<_> = next_events(&mut stream, 3).await.iter().map(summary).collect();
        let s = |t: &str| t.to_string();
        assert_eq!(
            events,
            [
                (EventKind::Put, s("/n/k"), s("1"), r1, Some(s("0"))),
                (EventKind::Delete, s("/n/k"), s(""), r2, Some(s("1"))),
                (EventKind::Put, s("/n/k"), s("2"), r3, None),
            ]
        );
        assert_quiet(&mut stream).await;
    }

    pub async fn dropping_a_watch_cancels_it(f: &Fixture) {
        let kv = &*f.kv;
        let before = f.watcher_count().await;
        if let Some(before) = before {
            assert_eq!(before, 0, "a fresh store has no watchers");
        }
        let mut streams = Vec::new();
        for _ in 0..3 {
            streams.push(kv.watch(b("/z/"), Some(prefix_end(b"/z/")), 0).await.expect("watch"));
        }
        if before.is_some() {
            wait_watchers(f, 3).await;
        }
        let revision = put(kv, "/z/a", "1").await;
        for stream in &mut streams {
            assert_eq!(next_events(stream, 1).await[0].kv.mod_revision, revision);
        }
        drop(streams);
        if before.is_some() {
            wait_watchers(f, 0).await;
        }
        // The store still serves watches afterwards.
        let mut stream = kv.watch(b("/z/"), Some(prefix_end(b"/z/")), 0).await.expect("watch again");
        let revision = put(kv, "/z/b", "1").await;
        assert_eq!(next_events(&mut stream, 1).await[0].kv.mod_revision, revision);
    }

    async fn wait_watchers(f: &Fixture, wanted: usize) {
        let deadline = Instant::now() + CANCEL_TIMEOUT;
        loop {
            let count = f.watcher_count().await.expect("observable");
            if count == wanted {
                return;
            }
            assert!(Instant::now() < deadline, "{count} watchers after {CANCEL_TIMEOUT:?}, wanted {wanted}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn lease_lifecycle(f: &Fixture) {
        let kv = &*f.kv;
        let id = kv.lease_grant(60).await.expect("grant");
        assert!(id > 0, "lease id {id}");
        kv.put(b("/l/k"), b("v"), id).await.expect("put with lease");
        assert_eq!(kv.range(Range::key(b"/l/k")).await.expect("range").kvs[0].lease, id);
        let ttl = kv.lease_keep_alive(id).await.expect("keep-alive");
        assert!((55..=60).contains(&ttl), "renewed TTL {ttl}");

        let mut stream = kv.watch(b("/l/k"), None, 0).await.expect("watch");
        kv.lease_revoke(id).await.expect("revoke");
        let events = next_events(&mut stream, 1).await;
        assert_eq!(events[0].kind, EventKind::Delete);
        assert_eq!(events[0].prev.as_ref().map(|p| p.value.clone()), Some(b("v")));
        assert_eq!(kv.range(Range::key(b"/l/k")).await.expect("range").count, 0, "the key went with its lease");

        assert_eq!(kv.lease_keep_alive(id).await, Err(KvError::LeaseNotFound));
        assert_eq!(kv.lease_revoke(id).await, Err(KvError::LeaseNotFound));
        assert_eq!(kv.put(b("/l/k"), b("v"), id).await.map(|_| ()), Err(KvError::LeaseNotFound));
    }

    pub async fn request_size_limit(f: &Fixture) {
        let kv = &*f.kv;
        // Over etcd's default --max-request-bytes (1.5 MiB), under its gRPC frame limit.
        let value = vec![b'x'; 1_600_000];
        assert_eq!(kv.put(b("/big"), value, 0).await.map(|_| ()), Err(KvError::TooLarge));
        let fits = vec![b'x'; 1_000_000];
        kv.put(b("/big"), fits, 0).await.expect("a value under the limit");
    }

    /// Fencing: a write carrying a holder's term is taken while the component's fence key is
    /// still at that term's revision, and refused (403, nothing written, counted) once another
    /// holder has rewritten it, on every backend.
    pub async fn fenced_writes(f: &Fixture) {
        use keel_control_plane::apiserver::storage::{Component, FENCED_MESSAGE, Fence, WriteMode};
        use keel_control_plane::apiserver::{Api, resources};
        let api = Api::new(f.kv.clone(), "127.0.0.1:6443".into());
        let configmaps = resources::find("", "v1", "configmaps").expect("configmaps are served");
        let configmap = |name: &str| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": name, "namespace": "default" }, "data": { "k": "v" },
            })
        };
        let key = Component::Scheduler.key();
        let fence = Fence { component: Component::Scheduler, revision: put(&*f.kv, &key, "holder-a").await };
        let mode = WriteMode::Fenced(fence);
        let kept = api
            .storage
            .create(configmaps, Some("default"), "a", &configmap("a"), mode)
            .await
            .expect("the holder writes");

        // Another holder takes the Lease: its acquisition rewrites the fence key.
        let taken_over = put(&*f.kv, &key, "holder-b").await;
        let refused = api.storage.create(configmaps, Some("default"), "b", &configmap("b"), mode).await;
        let error = refused.expect_err("a deposed holder's create");
        assert_eq!(error.code, 403);
        assert!(error.message.starts_with(FENCED_MESSAGE), "{}", error.message);
        assert!(error.message.contains(&format!("at revision {taken_over}")), "{}", error.message);
        let refused = api.storage.update(configmaps, Some("default"), "a", &configmap("a"), kept.revision, mode).await;
        assert!(refused.expect_err("a deposed holder's update").message.starts_with(FENCED_MESSAGE));
        let refused = api.storage.delete(configmaps, Some("default"), "a", kept.revision, mode).await;
        assert!(refused.expect_err("a deposed holder's delete").message.starts_with(FENCED_MESSAGE));
        assert!(api.storage.get(configmaps, Some("default"), "b").await.expect("get").is_none(), "b was written");
        let a = api.storage.get(configmaps, Some("default"), "a").await.expect("get").expect("a is still there");
        assert_eq!(a.revision, kept.revision, "a was changed");

        let metrics = api.metrics.encode();
        for (result, count) in [("accepted", 1), ("rejected", 3)] {
            let line = format!("keel_fenced_writes_total{{component=\"kube-scheduler\",result=\"{result}\"}} {count}");
            assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
        }
        let last = format!("keel_fence_last_accepted_revision{{name=\"kube-scheduler\"}} {}", kept.revision);
        assert!(metrics.lines().any(|l| l == last), "no `{last}` in:\n{metrics}");
    }
}

/// The same bodies against one kind of store; each test gets a fresh store, stopped at the end
/// (and, if the body panics, killed by the fixture's drop).
macro_rules! suite {
    ($name:ident, $start:expr, [$($body:ident),* $(,)?]) => {
        mod $name {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let fixture = $start.await;
                    bodies::$body(&fixture).await;
                    fixture.stop().await;
                }
            )*
        }
    };
}

macro_rules! all_bodies {
    ($name:ident, $start:expr) => {
        suite!(
            $name,
            $start,
            [
                put_and_range,
                compaction,
                txn_patterns,
                delete_returns_previous_values,
                watch_from_the_past,
                watch_catches_up_under_writes,
                watch_from_now,
                dropping_a_watch_cancels_it,
                lease_lifecycle,
                request_size_limit,
                fenced_writes,
            ]
        );
    };
}

all_bodies!(embedded, Fixture::embedded());
all_bodies!(keel_process, Fixture::keel());
all_bodies!(etcd, Fixture::etcd());
