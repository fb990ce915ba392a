//! The informers the scheduler and the controllers share: one per resource per master,
//! started with the master (on every master, leading or not) so a new leader starts warm.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::task::JoinHandle;

use crate::apiserver::{Api, resources};
use crate::informer::Informer;

pub struct Informers {
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub endpoint_slices: Arc<Informer<EndpointSlice>>,
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub service_accounts: Arc<Informer<ServiceAccount>>,
    /// Every Lease; node heartbeats are those in `kube-node-lease`.
    pub leases: Arc<Informer<Lease>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the API server serves no {0}")]
pub struct MissingResource(&'static str);

/// The informers' loops, not yet running: [`Unstarted::spawn`] them once every callback is
/// registered.
pub struct Unstarted(Vec<BoxFuture<'static, ()>>);

impl Unstarted {
    /// Starts every loop; the tasks run until the handles are aborted.
    pub fn spawn(self) -> Vec<JoinHandle<()>> {
        self.0.into_iter().map(tokio::spawn).collect()
    }
}

impl Informers {
    /// Makes them all; nothing is read until the returned loops are spawned.
    pub fn new(api: &Arc<Api>) -> Result<(Arc<Informers>, Unstarted), MissingResource> {
        let mut tasks = Vec::new();
        let start =
            |group: &str, plural: &'static str| resources::find(group, "v1", plural).ok_or(MissingResource(plural));
        let informers = Informers {
            pods: informer(api, start("", "pods")?, &mut tasks),
            nodes: informer(api, start("", "nodes")?, &mut tasks),
            namespaces: informer(api, start("", "namespaces")?, &mut tasks),
            services: informer(api, start("", "services")?, &mut tasks),
            endpoints: informer(api, start("", "endpoints")?, &mut tasks),
            endpoint_slices: informer(api, start("discovery.k8s.io", "endpointslices")?, &mut tasks),
            replica_sets: informer(api, start("apps", "replicasets")?, &mut tasks),
            deployments: informer(api, start("apps", "deployments")?, &mut tasks),
            service_accounts: informer(api, start("", "serviceaccounts")?, &mut tasks),
            leases: informer(api, start("coordination.k8s.io", "leases")?, &mut tasks),
        };
        Ok((Arc::new(informers), Unstarted(tasks)))
    }

    /// Waits until every informer holds its first snapshot.
    pub async fn wait_synced(&self) {
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.services.wait_synced().await;
        self.endpoints.wait_synced().await;
        self.endpoint_slices.wait_synced().await;
        self.replica_sets.wait_synced().await;
        self.deployments.wait_synced().await;
        self.service_accounts.wait_synced().await;
        self.leases.wait_synced().await;
    }
}

fn informer<T>(
    api: &Arc<Api>,
    resource: &'static resources::Resource,
    tasks: &mut Vec<BoxFuture<'static, ()>>,
) -> Arc<Informer<T>>
where
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (informer, keeping) = Informer::new(api.clone(), resource);
    tasks.push(Box::pin(keeping));
    informer
}
