//! The Kubernetes-compatible API server.
//!
//! A request goes: [`server`] (TLS, client certificate → identity, 401) → [`router`] (paths
//! that are not resources: version, health, discovery, OpenAPI) → [`handlers`] (one module per
//! verb family) → [`storage`] (objects in the store through the `Kv` trait) or, for watches and
//! `resourceVersion=0` lists, [`watch_cache`] (one cache per resource, fed by one store watch).
//! Pure pieces sit beside them: [`request`] parsing, [`options`] (query parameters per verb),
//! [`resources`] catalog, [`object`] metadata rules, [`hooks`] per-resource behaviour (service
//! IPs, graceful pod deletion, namespaces), [`apply`] server-side apply, [`table`] +
//! [`printers`] for kubectl's columns, [`selectors`], [`status`] errors.

pub mod apply;
pub mod discovery;
pub mod handlers;
pub mod hooks;
pub mod object;
pub mod openapi;
pub mod options;
pub mod printers;
pub mod protobuf;
pub mod request;
pub mod resources;
pub mod router;
pub mod selectors;
pub mod server;
pub mod status;
pub mod storage;
pub mod table;
pub mod watch_cache;

use std::sync::Arc;

use crate::kv::Kv;

/// Request bodies larger than this get 413 (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What every handler shares.
pub struct Api {
    pub storage: storage::Storage,
    /// Watches and `resourceVersion=0` lists are served from these, not from the store.
    pub watch_caches: watch_cache::WatchCaches,
    /// The address clients reach this server at, for plain `/api` discovery.
    pub server_address: String,
    /// This master's Prometheus metrics (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Api {
    pub fn new(kv: Arc<dyn Kv>, server_address: String) -> Arc<Api> {
        let watch_caches = watch_cache::WatchCaches::new(kv.clone(), watch_cache::Limits::default());
        let metrics = crate::metrics::Metrics::new();
        let storage = storage::Storage::new(kv, metrics.clone());
        Arc::new(Api { storage, watch_caches, server_address, metrics })
    }
}
