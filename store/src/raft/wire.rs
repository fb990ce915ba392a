//! Messages of the member-to-member gRPC service (`keelpeer.Peer`, see `build.rs`).
//!
//! Raft's own messages travel as postcard-encoded openraft structs inside `RaftMessage`, so the
//! wire follows openraft's types without a second schema. Keel's member calls (forwarded
//! writes, read index, lease keep-alive, membership changes) carry etcd's protobuf encoding
//! (`codec`) or plain fields. Every request names the cluster and the member it is meant for,
//! so a message that reaches the wrong process is refused rather than applied.

/// An openraft request or reply, postcard-encoded in `payload`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftMessage {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// The member the request is for (0 in replies).
    #[prost(uint64, tag = "2")]
    pub target: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
}

/// One piece of a snapshot stream. The first chunk carries `header` (postcard of the sender's
/// vote and the snapshot's meta); the last has `done` set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotChunk {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub target: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub header: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
    #[prost(bool, tag = "5")]
    pub done: bool,
}

/// A failure as `StoreError::to_wire` encodes it; code 0 with empty text means success.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireError {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub text: String,
}

/// Write requests a follower forwards to the leader (`codec::encode_proposals`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ForwardRequest {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub target: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub proposals: Vec<u8>,
}

/// One outcome per forwarded request (`codec::encode_outcomes`) and the index of the log entry
/// that carried them, or an error for all.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ForwardReply {
    #[prost(bytes = "vec", tag = "1")]
    pub outcomes: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<WireError>,
    #[prost(uint64, tag = "3")]
    pub log_index: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadIndexRequest {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub target: u64,
}

/// The log index a follower must have applied before serving a linearizable read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadIndexReply {
    #[prost(uint64, tag = "1")]
    pub read_index: u64,
    #[prost(message, optional, tag = "2")]
    pub error: Option<WireError>,
}

/// A lease call only the leader can answer (keep-alive, time-to-live).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRequest {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub target: u64,
    #[prost(int64, tag = "3")]
    pub id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseReply {
    /// Remaining TTL in seconds (-1: no such lease).
    #[prost(int64, tag = "1")]
    pub ttl_seconds: i64,
    #[prost(int64, tag = "2")]
    pub granted_ttl_seconds: i64,
    #[prost(message, optional, tag = "3")]
    pub error: Option<WireError>,
}

/// A membership change, run by the leader.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberChangeRequest {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub target: u64,
    /// 1 = add, 2 = remove, 3 = promote, 4 = update peer URLs, 5 = publish name/client URLs.
    #[prost(uint32, tag = "3")]
    pub kind: u32,
    #[prost(uint64, tag = "4")]
    pub member_id: u64,
    #[prost(string, repeated, tag = "5")]
    pub peer_urls: Vec<String>,
    #[prost(bool, tag = "6")]
    pub is_learner: bool,
    #[prost(string, tag = "7")]
    pub name: String,
    #[prost(string, repeated, tag = "8")]
    pub client_urls: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberChangeReply {
    /// The member the change concerned (for add: the new member's ID).
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    #[prost(message, optional, tag = "2")]
    pub error: Option<WireError>,
}

/// Asked by a member joining an existing cluster, which knows its peer URLs but not its ID.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MembersRequest {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerMember {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, repeated, tag = "2")]
    pub peer_urls: Vec<String>,
    #[prost(bool, tag = "3")]
    pub is_learner: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MembersReply {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(message, repeated, tag = "2")]
    pub members: Vec<PeerMember>,
}

/// `WireError.code` of a forwarded call the receiver refused before doing anything because it
/// is not the leader: the sender may safely retry with the new leader.
pub const NOT_LEADER: u32 = 1_000;
