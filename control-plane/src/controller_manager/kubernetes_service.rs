//! The `kubernetes` Service's wiring: one key, reconciled every 10 s and when one of its
//! three objects changes. The address published is the leading master's own API address:
//! Keel's masters of one `keel up` share 127.0.0.1 on different ports, which one Endpoints
//! port cannot express, so the Service points at the master whose controller manager leads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::endpoints::changed;
use super::worker::Controller;
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::endpointslices::{SERVICE_NAME_LABEL, label};
use crate::controllers::kubernetes_service::{self as decision, Config, NAME, NAMESPACE};
use crate::workqueue::WorkQueue;

const KEY: &str = "kubernetes";
const PERIOD: Duration = Duration::from_secs(10);
/// The first address of the service range (10.96.0.0/12), Kubernetes' choice for this Service.
const CLUSTER_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 1);

pub struct KubernetesService {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
    config: Config,
    address: SocketAddr,
}

impl KubernetesService {
    pub fn new(informers: &Arc<Informers>, address: SocketAddr) -> Arc<KubernetesService> {
        let config =
            Config { cluster_ip: CLUSTER_IP.into(), service_port: 443, api_server_port: i32::from(address.port()) };
        let this = Arc::new(KubernetesService {
            informers: informers.clone(),
            queue: WorkQueue::new("kubernetes_service"),
            config,
            address,
        });
        let ours = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.namespace.as_deref() == Some(NAMESPACE) && meta.name.as_deref() == Some(NAME)
        };
        let me = this.clone();
        informers.services.on_change(move |change| {
            if ours(&changed(change).metadata) {
                me.queue.add(KEY.to_string());
            }
        });
        let me = this.clone();
        informers.endpoints.on_change(move |change| {
            if ours(&changed(change).metadata) {
                me.queue.add(KEY.to_string());
            }
        });
        let me = this.clone();
        informers.endpoint_slices.on_change(move |change| {
            let meta = &changed(change).metadata;
            if meta.namespace.as_deref() == Some(NAMESPACE) && label(meta, SERVICE_NAME_LABEL) == Some(NAME) {
                me.queue.add(KEY.to_string());
            }
        });
        this
    }
}

impl Controller for KubernetesService {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        self.queue.add(KEY.to_string());
    }

    async fn sync(&self, _key: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let service = self.informers.services.get(NAMESPACE, NAME);
        let endpoints = self.informers.endpoints.get(NAMESPACE, NAME);
        let slice = self.informers.endpoint_slices.get(NAMESPACE, NAME);
        // Endpoints may not name loopback addresses (Kubernetes' validation): a master on
        // 127.0.0.1 gets the Service but no Endpoints until it listens on a routable address.
        let ip = self.address.ip();
        let addresses: &[std::net::IpAddr] = if ip.is_loopback() || ip.is_unspecified() { &[] } else { &[ip] };
        let plan = decision::sync(&self.config, addresses, service.as_deref(), endpoints.as_deref(), slice.as_deref());
        match client.run_plan(&plan).await {
            Ok(()) => Ok(Some(PERIOD)),
            Err(failure) if failure.error.is_already_exists() || failure.error.is_conflict() => {
                Ok(Some(Duration::from_secs(1)))
            }
            Err(failure) => Err(failure.error),
        }
    }
}
