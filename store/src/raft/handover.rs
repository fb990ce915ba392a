//! Handing leadership to another voter before this member stops, as etcd's leader does on
//! shutdown, so the cluster has a leader again at once instead of after an election timeout
//! (during which no member serves a write or a linearizable read).
//!
//! openraft carries the transfer out (`Trigger::transfer_leader`): the leader stops proposing
//! and heartbeating and tells every voter; the target waits until its log has everything the
//! leader had, then campaigns at once, and the other voters grant it their vote without waiting
//! for the old leader's lease to run out. What is ours: choosing the target, and knowing when
//! to give up. The network's `TransferLeader` call reports the target's answer here
//! ([`TransferReplies`]); a refusal (the target is stopping too, or cannot be reached) moves on
//! to the next candidate at once, so a member whose peers are gone or stopping with it does not
//! wait for a leader that will not come.

use std::sync::Arc;
use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::watch::WatchReceiver;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::raft::node::RaftNode;
use crate::raft::types::LogId;

/// How long a target that accepted gets to become the leader this member hears from: it
/// campaigns at once, so one vote round and its first AppendEntries, each answered within the
/// Raft RPC time (300 ms at least). Longer means it stopped too (members stopped together) or
/// lost; waiting on would only delay this member's own stop.
pub const LEADER_AFTER_ACCEPT: Duration = Duration::from_secs(1);

/// A transfer target's answer to `TransferLeader`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferReply {
    pub target: u64,
    /// True: its log has the leader's and it campaigns now. False: it refused, or no answer
    /// came (it is unreachable, stopping, or its log could not catch up in time).
    pub accepted: bool,
}

/// The latest [`TransferReply`], written by the network, read by [`hand_over`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TransferReplies {
    latest: Arc<watch::Sender<Option<TransferReply>>>,
}

impl Default for TransferReplies {
    fn default() -> Self {
        TransferReplies { latest: Arc::new(watch::channel(None).0) }
    }
}

impl TransferReplies {
    /// A reply from `target` is on its way; if the call ends without one (openraft drops it at
    /// its own deadline), dropping the returned guard reports a refusal.
    pub fn expect(&self, target: u64) -> PendingReply {
        PendingReply { replies: self.clone(), target, reported: false }
    }

    fn record(&self, reply: TransferReply) {
        self.latest.send_replace(Some(reply));
    }

    fn subscribe(&self) -> watch::Receiver<Option<TransferReply>> {
        self.latest.subscribe()
    }
}

/// A `TransferLeader` call to the target, in progress.
pub struct PendingReply {
    replies: TransferReplies,
    target: u64,
    reported: bool,
}

impl PendingReply {
    pub fn finish(mut self, accepted: bool) {
        self.reported = true;
        self.replies.record(TransferReply { target: self.target, accepted });
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        if !self.reported {
            self.replies.record(TransferReply { target: self.target, accepted: false });
        }
    }
}

/// How a hand-over ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandOver {
    /// This member did not lead: nothing to hand over.
    NotLeader,
    /// Member `to` leads now; this member has applied everything it appended (or the deadline
    /// came first: `applied` false).
    Moved { to: u64, applied: bool },
    /// No other voter answered this leader recently.
    NoReachablePeer,
    /// Every reachable voter refused (each stopping, or unreachable after all).
    Refused { tried: Vec<u64> },
    /// `target` accepted but no new leader was seen by the deadline.
    TimedOut { target: u64 },
    /// Raft stopped meanwhile.
    RaftStopped,
}

/// If this member leads, moves leadership to the most up-to-date voter that answered recently,
/// trying the next one on a refusal, until `deadline`. Once another member leads, waits (until
/// `deadline`) until this member has applied what it appended, so the writes followers
/// forwarded to it are answered before it goes.
pub async fn hand_over(node: &RaftNode, deadline: Instant) -> HandOver {
    let mut replies = node.transfers.subscribe();
    let mut tried = Vec::new();
    while node.is_leader() {
        let candidates = candidates(node);
        let Some(&target) = candidates.iter().find(|id| !tried.contains(*id)) else {
            return if tried.is_empty() { HandOver::NoReachablePeer } else { HandOver::Refused { tried } };
        };
        tried.push(target);
        // The leader proposes nothing after the trigger: this is the last entry it will append.
        let appended = node.status().last_log_index;
        replies.borrow_and_update();
        tracing::info!(to = format!("{target:x}"), "handing leadership over");
        if node.raft.trigger().transfer_leader(target).await.is_err() {
            return HandOver::RaftStopped;
        }
        match wait_outcome(node, &mut replies, target, deadline).await {
            Outcome::Moved(to) => return HandOver::Moved { to, applied: node.wait_applied(appended, deadline).await },
            Outcome::Refused => continue,
            Outcome::TimedOut => return HandOver::TimedOut { target },
            Outcome::RaftStopped => return HandOver::RaftStopped,
        }
    }
    HandOver::NotLeader
}

enum Outcome {
    Moved(u64),
    Refused,
    TimedOut,
    RaftStopped,
}

/// Waits until another member leads (this one has heard from it), `target` refuses, or
/// `deadline`; once `target` has accepted, for [`LEADER_AFTER_ACCEPT`] at most.
async fn wait_outcome(
    node: &RaftNode,
    replies: &mut watch::Receiver<Option<TransferReply>>,
    target: u64,
    mut deadline: Instant,
) -> Outcome {
    let mut metrics = node.raft.metrics();
    let mut accepted = false;
    loop {
        if let Some(leader) = node.leader().filter(|leader| *leader != node.member_id) {
            return Outcome::Moved(leader);
        }
        match *replies.borrow_and_update() {
            Some(TransferReply { target: from, accepted: false }) if from == target => return Outcome::Refused,
            Some(TransferReply { target: from, accepted: true }) if from == target && !accepted => {
                accepted = true;
                deadline = deadline.min(Instant::now() + LEADER_AFTER_ACCEPT);
            }
            _ => {}
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return Outcome::RaftStopped },
            // The sender lives in `node`, which the caller holds.
            _ = replies.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return Outcome::TimedOut,
        }
    }
}

/// The voters other than this leader that acknowledged it within one election timeout, most
/// up-to-date first (least to catch up before they can campaign). One not heard from for
/// longer is as good as gone for the cluster too: its followers would be campaigning by now.
fn candidates(node: &RaftNode) -> Vec<u64> {
    let window = node.settings.election_timeout;
    node.with_metrics(|m| {
        let (Some(replication), Some(heartbeat)) = (&m.replication, &m.heartbeat) else { return Vec::new() };
        let heard_within = |id: &u64, window: Duration| {
            heartbeat.get(id).and_then(Option::as_ref).is_some_and(|acked| acked.elapsed() < window)
        };
        let mut voters: Vec<(Option<LogId>, u64)> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != node.member_id && heard_within(id, window))
            .map(|id| (replication.get(&id).cloned().flatten(), id))
            .collect();
        voters.sort_by(|a, b| b.cmp(a));
        voters.into_iter().map(|(_, id)| id).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_ends_without_an_answer_is_a_refusal() {
        let replies = TransferReplies::default();
        let mut seen = replies.subscribe();
        drop(replies.expect(7));
        assert_eq!(*seen.borrow_and_update(), Some(TransferReply { target: 7, accepted: false }));
        replies.expect(8).finish(true);
        assert_eq!(*seen.borrow_and_update(), Some(TransferReply { target: 8, accepted: true }));
    }
}
