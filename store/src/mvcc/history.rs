//! The store's changes by revision: what a watcher that starts in the past, or fell behind,
//! reads before it rejoins the live stream.

use super::codec::{self, TAG_TOMBSTONE};
use super::engine::{CF_KV, CF_REV, Engine};
use super::{ChangeSet, EVENT_DELETE, EVENT_PUT, Event, KeyValue, Revision};
use crate::error::Result;

/// The changes of revisions `from..=to`, oldest first, stopping at a revision boundary once
/// `max_events` events are collected. Returns the change sets and the last revision covered
/// (which is `to` when everything fit). `prev_kv` is filled where the previous version still
/// exists. Callers must check the compact revision after reading.
pub fn read(engine: &Engine, from: i64, to: i64, max_events: usize) -> Result<(Vec<ChangeSet>, i64)> {
    let mut sets: Vec<ChangeSet> = Vec::new();
    let mut events = 0usize;
    let mut iter = engine.db().raw_iterator_cf(engine.cf(CF_REV));
    iter.seek(codec::revision_key(Revision { main: from, sub: 0 }));
    let mut covered = to;
    while let (Some(raw_key), Some(raw_value)) = (iter.key(), iter.value()) {
        let revision = codec::parse_revision_key(raw_key)?;
        if revision.main > to {
            break;
        }
        let starts_new_revision = sets.last().is_none_or(|s| s.revision != revision.main);
        if starts_new_revision && events >= max_events {
            covered = revision.main - 1;
            break;
        }
        let (tag, key) = codec::decode_change(raw_value)?;
        let kv = match engine.db().get_cf(engine.cf(CF_KV), codec::version_key(key, revision))? {
            Some(record) => codec::decode_record(&record, key.to_vec())?.1,
            None => KeyValue { key: key.to_vec(), mod_revision: revision.main, ..Default::default() },
        };
        let prev_kv = engine.get_at(key, revision.main - 1)?;
        let r#type = if tag == TAG_TOMBSTONE { EVENT_DELETE } else { EVENT_PUT };
        let event = Event { r#type, kv: Some(kv), prev_kv };
        if starts_new_revision {
            sets.push(ChangeSet { revision: revision.main, events: Vec::new() });
        }
        if let Some(set) = sets.last_mut() {
            set.events.push(event);
        }
        events += 1;
        iter.next();
    }
    iter.status()?;
    Ok((sets, covered))
}
