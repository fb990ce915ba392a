//! The `keelpeer.Peer` gRPC service other members call: Raft's RPCs (`raft_rpc`) and Keel's
//! forwarded calls, each answered only by the member it was meant for.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::lease::Lessor;
use crate::raft::generated::peer_server::Peer;
use crate::raft::lease_calls::{self, LeaseCall};
use crate::raft::membership::{self, MemberChange};
use crate::raft::node::RaftNode;
use crate::raft::proposer::Proposer;
use crate::raft::raft_rpc::{self, LocalIds};
use crate::raft::wire::{self, *};
use crate::raft::{append_stream, forward_stream, read_index};
use crate::shutdown::Drain;

pub struct PeerService {
    pub node: Arc<RaftNode>,
    /// This member's write path: forwarded batches go to its committer, to share a log entry
    /// with the other members' batches.
    pub proposer: Proposer,
    pub lessor: Arc<Lessor>,
    /// Read-index rounds, shared by this member's own reads and its followers' requests.
    pub reads: read_index::ReadBarrier,
    /// Where incoming snapshot streams are written before they are installed.
    pub incoming_dir: PathBuf,
    /// The peer server's drain: the tasks feeding streams into Raft count as its calls, so a
    /// stopping member stops Raft only after they end.
    pub drain: Drain,
}

impl PeerService {
    fn ids(&self) -> LocalIds {
        LocalIds { cluster_id: self.node.cluster_id, member_id: self.node.member_id }
    }

    fn check(&self, cluster_id: u64, target: u64) -> Result<(), Status> {
        self.ids().check(cluster_id, target)
    }
}

/// The answers of an `AppendStream` call.
pub type AppendStream = Pin<Box<dyn Stream<Item = Result<RaftMessage, Status>> + Send>>;
/// The answers of a `ForwardStream` call.
pub type ForwardStream = Pin<Box<dyn Stream<Item = Result<ForwardReply, Status>> + Send>>;

fn not_leader() -> Option<WireError> {
    Some(WireError { code: wire::NOT_LEADER, text: "not the leader".into() })
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        raft_rpc::append_entries(&self.node.raft, &self.ids(), request.into_inner()).await.map(Response::new)
    }

    type AppendStreamStream = AppendStream;

    async fn append_stream(&self, request: Request<Streaming<RaftMessage>>) -> Result<Response<AppendStream>, Status> {
        let held = self.drain.track_call();
        let answers = append_stream::serve(self.node.raft.clone(), self.ids(), request.into_inner(), held);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        raft_rpc::vote(&self.node.raft, &self.ids(), request.into_inner()).await.map(Response::new)
    }

    async fn pre_vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        raft_rpc::pre_vote(&self.node.raft, &self.ids(), request.into_inner()).await.map(Response::new)
    }

    async fn transfer_leader(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let stopping = self.node.is_stopping();
        raft_rpc::transfer_leader(&self.node.raft, &self.ids(), request.into_inner(), stopping).await.map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        raft_rpc::install_snapshot(&self.node.raft, &self.ids(), request.into_inner(), &self.incoming_dir)
            .await
            .map(Response::new)
    }

    type ForwardStreamStream = ForwardStream;

    async fn forward_stream(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<ForwardStream>, Status> {
        let committer = self.proposer.committer().clone();
        Ok(Response::new(Box::pin(forward_stream::serve(
            self.node.clone(),
            self.ids(),
            committer,
            request.into_inner(),
            self.drain.track_call(),
        ))))
    }

    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        let request = request.into_inner();
        self.check(request.cluster_id, request.target)?;
        if !self.node.is_leader() {
            return Ok(Response::new(ReadIndexReply { read_index: 0, error: not_leader() }));
        }
        let reply = match self.reads.read_index().await {
            Ok(read_index) => ReadIndexReply { read_index, error: None },
            Err(_) => ReadIndexReply { read_index: 0, error: not_leader() },
        };
        Ok(Response::new(reply))
    }

    async fn lease_keep_alive(&self, request: Request<LeaseRequest>) -> Result<Response<LeaseReply>, Status> {
        let request = request.into_inner();
        self.check(request.cluster_id, request.target)?;
        let outcome = lease_calls::local(&self.lessor, LeaseCall::KeepAlive, request.id);
        Ok(Response::new(lease_calls::to_reply(outcome)))
    }

    async fn lease_time_to_live(&self, request: Request<LeaseRequest>) -> Result<Response<LeaseReply>, Status> {
        let request = request.into_inner();
        self.check(request.cluster_id, request.target)?;
        let outcome = lease_calls::local(&self.lessor, LeaseCall::TimeToLive, request.id);
        Ok(Response::new(lease_calls::to_reply(outcome)))
    }

    async fn member_change(
        &self,
        request: Request<MemberChangeRequest>,
    ) -> Result<Response<MemberChangeReply>, Status> {
        let request = request.into_inner();
        self.check(request.cluster_id, request.target)?;
        let change = MemberChange::from_wire(request).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let MemberChange::Removed { id, leader } = change {
            if id == self.node.member_id && membership::confirm_removed(&self.node, leader).await {
                tracing::warn!("the leader removed this member from the cluster; stopping");
                self.node.removed.notify_one();
            }
            return Ok(Response::new(MemberChangeReply { member_id: id, error: None }));
        }
        let reply = match membership::apply_on_leader(&self.node, change).await {
            Ok(member_id) => MemberChangeReply { member_id, error: None },
            Err(crate::error::StoreError::LeaderChanged) => MemberChangeReply { member_id: 0, error: not_leader() },
            Err(error) => {
                let (code, text) = error.to_wire();
                MemberChangeReply { member_id: 0, error: Some(WireError { code: code.into(), text }) }
            }
        };
        Ok(Response::new(reply))
    }

    async fn members(&self, request: Request<MembersRequest>) -> Result<Response<MembersReply>, Status> {
        let request = request.into_inner();
        if request.cluster_id != 0 && request.cluster_id != self.node.cluster_id {
            return Err(Status::failed_precondition("keel: another cluster"));
        }
        let members = self
            .node
            .members()
            .into_iter()
            .map(|m| PeerMember { id: m.id, peer_urls: m.node.peer_urls, is_learner: m.is_learner })
            .collect();
        Ok(Response::new(MembersReply { cluster_id: self.node.cluster_id, members }))
    }
}
