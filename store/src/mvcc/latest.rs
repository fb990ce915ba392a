//! The newest version of recently written keys, in memory, for the applier.
//!
//! Every put reads its key's previous version: the new version's create revision and version
//! follow from it, the lease index needs its lease, and the watch event carries it as
//! `prev_kv`. Read from RocksDB that is an iterator plus a seek through the memtables and every
//! level, the largest single cost of a put in a loaded three-member cluster (each member pays
//! it). Keys written again soon after (status updates, leases, the same objects rewritten) are
//! answered from here instead; a key not here is read from RocksDB as before.
//!
//! Two generations bound the memory: new states go into the current one; when it is full it
//! becomes the previous one and the old previous one is dropped. A key written again is
//! recorded in the current generation again, so keys in steady use stay.
//!
//! Architecture invariant: this holds what the store holds at the applier's revision. Only the
//! applier records into it, right after a write request's changes are applied; it forgets
//! everything when a write to RocksDB fails, and a replaced state machine (snapshot install)
//! starts with a new applier and an empty one. Compaction never removes a key's newest version,
//! so it cannot make an entry wrong.

use std::collections::HashMap;

use super::{ChangeSet, EVENT_PUT, KeyValue};

/// Keys per generation, at most.
const GENERATION_KEYS: usize = 8_192;
/// Key and value bytes per generation, at most.
const GENERATION_BYTES: usize = 8 << 20;

/// A key's newest state: its live version, or `None` when it was deleted.
type State = Option<KeyValue>;

#[derive(Default)]
pub struct LatestVersions {
    current: HashMap<Vec<u8>, State>,
    current_bytes: usize,
    previous: HashMap<Vec<u8>, State>,
}

impl LatestVersions {
    /// The newest state of `key`, if it is known here (`Some(None)`: known not to exist).
    pub fn get(&self, key: &[u8]) -> Option<&State> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// Records the state every key touched by `changes` is in after them.
    pub fn record(&mut self, changes: &ChangeSet) {
        for event in &changes.events {
            let Some(kv) = &event.kv else { continue };
            let state = (event.r#type == EVENT_PUT).then(|| kv.clone());
            self.insert(kv.key.clone(), state);
        }
    }

    /// Forgets everything: after a failed write, the store may not hold what was recorded.
    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
        self.current_bytes = 0;
    }

    fn insert(&mut self, key: Vec<u8>, state: State) {
        let key_len = key.len();
        let bytes = size(key_len, &state);
        if self.current.len() >= GENERATION_KEYS || self.current_bytes + bytes > GENERATION_BYTES {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += bytes;
        if let Some(old) = self.current.insert(key, state) {
            self.current_bytes -= size(key_len, &old);
        }
    }
}

/// Bytes an entry holds: its key, and the key and value of its version.
fn size(key_len: usize, state: &State) -> usize {
    key_len + state.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{EVENT_DELETE, Event};

    fn put(key: &str, value: &str, revision: i64) -> Event {
        let kv = KeyValue {
            key: key.into(),
            value: value.into(),
            mod_revision: revision,
            create_revision: revision,
            version: 1,
            lease: 0,
        };
        Event { r#type: EVENT_PUT, kv: Some(kv), prev_kv: None }
    }

    fn delete(key: &str, revision: i64) -> Event {
        let kv = KeyValue { key: key.into(), mod_revision: revision, ..Default::default() };
        Event { r#type: EVENT_DELETE, kv: Some(kv), prev_kv: None }
    }

    #[test]
    fn the_last_change_of_a_key_wins() {
        let mut latest = LatestVersions::default();
        latest.record(&ChangeSet { revision: 2, events: vec![put("a", "1", 2), put("b", "1", 2)] });
        latest.record(&ChangeSet { revision: 3, events: vec![delete("a", 3)] });
        latest.record(&ChangeSet { revision: 4, events: vec![put("b", "2", 4)] });
        assert_eq!(latest.get(b"a"), Some(&None));
        let b = latest.get(b"b").and_then(|s| s.as_ref()).map(|kv| (kv.value.clone(), kv.mod_revision));
        assert_eq!(b, Some((b"2".to_vec(), 4)));
        assert_eq!(latest.get(b"c"), None);
        latest.clear();
        assert_eq!(latest.get(b"b"), None);
    }

    #[test]
    fn memory_is_bounded_and_recent_keys_stay() {
        let mut latest = LatestVersions::default();
        let total = 3 * GENERATION_KEYS;
        for i in 0..total {
            latest.record(&ChangeSet { revision: 2, events: vec![put(&format!("k{i}"), "v", 2)] });
            // A key in steady use, rewritten all along.
            latest.record(&ChangeSet { revision: 2, events: vec![put("hot", "v", 2)] });
        }
        assert!(latest.current.len() + latest.previous.len() <= 2 * GENERATION_KEYS);
        assert!(latest.get(format!("k{}", total - 1).as_bytes()).is_some());
        assert_eq!(latest.get(b"k0"), None);
        assert!(latest.get(b"hot").is_some());

        let big = "x".repeat(GENERATION_BYTES / 4);
        for i in 0..12 {
            latest.record(&ChangeSet { revision: 2, events: vec![put(&format!("big{i}"), &big, 2)] });
            assert!(latest.current_bytes <= GENERATION_BYTES);
        }
        assert!(latest.get(b"big11").is_some());
    }
}
