//! Connection plumbing shared by Keel's servers (`keel-store`), its load generator and cluster
//! launcher (`keel-chaos`'s `keel bench`) and the process-level tests:
//!
//! - [`coalesce`]: frames that are ready together leave in one socket write (both sides speak
//!   HTTP/2 over many small calls);
//! - [`ports`]: free local ports for processes about to be started.

pub mod coalesce;
pub mod ports;
