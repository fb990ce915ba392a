//! Raft replication with openraft: the MVCC engine is the state machine, the log lives in the
//! same RocksDB, and members talk over gRPC (`keelpeer.Peer`).
//!
//! - [`types`]: the openraft type configuration; [`codec`]: log payload bytes.
//! - [`log_store`]: the Raft log and vote on RocksDB (fsync before acknowledging).
//! - [`state_machine`]: applies committed entries to the engine; builds and installs snapshots.
//! - [`network`]: the client side of Raft RPCs; [`transport`]: peer channels and TLS;
//!   [`append_stream`]: replication's AppendEntries pipelined on one stream, both sides.
//! - [`raft_rpc`]: the server side of Raft RPCs; [`wire`]: the peer service's messages;
//!   [`peer_service`]: the peer gRPC service (Raft RPCs and forwarded calls).
//! - [`node`]: one member's Raft handle (leader, term, membership); [`bootstrap`]: starting it.
//! - [`proposer`]: batched writes, forwarded to the leader on one stream ([`forward_stream`]);
//!   [`committer`]: the leader merges every member's batches into one log entry;
//!   [`read_index`]: linearizable reads.
//! - [`runtime`]: the Raft core's own thread, so heartbeats never wait for API work.
//! - [`leadership`]: term in headers, lessor promote/demote; [`handover`]: leadership moved to
//!   another voter before this member stops; [`lease_calls`]: keep-alives on the leader;
//!   [`membership`]: member add/remove/promote/update.

pub mod append_stream;
pub mod applied;
pub mod bootstrap;
pub mod codec;
pub mod committer;
pub mod forward_stream;
pub mod handover;
pub mod leadership;
pub mod lease_calls;
pub mod log_store;
pub mod log_tail;
pub mod membership;
pub mod network;
pub mod node;
pub mod peer_service;
pub mod proposer;
pub mod raft_rpc;
pub mod read_index;
pub mod runtime;
pub mod snapshot_store;
pub mod state_machine;
pub mod storage_error;
pub mod transport;
pub mod types;
pub mod wire;

/// The generated `keelpeer.Peer` service (server and client).
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/keelpeer.Peer.rs"));
}
