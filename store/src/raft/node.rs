//! One member's Raft instance and what the rest of the store asks of it: who leads, the term,
//! the membership, and how to reach another member.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{RaftMetrics, ServerState};
use tokio::time::Instant;

use crate::raft::handover::TransferReplies;
use crate::raft::transport::Peers;
use crate::raft::types::{PeerNode, Raft, TypeConfig};

/// Raft timing and log retention, from the member's flags.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    /// How often the leader sends heartbeats (etcd's --heartbeat-interval).
    pub heartbeat_interval: Duration,
    /// How long a follower waits without hearing from the leader before it campaigns (etcd's
    /// --election-timeout). See `openraft_config` for how this maps onto openraft's timers.
    pub election_timeout: Duration,
    /// Entries between two snapshots (etcd's --snapshot-count).
    pub snapshot_count: u64,
}

impl RaftSettings {
    /// openraft's timers, chosen so a follower campaigns between 3/4 and all of the election
    /// timeout after the last heartbeat: openraft waits out the leader lease (its maximum
    /// election timeout) and then its randomized election timeout before campaigning.
    pub fn openraft_config(&self) -> Result<openraft::Config, openraft::ConfigError> {
        let election_ms = self.election_timeout.as_millis() as u64;
        let snapshot_count = self.snapshot_count.max(1);
        let config = openraft::Config {
            cluster_name: "keel".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_max: election_ms / 2,
            election_timeout_min: election_ms / 4,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_count),
            // Keep some entries after a snapshot so a briefly lagging member catches up from the
            // log, not by a whole snapshot.
            max_in_snapshot_log_to_keep: (snapshot_count / 2).min(5_000),
            replication_lag_threshold: snapshot_count.saturating_mul(2),
            max_payload_entries: 256,
            enable_pre_vote: Some(true),
            install_snapshot_timeout: 60_000,
            // Retry a member that did not answer soon: a restarted member rejoins quickly.
            backoff: "20ms 40ms ..500ms".into(),
            ..Default::default()
        };
        config.validate()
    }
}

/// What `Status` reports about Raft.
#[derive(Clone, Copy, Debug, Default)]
pub struct RaftStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub is_learner: bool,
}

/// A member of the Raft membership as `MemberList` shows it.
#[derive(Clone, Debug)]
pub struct ClusterMember {
    pub id: u64,
    pub node: PeerNode,
    pub is_learner: bool,
}

pub struct RaftNode {
    pub raft: Raft,
    pub cluster_id: u64,
    pub member_id: u64,
    /// Channels to the other members, shared with openraft's network.
    pub peers: Peers,
    pub settings: RaftSettings,
    /// Fires once when this member has been removed from the cluster; it then stops, as an
    /// etcd member does.
    pub removed: tokio::sync::Notify,
    /// The state machine's applied log index ([`StateMachine::applied_index`]).
    ///
    /// [`StateMachine::applied_index`]: crate::raft::state_machine::StateMachine::applied_index
    applied_index: tokio::sync::watch::Receiver<u64>,
    /// Set once this member has begun to stop: from then on it refuses to take leadership
    /// (`TransferLeader` naming it), so a leader handing over picks a member that stays.
    stopping: AtomicBool,
    /// Transfer targets' answers, shared with the network that receives them (`handover`).
    pub transfers: TransferReplies,
}

impl RaftNode {
    pub fn new(
        raft: Raft,
        identity: (u64, u64),
        peers: Peers,
        settings: RaftSettings,
        applied_index: tokio::sync::watch::Receiver<u64>,
        transfers: TransferReplies,
    ) -> Arc<RaftNode> {
        let (cluster_id, member_id) = identity;
        let removed = tokio::sync::Notify::new();
        let stopping = AtomicBool::new(false);
        Arc::new(RaftNode { raft, cluster_id, member_id, peers, settings, removed, applied_index, stopping, transfers })
    }

    /// Marks this member as stopping (see `stopping`); there is no way back.
    pub fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn with_metrics<T>(&self, read: impl FnOnce(&RaftMetrics<TypeConfig>) -> T) -> T {
        let metrics = self.raft.metrics();
        let guard = metrics.borrow_watched();
        read(&guard)
    }

    /// The leader this member currently follows (or is), if any.
    pub fn leader(&self) -> Option<u64> {
        self.with_metrics(|m| m.current_leader)
    }

    pub fn is_leader(&self) -> bool {
        self.with_metrics(|m| m.state == ServerState::Leader && m.current_leader == Some(self.member_id))
    }

    pub fn status(&self) -> RaftStatus {
        self.with_metrics(|m| RaftStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.as_ref().map_or(0, |id| id.index),
            is_learner: !m.membership_config.membership().voter_ids().any(|id| id == self.member_id),
        })
    }

    /// Every member of the effective membership, voters first, in ID order.
    pub fn members(&self) -> Vec<ClusterMember> {
        self.with_metrics(|m| {
            let membership = m.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            let mut members: Vec<ClusterMember> = membership
                .nodes()
                .map(|(id, node)| ClusterMember { id: *id, node: node.clone(), is_learner: !voters.contains(id) })
                .collect();
            members.sort_by_key(|m| (m.is_learner, m.id));
            members
        })
    }

    /// The address of member `id`, from the membership.
    pub fn node(&self, id: u64) -> Option<PeerNode> {
        self.with_metrics(|m| m.membership_config.membership().get_node(&id).cloned())
    }

    /// Waits until a leader other than `previous` is known, or `deadline`. Returns the leader
    /// known then (possibly still `previous`).
    pub async fn wait_for_new_leader(&self, previous: Option<u64>, deadline: Instant) -> Option<u64> {
        let mut metrics = self.raft.metrics();
        loop {
            let leader = metrics.borrow_watched().current_leader;
            if leader.is_some() && leader != previous {
                return leader;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return self.leader(),
            }
        }
    }

    /// Follows leadership: server state, leader, vote and membership, which change far less
    /// often than the log indexes (every applied entry).
    pub fn watch_leadership(&self) -> LeadershipWatch {
        LeadershipWatch(self.raft.server_metrics())
    }

    /// Waits until this member has applied log index `index`, or `deadline`.
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> bool {
        if *self.applied_index.borrow() >= index {
            return true;
        }
        let mut applied = self.applied_index.clone();
        matches!(tokio::time::timeout_at(deadline, applied.wait_for(|applied| *applied >= index)).await, Ok(Ok(_)))
    }
}

/// See [`RaftNode::watch_leadership`].
pub struct LeadershipWatch(
    openraft::type_config::alias::WatchReceiverOf<TypeConfig, openraft::metrics::RaftServerMetrics<TypeConfig>>,
);

impl LeadershipWatch {
    /// Waits until leadership changes (since the last call), or `deadline`; false when Raft
    /// has shut down.
    pub async fn changed(&mut self, deadline: Instant) -> bool {
        !matches!(tokio::time::timeout_at(deadline, self.0.changed()).await, Ok(Err(_)))
    }
}

/// The initial membership from `--initial-cluster`: member ID → peer URLs.
pub type InitialMembers = BTreeMap<u64, PeerNode>;
