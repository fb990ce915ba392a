//! keel-control-plane: the Kubernetes-compatible API server on the Keel store.
//!
//! # Layout
//! - [`kv`]: store access through one `Kv` trait (embedded replica or remote etcd).
//! - [`apiserver`]: the API server (routing, handlers, storage, discovery, tables, watch).
//! - [`patch`]: strategic merge patch and its per-type schema.
//! - [`fieldmanager`]: `managedFields` and server-side apply (ownership, conflicts, merging by
//!   the server-side apply type table); pure, used by `apiserver::apply`.
//! - [`registry`]: defaulting, validation (field causes) and strict decoding per resource.
//! - [`pki`]: the cluster CA and certificates, the kubeconfig.
//! - [`master`]: `keel master`; [`up`]: `keel up` (three local masters).
//!
//! # Invariants
//! - Objects live as JSON under `/registry/<resource>/<namespace>/<name>`; resourceVersion is
//!   the store's mod revision and is never stored.
//! - Every write is a store txn guarded by the mod revision it read (or by absence, for
//!   creates): no write overwrites a change it did not see.
//! - Only requests with a client certificate the cluster CA signed reach resources.

pub mod apiserver;
pub mod client;
pub mod components;
pub mod controller_manager;
pub mod controllers;
pub mod election;
pub mod fieldmanager;
pub mod informer;
pub mod kv;
pub mod master;
pub mod metrics;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod scheduler;
pub mod up;
pub mod workqueue;
