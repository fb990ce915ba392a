//! Raft replication with openraft: the MVCC engine is the state machine, the log lives in the
//! same RocksDB, and members talk over gRPC (`keelpeer.Peer`).
//!
//! - [`types`]: the openraft type configuration; [`codec`]: log payload bytes.
//! - [`log_store`]: the Raft log and vote on RocksDB (fsync before acknowledging).
//! - [`state_machine`]: applies committed entries to the engine; builds and installs snapshots.
//! - [`network`]: the client side of Raft RPCs; [`transport`]: peer channels and TLS.
//! - [`raft_rpc`]: the server side of Raft RPCs; [`wire`]: the peer service's messages.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod raft_rpc;
pub mod state_machine;
pub mod transport;
pub mod types;
pub mod wire;

/// The generated `keelpeer.Peer` service (server and client).
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/keelpeer.Peer.rs"));
}
