//! etcdserverpb.Maintenance: Status, Snapshot, Defragment, HashKV, Alarm.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbAlarmRequest as AlarmRequest, PbAlarmResponse as AlarmResponse, PbDefragmentRequest as DefragmentRequest,
    PbDefragmentResponse as DefragmentResponse, PbHashKvRequest as HashKvRequest, PbHashKvResponse as HashKvResponse,
    PbHashRequest as HashRequest, PbHashResponse as HashResponse, PbMoveLeaderRequest as MoveLeaderRequest,
    PbMoveLeaderResponse as MoveLeaderResponse, PbSnapshotRequest as SnapshotRequest,
    PbSnapshotResponse as SnapshotResponse, PbStatusRequest as StatusRequest, PbStatusResponse as StatusResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::generated::maintenance::maintenance_server::Maintenance;
use crate::error::StoreError;
use crate::mvcc::codec;
use crate::mvcc::engine::CF_KV;
use crate::snapshot;
use crate::store::Store;

/// The etcd API version Keel speaks (clients gate features on it).
pub const ETCD_API_VERSION: &str = "3.4.23";
/// Snapshot bytes per message.
const SNAPSHOT_CHUNK: usize = 64 * 1024;

pub struct MaintenanceService {
    pub store: Arc<Store>,
    /// Where snapshots are staged before streaming.
    pub scratch_dir: std::path::PathBuf,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

fn join_error(error: tokio::task::JoinError) -> Status {
    Status::internal(format!("keel: background task failed: {error}"))
}

impl MaintenanceService {
    /// CRC-32 over every stored version at or below `revision`, in key order.
    fn hash_up_to(&self, revision: i64) -> Result<u32, StoreError> {
        let engine = &self.store.engine;
        let mut hasher = crc32fast::Hasher::new();
        for entry in engine.iter_cf(CF_KV) {
            let (key, value) = entry?;
            let (_, version) = codec::split_version_key(&key)?;
            if version.main <= revision {
                hasher.update(&key);
                hasher.update(&value);
            }
        }
        Ok(hasher.finalize())
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = SnapshotStream;

    async fn alarm(&self, _: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(AlarmResponse {
            header: Some(self.store.header(self.store.current_revision())),
            alarms: Vec::new(),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let store = &self.store;
        let revision = store.current_revision();
        let raft = store.node.status();
        let errors = if raft.leader.is_none() { vec!["etcdserver: no leader".to_string()] } else { Vec::new() };
        Ok(Response::new(StatusResponse {
            header: Some(store.header(revision)),
            version: ETCD_API_VERSION.to_string(),
            db_size: store.engine.size_bytes() as i64,
            leader: raft.leader.unwrap_or(0),
            raft_index: raft.last_log_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            errors,
            db_size_in_use: store.engine.live_size_bytes() as i64,
            is_learner: raft.is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(&self, _: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        let engine = self.store.engine.clone();
        tokio::task::spawn_blocking(move || engine.defragment()).await.map_err(join_error)??;
        Ok(Response::new(DefragmentResponse { header: Some(self.store.header(self.store.current_revision())) }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let revision = self.store.current_revision();
        let hash = self.hash_up_to(revision)?;
        Ok(Response::new(HashResponse { header: Some(self.store.header(revision)), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let current = self.store.current_revision();
        let revision = self.store.engine.check_read_revision(request.into_inner().revision, current)?;
        let hash = self.hash_up_to(revision)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.store.header(current)),
            hash,
            compact_revision: self.store.engine.compact_revision(),
            hash_revision: revision,
        }))
    }

    async fn snapshot(&self, _: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        let engine = self.store.engine.clone();
        let path = self.scratch_dir.join(format!("snapshot-{:016x}.tmp", rand::random::<u64>()));
        let staged = path.clone();
        let size = tokio::task::spawn_blocking(move || snapshot::write(&engine, &staged))
            .await
            .map_err(join_error)?
            .map_err(|e| Status::internal(format!("keel: {e}")));
        let size = match size {
            Ok(size) => size,
            Err(status) => {
                let _ = std::fs::remove_file(&path);
                return Err(status);
            }
        };
        let header = self.store.header(self.store.current_revision());
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            stream_file(&path, size, header, &tx);
            let _ = std::fs::remove_file(&path);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// Hands leadership to another voter (etcd: only the leader accepts this).
    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let node = &self.store.node;
        if !node.is_leader() {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        let transferee = node.members().into_iter().any(|m| m.id == target && !m.is_learner);
        if !transferee {
            return Err(Status::failed_precondition("etcdserver: bad leader transferee"));
        }
        if target != node.member_id {
            node.raft
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|e| Status::internal(format!("keel: leader transfer failed: {e}")))?;
            let deadline = tokio::time::Instant::now() + crate::raft::proposer::REQUEST_TIMEOUT;
            if node.wait_for_new_leader(Some(node.member_id), deadline).await != Some(target) {
                return Err(Status::unavailable("etcdserver: request timed out, leader transfer took too long"));
            }
        }
        Ok(Response::new(MoveLeaderResponse { header: Some(self.store.header(self.store.current_revision())) }))
    }
}

/// Sends the staged snapshot file in chunks with the bytes remaining after each.
fn stream_file(
    path: &std::path::Path,
    size: u64,
    header: etcd_client::proto::PbResponseHeader,
    tx: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            let _ = tx.blocking_send(Err(Status::internal(format!("keel: snapshot: {error}"))));
            return;
        }
    };
    let mut remaining = size;
    let mut first = true;
    loop {
        let mut blob = vec![0u8; SNAPSHOT_CHUNK];
        let n = match file.read(&mut blob) {
            Ok(0) => return,
            Ok(n) => n,
            Err(error) => {
                let _ = tx.blocking_send(Err(Status::internal(format!("keel: snapshot: {error}"))));
                return;
            }
        };
        blob.truncate(n);
        remaining = remaining.saturating_sub(n as u64);
        let response = SnapshotResponse {
            header: first.then(|| header.clone()),
            remaining_bytes: remaining,
            blob,
            ..Default::default()
        };
        first = false;
        if tx.blocking_send(Ok(response)).is_err() {
            return;
        }
    }
}
