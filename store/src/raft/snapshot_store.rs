//! Raft snapshots on disk: the snapshot directory, which file is current, and building a
//! snapshot off the apply path.
//!
//! Directory layout: data files `snap-<index>-<nonce>.keelsnap` in Keel's snapshot format
//! (`crate::snapshot`), and `current`, a postcard record naming the current data file with its
//! `SnapshotMeta`. Switching snapshots writes `current.tmp`, syncs it and renames it over
//! `current` (then syncs the directory), so a crash leaves either the old or the new snapshot
//! current, never a mix. Only the current data file is kept.
//!
//! Building: the RocksDB snapshot is taken between two applies (so it sits at an entry
//! boundary: the applied marker in it is complete), then dumped by a std thread while applying
//! goes on. A RocksDB snapshot borrows the database, so the thread takes it itself and reports
//! back once it has; the caller waits only for that.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftSnapshotBuilder;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::mvcc::Engine;
use crate::mvcc::engine::CF_META;
use crate::raft::applied::{AppliedMarker, META_APPLIED, META_MEMBERSHIP};
use crate::raft::storage_error::{RaftStorageError, Result, decode, encode, file_error};
use crate::raft::types::{SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig};
use crate::snapshot;

/// The snapshot type openraft hands around.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>;

const CURRENT: &str = "current";
const CURRENT_TMP: &str = "current.tmp";
const DATA_SUFFIX: &str = ".keelsnap";
const PARTIAL_SUFFIX: &str = ".partial";

/// The pointer file's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Current {
    meta: SnapshotMeta,
    file_name: String,
    size_bytes: u64,
}

/// The snapshot directory and its current snapshot. Shared by the state machine and its
/// snapshot builders.
pub struct SnapshotStore {
    dir: PathBuf,
    current: Mutex<Option<Current>>,
}

impl SnapshotStore {
    /// Opens (creating) `dir` and reads which snapshot is current. Leaves other files alone:
    /// call [`SnapshotStore::remove_strays`] once an interrupted install is resolved.
    pub fn open(dir: PathBuf) -> Result<SnapshotStore> {
        std::fs::create_dir_all(&dir).map_err(file_error(&dir))?;
        let current = read_current(&dir)?;
        Ok(SnapshotStore { dir, current: Mutex::new(current) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Option<Current>> {
        // Updates under this lock are single assignments: a poisoned lock holds a whole value.
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current snapshot, if there is one.
    pub fn current(&self) -> Option<Snapshot> {
        self.lock().as_ref().map(|current| Snapshot {
            meta: current.meta.clone(),
            snapshot: SnapshotFile { path: self.dir.join(&current.file_name), size_bytes: current.size_bytes },
        })
    }

    /// Deletes every file in the directory except the current snapshot: leftovers of builds
    /// and installs a crash interrupted.
    pub fn remove_strays(&self) -> Result<()> {
        let keep = self.lock().as_ref().map(|c| c.file_name.clone());
        for dirent in std::fs::read_dir(&self.dir).map_err(file_error(&self.dir))? {
            let dirent = dirent.map_err(file_error(&self.dir))?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            let stray = name.ends_with(DATA_SUFFIX) || name.ends_with(PARTIAL_SUFFIX) || name == CURRENT_TMP;
            if stray && keep.as_deref() != Some(name.as_str()) {
                remove_file(&dirent.path())?;
            }
        }
        Ok(())
    }

    /// A fresh data file name for a snapshot up to `meta`.
    fn new_file_name(meta: &SnapshotMeta) -> String {
        let index = meta.last_log_id.as_ref().map_or(0, |id| id.index);
        format!("snap-{index:020}-{:016x}{DATA_SUFFIX}", rand::random::<u64>())
    }

    /// Makes `file_name` (a data file in the directory) current, unless `only_if_newer` and the
    /// current snapshot is at least as new. Returns whether it became current. The previous
    /// data file is deleted.
    fn switch(&self, meta: &SnapshotMeta, file_name: &str, size_bytes: u64, only_if_newer: bool) -> Result<bool> {
        let mut current = self.lock();
        if only_if_newer && current.as_ref().is_some_and(|c| c.meta.last_log_id >= meta.last_log_id) {
            return Ok(false);
        }
        let record = Current { meta: meta.clone(), file_name: file_name.to_owned(), size_bytes };
        write_durably(&self.dir, CURRENT, CURRENT_TMP, &encode("current snapshot", &record)?)?;
        let previous = current.replace(record);
        drop(current);
        if let Some(previous) = previous.filter(|p| p.file_name != file_name) {
            remove_file(&self.dir.join(previous.file_name))?;
        }
        Ok(true)
    }

    /// Makes an installed snapshot current (it replaced the state machine, so it is current
    /// even if an older build is about to finish).
    pub fn switch_installed(&self, meta: &SnapshotMeta, file_name: &str, size_bytes: u64) -> Result<()> {
        self.switch(meta, file_name, size_bytes, false).map(|_| ())
    }

    /// Brings a received snapshot file into the directory and returns its name there. The
    /// file is moved (the caller hands it over), except the current snapshot of a snapshot
    /// directory (this one's, on restart; another state machine's, in tests), which stays
    /// where it is and is linked or copied instead.
    pub fn adopt(&self, meta: &SnapshotMeta, source: &Path) -> Result<String> {
        if source.parent() == Some(self.dir.as_path())
            && let Some(name) = source.file_name().and_then(|n| n.to_str())
            && name.ends_with(DATA_SUFFIX)
        {
            return Ok(name.to_owned());
        }
        let name = Self::new_file_name(meta);
        let target = self.dir.join(&name);
        if is_current_elsewhere(source) {
            if std::fs::hard_link(source, &target).is_err() {
                std::fs::copy(source, &target).map_err(file_error(source))?;
            }
        } else if std::fs::rename(source, &target).is_err() {
            // Another file system: copy, then drop the original.
            std::fs::copy(source, &target).map_err(file_error(source))?;
            remove_file(source)?;
        }
        File::open(&target).and_then(|f| f.sync_all()).map_err(file_error(&target))?;
        sync_dir(&self.dir)?;
        Ok(name)
    }

    /// Starts building a snapshot of `engine` as it is now: takes the RocksDB snapshot (in the
    /// dump thread) and returns once it is taken. Call between two applies.
    pub fn start_build(self: &Arc<Self>, engine: Arc<Engine>) -> SnapshotBuilder {
        SnapshotBuilder { store: self.clone(), dump: start_dump(engine, self.dir.clone()) }
    }
}

/// Reads the `current` record; a record naming a missing file counts as no snapshot.
fn read_current(dir: &Path) -> Result<Option<Current>> {
    let path = dir.join(CURRENT);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(file_error(&path)(error)),
    };
    let current: Current = decode("current snapshot record", &bytes)?;
    if !dir.join(&current.file_name).exists() {
        tracing::warn!(file = %current.file_name, "the current Raft snapshot file is missing; starting without one");
        return Ok(None);
    }
    Ok(Some(current))
}

/// Whether `path` is the current snapshot of the snapshot directory it lives in.
fn is_current_elsewhere(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return false };
    match read_current(dir) {
        Ok(Some(current)) => name.to_str() == Some(current.file_name.as_str()),
        _ => false,
    }
}

/// Replaces `dir/name` with `bytes` atomically and durably (temp file, sync, rename, sync dir).
fn write_durably(dir: &Path, name: &str, tmp_name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(tmp_name);
    let target = dir.join(name);
    std::fs::write(&tmp, bytes).map_err(file_error(&tmp))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(file_error(&tmp))?;
    std::fs::rename(&tmp, &target).map_err(file_error(&target))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(file_error(dir))
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(file_error(path)(error)),
        _ => Ok(()),
    }
}

/// A dump in progress: its meta (known once the RocksDB snapshot is taken), the file it
/// writes, and the dump's outcome (its size).
struct Dump {
    meta: SnapshotMeta,
    partial_path: PathBuf,
    done: oneshot::Receiver<Result<u64>>,
    /// Joined once the dump is done, so the thread's hold on the database has ended.
    thread: std::thread::JoinHandle<()>,
}

/// Starts the dump thread and waits until it has taken its RocksDB snapshot.
fn start_dump(engine: Arc<Engine>, dir: PathBuf) -> Result<Dump> {
    let partial_path = dir.join(format!("build-{:016x}{PARTIAL_SUFFIX}", rand::random::<u64>()));
    let (taken_tx, taken_rx) = std::sync::mpsc::sync_channel::<Result<SnapshotMeta>>(1);
    let (done_tx, done) = oneshot::channel();
    let path = partial_path.clone();
    let thread = std::thread::Builder::new()
        .name("raft-snapshot".into())
        .spawn(move || dump(&engine, &path, &taken_tx, done_tx))
        .map_err(|e| RaftStorageError::Thread(e.to_string()))?;
    let meta = taken_rx.recv().map_err(|_| RaftStorageError::Thread("snapshot thread ended early".into()))??;
    Ok(Dump { meta, partial_path, done, thread })
}

/// The dump thread: RocksDB snapshot, its meta back to the caller, then the file.
fn dump(
    engine: &Engine,
    path: &Path,
    taken: &std::sync::mpsc::SyncSender<Result<SnapshotMeta>>,
    done: oneshot::Sender<Result<u64>>,
) {
    let rocks_snapshot = engine.db().snapshot();
    let meta = snapshot_meta(engine, &rocks_snapshot);
    let proceed = meta.is_ok();
    if taken.send(meta).is_err() || !proceed {
        return;
    }
    let written = snapshot::write_from(engine, &rocks_snapshot, path).map_err(RaftStorageError::from);
    drop(rocks_snapshot);
    if written.is_err() || done.send(written).is_err() {
        // Failed, or nobody wants the snapshot any more.
        let _ = std::fs::remove_file(path);
    }
}

/// The applied marker and membership as of `rocks_snapshot`, as a `SnapshotMeta`.
fn snapshot_meta(engine: &Engine, rocks_snapshot: &rocksdb::Snapshot<'_>) -> Result<SnapshotMeta> {
    let meta_cf = engine.cf(CF_META);
    let marker: AppliedMarker = match rocks_snapshot.get_cf(meta_cf, META_APPLIED)? {
        Some(raw) => decode("applied marker", &raw)?,
        None => AppliedMarker::default(),
    };
    if marker.partial.is_some() {
        return Err(RaftStorageError::Corrupt("snapshot taken in the middle of an entry"));
    }
    let last_membership: StoredMembership = match rocks_snapshot.get_cf(meta_cf, META_MEMBERSHIP)? {
        Some(raw) => decode("stored membership", &raw)?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta { last_log_id: marker.last_complete, last_membership })
}

/// Builds one snapshot: the dump started when the builder was made.
pub struct SnapshotBuilder {
    store: Arc<SnapshotStore>,
    dump: Result<Dump>,
}

impl SnapshotBuilder {
    async fn build(&mut self) -> Result<Snapshot> {
        let placeholder = Err(RaftStorageError::Thread("snapshot already built".into()));
        let Dump { meta, partial_path, done, thread } = std::mem::replace(&mut self.dump, placeholder)?;
        let size_bytes = done.await.map_err(|_| RaftStorageError::Thread("snapshot thread ended early".into()))??;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            // The dump has sent its size; the thread is only returning.
            let _ = thread.join();
            publish_build(&store, &meta, &partial_path, size_bytes)
        })
        .await
        .map_err(|e| RaftStorageError::Thread(e.to_string()))?
    }
}

/// Moves a finished dump into place and makes it current, unless a newer snapshot (installed
/// meanwhile) already is: then that one is the answer and the dump is dropped.
fn publish_build(store: &SnapshotStore, meta: &SnapshotMeta, partial: &Path, size_bytes: u64) -> Result<Snapshot> {
    let name = SnapshotStore::new_file_name(meta);
    let target = store.dir.join(&name);
    std::fs::rename(partial, &target).map_err(file_error(partial))?;
    sync_dir(&store.dir)?;
    if store.switch(meta, &name, size_bytes, true)? {
        return Ok(Snapshot { meta: meta.clone(), snapshot: SnapshotFile { path: target, size_bytes } });
    }
    remove_file(&target)?;
    store.current().ok_or(RaftStorageError::Corrupt("no current snapshot after a newer one was installed"))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot, io::Error> {
        Ok(self.build().await?)
    }
}
