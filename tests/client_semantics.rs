//! Acceptance tests for the etcd 3.4 semantics that are easy to get wrong (see
//! `/work/shared/reference/etcd-api.md`, "Semantics that are easy to get wrong"), driven through
//! the real `etcd-client` crate against a real `keel store` process.
//!
//! Every test here must also pass against real etcd 3.4 (`KEEL_TEST_TARGET=etcd`): that is how
//! we know each one encodes etcd's behaviour and not Keel's.

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_grpc_error, client, grpc_code, next_watch_msg};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use tempfile::TempDir;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// A fresh server (the target `KEEL_TEST_TARGET` selects) with its own data dir, plus a client.
async fn setup() -> (TempDir, Server, Client) {
    setup_with(&[]).await
}

/// Like `setup`, passing `flags` to the server whichever target it is.
async fn setup_with(flags: &[&str]) -> (TempDir, Server, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_flags(dir.path(), flags);
    let c = client(&server.endpoint).await;
    (dir, server, c)
}

/// The store's current revision, from a Range's header.
async fn current_rev(c: &mut Client) -> i64 {
    c.get("probe/current-revision", None).await.expect("get").header().expect("header").revision()
}

/// Puts and returns the revision the put created.
async fn put(c: &mut Client, key: &str, value: &str) -> i64 {
    c.put(key, value, None).await.expect("put").header().expect("header").revision()
}

async fn keys_of(c: &mut Client, key: impl Into<Vec<u8>>, options: GetOptions) -> Vec<Vec<u8>> {
    c.get(key, Some(options)).await.expect("get").kvs().iter().map(|kv| kv.key().to_vec()).collect()
}

fn b(keys: &[&str]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.as_bytes().to_vec()).collect()
}

/// Runs a txn with one compare; returns whether it took the success branch.
async fn compare_holds(c: &mut Client, compare: Compare) -> bool {
    c.txn(Txn::new().when([compare])).await.expect("txn").succeeded()
}

/// One flattened watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    watch_id: i64,
    kind: EventType,
    key: Vec<u8>,
    value: Vec<u8>,
    mod_rev: i64,
    prev_value: Option<Vec<u8>>,
}

fn events_of(resp: &WatchResponse) -> Vec<Ev> {
    resp.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event has kv");
            Ev {
                watch_id: resp.watch_id(),
                kind: e.event_type(),
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
                mod_rev: kv.mod_revision(),
                prev_value: e.prev_kv().map(|p| p.value().to_vec()),
            }
        })
        .collect()
}

/// Waits for the `created` response of a new watch and returns it.
async fn expect_created(stream: &mut WatchStream) -> WatchResponse {
    let resp = next_watch_msg(stream, 10).await;
    assert!(resp.created(), "first response of a watch must be `created`, got {resp:?}");
    assert!(resp.events().is_empty(), "the created response carries no events: {resp:?}");
    resp
}

/// Collects events until one with mod revision >= `until_rev` has arrived (at most 10 s).
async fn collect_until(stream: &mut WatchStream, until_rev: i64) -> Vec<Ev> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out: Vec<Ev> = Vec::new();
    while out.last().map(|e| e.mod_rev).unwrap_or(0) < until_rev {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(resp))) => resp,
            other => panic!("waiting for revision {until_rev}: got {other:?}; events so far {out:?}"),
        };
        assert!(!resp.canceled(), "watch canceled unexpectedly: {resp:?}");
        out.extend(events_of(&resp));
    }
    out
}

/// Asserts no watch response arrives for `ms` milliseconds.
async fn expect_silence(stream: &mut WatchStream, ms: u64) {
    if let Ok(msg) = tokio::time::timeout(Duration::from_millis(ms), stream.message()).await {
        panic!("expected no watch response, got {msg:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Revisions
// ---------------------------------------------------------------------------------------------

/// One revision per write request: both puts of one txn carry the same mod revision.
#[tokio::test(flavor = "multi_thread")]
async fn txn_with_two_puts_gives_both_keys_the_same_revision() {
    let (_dir, _server, mut c) = setup().await;
    let before = put(&mut c, "other", "x").await;
    let resp = c.txn(Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("b", "2", None)])).await.expect("txn");
    let rev = resp.header().expect("header").revision();
    assert_eq!(rev, before + 1, "a txn with two puts is one revision");
    for key in ["a", "b"] {
        let got = c.get(key, None).await.expect("get");
        assert_eq!(got.kvs()[0].mod_revision(), rev, "mod_revision of {key}");
        assert_eq!(got.kvs()[0].create_revision(), rev, "create_revision of {key}");
    }
    assert_eq!(current_rev(&mut c).await, rev);
}

/// A delete that matches nothing does not create a revision.
#[tokio::test(flavor = "multi_thread")]
async fn delete_matching_nothing_does_not_bump_revision() {
    let (_dir, _server, mut c) = setup().await;
    let rev = put(&mut c, "present", "x").await;
    let single = c.delete("absent", None).await.expect("delete");
    assert_eq!(single.deleted(), 0);
    assert_eq!(single.header().expect("header").revision(), rev, "header of the no-op delete");
    let ranged = c.delete("zz", Some(DeleteOptions::new().with_prefix())).await.expect("delete range");
    assert_eq!(ranged.deleted(), 0);
    assert_eq!(ranged.header().expect("header").revision(), rev);
    let in_txn = c.txn(Txn::new().and_then([TxnOp::delete("absent", None)])).await.expect("txn delete");
    assert_eq!(in_txn.header().expect("header").revision(), rev, "a txn whose only write deletes nothing");
    assert_eq!(current_rev(&mut c).await, rev, "no-op deletes must not bump the revision");
    assert_eq!(put(&mut c, "next", "y").await, rev + 1, "the next write is exactly one revision later");
}

/// A read-only txn (ranges only, or nothing at all) does not create a revision.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_txn_does_not_bump_revision() {
    let (_dir, _server, mut c) = setup().await;
    let rev = put(&mut c, "k", "v").await;
    let ro = c
        .txn(
            Txn::new()
                .when([Compare::value("k", CompareOp::Equal, "v")])
                .and_then([TxnOp::get("k", None), TxnOp::get("nothing", None)])
                .or_else([TxnOp::put("k", "never", None)]),
        )
        .await
        .expect("txn");
    assert!(ro.succeeded());
    assert_eq!(ro.header().expect("header").revision(), rev);
    let empty = c.txn(Txn::new()).await.expect("empty txn");
    assert_eq!(empty.header().expect("header").revision(), rev);
    assert_eq!(current_rev(&mut c).await, rev, "read-only txns must not bump the revision");
    assert_eq!(put(&mut c, "k2", "v").await, rev + 1);
}

/// Re-putting the same value is a write: new revision, version + 1.
#[tokio::test(flavor = "multi_thread")]
async fn reput_same_value_bumps_revision_and_version() {
    let (_dir, _server, mut c) = setup().await;
    let r1 = put(&mut c, "k", "same").await;
    let r2 = put(&mut c, "k", "same").await;
    assert_eq!(r2, r1 + 1, "re-put of the same value must bump the revision");
    let kv = c.get("k", None).await.expect("get").kvs()[0].clone();
    assert_eq!(kv.version(), 2);
    assert_eq!(kv.mod_revision(), r2);
    assert_eq!(kv.create_revision(), r1);
}

/// After delete + re-create, version restarts at 1 and create_revision is the new revision.
#[tokio::test(flavor = "multi_thread")]
async fn delete_and_recreate_resets_version_and_create_revision() {
    let (_dir, _server, mut c) = setup().await;
    let r1 = put(&mut c, "k", "a").await;
    put(&mut c, "k", "b").await;
    let del = c.delete("k", None).await.expect("delete");
    assert_eq!(del.deleted(), 1);
    let r4 = put(&mut c, "k", "c").await;
    let kv = c.get("k", None).await.expect("get").kvs()[0].clone();
    assert_eq!(kv.version(), 1, "version restarts at 1");
    assert_eq!(kv.create_revision(), r4, "create_revision is the re-creation's revision");
    assert_ne!(kv.create_revision(), r1);
    assert_eq!(kv.mod_revision(), r4);
}

/// header.revision is the current revision even when reading at an old revision.
#[tokio::test(flavor = "multi_thread")]
async fn header_revision_is_current_when_reading_old_revision() {
    let (_dir, _server, mut c) = setup().await;
    let r1 = put(&mut c, "k", "v1").await;
    put(&mut c, "k", "v2").await;
    let r3 = put(&mut c, "other", "x").await;
    let old = c.get("k", Some(GetOptions::new().with_revision(r1))).await.expect("get at r1");
    assert_eq!(old.kvs()[0].value(), b"v1", "value at the old revision");
    assert_eq!(old.header().expect("header").revision(), r3, "header.revision must be current, not r1");
}

// ---------------------------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------------------------

/// range_end "\0" means every key >= key.
#[tokio::test(flavor = "multi_thread")]
async fn range_end_nul_means_all_keys_from_key() {
    let (_dir, _server, mut c) = setup().await;
    for k in ["a", "b", "ba", "c", "zz"] {
        put(&mut c, k, "v").await;
    }
    let got = keys_of(&mut c, "b", GetOptions::new().with_range(vec![0u8])).await;
    assert_eq!(got, b(&["b", "ba", "c", "zz"]));
}

/// An empty range_end means the single key, not a prefix.
#[tokio::test(flavor = "multi_thread")]
async fn empty_range_end_means_single_key() {
    let (_dir, _server, mut c) = setup().await;
    for k in ["a", "ab", "b"] {
        put(&mut c, k, "v").await;
    }
    let resp = c.get("a", None).await.expect("get");
    let got: Vec<_> = resp.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(got, b(&["a"]));
    assert_eq!(resp.count(), 1);
}

/// `--prefix` on the empty key sends key "\0", range_end "\0": every key.
#[tokio::test(flavor = "multi_thread")]
async fn prefix_on_empty_key_means_all_keys() {
    let (_dir, _server, mut c) = setup().await;
    let keys: [&[u8]; 4] = [b"\x01low", b"a", b"zebra", b"\xff\xfehigh"];
    for k in keys {
        c.put(k, "v", None).await.expect("put");
    }
    let expected: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    let via_prefix = keys_of(&mut c, "", GetOptions::new().with_prefix()).await;
    assert_eq!(via_prefix, expected);
    let explicit = keys_of(&mut c, vec![0u8], GetOptions::new().with_range(vec![0u8])).await;
    assert_eq!(explicit, expected);
}

/// count = keys in range; more = true when limit truncated.
#[tokio::test(flavor = "multi_thread")]
async fn limit_sets_more_and_count_counts_whole_range() {
    let (_dir, _server, mut c) = setup().await;
    for k in ["p/1", "p/2", "p/3"] {
        put(&mut c, k, "v").await;
    }
    put(&mut c, "q", "outside").await;
    let one = c.get("p/", Some(GetOptions::new().with_prefix().with_limit(1))).await.expect("get");
    assert_eq!(one.kvs().len(), 1);
    assert_eq!(one.kvs()[0].key(), b"p/1");
    assert!(one.more(), "limit 1 over 3 keys: more");
    assert_eq!(one.count(), 3, "count is every key in the range");

    let three = c.get("p/", Some(GetOptions::new().with_prefix().with_limit(3))).await.expect("get");
    assert_eq!(three.kvs().len(), 3);
    assert!(!three.more(), "limit == number of keys: not more");
    assert_eq!(three.count(), 3);

    let all = c.get("p/", Some(GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(all.kvs().len(), 3);
    assert!(!all.more());
    assert_eq!(all.count(), 3);

    let count_only = c.get("p/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("get");
    assert!(count_only.kvs().is_empty(), "count_only returns no kvs");
    assert_eq!(count_only.count(), 3);
}

/// With a sort order, the server fetches the whole range, sorts, then truncates to limit.
#[tokio::test(flavor = "multi_thread")]
async fn sort_fetches_all_then_sorts_then_truncates() {
    let (_dir, _server, mut c) = setup().await;
    for k in ["s/a", "s/b", "s/c", "s/d"] {
        put(&mut c, k, "v").await;
    }
    let by_mod = c
        .get("s/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Mod, SortOrder::Descend).with_limit(2)))
        .await
        .expect("get");
    let got: Vec<_> = by_mod.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(got, b(&["s/d", "s/c"]), "sort by mod desc, then truncate to 2");
    assert!(by_mod.more());
    assert_eq!(by_mod.count(), 4);

    let by_key = keys_of(
        &mut c,
        "s/",
        GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(3),
    )
    .await;
    assert_eq!(by_key, b(&["s/d", "s/c", "s/b"]));

    let by_value = keys_of(
        &mut c,
        "s/",
        GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Descend).with_limit(1),
    )
    .await;
    assert_eq!(by_value, b(&["s/d"]));
}

/// With min/max revision filters, the server fetches the whole range, filters, then truncates;
/// `count` is still the number of keys in the range (before filtering).
#[tokio::test(flavor = "multi_thread")]
async fn revision_filters_fetch_all_then_filter_then_truncate() {
    let (_dir, _server, mut c) = setup().await;
    for k in ["f/a", "f/b", "f/c", "f/d"] {
        put(&mut c, k, "v").await;
    }
    let r_d2 = put(&mut c, "f/d", "v2").await;
    let r_c2 = put(&mut c, "f/c", "v2").await;

    let resp = c
        .get("f/", Some(GetOptions::new().with_prefix().with_min_mod_revision(r_d2).with_limit(1)))
        .await
        .expect("get");
    let got: Vec<_> = resp.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(got, b(&["f/c"]), "filter first (c, d remain), then truncate to 1");
    assert!(resp.more(), "two keys passed the filter, limit 1");
    assert_eq!(resp.count(), 4, "count is the keys in the range, before filtering");

    let resp = c
        .get("f/", Some(GetOptions::new().with_prefix().with_min_mod_revision(r_c2).with_limit(2)))
        .await
        .expect("get");
    let got: Vec<_> = resp.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(got, b(&["f/c"]));
    assert!(!resp.more());
    assert_eq!(resp.count(), 4);

    let created_late =
        keys_of(&mut c, "f/", GetOptions::new().with_prefix().with_min_create_revision(r_d2 - 1).with_limit(1)).await;
    assert_eq!(created_late, b(&["f/d"]));

    let modified_early = keys_of(
        &mut c,
        "f/",
        GetOptions::new().with_prefix().with_max_mod_revision(r_d2 - 1).with_sort(SortTarget::Key, SortOrder::Descend),
    )
    .await;
    assert_eq!(modified_early, b(&["f/b", "f/a"]));
}

/// A sort target other than KEY with order NONE sorts ascending by that target.
#[tokio::test(flavor = "multi_thread")]
async fn non_key_sort_target_with_order_none_sorts_ascending() {
    let (_dir, _server, mut c) = setup().await;
    // Written in reverse key order, so ascending mod/create revision is descending key order.
    for k in ["n/d", "n/c", "n/b", "n/a"] {
        put(&mut c, k, "v").await;
    }
    // Versions: n/b gets 3, n/d gets 2, others 1.
    put(&mut c, "n/b", "v").await;
    put(&mut c, "n/b", "v").await;
    put(&mut c, "n/d", "v").await;
    for target in [SortTarget::Create, SortTarget::Mod] {
        let got = keys_of(&mut c, "n/", GetOptions::new().with_prefix().with_sort(target, SortOrder::None)).await;
        let expected = if target == SortTarget::Create {
            b(&["n/d", "n/c", "n/b", "n/a"])
        } else {
            b(&["n/c", "n/a", "n/b", "n/d"])
        };
        assert_eq!(got, expected, "sort by {target:?} with order NONE must be ascending");
    }
    let by_version = c
        .get("n/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Version, SortOrder::None)))
        .await
        .expect("get");
    let versions: Vec<i64> = by_version.kvs().iter().map(|kv| kv.version()).collect();
    assert_eq!(versions, vec![1, 1, 2, 3], "ascending by version");
    assert_eq!(by_version.kvs()[3].key(), b"n/b");
    assert_eq!(by_version.kvs()[2].key(), b"n/d");
}

/// The etcd 3.4 detail that follows from the rule above: order NONE is not a "sort order", so a
/// limit is applied while fetching (limit + 1 keys in key order), and only those are then sorted
/// ascending and truncated.
#[tokio::test(flavor = "multi_thread")]
async fn non_key_sort_with_order_none_and_limit_sorts_only_the_fetched_keys() {
    let (_dir, _server, mut c) = setup().await;
    for k in ["m/d", "m/c", "m/b", "m/a"] {
        put(&mut c, k, "v").await;
    }
    let resp = c
        .get("m/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Mod, SortOrder::None).with_limit(2)))
        .await
        .expect("get");
    let got: Vec<_> = resp.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    // Fetched a, b, c (limit + 1, key order); ascending by mod: c, b, a; truncated: c, b.
    assert_eq!(got, b(&["m/c", "m/b"]));
    assert!(resp.more());
    assert_eq!(resp.count(), 4);
}

// ---------------------------------------------------------------------------------------------
// Error texts and codes
// ---------------------------------------------------------------------------------------------

/// Reading at a compacted revision: OutOfRange "...has been compacted".
#[tokio::test(flavor = "multi_thread")]
async fn read_at_compacted_revision_is_out_of_range() {
    let (_dir, _server, mut c) = setup().await;
    let r1 = put(&mut c, "k", "1").await;
    put(&mut c, "k", "2").await;
    let r3 = put(&mut c, "k", "3").await;
    c.compact(r3, None).await.expect("compact");
    assert_grpc_error(
        c.get("k", Some(GetOptions::new().with_revision(r1))).await,
        grpc_code::OUT_OF_RANGE,
        COMPACTED,
        "range at a compacted revision",
    );
    let at = c.get("k", Some(GetOptions::new().with_revision(r3))).await.expect("read at the compact revision");
    assert_eq!(at.kvs()[0].value(), b"3", "the compact revision itself stays readable");
}

/// Compacting at or below the current compact revision: OutOfRange "...has been compacted".
#[tokio::test(flavor = "multi_thread")]
async fn compact_at_or_below_compact_revision_is_out_of_range() {
    let (_dir, _server, mut c) = setup().await;
    for i in 0..4 {
        put(&mut c, "k", &i.to_string()).await;
    }
    let rev = current_rev(&mut c).await;
    c.compact(rev - 1, None).await.expect("first compact");
    assert_grpc_error(
        c.compact(rev - 1, None).await,
        grpc_code::OUT_OF_RANGE,
        COMPACTED,
        "compact at the same revision",
    );
    assert_grpc_error(c.compact(rev - 2, None).await, grpc_code::OUT_OF_RANGE, COMPACTED, "compact below it");
    c.compact(rev, None).await.expect("compacting forward still works");
}

/// Reading (or compacting) at a revision after the current one: OutOfRange "...future revision".
#[tokio::test(flavor = "multi_thread")]
async fn future_revision_is_out_of_range() {
    let (_dir, _server, mut c) = setup().await;
    let rev = put(&mut c, "k", "v").await;
    assert_grpc_error(
        c.get("k", Some(GetOptions::new().with_revision(rev + 1))).await,
        grpc_code::OUT_OF_RANGE,
        FUTURE,
        "range at a future revision",
    );
    assert_grpc_error(c.compact(rev + 5, None).await, grpc_code::OUT_OF_RANGE, FUTURE, "compact at a future revision");
    assert_eq!(current_rev(&mut c).await, rev);
}

/// Revoking an unknown lease: NotFound "etcdserver: requested lease not found".
#[tokio::test(flavor = "multi_thread")]
async fn revoke_unknown_lease_is_not_found() {
    let (_dir, _server, mut c) = setup().await;
    assert_grpc_error(c.lease_revoke(0x1234_5678).await, grpc_code::NOT_FOUND, LEASE_NOT_FOUND, "revoke unknown lease");
}

/// Putting with an unknown lease: NotFound "etcdserver: requested lease not found", nothing written.
#[tokio::test(flavor = "multi_thread")]
async fn put_with_unknown_lease_is_not_found() {
    let (_dir, _server, mut c) = setup().await;
    let rev = put(&mut c, "before", "v").await;
    assert_grpc_error(
        c.put("k", "v", Some(PutOptions::new().with_lease(0x7777))).await,
        grpc_code::NOT_FOUND,
        LEASE_NOT_FOUND,
        "put with unknown lease",
    );
    assert!(c.get("k", None).await.expect("get").kvs().is_empty());
    assert_eq!(current_rev(&mut c).await, rev);
}

/// ignore_value on a missing key: InvalidArgument "etcdserver: key not found".
#[tokio::test(flavor = "multi_thread")]
async fn put_ignore_value_on_missing_key_is_invalid_argument() {
    let (_dir, _server, mut c) = setup().await;
    assert_grpc_error(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await,
        grpc_code::INVALID_ARGUMENT,
        "etcdserver: key not found",
        "ignore_value on a missing key",
    );
    // On an existing key it keeps the value.
    put(&mut c, "present", "kept").await;
    c.put("present", "", Some(PutOptions::new().with_ignore_value())).await.expect("ignore_value on existing key");
    let kv = c.get("present", None).await.expect("get").kvs()[0].clone();
    assert_eq!(kv.value(), b"kept");
    assert_eq!(kv.version(), 2);
}

/// The empty key: InvalidArgument "etcdserver: key is not provided" (put, range, delete, in a txn).
#[tokio::test(flavor = "multi_thread")]
async fn empty_key_is_not_provided() {
    let (_dir, _server, mut c) = setup().await;
    const MSG: &str = "etcdserver: key is not provided";
    assert_grpc_error(c.put("", "v", None).await, grpc_code::INVALID_ARGUMENT, MSG, "put empty key");
    assert_grpc_error(c.get("", None).await, grpc_code::INVALID_ARGUMENT, MSG, "range empty key");
    assert_grpc_error(c.delete("", None).await, grpc_code::INVALID_ARGUMENT, MSG, "delete empty key");
    assert_grpc_error(
        c.txn(Txn::new().and_then([TxnOp::put("", "v", None)])).await,
        grpc_code::INVALID_ARGUMENT,
        MSG,
        "txn put empty key",
    );
}

/// The same key written twice in one txn: InvalidArgument "...duplicate key given in txn request".
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_key_in_txn_is_invalid_argument() {
    let (_dir, _server, mut c) = setup().await;
    const MSG: &str = "etcdserver: duplicate key given in txn request";
    let rev = put(&mut c, "k", "0").await;
    assert_grpc_error(
        c.txn(Txn::new().and_then([TxnOp::put("k", "1", None), TxnOp::put("k", "2", None)])).await,
        grpc_code::INVALID_ARGUMENT,
        MSG,
        "two puts of one key",
    );
    assert_grpc_error(
        c.txn(
            Txn::new()
                .or_else([TxnOp::put("k/x", "1", None), TxnOp::delete("k/", Some(DeleteOptions::new().with_prefix()))]),
        )
        .await,
        grpc_code::INVALID_ARGUMENT,
        MSG,
        "a put inside a deleted range",
    );
    assert_eq!(current_rev(&mut c).await, rev, "rejected txns write nothing");
    // Reading a key twice is fine.
    c.txn(Txn::new().and_then([TxnOp::get("k", None), TxnOp::get("k", None)])).await.expect("two gets of one key");
}

/// A request over the default 1.5 MiB limit: InvalidArgument "etcdserver: request is too large".
#[tokio::test(flavor = "multi_thread")]
async fn request_over_default_limit_is_too_large() {
    let (_dir, _server, mut c) = setup().await;
    let rev = put(&mut c, "small", "v").await;
    let big = vec![b'x'; 1_600_000];
    assert_grpc_error(
        c.put("big", big, None).await,
        grpc_code::INVALID_ARGUMENT,
        "etcdserver: request is too large",
        "1.6 MB put",
    );
    assert_eq!(current_rev(&mut c).await, rev);
    // Just under the limit is accepted.
    c.put("fits", vec![b'y'; 1_500_000], None).await.expect("1.5 MB put fits under 1.5 MiB");
}

// ---------------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------------

/// LeaseTimeToLive on an unknown lease is not an error: TTL -1, grantedTTL 0.
#[tokio::test(flavor = "multi_thread")]
async fn time_to_live_of_unknown_lease_is_minus_one() {
    let (_dir, _server, mut c) = setup().await;
    let resp = c.lease_time_to_live(0x4242, None).await.expect("TimeToLive of an unknown lease is not an error");
    assert_eq!(resp.id(), 0x4242);
    assert_eq!(resp.ttl(), -1);
    assert_eq!(resp.granted_ttl(), 0);
}

/// The minimum lease TTL is enforced: grant 1 gives TTL 2 on a default single member.
#[tokio::test(flavor = "multi_thread")]
async fn lease_ttl_below_minimum_is_raised() {
    let (_dir, _server, mut c) = setup().await;
    let lease = c.lease_grant(1, None).await.expect("grant");
    assert_eq!(lease.ttl(), 2, "grant 1 must be raised to the minimum TTL 2");
    let ttl = c.lease_time_to_live(lease.id(), None).await.expect("ttl");
    assert_eq!(ttl.granted_ttl(), 2);
    assert!((1..=2).contains(&ttl.ttl()), "remaining TTL {}", ttl.ttl());
    let bigger = c.lease_grant(5, None).await.expect("grant 5");
    assert_eq!(bigger.ttl(), 5, "TTLs above the minimum are kept");
}

/// Lease expiry deletes all of its keys in ONE revision, seen as ONE WatchResponse.
#[tokio::test(flavor = "multi_thread")]
async fn lease_expiry_deletes_all_keys_in_one_revision() {
    let (_dir, _server, mut c) = setup().await;
    let lease = c.lease_grant(1, None).await.expect("grant").id();
    for k in ["l/1", "l/2", "l/3"] {
        c.put(k, "v", Some(PutOptions::new().with_lease(lease))).await.expect("put with lease");
    }
    let last = put(&mut c, "l/keep", "no lease").await;
    let mut stream = c.watch("l/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
    expect_created(&mut stream).await;
    let resp = next_watch_msg(&mut stream, 15).await;
    let events = events_of(&resp);
    let keys: Vec<_> = events.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys, b(&["l/1", "l/2", "l/3"]), "all three deletes in the first response: {resp:?}");
    assert!(events.iter().all(|e| e.kind == EventType::Delete), "{events:?}");
    assert!(events.iter().all(|e| e.mod_rev == last + 1), "one revision for the whole expiry: {events:?}");
    let rest = c.get("l/", Some(GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(rest.kvs().len(), 1);
    assert_eq!(rest.kvs()[0].key(), b"l/keep");
    assert_eq!(rest.header().expect("header").revision(), last + 1);
}

// ---------------------------------------------------------------------------------------------
// Txn compares
// ---------------------------------------------------------------------------------------------

/// VERSION compares with every result, true and false.
#[tokio::test(flavor = "multi_thread")]
async fn txn_compare_version_all_results() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "k", "a").await;
    put(&mut c, "k", "b").await; // version 2
    use CompareOp::*;
    let cases = [
        (Equal, 2, true),
        (Equal, 1, false),
        (Greater, 1, true),
        (Greater, 2, false),
        (Less, 3, true),
        (Less, 2, false),
        (NotEqual, 1, true),
        (NotEqual, 2, false),
    ];
    for (op, v, want) in cases {
        assert_eq!(compare_holds(&mut c, Compare::version("k", op, v)).await, want, "version {op:?} {v}");
    }
}

/// CREATE (create_revision) compares with every result.
#[tokio::test(flavor = "multi_thread")]
async fn txn_compare_create_all_results() {
    let (_dir, _server, mut c) = setup().await;
    let cr = put(&mut c, "k", "a").await;
    put(&mut c, "k", "b").await;
    use CompareOp::*;
    let cases = [
        (Equal, cr, true),
        (Equal, cr + 1, false),
        (Greater, cr - 1, true),
        (Greater, cr, false),
        (Less, cr + 1, true),
        (Less, cr, false),
        (NotEqual, cr + 1, true),
        (NotEqual, cr, false),
    ];
    for (op, v, want) in cases {
        assert_eq!(compare_holds(&mut c, Compare::create_revision("k", op, v)).await, want, "create {op:?} {v}");
    }
}

/// MOD (mod_revision) compares with every result.
#[tokio::test(flavor = "multi_thread")]
async fn txn_compare_mod_all_results() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "k", "a").await;
    let mr = put(&mut c, "k", "b").await;
    put(&mut c, "other", "x").await;
    use CompareOp::*;
    let cases = [
        (Equal, mr, true),
        (Equal, mr - 1, false),
        (Greater, mr - 1, true),
        (Greater, mr, false),
        (Less, mr + 1, true),
        (Less, mr, false),
        (NotEqual, mr + 1, true),
        (NotEqual, mr, false),
    ];
    for (op, v, want) in cases {
        assert_eq!(compare_holds(&mut c, Compare::mod_revision("k", op, v)).await, want, "mod {op:?} {v}");
    }
}

/// VALUE compares (bytewise) with every result.
#[tokio::test(flavor = "multi_thread")]
async fn txn_compare_value_all_results() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "k", "m").await;
    use CompareOp::*;
    let cases = [
        (Equal, "m", true),
        (Equal, "n", false),
        (Greater, "l", true),
        (Greater, "mm", false),
        (Greater, "m", false),
        (Less, "ma", true),
        (Less, "m", false),
        (NotEqual, "", true),
        (NotEqual, "m", false),
    ];
    for (op, v, want) in cases {
        assert_eq!(compare_holds(&mut c, Compare::value("k", op, v)).await, want, "value {op:?} {v:?}");
    }
}

/// LEASE compares with every result; a key without a lease has lease 0.
#[tokio::test(flavor = "multi_thread")]
async fn txn_compare_lease_all_results() {
    let (_dir, _server, mut c) = setup().await;
    let id = c.lease_grant(60, None).await.expect("grant").id();
    c.put("k", "v", Some(PutOptions::new().with_lease(id))).await.expect("put with lease");
    put(&mut c, "nolease", "v").await;
    use CompareOp::*;
    let cases = [
        (Equal, id, true),
        (Equal, id + 1, false),
        (Greater, id - 1, true),
        (Greater, id, false),
        (Less, id + 1, true),
        (Less, id, false),
        (NotEqual, 0, true),
        (NotEqual, id, false),
    ];
    for (op, v, want) in cases {
        assert_eq!(compare_holds(&mut c, Compare::lease("k", op, v)).await, want, "lease {op:?} {v}");
    }
    assert!(compare_holds(&mut c, Compare::lease("nolease", Equal, 0)).await, "no lease compares as 0");
}

/// The branch taken and its responses: success ops on true, failure ops on false.
#[tokio::test(flavor = "multi_thread")]
async fn txn_runs_the_branch_the_compares_select() {
    let (_dir, _server, mut c) = setup().await;
    let r = put(&mut c, "k", "v").await;
    let txn = |cmp: Compare| {
        Txn::new().when([cmp]).and_then([TxnOp::put("branch", "success", None)]).or_else([TxnOp::get("k", None)])
    };
    let ok = c.txn(txn(Compare::mod_revision("k", CompareOp::Equal, r))).await.expect("txn");
    assert!(ok.succeeded());
    assert!(matches!(ok.op_responses().as_slice(), [TxnOpResponse::Put(_)]), "{ok:?}");
    let bad = c.txn(txn(Compare::mod_revision("k", CompareOp::Equal, r + 100))).await.expect("txn");
    assert!(!bad.succeeded());
    match bad.op_responses().as_slice() {
        [TxnOpResponse::Get(g)] => assert_eq!(g.kvs()[0].value(), b"v"),
        other => panic!("expected one range response, got {other:?}"),
    }
    assert_eq!(c.get("branch", None).await.expect("get").kvs()[0].value(), b"success");
}

/// On a missing key a VALUE compare is false whatever the result operator.
#[tokio::test(flavor = "multi_thread")]
async fn txn_value_compare_on_missing_key_is_false() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "present", "v").await;
    use CompareOp::*;
    for (op, v) in [(Equal, ""), (NotEqual, ""), (NotEqual, "x"), (Greater, ""), (Less, "zzz")] {
        assert!(!compare_holds(&mut c, Compare::value("missing", op, v)).await, "value {op:?} {v:?} on a missing key");
    }
}

/// On a missing key VERSION, CREATE, MOD and LEASE compare against 0.
#[tokio::test(flavor = "multi_thread")]
async fn txn_other_compares_on_missing_key_use_zero() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "present", "v").await;
    use CompareOp::*;
    let makers: [(&str, fn(&'static str, CompareOp, i64) -> Compare); 4] = [
        ("version", |k, op, v| Compare::version(k, op, v)),
        ("create", |k, op, v| Compare::create_revision(k, op, v)),
        ("mod", |k, op, v| Compare::mod_revision(k, op, v)),
        ("lease", |k, op, v| Compare::lease(k, op, v)),
    ];
    for (name, make) in makers {
        for (op, v, want) in [
            (Equal, 0, true),
            (NotEqual, 0, false),
            (Less, 1, true),
            (Greater, 0, false),
            (Greater, -1, true),
            (Equal, 1, false),
        ] {
            assert_eq!(compare_holds(&mut c, make("missing", op, v)).await, want, "{name} {op:?} {v} on a missing key");
        }
    }
}

/// With range_end, every key in the range must satisfy the compare.
#[tokio::test(flavor = "multi_thread")]
async fn txn_range_compare_requires_every_key() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "r/a", "same").await;
    put(&mut c, "r/b", "same").await;
    put(&mut c, "r/c", "same").await;
    assert!(compare_holds(&mut c, Compare::value("r/", CompareOp::Equal, "same").with_prefix()).await);
    assert!(compare_holds(&mut c, Compare::version("r/", CompareOp::Equal, 1).with_prefix()).await);
    put(&mut c, "r/b", "different").await;
    assert!(
        !compare_holds(&mut c, Compare::value("r/", CompareOp::Equal, "same").with_prefix()).await,
        "one key differs"
    );
    assert!(
        !compare_holds(&mut c, Compare::version("r/", CompareOp::Equal, 1).with_prefix()).await,
        "one key has version 2"
    );
    assert!(compare_holds(&mut c, Compare::version("r/", CompareOp::Less, 3).with_prefix()).await, "all versions < 3");
    // Range [r/a, r/b) holds only r/a, which still satisfies.
    assert!(compare_holds(&mut c, Compare::value("r/a", CompareOp::Equal, "same").with_range("r/b")).await);
    // An empty range behaves like a missing key.
    assert!(!compare_holds(&mut c, Compare::value("none/", CompareOp::NotEqual, "x").with_prefix()).await);
    assert!(compare_holds(&mut c, Compare::version("none/", CompareOp::Equal, 0).with_prefix()).await);
}

// ---------------------------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------------------------

/// First response is `created` with per-stream watch IDs 0, 1, ... and header.revision = current.
#[tokio::test(flavor = "multi_thread")]
async fn watch_created_first_with_per_stream_ids_and_current_revision() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "a", "1").await;
    let rev = put(&mut c, "b", "2").await;
    let mut s1 = c.watch("a", None).await.expect("watch");
    let created = expect_created(&mut s1).await;
    assert_eq!(created.watch_id(), 0);
    assert_eq!(created.header().expect("header").revision(), rev);
    s1.watch("b", Some(WatchOptions::new().with_start_revision(1))).await.expect("second watch");
    let second = expect_created(&mut s1).await;
    assert_eq!(second.watch_id(), 1, "IDs count up per stream");
    assert_eq!(second.header().expect("header").revision(), rev);
    let mut s2 = c.watch("c", None).await.expect("watch on a new stream");
    let third = expect_created(&mut s2).await;
    assert_eq!(third.watch_id(), 0, "a new stream starts again at 0");
    // The history of watch 1 (b at rev) comes after its created response.
    let ev = events_of(&next_watch_msg(&mut s1, 10).await);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].watch_id, ev[0].key.as_slice(), ev[0].mod_rev), (1, &b"b"[..], rev));
}

/// History, then live events, with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn watch_history_then_live_without_gap_or_duplicate() {
    let (_dir, _server, mut c) = setup().await;
    let mut history = Vec::new();
    for i in 0..6 {
        history.push(put(&mut c, "h", &format!("old{i}")).await);
        put(&mut c, "unwatched", "x").await;
    }
    let from = history[2];
    let mut stream = c.watch("h", Some(WatchOptions::new().with_start_revision(from))).await.expect("watch");
    expect_created(&mut stream).await;
    let mut live = Vec::new();
    for i in 0..4 {
        live.push(put(&mut c, "h", &format!("new{i}")).await);
    }
    let got = collect_until(&mut stream, *live.last().unwrap()).await;
    let want: Vec<i64> = history[2..].iter().chain(live.iter()).copied().collect();
    let revs: Vec<i64> = got.iter().map(|e| e.mod_rev).collect();
    assert_eq!(revs, want, "exactly the history from {from} then the live writes");
    let values: Vec<_> = got.iter().map(|e| String::from_utf8(e.value.clone()).unwrap()).collect();
    assert_eq!(values, ["old2", "old3", "old4", "old5", "new0", "new1", "new2", "new3"]);
    expect_silence(&mut stream, 300).await;
}

/// Start revision below the compact revision: created, then canceled with compact_revision,
/// header.revision 0, empty cancel_reason.
#[tokio::test(flavor = "multi_thread")]
async fn watch_from_compacted_revision_is_created_then_canceled() {
    let (_dir, _server, mut c) = setup().await;
    for i in 0..5 {
        put(&mut c, "k", &i.to_string()).await;
    }
    let rev = current_rev(&mut c).await;
    let compact = rev - 1;
    c.compact(compact, None).await.expect("compact");
    let mut stream = c.watch("k", Some(WatchOptions::new().with_start_revision(2))).await.expect("watch");
    let created = expect_created(&mut stream).await;
    assert_eq!(created.watch_id(), 0);
    assert!(!created.canceled());
    let canceled = next_watch_msg(&mut stream, 10).await;
    assert!(canceled.canceled(), "expected canceled, got {canceled:?}");
    assert_eq!(canceled.watch_id(), 0);
    assert_eq!(canceled.compact_revision(), compact);
    assert_eq!(canceled.cancel_reason(), "");
    assert!(canceled.events().is_empty());
    assert_eq!(canceled.header().map(|h| h.revision()), Some(0), "header.revision is 0 on this response");
}

/// A progress request is answered with watch_id -1, no events, header.revision = current.
#[tokio::test(flavor = "multi_thread")]
async fn watch_progress_request_answers_minus_one_with_current_revision() {
    let (_dir, _server, mut c) = setup().await;
    put(&mut c, "x", "1").await;
    let mut stream = c.watch("watched", None).await.expect("watch");
    expect_created(&mut stream).await;
    put(&mut c, "unwatched", "1").await;
    let rev = put(&mut c, "unwatched", "2").await;
    stream.request_progress().await.expect("progress request");
    let resp = next_watch_msg(&mut stream, 10).await;
    assert_eq!(resp.watch_id(), -1, "{resp:?}");
    assert!(resp.events().is_empty());
    assert!(!resp.created() && !resp.canceled());
    assert_eq!(resp.header().expect("header").revision(), rev);
}

/// Deletes `count` keys under `prefix` (each holding a `size`-byte value) in one revision while
/// two watchers with prev_kv look on, one with `fragment` and one without. Returns, for the
/// fragmenting watcher, the number of events in each response piece (after checking that all
/// but the last have fragment = true and that merged they hold every event complete), and checks
/// that the other watcher got the whole revision in one response.
async fn delete_under_fragmenting_watch(c: &mut Client, prefix: &str, count: usize, size: usize) -> Vec<usize> {
    let value = |i: usize| format!("{i:02}-{}", "v".repeat(size - 3));
    for i in 0..count {
        put(c, &format!("{prefix}{i:02}"), &value(i)).await;
    }
    let opts = WatchOptions::new().with_prefix().with_prev_key();
    let mut fragmented = c.watch(prefix, Some(opts.clone().with_fragment())).await.expect("watch");
    expect_created(&mut fragmented).await;
    let mut whole = c.watch(prefix, Some(opts)).await.expect("watch");
    expect_created(&mut whole).await;

    let del = c.delete(prefix, Some(DeleteOptions::new().with_prefix())).await.expect("delete range");
    assert_eq!(del.deleted(), count as i64);
    let rev = del.header().expect("header").revision();

    let mut pieces = Vec::new();
    let mut events = Vec::new();
    loop {
        let resp = next_watch_msg(&mut fragmented, 10).await;
        assert!(!resp.events().is_empty(), "every fragment carries events: {:?}", resp.header());
        pieces.push(resp.events().len());
        events.extend(events_of(&resp));
        if !resp.0.fragment {
            break;
        }
        assert!(pieces.len() < 100, "too many fragments");
    }
    assert_eq!(events.len(), count, "merged fragments hold every event");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.kind, EventType::Delete);
        assert_eq!(e.key, format!("{prefix}{i:02}").into_bytes(), "event {i} in order");
        assert_eq!(e.mod_rev, rev);
        assert!(e.prev_value.as_deref() == Some(value(i).as_bytes()), "prev_kv of event {i} complete");
    }
    let one = next_watch_msg(&mut whole, 10).await;
    assert!(!one.0.fragment);
    assert_eq!(one.events().len(), count, "a watcher that did not ask for fragments gets one response");
    expect_silence(&mut fragmented, 200).await;
    pieces
}

/// With `fragment`, a response of one revision that reaches the limit is split; every piece but
/// the last has fragment = true and the pieces together hold every event, complete. etcd's limit
/// for this is --max-request-bytes plus its 512 KiB gRPC overhead allowance: with 65536 that is
/// 589,824 bytes, so 20 events of ~40 KB split as 14 (~560 KB) + 6.
#[tokio::test(flavor = "multi_thread")]
async fn watch_fragments_responses_over_the_limit_when_asked() {
    let (_dir, _server, mut c) = setup_with(&["--max-request-bytes=65536"]).await;
    let pieces = delete_under_fragmenting_watch(&mut c, "frag/", 20, 40_000).await;
    assert_eq!(pieces, vec![14, 6], "fragment sizes for a 589,824-byte limit");
}

/// A response larger than --max-request-bytes but under max-request-bytes + 512 KiB is not
/// fragmented, even when the watcher asked for fragments (etcd's threshold, see above).
#[tokio::test(flavor = "multi_thread")]
async fn watch_does_not_fragment_under_limit_plus_grpc_overhead() {
    let (_dir, _server, mut c) = setup_with(&["--max-request-bytes=4096"]).await;
    let pieces = delete_under_fragmenting_watch(&mut c, "small/", 10, 1000).await;
    assert_eq!(pieces, vec![10], "~10 KB is under 4096 + 512 KiB: one response");
}

/// prev_kv: events carry the previous key-value when asked, and only then.
#[tokio::test(flavor = "multi_thread")]
async fn watch_prev_kv_carries_previous_value() {
    let (_dir, _server, mut c) = setup().await;
    let r1 = put(&mut c, "k", "v1").await;
    let mut with = c.watch("k", Some(WatchOptions::new().with_prev_key())).await.expect("watch");
    expect_created(&mut with).await;
    let mut without = c.watch("k", None).await.expect("watch");
    expect_created(&mut without).await;
    let r2 = put(&mut c, "k", "v2").await;
    let r3 = c.delete("k", None).await.expect("delete").header().expect("header").revision();
    let r4 = put(&mut c, "k", "v3").await;
    let got = collect_until(&mut with, r4).await;
    assert_eq!(got.len(), 3);
    assert_eq!((got[0].kind, got[0].mod_rev, got[0].prev_value.as_deref()), (EventType::Put, r2, Some(&b"v1"[..])));
    assert_eq!((got[1].kind, got[1].mod_rev, got[1].prev_value.as_deref()), (EventType::Delete, r3, Some(&b"v2"[..])));
    assert_eq!(
        (got[2].kind, got[2].mod_rev, got[2].prev_value.as_deref()),
        (EventType::Put, r4, None),
        "created anew: no prev"
    );
    assert!(r1 < r2);
    expect_silence(&mut with, 300).await;
    let plain = collect_until(&mut without, r4).await;
    assert!(plain.iter().all(|e| e.prev_value.is_none()), "no prev_kv unless asked: {plain:?}");
}

/// NOPUT filter: only DELETE events arrive.
#[tokio::test(flavor = "multi_thread")]
async fn watch_noput_filter_drops_puts() {
    let (_dir, _server, mut c) = setup().await;
    let mut stream =
        c.watch("k", Some(WatchOptions::new().with_filters([WatchFilterType::NoPut]))).await.expect("watch");
    expect_created(&mut stream).await;
    put(&mut c, "k", "1").await;
    let d1 = c.delete("k", None).await.expect("delete").header().expect("header").revision();
    put(&mut c, "k", "2").await;
    put(&mut c, "k", "3").await;
    let d2 = c.delete("k", None).await.expect("delete").header().expect("header").revision();
    let got = collect_until(&mut stream, d2).await;
    let kinds: Vec<_> = got.iter().map(|e| (e.kind, e.mod_rev)).collect();
    assert_eq!(kinds, vec![(EventType::Delete, d1), (EventType::Delete, d2)]);
}

/// NODELETE filter: only PUT events arrive.
#[tokio::test(flavor = "multi_thread")]
async fn watch_nodelete_filter_drops_deletes() {
    let (_dir, _server, mut c) = setup().await;
    let mut stream =
        c.watch("k", Some(WatchOptions::new().with_filters([WatchFilterType::NoDelete]))).await.expect("watch");
    expect_created(&mut stream).await;
    let p1 = put(&mut c, "k", "1").await;
    c.delete("k", None).await.expect("delete");
    let p2 = put(&mut c, "k", "2").await;
    c.delete("k", None).await.expect("delete");
    let p3 = put(&mut c, "k", "3").await;
    let got = collect_until(&mut stream, p3).await;
    let kinds: Vec<_> = got.iter().map(|e| (e.kind, e.mod_rev)).collect();
    assert_eq!(kinds, vec![(EventType::Put, p1), (EventType::Put, p2), (EventType::Put, p3)]);
}

/// Cancel: answered with canceled = true for that watch_id; no events for it afterwards, while
/// other watches on the stream go on.
#[tokio::test(flavor = "multi_thread")]
async fn watch_cancel_stops_events() {
    let (_dir, _server, mut c) = setup().await;
    let mut stream = c.watch("a", None).await.expect("watch a");
    assert_eq!(expect_created(&mut stream).await.watch_id(), 0);
    stream.watch("b", None).await.expect("watch b");
    assert_eq!(expect_created(&mut stream).await.watch_id(), 1);
    let ra = put(&mut c, "a", "before-cancel").await;
    let got = collect_until(&mut stream, ra).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].watch_id, 0);

    stream.cancel(0).await.expect("cancel");
    let resp = next_watch_msg(&mut stream, 10).await;
    assert!(resp.canceled(), "expected the cancel response, got {resp:?}");
    assert_eq!(resp.watch_id(), 0);
    assert!(resp.events().is_empty());

    put(&mut c, "a", "after-cancel").await;
    let rb = put(&mut c, "b", "marker").await;
    let got = collect_until(&mut stream, rb).await;
    assert_eq!(got.len(), 1, "only watch 1's event, nothing for the canceled watch: {got:?}");
    assert_eq!((got[0].watch_id, got[0].key.as_slice()), (1, &b"b"[..]));
}

/// Resume after a disconnect: close the stream and the client, write meanwhile, reconnect
/// watching from last seen revision + 1: every event exactly once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn watch_resume_after_disconnect_has_no_gap_or_duplicate() {
    let (_dir, server, mut writer) = setup().await;
    let mut all = Vec::new();
    let mut watcher_client = client(&server.endpoint).await;
    let mut stream = watcher_client.watch("res/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
    expect_created(&mut stream).await;
    for i in 0..5 {
        all.push(put(&mut writer, &format!("res/{i}"), "first").await);
    }
    let seen = collect_until(&mut stream, all[4]).await;
    let last_seen = seen.last().unwrap().mod_rev;
    assert_eq!(seen.iter().map(|e| e.mod_rev).collect::<Vec<_>>(), all);
    drop(stream);
    drop(watcher_client);

    for i in 0..5 {
        all.push(put(&mut writer, &format!("res/{i}"), "while-away").await);
        put(&mut writer, "elsewhere", "x").await;
    }
    let mut watcher_client = client(&server.endpoint).await;
    let mut stream = watcher_client
        .watch("res/", Some(WatchOptions::new().with_prefix().with_start_revision(last_seen + 1)))
        .await
        .expect("re-watch");
    expect_created(&mut stream).await;
    for i in 0..3 {
        all.push(put(&mut writer, &format!("res/{i}"), "after").await);
    }
    let resumed = collect_until(&mut stream, *all.last().unwrap()).await;
    let revs: Vec<i64> = resumed.iter().map(|e| e.mod_rev).collect();
    assert_eq!(revs, all[5..].to_vec(), "exactly the writes after {last_seen}, each once");
    expect_silence(&mut stream, 300).await;
}
