//! Lease calls only the leader can answer (it alone tracks expiry deadlines): keep-alive and
//! time-to-live. A follower forwards them to the leader.

use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::lease::{LeaseTtl, Lessor};
use crate::raft::node::RaftNode;
use crate::raft::wire::{self, LeaseReply, LeaseRequest};

/// How long a keep-alive may wait for a leader.
const LEASE_CALL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy)]
pub enum LeaseCall {
    KeepAlive,
    TimeToLive,
}

/// Answers `call` for lease `id` on the leader: the remaining TTL (keep-alive: the renewed TTL,
/// 0 if the lease does not exist) or `None` when the lease does not exist (time-to-live).
pub async fn call(node: &RaftNode, lessor: &Lessor, call: LeaseCall, id: i64) -> Result<Option<LeaseTtl>> {
    let deadline = tokio::time::Instant::now() + LEASE_CALL_TIMEOUT;
    let mut leader = node.leader();
    loop {
        let attempt = match leader {
            Some(l) if l == node.member_id && lessor.is_primary() => return local(lessor, call, id),
            Some(l) if l != node.member_id => remote(node, l, call, id).await,
            // This member leads but has not yet promoted its lessor (it is still applying the
            // previous terms' entries): wait briefly.
            _ => Err(StoreError::LeaderChanged),
        };
        match attempt {
            Err(StoreError::LeaderChanged) if tokio::time::Instant::now() < deadline => {
                let wait = deadline.min(tokio::time::Instant::now() + Duration::from_millis(20));
                leader = node.wait_for_new_leader(leader, wait).await;
            }
            Err(StoreError::LeaderChanged) => return Err(StoreError::NoLeader),
            other => return other,
        }
    }
}

/// The leader's own answer; `LeaderChanged` when this lessor is not primary.
pub fn local(lessor: &Lessor, call: LeaseCall, id: i64) -> Result<Option<LeaseTtl>> {
    if !lessor.is_primary() {
        return Err(StoreError::LeaderChanged);
    }
    match call {
        LeaseCall::KeepAlive => match lessor.renew(id) {
            Ok(ttl) => Ok(Some(LeaseTtl { remaining_seconds: ttl, granted_seconds: ttl })),
            Err(StoreError::LeaseNotFound) => Ok(None),
            Err(error) => Err(error),
        },
        LeaseCall::TimeToLive => Ok(lessor.time_to_live(id)),
    }
}

pub fn to_reply(outcome: Result<Option<LeaseTtl>>) -> LeaseReply {
    match outcome {
        Ok(Some(ttl)) => {
            LeaseReply { ttl_seconds: ttl.remaining_seconds, granted_ttl_seconds: ttl.granted_seconds, error: None }
        }
        Ok(None) => LeaseReply { ttl_seconds: -1, granted_ttl_seconds: 0, error: None },
        Err(StoreError::LeaderChanged) => LeaseReply {
            error: Some(wire::WireError { code: wire::NOT_LEADER, text: "not the leader".into() }),
            ..Default::default()
        },
        Err(error) => {
            let (code, text) = error.to_wire();
            LeaseReply { error: Some(wire::WireError { code: code.into(), text }), ..Default::default() }
        }
    }
}

async fn remote(node: &RaftNode, leader: u64, call: LeaseCall, id: i64) -> Result<Option<LeaseTtl>> {
    let address = node.node(leader).ok_or(StoreError::LeaderChanged)?;
    let mut client = node.peers.client(leader, &address).map_err(|_| StoreError::LeaderChanged)?;
    let mut request = tonic::Request::new(LeaseRequest { cluster_id: node.cluster_id, target: leader, id });
    request.set_timeout(Duration::from_secs(1));
    let reply = match call {
        LeaseCall::KeepAlive => client.lease_keep_alive(request).await,
        LeaseCall::TimeToLive => client.lease_time_to_live(request).await,
    };
    // Lease calls change nothing durable: any transport failure may be retried.
    let reply = reply.map_err(|_| StoreError::LeaderChanged)?.into_inner();
    match reply.error {
        Some(error) if error.code == wire::NOT_LEADER => Err(StoreError::LeaderChanged),
        Some(error) => Err(StoreError::from_wire(u8::try_from(error.code).unwrap_or(0), error.text)),
        None if reply.ttl_seconds < 0 => Ok(None),
        None => Ok(Some(LeaseTtl { remaining_seconds: reply.ttl_seconds, granted_seconds: reply.granted_ttl_seconds })),
    }
}
