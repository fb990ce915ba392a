//! The Raft type configuration: what travels through the log (`Command`), what applying it
//! answers (`CommandOutcome`), and how a member is addressed (`PeerNode`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::apply::{Applied, Proposal};
use crate::error::StoreError;
use crate::raft::codec;

/// A member as Raft's membership records it: the URLs its peers reach it at. Names and client
/// URLs are published through the log (`Command::PublishMember`), as etcd does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub peer_urls: Vec<String>,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer_urls.join(","))
    }
}

/// One log entry's application payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Client write requests, applied in order; each is one revision (or none).
    Requests(ProposalBatch),
    /// A member's name and client URLs, as `MemberList` reports them.
    PublishMember { id: u64, name: String, client_urls: Vec<String> },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Requests(batch) => write!(f, "Requests({})", batch.0.len()),
            Command::PublishMember { id, name, .. } => write!(f, "PublishMember({id:x}, {name})"),
        }
    }
}

/// Write requests batched into one entry. Serialized with the etcd protobuf encoding of each
/// request (`codec`), so the log holds compact bytes, not a serde tree of protobuf structs.
/// Shared, not copied, when an entry is cloned: the log's cache of recent entries hands out
/// clones to the state machine and to replication.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProposalBatch(Arc<Vec<Proposal>>);

impl ProposalBatch {
    pub fn new(proposals: Vec<Proposal>) -> ProposalBatch {
        ProposalBatch(Arc::new(proposals))
    }

    pub fn proposals(&self) -> &[Proposal] {
        &self.0
    }
}

impl Serialize for ProposalBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&codec::encode_proposals(&self.0))
    }
}

impl<'de> Deserialize<'de> for ProposalBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes_buf(deserializer)?;
        codec::decode_proposals(&bytes).map(ProposalBatch::new).map_err(serde::de::Error::custom)
    }
}

/// What applying one entry answered: one outcome per request of a `Command::Requests`, none
/// for other entries.
#[derive(Debug, Default)]
pub struct CommandOutcome(pub Vec<Result<Applied, StoreError>>);

impl Serialize for CommandOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&codec::encode_outcomes(&self.0))
    }
}

impl<'de> Deserialize<'de> for CommandOutcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes_buf(deserializer)?;
        codec::decode_outcomes(&bytes).map(CommandOutcome).map_err(serde::de::Error::custom)
    }
}

fn serde_bytes_buf<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_byte_buf(BytesVisitor)
}

openraft::declare_raft_types!(
    /// Keel's Raft types: u64 member IDs (etcd's), batched write requests as log payload.
    pub TypeConfig:
        D = Command,
        R = CommandOutcome,
        NodeId = u64,
        Node = PeerNode,
);

pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::StateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// A snapshot on disk in Keel's snapshot format (`crate::snapshot`), as the state machine built
/// it or as a peer streamed it in. The receiver of a stream writes the file and hands it to
/// `Raft::install_full_snapshot`; the state machine then owns (moves) the file.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: std::path::PathBuf,
    pub size_bytes: u64,
}
