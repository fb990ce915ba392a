//! Byte encodings of write requests and their outcomes, for the Raft log and for requests a
//! follower forwards to the leader. Requests and responses use etcd's own protobuf encoding;
//! the framing around them is `tag (u8) ++ length (u32 BE) ++ body`.

use etcd_client::proto::{
    PbDeleteRequest as DeleteRangeRequest, PbDeleteResponse as DeleteRangeResponse, PbPutRequest as PutRequest,
    PbPutResponse as PutResponse, PbTxnRequest as TxnRequest, PbTxnResponse as TxnResponse,
};
use prost::Message;

use crate::apply::{Applied, Proposal};
use crate::error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("truncated record")]
    Truncated,
    #[error("unknown record tag {0}")]
    UnknownTag(u8),
    #[error("bad protobuf body: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("bad text: {0}")]
    Text(#[from] std::string::FromUtf8Error),
}

const PUT: u8 = 1;
const DELETE_RANGE: u8 = 2;
const TXN: u8 = 3;
const COMPACT: u8 = 4;
const LEASE_GRANT: u8 = 5;
const LEASE_REVOKE: u8 = 6;
/// Outcome tag for a failed request; the body is an error code and text.
const FAILED: u8 = 0xEE;

pub fn encode_proposals(proposals: &[Proposal]) -> Vec<u8> {
    let mut out = Vec::with_capacity(proposals.iter().map(encoded_proposal_len).sum());
    for proposal in proposals {
        encode_proposal(proposal, &mut out);
    }
    out
}

/// The bytes `encode_proposal` appends for `proposal`.
pub fn encoded_proposal_len(proposal: &Proposal) -> usize {
    FRAME_HEADER
        + match proposal {
            Proposal::Put(request) => request.encoded_len(),
            Proposal::DeleteRange(request) => request.encoded_len(),
            Proposal::Txn(request) => request.encoded_len(),
            Proposal::Compact { .. } | Proposal::LeaseRevoke { .. } => 8,
            Proposal::LeaseGrant { .. } => 16,
        }
}

pub fn encode_proposal(proposal: &Proposal, out: &mut Vec<u8>) {
    match proposal {
        Proposal::Put(request) => frame_message(out, PUT, request),
        Proposal::DeleteRange(request) => frame_message(out, DELETE_RANGE, request),
        Proposal::Txn(request) => frame_message(out, TXN, request),
        Proposal::Compact { revision } => frame(out, COMPACT, &revision.to_be_bytes()),
        Proposal::LeaseGrant { id, ttl_seconds } => frame(out, LEASE_GRANT, &ints(&[*id, *ttl_seconds])),
        Proposal::LeaseRevoke { id } => frame(out, LEASE_REVOKE, &id.to_be_bytes()),
    }
}

pub fn decode_proposals(mut bytes: &[u8]) -> Result<Vec<Proposal>, CodecError> {
    let mut proposals = Vec::new();
    while !bytes.is_empty() {
        let (tag, body) = unframe(&mut bytes)?;
        proposals.push(match tag {
            PUT => Proposal::Put(PutRequest::decode(body)?),
            DELETE_RANGE => Proposal::DeleteRange(DeleteRangeRequest::decode(body)?),
            TXN => Proposal::Txn(TxnRequest::decode(body)?),
            COMPACT => Proposal::Compact { revision: int(body, 0)? },
            LEASE_GRANT => Proposal::LeaseGrant { id: int(body, 0)?, ttl_seconds: int(body, 1)? },
            LEASE_REVOKE => Proposal::LeaseRevoke { id: int(body, 0)? },
            other => return Err(CodecError::UnknownTag(other)),
        });
    }
    Ok(proposals)
}

pub fn encode_outcomes(outcomes: &[Result<Applied, StoreError>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(outcomes.len() * 32);
    for outcome in outcomes {
        encode_outcome(outcome, &mut out);
    }
    out
}

pub fn encode_outcome(outcome: &Result<Applied, StoreError>, out: &mut Vec<u8>) {
    match outcome {
        Ok(Applied::Put(response)) => frame_message(out, PUT, response),
        Ok(Applied::DeleteRange(response)) => frame_message(out, DELETE_RANGE, response),
        Ok(Applied::Txn(response)) => frame_message(out, TXN, response),
        Ok(Applied::Compact { revision }) => frame(out, COMPACT, &revision.to_be_bytes()),
        Ok(Applied::LeaseGrant { id, ttl_seconds, revision }) => {
            frame(out, LEASE_GRANT, &ints(&[*id, *ttl_seconds, *revision]))
        }
        Ok(Applied::LeaseRevoke { revision }) => frame(out, LEASE_REVOKE, &revision.to_be_bytes()),
        Err(error) => {
            let (code, text) = error.to_wire();
            let mut body = vec![code];
            body.extend_from_slice(text.as_bytes());
            frame(out, FAILED, &body)
        }
    }
}

pub fn decode_outcomes(mut bytes: &[u8]) -> Result<Vec<Result<Applied, StoreError>>, CodecError> {
    let mut outcomes = Vec::new();
    while !bytes.is_empty() {
        let (tag, body) = unframe(&mut bytes)?;
        outcomes.push(match tag {
            PUT => Ok(Applied::Put(PutResponse::decode(body)?)),
            DELETE_RANGE => Ok(Applied::DeleteRange(DeleteRangeResponse::decode(body)?)),
            TXN => Ok(Applied::Txn(TxnResponse::decode(body)?)),
            COMPACT => Ok(Applied::Compact { revision: int(body, 0)? }),
            LEASE_GRANT => {
                Ok(Applied::LeaseGrant { id: int(body, 0)?, ttl_seconds: int(body, 1)?, revision: int(body, 2)? })
            }
            LEASE_REVOKE => Ok(Applied::LeaseRevoke { revision: int(body, 0)? }),
            FAILED => {
                let (code, text) = body.split_first().ok_or(CodecError::Truncated)?;
                Err(StoreError::from_wire(*code, String::from_utf8(text.to_vec())?))
            }
            other => return Err(CodecError::UnknownTag(other)),
        });
    }
    Ok(outcomes)
}

/// Tag and length before each body.
const FRAME_HEADER: usize = 5;

fn frame(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    // Bodies are bounded by the request size limit, far below 4 GiB.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// `frame` of `message`'s encoding, written in place.
fn frame_message(out: &mut Vec<u8>, tag: u8, message: &impl Message) {
    out.push(tag);
    out.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
    message.encode_raw(out);
}

fn unframe<'a>(bytes: &mut &'a [u8]) -> Result<(u8, &'a [u8]), CodecError> {
    if bytes.len() < FRAME_HEADER {
        return Err(CodecError::Truncated);
    }
    let tag = bytes[0];
    let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    let rest = &bytes[FRAME_HEADER..];
    if rest.len() < length {
        return Err(CodecError::Truncated);
    }
    let (body, tail) = rest.split_at(length);
    *bytes = tail;
    Ok((tag, body))
}

fn ints(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn int(body: &[u8], index: usize) -> Result<i64, CodecError> {
    let start = index * 8;
    let bytes = body.get(start..start + 8).ok_or(CodecError::Truncated)?;
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    Ok(i64::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_round_trip() {
        let proposals = vec![
            Proposal::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 7, ..Default::default() }),
            Proposal::DeleteRange(DeleteRangeRequest { key: b"a".to_vec(), range_end: b"b".to_vec(), prev_kv: true }),
            Proposal::Compact { revision: 42 },
            Proposal::LeaseGrant { id: 9, ttl_seconds: 10 },
            Proposal::LeaseRevoke { id: 9 },
        ];
        let decoded = decode_proposals(&encode_proposals(&proposals)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{proposals:?}"));
    }

    #[test]
    fn outcomes_round_trip_including_errors() {
        let outcomes = vec![
            Ok(Applied::LeaseGrant { id: 1, ttl_seconds: 5, revision: 3 }),
            Err(StoreError::Compacted),
            Err(StoreError::LeaseNotFound),
        ];
        let decoded = decode_outcomes(&encode_outcomes(&outcomes)).unwrap();
        assert_eq!(decoded.len(), 3);
        assert!(matches!(decoded[0], Ok(Applied::LeaseGrant { id: 1, ttl_seconds: 5, revision: 3 })));
        assert!(matches!(decoded[1], Err(StoreError::Compacted)));
        assert!(matches!(decoded[2], Err(StoreError::LeaseNotFound)));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = encode_proposals(&[Proposal::Compact { revision: 1 }]);
        for cut in 0..bytes.len() {
            if cut > 0 {
                assert!(decode_proposals(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }
}
