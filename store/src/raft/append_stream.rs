//! AppendEntries as one gRPC stream per replication session (`keelpeer.Peer/AppendStream`):
//! the leader sends the next entries, or a commit update, as soon as openraft has them, without
//! waiting for the answer to the previous message, and every message after the first costs one
//! HTTP/2 DATA frame instead of a request of its own.
//!
//! - [`open`] is the leader's side (openraft's `stream_append` of [`PeerNetwork`]).
//! - [`serve`] is the follower's side: the messages go to `Raft::stream_append`, which answers
//!   them in order, each once its entries are flushed.
//!
//! The payloads follow `network`'s convention: a request is a postcard `AppendEntriesRequest`,
//! an answer a postcard [`Reply`] of openraft's `StreamAppendResult`. A message addressed to
//! another cluster or member ends the stream with `FailedPrecondition` after the messages before
//! it are answered.
//!
//! Time limit: every message must be answered within the RPC's soft TTL (at least
//! `MIN_RPC_TIMEOUT`) of being sent; a stream whose oldest message waits longer is reported as
//! `Unreachable`, like a unary call that timed out. A message sent while nothing else awaited an
//! answer is checked one TTL later at most, so it is reported within two TTLs.
//!
//! An `AppendEntries` too large for one message is cut to its longest fitting prefix (as the
//! unary call does) and the stream's input ends after it: the follower's answer acknowledges the
//! prefix, and openraft's next session starts after it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{RPCError, RaftError};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::raft::network::{PeerNetwork, Reply, fit_entries};
use crate::raft::raft_rpc::{LocalIds, open_request, seal_reply};
use crate::raft::types::{Raft, TypeConfig};
use crate::raft::wire::RaftMessage;

/// Answers the follower's side holds for a slow connection (Raft keeps up to 64 requests in
/// progress on its own).
const ANSWERS_AHEAD: usize = 16;

type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// What the sending half tells the receiving half of one stream.
#[derive(Default)]
struct InFlight {
    /// When each message still awaiting its answer was handed to the connection, oldest first.
    sent: VecDeque<Instant>,
    /// Why the sending half stopped early, if it could not encode a message.
    failed: Option<String>,
}

#[derive(Clone, Default)]
struct Shared {
    in_flight: Arc<Mutex<InFlight>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, InFlight> {
        // Every update is a single push, pop or assignment: a panic cannot leave it half-done.
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The leader's side: sends `input` on one stream to the member `network` addresses and
/// yields the member's answers in order.
pub fn open<'s, S>(
    network: &'s PeerNetwork,
    input: S,
    option: RPCOption,
) -> BoxFuture<'s, Result<BoxStream<'s, Answer>, RPCError<TypeConfig>>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    Box::pin(async move {
        let ttl = network.rpc_timeout(&option);
        let mut client = network.client("AppendStream")?;
        let shared = Shared::default();
        let requests = outgoing(network.addressing(), input, network.message_budget(), shared.clone());
        let call = client.append_stream(requests);
        let replies = match tokio::time::timeout(ttl, call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                let why = PeerNetwork::describe_status(&status);
                return Err(network.unreachable(format_args!("AppendStream: {why}")).into());
            }
            Err(_) => return Err(network.unreachable(format_args!("AppendStream: no answer within {ttl:?}")).into()),
        };
        let answers = Answers { network, replies, shared, ttl, ended: false };
        let stream: BoxStream<'s, Answer> = Box::pin(futures::stream::unfold(answers, |mut answers| async move {
            let answer = answers.next().await?;
            Some((answer, answers))
        }));
        Ok(stream)
    })
}

/// The messages of one stream: each request encoded (cut to a prefix if too large), and its
/// sending time recorded for the answer's deadline.
fn outgoing<S>(addressing: (u64, u64), input: S, budget: usize, shared: Shared) -> impl Stream<Item = RaftMessage>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let (cluster_id, target) = addressing;
    futures::stream::unfold(Some(input), move |input| {
        let shared = shared.clone();
        async move {
            let mut input = input?;
            let request = input.next().await?;
            let (payload, cut) = match fit_entries(request, budget) {
                Ok(encoded) => encoded,
                Err(e) => {
                    shared.lock().failed = Some(e.to_string());
                    return None;
                }
            };
            shared.lock().sent.push_back(Instant::now());
            // After a prefix, the rest of the request was never sent: nothing after it may be.
            let rest = if cut.is_some() { None } else { Some(input) };
            Some((RaftMessage { cluster_id, target, payload }, rest))
        }
    })
}

/// The receiving half of one stream.
struct Answers<'s> {
    network: &'s PeerNetwork,
    replies: Streaming<RaftMessage>,
    shared: Shared,
    ttl: Duration,
    ended: bool,
}

impl Answers<'_> {
    async fn next(&mut self) -> Option<Answer> {
        if self.ended {
            return None;
        }
        let answer = self.receive().await;
        // A failure ends the stream: openraft opens a new one.
        self.ended = !matches!(answer, Some(Ok(Ok(_))));
        answer
    }

    async fn receive(&mut self) -> Option<Answer> {
        let ttl = self.ttl;
        let reply = loop {
            // With nothing awaiting an answer, look again after one TTL: a message sent
            // meanwhile is then checked against its own deadline (so it is noticed within two
            // TTLs at worst, without waking this task for every message sent).
            let oldest = self.shared.lock().sent.front().copied();
            let check_at = oldest.map_or_else(|| Instant::now() + ttl, |sent| sent + ttl);
            // `message()` only polls the stream, so dropping it to look again is safe.
            tokio::select! {
                reply = self.replies.message() => break reply,
                () = tokio::time::sleep_until(check_at) => {
                    if oldest.is_some() {
                        return Some(Err(self.failure(format_args!("no answer within {ttl:?}"))));
                    }
                }
            }
        };
        match reply {
            Ok(Some(reply)) => {
                if self.shared.lock().sent.pop_front().is_none() {
                    return Some(Err(self.failure("an answer to no message")));
                }
                Some(self.network.open_reply("AppendStream", reply).map_err(RPCError::from))
            }
            Ok(None) => {
                let mut shared = self.shared.lock();
                let why = match shared.failed.take() {
                    Some(why) => why,
                    None if shared.sent.is_empty() => return None,
                    None => format!("the member ended the stream with {} messages unanswered", shared.sent.len()),
                };
                drop(shared);
                Some(Err(self.failure(why)))
            }
            Err(status) => Some(Err(self.failure(PeerNetwork::describe_status(&status)))),
        }
    }

    fn failure(&self, why: impl std::fmt::Display) -> RPCError<TypeConfig> {
        self.network.unreachable(format_args!("AppendStream: {why}")).into()
    }
}

/// The follower's side: hands the stream's requests to Raft and answers each in order. A
/// message that is not for this member, or cannot be decoded, ends the stream with its error
/// after the answers to the messages before it. `held` is kept until the task calling Raft
/// ends (a stopping member stops Raft only after these tasks).
pub fn serve(
    raft: Raft,
    local: LocalIds,
    incoming: Streaming<RaftMessage>,
    held: impl Send + 'static,
) -> impl Stream<Item = Result<RaftMessage, Status>> + Send + 'static {
    let (requests, refusal) = incoming_requests(local, incoming);
    // Raft's answer stream borrows `raft`, so a task owning both feeds the call's answers.
    let (answers_tx, answers_rx) = mpsc::channel(ANSWERS_AHEAD);
    tokio::spawn(async move {
        let _held = held;
        let mut answers = std::pin::pin!(raft.stream_append(requests));
        while let Some(result) = answers.next().await {
            let reply: Reply<StreamAppendResult<TypeConfig>> = result.map_err(RaftError::Fatal);
            if answers_tx.send(seal_reply(&local, "AppendStream", &reply)).await.is_err() {
                return;
            }
        }
        if let Some(status) = refusal.take() {
            let _ = answers_tx.send(Err(status)).await;
        }
    });
    ReceiverStream::new(answers_rx)
}

/// Why an incoming stream's requests ended early, once they have.
#[derive(Clone, Default)]
pub struct Refusal(Arc<Mutex<Option<Status>>>);

impl Refusal {
    pub fn take(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    fn set(&self, status: Status) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(status);
    }
}

/// The requests of an incoming stream, checked and decoded. They end with the stream, or
/// at the first message that is not for this member or cannot be decoded, whose error is then
/// in the returned [`Refusal`].
pub fn incoming_requests(
    local: LocalIds,
    incoming: Streaming<RaftMessage>,
) -> (BoxStream<'static, AppendEntriesRequest<TypeConfig>>, Refusal) {
    let refusal = Refusal::default();
    let refused = refusal.clone();
    let requests = futures::stream::unfold(Some(incoming), move |incoming| {
        let refused = refused.clone();
        async move {
            let mut incoming = incoming?;
            let message = match incoming.message().await {
                Ok(Some(message)) => message,
                // The leader ended the stream, or its connection failed: nobody to answer.
                Ok(None) | Err(_) => return None,
            };
            match open_request::<AppendEntriesRequest<TypeConfig>>(&local, "AppendStream", &message) {
                Ok(request) => Some((request, Some(incoming))),
                Err(status) => {
                    refused.set(status);
                    None
                }
            }
        }
    });
    (Box::pin(requests), refusal)
}
