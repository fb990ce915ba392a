//! What the Raft state machine records about itself in the engine's `meta` keyspace: how far
//! it applied the log (the applied marker), the last applied membership, and the names and
//! client URLs members published.
//!
//! Every key starts with [`crate::mvcc::engine::META_RAFT_PREFIX`], so these records travel with Raft snapshots (the
//! meta keyspace is part of them) and `keel store restore` can strip them for a new cluster.

use std::collections::HashMap;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::mvcc::Engine;
use crate::mvcc::engine::CF_META;
use crate::raft::storage_error::{Result, decode, encode};
use crate::raft::types::{LogId, StoredMembership};

/// `meta` key of the applied marker.
pub const META_APPLIED: &[u8] = b"raft/applied";
/// `meta` key of the last applied membership.
pub const META_MEMBERSHIP: &[u8] = b"raft/membership";
/// `meta` key prefix of published members: prefix ++ member ID (u64 BE).
pub const META_MEMBER_PREFIX: &[u8] = b"raft/member/";

/// How far the state machine applied the log. It rides in the same RocksDB write batch as the
/// changes it describes, so after a crash it names exactly what the engine holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMarker {
    /// The last entry applied completely.
    pub last_complete: Option<LogId>,
    /// The entry after `last_complete`, when only its first `requests_done` write requests are
    /// applied (a crash in the middle of a batched entry).
    pub partial: Option<(LogId, u32)>,
}

impl AppliedMarker {
    /// The marker once `log_id` is applied completely.
    pub fn complete(log_id: &LogId) -> AppliedMarker {
        AppliedMarker { last_complete: Some(*log_id), partial: None }
    }

    /// Write requests of entry `log_id` already applied (0 unless the marker is partial there).
    pub fn requests_done(&self, log_id: &LogId) -> u32 {
        match &self.partial {
            Some((partial, done)) if partial == log_id => *done,
            _ => 0,
        }
    }
}

/// A member's name and client URLs, as it published them through the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedMember {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// The applied marker in `engine` (the default when nothing was applied yet).
pub fn read_marker(engine: &Engine) -> Result<AppliedMarker> {
    match engine.db().get_cf(engine.cf(CF_META), META_APPLIED)? {
        Some(raw) => decode("applied marker", &raw),
        None => Ok(AppliedMarker::default()),
    }
}

/// The last applied membership in `engine` (the default when none was applied yet).
pub fn read_membership(engine: &Engine) -> Result<StoredMembership> {
    match engine.db().get_cf(engine.cf(CF_META), META_MEMBERSHIP)? {
        Some(raw) => decode("stored membership", &raw),
        None => Ok(StoredMembership::default()),
    }
}

/// Adds the applied marker to `batch`.
pub fn put_marker(engine: &Engine, batch: &mut WriteBatch, marker: &AppliedMarker) -> Result<()> {
    batch.put_cf(engine.cf(CF_META), META_APPLIED, encode("applied marker", marker)?);
    Ok(())
}

/// Adds the last applied membership to `batch`.
pub fn put_membership(engine: &Engine, batch: &mut WriteBatch, membership: &StoredMembership) -> Result<()> {
    batch.put_cf(engine.cf(CF_META), META_MEMBERSHIP, encode("stored membership", membership)?);
    Ok(())
}

/// Adds member `id`'s published name and client URLs to `batch`.
pub fn put_member(engine: &Engine, batch: &mut WriteBatch, id: u64, member: &PublishedMember) -> Result<()> {
    batch.put_cf(engine.cf(CF_META), member_key(id), encode("published member", member)?);
    Ok(())
}

fn member_key(id: u64) -> Vec<u8> {
    let mut key = META_MEMBER_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Every member's published name and client URLs, by member ID: what `MemberList` reports
/// besides the peer URLs in the Raft membership.
pub fn published_members(engine: &Engine) -> Result<HashMap<u64, PublishedMember>> {
    let mut members = HashMap::new();
    let mut iter = engine.db().raw_iterator_cf(engine.cf(CF_META));
    iter.seek(META_MEMBER_PREFIX);
    while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
        let Some(id) = key.strip_prefix(META_MEMBER_PREFIX) else { break };
        let id: [u8; 8] =
            id.try_into().map_err(|_| crate::raft::storage_error::RaftStorageError::Corrupt("published member key"))?;
        members.insert(u64::from_be_bytes(id), decode("published member", value)?);
        iter.next();
    }
    iter.status()?;
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::engine::META_RAFT_PREFIX;

    #[test]
    fn every_key_carries_the_raft_prefix() {
        for key in [META_APPLIED, META_MEMBERSHIP, META_MEMBER_PREFIX] {
            assert!(key.starts_with(META_RAFT_PREFIX), "{key:?}");
        }
    }
}
