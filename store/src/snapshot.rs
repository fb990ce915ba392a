//! Snapshots in etcd's framing: the data, zero-padded to a multiple of 512 bytes, followed by
//! the 32-byte SHA-256 of everything before it (etcdctl checks `size % 512 == 32`).
//!
//! The data is Keel's own (etcd's is a bbolt file, which `etcdctl snapshot status/restore`
//! read offline; use `keel store restore` for Keel snapshots):
//! `KEELSNAP` ++ format (u32 BE) ++ records ++ end marker, where a record is
//! keyspace (u8) ++ key length (u32 BE) ++ key ++ value length (u32 BE) ++ value, and the end
//! marker is keyspace 0xFF. Every keyspace is read from one RocksDB snapshot, so the file is a
//! consistent point in time.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{IteratorMode, ReadOptions};
use sha2::{Digest, Sha256};

use crate::mvcc::Engine;
use crate::mvcc::engine::{CF_KV, CF_LEASE, CF_LEASE_KEYS, CF_META, CF_REV};

const MAGIC: &[u8; 8] = b"KEELSNAP";
const FORMAT: u32 = 1;
const END: u8 = 0xFF;
/// Keyspaces in the order they are written; a record names its keyspace by index here.
const KEYSPACES: [&str; 5] = [CF_KV, CF_REV, CF_LEASE, CF_LEASE_KEYS, CF_META];
const PAD_TO: u64 = 512;

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
    let file = File::create(path)?;
    let mut out = HashingWriter { inner: BufWriter::new(file), hasher: Sha256::new(), written: 0 };
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT.to_be_bytes())?;
    let snapshot = engine.db().snapshot();
    for (index, name) in KEYSPACES.iter().enumerate() {
        let mut options = ReadOptions::default();
        options.set_snapshot(&snapshot);
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

/// Verifies a snapshot file and loads it into `engine` (which must be empty).
pub fn restore(snapshot: &Path, engine: &Engine) -> Result<u64, SnapshotError> {
    let mut data = Vec::new();
    File::open(snapshot)?.read_to_end(&mut data)?;
    if data.len() < 32 || data.len() as u64 % PAD_TO != 32 {
        return Err(SnapshotError::Format("size is not a multiple of 512 plus a 32-byte checksum"));
    }
    let (body, digest) = data.split_at(data.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(SnapshotError::Checksum);
    }
    let mut rest = body.strip_prefix(MAGIC.as_slice()).ok_or(SnapshotError::Format("bad magic"))?;
    let format = take(&mut rest, 4)?;
    if format != FORMAT.to_be_bytes() {
        return Err(SnapshotError::Format("unknown format version"));
    }
    let mut records = 0u64;
    let mut batch = rocksdb::WriteBatch::default();
    loop {
        let index = take(&mut rest, 1)?[0];
        if index == END {
            break;
        }
        let name = KEYSPACES.get(index as usize).ok_or(SnapshotError::Format("unknown keyspace"))?;
        let key = take_bytes(&mut rest)?;
        let value = take_bytes(&mut rest)?;
        batch.put_cf(engine.cf(name), key, value);
        records += 1;
        if batch.len() >= 10_000 {
            engine.db().write(std::mem::take(&mut batch))?;
        }
    }
    engine.db().write(batch)?;
    engine.db().flush_wal(true)?;
    Ok(records)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], SnapshotError> {
    if rest.len() < n {
        return Err(SnapshotError::Format("truncated"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], SnapshotError> {
    let length = take(rest, 4)?;
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    take(rest, length)
}
