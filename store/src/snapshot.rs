//! Snapshots in etcd's framing: the data, zero-padded to a multiple of 512 bytes, followed by
//! the 32-byte SHA-256 of everything before it (etcdctl checks `size % 512 == 32`).
//!
//! The data is Keel's own (etcd's is a bbolt file, which `etcdctl snapshot status/restore`
//! read offline; use `keel store restore` for Keel snapshots):
//! `KEELSNAP` ++ format (u32 BE) ++ records ++ end marker, where a record is
//! keyspace (u8) ++ key length (u32 BE) ++ key ++ value length (u32 BE) ++ value, and the end
//! marker is keyspace 0xFF. Every keyspace is read from one RocksDB snapshot, so the file is a
//! consistent point in time.
//!
//! Two readers: [`restore`] seeds a new cluster's member (`keel store restore`) and drops the
//! Raft bookkeeping in `meta` (applied marker, membership, published members), which belongs to
//! the cluster the snapshot came from; [`load`] copies everything, for Raft snapshot installs.
//! Both verify the checksum over the whole file before loading anything, and both stream the
//! file with bounded buffers: a snapshot can be far larger than memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{IteratorMode, ReadOptions, Snapshot};
use sha2::{Digest, Sha256};

use crate::mvcc::Engine;
use crate::mvcc::engine::{CF_META, META_RAFT_PREFIX, STATE_MACHINE_CFS};

const MAGIC: &[u8; 8] = b"KEELSNAP";
const FORMAT: u32 = 1;
const END: u8 = 0xFF;
/// Keyspaces in the order they are written; a record names its keyspace by index here.
const KEYSPACES: [&str; 5] = STATE_MACHINE_CFS;
const PAD_TO: u64 = 512;
const DIGEST_LEN: u64 = 32;
/// Records per RocksDB write batch while loading: bounds the memory a load holds.
const LOAD_BATCH_RECORDS: usize = 10_000;
/// Read buffer for checksum verification and loading.
const READ_BUFFER: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot read: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("not a Keel snapshot: {0}")]
    Format(&'static str),
    #[error("snapshot checksum mismatch: the file is damaged")]
    Checksum,
}

/// Writes a snapshot of `engine` to `path`; returns its size in bytes.
pub fn write(engine: &Engine, path: &Path) -> Result<u64, SnapshotError> {
    let snapshot = engine.db().snapshot();
    write_from(engine, &snapshot, path)
}

/// Writes the state of `engine` as of `snapshot` (a RocksDB snapshot of `engine`'s database)
/// to `path` and syncs it; returns its size in bytes. Raft takes the RocksDB snapshot between
/// two applies and dumps it while applying goes on.
pub fn write_from(engine: &Engine, snapshot: &Snapshot<'_>, path: &Path) -> Result<u64, SnapshotError> {
    let file = File::create(path)?;
    let mut out = HashingWriter { inner: BufWriter::new(file), hasher: Sha256::new(), written: 0 };
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT.to_be_bytes())?;
    for (index, name) in KEYSPACES.iter().enumerate() {
        let mut options = ReadOptions::default();
        options.set_snapshot(snapshot);
        for entry in engine.db().iterator_cf_opt(engine.cf(name), options, IteratorMode::Start) {
            let (key, value) = entry?;
            out.write_all(&[index as u8])?;
            write_bytes(&mut out, &key)?;
            write_bytes(&mut out, &value)?;
        }
    }
    out.write_all(&[END])?;
    let padding = (PAD_TO - out.written % PAD_TO) % PAD_TO;
    out.write_all(&vec![0u8; padding as usize])?;
    let digest = out.hasher.finalize_reset();
    out.inner.write_all(&digest)?;
    let size = out.written + digest.len() as u64;
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(size)
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("record larger than 4 GiB"))?;
    out.write_all(&length.to_be_bytes())?;
    out.write_all(bytes)
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Verifies a snapshot file and loads it into `engine` (which must be empty) for a new
/// cluster: Raft bookkeeping of the snapshot's cluster is left out. Returns the records loaded.
pub fn restore(snapshot: &Path, engine: &Engine) -> Result<u64, SnapshotError> {
    load_filtered(snapshot, engine, &|keyspace, key| !is_raft_meta(keyspace, key))
}

/// Verifies a snapshot file and loads all of it into `engine`, whose state-machine keyspaces
/// must be empty (new, or wiped by a Raft snapshot install). Returns the records loaded.
pub fn load(snapshot: &Path, engine: &Engine) -> Result<u64, SnapshotError> {
    load_filtered(snapshot, engine, &|_, _| true)
}

/// Whether a record is Raft's bookkeeping rather than store data.
fn is_raft_meta(keyspace: &str, key: &[u8]) -> bool {
    keyspace == CF_META && key.starts_with(META_RAFT_PREFIX)
}

fn load_filtered(snapshot: &Path, engine: &Engine, keep: &dyn Fn(&str, &[u8]) -> bool) -> Result<u64, SnapshotError> {
    let body_len = verify(snapshot)?;
    let mut input = BufReader::with_capacity(READ_BUFFER, File::open(snapshot)?.take(body_len));
    let mut remaining = body_len;
    let magic = take(&mut input, &mut remaining, MAGIC.len())?;
    if magic != MAGIC.as_slice() {
        return Err(SnapshotError::Format("bad magic"));
    }
    if take(&mut input, &mut remaining, 4)? != FORMAT.to_be_bytes() {
        return Err(SnapshotError::Format("unknown format version"));
    }
    let mut records = 0u64;
    let mut batch = rocksdb::WriteBatch::default();
    loop {
        let index = take(&mut input, &mut remaining, 1)?[0];
        if index == END {
            break;
        }
        let name = KEYSPACES.get(index as usize).ok_or(SnapshotError::Format("unknown keyspace"))?;
        let key = take_bytes(&mut input, &mut remaining)?;
        let value = take_bytes(&mut input, &mut remaining)?;
        if !keep(name, &key) {
            continue;
        }
        batch.put_cf(engine.cf(name), key, value);
        records += 1;
        if batch.len() >= LOAD_BATCH_RECORDS {
            engine.db().write(std::mem::take(&mut batch))?;
        }
    }
    engine.db().write(batch)?;
    engine.db().flush_wal(true)?;
    Ok(records)
}

/// Checks the framing and the SHA-256 of `path`; returns the length of the checksummed part.
fn verify(path: &Path) -> Result<u64, SnapshotError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size < DIGEST_LEN || size % PAD_TO != DIGEST_LEN {
        return Err(SnapshotError::Format("size is not a multiple of 512 plus a 32-byte checksum"));
    }
    let body_len = size - DIGEST_LEN;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut left = body_len;
    while left > 0 {
        let want = left.min(buffer.len() as u64) as usize;
        file.read_exact(&mut buffer[..want])?;
        hasher.update(&buffer[..want]);
        left -= want as u64;
    }
    let mut digest = [0u8; DIGEST_LEN as usize];
    file.read_exact(&mut digest)?;
    if hasher.finalize().as_slice() != digest {
        return Err(SnapshotError::Checksum);
    }
    Ok(body_len)
}

/// Reads exactly `n` bytes, never more than the `remaining` body: a length field cannot make
/// the reader allocate past the end of the file.
fn take(input: &mut impl Read, remaining: &mut u64, n: usize) -> Result<Vec<u8>, SnapshotError> {
    if (n as u64) > *remaining {
        return Err(SnapshotError::Format("truncated"));
    }
    let mut out = vec![0u8; n];
    input.read_exact(&mut out)?;
    *remaining -= n as u64;
    Ok(out)
}

fn take_bytes(input: &mut impl Read, remaining: &mut u64) -> Result<Vec<u8>, SnapshotError> {
    let length = take(input, remaining, 4)?;
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    take(input, remaining, length)
}
