//! etcdserverpb.Cluster: the member list. Membership changes arrive with Raft replication.

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
use crate::store::Store;

pub struct ClusterService {
    pub store: Arc<Store>,
}

fn single_member() -> Status {
    Status::unimplemented("keel: this store runs a single member; membership changes need a replicated store")
}

impl ClusterService {
    fn members(&self) -> Vec<Member> {
        let me = &self.store.member;
        vec![Member {
            id: me.id,
            name: me.name.clone(),
            peer_ur_ls: me.peer_urls.clone(),
            client_ur_ls: me.client_urls.clone(),
            is_learner: false,
        }]
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(single_member())
    }

    async fn member_remove(&self, _: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(single_member())
    }

    async fn member_update(&self, _: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(single_member())
    }

    async fn member_list(&self, _: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            // etcd's cluster service sends a header without a revision.
            header: Some(self.store.header(0)),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(single_member())
    }
}
