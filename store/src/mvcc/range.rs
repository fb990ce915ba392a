//! RangeRequest evaluation with etcd 3.4's exact order of operations:
//! fetch (limit + 1 when nothing needs the whole range), count every key in the range, prune by
//! min/max mod/create revision, sort (a non-KEY target with order NONE sorts ascending),
//! truncate to `limit` and set `more`.

use std::collections::BTreeMap;

use etcd_client::proto::PbRangeRequest as RangeRequest;

use super::KeyValue;
use super::codec::{self, TAG_TOMBSTONE};
use super::engine::{Engine, Visit};
use crate::error::Result;

pub const SORT_NONE: i32 = 0;
pub const SORT_ASCEND: i32 = 1;
pub const SORT_DESCEND: i32 = 2;

pub const TARGET_KEY: i32 = 0;
pub const TARGET_VERSION: i32 = 1;
pub const TARGET_CREATE: i32 = 2;
pub const TARGET_MOD: i32 = 3;
pub const TARGET_VALUE: i32 = 4;

/// Changes a write txn made so far, not yet in RocksDB: key → new version (None = deleted).
pub type Overlay = BTreeMap<Vec<u8>, Option<KeyValue>>;

#[derive(Debug, Default, PartialEq)]
pub struct RangeOutcome {
    pub kvs: Vec<KeyValue>,
    pub count: i64,
    pub more: bool,
}

/// Evaluates `request` against the store at `revision`, with a write txn's own changes in
/// `overlay` layered on top (for ranges inside a txn after its writes).
pub fn evaluate(
    engine: &Engine,
    request: &RangeRequest,
    revision: i64,
    overlay: Option<&Overlay>,
) -> Result<RangeOutcome> {
    let needs_whole_range = request.sort_order != SORT_NONE
        || request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0;
    let fetch_limit = if needs_whole_range || request.limit <= 0 { usize::MAX } else { request.limit as usize + 1 };
    let touched = overlay.filter(|o| o.keys().any(|k| in_range(k, &request.key, &request.range_end)));
    let (mut kvs, count) = match touched {
        None => fetch(engine, request, revision, fetch_limit)?,
        Some(overlay) => fetch_with_overlay(engine, request, revision, fetch_limit, overlay)?,
    };
    prune(&mut kvs, request);
    sort(&mut kvs, request);
    let mut more = false;
    if request.limit > 0 && kvs.len() > request.limit as usize {
        kvs.truncate(request.limit as usize);
        more = true;
    }
    if request.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeOutcome { kvs, count, more })
}

/// Whether `key` is in etcd's range `[start, end)`, with etcd's meaning of an empty end (just
/// `start`) and `"\0"` (no upper bound).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        return key == start;
    }
    key >= start && (end == b"\0" || key < end)
}

fn fetch(engine: &Engine, request: &RangeRequest, revision: i64, fetch_limit: usize) -> Result<(Vec<KeyValue>, i64)> {
    let mut kvs = Vec::new();
    let mut count = 0i64;
    engine.scan_visible(&request.key, &request.range_end, revision, |escaped, raw| {
        if raw.first() == Some(&TAG_TOMBSTONE) {
            return Ok(Visit::Continue);
        }
        count += 1;
        if !request.count_only && kvs.len() < fetch_limit {
            let (_, kv) = codec::decode_record(raw, codec::unescape(escaped)?)?;
            kvs.push(kv);
        }
        Ok(Visit::Continue)
    })?;
    Ok((kvs, count))
}

fn fetch_with_overlay(
    engine: &Engine,
    request: &RangeRequest,
    revision: i64,
    fetch_limit: usize,
    overlay: &Overlay,
) -> Result<(Vec<KeyValue>, i64)> {
    let mut merged: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
    engine.scan_visible(&request.key, &request.range_end, revision, |escaped, raw| {
        if raw.first() != Some(&TAG_TOMBSTONE) {
            let (_, kv) = codec::decode_record(raw, codec::unescape(escaped)?)?;
            merged.insert(kv.key.clone(), kv);
        }
        Ok(Visit::Continue)
    })?;
    for (key, change) in overlay.iter().filter(|(k, _)| in_range(k, &request.key, &request.range_end)) {
        match change {
            Some(kv) => merged.insert(key.clone(), kv.clone()),
            None => merged.remove(key),
        };
    }
    let count = merged.len() as i64;
    let kvs = if request.count_only { Vec::new() } else { merged.into_values().take(fetch_limit).collect() };
    Ok((kvs, count))
}

fn prune(kvs: &mut Vec<KeyValue>, r: &RangeRequest) {
    kvs.retain(|kv| {
        !((r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision)
            || (r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision)
            || (r.max_create_revision != 0 && kv.create_revision > r.max_create_revision)
            || (r.min_create_revision != 0 && kv.create_revision < r.min_create_revision))
    });
}

fn sort(kvs: &mut [KeyValue], r: &RangeRequest) {
    let mut order = r.sort_order;
    if r.sort_target != TARGET_KEY && order == SORT_NONE {
        order = SORT_ASCEND;
    }
    if order == SORT_NONE {
        return;
    }
    let compare = |a: &KeyValue, b: &KeyValue| match r.sort_target {
        TARGET_VERSION => a.version.cmp(&b.version),
        TARGET_CREATE => a.create_revision.cmp(&b.create_revision),
        TARGET_MOD => a.mod_revision.cmp(&b.mod_revision),
        TARGET_VALUE => a.value.cmp(&b.value),
        _ => a.key.cmp(&b.key),
    };
    // Stable, as Go's sort is for the small inputs etcd's tests use; equal elements keep key order.
    if order == SORT_DESCEND {
        kvs.sort_by(|a, b| compare(b, a));
    } else {
        kvs.sort_by(compare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_meanings() {
        assert!(in_range(b"a", b"a", b""));
        assert!(!in_range(b"ab", b"a", b""));
        assert!(in_range(b"zzz", b"a", b"\0"));
        assert!(!in_range(b"0", b"a", b"\0"));
        assert!(in_range(b"ab", b"a", b"b"));
        assert!(!in_range(b"b", b"a", b"b"));
    }
}
