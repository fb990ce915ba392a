//! The EndpointSlice controller's wiring: keys `<ns>/<service>`, enqueued by Service and pod
//! events as for Endpoints, and by changes to the slices labelled with the Service's name.
//! Slices of a deleted Service carry its ownerReference: the garbage collector removes them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::endpoints::{changed, enqueue_services, with_nodes};
use super::worker::{Controller, namespaced_key, split_key};
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::endpointslices::{self as decision, Config, SERVICE_NAME_LABEL, label};
use crate::informer::Change;
use crate::workqueue::WorkQueue;

pub struct EndpointSlices {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
    config: Config,
}

impl EndpointSlices {
    pub fn new(informers: &Arc<Informers>) -> Arc<EndpointSlices> {
        let this = Arc::new(EndpointSlices {
            informers: informers.clone(),
            queue: WorkQueue::new("endpoint_slice"),
            config: Config::default(),
        });
        let me = this.clone();
        informers.services.on_change(move |change| me.queue.add(namespaced_key(&changed(change).metadata)));
        let me = this.clone();
        informers.endpoint_slices.on_change(move |change: &Change<'_, EndpointSlice>| {
            let slice = changed(change);
            if let Some(service) = label(&slice.metadata, SERVICE_NAME_LABEL) {
                me.queue.add(format!("{}/{service}", slice.metadata.namespace.as_deref().unwrap_or("")));
            }
        });
        let me = this.clone();
        informers.pods.on_change(move |change| enqueue_services(&me.informers, &me.queue, change));
        this
    }
}

impl Controller for EndpointSlices {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        for service in self.informers.services.list() {
            self.queue.add(namespaced_key(&service.metadata));
        }
    }

    async fn sync(&self, key: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let (namespace, name) = split_key(key);
        let Some(service) = self.informers.services.get(namespace, name) else { return Ok(None) };
        let slices = self.informers.endpoint_slices.list_namespace(namespace);
        let existing: Vec<&EndpointSlice> =
            slices.iter().map(Arc::as_ref).filter(|s| label(&s.metadata, SERVICE_NAME_LABEL) == Some(name)).collect();
        let pods = self.informers.pods.list_namespace(namespace);
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let plan =
            with_nodes(&self.informers, |nodes| decision::sync(&service, &pod_refs, nodes, &existing, &self.config));
        client.run_plan(&plan).await.map_err(|failure| failure.error)?;
        Ok(plan.requeue_after)
    }
}
