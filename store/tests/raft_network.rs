//! Raft's network over the `keelpeer.Peer` gRPC service: the payload convention round-trips
//! every message kind, replication's AppendEntries stream is pipelined and answered in order, a
//! member only answers messages addressed to it, failures reach openraft as `Unreachable`
//! quickly, snapshots stream in bounded chunks, and peer TLS is mutual.
//!
//! The server side is a test-only `Peer` that answers through `raft_rpc`'s request/reply and
//! snapshot-receiving functions with canned Raft answers, so no Raft instance is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::pin::Pin;

use futures::{Stream, StreamExt};
use keel_store::raft::append_stream;
use keel_store::raft::generated::peer_client::PeerClient;
use keel_store::raft::generated::peer_server::Peer;
use keel_store::raft::network::{Network, Reply, SNAPSHOT_CHUNK_BYTES, SnapshotHeader, decode_payload, encode_payload};
use keel_store::raft::raft_rpc::{self, LocalIds};
use keel_store::raft::state_machine::StateMachine;
use keel_store::raft::transport::{CONNECT_TIMEOUT, PeerTls, Peers, TransportError, TransportOptions, peer_server};
use keel_store::raft::types::{
    Command, Entry, LogId, PeerNode, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};
use keel_store::raft::wire::*;
use openraft::entry::RaftEntry;
use openraft::error::{Fatal, RPCError, RaftError, ReplicationClosed, StreamingError};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderError,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::testing::{blank_ent, log_id, membership_ent};
use openraft::type_config::alias::{SnapshotDataOf, SnapshotOf};
use openraft::{Membership, StorageError};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

const CLUSTER: u64 = 0xc1a5;
const MEMBER: u64 = 2;

fn vote() -> Vote {
    Vote::new_committed(3, 1)
}

fn meta() -> SnapshotMeta {
    let last = log_id::<TypeConfig>(3, 1, 40);
    let nodes: BTreeMap<u64, PeerNode> = [1, 2, 3]
        .into_iter()
        .map(|id| (id, PeerNode { peer_urls: vec![format!("http://10.0.0.{id}:2380")] }))
        .collect();
    let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).expect("membership");
    SnapshotMeta { last_log_id: Some(last), last_membership: StoredMembership::new(Some(last), membership) }
}

fn entries() -> Vec<Entry> {
    vec![
        blank_ent::<TypeConfig>(3, 1, 10),
        membership_ent::<TypeConfig>(3, 1, 11, vec![BTreeSet::from([1, 2, 3])]),
        Entry::new_normal(
            log_id::<TypeConfig>(3, 1, 12),
            Command::PublishMember { id: 1, name: "keel-0".into(), client_urls: vec!["http://10.0.0.1:2379".into()] },
        ),
    ]
}

fn append_request() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: vote(),
        prev_log_id: Some(log_id::<TypeConfig>(2, 1, 9)),
        entries: entries(),
        leader_commit: Some(log_id::<TypeConfig>(2, 1, 9)),
    }
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    decode_payload(&encode_payload(value).expect("encode")).expect("decode")
}

#[test]
fn payloads_round_trip() {
    let request = append_request();
    assert_eq!(format!("{:?}", round_trip(&request)), format!("{request:?}"));
    for response in [
        AppendEntriesResponse::<TypeConfig>::Success,
        AppendEntriesResponse::PartialSuccess(Some(log_id::<TypeConfig>(3, 1, 11))),
        AppendEntriesResponse::PartialSuccess(None),
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(Vote::new(4, 3)),
    ] {
        let reply: Reply<_> = Ok(response);
        assert_eq!(round_trip(&reply), reply);
    }
    let vote_request = VoteRequest::<TypeConfig>::new(vote(), Some(log_id::<TypeConfig>(3, 1, 12)));
    assert_eq!(round_trip(&vote_request), vote_request);
    let reply: Reply<VoteResponse<TypeConfig>> =
        Ok(VoteResponse::new(vote(), Some(log_id::<TypeConfig>(3, 1, 12)), true));
    assert_eq!(round_trip(&reply), reply);
    let transfer = TransferLeaderRequest::<TypeConfig>::new(vote(), 3, Some(log_id::<TypeConfig>(3, 1, 12)));
    assert_eq!(round_trip(&transfer), transfer);
    let transferred: Reply<TransferLeaderResponse<TypeConfig>> = Ok(Ok(()));
    assert_eq!(round_trip(&transferred), transferred);
    let refused: Reply<TransferLeaderResponse<TypeConfig>> =
        Ok(Err(TransferLeaderError::VoteChanged { expected: vote(), actual: Vote::new(4, 3) }));
    assert_eq!(round_trip(&refused), refused);
    let header: SnapshotHeader = (vote(), meta());
    assert_eq!(round_trip(&header), header);
    let installed: Reply<SnapshotResponse<TypeConfig>> = Ok(SnapshotResponse::new(vote()));
    assert_eq!(round_trip(&installed), installed);
    let storage = StorageError::<TypeConfig>::from_io_error(
        openraft::ErrorSubject::Store,
        openraft::ErrorVerb::Write,
        std::io::Error::other("disk on fire"),
    );
    for fatal in [Fatal::Stopped, Fatal::Panicked, Fatal::StorageError(storage)] {
        let failed: Reply<SnapshotResponse<TypeConfig>> = Err(RaftError::Fatal(fatal));
        assert_eq!(round_trip(&failed), failed);
    }

    // A payload is decoded whole: extra or missing bytes are errors, not silently ignored.
    let mut bytes = encode_payload(&vote_request).expect("encode");
    bytes.push(0);
    assert!(decode_payload::<VoteRequest<TypeConfig>>(&bytes).is_err());
    bytes.truncate(bytes.len() - 2);
    assert!(decode_payload::<VoteRequest<TypeConfig>>(&bytes).is_err());
    assert!(decode_payload::<AppendEntriesRequest<TypeConfig>>(&[0xff; 40]).is_err());
}

/// The network's snapshot data is the state machine's: `Raft::new` accepts the pair.
#[test]
fn network_fits_the_state_machine() {
    fn fits<N: RaftNetworkFactory<TypeConfig>>()
    where
        N::Network: openraft::network::NetSnapshot<TypeConfig, SnapshotData = SnapshotDataOf<TypeConfig, StateMachine>>,
    {
    }
    fits::<Network>();
}

/// A snapshot the fake received: its bytes, and the data sizes of its stream's chunks.
type Received = (Vec<u8>, Vec<usize>);

/// A test-only member: answers Raft RPCs with canned answers through `raft_rpc`'s functions.
#[derive(Clone)]
struct FakePeer {
    local: LocalIds,
    /// The cluster ID its replies carry (a liar when not `local.cluster_id`).
    reply_cluster: u64,
    incoming: PathBuf,
    snapshots: Arc<Mutex<Vec<Received>>>,
    /// The entry IDs of every `AppendEntries` received.
    appended: Arc<Mutex<Vec<Vec<LogId>>>>,
    calls: Arc<AtomicUsize>,
    /// `AppendStream` calls received.
    streams: Arc<AtomicUsize>,
    /// On an `AppendStream`, answers are held until this many requests have arrived (then
    /// all are answered): a sender that waits for each answer gets none.
    answer_after: usize,
}

impl FakePeer {
    fn new(incoming: &Path) -> FakePeer {
        FakePeer {
            local: LocalIds { cluster_id: CLUSTER, member_id: MEMBER },
            reply_cluster: CLUSTER,
            incoming: incoming.to_path_buf(),
            snapshots: Arc::default(),
            appended: Arc::default(),
            calls: Arc::default(),
            streams: Arc::default(),
            answer_after: 1,
        }
    }

    fn reply<T: serde::Serialize>(&self, reply: Reply<T>) -> Result<Response<RaftMessage>, Status> {
        self.seal(reply).map(Response::new)
    }

    fn seal<T: serde::Serialize>(&self, reply: Reply<T>) -> Result<RaftMessage, Status> {
        let ids = LocalIds { cluster_id: self.reply_cluster, ..self.local };
        raft_rpc::seal_reply(&ids, "test", &reply)
    }

    fn record(&self, request: &AppendEntriesRequest<TypeConfig>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.appended.lock().expect("lock").push(request.entries.iter().map(|e| e.log_id()).collect());
    }
}

#[tonic::async_trait]
impl Peer for FakePeer {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let request: AppendEntriesRequest<TypeConfig> =
            raft_rpc::open_request(&self.local, "AppendEntries", request.get_ref())?;
        self.record(&request);
        self.reply(Ok(AppendEntriesResponse::<TypeConfig>::Success))
    }

    type AppendStreamStream = Pin<Box<dyn Stream<Item = Result<RaftMessage, Status>> + Send>>;

    /// Answers each request as a follower that has all its entries would, in order.
    async fn append_stream(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let (mut requests, refusal) = append_stream::incoming_requests(self.local, request.into_inner());
        let (answers, answers_rx) = tokio::sync::mpsc::channel(16);
        let fake = self.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(request) = requests.next().await {
                fake.record(&request);
                let matching = request.entries.last().map(|e| e.log_id()).or(request.prev_log_id);
                held.push(fake.seal::<StreamAppendResult<TypeConfig>>(Ok(Ok(matching))));
                if held.len() >= fake.answer_after {
                    for answer in held.drain(..) {
                        if answers.send(answer).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if let Some(status) = refusal.take() {
                let _ = answers.send(Err(status)).await;
            }
            if !held.is_empty() {
                // Held answers are never sent: the stream stays open, silent, until dropped.
                answers.closed().await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(answers_rx))))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let request: VoteRequest<TypeConfig> = raft_rpc::open_request(&self.local, "Vote", request.get_ref())?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.reply(Ok(VoteResponse::<TypeConfig>::new(request.vote, request.last_log_id, true)))
    }

    async fn pre_vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let _: VoteRequest<TypeConfig> = raft_rpc::open_request(&self.local, "PreVote", request.get_ref())?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        // As a member whose Raft has stopped answers.
        self.reply::<VoteResponse<TypeConfig>>(Err(RaftError::Fatal(Fatal::Stopped)))
    }

    async fn transfer_leader(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let _: TransferLeaderRequest<TypeConfig> =
            raft_rpc::open_request(&self.local, "TransferLeader", request.get_ref())?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.reply::<TransferLeaderResponse<TypeConfig>>(Ok(Ok(())))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let stream = request.into_inner().inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                seen.lock().expect("lock").push(chunk.data.len());
            }
        });
        let received = raft_rpc::receive_snapshot(&self.local, stream, &self.incoming).await?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(received.meta, meta());
        assert_eq!(received.file.size_bytes, std::fs::metadata(&received.file.path).expect("file").len());
        let bytes = std::fs::read(&received.file.path).expect("read");
        std::fs::remove_file(&received.file.path).expect("remove");
        let sizes = sizes.lock().expect("lock").clone();
        self.snapshots.lock().expect("lock").push((bytes, sizes));
        self.reply(Ok(SnapshotResponse::<TypeConfig>::new(received.vote)))
    }

    type ForwardStreamStream = Pin<Box<dyn Stream<Item = Result<ForwardReply, Status>> + Send>>;

    async fn forward_stream(
        &self,
        _: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<Self::ForwardStreamStream>, Status> {
        Err(Status::unimplemented("test peer"))
    }

    async fn read_index(&self, _: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        Err(Status::unimplemented("test peer"))
    }

    async fn lease_keep_alive(&self, _: Request<LeaseRequest>) -> Result<Response<LeaseReply>, Status> {
        Err(Status::unimplemented("test peer"))
    }

    async fn lease_time_to_live(&self, _: Request<LeaseRequest>) -> Result<Response<LeaseReply>, Status> {
        Err(Status::unimplemented("test peer"))
    }

    async fn member_change(&self, _: Request<MemberChangeRequest>) -> Result<Response<MemberChangeReply>, Status> {
        Err(Status::unimplemented("test peer"))
    }

    async fn members(&self, _: Request<MembersRequest>) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("test peer"))
    }
}

/// Serves `peer` on 127.0.0.1 (with peer TLS if given) until the test ends.
async fn serve(peer: FakePeer, tls: Option<&PeerTls>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config()).expect("server TLS");
    }
    let router = builder.add_service(peer_server(peer));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))));
    addr
}

fn node(url: String) -> PeerNode {
    PeerNode { peer_urls: vec![url] }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(4))
}

fn unreachable_text<E: std::fmt::Debug>(result: Result<E, RPCError<TypeConfig>>) -> String {
    match result {
        Err(RPCError::Unreachable(e)) => e.to_string(),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raft_rpcs_reach_the_addressed_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = FakePeer::new(dir.path());
    let addr = serve(peer.clone(), None).await;
    let mut network = Network::new(CLUSTER, Peers::new(None));
    let mut client = network.new_client(MEMBER, &node(format!("http://localhost:{}", addr.port()))).await;

    let reply = client.append_entries(append_request(), option()).await.expect("append");
    assert_eq!(reply, AppendEntriesResponse::Success);
    let ids: Vec<LogId> = entries().iter().map(|e| e.log_id()).collect();
    assert_eq!(peer.appended.lock().expect("lock").last(), Some(&ids));

    let request = VoteRequest::<TypeConfig>::new(vote(), Some(log_id::<TypeConfig>(3, 1, 12)));
    let reply = client.vote(request.clone(), option()).await.expect("vote");
    assert_eq!(reply, VoteResponse::new(vote(), Some(log_id::<TypeConfig>(3, 1, 12)), true));

    // The member's Raft failed: openraft must back off, not count it as an answer.
    let text = unreachable_text(client.pre_vote(request, option()).await);
    assert!(text.contains("Raft failed") && text.contains("stopped"), "{text}");

    let transfer = TransferLeaderRequest::<TypeConfig>::new(vote(), MEMBER, None);
    assert_eq!(client.transfer_leader(transfer, option()).await.expect("transfer"), Ok(()));
    assert_eq!(peer.calls.load(Ordering::SeqCst), 4);
}

/// What a stream of `requests` to `client` answered, in order.
async fn stream_answers(
    client: &mut keel_store::raft::network::PeerNetwork,
    requests: Vec<AppendEntriesRequest<TypeConfig>>,
    option: RPCOption,
) -> Vec<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> {
    let answers = client.stream_append(futures::stream::iter(requests), option).await.expect("stream opens");
    answers.collect().await
}

fn answered(answers: Vec<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>) -> Vec<Option<LogId>> {
    answers.into_iter().map(|answer| answer.expect("an answer").expect("a success")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_stream_without_waiting_for_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fake answers nothing until all three requests are in: one at a time would never end.
    let peer = FakePeer { answer_after: 3, ..FakePeer::new(dir.path()) };
    let addr = serve(peer.clone(), None).await;
    let mut network = Network::new(CLUSTER, Peers::new(None));
    let mut client = network.new_client(MEMBER, &node(format!("http://127.0.0.1:{}", addr.port()))).await;
    let commit_update = AppendEntriesRequest::<TypeConfig> {
        prev_log_id: Some(log_id::<TypeConfig>(3, 1, 12)),
        entries: Vec::new(),
        leader_commit: Some(log_id::<TypeConfig>(3, 1, 12)),
        ..append_request()
    };
    let next = AppendEntriesRequest::<TypeConfig> {
        entries: vec![blank_ent::<TypeConfig>(3, 1, 13)],
        ..commit_update.clone()
    };

    let answers = stream_answers(&mut client, vec![append_request(), commit_update, next], option()).await;
    let (twelve, thirteen) = (log_id::<TypeConfig>(3, 1, 12), log_id::<TypeConfig>(3, 1, 13));
    assert_eq!(answered(answers), vec![Some(twelve), Some(twelve), Some(thirteen)]);
    let ids: Vec<LogId> = entries().iter().map(|e| e.log_id()).collect();
    assert_eq!(*peer.appended.lock().expect("lock"), vec![ids, vec![], vec![thirteen]]);
    assert_eq!(peer.streams.load(Ordering::SeqCst), 1, "all three on one stream");
}

/// A member that takes every streamed AppendEntries and answers none, and a client of it.
async fn silent_member(dir: &Path) -> (FakePeer, keel_store::raft::network::PeerNetwork) {
    let peer = FakePeer { answer_after: usize::MAX, ..FakePeer::new(dir) };
    let addr = serve(peer.clone(), None).await;
    let mut network = Network::new(CLUSTER, Peers::new(None));
    let client = network.new_client(MEMBER, &node(format!("http://127.0.0.1:{}", addr.port()))).await;
    (peer, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_is_not_answered_fails_within_its_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (peer, mut client) = silent_member(dir.path()).await;
    let option = RPCOption::new(Duration::from_millis(600));
    let started = Instant::now();
    let mut answers = stream_answers(&mut client, vec![append_request()], option.clone()).await;
    let elapsed = started.elapsed();
    assert_eq!(answers.len(), 1, "the failure ends the stream");
    let text = unreachable_text(answers.remove(0));
    assert!(text.contains("AppendStream: no answer within"), "{text}");
    assert!(elapsed >= option.soft_ttl() && elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(peer.calls.load(Ordering::SeqCst), 1, "the request did arrive");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_on_an_idle_stream_still_has_a_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_peer, mut client) = silent_member(dir.path()).await;
    let option = RPCOption::new(Duration::from_millis(600));
    // The stream opens with nothing to send, and the sender waits for answers; a request
    // comes later (as a new entry does on a quiet cluster).
    let (requests, input) = tokio::sync::mpsc::channel(1);
    let mut answers = client.stream_append(ReceiverStream::new(input), option.clone()).await.expect("stream opens");
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        requests.send(append_request()).await.expect("send");
        (sent, requests)
    });
    let answer = tokio::time::timeout(Duration::from_secs(5), answers.next()).await.expect("fails in time");
    let (sent, _requests) = later.await.expect("sender");
    let waited = sent.elapsed();
    let text = unreachable_text(answer.expect("an answer"));
    assert!(text.contains("AppendStream: no answer within"), "{text}");
    assert!(waited >= option.soft_ttl() && waited < Duration::from_secs(2), "failed {waited:?} after the send");
}

fn big_entry(index: u64, bytes: usize) -> Entry {
    let name = "x".repeat(bytes);
    Entry::new_normal(log_id::<TypeConfig>(3, 1, index), Command::PublishMember { id: 1, name, client_urls: vec![] })
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_above_the_message_limit_go_in_prefixes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = FakePeer::new(dir.path());
    let addr = serve(peer.clone(), None).await;
    let options = TransportOptions { max_message_bytes: 100 << 10, ..TransportOptions::default() };
    let mut network = Network::new(CLUSTER, Peers::with_options(None, options));
    let mut client = network.new_client(MEMBER, &node(format!("http://127.0.0.1:{}", addr.port()))).await;
    let request = |entries: Vec<Entry>| AppendEntriesRequest::<TypeConfig> {
        vote: vote(),
        prev_log_id: Some(log_id::<TypeConfig>(3, 1, 9)),
        entries,
        leader_commit: None,
    };

    // Three 40 KiB entries in a 100 KiB limit: the first two go, and openraft hears so.
    let entries: Vec<Entry> = (10..13).map(|i| big_entry(i, 40 << 10)).collect();
    let reply = client.append_entries(request(entries.clone()), option()).await.expect("append");
    assert_eq!(reply, AppendEntriesResponse::PartialSuccess(Some(log_id::<TypeConfig>(3, 1, 11))));
    let sent: Vec<LogId> = entries[..2].iter().map(|e| e.log_id()).collect();
    assert_eq!(peer.appended.lock().expect("lock").last(), Some(&sent));

    // The rest fits: a plain success.
    let reply = client.append_entries(request(entries[2..].to_vec()), option()).await.expect("append");
    assert_eq!(reply, AppendEntriesResponse::Success);

    // One entry above the limit cannot be sent at all: an error, not a silent success.
    unreachable_text(client.append_entries(request(vec![big_entry(13, 200 << 10)]), option()).await);
    assert_eq!(peer.appended.lock().expect("lock").len(), 2);

    // On a stream, the prefix goes and the stream ends after it: openraft resumes from the
    // follower's answer, and nothing queued behind the cut request is sent.
    let after = AppendEntriesRequest::<TypeConfig> {
        prev_log_id: Some(log_id::<TypeConfig>(3, 1, 12)),
        ..request(vec![big_entry(13, 10)])
    };
    let answers = stream_answers(&mut client, vec![request(entries.clone()), after], option()).await;
    assert_eq!(answered(answers), vec![Some(log_id::<TypeConfig>(3, 1, 11))]);
    assert_eq!(peer.appended.lock().expect("lock").last(), Some(&sent));
    assert_eq!(peer.appended.lock().expect("lock").len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_for_another_member_or_cluster_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = FakePeer::new(dir.path());
    let addr = serve(peer.clone(), None).await;
    let url = format!("http://127.0.0.1:{}", addr.port());
    let peers = Peers::new(None);

    // Member 3's address now hosts member 2 (say, after a replacement).
    let mut wrong_member = Network::new(CLUSTER, peers.clone()).new_client(3, &node(url.clone())).await;
    let text = unreachable_text(wrong_member.append_entries(append_request(), option()).await);
    assert!(text.contains("not the addressed member"), "{text}");
    let mut answers = stream_answers(&mut wrong_member, vec![append_request()], option()).await;
    assert_eq!(answers.len(), 1, "the refusal ends the stream");
    let text = unreachable_text(answers.remove(0));
    assert!(text.contains("not the addressed member"), "{text}");
    let mut wrong_cluster = Network::new(CLUSTER + 1, peers.clone()).new_client(MEMBER, &node(url.clone())).await;
    let text = unreachable_text(wrong_cluster.vote(VoteRequest::new(vote(), None), option()).await);
    assert!(text.contains("not the addressed member"), "{text}");

    // On the wire: FailedPrecondition, with both identities in the text.
    let mut raw = peers.client(3, &node(url.clone())).expect("client");
    let message = RaftMessage { cluster_id: CLUSTER, target: 3, payload: Vec::new() };
    let status = raw.vote(message).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("request for member 3") && status.message().contains("reached member 2"));

    // An undecodable payload is refused as such.
    let message = RaftMessage { cluster_id: CLUSTER, target: MEMBER, payload: vec![0xff; 8] };
    let status = raw.append_entries(message.clone()).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let mut answers = raw.append_stream(futures::stream::iter([message])).await.expect("stream opens").into_inner();
    let status = answers.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // A snapshot for another member is refused before anything is written.
    let file = dir.path().join("outgoing.snap");
    std::fs::write(&file, b"snapshot").expect("write");
    let snapshot =
        SnapshotOf::<TypeConfig, SnapshotFile> { meta: meta(), snapshot: SnapshotFile { path: file, size_bytes: 8 } };
    let result = wrong_member.full_snapshot(vote(), snapshot, std::future::pending(), option()).await;
    assert!(matches!(result, Err(StreamingError::Unreachable(_))), "{result:?}");

    // A process that answers for another cluster is not believed.
    let liar_dir = tempfile::tempdir().expect("tempdir");
    let liar = FakePeer { reply_cluster: CLUSTER + 7, ..FakePeer::new(liar_dir.path()) };
    let liar_addr = serve(liar, None).await;
    let mut client =
        Network::new(CLUSTER, peers).new_client(MEMBER, &node(format!("http://127.0.0.1:{}", liar_addr.port()))).await;
    let text = unreachable_text(client.vote(VoteRequest::new(vote(), None), option()).await);
    assert!(text.contains("reply from cluster"), "{text}");

    assert_eq!(peer.calls.load(Ordering::SeqCst), 0, "no refused message got past the checks");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1, "only the outgoing file");
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connection
/// attempt hangs as it does to a powered-off host. Returns the listener and the queued streams.
async fn black_hole() -> (tokio::net::TcpListener, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut queued = Vec::new();
    for _ in 0..32 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(stream) => queued.push(stream),
            Err(_) => return (listener, queued),
        }
    }
    panic!("the accept queue of {addr} never filled up");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_member_fails_fast() {
    let mut network = Network::new(CLUSTER, Peers::new(None));
    let slow_rpc = || RPCOption::new(Duration::from_secs(10));

    // Nothing listens there (the port was just free): refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    // Nothing answers there: the connect timeout, not the RPC's 7.5 s, bounds the wait.
    let (hole, _queued) = black_hole().await;
    let hole = hole.local_addr().expect("addr");
    for (url, at_least) in [
        (format!("http://127.0.0.1:{}", closed.port()), Duration::ZERO),
        (format!("http://127.0.0.1:{}", hole.port()), CONNECT_TIMEOUT),
    ] {
        let mut client = network.new_client(MEMBER, &node(url.clone())).await;
        let started = Instant::now();
        let text = unreachable_text(client.vote(VoteRequest::new(vote(), None), slow_rpc()).await);
        let elapsed = started.elapsed();
        assert!(elapsed >= at_least && elapsed < Duration::from_secs(1), "{url}: took {elapsed:?} to fail ({text})");
        // Again, on the channel that already failed once: it reconnects, and fails as fast.
        let started = Instant::now();
        unreachable_text(client.append_entries(append_request(), slow_rpc()).await);
        assert!(started.elapsed() < Duration::from_secs(1), "{url}: second call took {:?}", started.elapsed());
    }

    // A process that accepts connections and never answers: the RPC's soft TTL bounds the wait.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            keep.lock().expect("lock").push(socket);
        }
    });
    let mut client = network.new_client(MEMBER, &node(format!("http://127.0.0.1:{}", silent_addr.port()))).await;
    let started = Instant::now();
    let option = RPCOption::new(Duration::from_millis(400));
    let text = unreachable_text(client.vote(VoteRequest::new(vote(), None), option.clone()).await);
    let elapsed = started.elapsed();
    assert!(elapsed >= option.soft_ttl() && elapsed < Duration::from_secs(1), "took {elapsed:?} ({text})");
    assert!(text.contains("no reply within"), "{text}");
}

fn snapshot_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_stream_in_bounded_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let incoming = dir.path().join("incoming");
    let peer = FakePeer::new(&incoming);
    let addr = serve(peer.clone(), None).await;
    let mut network = Network::new(CLUSTER, Peers::new(None));
    let mut client = network.new_client(MEMBER, &node(format!("http://127.0.0.1:{}", addr.port()))).await;
    let path = dir.path().join("outgoing.snap");
    let snapshot = |size_bytes: u64| SnapshotOf::<TypeConfig, SnapshotFile> {
        meta: meta(),
        snapshot: SnapshotFile { path: path.clone(), size_bytes },
    };

    let bytes = snapshot_bytes(2 * SNAPSHOT_CHUNK_BYTES + SNAPSHOT_CHUNK_BYTES / 2 + 17);
    std::fs::write(&path, &bytes).expect("write");
    let reply = client.full_snapshot(vote(), snapshot(bytes.len() as u64), std::future::pending(), option()).await;
    assert_eq!(reply.expect("snapshot"), SnapshotResponse::new(vote()));
    {
        let received = peer.snapshots.lock().expect("lock");
        let (got, sizes) = received.last().expect("received");
        assert!(got == &bytes, "the received snapshot differs");
        // The header chunk, then data chunks of at most 1 MiB.
        assert_eq!(sizes, &vec![0, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_BYTES / 2 + 17]);
    }
    assert!(path.exists(), "the sender leaves its snapshot file alone");

    // An empty snapshot, and one of exactly one chunk.
    for len in [0, SNAPSHOT_CHUNK_BYTES] {
        let bytes = snapshot_bytes(len);
        std::fs::write(&path, &bytes).expect("write");
        let reply = client.full_snapshot(vote(), snapshot(len as u64), std::future::pending(), option()).await;
        assert_eq!(reply.expect("snapshot"), SnapshotResponse::new(vote()));
        assert!(peer.snapshots.lock().expect("lock").last().expect("received").0 == bytes);
    }

    // A file that is not as long as announced is not sent as complete.
    let received = peer.snapshots.lock().expect("lock").len();
    let result = client.full_snapshot(vote(), snapshot(5), std::future::pending(), option()).await;
    assert!(
        matches!(&result, Err(StreamingError::Unreachable(e)) if e.to_string().contains("not 5 bytes")),
        "{result:?}"
    );
    // A missing file.
    std::fs::remove_file(&path).expect("remove");
    let result = client.full_snapshot(vote(), snapshot(5), std::future::pending(), option()).await;
    assert!(matches!(&result, Err(StreamingError::Unreachable(_))), "{result:?}");

    // Cancelled by openraft: the transfer stops with the reason given.
    std::fs::write(&path, snapshot_bytes(4 * SNAPSHOT_CHUNK_BYTES)).expect("write");
    let cancel = async { ReplicationClosed::new("leader stepped down") };
    let result = client.full_snapshot(vote(), snapshot(4 * SNAPSHOT_CHUNK_BYTES as u64), cancel, option()).await;
    assert!(matches!(&result, Err(StreamingError::Closed(c)) if c.to_string().contains("stepped down")), "{result:?}");

    assert_eq!(peer.snapshots.lock().expect("lock").len(), received, "no incomplete snapshot was accepted");
    // Give the server a moment to see the aborted streams; nothing is left behind.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0), 0);
}

fn chunk(header: Vec<u8>, data: &[u8], done: bool) -> Result<SnapshotChunk, Status> {
    Ok(SnapshotChunk { cluster_id: CLUSTER, target: MEMBER, header, data: data.to_vec(), done })
}

#[tokio::test]
async fn receiving_a_snapshot_checks_the_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = LocalIds { cluster_id: CLUSTER, member_id: MEMBER };
    let header = encode_payload(&(vote(), meta())).expect("header");
    let receive = |chunks: Vec<Result<SnapshotChunk, Status>>| {
        let dir = dir.path().to_path_buf();
        async move { raft_rpc::receive_snapshot(&local, futures::stream::iter(chunks), &dir).await }
    };

    let received =
        receive(vec![chunk(header.clone(), b"ab", false), chunk(vec![], b"cd", false), chunk(vec![], b"e", true)])
            .await
            .expect("received");
    assert_eq!((received.vote, received.meta), (vote(), meta()));
    assert_eq!(std::fs::read(&received.file.path).expect("read"), b"abcde");
    assert_eq!(received.file.size_bytes, 5);
    assert!(received.file.path.starts_with(dir.path()));
    std::fs::remove_file(&received.file.path).expect("remove");

    let cases: Vec<(Vec<Result<SnapshotChunk, Status>>, tonic::Code)> = vec![
        (vec![], tonic::Code::InvalidArgument),
        (vec![chunk(vec![], b"ab", true)], tonic::Code::InvalidArgument),
        (vec![chunk(vec![1, 2, 3], b"ab", true)], tonic::Code::InvalidArgument),
        (vec![chunk(header.clone(), b"ab", false)], tonic::Code::Aborted),
        (vec![chunk(header.clone(), b"ab", false), chunk(header.clone(), b"cd", true)], tonic::Code::InvalidArgument),
        (vec![chunk(header.clone(), b"ab", false), Err(Status::cancelled("sender went away"))], tonic::Code::Cancelled),
        (
            vec![Ok(SnapshotChunk {
                cluster_id: CLUSTER,
                target: 9,
                header: header.clone(),
                data: vec![],
                done: true,
            })],
            tonic::Code::FailedPrecondition,
        ),
        (
            vec![
                chunk(header.clone(), b"ab", false),
                Ok(SnapshotChunk { cluster_id: CLUSTER, target: 9, header: vec![], data: vec![], done: true }),
            ],
            tonic::Code::InvalidArgument,
        ),
    ];
    for (i, (chunks, code)) in cases.into_iter().enumerate() {
        let status = receive(chunks).await.expect_err("refused");
        assert_eq!(status.code(), code, "case {i}: {status:?}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "failed transfers leave no file");

    std::fs::write(dir.path().join("keel-snapshot-0123456789abcdef.incoming"), b"x").expect("write");
    std::fs::write(dir.path().join("other"), b"x").expect("write");
    assert_eq!(raft_rpc::remove_stale_incoming(dir.path()).expect("clean"), 1);
    assert_eq!(raft_rpc::remove_stale_incoming(&dir.path().join("missing")).expect("clean"), 0);
}

/// A CA and certificates it signed, as PEM.
struct TestPki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    fn new(name: &str) -> TestPki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().expect("key");
        let ca_pem = params.self_signed(&key).expect("CA").pem();
        TestPki { ca_pem, issuer: rcgen::Issuer::new(params, key) }
    }

    /// A member certificate (server and client use) for localhost and 127.0.0.1: (cert, key).
    fn member(&self, name: &str) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn tls(&self, (cert, key): &(String, String), ca_pem: &str) -> PeerTls {
        PeerTls::from_pem(cert.clone().into_bytes(), key.clone().into_bytes(), ca_pem.as_bytes().to_vec())
            .expect("peer TLS")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_tls_is_mutual() {
    let pki = TestPki::new("keel test CA");
    let rogue = TestPki::new("another CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = FakePeer::new(dir.path());
    let server_tls = pki.tls(&pki.member("member-2"), &pki.ca_pem);
    let addr = serve(peer.clone(), Some(&server_tls)).await;
    let request = || VoteRequest::<TypeConfig>::new(vote(), None);

    // Both sides signed by the cluster CA: works, by name (localhost) and by IP address.
    let member = pki.member("member-1");
    let peers = Peers::new(Some(pki.tls(&member, &pki.ca_pem)));
    for url in [format!("https://localhost:{}", addr.port()), format!("https://127.0.0.1:{}", addr.port())] {
        let mut client = Network::new(CLUSTER, peers.clone()).new_client(MEMBER, &node(url)).await;
        assert!(client.vote(request(), option()).await.expect("vote").vote_granted);
    }
    let calls = peer.calls.load(Ordering::SeqCst);

    // A client without a certificate is refused by the server.
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .expect("endpoint")
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost"))
        .expect("client TLS");
    let mut anonymous = PeerClient::new(endpoint.connect_lazy());
    let message =
        RaftMessage { cluster_id: CLUSTER, target: MEMBER, payload: encode_payload(&request()).expect("encode") };
    let status = anonymous.vote(message).await.expect_err("refused");
    assert_ne!(status.code(), tonic::Code::Ok);

    // A client certificate from another CA is refused by the server.
    let outsider = Peers::new(Some(rogue.tls(&rogue.member("intruder"), &pki.ca_pem)));
    let mut client =
        Network::new(CLUSTER, outsider).new_client(MEMBER, &node(format!("https://localhost:{}", addr.port()))).await;
    unreachable_text(client.vote(request(), option()).await);

    // A server certificate from another CA is refused by the client.
    let suspicious = Peers::new(Some(pki.tls(&member, &rogue.ca_pem)));
    let mut client =
        Network::new(CLUSTER, suspicious).new_client(MEMBER, &node(format!("https://localhost:{}", addr.port()))).await;
    unreachable_text(client.vote(request(), option()).await);

    // Plain HTTP to the TLS port fails; https without peer TLS configured is an error up front.
    let mut client = Network::new(CLUSTER, Peers::new(None))
        .new_client(MEMBER, &node(format!("http://127.0.0.1:{}", addr.port())))
        .await;
    unreachable_text(client.vote(request(), option()).await);
    assert!(matches!(
        Peers::new(None).client(MEMBER, &node(format!("https://127.0.0.1:{}", addr.port()))),
        Err(TransportError::TlsNotConfigured { .. })
    ));

    assert_eq!(peer.calls.load(Ordering::SeqCst), calls, "no refused client reached the service");
}
