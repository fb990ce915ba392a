//! etcdserverpb.Lease: grant and revoke go through the write path; keep-alive and time-to-live
//! are answered by the leader's lessor (forwarded from followers); list by the local table.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbLeaseGrantRequest as LeaseGrantRequest, PbLeaseGrantResponse as LeaseGrantResponse,
    PbLeaseKeepAliveRequest as LeaseKeepAliveRequest, PbLeaseKeepAliveResponse as LeaseKeepAliveResponse,
    PbLeaseLeasesRequest as LeaseLeasesRequest, PbLeaseLeasesResponse as LeaseLeasesResponse,
    PbLeaseRevokeRequest as LeaseRevokeRequest, PbLeaseRevokeResponse as LeaseRevokeResponse,
    PbLeaseStatus as LeaseStatus, PbLeaseTimeToLiveRequest as LeaseTimeToLiveRequest,
    PbLeaseTimeToLiveResponse as LeaseTimeToLiveResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::generated::lease::lease_server::Lease;
use crate::apply::{self, Applied, Proposal};
use crate::raft::lease_calls::LeaseCall;
use crate::store::Store;

/// Keep-alive responses buffered per stream; a client that stops reading stops being served.
const KEEP_ALIVE_BUFFER: usize = 64;

pub struct LeaseService {
    pub store: Arc<Store>,
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        let ttl_seconds = self.store.lessor.effective_ttl(request.ttl)?;
        let id = if request.id == 0 { self.store.unused_lease_id() } else { request.id };
        match self.store.propose(Proposal::LeaseGrant { id, ttl_seconds }).await? {
            Applied::LeaseGrant { id, ttl_seconds, revision } => Ok(Response::new(LeaseGrantResponse {
                header: Some(self.store.header(revision)),
                id,
                ttl: ttl_seconds,
                error: String::new(),
            })),
            other => Err(super::unexpected(other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        match self.store.propose(Proposal::LeaseRevoke { id }).await? {
            Applied::LeaseRevoke { revision } => {
                Ok(Response::new(LeaseRevokeResponse { header: Some(self.store.header(revision)) }))
            }
            other => Err(super::unexpected(other)),
        }
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let store = self.store.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let ttl = match store.lease_call(LeaseCall::KeepAlive, request.id).await {
                    Ok(Some(ttl)) => ttl.remaining_seconds,
                    Ok(None) => 0,
                    Err(error) => {
                        let _ = tx.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                let response = LeaseKeepAliveResponse {
                    header: Some(store.header(store.current_revision())),
                    id: request.id,
                    ttl,
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let header = Some(self.store.header(self.store.current_revision()));
        let Some(ttl) = self.store.lease_call(LeaseCall::TimeToLive, request.id).await? else {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        let keys = if request.keys { apply::attached_keys(&self.store.engine, request.id)? } else { Vec::new() };
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: request.id,
            ttl: ttl.remaining_seconds,
            granted_ttl: ttl.granted_seconds,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self.store.lessor.ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.store.header(self.store.current_revision())),
            leases,
        }))
    }
}
