//! The server side of Raft's RPCs: what a member does with an `AppendEntries`, `Vote`,
//! `PreVote`, `TransferLeader` or `InstallSnapshot` another member sent it. The `keelpeer.Peer`
//! service (`peer_service`) calls these functions; the payload convention is `network`'s.
//!
//! Every message names the cluster and the member it is for. A message for another cluster or
//! member is refused with `FailedPrecondition` before Raft sees it: after an address is reused
//! (a member replaced, a cluster rebuilt), a stale sender must learn that it reached the wrong
//! process, never get an answer that looks like the addressed member's.
//!
//! A snapshot arrives as a stream of chunks and is written to a new file in the incoming
//! directory (bounded by [`MAX_SNAPSHOT_BYTES`], fsynced), then handed to
//! `Raft::install_full_snapshot`. From then on the file belongs to the state machine, which
//! must move it out of the incoming directory when it installs it: a file still at its incoming
//! path when `install_full_snapshot` returns was not installed (older than the local state, or
//! the sender's vote was stale) and is removed. Files of transfers that a crash interrupted are
//! removed by [`remove_stale_incoming`] at startup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::type_config::alias::SnapshotOf;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tonic::{Status, Streaming};

use crate::raft::network::{Reply, SnapshotHeader, decode_payload, encode_payload};
use crate::raft::types::{Raft, SnapshotFile, SnapshotMeta, TypeConfig, Vote};
use crate::raft::wire::{RaftMessage, SnapshotChunk};

/// Largest snapshot a member accepts.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;
/// Snapshot streams received at the same time, at most (each up to `MAX_SNAPSHOT_BYTES`).
pub const MAX_CONCURRENT_SNAPSHOTS: usize = 2;
/// A snapshot stream that delivers nothing for this long is abandoned.
pub const SNAPSHOT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const INCOMING_PREFIX: &str = "keel-snapshot-";
const INCOMING_SUFFIX: &str = ".incoming";

/// Who this member is: the cluster and member every incoming message must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalIds {
    pub cluster_id: u64,
    pub member_id: u64,
}

impl LocalIds {
    /// Refuses a message meant for another cluster or member.
    pub fn check(&self, cluster_id: u64, target: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id || target != self.member_id {
            return Err(Status::failed_precondition(format!(
                "keel: request for member {target:x} of cluster {cluster_id:x} reached member {:x} of cluster {:x}",
                self.member_id, self.cluster_id
            )));
        }
        Ok(())
    }
}

/// Checks a request's addressing and decodes the openraft request in it.
pub fn open_request<T: DeserializeOwned>(local: &LocalIds, rpc: &str, message: &RaftMessage) -> Result<T, Status> {
    local.check(message.cluster_id, message.target)?;
    decode_payload(&message.payload).map_err(|e| Status::invalid_argument(format!("keel: {rpc}: {e}")))
}

/// Encodes Raft's answer as the reply message.
pub fn seal_reply<T: Serialize>(local: &LocalIds, rpc: &str, reply: &Reply<T>) -> Result<RaftMessage, Status> {
    let payload = encode_payload(reply).map_err(|e| Status::internal(format!("keel: {rpc}: {e}")))?;
    Ok(RaftMessage { cluster_id: local.cluster_id, target: 0, payload })
}

pub async fn append_entries(raft: &Raft, local: &LocalIds, message: RaftMessage) -> Result<RaftMessage, Status> {
    let request: AppendEntriesRequest<TypeConfig> = open_request(local, "AppendEntries", &message)?;
    seal_reply(local, "AppendEntries", &raft.append_entries(request).await)
}

pub async fn vote(raft: &Raft, local: &LocalIds, message: RaftMessage) -> Result<RaftMessage, Status> {
    let request: VoteRequest<TypeConfig> = open_request(local, "Vote", &message)?;
    seal_reply(local, "Vote", &raft.vote(request).await)
}

pub async fn pre_vote(raft: &Raft, local: &LocalIds, message: RaftMessage) -> Result<RaftMessage, Status> {
    let request: VoteRequest<TypeConfig> = open_request(local, "PreVote", &message)?;
    seal_reply(local, "PreVote", &raft.pre_vote(request).await)
}

/// A leader's `TransferLeader`. A member that is `stopping` refuses one naming it: it would
/// lead only until it stops (the other voters still take note that the old leader is leaving).
pub async fn transfer_leader(
    raft: &Raft,
    local: &LocalIds,
    message: RaftMessage,
    stopping: bool,
) -> Result<RaftMessage, Status> {
    let request: TransferLeaderRequest<TypeConfig> = open_request(local, "TransferLeader", &message)?;
    if stopping && *request.to_node_id() == local.member_id {
        return Err(Status::unavailable("keel: this member is stopping and will not take leadership"));
    }
    let reply = raft.handle_transfer_leader(request).await.map_err(RaftError::Fatal);
    seal_reply(local, "TransferLeader", &reply)
}

/// Receives a snapshot stream into `incoming_dir` and installs it. At most
/// [`MAX_CONCURRENT_SNAPSHOTS`] streams are received at a time (say, from an old and a new
/// leader); another is refused as `ResourceExhausted` and its sender backs off.
pub async fn install_snapshot(
    raft: &Raft,
    local: &LocalIds,
    stream: Streaming<SnapshotChunk>,
    incoming_dir: &Path,
) -> Result<RaftMessage, Status> {
    static RECEIVING: Semaphore = Semaphore::const_new(MAX_CONCURRENT_SNAPSHOTS);
    let _receiving = RECEIVING
        .try_acquire()
        .map_err(|_| Status::resource_exhausted("keel: already receiving as many snapshots as allowed"))?;
    let ReceivedSnapshot { vote, meta, file } = receive_snapshot(local, stream, incoming_dir).await?;
    let path = file.path.clone();
    let raft = raft.clone();
    let snapshot: SnapshotOf<TypeConfig, SnapshotFile> = openraft::Snapshot { meta, snapshot: file };
    // Installing runs to its end even if the sender goes away meanwhile: the state machine may
    // be moving the file, which must not be removed under it.
    let install = tokio::spawn(async move {
        let reply = raft.install_full_snapshot(vote, snapshot).await;
        discard_if_left(&path).await;
        reply
    });
    let reply = install.await.map_err(|e| Status::internal(format!("keel: installing a snapshot failed: {e}")))?;
    seal_reply(local, "InstallSnapshot", &reply.map_err(RaftError::Fatal))
}

/// A snapshot received in full, in a file of its own.
#[derive(Debug)]
pub struct ReceivedSnapshot {
    /// The sending leader's vote, for `install_full_snapshot`.
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub file: SnapshotFile,
}

/// Reads a snapshot stream into a new file in `incoming_dir`, fsynced. On any failure, and if
/// the returned future is dropped before it completes, the file is removed.
pub async fn receive_snapshot<S>(
    local: &LocalIds,
    mut stream: S,
    incoming_dir: &Path,
) -> Result<ReceivedSnapshot, Status>
where
    S: Stream<Item = Result<SnapshotChunk, Status>> + Unpin,
{
    let first =
        next_chunk(&mut stream).await?.ok_or_else(|| Status::invalid_argument("keel: empty snapshot stream"))?;
    local.check(first.cluster_id, first.target)?;
    if first.header.is_empty() {
        return Err(Status::invalid_argument("keel: the first snapshot chunk has no header"));
    }
    let (vote, meta): SnapshotHeader =
        decode_payload(&first.header).map_err(|e| Status::invalid_argument(format!("keel: snapshot header: {e}")))?;
    let mut incoming = IncomingFile::create(incoming_dir).await?;
    incoming.append(&first.data).await?;
    let mut done = first.done;
    while !done {
        let chunk = next_chunk(&mut stream)
            .await?
            .ok_or_else(|| Status::aborted("keel: the snapshot stream ended before its last chunk"))?;
        if chunk.cluster_id != first.cluster_id || chunk.target != first.target {
            return Err(Status::invalid_argument("keel: snapshot chunks name different members"));
        }
        if !chunk.header.is_empty() {
            return Err(Status::invalid_argument("keel: a snapshot header after the first chunk"));
        }
        incoming.append(&chunk.data).await?;
        done = chunk.done;
    }
    let file = incoming.finish().await?;
    tracing::info!(
        path = %file.path.display(),
        size_bytes = file.size_bytes,
        last_log_id = ?meta.last_log_id,
        "received a snapshot"
    );
    Ok(ReceivedSnapshot { vote, meta, file })
}

/// Removes what interrupted transfers left in `incoming_dir` (call at startup, before serving).
/// Returns how many files were removed.
pub fn remove_stale_incoming(incoming_dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(incoming_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(INCOMING_PREFIX) && name.ends_with(INCOMING_SUFFIX) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

async fn next_chunk<S>(stream: &mut S) -> Result<Option<SnapshotChunk>, Status>
where
    S: Stream<Item = Result<SnapshotChunk, Status>> + Unpin,
{
    match tokio::time::timeout(SNAPSHOT_IDLE_TIMEOUT, stream.next()).await {
        Err(_) => Err(Status::deadline_exceeded(format!(
            "keel: the snapshot stream delivered nothing for {SNAPSHOT_IDLE_TIMEOUT:?}"
        ))),
        Ok(None) => Ok(None),
        Ok(Some(chunk)) => chunk.map(Some),
    }
}

async fn discard_if_left(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => tracing::info!(path = %path.display(), "removed a snapshot that was not installed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a snapshot that was not installed"),
    }
}

/// A snapshot file being received. Removed on drop unless [`IncomingFile::finish`] completed.
struct IncomingFile {
    path: PathBuf,
    dir: PathBuf,
    file: tokio::fs::File,
    written: u64,
    keep: bool,
}

impl IncomingFile {
    async fn create(dir: &Path) -> Result<IncomingFile, Status> {
        let io_error = |what: &str, path: &Path, e: std::io::Error| {
            Status::internal(format!("keel: {what} {}: {e}", path.display()))
        };
        tokio::fs::create_dir_all(dir).await.map_err(|e| io_error("cannot create", dir, e))?;
        let path = dir.join(format!("{INCOMING_PREFIX}{:016x}{INCOMING_SUFFIX}", rand::random::<u64>()));
        // Created in place (one short syscall), not on the blocking pool: there must be no await
        // between the file appearing and the guard that removes it, or a receive dropped at that
        // point (the sender reset the stream) would leave the file behind.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error("cannot create", &path, e))?;
        Ok(IncomingFile {
            path,
            dir: dir.to_path_buf(),
            file: tokio::fs::File::from_std(file),
            written: 0,
            keep: false,
        })
    }

    async fn append(&mut self, data: &[u8]) -> Result<(), Status> {
        let total = self.written.saturating_add(data.len() as u64);
        if total > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!("keel: snapshot larger than {MAX_SNAPSHOT_BYTES} bytes")));
        }
        self.file
            .write_all(data)
            .await
            .map_err(|e| Status::internal(format!("keel: cannot write {}: {e}", self.path.display())))?;
        self.written = total;
        Ok(())
    }

    /// Makes the file durable (contents and directory entry) and hands it over.
    async fn finish(mut self) -> Result<SnapshotFile, Status> {
        let sync_error =
            |path: &Path, e: std::io::Error| Status::internal(format!("keel: cannot sync {}: {e}", path.display()));
        self.file.flush().await.map_err(|e| sync_error(&self.path, e))?;
        self.file.sync_all().await.map_err(|e| sync_error(&self.path, e))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
            .await
            .map_err(|e| Status::internal(format!("keel: syncing the snapshot directory failed: {e}")))?
            .map_err(|e| sync_error(&self.dir, e))?;
        self.keep = true;
        Ok(SnapshotFile { path: self.path.clone(), size_bytes: self.written })
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an incomplete snapshot");
        }
    }
}
