//! The store's typed errors. Each variant that a client can see maps to etcd's gRPC status
//! (code and text, byte for byte) in `grpc::status`.

use crate::mvcc::codec::CorruptRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    #[error("storage failure: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// A failure reported by another member (forwarded request) or by the Raft layer, kept as
    /// text.
    #[error("{0}")]
    Internal(String),
}

/// Every variant that can cross the network, with its wire code (append only).
const WIRE_CODES: &[(u8, fn() -> StoreError)] = &[
    (1, || StoreError::EmptyKey),
    (2, || StoreError::KeyNotFound),
    (3, || StoreError::ValueProvided),
    (4, || StoreError::LeaseProvided),
    (5, || StoreError::TooManyOps),
    (6, || StoreError::DuplicateKey),
    (7, || StoreError::InvalidSortOption),
    (8, || StoreError::Compacted),
    (9, || StoreError::FutureRevision),
    (10, || StoreError::LeaseNotFound),
    (11, || StoreError::LeaseExists),
    (12, || StoreError::LeaseTtlTooLarge),
    (13, || StoreError::RequestTooLarge),
    (14, || StoreError::TooManyRequests),
    (15, || StoreError::Stopped),
    (16, || StoreError::NoLeader),
    (17, || StoreError::LeaderChanged),
    (18, || StoreError::Timeout),
    (19, || StoreError::MemberNotFound),
    (20, || StoreError::MemberExists),
    (21, || StoreError::PeerUrlExists),
    (22, || StoreError::NotLearner),
    (23, || StoreError::LearnerNotReady),
    (24, || StoreError::NotEnoughStartedMembers),
    (25, || StoreError::UnhealthyCluster),
];
/// Wire code for errors carried as text.
const WIRE_TEXT: u8 = 0;

impl StoreError {
    /// The error as (code, text) for another member; `from_wire` turns it back.
    pub fn to_wire(&self) -> (u8, String) {
        let kind = std::mem::discriminant(self);
        match WIRE_CODES.iter().find(|(_, make)| std::mem::discriminant(&make()) == kind) {
            Some((code, _)) => (*code, String::new()),
            None => (WIRE_TEXT, self.to_string()),
        }
    }

    pub fn from_wire(code: u8, text: String) -> StoreError {
        WIRE_CODES.iter().find(|(c, _)| *c == code).map_or(StoreError::Internal(text), |(_, make)| make())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
