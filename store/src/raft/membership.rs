//! Membership changes (etcd's MemberAdd/Remove/Promote/Update) and member attributes, run by
//! the leader; a follower forwards them. New voters join the way etcd's do: `member add`
//! records the member at once (it counts toward the quorum even before it starts), and the
//! new process then catches up from the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ChangeMembers;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::raft::node::RaftNode;
use crate::raft::types::{Command, PeerNode};
use crate::raft::wire::{self, MemberChangeRequest};

/// A learner is ready for promotion when it is at most this many entries behind the leader.
const PROMOTE_MAX_LAG: u64 = 1_000;

/// One membership change or attribute update.
#[derive(Clone, Debug)]
pub enum MemberChange {
    Add {
        peer_urls: Vec<String>,
        is_learner: bool,
    },
    Remove {
        id: u64,
    },
    Promote {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    Publish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
    /// Sent by the leader to a member it removed (which may never see the membership entry
    /// that removes it, as replication to it stops): the member confirms with the cluster and
    /// stops, as an etcd member does.
    Removed {
        id: u64,
        leader: u64,
    },
}

impl MemberChange {
    pub fn to_wire(&self, cluster_id: u64, target: u64) -> MemberChangeRequest {
        let mut request = MemberChangeRequest { cluster_id, target, ..Default::default() };
        match self {
            MemberChange::Add { peer_urls, is_learner } => {
                request.kind = 1;
                request.peer_urls = peer_urls.clone();
                request.is_learner = *is_learner;
            }
            MemberChange::Remove { id } => {
                request.kind = 2;
                request.member_id = *id;
            }
            MemberChange::Promote { id } => {
                request.kind = 3;
                request.member_id = *id;
            }
            MemberChange::Update { id, peer_urls } => {
                request.kind = 4;
                request.member_id = *id;
                request.peer_urls = peer_urls.clone();
            }
            MemberChange::Removed { id, leader } => {
                request.kind = 6;
                request.member_id = *id;
                request.is_learner = false;
                request.peer_urls = vec![leader.to_string()];
            }
            MemberChange::Publish { id, name, client_urls } => {
                request.kind = 5;
                request.member_id = *id;
                request.name = name.clone();
                request.client_urls = client_urls.clone();
            }
        }
        request
    }

    pub fn from_wire(request: MemberChangeRequest) -> Result<MemberChange> {
        Ok(match request.kind {
            1 => MemberChange::Add { peer_urls: request.peer_urls, is_learner: request.is_learner },
            2 => MemberChange::Remove { id: request.member_id },
            3 => MemberChange::Promote { id: request.member_id },
            4 => MemberChange::Update { id: request.member_id, peer_urls: request.peer_urls },
            5 => MemberChange::Publish { id: request.member_id, name: request.name, client_urls: request.client_urls },
            6 => MemberChange::Removed {
                id: request.member_id,
                leader: request.peer_urls.first().and_then(|l| l.parse().ok()).unwrap_or(0),
            },
            other => return Err(StoreError::Internal(format!("unknown member change kind {other}"))),
        })
    }
}

/// Runs `change` on the leader, forwarding it if this member does not lead. Returns the ID of
/// the member concerned (for `Add`, the new member's ID).
pub async fn change(node: &RaftNode, change: MemberChange) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + crate::raft::proposer::REQUEST_TIMEOUT;
    let mut leader = node.leader();
    loop {
        match leader {
            Some(id) if id == node.member_id => match apply_on_leader(node, change.clone()).await {
                Err(StoreError::LeaderChanged) => {}
                other => return other,
            },
            Some(id) => match forward(node, id, &change).await {
                Err(StoreError::LeaderChanged) => {}
                other => return other,
            },
            None => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(if node.leader().is_none() { StoreError::NoLeader } else { StoreError::Timeout });
        }
        leader = node
            .wait_for_new_leader(leader, deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)))
            .await;
    }
}

async fn forward(node: &RaftNode, leader: u64, change: &MemberChange) -> Result<u64> {
    let address = node.node(leader).ok_or(StoreError::LeaderChanged)?;
    let mut client = node.peers.client(leader, &address).map_err(|_| StoreError::LeaderChanged)?;
    let reply = match client.member_change(change.to_wire(node.cluster_id, leader)).await {
        Ok(reply) => reply.into_inner(),
        Err(status) if crate::raft::proposer::never_sent(&status) => return Err(StoreError::LeaderChanged),
        Err(status) => return Err(StoreError::Internal(status.message().to_string())),
    };
    match reply.error {
        Some(error) if error.code == wire::NOT_LEADER => Err(StoreError::LeaderChanged),
        Some(error) => Err(StoreError::from_wire(u8::try_from(error.code).unwrap_or(0), error.text)),
        None => Ok(reply.member_id),
    }
}

/// Runs `change` here; `LeaderChanged` means this member does not lead (nothing was done).
pub async fn apply_on_leader(node: &RaftNode, change: MemberChange) -> Result<u64> {
    if !node.is_leader() {
        return Err(StoreError::LeaderChanged);
    }
    let members = node.members();
    let find = |id: u64| members.iter().find(|m| m.id == id);
    let url_taken = |urls: &[String], except: Option<u64>| {
        members.iter().any(|m| Some(m.id) != except && m.node.peer_urls.iter().any(|u| urls.contains(u)))
    };
    let outcome = match change {
        MemberChange::Add { peer_urls, is_learner } => {
            if url_taken(&peer_urls, None) {
                return Err(StoreError::PeerUrlExists);
            }
            let id = new_member_id(&peer_urls, node.cluster_id);
            if find(id).is_some() {
                return Err(StoreError::MemberExists);
            }
            let peer = PeerNode { peer_urls };
            let result = if is_learner {
                node.raft.add_learner(id, peer, false).await
            } else {
                node.raft.change_membership(ChangeMembers::AddVoters(BTreeMap::from([(id, peer)])), false).await
            };
            result.map(|_| id)
        }
        MemberChange::Remove { id } => {
            let member = find(id).ok_or(StoreError::MemberNotFound)?;
            let change = if member.is_learner {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            };
            let removed = node.raft.change_membership(change, false).await.map(|_| id);
            if removed.is_ok() && id != node.member_id {
                tell_removed(node, id, member.node.clone()).await;
            }
            removed
        }
        MemberChange::Promote { id } => {
            let member = find(id).ok_or(StoreError::MemberNotFound)?;
            if !member.is_learner {
                return Err(StoreError::NotLearner);
            }
            if !learner_caught_up(node, id) {
                return Err(StoreError::LearnerNotReady);
            }
            node.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await.map(|_| id)
        }
        MemberChange::Update { id, peer_urls } => {
            find(id).ok_or(StoreError::MemberNotFound)?;
            if url_taken(&peer_urls, Some(id)) {
                return Err(StoreError::PeerUrlExists);
            }
            let nodes = BTreeMap::from([(id, PeerNode { peer_urls })]);
            node.raft.change_membership(ChangeMembers::SetNodes(nodes), false).await.map(|_| id)
        }
        MemberChange::Publish { id, name, client_urls } => {
            node.raft.client_write(Command::PublishMember { id, name, client_urls }).await.map(|_| id)
        }
        MemberChange::Removed { .. } => return Err(StoreError::Internal("not a leader operation".into())),
    };
    outcome.map_err(|error| match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => StoreError::LeaderChanged,
        other => StoreError::Internal(format!("membership change failed: {other}")),
    })
}

/// Best effort: a removed member that is down or unreachable learns it when it next asks.
async fn tell_removed(node: &RaftNode, id: u64, address: PeerNode) {
    let Ok(mut client) = node.peers.client(id, &address) else { return };
    let notice = MemberChange::Removed { id, leader: node.member_id }.to_wire(node.cluster_id, id);
    let mut request = tonic::Request::new(notice);
    request.set_timeout(Duration::from_secs(1));
    if let Err(status) = client.member_change(request).await {
        tracing::info!(member = format!("{id:x}"), %status, "could not tell a removed member");
    }
    node.peers.forget(id);
}

/// On a member told it was removed: true when the leader that said so no longer lists it.
pub async fn confirm_removed(node: &RaftNode, leader: u64) -> bool {
    let Some(address) = node.node(leader) else { return false };
    let Ok(mut client) = node.peers.client(leader, &address) else { return false };
    let request = wire::MembersRequest { cluster_id: node.cluster_id };
    match client.members(request).await {
        Ok(reply) => {
            let reply = reply.into_inner();
            reply.cluster_id == node.cluster_id && !reply.members.iter().any(|m| m.id == node.member_id)
        }
        Err(_) => false,
    }
}

/// etcd's member IDs for added members mix the peer URLs with the time, so a member removed
/// and added again at the same address gets a new ID (Raft must never reuse one).
fn new_member_id(peer_urls: &[String], cluster_id: u64) -> u64 {
    let mut sorted = peer_urls.to_vec();
    sorted.sort();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut hasher = Sha256::new();
    hasher.update(sorted.join(",").as_bytes());
    hasher.update(cluster_id.to_be_bytes());
    hasher.update(now.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes).max(1)
}

fn learner_caught_up(node: &RaftNode, id: u64) -> bool {
    let metrics = node.raft.metrics();
    let metrics = metrics.borrow_watched();
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = metrics
        .replication
        .as_ref()
        .and_then(|replication| replication.get(&id).cloned())
        .flatten()
        .map_or(0, |log_id| log_id.index);
    last.saturating_sub(matched) <= PROMOTE_MAX_LAG
}
