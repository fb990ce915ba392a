//! The controller manager: every controller's work queue, fed by informer callbacks on every
//! master, and the workers that drain them while this master holds
//! `kube-system/kube-controller-manager`.
//!
//! # Layout
//! - `worker.rs`: the [`Controller`] trait and the worker loop every controller shares (next
//!   key → sync → forget / requeue / back off; a fenced write ends the term's work).
//! - `config.rs`: the controllers' `keel master` flags.
//! - One file per controller, each the wiring of the pure decision of the same name in
//!   `crate::controllers`: which informer events enqueue which keys, and how a key's sync
//!   reads the caches and carries its plan out.
//!
//! # Invariants
//! - Callbacks only enqueue (and keep the ReplicaSet expectations and the garbage collector's
//!   graph); they never write, so a master that does not lead never writes.
//! - Every write goes through the leader's fenced client.
//! - A sync reads only the informer caches (and, where a stale cache could delete something
//!   alive, a live GET), so a resync of every key after taking over costs no list.

pub mod config;
mod deployment;
mod endpoints;
mod endpointslices;
mod garbage_collector;
mod kubernetes_service;
mod namespace;
mod node_ipam;
mod node_lifecycle;
mod pod_gc;
mod replicaset;
mod service_account;
mod worker;

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::client::{Client, ClientError};
use crate::components::Informers;
pub use config::ControllerConfig;
pub use worker::Controller;

pub struct ControllerManager {
    informers: Arc<Informers>,
    replica_sets: Arc<replicaset::ReplicaSets>,
    deployments: Arc<deployment::Deployments>,
    endpoints: Arc<endpoints::EndpointsController>,
    endpoint_slices: Arc<endpointslices::EndpointSlices>,
    garbage_collector: Arc<garbage_collector::GarbageCollector>,
    namespaces: Arc<namespace::Namespaces>,
    service_accounts: Arc<service_account::ServiceAccounts>,
    node_lifecycle: Arc<node_lifecycle::NodeLifecycle>,
    pod_gc: Arc<pod_gc::PodGc>,
    kubernetes_service: Arc<kubernetes_service::KubernetesService>,
    node_ipam: Arc<node_ipam::NodeIpam>,
}

impl ControllerManager {
    /// Registers the informer callbacks (on every master, leading or not).
    pub fn new(
        informers: &Arc<Informers>,
        config: &ControllerConfig,
        api_address: std::net::SocketAddr,
        metrics: &crate::metrics::Metrics,
    ) -> Arc<ControllerManager> {
        let manager = ControllerManager {
            informers: informers.clone(),
            replica_sets: replicaset::ReplicaSets::new(informers),
            deployments: deployment::Deployments::new(informers),
            endpoints: endpoints::EndpointsController::new(informers),
            endpoint_slices: endpointslices::EndpointSlices::new(informers),
            garbage_collector: garbage_collector::GarbageCollector::new(informers),
            namespaces: namespace::Namespaces::new(informers),
            service_accounts: service_account::ServiceAccounts::new(informers),
            node_lifecycle: node_lifecycle::NodeLifecycle::new(informers, config),
            pod_gc: pod_gc::PodGc::new(informers, config),
            kubernetes_service: kubernetes_service::KubernetesService::new(informers, api_address),
            node_ipam: node_ipam::NodeIpam::new(informers, config.node_ipam()),
        };
        for queue in [
            manager.replica_sets.queue(),
            manager.deployments.queue(),
            manager.endpoints.queue(),
            manager.endpoint_slices.queue(),
            manager.garbage_collector.queue(),
            manager.namespaces.queue(),
            manager.service_accounts.queue(),
            manager.node_lifecycle.queue(),
            manager.pod_gc.queue(),
            manager.kubernetes_service.queue(),
            manager.node_ipam.queue(),
        ] {
            queue.instrument(metrics);
        }
        Arc::new(manager)
    }

    /// Runs every controller until a write is fenced (the term is over) or the task is aborted
    /// (dropping the worker set aborts every worker).
    pub async fn lead(self: Arc<Self>, client: Client) -> ClientError {
        self.informers.wait_synced().await;
        let mut workers = JoinSet::new();
        worker::start(&mut workers, &self.replica_sets, &client, 5);
        worker::start(&mut workers, &self.deployments, &client, 5);
        worker::start(&mut workers, &self.endpoints, &client, 5);
        worker::start(&mut workers, &self.endpoint_slices, &client, 5);
        worker::start(&mut workers, &self.garbage_collector, &client, 20);
        worker::start(&mut workers, &self.namespaces, &client, 2);
        worker::start(&mut workers, &self.service_accounts, &client, 1);
        worker::start(&mut workers, &self.node_lifecycle, &client, 1);
        worker::start(&mut workers, &self.pod_gc, &client, 1);
        worker::start(&mut workers, &self.kubernetes_service, &client, 1);
        worker::start(&mut workers, &self.node_ipam, &client, 1);
        while let Some(ended) = workers.join_next().await {
            match ended {
                Ok(error) => return error,
                Err(join) if join.is_panic() => {
                    return ClientError::Response("a controller worker panicked".to_string());
                }
                Err(_) => {}
            }
        }
        std::future::pending().await
    }
}
