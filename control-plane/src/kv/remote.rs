//! Any etcd v3 endpoint, through the etcd-client crate.
