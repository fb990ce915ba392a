//! Connection plumbing shared by Keel's servers (`keel-store`) and its load generator
//! (`keel-chaos`'s `keel bench`): both speak HTTP/2 over many small calls, and both want the
//! frames that are ready together to leave in one socket write.

pub mod coalesce;
