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
            Command::Requests(batch) => write!(f, "Requests({})", batch.proposals().len()),
            Command::PublishMember { id, name, .. } => write!(f, "PublishMember({id:x}, {name})"),
        }
    }
}

/// Write requests batched into one entry. Serialized with the etcd protobuf encoding of each
/// request (`codec`), so the log holds compact bytes, not a serde tree of protobuf structs.
///
/// A batch keeps its encoding next to the decoded requests: it is encoded once, where it is
/// made (or taken as it arrived, from a follower's forward or the leader's AppendEntries), not
/// again for the log and for every follower. Shared, not copied, when an entry is cloned: the
/// log's cache of recent entries hands out clones to the state machine and to replication.
#[derive(Clone, Debug, Default)]
pub struct ProposalBatch(Arc<EncodedBatch>);

#[derive(Debug, Default)]
struct EncodedBatch {
    proposals: Vec<Proposal>,
    /// `codec::encode_proposals(&proposals)`, or bytes that decode to `proposals`.
    encoded: Vec<u8>,
}

impl ProposalBatch {
    pub fn new(proposals: Vec<Proposal>) -> ProposalBatch {
        let encoded = codec::encode_proposals(&proposals);
        ProposalBatch(Arc::new(EncodedBatch { proposals, encoded }))
    }

    /// A batch from requests and their encoding, which the caller guarantees match:
    /// `encoded` is their `codec` encoding, or bytes that `codec` decoded into them.
    pub fn from_encoded(proposals: Vec<Proposal>, encoded: Vec<u8>) -> ProposalBatch {
        ProposalBatch(Arc::new(EncodedBatch { proposals, encoded }))
    }

    /// Decodes a batch, keeping `encoded` as its encoding.
    pub fn decode(encoded: Vec<u8>) -> Result<ProposalBatch, codec::CodecError> {
        let proposals = codec::decode_proposals(&encoded)?;
        Ok(ProposalBatch::from_encoded(proposals, encoded))
    }

    pub fn proposals(&self) -> &[Proposal] {
        &self.0.proposals
    }

    /// Bytes of the requests' encoding.
    pub fn encoded_len(&self) -> usize {
        self.0.encoded.len()
    }
}

/// About the bytes an entry takes in postcard (a little more): a capacity to encode it into.
pub fn entry_size_hint(entry: &Entry) -> usize {
    const OVERHEAD: usize = 64;
    match &entry.payload {
        openraft::EntryPayload::Normal(Command::Requests(batch)) => batch.encoded_len() + OVERHEAD,
        _ => 4 * OVERHEAD,
    }
}

/// Batches are equal when their requests are (their encodings then decode alike).
impl PartialEq for ProposalBatch {
    fn eq(&self, other: &ProposalBatch) -> bool {
        self.0.proposals == other.0.proposals
    }
}

impl Serialize for ProposalBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.encoded)
    }
}

impl<'de> Deserialize<'de> for ProposalBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes_buf(deserializer)?;
        ProposalBatch::decode(bytes).map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use openraft::RaftTypeConfig;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;

    #[test]
    fn a_batch_travels_as_the_encoding_it_was_made_with() {
        let proposals = vec![Proposal::Compact { revision: 4 }, Proposal::LeaseRevoke { id: 7 }];
        let made = ProposalBatch::new(proposals.clone());
        let bytes = postcard::to_allocvec(&Command::Requests(made.clone())).expect("encodes");
        let Command::Requests(received) = postcard::from_bytes(&bytes).expect("decodes") else {
            panic!("not a Requests command");
        };
        assert_eq!(received, made);
        assert_eq!(received.proposals(), &proposals[..]);
        assert_eq!(received.encoded_len(), codec::encode_proposals(&proposals).len());
        // The receiver's own encoding is the bytes it received: it sends them on unchanged.
        assert_eq!(postcard::to_allocvec(&Command::Requests(received)).expect("encodes"), bytes);
    }

    #[test]
    fn an_entry_size_hint_covers_its_encoding() {
        let batch = ProposalBatch::new(vec![Proposal::Compact { revision: 1 }; 100]);
        let entry = Entry {
            log_id: LogId::new(<TypeConfig as RaftTypeConfig>::LeaderId::new_committed(3, 1), 42),
            payload: openraft::EntryPayload::Normal(Command::Requests(batch)),
        };
        let encoded = postcard::to_allocvec(&entry).expect("encodes");
        assert!(entry_size_hint(&entry) >= encoded.len(), "{} < {}", entry_size_hint(&entry), encoded.len());
    }
}
