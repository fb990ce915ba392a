//! The client side of Raft's RPCs: openraft's [`RaftNetworkFactory`] and, per target member,
//! a [`RaftNetworkV2`] that carries each request over the `keelpeer.Peer` gRPC service.
//! Replication's `AppendEntries` travel on one long-lived stream per replication session
//! (`stream_append`, implemented in `append_stream`); the unary `append_entries` remains for
//! callers that send one request at a time.
//!
//! This module also owns the payload convention both sides follow (the server side is
//! `raft_rpc`):
//!
//! - a request's `RaftMessage.payload` is the postcard encoding of the openraft request
//!   (`AppendEntriesRequest`, `VoteRequest` for both vote and pre-vote, `TransferLeaderRequest`);
//! - a reply's `RaftMessage.payload` is the postcard encoding of [`Reply<T>`] =
//!   `Result<T, RaftError<TypeConfig>>`, where `T` is what the receiving `Raft` method answers
//!   (`AppendEntriesResponse`, `VoteResponse`, `TransferLeaderResponse`, `SnapshotResponse`) and
//!   the error is the receiver's `Fatal` (its Raft stopped or failed);
//! - a snapshot stream's first chunk carries [`SnapshotHeader`] = `(vote, meta)` in `header`,
//!   the file follows in chunks of at most [`SNAPSHOT_CHUNK_BYTES`], the last chunk has `done`;
//! - anything that is not Raft's answer (a message for another cluster or member, an undecodable
//!   payload, a broken snapshot stream) is a gRPC status, never a payload.
//!
//! Every failure to get Raft's answer from the addressed member, including a remote `Fatal` and a
//! refusal by a process that is not that member, is reported to openraft as
//! `Unreachable`, so openraft backs off instead of retrying at once. (openraft's network
//! errors carry no remote error type: `RPCError<C>`'s `RemoteError` holds `Infallible`.)
//!
//! Timeouts: a unary RPC gets openraft's `RPCOption::soft_ttl()`, also sent as the gRPC deadline
//! so the receiver drops work nobody waits for. A snapshot travels on its own connection
//! (`Peers::bulk_client`) with no overall deadline, but each chunk must be taken within
//! [`SNAPSHOT_CHUNK_TIMEOUT`] and the answer must come within [`SNAPSHOT_INSTALL_TIMEOUT`] after
//! the last chunk. An `AppendEntries` larger than the peer message limit is sent as its longest
//! fitting prefix and answered as a partial success, so a big batch never wedges replication.

use std::future::Future;
use std::time::Duration;

use futures::Stream;
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::entry::RaftEntry;
use openraft::error::{RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::SnapshotOf;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::raft::append_stream;
use crate::raft::generated::peer_client::PeerClient;
use crate::raft::handover::TransferReplies;
use crate::raft::transport::Peers;
use crate::raft::types::{LogId, PeerNode, SnapshotFile, SnapshotMeta, TypeConfig, Vote, entry_size_hint};
use crate::raft::wire::{RaftMessage, SnapshotChunk};

/// What a Raft RPC answers: the receiving `Raft` method's result.
pub type Reply<T> = Result<T, RaftError<TypeConfig>>;
/// The first chunk of a snapshot stream: the leader's vote and the snapshot's meta.
pub type SnapshotHeader = (Vote, SnapshotMeta);
/// Largest snapshot chunk sent (openraft's `snapshot_max_chunk_size` may ask for less).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// A snapshot chunk must be taken by the receiver within this long at least (or the RPC's
/// soft TTL, if longer), or the transfer is abandoned.
pub const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last chunk, the receiver installs the snapshot before it answers; it gets this long
/// at least (or the RPC's soft TTL, if longer).
pub const SNAPSHOT_INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Chunks read ahead of the network.
const SNAPSHOT_CHUNKS_AHEAD: usize = 2;
/// Room left in a message for `RaftMessage`'s own fields around the payload.
const ENVELOPE_BYTES: usize = 1 << 10;
/// The shortest time a unary Raft RPC gets. openraft offers ¾ of the heartbeat interval (37.5 ms
/// by default), which a follower busy with an fsync on a loaded 2-core machine misses; the
/// miss counts as unreachable and replication to it backs off, stalling commits for hundreds of
/// milliseconds. A dead member is not waited for: its connection is refused at once.
const MIN_RPC_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("cannot encode a Raft message: {0}")]
    Encode(postcard::Error),
    #[error("cannot decode a Raft message: {0}")]
    Decode(postcard::Error),
    #[error("a Raft message has {0} unexpected trailing bytes")]
    Trailing(usize),
}

pub fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, PayloadError> {
    postcard::to_allocvec(value).map_err(PayloadError::Encode)
}

/// `encode_payload` into a buffer of `capacity` bytes to start with.
fn encode_payload_sized<T: Serialize>(value: &T, capacity: usize) -> Result<Vec<u8>, PayloadError> {
    postcard::to_io(value, Vec::with_capacity(capacity)).map_err(PayloadError::Encode)
}

/// Decodes a whole payload: trailing bytes mean sender and receiver disagree on the layout.
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(PayloadError::Decode)?;
    if !rest.is_empty() {
        return Err(PayloadError::Trailing(rest.len()));
    }
    Ok(value)
}

/// openraft's network factory: one [`PeerNetwork`] per target member, all sharing [`Peers`].
#[derive(Clone, Debug)]
pub struct Network {
    cluster_id: u64,
    peers: Peers,
    transfers: TransferReplies,
}

impl Network {
    pub fn new(cluster_id: u64, peers: Peers) -> Network {
        Network { cluster_id, peers, transfers: TransferReplies::default() }
    }

    /// Reports transfer targets' answers to `transfers` (the member's [`RaftNode`] reads them
    /// when it hands leadership over).
    ///
    /// [`RaftNode`]: crate::raft::node::RaftNode
    pub fn reporting_transfers_to(mut self, transfers: TransferReplies) -> Network {
        self.transfers = transfers;
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> PeerNetwork {
        PeerNetwork {
            cluster_id: self.cluster_id,
            target,
            node: node.clone(),
            peers: self.peers.clone(),
            transfers: self.transfers.clone(),
        }
    }
}

/// Raft's RPCs to one member. The channel is looked up in [`Peers`] on every call, so a member
/// whose URL changed is dialed at its new address as soon as openraft passes the new node.
#[derive(Debug)]
pub struct PeerNetwork {
    cluster_id: u64,
    target: u64,
    node: PeerNode,
    peers: Peers,
    /// Where this member's answer to a `TransferLeader` naming it is reported.
    transfers: TransferReplies,
}

#[derive(Clone, Copy, Debug)]
enum RaftRpc {
    AppendEntries,
    Vote,
    PreVote,
    TransferLeader,
}

impl RaftRpc {
    fn name(self) -> &'static str {
        match self {
            RaftRpc::AppendEntries => "AppendEntries",
            RaftRpc::Vote => "Vote",
            RaftRpc::PreVote => "PreVote",
            RaftRpc::TransferLeader => "TransferLeader",
        }
    }

    async fn send(
        self,
        client: &mut PeerClient<Channel>,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        match self {
            RaftRpc::AppendEntries => client.append_entries(request).await,
            RaftRpc::Vote => client.vote(request).await,
            RaftRpc::PreVote => client.pre_vote(request).await,
            RaftRpc::TransferLeader => client.transfer_leader(request).await,
        }
    }
}

/// Why a snapshot transfer stopped on the sending side.
#[derive(Debug)]
enum FeedEnd {
    /// Every chunk, the last with `done`, was handed to the connection.
    AllSent,
    Failed(String),
}

/// Aborts the snapshot reader when the transfer ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PeerNetwork {
    pub(crate) fn unreachable(&self, what: impl std::fmt::Display) -> Unreachable<TypeConfig> {
        let url = self.node.peer_urls.first().map_or("<no peer URL>", String::as_str);
        Unreachable::from_string(format!("member {:x} at {url}: {what}", self.target))
    }

    pub(crate) fn describe_status(status: &tonic::Status) -> String {
        if status.code() == tonic::Code::FailedPrecondition {
            return format!("refused: not the addressed member ({})", status.message());
        }
        let mut text = format!("{:?}: {}", status.code(), status.message());
        // The transport's reasons (connection refused, TLS alerts) are in the source chain.
        let mut source = std::error::Error::source(status);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }

    /// Checks that a reply comes from this cluster and decodes Raft's answer in it.
    pub(crate) fn open_reply<T: DeserializeOwned>(
        &self,
        rpc: &str,
        reply: RaftMessage,
    ) -> Result<T, Unreachable<TypeConfig>> {
        if reply.cluster_id != self.cluster_id {
            return Err(self.unreachable(format_args!(
                "{rpc} reply from cluster {:x}, expected cluster {:x}",
                reply.cluster_id, self.cluster_id
            )));
        }
        let answer: Reply<T> =
            decode_payload(&reply.payload).map_err(|e| self.unreachable(format_args!("{rpc} reply: {e}")))?;
        answer.map_err(|e| self.unreachable(format_args!("{rpc}: the member's Raft failed: {e}")))
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let payload = encode_payload(request).map_err(|e| self.unreachable(format_args!("{}: {e}", rpc.name())))?;
        self.call_encoded(rpc, payload, option).await
    }

    async fn call_encoded<Resp: DeserializeOwned>(
        &self,
        rpc: RaftRpc,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let name = rpc.name();
        let mut client = self.client(name)?;
        let ttl = self.rpc_timeout(option);
        let mut request =
            tonic::Request::new(RaftMessage { cluster_id: self.cluster_id, target: self.target, payload });
        // The receiver drops the request at the same deadline: nobody waits for its answer.
        request.set_timeout(ttl);
        let started = tokio::time::Instant::now();
        let reply = match tokio::time::timeout(ttl, rpc.send(&mut client, request)).await {
            Ok(Ok(reply)) => reply.into_inner(),
            // tonic's own deadline (from the same timeout) may fire first, as `Cancelled`.
            Err(_) => return Err(self.unreachable(format_args!("{name}: no reply within {ttl:?}")).into()),
            Ok(Err(status))
                if matches!(status.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
                    && started.elapsed() >= ttl =>
            {
                return Err(self.unreachable(format_args!("{name}: no reply within {ttl:?}")).into());
            }
            Ok(Err(status)) => {
                return Err(self.unreachable(format_args!("{name}: {}", Self::describe_status(&status))).into());
            }
        };
        Ok(self.open_reply(name, reply)?)
    }

    /// The client for a call named `rpc` to this member.
    pub(crate) fn client(&self, rpc: &str) -> Result<PeerClient<Channel>, Unreachable<TypeConfig>> {
        self.peers.client(self.target, &self.node).map_err(|e| self.unreachable(format_args!("{rpc}: {e}")))
    }

    /// How long a call (or a streamed message) may wait for its answer.
    pub(crate) fn rpc_timeout(&self, option: &RPCOption) -> Duration {
        option.soft_ttl().max(MIN_RPC_TIMEOUT)
    }

    /// The cluster and member every message to this member names.
    pub(crate) fn addressing(&self) -> (u64, u64) {
        (self.cluster_id, self.target)
    }

    /// The largest encoded `AppendEntries` one message may carry.
    pub(crate) fn message_budget(&self) -> usize {
        self.peers.options().max_message_bytes.saturating_sub(ENVELOPE_BYTES)
    }

    fn snapshot_error(&self, what: impl std::fmt::Display) -> StreamingError<TypeConfig> {
        StreamingError::Unreachable(self.unreachable(format_args!("InstallSnapshot: {what}")))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotFile;

    /// Sends the entries in one message; if they do not fit the peer message limit, sends the
    /// longest prefix that does and reports it as a partial success, so openraft sends the
    /// rest next (rather than retrying a message that can never be sent).
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let (payload, prefix_end) = fit_entries(rpc, self.message_budget())
            .map_err(|e| self.unreachable(format_args!("AppendEntries: {e}")))?;
        let reply = self.call_encoded(RaftRpc::AppendEntries, payload, &option).await?;
        Ok(match (reply, prefix_end) {
            (AppendEntriesResponse::Success, Some(last_sent)) => AppendEntriesResponse::PartialSuccess(Some(last_sent)),
            (reply, _) => reply,
        })
    }

    /// Replication's entries and commit updates, pipelined on one stream (`append_stream`).
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        append_stream::open(self, input, option)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpc::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpc::PreVote, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft tells every voter; only the target's answer says whether the transfer goes on.
        let pending = (*req.to_node_id() == self.target).then(|| self.transfers.expect(self.target));
        let answer = self.call(RaftRpc::TransferLeader, &req, &option).await;
        if let Some(pending) = pending {
            pending.finish(matches!(answer, Ok(Ok(()))));
        }
        answer
    }

    /// Streams the snapshot file on its own connection to the member. The file is only read:
    /// the state machine decides when it goes away.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = encode_payload(&(vote, snapshot.meta.clone())).map_err(|e| self.snapshot_error(e))?;
        let path = snapshot.snapshot.path.clone();
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.snapshot_error(format_args!("cannot open the local snapshot {}: {e}", path.display())))?;
        let mut client = self.peers.bulk_client(self.target, &self.node).map_err(|e| self.snapshot_error(e))?;
        let chunk_bytes = option.snapshot_chunk_size().filter(|n| *n > 0).unwrap_or(SNAPSHOT_CHUNK_BYTES);
        let feed = Feed {
            cluster_id: self.cluster_id,
            target: self.target,
            chunk_bytes: chunk_bytes.min(SNAPSHOT_CHUNK_BYTES),
            chunk_timeout: option.soft_ttl().max(SNAPSHOT_CHUNK_TIMEOUT),
            size_bytes: snapshot.snapshot.size_bytes,
            path,
        };
        let install_timeout = option.soft_ttl().max(SNAPSHOT_INSTALL_TIMEOUT);

        let (chunks_tx, chunks_rx) = mpsc::channel(SNAPSHOT_CHUNKS_AHEAD);
        let (end_tx, mut end_rx) = oneshot::channel();
        let _reader = AbortOnDrop(tokio::spawn(feed.run(file, header, chunks_tx, end_tx)));
        let call = client.install_snapshot(ReceiverStream::new(chunks_rx));
        tokio::pin!(call);
        tokio::pin!(cancel);
        let mut feeding = true;
        let mut install_deadline: Option<tokio::time::Instant> = None;
        loop {
            let deadline = install_deadline;
            let install_wait = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: a local failure ends the chunk stream, so the receiver's complaint about the
            // short stream may arrive at the same time; the local cause is the one to report.
            tokio::select! {
                biased;
                reason = &mut cancel => return Err(StreamingError::Closed(reason)),
                end = &mut end_rx, if feeding => {
                    feeding = false;
                    match end {
                        Ok(FeedEnd::AllSent) => {
                            install_deadline = Some(tokio::time::Instant::now() + install_timeout);
                        }
                        Ok(FeedEnd::Failed(why)) => {
                            tracing::warn!(target_member = format!("{:x}", self.target), %why, "snapshot transfer failed");
                            return Err(self.snapshot_error(why));
                        }
                        // The reader stopped because the call ended: its result comes next.
                        Err(_) => {}
                    }
                }
                reply = &mut call => {
                    if feeding && let Ok(FeedEnd::Failed(why)) = end_rx.try_recv() {
                        return Err(self.snapshot_error(why));
                    }
                    let reply = reply
                        .map_err(|status| self.snapshot_error(Self::describe_status(&status)))?
                        .into_inner();
                    return self.open_reply("InstallSnapshot", reply).map_err(StreamingError::Unreachable);
                }
                () = install_wait => {
                    return Err(self.snapshot_error(format_args!(
                        "no answer within {install_timeout:?} after the last chunk"
                    )));
                }
            }
        }
    }
}

/// Encodes an `AppendEntries` within `budget` bytes: the whole request, or the longest prefix
/// of its entries that fits, with the ID of the last entry sent.
pub(crate) fn fit_entries(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    budget: usize,
) -> Result<(Vec<u8>, Option<LogId>), PayloadError> {
    const OVERHEAD: usize = 128;
    let size_hint = rpc.entries.iter().map(entry_size_hint).sum::<usize>() + OVERHEAD;
    let payload = encode_payload_sized(&rpc, size_hint)?;
    if payload.len() <= budget || rpc.entries.is_empty() {
        return Ok((payload, None));
    }
    let entries = std::mem::take(&mut rpc.entries);
    // The request without entries, plus the largest length prefix of the entry list.
    let mut size = encode_payload(&rpc)?.len() + 10;
    let mut keep = 0;
    for entry in &entries {
        size += encode_payload(entry)?.len();
        if size > budget {
            break;
        }
        keep += 1;
    }
    rpc.entries = entries;
    if keep == 0 {
        // Cannot be split further: sending it fails, visibly, until the limit is raised.
        return Ok((payload, None));
    }
    rpc.entries.truncate(keep);
    let last_sent = rpc.entries.last().map(|entry| entry.log_id());
    tracing::debug!(entries = keep, budget, "AppendEntries above the peer message limit: sending a prefix");
    Ok((encode_payload(&rpc)?, last_sent))
}

/// Reads a snapshot file into chunks for the gRPC stream.
struct Feed {
    cluster_id: u64,
    target: u64,
    chunk_bytes: usize,
    chunk_timeout: Duration,
    size_bytes: u64,
    path: std::path::PathBuf,
}

impl Feed {
    async fn run(
        self,
        mut file: tokio::fs::File,
        header: Vec<u8>,
        chunks: mpsc::Sender<SnapshotChunk>,
        end: oneshot::Sender<FeedEnd>,
    ) {
        let outcome = self.feed(&mut file, header, &chunks).await;
        if let Some(outcome) = outcome {
            let _ = end.send(outcome);
        }
    }

    /// `None` when the receiving end of `chunks` went away (the call ended on its own).
    async fn feed(
        &self,
        file: &mut tokio::fs::File,
        header: Vec<u8>,
        chunks: &mpsc::Sender<SnapshotChunk>,
    ) -> Option<FeedEnd> {
        let first =
            SnapshotChunk { cluster_id: self.cluster_id, target: self.target, header, data: Vec::new(), done: false };
        if let Err(end) = self.send(chunks, first).await {
            return end;
        }
        let mut sent: u64 = 0;
        loop {
            let mut data = vec![0u8; self.chunk_bytes];
            let mut filled = 0;
            while filled < data.len() {
                match file.read(&mut data[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Some(FeedEnd::Failed(format!(
                            "reading the local snapshot {}: {e}",
                            self.path.display()
                        )));
                    }
                }
            }
            data.truncate(filled);
            sent += filled as u64;
            let done = filled < self.chunk_bytes;
            if sent > self.size_bytes || (done && sent != self.size_bytes) {
                return Some(FeedEnd::Failed(format!(
                    "the local snapshot {} is not {} bytes long as announced",
                    self.path.display(),
                    self.size_bytes
                )));
            }
            let chunk =
                SnapshotChunk { cluster_id: self.cluster_id, target: self.target, header: Vec::new(), data, done };
            if let Err(end) = self.send(chunks, chunk).await {
                return end;
            }
            if done {
                return Some(FeedEnd::AllSent);
            }
        }
    }

    async fn send(&self, chunks: &mpsc::Sender<SnapshotChunk>, chunk: SnapshotChunk) -> Result<(), Option<FeedEnd>> {
        match tokio::time::timeout(self.chunk_timeout, chunks.send(chunk)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => Err(Some(FeedEnd::Failed(format!("the member took no data for {:?}", self.chunk_timeout)))),
        }
    }
}
