//! The data directory: what is in it, whose it is, and never overwriting what is not ours.
//!
//! A Keel data directory holds `keel-store.json` (this member's identity: cluster and member
//! IDs and the names they were derived from) and `db/` (RocksDB). A directory with anything
//! else in it (an etcd `member/` directory, stray files) is refused untouched, and so is a
//! Keel directory that belongs to a different cluster than the flags describe.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const IDENTITY_FILE: &str = "keel-store.json";
const DB_DIR: &str = "db";
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot read data directory {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("cannot create data directory {path}: {source}")]
    Uncreatable { path: PathBuf, source: std::io::Error },
    #[error(
        "data directory {path} holds an etcd data directory (member/); Keel cannot use it and will not touch it: pick another --data-dir"
    )]
    EtcdData { path: PathBuf },
    #[error(
        "data directory {path} is not empty and is not a Keel data directory (found {found:?}); refusing to use it: pick an empty or new --data-dir"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("data directory {path} has a damaged {IDENTITY_FILE}: {reason}")]
    BadIdentity { path: PathBuf, reason: String },
    #[error(
        "data directory {path} belongs to cluster {stored_cluster:016x} (token {stored_token:?}, member {stored_name:?}), \
         but the flags describe cluster {wanted_cluster:016x} (token {wanted_token:?}, member {wanted_name:?}); refusing to mix clusters"
    )]
    OtherCluster {
        path: PathBuf,
        stored_cluster: u64,
        stored_token: String,
        stored_name: String,
        wanted_cluster: u64,
        wanted_token: String,
        wanted_name: String,
    },
}

/// Who this member is, as stored in the data directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub format: u32,
    pub cluster_id: u64,
    pub member_id: u64,
    pub name: String,
    pub cluster_token: String,
    pub peer_urls: Vec<String>,
}

impl Identity {
    /// A bootstrapping member's identity, derived like etcd's: member IDs from peer URLs and
    /// the cluster token, the cluster ID from every initial member's ID.
    pub fn derive(name: &str, peer_urls: &[String], cluster_token: &str, initial_members: &[Vec<String>]) -> Identity {
        let member_id = member_id_for(peer_urls, cluster_token);
        let mut ids: Vec<u64> = initial_members.iter().map(|urls| member_id_for(urls, cluster_token)).collect();
        ids.sort_unstable();
        ids.dedup();
        Identity::joined(name, peer_urls, cluster_token, member_id, cluster_id_for(&ids, cluster_token))
    }

    /// The identity of a member with given IDs (a member joining a running cluster learns
    /// them from its peers).
    pub fn joined(name: &str, peer_urls: &[String], cluster_token: &str, member_id: u64, cluster_id: u64) -> Identity {
        let mut sorted = peer_urls.to_vec();
        sorted.sort();
        Identity {
            format: FORMAT,
            cluster_id,
            member_id,
            name: name.to_string(),
            cluster_token: cluster_token.to_string(),
            peer_urls: sorted,
        }
    }
}

/// A bootstrapping member's ID: from its peer URLs and the cluster token.
pub fn member_id_for(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut sorted = peer_urls.to_vec();
    sorted.sort();
    hash_u64(&[sorted.join(",").as_bytes(), cluster_token.as_bytes()])
}

/// The cluster ID from the initial members' IDs (sorted) and the token. A single-member
/// cluster gets the ID earlier Keel versions derived.
pub fn cluster_id_for(sorted_member_ids: &[u64], cluster_token: &str) -> u64 {
    let ids: Vec<u8> = sorted_member_ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    hash_u64(&[&ids, cluster_token.as_bytes()])
}

/// The identity stored in `path`, if it is a Keel data directory.
pub fn stored_identity(path: &Path) -> Result<Option<Identity>, DataDirError> {
    if !path.join(IDENTITY_FILE).exists() {
        return Ok(None);
    }
    read_identity(path).map(Some)
}

fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // Zero means "no member" on the wire.
    u64::from_be_bytes(bytes).max(1)
}

/// Checks (or initializes) `path` for `wanted`; returns the stored identity and the RocksDB
/// directory.
pub fn prepare(path: &Path, wanted: &Identity) -> Result<(Identity, PathBuf), DataDirError> {
    if !path.exists() {
        create_dir(path)?;
    }
    let entries: Vec<String> = fs::read_dir(path)
        .map_err(|source| DataDirError::Unreadable { path: path.into(), source })?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|source| DataDirError::Unreadable { path: path.into(), source })?;
    let db = path.join(DB_DIR);
    if entries.iter().any(|e| e == "member") {
        return Err(DataDirError::EtcdData { path: path.into() });
    }
    if entries.iter().any(|e| e == IDENTITY_FILE) {
        let stored = read_identity(path)?;
        if stored.cluster_id != wanted.cluster_id {
            return Err(DataDirError::OtherCluster {
                path: path.into(),
                stored_cluster: stored.cluster_id,
                stored_token: stored.cluster_token,
                stored_name: stored.name,
                wanted_cluster: wanted.cluster_id,
                wanted_token: wanted.cluster_token.clone(),
                wanted_name: wanted.name.clone(),
            });
        }
        return Ok((stored, db));
    }
    if let Some(found) = entries.first() {
        return Err(DataDirError::Foreign { path: path.into(), found: found.clone() });
    }
    write_identity(path, wanted)?;
    Ok((wanted.clone(), db))
}

fn create_dir(path: &Path) -> Result<(), DataDirError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DataDirError::Uncreatable { path: path.into(), source })
}

fn read_identity(path: &Path) -> Result<Identity, DataDirError> {
    let file = path.join(IDENTITY_FILE);
    let text = fs::read_to_string(&file).map_err(|source| DataDirError::Unreadable { path: file.clone(), source })?;
    let identity: Identity = serde_json::from_str(&text)
        .map_err(|e| DataDirError::BadIdentity { path: path.into(), reason: e.to_string() })?;
    if identity.format != FORMAT {
        return Err(DataDirError::BadIdentity {
            path: path.into(),
            reason: format!("unknown format {}", identity.format),
        });
    }
    Ok(identity)
}

/// Writes the identity file atomically (temp file, fsync, rename, fsync directory).
fn write_identity(path: &Path, identity: &Identity) -> Result<(), DataDirError> {
    let io_error = |source| DataDirError::Uncreatable { path: path.into(), source };
    let text = serde_json::to_string_pretty(identity)
        .map_err(|e| DataDirError::BadIdentity { path: path.into(), reason: e.to_string() })?;
    let temp = path.join(format!("{IDENTITY_FILE}.tmp"));
    let mut file = fs::File::create(&temp).map_err(io_error)?;
    file.write_all(text.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    fs::rename(&temp, path.join(IDENTITY_FILE)).map_err(io_error)?;
    fs::File::open(path).and_then(|dir| dir.sync_all()).map_err(io_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(token: &str) -> Identity {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        Identity::derive("default", &urls, token, &[urls.clone()])
    }

    #[test]
    fn new_directory_is_initialized_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let (first, _) = prepare(&path, &identity("t")).unwrap();
        let (second, _) = prepare(&path, &identity("t")).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn other_cluster_and_foreign_directories_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), &identity("a")).unwrap();
        let error = prepare(dir.path(), &identity("b")).unwrap_err();
        assert!(matches!(error, DataDirError::OtherCluster { .. }), "{error}");

        let etcd = tempfile::tempdir().unwrap();
        fs::create_dir(etcd.path().join("member")).unwrap();
        assert!(matches!(prepare(etcd.path(), &identity("a")), Err(DataDirError::EtcdData { .. })));

        let stray = tempfile::tempdir().unwrap();
        fs::write(stray.path().join("notes.txt"), b"mine").unwrap();
        assert!(matches!(prepare(stray.path(), &identity("a")), Err(DataDirError::Foreign { .. })));
        assert_eq!(fs::read(stray.path().join("notes.txt")).unwrap(), b"mine");
    }
}
