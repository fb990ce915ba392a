//! Byte layouts of the MVCC keyspaces in RocksDB.
//!
//! * `kv` column family: one entry per key version.
//!   RocksDB key = `escape(user key) ++ [0x00, 0x01] ++ !main (8 bytes BE) ++ !sub (8 bytes BE)`.
//!   The escaping keeps user-key order for arbitrary bytes (0x00 becomes 0x00 0xFF, the key ends
//!   with 0x00 0x01), and the inverted revision puts the newest version of a key first, so
//!   "the version of K visible at revision R" is one seek.
//!   Value = one tag byte (PUT or TOMBSTONE) ++ the protobuf `KeyValue` without its key.
//! * `rev` column family: one entry per change, in revision order, for watch history and
//!   compaction. RocksDB key = `main (8 bytes BE) ++ sub (8 bytes BE)`; value = tag ++ user key.

use prost::Message;

use super::{KeyValue, Revision};

/// The record is a live version of the key.
pub const TAG_PUT: u8 = 0;
/// The record marks the key deleted at this revision.
pub const TAG_TOMBSTONE: u8 = 1;

const TERMINATOR: [u8; 2] = [0x00, 0x01];
/// Sorts after every version of a key and before any longer key with the same prefix.
const AFTER_VERSIONS: [u8; 2] = [0x00, 0x02];
const REVISION_BYTES: usize = 16;

/// A stored record was not in the layout this module writes: the data directory is damaged.
#[derive(Debug, thiserror::Error)]
#[error("corrupt record in the {space} keyspace: {what}")]
pub struct CorruptRecord {
    pub space: &'static str,
    pub what: &'static str,
}

/// Appends the order-preserving escape of `key` to `out`.
pub fn escape_into(key: &[u8], out: &mut Vec<u8>) {
    for &byte in key {
        out.push(byte);
        if byte == 0 {
            out.push(0xFF);
        }
    }
}

pub fn escape(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 4);
    escape_into(key, &mut out);
    out
}

/// Inverse of [`escape`].
pub fn unescape(escaped: &[u8]) -> Result<Vec<u8>, CorruptRecord> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&byte) = bytes.next() {
        out.push(byte);
        if byte == 0 && bytes.next() != Some(&0xFF) {
            return Err(CorruptRecord { space: "kv", what: "bad key escape" });
        }
    }
    Ok(out)
}

/// The `kv` key of `key` at `revision`.
pub fn version_key(key: &[u8], revision: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + REVISION_BYTES + 4);
    escape_into(key, &mut out);
    out.extend_from_slice(&TERMINATOR);
    out.extend_from_slice(&(!(revision.main as u64)).to_be_bytes());
    out.extend_from_slice(&(!(revision.sub as u64)).to_be_bytes());
    out
}

/// The `kv` key to seek to for the newest version of `key` at or below `revision`.
pub fn newest_at_key(key: &[u8], revision: i64) -> Vec<u8> {
    version_key(key, Revision { main: revision, sub: i64::MAX })
}

/// The escaped user key part of a well-formed `kv` key (one this module built).
pub fn escaped_part(version_key: &[u8]) -> &[u8] {
    &version_key[..version_key.len().saturating_sub(REVISION_BYTES + 2)]
}

/// The first `kv` key at or after every version of keys >= `key`.
pub fn seek_key(key: &[u8]) -> Vec<u8> {
    escape(key)
}

/// The first `kv` key after every version of `escaped_key`.
pub fn skip_versions_key(escaped_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped_key.len() + 2);
    out.extend_from_slice(escaped_key);
    out.extend_from_slice(&AFTER_VERSIONS);
    out
}

/// Splits a `kv` key into the escaped user key and the revision.
pub fn split_version_key(raw: &[u8]) -> Result<(&[u8], Revision), CorruptRecord> {
    let bad = CorruptRecord { space: "kv", what: "short or unterminated version key" };
    if raw.len() < REVISION_BYTES + 2 {
        return Err(bad);
    }
    let (head, rev) = raw.split_at(raw.len() - REVISION_BYTES);
    let (escaped, terminator) = head.split_at(head.len() - 2);
    if terminator != TERMINATOR {
        return Err(bad);
    }
    let main = !u64::from_be_bytes(rev[..8].try_into().map_err(|_| bad_len())?);
    let sub = !u64::from_be_bytes(rev[8..].try_into().map_err(|_| bad_len())?);
    Ok((escaped, Revision { main: main as i64, sub: sub as i64 }))
}

fn bad_len() -> CorruptRecord {
    CorruptRecord { space: "kv", what: "revision is not 16 bytes" }
}

/// The `rev` key of a revision.
pub fn revision_key(revision: Revision) -> [u8; REVISION_BYTES] {
    let mut out = [0u8; REVISION_BYTES];
    out[..8].copy_from_slice(&(revision.main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(revision.sub as u64).to_be_bytes());
    out
}

pub fn parse_revision_key(raw: &[u8]) -> Result<Revision, CorruptRecord> {
    let bad = CorruptRecord { space: "rev", what: "revision key is not 16 bytes" };
    if raw.len() != REVISION_BYTES {
        return Err(bad);
    }
    let main = u64::from_be_bytes(raw[..8].try_into().map_err(|_| bad.clone())?);
    let sub = u64::from_be_bytes(raw[8..].try_into().map_err(|_| bad)?);
    Ok(Revision { main: main as i64, sub: sub as i64 })
}

impl Clone for CorruptRecord {
    fn clone(&self) -> Self {
        CorruptRecord { space: self.space, what: self.what }
    }
}

/// Encodes a version record: tag, then the KeyValue without its key (the key is in the
/// RocksDB key already).
pub fn encode_record(tag: u8, kv: &KeyValue) -> Vec<u8> {
    let keyless = KeyValue {
        key: Vec::new(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: Vec::new(),
        lease: kv.lease,
    };
    // Encode the fixed fields through prost, then append the value as field 5 by hand so the
    // (possibly large) value is copied once.
    let mut out = Vec::with_capacity(1 + keyless.encoded_len() + kv.value.len() + 8);
    out.push(tag);
    keyless.encode_raw(&mut out);
    if !kv.value.is_empty() {
        prost::encoding::bytes::encode(5, &kv.value, &mut out);
    }
    out
}

/// Decodes a version record into (tag, KeyValue with `key` filled in).
pub fn decode_record(raw: &[u8], key: Vec<u8>) -> Result<(u8, KeyValue), CorruptRecord> {
    let (&tag, body) = raw.split_first().ok_or(CorruptRecord { space: "kv", what: "empty record" })?;
    if tag != TAG_PUT && tag != TAG_TOMBSTONE {
        return Err(CorruptRecord { space: "kv", what: "unknown record tag" });
    }
    let mut kv = KeyValue::decode(body).map_err(|_| CorruptRecord { space: "kv", what: "bad KeyValue" })?;
    kv.key = key;
    Ok((tag, kv))
}

/// Encodes a `rev` entry: tag ++ user key.
pub fn encode_change(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(tag);
    out.extend_from_slice(key);
    out
}

pub fn decode_change(raw: &[u8]) -> Result<(u8, &[u8]), CorruptRecord> {
    match raw.split_first() {
        Some((&tag, key)) if tag == TAG_PUT || tag == TAG_TOMBSTONE => Ok((tag, key)),
        _ => Err(CorruptRecord { space: "rev", what: "bad change entry" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    #[test]
    fn escaping_round_trips_and_preserves_order() {
        let keys: Vec<&[u8]> =
            vec![b"", b"\x00", b"\x00\x00", b"\x00\x01", b"a", b"a\x00", b"a\x00b", b"a\x01", b"ab", b"b", b"\xff"];
        for window in keys.windows(2) {
            assert!(escape(window[0]) < escape(window[1]), "{:?} < {:?}", window[0], window[1]);
            assert!(version_key(window[0], rev(1, 0)) < version_key(window[1], rev(9, 9)));
        }
        for key in keys {
            assert_eq!(unescape(&escape(key)).unwrap(), key);
        }
    }

    #[test]
    fn newest_version_sorts_first_and_skip_passes_all_versions() {
        assert!(version_key(b"a", rev(5, 1)) < version_key(b"a", rev(5, 0)));
        assert!(version_key(b"a", rev(5, 0)) < version_key(b"a", rev(4, 7)));
        let skip = skip_versions_key(&escape(b"a"));
        assert!(version_key(b"a", rev(0, 0)) < skip);
        assert!(skip < version_key(b"a\x00", rev(i64::MAX, i64::MAX)));
        assert!(skip < seek_key(b"a\x00"));
    }

    #[test]
    fn version_key_splits_back() {
        let raw = version_key(b"k\x00ey", rev(42, 3));
        let (escaped, revision) = split_version_key(&raw).unwrap();
        assert_eq!(unescape(escaped).unwrap(), b"k\x00ey");
        assert_eq!(revision, rev(42, 3));
        assert!(split_version_key(b"short").is_err());
    }

    #[test]
    fn records_round_trip() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            value: b"v".to_vec(),
            lease: 7,
        };
        let raw = encode_record(TAG_PUT, &kv);
        let (tag, back) = decode_record(&raw, b"k".to_vec()).unwrap();
        assert_eq!(tag, TAG_PUT);
        assert_eq!(back, kv);
        assert!(decode_record(&[9], vec![]).is_err());
        assert_eq!(parse_revision_key(&revision_key(rev(7, 2))).unwrap(), rev(7, 2));
    }
}
