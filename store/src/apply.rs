//! The state machine: applies one write request to the MVCC engine and the lease table.
//!
//! Architecture invariant: `apply` is deterministic. Given the same store and the same request
//! it makes the same changes and the same response: no clocks, no randomness (lease IDs are
//! chosen before a grant is proposed; lease expiry arrives as an explicit revoke). That is what
//! lets Raft replay the same requests on every member.
//!
//! Txns follow etcd 3.4's order exactly: the compare path of the txn and of every nested txn
//! is decided first against the store as it was, then the chosen puts and ranges are checked
//! (unknown lease, ignore_value on a missing key, compacted/future revision), and only then are
//! the operations run. A failed check changes nothing.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use etcd_client::proto::{
    PbCompare as Compare, PbDeleteRequest as DeleteRangeRequest, PbDeleteResponse as DeleteRangeResponse,
    PbPutRequest as PutRequest, PbPutResponse as PutResponse, PbRangeRequest as RangeRequest,
    PbRangeResponse as RangeResponse, PbResponseHeader as ResponseHeader, PbResponseOp as ResponseOp,
    PbTargetUnion as TargetUnion, PbTxnOpRequest as OpRequest, PbTxnOpResponse as OpResponse,
    PbTxnRequest as TxnRequest, PbTxnResponse as TxnResponse,
};
use rocksdb::{WriteBatch, WriteOptions};

use crate::error::{Result, StoreError};
use crate::lease::Lessor;
use crate::mvcc::engine::{CF_LEASE, CF_LEASE_KEYS, CF_META, META_COMPACT_REVISION, META_SCHEDULED_COMPACT};
use crate::mvcc::latest::LatestVersions;
use crate::mvcc::range::{self, RangeOutcome};
use crate::mvcc::write::WriteTxn;
use crate::mvcc::{ChangeSet, Engine, KeyValue};

/// A write request, as it will travel through the Raft log.
#[derive(Clone, Debug, PartialEq)]
pub enum Proposal {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact { revision: i64 },
    LeaseGrant { id: i64, ttl_seconds: i64 },
    LeaseRevoke { id: i64 },
}

/// The outcome of an applied request. Headers carry only the revision; the server fills in
/// cluster, member and term.
#[derive(Clone, Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact { revision: i64 },
    LeaseGrant { id: i64, ttl_seconds: i64, revision: i64 },
    LeaseRevoke { revision: i64 },
}

/// What applying one request produced besides its response.
#[derive(Default)]
pub struct SideEffects {
    /// The revision's watch events, if it changed keys.
    pub changes: Option<ChangeSet>,
    /// A compaction whose physical part should start now.
    pub compact_to: Option<i64>,
}

pub struct Applier {
    engine: Arc<Engine>,
    lessor: Arc<Lessor>,
    /// Revision after the last applied request (may be ahead of the committed revision until
    /// the writer syncs).
    revision: i64,
    /// Write batches handed to RocksDB so far: the writer syncs the WAL only if this moved.
    batches_written: u64,
    write_options: WriteOptions,
    /// Recently written keys' newest versions, as of `revision`: most puts read their key's
    /// previous version from here instead of RocksDB.
    latest: LatestVersions,
}

/// Puts applied but not yet written. Consecutive puts of different keys share one RocksDB
/// write: a log entry carries many requests, and a write per request cost more than the
/// requests themselves. A put reads only its own key, so it may join as long as no earlier put
/// in the run wrote that key; anything else is applied after the run is written.
#[derive(Default)]
pub struct PutRun {
    batch: WriteBatch,
    /// Hashes of the keys written (a collision only ends a run early).
    keys: HashSet<u64>,
    hasher: RandomState,
}

impl PutRun {
    /// Whether `proposal` may be applied into this run.
    pub fn accepts(&self, proposal: &Proposal) -> bool {
        matches!(proposal, Proposal::Put(request) if !self.keys.contains(&self.hasher.hash_one(&request.key)))
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

/// compare.result values.
const RESULT_EQUAL: i32 = 0;
const RESULT_GREATER: i32 = 1;
const RESULT_LESS: i32 = 2;
const RESULT_NOT_EQUAL: i32 = 3;
/// compare.target values.
const TARGET_VERSION: i32 = 0;
const TARGET_CREATE: i32 = 1;
const TARGET_MOD: i32 = 2;
const TARGET_VALUE: i32 = 3;
const TARGET_LEASE: i32 = 4;

impl Applier {
    pub fn new(engine: Arc<Engine>, lessor: Arc<Lessor>) -> Applier {
        let revision = engine.committed_revision();
        // Durability comes from the writer's group sync (and later from the Raft log), not
        // from each request's write.
        let mut write_options = WriteOptions::default();
        write_options.set_sync(false);
        Applier { engine, lessor, revision, batches_written: 0, write_options, latest: LatestVersions::default() }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn batches_written(&self) -> u64 {
        self.batches_written
    }

    pub fn apply(&mut self, proposal: &Proposal) -> (Result<Applied>, SideEffects) {
        self.apply_with(proposal, |_| {})
    }

    /// Like `apply`; if the request writes anything, `extra` adds its own records to the same
    /// atomic batch. Raft's state machine records which request was applied last this way, so
    /// after a crash the store and that record always agree.
    pub fn apply_with(
        &mut self,
        proposal: &Proposal,
        extra: impl FnOnce(&mut WriteBatch),
    ) -> (Result<Applied>, SideEffects) {
        let mut effects = SideEffects::default();
        let mut txn = WriteTxn::new(&self.engine, self.revision).with_latest(&self.latest);
        let outcome = match proposal {
            Proposal::Put(request) => put(&mut txn, &self.lessor, request, true).map(Applied::Put),
            Proposal::DeleteRange(request) => delete_range(&mut txn, request).map(Applied::DeleteRange),
            Proposal::Txn(request) => run_txn(&mut txn, &self.lessor, request).map(Applied::Txn),
            Proposal::Compact { revision } => {
                self.compact(&mut txn, *revision).inspect(|_| effects.compact_to = Some(*revision))
            }
            Proposal::LeaseGrant { id, ttl_seconds } => self.grant(&mut txn, *id, *ttl_seconds),
            Proposal::LeaseRevoke { id } => self.revoke(&mut txn, *id),
        };
        let applied = match outcome {
            Ok(applied) => applied,
            Err(error) => return (Err(error), SideEffects::default()),
        };
        let (mut batch, changes) = txn.finish();
        if !batch.is_empty() {
            extra(&mut batch);
            if let Err(error) = self.engine.db().write_opt(batch, &self.write_options) {
                self.latest.clear();
                return (Err(error.into()), SideEffects::default());
            }
            self.batches_written += 1;
        }
        if let Some(changes) = &changes {
            self.latest.record(changes);
            self.revision += 1;
        }
        match proposal {
            Proposal::LeaseGrant { id, .. } => {
                if let Applied::LeaseGrant { ttl_seconds, .. } = &applied {
                    self.lessor.apply_grant(*id, *ttl_seconds);
                }
            }
            Proposal::LeaseRevoke { id } => self.lessor.apply_revoke(*id),
            Proposal::Compact { revision } => self.engine.set_compact_revision(*revision),
            _ => {}
        }
        effects.changes = changes;
        let applied = match applied {
            Applied::LeaseRevoke { .. } => Applied::LeaseRevoke { revision: self.revision },
            other => other,
        };
        (Ok(applied), effects)
    }

    /// Applies a put into `run` instead of writing it; `write_run` writes it. Nothing may read
    /// the store in between except further puts `run` accepts.
    pub fn apply_into(&mut self, request: &PutRequest, run: &mut PutRun) -> (Result<Applied>, SideEffects) {
        let mut txn =
            WriteTxn::appending(&self.engine, self.revision, std::mem::take(&mut run.batch)).with_latest(&self.latest);
        // A put checks everything before it writes: a failed one leaves the batch as it was.
        let outcome = put(&mut txn, &self.lessor, request, true);
        let (batch, changes) = txn.finish();
        run.batch = batch;
        match outcome {
            Ok(response) => {
                run.keys.insert(run.hasher.hash_one(&request.key));
                // Recorded before the run is written: until then only puts of other keys read,
                // and a failed write forgets it all.
                if let Some(changes) = &changes {
                    self.latest.record(changes);
                    self.revision += 1;
                }
                (Ok(Applied::Put(response)), SideEffects { changes, compact_to: None })
            }
            Err(error) => (Err(error), SideEffects::default()),
        }
    }

    /// Writes the puts in `run`, if any, with `extra`'s records in the same atomic batch; the
    /// run is empty afterwards.
    pub fn write_run(&mut self, run: &mut PutRun, extra: impl FnOnce(&mut WriteBatch)) -> Result<()> {
        run.keys.clear();
        if run.batch.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut run.batch);
        extra(&mut batch);
        if let Err(error) = self.engine.db().write_opt(batch, &self.write_options) {
            self.latest.clear();
            return Err(error.into());
        }
        self.batches_written += 1;
        Ok(())
    }

    fn compact(&self, txn: &mut WriteTxn, revision: i64) -> Result<Applied> {
        if revision <= self.engine.compact_revision() {
            return Err(StoreError::Compacted);
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision);
        }
        let meta = self.engine.cf(CF_META);
        txn.batch_mut().put_cf(meta, META_COMPACT_REVISION, revision.to_be_bytes());
        txn.batch_mut().put_cf(meta, META_SCHEDULED_COMPACT, revision.to_be_bytes());
        Ok(Applied::Compact { revision: self.revision })
    }

    fn grant(&self, txn: &mut WriteTxn, id: i64, ttl_seconds: i64) -> Result<Applied> {
        if self.lessor.exists(id) {
            return Err(StoreError::LeaseExists);
        }
        txn.batch_mut().put_cf(self.engine.cf(CF_LEASE), id.to_be_bytes(), ttl_seconds.to_be_bytes());
        Ok(Applied::LeaseGrant { id, ttl_seconds, revision: self.revision })
    }

    fn revoke(&self, txn: &mut WriteTxn, id: i64) -> Result<Applied> {
        if !self.lessor.exists(id) {
            return Err(StoreError::LeaseNotFound);
        }
        for key in attached_keys(&self.engine, id)? {
            txn.delete_range(&key, b"")?;
        }
        txn.batch_mut().delete_cf(self.engine.cf(CF_LEASE), id.to_be_bytes());
        Ok(Applied::LeaseRevoke { revision: 0 })
    }
}

/// Keys attached to lease `id`, in key order.
pub fn attached_keys(engine: &Engine, id: i64) -> Result<Vec<Vec<u8>>> {
    let prefix = id.to_be_bytes();
    let mut keys = Vec::new();
    let mut iter = engine.db().raw_iterator_cf(engine.cf(CF_LEASE_KEYS));
    iter.seek(prefix);
    while let Some(raw) = iter.key() {
        if !raw.starts_with(&prefix) {
            break;
        }
        keys.push(raw[prefix.len()..].to_vec());
        iter.next();
    }
    iter.status()?;
    Ok(keys)
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

fn put(txn: &mut WriteTxn, lessor: &Lessor, request: &PutRequest, check_lease_first: bool) -> Result<PutResponse> {
    if check_lease_first && request.lease != 0 && !lessor.exists(request.lease) {
        return Err(StoreError::LeaseNotFound);
    }
    let needs_previous = request.ignore_value || request.ignore_lease || request.prev_kv;
    let previous = if needs_previous { txn.get(&request.key)? } else { None };
    if (request.ignore_value || request.ignore_lease) && previous.is_none() {
        return Err(StoreError::KeyNotFound);
    }
    let value = match (&previous, request.ignore_value) {
        (Some(p), true) => p.value.clone(),
        _ => request.value.clone(),
    };
    let lease = match (&previous, request.ignore_lease) {
        (Some(p), true) => p.lease,
        _ => request.lease,
    };
    if lease != 0 && !lessor.exists(lease) {
        return Err(StoreError::LeaseNotFound);
    }
    txn.put(&request.key, value, lease)?;
    Ok(PutResponse { header: header(txn.base() + 1), prev_kv: previous.filter(|_| request.prev_kv) })
}

fn delete_range(txn: &mut WriteTxn, request: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
    let deleted = txn.delete_range(&request.key, &request.range_end)?;
    Ok(DeleteRangeResponse {
        header: header(txn.read_revision()),
        deleted: deleted.len() as i64,
        prev_kvs: if request.prev_kv { deleted } else { Vec::new() },
    })
}

/// A Range inside a txn (or a read-only txn): read at the txn's own view.
fn txn_range(txn: &WriteTxn, request: &RangeRequest) -> Result<RangeResponse> {
    let RangeOutcome { kvs, count, more } = txn.range(request)?;
    Ok(RangeResponse { header: header(txn.read_revision()), kvs, more, count })
}

/// Runs a whole txn request (top level) in `txn`.
pub fn run_txn(txn: &mut WriteTxn, lessor: &Lessor, request: &TxnRequest) -> Result<TxnResponse> {
    let mut path = Vec::new();
    compare_path(txn, request, &mut path)?;
    let mut cursor = 0;
    if is_write(request) {
        check_chosen(txn, request, &path, &mut cursor, &mut |txn, op| check_put(txn, lessor, op))?;
    }
    cursor = 0;
    check_chosen(txn, request, &path, &mut cursor, &mut check_range)?;
    cursor = 0;
    let mut response = run_chosen(txn, lessor, request, &path, &mut cursor)?;
    response.header = header(txn.read_revision());
    Ok(response)
}

/// Whether any branch (at any depth) writes.
pub fn is_write(request: &TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).any(|op| match &op.request {
        Some(OpRequest::RequestPut(_)) | Some(OpRequest::RequestDeleteRange(_)) => true,
        Some(OpRequest::RequestTxn(nested)) => is_write(nested),
        _ => false,
    })
}

fn chosen_ops<'r>(request: &'r TxnRequest, succeeded: bool) -> &'r [etcd_client::proto::PbTxnRequestOp] {
    if succeeded { &request.success } else { &request.failure }
}

/// Decides every (nested) txn's branch against the store before any write: the outcome of
/// txn k in depth-first order is `path[k]`.
fn compare_path(txn: &WriteTxn, request: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let mut succeeded = true;
    for compare in &request.compare {
        if !compare_holds(txn, compare)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    for op in chosen_ops(request, succeeded) {
        if let Some(OpRequest::RequestTxn(nested)) = &op.request {
            compare_path(txn, nested, path)?;
        }
    }
    Ok(())
}

fn compare_holds(txn: &WriteTxn, compare: &Compare) -> Result<bool> {
    // One key (what the API server's writes and fences compare) is a point read, which the
    // applier's recent versions answer without RocksDB when they know the key.
    let kvs = if compare.range_end.is_empty() {
        txn.get(&compare.key)?.into_iter().collect()
    } else {
        let request =
            RangeRequest { key: compare.key.clone(), range_end: compare.range_end.clone(), ..Default::default() };
        txn.range(&request)?.kvs
    };
    if kvs.is_empty() {
        return Ok(compare.target != TARGET_VALUE && compare_kv(compare, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(compare, kv)))
}

fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match compare.target {
        TARGET_VALUE => {
            let wanted: &[u8] = match &compare.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(wanted)
        }
        target => {
            let wanted = match (&compare.target_union, target) {
                (Some(TargetUnion::Version(v)), TARGET_VERSION) => *v,
                (Some(TargetUnion::CreateRevision(v)), TARGET_CREATE) => *v,
                (Some(TargetUnion::ModRevision(v)), TARGET_MOD) => *v,
                (Some(TargetUnion::Lease(v)), TARGET_LEASE) => *v,
                _ => 0,
            };
            let actual = match target {
                TARGET_VERSION => kv.version,
                TARGET_CREATE => kv.create_revision,
                TARGET_MOD => kv.mod_revision,
                TARGET_LEASE => kv.lease,
                _ => 0,
            };
            actual.cmp(&wanted)
        }
    };
    match compare.result {
        RESULT_EQUAL => ordering == Ordering::Equal,
        RESULT_NOT_EQUAL => ordering != Ordering::Equal,
        RESULT_GREATER => ordering == Ordering::Greater,
        RESULT_LESS => ordering == Ordering::Less,
        _ => true,
    }
}

type OpCheck<'a> = dyn FnMut(&WriteTxn, &OpRequest) -> Result<()> + 'a;

fn check_chosen(
    txn: &WriteTxn,
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
    check: &mut OpCheck,
) -> Result<()> {
    let succeeded = path.get(*cursor).copied().unwrap_or(false);
    *cursor += 1;
    for op in chosen_ops(request, succeeded) {
        match &op.request {
            Some(OpRequest::RequestTxn(nested)) => check_chosen(txn, nested, path, cursor, check)?,
            Some(inner) => check(txn, inner)?,
            None => {}
        }
    }
    Ok(())
}

fn check_put(txn: &WriteTxn, lessor: &Lessor, op: &OpRequest) -> Result<()> {
    let OpRequest::RequestPut(put) = op else { return Ok(()) };
    if (put.ignore_value || put.ignore_lease) && txn.get(&put.key)?.is_none() {
        return Err(StoreError::KeyNotFound);
    }
    if put.lease != 0 && !lessor.exists(put.lease) {
        return Err(StoreError::LeaseNotFound);
    }
    Ok(())
}

fn check_range(txn: &WriteTxn, op: &OpRequest) -> Result<()> {
    let OpRequest::RequestRange(range) = op else { return Ok(()) };
    if range.revision == 0 {
        return Ok(());
    }
    if range.revision > txn.base() {
        return Err(StoreError::FutureRevision);
    }
    if range.revision < txn.engine().compact_revision() {
        return Err(StoreError::Compacted);
    }
    Ok(())
}

fn run_chosen(
    txn: &mut WriteTxn,
    lessor: &Lessor,
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
) -> Result<TxnResponse> {
    let succeeded = path.get(*cursor).copied().unwrap_or(false);
    *cursor += 1;
    let mut responses = Vec::new();
    for op in chosen_ops(request, succeeded) {
        let response = match &op.request {
            Some(OpRequest::RequestRange(r)) => Some(OpResponse::ResponseRange(txn_range(txn, r)?)),
            Some(OpRequest::RequestPut(p)) => Some(OpResponse::ResponsePut(put(txn, lessor, p, false)?)),
            Some(OpRequest::RequestDeleteRange(d)) => Some(OpResponse::ResponseDeleteRange(delete_range(txn, d)?)),
            Some(OpRequest::RequestTxn(nested)) => {
                let mut inner = run_chosen(txn, lessor, nested, path, cursor)?;
                inner.header = Some(ResponseHeader::default());
                Some(OpResponse::ResponseTxn(inner))
            }
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}

/// A range at the top level (not inside a txn), at `revision` (already checked).
pub fn range_at(engine: &Engine, request: &RangeRequest, revision: i64) -> Result<RangeOutcome> {
    range::evaluate(engine, request, revision, None)
}
