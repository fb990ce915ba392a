//! The replicated write path: write requests are batched (one log entry carries many requests,
//! each still its own revision), then handed to the leader's [`Committer`], here or by a
//! forward, which merges the batches of all members into one log entry.
//!
//! A write is answered once the answering member has applied it, as etcd does, so a read served
//! from that member's own state right after (serializable) sees it: the leader answers after its
//! apply, and a member that forwarded the batch waits until it has applied the batch's log entry.
//!
//! Retries are only ever made when the request certainly was not appended to any log: the
//! leader refused it up front (not leader), or the connection to the leader could not be made.
//! Anything ambiguous (a leader that died mid-request) is answered with an error, as etcd does;
//! the client decides whether to retry.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::apply::{Applied, Proposal};
use crate::error::{Result, StoreError};
use crate::raft::codec;
use crate::raft::committer::Committer;
use crate::raft::forward_stream::{BATCHES_AHEAD, Forwarder};
use crate::raft::node::RaftNode;
use crate::raft::types::{Command, ProposalBatch};
use crate::raft::wire;

/// Requests waiting to be batched; a full queue makes callers wait (back-pressure).
const QUEUE_CAPACITY: usize = 8_192;
/// Requests per batch, and per log entry, at most.
pub const BATCH_MAX_REQUESTS: usize = 512;
/// Encoded bytes per batch, and per log entry, at most (one request may exceed it alone).
pub const BATCH_MAX_BYTES: usize = 4 << 20;
/// Batches a follower forwards concurrently: as many as its stream holds unanswered. They travel
/// on one stream (`forward_stream`), so a batch costs a message, not a call, and a request sent
/// at once joins the leader's very next entry instead of waiting here for an earlier batch's
/// answer. With 8, a loaded follower's requests waited 0.7 ms here, for about 15% fewer puts
/// (docs/benchmarks.md). Requests that arrive while all are in flight go in the next batch. On
/// the leader, batches go to the committer at once: it paces the log entries, and a batch held
/// back here would miss the next entry.
const FORWARDS_IN_FLIGHT: usize = BATCHES_AHEAD;
/// How long a retry waits for a leader change before trying again anyway.
const RETRY_WAIT: Duration = Duration::from_millis(50);
/// How long a write may wait for a leader (and for its batch to commit) before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Job {
    proposal: Proposal,
    reply: oneshot::Sender<Result<Applied>>,
}

/// Handle to submit write requests; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Job>,
    committer: Committer,
}

impl Proposer {
    /// Starts the batching task and this member's committer on the current tokio runtime.
    pub fn start(node: Arc<RaftNode>) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let committer = Committer::start(node.clone());
        let forwarder = Arc::new(Forwarder::new(node.clone()));
        tokio::spawn(run(node, committer.clone(), forwarder, rx));
        Proposer { tx, committer }
    }

    /// The committer that serves batches followers forward to this member.
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Commits `proposal` through Raft and returns its outcome.
    pub async fn propose(&self, proposal: Proposal) -> Result<Applied> {
        let (reply, outcome) = oneshot::channel();
        self.tx.send(Job { proposal, reply }).await.map_err(|_| StoreError::Stopped)?;
        outcome.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn run(node: Arc<RaftNode>, committer: Committer, forwarder: Arc<Forwarder>, mut rx: mpsc::Receiver<Job>) {
    let in_flight = Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // A follower waits for a free slot first: requests that arrive meanwhile join this batch.
        let permit = if node.is_leader() {
            None
        } else {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            Some(permit)
        };
        let mut bytes = codec::encoded_proposal_len(&first.proposal);
        let mut jobs = vec![first];
        while jobs.len() < BATCH_MAX_REQUESTS && bytes < BATCH_MAX_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += codec::encoded_proposal_len(&job.proposal);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (node, committer, forwarder) = (node.clone(), committer.clone(), forwarder.clone());
        tokio::spawn(async move {
            let (proposals, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.proposal, j.reply)).unzip();
            match submit(&node, &committer, &forwarder, proposals).await {
                Ok(outcomes) if outcomes.len() == replies.len() => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Ok(outcomes) => {
                    let error = format!("keel: {} outcomes for {} requests", outcomes.len(), replies.len());
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Internal(error.clone())));
                    }
                }
                Err(error) => {
                    let (code, text) = error.to_wire();
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::from_wire(code, text.clone())));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Commits one batch on the leader, wherever it is; one outcome per request.
async fn submit(
    node: &RaftNode,
    committer: &Committer,
    forwarder: &Forwarder,
    proposals: Vec<Proposal>,
) -> Result<Vec<Result<Applied>>> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    // Encoded once: the leader's log, its followers and a forward all take these bytes.
    let encoded = codec::encode_proposals(&proposals);
    let mut leader = node.leader();
    loop {
        let attempt = match leader {
            None => Attempt::Retry,
            Some(id) if id == node.member_id => committer.commit(proposals.clone(), encoded.clone()).await,
            Some(id) => forwarder.forward(id, encoded.clone(), deadline).await,
        };
        match attempt {
            Attempt::Done(Ok(committed)) => {
                // Forwarded: the leader applied it; wait until this member has too.
                if !node.wait_applied(committed.log_index, deadline).await {
                    return Err(StoreError::Timeout);
                }
                return Ok(committed.outcomes);
            }
            Attempt::Done(Err(error)) => return Err(error),
            Attempt::Retry if Instant::now() < deadline => {
                // Wait briefly for a new leader, then try again whoever leads: a member that
                // has just won an election refuses writes until it is ready, and stays leader
                // (waiting for a *different* leader would wait out the whole deadline).
                let previous = leader;
                let wait_until = deadline.min(Instant::now() + RETRY_WAIT);
                leader = node.wait_for_new_leader(previous, wait_until).await;
                if leader == previous {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Attempt::Retry => {
                return Err(if node.leader().is_none() { StoreError::NoLeader } else { StoreError::Timeout });
            }
        }
    }
}

pub enum Attempt {
    Done(Result<Committed>),
    /// Certainly not appended anywhere: try again with the (next) leader.
    Retry,
}

/// A batch committed and applied by the leader.
pub struct Committed {
    /// The log entry that carried the batch.
    pub log_index: u64,
    /// One outcome per request.
    pub outcomes: Vec<Result<Applied>>,
}

/// Proposes on this member, which believes it leads (the committer's one way to Raft).
/// `entry_slot` is released once a quorum has the entry (before it is applied here), or once
/// the attempt ends without a commit.
pub async fn propose_locally(node: &RaftNode, batch: ProposalBatch, entry_slot: OwnedSemaphorePermit) -> Attempt {
    let (responder, commit, complete) = ProgressResponder::new();
    let command = Command::Requests(batch);
    if let Err(fatal) = node.raft.client_write_ff(command, Some(responder)).await {
        return Attempt::Done(Err(StoreError::Internal(format!("raft: {fatal}"))));
    }
    // Err: the responder ended without a commit; the outcome below says why.
    let _ = commit.await;
    drop(entry_slot);
    match complete.await {
        Ok(Ok(response)) => {
            Attempt::Done(Ok(Committed { log_index: response.log_id.index(), outcomes: response.data.0 }))
        }
        Ok(Err(ClientWriteError::ForwardToLeader(_))) => Attempt::Retry,
        Ok(Err(ClientWriteError::LogEntryDiscarded(_))) => Attempt::Done(Err(StoreError::LeaderChanged)),
        Ok(Err(error)) => Attempt::Done(Err(StoreError::Internal(format!("raft: {error}")))),
        Err(_) => Attempt::Done(Err(StoreError::Stopped)),
    }
}

impl Attempt {
    /// The attempt as a forwarded call's reply.
    pub fn into_reply(self) -> wire::ForwardReply {
        match self {
            Attempt::Done(Ok(committed)) => wire::ForwardReply {
                outcomes: codec::encode_outcomes(&committed.outcomes),
                error: None,
                log_index: committed.log_index,
            },
            Attempt::Done(Err(error)) => {
                let (code, text) = error.to_wire();
                wire::ForwardReply {
                    outcomes: Vec::new(),
                    error: Some(wire::WireError { code: code.into(), text }),
                    log_index: 0,
                }
            }
            Attempt::Retry => wire::ForwardReply {
                outcomes: Vec::new(),
                error: Some(wire::WireError { code: wire::NOT_LEADER, text: "not the leader".into() }),
                log_index: 0,
            },
        }
    }

    /// A forwarded batch's reply as an attempt: `Retry` when the leader refused it up front.
    pub fn from_reply(reply: wire::ForwardReply) -> Attempt {
        match reply.error {
            Some(error) if error.code == wire::NOT_LEADER => Attempt::Retry,
            Some(error) => {
                let code = u8::try_from(error.code).unwrap_or(0);
                Attempt::Done(Err(StoreError::from_wire(code, error.text)))
            }
            None => Attempt::Done(
                codec::decode_outcomes(&reply.outcomes)
                    .map(|outcomes| Committed { log_index: reply.log_index, outcomes })
                    .map_err(|e| StoreError::Internal(format!("bad forward reply: {e}"))),
            ),
        }
    }
}

/// True when the call certainly never reached the leader: the connection was refused or
/// could not be made.
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::TimedOut
            );
        }
        source = error.source();
    }
    // tonic reports a failed connect as Unavailable with the connector's error as the source;
    // without one we cannot tell.
    false
}
