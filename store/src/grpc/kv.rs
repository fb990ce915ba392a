//! etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use etcd_client::proto::{
    PbCompactionRequest as CompactionRequest, PbCompactionResponse as CompactionResponse,
    PbDeleteRequest as DeleteRangeRequest, PbDeleteResponse as DeleteRangeResponse, PbPutRequest as PutRequest,
    PbPutResponse as PutResponse, PbRangeRequest as RangeRequest, PbRangeResponse as RangeResponse,
    PbTxnRequest as TxnRequest, PbTxnResponse as TxnResponse,
};
use tonic::{Request, Response, Status};

use super::generated::kv::k_v_server::KV as Kv;
use super::{check_size, unexpected, validate};
use crate::apply::{self, Applied, Proposal};
use crate::store::Store;

pub struct KvService {
    pub store: Arc<Store>,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let request = request.into_inner();
        check_size(&request, self.store.limits.max_request_bytes)?;
        validate::range(&request)?;
        Ok(Response::new(self.store.range(&request).await?))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let request = request.into_inner();
        check_size(&request, self.store.limits.max_request_bytes)?;
        validate::put(&request)?;
        match self.store.propose(Proposal::Put(request)).await? {
            Applied::Put(mut response) => {
                self.store.header.fill(&mut response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        check_size(&request, self.store.limits.max_request_bytes)?;
        validate::delete_range(&request)?;
        match self.store.propose(Proposal::DeleteRange(request)).await? {
            Applied::DeleteRange(mut response) => {
                self.store.header.fill(&mut response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let request = request.into_inner();
        check_size(&request, self.store.limits.max_request_bytes)?;
        validate::txn(&request, self.store.limits.max_txn_ops)?;
        if !apply::is_write(&request) {
            return Ok(Response::new(self.store.read_only_txn(&request).await?));
        }
        match self.store.propose(Proposal::Txn(request)).await? {
            Applied::Txn(mut response) => {
                self.store.header.fill(&mut response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let request = request.into_inner();
        let revision = match self.store.propose(Proposal::Compact { revision: request.revision }).await? {
            Applied::Compact { revision } => revision,
            other => return Err(unexpected(other)),
        };
        if request.physical {
            let mut progress = self.store.physically_compacted.clone();
            let reached = progress
                .wait_for(|p| p.finished >= request.revision || p.failed >= request.revision)
                .await
                .map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
            if reached.finished < request.revision {
                return Err(Status::internal(
                    "keel: physical compaction failed; see the server log (it resumes on restart)",
                ));
            }
        }
        Ok(Response::new(CompactionResponse { header: Some(self.store.header(revision)) }))
    }
}
