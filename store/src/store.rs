//! `Store`: one member's running state, shared by every gRPC service.

use std::sync::Arc;

use etcd_client::proto::{
    PbRangeRequest as RangeRequest, PbRangeResponse as RangeResponse, PbResponseHeader as ResponseHeader,
    PbTxnRequest as TxnRequest, PbTxnResponse as TxnResponse,
};

use crate::apply::{self, Applied, Proposal};
use crate::error::{Result, StoreError};
use crate::header::HeaderSource;
use crate::lease::Lessor;
use crate::mvcc::Engine;
use crate::mvcc::write::WriteTxn;
use crate::raft::node::RaftNode;
use crate::raft::proposer::Proposer;
use crate::raft::read_index::ReadBarrier;
use crate::watch::WatchHub;

/// How long a read waits for a Raft snapshot install to finish: steps × step.
const INSTALL_WAIT_STEPS: u32 = 600;
const INSTALL_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Request limits, with etcd's defaults.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
}

/// This member as `MemberList` reports it.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

pub struct Store {
    pub engine: Arc<Engine>,
    pub lessor: Arc<Lessor>,
    pub hub: Arc<WatchHub>,
    /// Write requests go through Raft: batched, and forwarded to the leader when needed.
    pub proposer: Proposer,
    /// Linearizable reads wait here until this member has applied what the leader committed.
    pub reads: ReadBarrier,
    pub node: Arc<RaftNode>,
    pub header: Arc<HeaderSource>,
    pub member: MemberInfo,
    pub limits: Limits,
    /// How far physical compaction got.
    pub physically_compacted: tokio::sync::watch::Receiver<crate::compactor::CompactionProgress>,
}

impl Store {
    pub fn header(&self, revision: i64) -> ResponseHeader {
        self.header.header(revision)
    }

    /// The current revision (what a read with revision 0 sees).
    pub fn current_revision(&self) -> i64 {
        self.engine.committed_revision()
    }

    pub async fn propose(&self, proposal: Proposal) -> Result<Applied> {
        self.proposer.propose(proposal).await
    }

    /// A positive lease ID that no lease has, for a grant whose client let the server choose
    /// (etcd clients send 0). Chosen before proposing: applying must stay deterministic.
    pub fn unused_lease_id(&self) -> i64 {
        loop {
            let id = (rand::random::<u64>() >> 1) as i64;
            if id != 0 && !self.lessor.exists(id) {
                return id;
            }
        }
    }

    /// A lease call the leader answers (forwarded when this member does not lead).
    pub async fn lease_call(
        &self,
        call: crate::raft::lease_calls::LeaseCall,
        id: i64,
    ) -> Result<Option<crate::lease::LeaseTtl>> {
        crate::raft::lease_calls::call(&self.node, &self.lessor, call, id).await
    }

    /// A Range outside a txn: linearizable unless the request asks for a serializable read,
    /// which this member answers from what it has applied.
    pub async fn range(&self, request: &RangeRequest) -> Result<RangeResponse> {
        if !request.serializable {
            self.reads.wait().await?;
        }
        self.stable_read(|| self.range_local(request)).await
    }

    /// Runs `read` on data no Raft snapshot install is replacing: a read that overlapped an
    /// install (the data epoch was odd or moved) is retried after it, for a bounded time.
    async fn stable_read<T>(&self, read: impl Fn() -> Result<T>) -> Result<T> {
        for _ in 0..INSTALL_WAIT_STEPS {
            let before = self.engine.data_epoch();
            if before % 2 == 0 {
                let outcome = read();
                if self.engine.data_epoch() == before {
                    return outcome;
                }
            }
            tokio::time::sleep(INSTALL_WAIT_STEP).await;
        }
        Err(StoreError::Timeout)
    }

    fn range_local(&self, request: &RangeRequest) -> Result<RangeResponse> {
        let current = self.current_revision();
        let revision = self.engine.check_read_revision(request.revision, current)?;
        let outcome = apply::range_at(&self.engine, request, revision)?;
        // A compaction may have started while we read: then the read may have missed versions.
        if revision < self.engine.compact_revision() {
            return Err(StoreError::Compacted);
        }
        Ok(RangeResponse {
            header: Some(self.header(current)),
            kvs: outcome.kvs,
            more: outcome.more,
            count: outcome.count,
        })
    }

    /// A txn that cannot write: evaluated on the applied state after a linearizable barrier,
    /// without a log entry.
    pub async fn read_only_txn(&self, request: &TxnRequest) -> Result<TxnResponse> {
        self.reads.wait().await?;
        let mut response = self
            .stable_read(|| {
                let mut view = WriteTxn::new(&self.engine, self.current_revision());
                apply::run_txn(&mut view, &self.lessor, request)
            })
            .await?;
        self.header.fill(&mut response.header);
        Ok(response)
    }
}
