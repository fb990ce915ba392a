//! keel-store: an etcd-compatible key-value store (etcd v3 API, etcd 3.4 semantics).
//!
//! # Layout
//! - [`mvcc`]: the MVCC engine on RocksDB: revisions, ranges, writes, history, compaction.
//! - [`apply`]: the deterministic state machine: one write request → one revision.
//! - [`writer`]: the single-member write path: group commit (one WAL sync per group).
//! - [`lease`]: the lease table and the one component that decides expiry (promote/demote).
//! - [`watch`]: the watch hub: live delivery, catch-up from history, bounded buffers.
//! - [`grpc`]: the etcd v3 gRPC services, request checks and etcd's error texts.
//! - [`store`]: one member's running state shared by the services.
//! - [`server`]: start-up, TLS, serving; [`config`] flags; [`datadir`] data directory checks.
//! - [`snapshot`]: snapshots in etcd's framing; [`compactor`]: compaction scheduling.
//!
//! # Invariants
//! - An acknowledged write is in a synced WAL before its response is sent.
//! - Readers see only the committed revision; MVCC hides everything above it.
//! - Every write request is one revision; a request that changes nothing is no revision.
//! - Watch events reach each watcher in revision order, each exactly once, with no gap.
//! - Only the primary lessor expires leases, and only through the write path.

pub mod apply;
pub mod compactor;
pub mod config;
pub mod datadir;
pub mod error;
pub mod grpc;
pub mod header;
pub mod lease;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod watch;
pub mod writer;
