//! Forwarded writes on one gRPC stream per follower and leader (`keelpeer.Peer/ForwardStream`):
//! a follower's batches go out as they come, each one HTTP/2 DATA frame, and the leader answers
//! them in order, each once its log entry is applied. A unary call per batch cost both sides
//! a request of their own (headers, a server task, a client dispatch), a fifth of a loaded
//! cluster's CPU per put.
//!
//! - [`Forwarder`] is the follower's side: one session (a task owning the stream) towards the
//!   leader it last forwarded to, replaced when the leader changes or the stream fails.
//! - [`serve`] is the leader's side: every batch goes to the committer as it arrives; the
//!   answers go back in the batches' order.
//!
//! Retries stay safe: a batch is answered `Retry` only when it certainly never reached the
//! leader (it was still waiting when the stream failed or could not be opened, or the leader
//! refused it because it does not lead). A stream that fails with batches sent answers them
//! `LeaderChanged`, as a failed call did.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::future::Either;
use futures::stream::FuturesOrdered;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::apply::Proposal;
use crate::error::StoreError;
use crate::raft::codec;
use crate::raft::committer::Committer;
use crate::raft::node::RaftNode;
use crate::raft::proposer::{Attempt, REQUEST_TIMEOUT};
use crate::raft::raft_rpc::LocalIds;
use crate::raft::wire::{ForwardReply, ForwardRequest};

/// Batches one stream holds unanswered, on either side; a full stream makes senders wait.
pub const BATCHES_AHEAD: usize = 64;

/// The follower's side: forwards batches to the leader on one stream.
pub struct Forwarder {
    node: Arc<RaftNode>,
    session: Mutex<Option<Session>>,
}

/// The stream towards one leader, as its task's inbox.
struct Session {
    leader: u64,
    tx: mpsc::Sender<Outgoing>,
}

struct Outgoing {
    proposals: Vec<u8>,
    reply: oneshot::Sender<Attempt>,
}

impl Forwarder {
    pub fn new(node: Arc<RaftNode>) -> Forwarder {
        Forwarder { node, session: Mutex::new(None) }
    }

    /// Commits the requests `proposals` encodes (`codec::encode_proposals`) on `leader`; gives
    /// up at `deadline`.
    pub async fn forward(&self, leader: u64, proposals: Vec<u8>, deadline: Instant) -> Attempt {
        let Some(tx) = self.session(leader) else { return Attempt::Retry };
        let (reply, answer) = oneshot::channel();
        let outgoing = Outgoing { proposals, reply };
        if tx.send(outgoing).await.is_err() {
            // The session ended before taking the batch: it was never sent.
            return Attempt::Retry;
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(attempt)) => attempt,
            Ok(Err(_)) => Attempt::Done(Err(StoreError::LeaderChanged)),
            Err(_) => Attempt::Done(Err(StoreError::Timeout)),
        }
    }

    /// The inbox of the session towards `leader`, opened if there is none (or it ended).
    fn session(&self, leader: u64) -> Option<mpsc::Sender<Outgoing>> {
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = session.as_ref().filter(|s| s.leader == leader && !s.tx.is_closed()) {
            return Some(open.tx.clone());
        }
        let address = self.node.node(leader)?;
        let client = self.node.peers.client(leader, &address).ok()?;
        let (tx, rx) = mpsc::channel(BATCHES_AHEAD);
        let addressing = (self.node.cluster_id, leader);
        tokio::spawn(run_session(client, addressing, rx));
        // Replacing the previous session closes its inbox: it answers what it sent, then ends.
        *session = Some(Session { leader, tx: tx.clone() });
        Some(tx)
    }
}

type PeerClient = crate::raft::generated::peer_client::PeerClient<tonic::transport::Channel>;

/// One stream: sends what arrives in `inbox`, hands each answer to the oldest unanswered batch.
async fn run_session(mut client: PeerClient, addressing: (u64, u64), mut inbox: mpsc::Receiver<Outgoing>) {
    let (cluster_id, target) = addressing;
    let (messages, outgoing) = mpsc::channel(BATCHES_AHEAD);
    // No batch is sent before the stream is open, so a failure to open it is safe to retry.
    let opened = tokio::time::timeout(REQUEST_TIMEOUT, client.forward_stream(ReceiverStream::new(outgoing))).await;
    let Ok(Ok(response)) = opened else { return refuse_all(&mut inbox) };
    let mut replies = response.into_inner();
    // Batches sent and not yet answered, oldest first, with when each was sent.
    let mut waiting: VecDeque<(Instant, oneshot::Sender<Attempt>)> = VecDeque::new();
    let mut inbox_open = true;
    loop {
        let oldest = waiting.front().map(|(sent, _)| *sent + REQUEST_TIMEOUT);
        tokio::select! {
            reply = replies.message() => match reply {
                Ok(Some(reply)) => match waiting.pop_front() {
                    Some((_, waiter)) => {
                        let _ = waiter.send(Attempt::from_reply(reply));
                    }
                    None => break,
                },
                // The leader ended the stream or the connection failed.
                Ok(None) | Err(_) => break,
            },
            next = inbox.recv(), if inbox_open && waiting.len() < BATCHES_AHEAD => match next {
                Some(Outgoing { proposals, reply }) => {
                    if messages.send(ForwardRequest { cluster_id, target, proposals }).await.is_err() {
                        // The call has ended: this batch never left.
                        let _ = reply.send(Attempt::Retry);
                        break;
                    }
                    waiting.push_back((Instant::now(), reply));
                }
                None => inbox_open = false,
            },
            // A stream whose oldest batch waited out the request time is stuck (a paused or
            // unreachable leader): give it up, so the next batch opens a new one.
            () = sleep_until(oldest), if oldest.is_some() => break,
        }
        if !inbox_open && waiting.is_empty() {
            return;
        }
    }
    // Whatever was sent may have been committed: the answer is ambiguous.
    for (_, waiter) in waiting {
        let _ = waiter.send(Attempt::Done(Err(StoreError::LeaderChanged)));
    }
    refuse_all(&mut inbox);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Closes `inbox` and answers every batch still in it `Retry`: none of them was sent.
fn refuse_all(inbox: &mut mpsc::Receiver<Outgoing>) {
    inbox.close();
    while let Ok(Outgoing { reply, .. }) = inbox.try_recv() {
        let _ = reply.send(Attempt::Retry);
    }
}

/// The leader's side of one stream: each batch goes to the committer at once (so batches sent
/// back to back can share an entry) and the answers go back in order. A message for another
/// member, or one that cannot be decoded, ends the stream with its error after the answers
/// to the batches before it. `held` is kept until the task serving the stream ends.
pub fn serve(
    node: Arc<RaftNode>,
    local: LocalIds,
    committer: Committer,
    mut incoming: Streaming<ForwardRequest>,
    held: impl Send + 'static,
) -> ReceiverStream<Result<ForwardReply, Status>> {
    let (answers_tx, answers_rx) = mpsc::channel(BATCHES_AHEAD);
    tokio::spawn(async move {
        let _held = held;
        let mut answers = FuturesOrdered::new();
        let mut refusal = None;
        let mut incoming_open = true;
        loop {
            tokio::select! {
                message = incoming.message(), if incoming_open && refusal.is_none() && answers.len() < BATCHES_AHEAD => {
                    match message {
                        Ok(Some(request)) => match accept(&node, &local, request) {
                            Ok(Some((proposals, encoded))) => {
                                let committer = committer.clone();
                                answers.push_back(Either::Left(async move {
                                    committer.commit(proposals, encoded).await.into_reply()
                                }));
                            }
                            Ok(None) => answers.push_back(Either::Right(std::future::ready(Attempt::Retry.into_reply()))),
                            Err(status) => refusal = Some(status),
                        },
                        // The follower closed its side, or its connection failed.
                        Ok(None) | Err(_) => incoming_open = false,
                    }
                }
                Some(answer) = answers.next(), if !answers.is_empty() => {
                    if answers_tx.send(Ok(answer)).await.is_err() {
                        return;
                    }
                }
            }
            if answers.is_empty() && (!incoming_open || refusal.is_some()) {
                break;
            }
        }
        if let Some(status) = refusal {
            let _ = answers_tx.send(Err(status)).await;
        }
    });
    ReceiverStream::new(answers_rx)
}

/// A forwarded batch, decoded, with the bytes it came in, if this member leads (`None` if not:
/// the follower retries).
fn accept(
    node: &RaftNode,
    local: &LocalIds,
    request: ForwardRequest,
) -> Result<Option<(Vec<Proposal>, Vec<u8>)>, Status> {
    local.check(request.cluster_id, request.target)?;
    if !node.is_leader() {
        return Ok(None);
    }
    codec::decode_proposals(&request.proposals)
        .map(|proposals| Some((proposals, request.proposals)))
        .map_err(|e| Status::invalid_argument(format!("keel: bad forwarded requests: {e}")))
}
