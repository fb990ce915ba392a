//! The changes of one write request: everything it does lands at one main revision.
//!
//! A `WriteTxn` reads the store at the revision before it plus its own changes so far (etcd's
//! write txns see their own writes), collects the RocksDB writes in one `WriteBatch` (applied
//! atomically by the applier) and the watch events of the revision.

use etcd_client::proto::PbRangeRequest as RangeRequest;
use rocksdb::WriteBatch;

use super::codec::{self, TAG_PUT, TAG_TOMBSTONE};
use super::engine::{CF_KV, CF_LEASE_KEYS, CF_REV, Engine};
use super::latest::LatestVersions;
use super::range::{self, Overlay, RangeOutcome};
use super::{ChangeSet, EVENT_DELETE, EVENT_PUT, Event, KeyValue, Revision};
use crate::error::Result;

pub struct WriteTxn<'e> {
    engine: &'e Engine,
    /// The store revision before this request; the request's changes get `base + 1`.
    base: i64,
    batch: WriteBatch,
    overlay: Overlay,
    events: Vec<Event>,
    /// Keys' newest versions known without reading RocksDB (the applier's).
    latest: Option<&'e LatestVersions>,
}

impl<'e> WriteTxn<'e> {
    pub fn new(engine: &'e Engine, base: i64) -> WriteTxn<'e> {
        WriteTxn::appending(engine, base, WriteBatch::default())
    }

    /// A txn whose writes follow those already in `batch` (earlier requests' writes, not yet in
    /// the store: the caller makes sure this request reads none of the keys they touch).
    pub fn appending(engine: &'e Engine, base: i64, batch: WriteBatch) -> WriteTxn<'e> {
        WriteTxn { engine, base, batch, overlay: Overlay::new(), events: Vec::new(), latest: None }
    }

    /// Reads keys' versions from `latest` where it knows them: it must hold the store's state
    /// at `base`.
    pub fn with_latest(mut self, latest: &'e LatestVersions) -> WriteTxn<'e> {
        self.latest = Some(latest);
        self
    }

    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// The revision before this request.
    pub fn base(&self) -> i64 {
        self.base
    }

    pub fn changed(&self) -> bool {
        !self.events.is_empty()
    }

    /// The revision reads inside this request see: etcd's `beginRev (+1 once it changed something)`.
    pub fn read_revision(&self) -> i64 {
        self.base + i64::from(self.changed())
    }

    /// The live version of `key` as this request sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        if let Some(change) = self.overlay.get(key) {
            return Ok(change.clone());
        }
        match self.latest.and_then(|latest| latest.get(key)) {
            Some(known) => Ok(known.clone()),
            None => self.engine.get_at(key, self.base),
        }
    }

    /// A range as this request sees it. `request.revision` 0 reads the request's own view;
    /// another revision reads history (checked by the caller).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeOutcome> {
        if request.revision > 0 && request.revision <= self.base {
            return range::evaluate(self.engine, request, request.revision, None);
        }
        range::evaluate(self.engine, request, self.base, Some(&self.overlay))
    }

    /// Writes `key = value` with `lease`; returns the previous live version.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<Option<KeyValue>> {
        let previous = self.get(key)?;
        let revision = self.next_revision();
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: previous.as_ref().map_or(revision.main, |p| p.create_revision),
            mod_revision: revision.main,
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        self.batch.put_cf(self.engine.cf(CF_KV), codec::version_key(key, revision), codec::encode_record(TAG_PUT, &kv));
        self.batch.put_cf(self.engine.cf(CF_REV), codec::revision_key(revision), codec::encode_change(TAG_PUT, key));
        let old_lease = previous.as_ref().map_or(0, |p| p.lease);
        if old_lease != lease {
            if old_lease != 0 {
                self.batch.delete_cf(self.engine.cf(CF_LEASE_KEYS), lease_key(old_lease, key));
            }
            if lease != 0 {
                self.batch.put_cf(self.engine.cf(CF_LEASE_KEYS), lease_key(lease, key), []);
            }
        }
        self.overlay.insert(key.to_vec(), Some(kv.clone()));
        self.events.push(Event { r#type: EVENT_PUT, kv: Some(kv), prev_kv: previous.clone() });
        Ok(previous)
    }

    /// Deletes every live key in `[key, range_end)`; returns the deleted versions in key order.
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        let request = RangeRequest { key: key.to_vec(), range_end: range_end.to_vec(), ..Default::default() };
        let doomed = range::evaluate(self.engine, &request, self.base, Some(&self.overlay))?.kvs;
        for previous in &doomed {
            let revision = self.next_revision();
            let tombstone = KeyValue { key: previous.key.clone(), mod_revision: revision.main, ..Default::default() };
            self.batch.put_cf(
                self.engine.cf(CF_KV),
                codec::version_key(&previous.key, revision),
                codec::encode_record(TAG_TOMBSTONE, &tombstone),
            );
            self.batch.put_cf(
                self.engine.cf(CF_REV),
                codec::revision_key(revision),
                codec::encode_change(TAG_TOMBSTONE, &previous.key),
            );
            if previous.lease != 0 {
                self.batch.delete_cf(self.engine.cf(CF_LEASE_KEYS), lease_key(previous.lease, &previous.key));
            }
            self.overlay.insert(previous.key.clone(), None);
            self.events.push(Event { r#type: EVENT_DELETE, kv: Some(tombstone), prev_kv: Some(previous.clone()) });
        }
        Ok(doomed)
    }

    /// Raw access for bookkeeping that rides in the same atomic batch (leases, meta).
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// The batch to write, and the revision's events if it changed anything.
    pub fn finish(self) -> (WriteBatch, Option<ChangeSet>) {
        let changes = (!self.events.is_empty()).then(|| ChangeSet { revision: self.base + 1, events: self.events });
        (self.batch, changes)
    }

    fn next_revision(&self) -> Revision {
        Revision { main: self.base + 1, sub: self.events.len() as i64 }
    }
}

/// `lease_keys` key: lease ID (8 bytes BE) ++ user key.
pub fn lease_key(lease: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&lease.to_be_bytes());
    out.extend_from_slice(key);
    out
}
