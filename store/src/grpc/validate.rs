//! etcd's request checks, run before a request is proposed or read (etcd 3.4's
//! `checkRangeRequest`, `checkPutRequest`, `checkDeleteRequest`, `checkTxnRequest` and
//! `checkIntervals`), in etcd's order, so the first error reported is etcd's.

use std::collections::HashSet;

use etcd_client::proto::{
    PbDeleteRequest as DeleteRangeRequest, PbPutRequest as PutRequest, PbRangeRequest as RangeRequest,
    PbTxnOpRequest as OpRequest, PbTxnRequest as TxnRequest, PbTxnRequestOp as RequestOp,
};

use crate::error::{Result, StoreError};
use crate::mvcc::range::{SORT_DESCEND, TARGET_VALUE};

pub fn range(request: &RangeRequest) -> Result<()> {
    if request.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if !(0..=SORT_DESCEND).contains(&request.sort_order) || !(0..=TARGET_VALUE).contains(&request.sort_target) {
        return Err(StoreError::InvalidSortOption);
    }
    Ok(())
}

pub fn put(request: &PutRequest) -> Result<()> {
    if request.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(StoreError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(StoreError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(request: &DeleteRangeRequest) -> Result<()> {
    if request.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

/// The whole txn check: sizes, keys, every op, then no key written twice per branch.
pub fn txn(request: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    txn_shape(request, max_txn_ops)?;
    intervals(&request.success)?;
    intervals(&request.failure)?;
    Ok(())
}

fn txn_shape(request: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    let ops = request.compare.len().max(request.success.len()).max(request.failure.len());
    if ops > max_txn_ops {
        return Err(StoreError::TooManyOps);
    }
    if request.compare.iter().any(|c| c.key.is_empty()) {
        return Err(StoreError::EmptyKey);
    }
    for op in request.success.iter().chain(&request.failure) {
        request_op(op, max_txn_ops)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_txn_ops: usize) -> Result<()> {
    match &op.request {
        Some(OpRequest::RequestRange(r)) => range(r),
        Some(OpRequest::RequestPut(p)) => put(p),
        Some(OpRequest::RequestDeleteRange(d)) => delete_range(d),
        Some(OpRequest::RequestTxn(t)) => txn_shape(t, max_txn_ops),
        None => Err(StoreError::KeyNotFound),
    }
}

/// A half-open key interval `[start, end)`; `end` None = unbounded, a single key is
/// `[k, k\0)`.
#[derive(Clone, Debug)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = match range_end {
            [] => {
                let mut end = key.to_vec();
                end.push(0);
                Some(end)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        Interval { start: key.to_vec(), end }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_ref().is_none_or(|end| key < end.as_slice())
    }
}

fn deletes_contain(deletes: &[Interval], key: &[u8]) -> bool {
    deletes.iter().any(|interval| interval.contains(key))
}

/// Returns the keys put and the ranges deleted by `ops` (one branch), or `DuplicateKey` if a
/// key is put twice or put inside a deleted range. The two branches of a nested txn may put the
/// same key (only one of them runs).
fn intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>)> {
    let mut deletes: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(OpRequest::RequestDeleteRange(d)) => Some(Interval::of(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(OpRequest::RequestTxn(nested)) = &op.request else { continue };
        let (puts_then, deletes_then) = intervals(&nested.success)?;
        let (puts_else, deletes_else) = intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deletes_contain(&deletes, key) {
                return Err(StoreError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &puts_else {
            if (puts.contains(key) && !puts_then.contains(key)) || deletes_contain(&deletes, key) {
                return Err(StoreError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let Some(OpRequest::RequestPut(put)) = &op.request else { continue };
        if puts.contains(&put.key) || deletes_contain(&deletes, &put.key) {
            return Err(StoreError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(key: &str) -> RequestOp {
        RequestOp { request: Some(OpRequest::RequestPut(PutRequest { key: key.into(), ..Default::default() })) }
    }

    fn delete_op(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(OpRequest::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(OpRequest::RequestTxn(TxnRequest { success, failure, ..Default::default() })) }
    }

    fn check(success: Vec<RequestOp>) -> Result<()> {
        txn(&TxnRequest { success, ..Default::default() }, 128)
    }

    #[test]
    fn duplicate_keys_in_one_branch() {
        assert!(matches!(check(vec![put_op("a"), put_op("a")]), Err(StoreError::DuplicateKey)));
        assert!(matches!(check(vec![delete_op("a", "c"), put_op("b")]), Err(StoreError::DuplicateKey)));
        assert!(matches!(check(vec![delete_op("a", "\0"), put_op("zz")]), Err(StoreError::DuplicateKey)));
        assert!(check(vec![delete_op("a", ""), put_op("ab")]).is_ok());
        assert!(check(vec![put_op("a"), put_op("b")]).is_ok());
    }

    #[test]
    fn nested_branches_may_share_a_key_but_not_with_the_parent() {
        assert!(check(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]).is_ok());
        assert!(matches!(check(vec![txn_op(vec![put_op("a")], vec![]), put_op("a")]), Err(StoreError::DuplicateKey)));
        assert!(matches!(
            check(vec![delete_op("a", "b"), txn_op(vec![put_op("a")], vec![])]),
            Err(StoreError::DuplicateKey)
        ));
    }

    #[test]
    fn limits_and_empty_ops() {
        let many: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert!(matches!(check(many), Err(StoreError::TooManyOps)));
        assert!(matches!(check(vec![RequestOp { request: None }]), Err(StoreError::KeyNotFound)));
        assert!(matches!(check(vec![put_op("")]), Err(StoreError::EmptyKey)));
    }
}
