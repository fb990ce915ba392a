//! etcdserverpb.Cluster: the member list and membership changes, which the leader runs
//! through Raft (a follower forwards them).

use std::sync::Arc;

use etcd_client::proto::{
    PbMember as Member, PbMemberAddRequest as MemberAddRequest, PbMemberAddResponse as MemberAddResponse,
    PbMemberListRequest as MemberListRequest, PbMemberListResponse as MemberListResponse,
    PbMemberPromoteRequest as MemberPromoteRequest, PbMemberPromoteResponse as MemberPromoteResponse,
    PbMemberRemoveRequest as MemberRemoveRequest, PbMemberRemoveResponse as MemberRemoveResponse,
    PbMemberUpdateRequest as MemberUpdateRequest, PbMemberUpdateResponse as MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::generated::cluster::cluster_server::Cluster;
use crate::error::StoreError;
use crate::raft::applied::published_members;
use crate::raft::membership::{self, MemberChange};
use crate::store::Store;

pub struct ClusterService {
    pub store: Arc<Store>,
}

impl ClusterService {
    /// The Raft membership with each member's published name and client URLs (empty while a
    /// member has not started: etcdctl shows it as "unstarted").
    fn members(&self) -> Result<Vec<Member>, StoreError> {
        let published = published_members(&self.store.engine).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(self
            .store
            .node
            .members()
            .into_iter()
            .map(|m| {
                let (name, client_urls) =
                    published.get(&m.id).map(|p| (p.name.clone(), p.client_urls.clone())).unwrap_or_default();
                Member {
                    id: m.id,
                    name,
                    peer_ur_ls: m.node.peer_urls,
                    client_ur_ls: client_urls,
                    is_learner: m.is_learner,
                }
            })
            .collect())
    }

    fn header(&self) -> Option<etcd_client::proto::PbResponseHeader> {
        // etcd's cluster service sends a header without a revision.
        Some(self.store.header(0))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let request = request.into_inner();
        let peer_urls = request.peer_ur_ls.clone();
        if peer_urls.is_empty() {
            return Err(Status::invalid_argument("etcdserver: member peer URLs not provided"));
        }
        let change = MemberChange::Add { peer_urls: peer_urls.clone(), is_learner: request.is_learner };
        let id = membership::change(&self.store.node, change).await?;
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner: request.is_learner,
        };
        Ok(Response::new(MemberAddResponse { header: self.header(), member: Some(member), members: self.members()? }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        membership::change(&self.store.node, MemberChange::Remove { id }).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members: self.members()? }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let request = request.into_inner();
        let change = MemberChange::Update { id: request.id, peer_urls: request.peer_ur_ls };
        membership::change(&self.store.node, change).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members: self.members()? }))
    }

    async fn member_list(&self, _: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse { header: self.header(), members: self.members()? }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        membership::change(&self.store.node, MemberChange::Promote { id }).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members: self.members()? }))
    }
}
