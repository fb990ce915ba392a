//! keel-chaos: benchmarks, cluster launcher and fault injection, driving Keel (or etcd) from
//! outside as a user would.
pub mod bench;
