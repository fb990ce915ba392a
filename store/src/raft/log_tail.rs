//! The newest Raft log entries, kept decoded in memory.
//!
//! Every entry is read back soon after it is appended: by the state machine once it commits, and
//! on the leader by the replication to each follower. Serving those reads from here spares each
//! a RocksDB iterator and a decode of every request in the entry; clones share the requests
//! (`ProposalBatch`).
//!
//! Invariant: when the tail is not empty, its entries are the log's newest, with consecutive
//! indexes and the same contents as RocksDB holds. `LogStore` keeps it so by applying every
//! change to RocksDB first and then here (append, truncate, purge). A read the tail cannot
//! answer in full (older entries, an empty tail after a restart) goes to RocksDB.

use std::collections::VecDeque;

use crate::raft::types::Entry;

/// At most this many entries are kept.
pub const TAIL_ENTRIES: usize = 512;
/// And at most this many bytes of them, as encoded in the log.
pub const TAIL_BYTES: usize = 32 << 20;

#[derive(Default)]
pub struct LogTail {
    /// Entries with consecutive indexes, each with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl LogTail {
    /// Records `entry`, just written to the log after everything kept here. An entry that does
    /// not follow the last one kept (the first after a restart or a truncation of everything)
    /// starts the tail over; one larger than the whole budget empties it.
    pub fn push(&mut self, entry: Entry, size: usize) {
        let follows =
            self.entries.back().is_none_or(|(last, _)| last.log_id.index.checked_add(1) == Some(entry.log_id.index));
        if !follows || size > TAIL_BYTES {
            self.clear();
        }
        if size > TAIL_BYTES {
            return;
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > TAIL_ENTRIES || self.bytes > TAIL_BYTES {
            self.pop_front();
        }
    }

    /// Drops every entry after `last` (all of them for None), as the log just did.
    pub fn truncate_after(&mut self, last: Option<u64>) {
        while let Some((entry, _)) = self.entries.back() {
            if last.is_some_and(|last| entry.log_id.index <= last) {
                break;
            }
            let Some((_, size)) = self.entries.pop_back() else { break };
            self.bytes -= size;
        }
    }

    /// Drops every entry up to and including `upto`, as the log just did.
    pub fn purge_upto(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|(entry, _)| entry.log_id.index <= upto) {
            self.pop_front();
        }
    }

    /// The entries with index in `[start, end)` (`end` None: to the last), if the tail holds
    /// all of them.
    pub fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        let last = self.entries.back()?.0.log_id.index;
        let end = end.unwrap_or(last.saturating_add(1));
        if start < first || end > last.saturating_add(1) {
            return None;
        }
        if end <= start {
            return Some(Vec::new());
        }
        let from = usize::try_from(start - first).ok()?;
        let count = usize::try_from(end - start).ok()?;
        Some(self.entries.iter().skip(from).take(count).map(|(entry, _)| entry.clone()).collect())
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use openraft::RaftTypeConfig;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::raft::types::{LogId, TypeConfig};

    fn entry(index: u64) -> Entry {
        let leader = <TypeConfig as RaftTypeConfig>::LeaderId::new_committed(1, 1);
        Entry { log_id: LogId::new(leader, index), payload: EntryPayload::Blank }
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|entries| entries.iter().map(|e| e.log_id.index).collect())
    }

    fn tail(range: std::ops::Range<u64>) -> LogTail {
        let mut tail = LogTail::default();
        for index in range {
            tail.push(entry(index), 10);
        }
        tail
    }

    #[test]
    fn serves_only_ranges_it_holds_in_full() {
        let tail = tail(5..10);
        assert_eq!(indexes(tail.get(5, None)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(tail.get(7, Some(9))), Some(vec![7, 8]));
        assert_eq!(indexes(tail.get(10, None)), Some(vec![]));
        assert_eq!(indexes(tail.get(4, Some(7))), None, "starts before the tail");
        assert_eq!(indexes(tail.get(8, Some(12))), None, "ends after the last entry");
        assert_eq!(indexes(LogTail::default().get(0, None)), None, "an empty tail knows nothing");
    }

    #[test]
    fn a_gap_starts_over() {
        let mut tail = tail(5..10);
        tail.push(entry(20), 10);
        assert_eq!(indexes(tail.get(20, None)), Some(vec![20]));
        assert_eq!(indexes(tail.get(9, None)), None);
    }

    #[test]
    fn follows_truncation_and_purge() {
        let mut tail = tail(5..10);
        tail.truncate_after(Some(7));
        assert_eq!(indexes(tail.get(5, None)), Some(vec![5, 6, 7]));
        tail.push(entry(8), 10);
        assert_eq!(indexes(tail.get(5, None)), Some(vec![5, 6, 7, 8]));
        tail.purge_upto(6);
        assert_eq!(indexes(tail.get(7, None)), Some(vec![7, 8]));
        assert_eq!(indexes(tail.get(6, None)), None);
        tail.truncate_after(None);
        assert_eq!(indexes(tail.get(7, None)), None);
        assert_eq!(tail.bytes, 0);
    }

    #[test]
    fn stays_within_its_budget() {
        let mut tail = tail(0..(TAIL_ENTRIES as u64 + 10));
        assert_eq!(tail.entries.len(), TAIL_ENTRIES);
        assert_eq!(indexes(tail.get(9, None)), None);
        assert!(tail.get(10, None).is_some());
        tail.push(entry(TAIL_ENTRIES as u64 + 10), TAIL_BYTES - 10);
        assert_eq!(
            indexes(tail.get(TAIL_ENTRIES as u64 + 9, None)),
            Some(vec![TAIL_ENTRIES as u64 + 9, TAIL_ENTRIES as u64 + 10])
        );
        assert!(tail.bytes <= TAIL_BYTES);
        tail.push(entry(TAIL_ENTRIES as u64 + 11), TAIL_BYTES + 1);
        assert!(tail.get(0, None).is_none(), "an entry over the budget empties the tail");
    }
}
