//! Typed errors of Raft's storage (log store, state machine, snapshots), and the byte encoding
//! of openraft's structures (postcard).
//!
//! openraft's storage traits report `io::Error`; each error converts to one at that boundary,
//! keeping its text, so a failure reads the same in Keel's logs and in openraft's.

use std::io;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::snapshot::SnapshotError;

#[derive(Debug, thiserror::Error)]
pub enum RaftStorageError {
    #[error("raft storage: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("raft storage: {0}")]
    Store(#[from] StoreError),
    #[error("raft storage: cannot encode {what}: {source}")]
    Encode { what: &'static str, source: postcard::Error },
    #[error("raft storage: corrupt {what}: {source}")]
    Decode { what: &'static str, source: postcard::Error },
    #[error("raft storage: corrupt {0}")]
    Corrupt(&'static str),
    #[error("raft storage: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("raft storage: {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("raft storage: cannot start or reach a background thread: {0}")]
    Thread(String),
}

pub type Result<T, E = RaftStorageError> = std::result::Result<T, E>;

impl From<RaftStorageError> for io::Error {
    fn from(error: RaftStorageError) -> io::Error {
        let kind = match &error {
            RaftStorageError::File { source, .. } => source.kind(),
            RaftStorageError::Snapshot(SnapshotError::Io(source)) => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

/// Attaches the path to a file-system error.
pub fn file_error(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> RaftStorageError {
    let path = path.into();
    move |source| RaftStorageError::File { path, source }
}

/// postcard bytes of `value`; `what` names it in errors.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|source| RaftStorageError::Encode { what, source })
}

/// `encode` into a buffer of `capacity` bytes to start with: for values whose size is known
/// about (log entries), so a large one is not regrown from empty.
pub fn encode_sized<T: Serialize>(what: &'static str, value: &T, capacity: usize) -> Result<Vec<u8>> {
    postcard::to_io(value, Vec::with_capacity(capacity)).map_err(|source| RaftStorageError::Encode { what, source })
}

/// The value postcard `bytes` hold; `what` names it in errors.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|source| RaftStorageError::Decode { what, source })
}
