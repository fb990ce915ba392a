//! keel-store: an etcd-compatible key-value store (etcd v3 API, etcd 3.4 semantics).
//!
//! # Layout
//! - [`mvcc`]: the MVCC engine on RocksDB: revisions, ranges, writes, history, compaction.
//! - [`apply`]: the deterministic state machine: one write request → one revision.
//! - [`raft`]: replication with openraft: log store, state machine, peers, forwarding, reads.
//! - [`lease`]: the lease table and the one component that decides expiry (promote/demote).
//! - [`watch`]: the watch hub: live delivery, catch-up from history, bounded buffers.
//! - [`grpc`]: the etcd v3 gRPC services, request checks and etcd's error texts.
//! - [`store`]: one member's running state shared by the services.
//! - [`server`]: start-up, TLS, serving; [`config`] flags; [`datadir`] data directory checks.
//! - [`shutdown`]: stopping a member cleanly (drain, leadership hand-over, Raft, release), in
//!   one ordered, time-bounded sequence.
//! - Connections it accepts and opens write through `keel_net::coalesce` (fewer, larger
//!   socket writes).
//! - [`snapshot`]: snapshots in etcd's framing; [`compactor`]: compaction scheduling.
//!
//! # Invariants
//! - An acknowledged write is in the Raft log (fsynced) of a quorum and applied on the member
//!   that answers, before its response is sent.
//! - Readers see only the committed revision; MVCC hides everything above it.
//! - Every write request is one revision; a request that changes nothing is no revision.
//! - Watch events reach each watcher in revision order, each exactly once, with no gap.
//! - Only the leader's lessor expires leases, and only through the log; a new leader extends
//!   every lease by its TTL first.
//! - Linearizable reads wait for the leader's confirmed commit index (read index); a deposed
//!   leader cannot confirm one.
//! - A member told to stop is gone within `shutdown::STOP_BUDGET`, having handed leadership to
//!   a reachable voter first; nothing it acknowledged depends on its stop completing.

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
pub mod shutdown;
pub mod snapshot;
pub mod store;
pub mod watch;
