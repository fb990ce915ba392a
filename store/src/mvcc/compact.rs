//! Physical compaction: deletes the versions a compaction at revision C made unreachable,
//! in small batches, off the write path.
//!
//! For every key changed at or below C, the newest version at or below C survives (a
//! tombstone survives only at exactly C, so history from C stays complete for watchers); older
//! versions go. `rev` entries below C go. Writers never touch revisions at or below C, so this
//! runs concurrently with them without locks. It is idempotent: an interrupted compaction is
//! rerun from the start on restart (the entries it already removed cost nothing to skip):
//! the scheduled marker is deleted through the same WAL, after every batch it covers.

use std::collections::HashSet;

use rocksdb::WriteBatch;

use super::Revision;
use super::codec::{self, TAG_TOMBSTONE};
use super::engine::{CF_KV, CF_META, CF_REV, Engine, META_SCHEDULED_COMPACT};
use crate::error::Result;

/// Changes examined per batch; bounds memory and how long one batch holds a core.
const CHANGES_PER_BATCH: usize = 1_000;

pub fn run(engine: &Engine, target: i64) -> Result<()> {
    let end = codec::revision_key(Revision { main: target, sub: 0 });
    let mut start = codec::revision_key(Revision { main: 0, sub: 0 }).to_vec();
    loop {
        let mut keys: HashSet<Vec<u8>> = HashSet::new();
        let mut batch = WriteBatch::default();
        let mut examined = 0usize;
        let mut next_start = None;
        {
            let mut iter = engine.db().raw_iterator_cf(engine.cf(CF_REV));
            iter.seek(&start);
            while let (Some(raw_key), Some(raw_value)) = (iter.key(), iter.value()) {
                let revision = codec::parse_revision_key(raw_key)?;
                if revision.main > target {
                    break;
                }
                if examined == CHANGES_PER_BATCH {
                    next_start = Some(raw_key.to_vec());
                    break;
                }
                let (_, key) = codec::decode_change(raw_value)?;
                keys.insert(key.to_vec());
                if raw_key < end.as_slice() {
                    batch.delete_cf(engine.cf(CF_REV), raw_key);
                }
                examined += 1;
                iter.next();
            }
            iter.status()?;
        }
        for key in &keys {
            drop_unreachable_versions(engine, key, target, &mut batch)?;
        }
        engine.db().write(batch)?;
        match next_start {
            Some(next) => start = next,
            None => break,
        }
    }
    engine.db().delete_cf(engine.cf(CF_META), META_SCHEDULED_COMPACT)?;
    Ok(())
}

fn drop_unreachable_versions(engine: &Engine, key: &[u8], target: i64, batch: &mut WriteBatch) -> Result<()> {
    let seek = codec::newest_at_key(key, target);
    let mut iter = engine.db().raw_iterator_cf(engine.cf(CF_KV));
    iter.seek(&seek);
    let mut newest = true;
    while let (Some(raw_key), Some(raw_value)) = (iter.key(), iter.value()) {
        let (escaped, revision) = codec::split_version_key(raw_key)?;
        if escaped != codec::escaped_part(&seek) {
            break;
        }
        let keep = newest && !(raw_value.first() == Some(&TAG_TOMBSTONE) && revision.main < target);
        if !keep {
            batch.delete_cf(engine.cf(CF_KV), raw_key);
        }
        newest = false;
        iter.next();
    }
    iter.status()?;
    Ok(())
}
