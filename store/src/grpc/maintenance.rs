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
        Ok(Response::new(StatusResponse {
            header: Some(store.header(revision)),
            version: ETCD_API_VERSION.to_string(),
            db_size: store.engine.size_bytes() as i64,
            leader: store.member.id,
            raft_index: revision as u64,
            raft_term: store.header.term(),
            raft_applied_index: revision as u64,
            errors: Vec::new(),
            db_size_in_use: store.engine.live_size_bytes() as i64,
            is_learner: false,
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

    async fn move_leader(&self, _: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(Status::unimplemented("keel: this store runs a single member; there is no other leader to move to"))
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
