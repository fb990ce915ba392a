//! Leases: the table of granted leases and the one component that decides expiry.
//!
//! The table itself changes only through applied requests (grant, revoke), so every member
//! agrees on which leases exist. Time is different: only the *primary* lessor tracks expiry
//! deadlines, answers keep-alives and reports expired leases, which the server then revokes
//! through the normal write path (one revision deletes all keys of a lease). Leadership drives
//! `promote` and `demote` (a single-member store promotes itself at start). A promotion
//! extends every lease by its TTL first, so a failover never mass-expires leases.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::mvcc::Engine;
use crate::mvcc::codec::CorruptRecord;
use crate::mvcc::engine::CF_LEASE;

/// etcd's MaxLeaseTTL.
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;
/// How long an expired lease waits for its revoke before it is reported again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct LeaseEntry {
    /// Granted TTL in seconds (after the minimum was applied).
    ttl_seconds: i64,
    /// When the lease expires; `None` while this lessor is not primary.
    deadline: Option<Instant>,
    /// When an expiry was last reported, so a pending revoke is not proposed twice at once.
    reported_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct LessorState {
    leases: HashMap<i64, LeaseEntry>,
    primary: bool,
}

#[derive(Debug)]
pub struct Lessor {
    state: Mutex<LessorState>,
    /// Grants below this TTL get this TTL (etcd: 1.5 × election timeout, rounded up to seconds).
    min_ttl_seconds: i64,
}

/// What `time_to_live` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl {
    pub remaining_seconds: i64,
    pub granted_seconds: i64,
}

impl Lessor {
    pub fn new(min_ttl_seconds: i64) -> Lessor {
        Lessor { state: Mutex::new(LessorState::default()), min_ttl_seconds }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LessorState> {
        // A panic while holding this lock cannot leave the map half-updated (every update is
        // one insert or remove), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The TTL a grant of `requested` seconds gets, or etcd's error.
    pub fn effective_ttl(&self, requested: i64) -> Result<i64> {
        if requested > MAX_LEASE_TTL_SECONDS {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        Ok(requested.max(self.min_ttl_seconds))
    }

    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Applied grant (also used when reloading leases at start).
    pub fn apply_grant(&self, id: i64, ttl_seconds: i64) {
        let mut state = self.lock();
        let deadline = state.primary.then(|| Instant::now() + Duration::from_secs(ttl_seconds as u64));
        state.leases.insert(id, LeaseEntry { ttl_seconds, deadline, reported_at: None });
    }

    /// Applied revoke.
    pub fn apply_revoke(&self, id: i64) {
        self.lock().leases.remove(&id);
    }

    /// Replaces the table with the leases stored in `engine` (after a Raft snapshot replaced
    /// the store, or at start). Leases that stay keep their deadline; new ones get a full TTL if
    /// this lessor is primary; primary or not stays as it was.
    pub fn reload(&self, engine: &Engine) -> Result<()> {
        let stored = stored_leases(engine)?;
        let mut state = self.lock();
        let primary = state.primary;
        let mut old = std::mem::take(&mut state.leases);
        let now = Instant::now();
        for (id, ttl_seconds) in stored {
            let entry = match old.remove(&id) {
                Some(entry) if entry.ttl_seconds == ttl_seconds => entry,
                _ => LeaseEntry {
                    ttl_seconds,
                    deadline: primary.then(|| now + Duration::from_secs(ttl_seconds.max(0) as u64)),
                    reported_at: None,
                },
            };
            state.leases.insert(id, entry);
        }
        Ok(())
    }

    /// Keep-alive: resets the deadline and returns the TTL, or `LeaseNotFound` for an unknown
    /// or already expired lease.
    pub fn renew(&self, id: i64) -> Result<i64> {
        let mut state = self.lock();
        let now = Instant::now();
        let entry = state.leases.get_mut(&id).ok_or(StoreError::LeaseNotFound)?;
        if entry.deadline.is_some_and(|d| d <= now) {
            return Err(StoreError::LeaseNotFound);
        }
        entry.deadline = Some(now + Duration::from_secs(entry.ttl_seconds as u64));
        entry.reported_at = None;
        Ok(entry.ttl_seconds)
    }

    /// Remaining and granted TTL, or `None` for an unknown lease.
    pub fn time_to_live(&self, id: i64) -> Option<LeaseTtl> {
        let state = self.lock();
        let entry = state.leases.get(&id)?;
        let remaining = match entry.deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()).as_secs() as i64,
            None => entry.ttl_seconds,
        };
        Some(LeaseTtl { remaining_seconds: remaining, granted_seconds: entry.ttl_seconds })
    }

    /// Every lease ID, soonest expiry first (etcd's order for LeaseLeases).
    pub fn ids(&self) -> Vec<i64> {
        let state = self.lock();
        let mut leases: Vec<(Option<Instant>, i64, i64)> =
            state.leases.iter().map(|(id, e)| (e.deadline, e.ttl_seconds, *id)).collect();
        // Without deadlines (not primary) a shorter TTL stands for a sooner expiry.
        leases.sort_unstable_by_key(|&(deadline, ttl, id)| (deadline, ttl, id));
        leases.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Becomes primary: every lease gets a fresh full TTL plus `extend`.
    pub fn promote(&self, extend: Duration) {
        let mut state = self.lock();
        state.primary = true;
        let now = Instant::now();
        for entry in state.leases.values_mut() {
            entry.deadline = Some(now + Duration::from_secs(entry.ttl_seconds as u64) + extend);
            entry.reported_at = None;
        }
    }

    /// Stops tracking deadlines; another member decides expiry now.
    pub fn demote(&self) {
        let mut state = self.lock();
        state.primary = false;
        for entry in state.leases.values_mut() {
            entry.deadline = None;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    /// Leases past their deadline that have not been reported in the last few seconds, at
    /// most `limit` of them. The caller revokes them through the write path.
    pub fn take_expired(&self, limit: usize) -> Vec<i64> {
        let mut state = self.lock();
        if !state.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        for (id, entry) in state.leases.iter_mut() {
            if expired.len() == limit {
                break;
            }
            let due = entry.deadline.is_some_and(|d| d <= now);
            let quiet = entry.reported_at.is_none_or(|at| now.duration_since(at) >= REVOKE_RETRY);
            if due && quiet {
                entry.reported_at = Some(now);
                expired.push(*id);
            }
        }
        expired
    }
}

/// Every lease in the `lease` keyspace: (ID, granted TTL).
pub fn stored_leases(engine: &Engine) -> Result<Vec<(i64, i64)>> {
    let corrupt = || CorruptRecord { space: "lease", what: "entry is not two 8-byte integers" };
    let mut leases = Vec::new();
    for entry in engine.iter_cf(CF_LEASE) {
        let (key, value) = entry?;
        let id = i64::from_be_bytes(key.as_ref().try_into().map_err(|_| corrupt())?);
        let ttl = i64::from_be_bytes(value.as_ref().try_into().map_err(|_| corrupt())?);
        leases.push((id, ttl));
    }
    Ok(leases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_and_maximum_ttl() {
        let lessor = Lessor::new(2);
        assert_eq!(lessor.effective_ttl(1).unwrap(), 2);
        assert_eq!(lessor.effective_ttl(60).unwrap(), 60);
        assert!(matches!(lessor.effective_ttl(MAX_LEASE_TTL_SECONDS + 1), Err(StoreError::LeaseTtlTooLarge)));
    }

    #[test]
    fn only_the_primary_expires_and_promotion_extends() {
        let lessor = Lessor::new(1);
        lessor.apply_grant(7, 1);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(lessor.take_expired(10).is_empty(), "a non-primary lessor never expires leases");
        lessor.promote(Duration::ZERO);
        assert!(lessor.take_expired(10).is_empty(), "promotion gives a full TTL");
        assert_eq!(lessor.renew(7).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(lessor.take_expired(10), vec![7]);
        assert!(lessor.take_expired(10).is_empty(), "reported once until the retry interval");
        assert!(matches!(lessor.renew(7), Err(StoreError::LeaseNotFound)));
        lessor.demote();
        assert_eq!(lessor.time_to_live(7).unwrap().remaining_seconds, 1);
    }
}
