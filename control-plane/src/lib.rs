//! keel-control-plane: the Kubernetes-compatible API server on the Keel store.
//!
//! # Layout
//! - [`kv`]: store access through one `Kv` trait (embedded replica or remote etcd).
pub mod kv;
