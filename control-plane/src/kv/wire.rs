//! etcd's protobuf messages ↔ the plain types of [`super`].
//!
//! Both implementations end up holding the same messages: the embedded store answers with them
//! in process, etcd-client hands them over from gRPC. Translating them here, once, keeps the two
//! implementations from drifting apart. Anything a server could send that does not fit (an
//! unknown event type, a txn answer without an outcome) is an error, never a panic.

use etcd_client::proto::{
    PbCompare, PbCompareTarget, PbDeleteRequest, PbEvent, PbKeyValue, PbPutRequest, PbRangeRequest, PbRangeResponse,
    PbResponseHeader, PbResponseOp, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp,
    PbTxnResponse, PbWatchResponse,
};

use super::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyValue, KvError, OpResult, Range, RangeResult, Txn, TxnOp,
    TxnResult, WatchBatch,
};

/// etcd's `Compare.result` values (the proto enum is not exported by etcd-client).
const RESULT_EQUAL: i32 = 0;
const RESULT_GREATER: i32 = 1;
const RESULT_LESS: i32 = 2;
const RESULT_NOT_EQUAL: i32 = 3;
/// etcd's `Event.type` values.
const EVENT_PUT: i32 = 0;
const EVENT_DELETE: i32 = 1;

pub fn key_value(kv: PbKeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// The store revision a header reports (0 if the server sent none).
pub fn revision(header: &Option<PbResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

pub fn range_request(range: &Range) -> PbRangeRequest {
    PbRangeRequest {
        key: range.key.clone(),
        range_end: range.range_end.clone().unwrap_or_default(),
        limit: range.limit,
        revision: range.revision,
        count_only: range.count_only,
        serializable: range.serializable,
        ..PbRangeRequest::default()
    }
}

pub fn range_result(response: PbRangeResponse) -> RangeResult {
    RangeResult {
        revision: revision(&response.header),
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

/// A put that always asks for the previous value (the API server needs it for watches and
/// conflict answers).
pub fn put_request(key: Vec<u8>, value: Vec<u8>, lease: i64) -> PbPutRequest {
    PbPutRequest { key, value, lease, prev_kv: true, ..PbPutRequest::default() }
}

/// A delete that always asks for the deleted values.
pub fn delete_request(key: Vec<u8>, range_end: Option<Vec<u8>>) -> PbDeleteRequest {
    PbDeleteRequest { key, range_end: range_end.unwrap_or_default(), prev_kv: true }
}

pub fn txn_request(txn: &Txn) -> PbTxnRequest {
    PbTxnRequest {
        compare: txn.compare.iter().map(compare).collect(),
        success: txn.success.iter().map(txn_op).collect(),
        failure: txn.failure.iter().map(txn_op).collect(),
    }
}

fn compare(compare: &Compare) -> PbCompare {
    let (target, target_union) = match &compare.target {
        CompareTarget::Version(v) => (PbCompareTarget::Version, PbTargetUnion::Version(*v)),
        CompareTarget::CreateRevision(r) => (PbCompareTarget::Create, PbTargetUnion::CreateRevision(*r)),
        CompareTarget::ModRevision(r) => (PbCompareTarget::Mod, PbTargetUnion::ModRevision(*r)),
        CompareTarget::Value(v) => (PbCompareTarget::Value, PbTargetUnion::Value(v.clone())),
    };
    PbCompare {
        result: compare_result(compare.op),
        target: target as i32,
        key: compare.key.clone(),
        target_union: Some(target_union),
        range_end: Vec::new(),
    }
}

pub fn compare_result(op: CompareOp) -> i32 {
    match op {
        CompareOp::Equal => RESULT_EQUAL,
        CompareOp::Greater => RESULT_GREATER,
        CompareOp::Less => RESULT_LESS,
        CompareOp::NotEqual => RESULT_NOT_EQUAL,
    }
}

fn txn_op(op: &TxnOp) -> PbTxnRequestOp {
    let request = match op {
        TxnOp::Put { key, value, lease } => PbTxnOpRequest::RequestPut(put_request(key.clone(), value.clone(), *lease)),
        TxnOp::Delete { key, range_end } => {
            PbTxnOpRequest::RequestDeleteRange(delete_request(key.clone(), range_end.clone()))
        }
        TxnOp::Get(range) => PbTxnOpRequest::RequestRange(range_request(range)),
    };
    PbTxnRequestOp { request: Some(request) }
}

pub fn txn_result(response: PbTxnResponse) -> Result<TxnResult, KvError> {
    let results = response.responses.into_iter().map(op_result).collect::<Result<Vec<_>, _>>()?;
    Ok(TxnResult { succeeded: response.succeeded, revision: revision(&response.header), results })
}

fn op_result(op: PbResponseOp) -> Result<OpResult, KvError> {
    match op.response {
        Some(PbTxnOpResponse::ResponsePut(put)) => Ok(OpResult::Put { prev: put.prev_kv.map(key_value) }),
        Some(PbTxnOpResponse::ResponseDeleteRange(delete)) => {
            Ok(OpResult::Delete { deleted: delete.deleted, prev: delete.prev_kvs.into_iter().map(key_value).collect() })
        }
        Some(PbTxnOpResponse::ResponseRange(range)) => Ok(OpResult::Get(range_result(range))),
        Some(PbTxnOpResponse::ResponseTxn(_)) => Err(KvError::Other("txn answered a nested txn nobody sent".into())),
        None => Err(KvError::Other("txn response op without an outcome".into())),
    }
}

/// One watch response, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is registered: every later change in its range will be delivered.
    Created,
    /// Events, or (empty) a progress notification.
    Batch(WatchBatch),
    /// The server ended the watch: compacted away (`compact_revision` ≠ 0) or for `reason`.
    Canceled { compact_revision: i64, reason: String },
}

pub fn watch_message(response: PbWatchResponse) -> Result<WatchMessage, KvError> {
    if response.canceled {
        return Ok(WatchMessage::Canceled {
            compact_revision: response.compact_revision,
            reason: response.cancel_reason,
        });
    }
    if response.created {
        return Ok(WatchMessage::Created);
    }
    let events = response.events.into_iter().map(event).collect::<Result<Vec<_>, _>>()?;
    Ok(WatchMessage::Batch(WatchBatch { revision: revision(&response.header), events }))
}

fn event(event: PbEvent) -> Result<Event, KvError> {
    let kind = match event.r#type {
        EVENT_PUT => EventKind::Put,
        EVENT_DELETE => EventKind::Delete,
        other => return Err(KvError::Other(format!("watch event of unknown type {other}"))),
    };
    let kv = event.kv.ok_or_else(|| KvError::Other("watch event without a key".into()))?;
    Ok(Event { kind, kv: key_value(kv), prev: event.prev_kv.map(key_value) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb_kv(key: &str, mod_revision: i64) -> PbKeyValue {
        PbKeyValue { key: key.into(), value: b"v".to_vec(), mod_revision, ..PbKeyValue::default() }
    }

    #[test]
    fn watch_messages_are_classified_cancel_first() {
        let created_and_canceled = PbWatchResponse {
            created: true,
            canceled: true,
            cancel_reason: "mvcc: watcher range is empty".into(),
            ..PbWatchResponse::default()
        };
        assert_eq!(
            watch_message(created_and_canceled),
            Ok(WatchMessage::Canceled { compact_revision: 0, reason: "mvcc: watcher range is empty".into() })
        );
        let created = PbWatchResponse { created: true, ..PbWatchResponse::default() };
        assert_eq!(watch_message(created), Ok(WatchMessage::Created));
        let progress = PbWatchResponse {
            header: Some(PbResponseHeader { revision: 7, ..PbResponseHeader::default() }),
            ..PbWatchResponse::default()
        };
        assert_eq!(watch_message(progress), Ok(WatchMessage::Batch(WatchBatch { revision: 7, events: vec![] })));
    }

    #[test]
    fn events_keep_kind_and_previous_value() {
        let response = PbWatchResponse {
            header: Some(PbResponseHeader { revision: 5, ..PbResponseHeader::default() }),
            events: vec![PbEvent { r#type: EVENT_DELETE, kv: Some(pb_kv("a", 5)), prev_kv: Some(pb_kv("a", 4)) }],
            ..PbWatchResponse::default()
        };
        let Ok(WatchMessage::Batch(batch)) = watch_message(response) else { panic!("not a batch") };
        assert_eq!(batch.revision, 5);
        assert_eq!(batch.events[0].kind, EventKind::Delete);
        assert_eq!(batch.events[0].prev.as_ref().map(|p| p.mod_revision), Some(4));
    }

    #[test]
    fn malformed_answers_are_errors() {
        let unknown = PbWatchResponse {
            events: vec![PbEvent { r#type: 9, kv: Some(pb_kv("a", 1)), prev_kv: None }],
            ..PbWatchResponse::default()
        };
        assert!(matches!(watch_message(unknown), Err(KvError::Other(_))));
        let empty_op = PbTxnResponse { responses: vec![PbResponseOp { response: None }], ..PbTxnResponse::default() };
        assert!(matches!(txn_result(empty_op), Err(KvError::Other(_))));
    }

    #[test]
    fn txn_requests_ask_for_previous_values() {
        let txn = Txn {
            compare: vec![Compare::mod_revision(b"k", 0)],
            success: vec![TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec(), lease: 0 }],
            failure: vec![TxnOp::Get(Range::key(b"k"))],
        };
        let request = txn_request(&txn);
        assert_eq!(request.compare[0].target, PbCompareTarget::Mod as i32);
        assert_eq!(request.compare[0].target_union, Some(PbTargetUnion::ModRevision(0)));
        let Some(PbTxnOpRequest::RequestPut(put)) = &request.success[0].request else { panic!("not a put") };
        assert!(put.prev_kv);
    }
}
