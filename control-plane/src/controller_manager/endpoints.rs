//! The Endpoints controller's wiring: keys `<ns>/<service>`; a pod event enqueues every
//! Service of its namespace whose selector matches the pod (before or after the change).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::worker::{Controller, namespaced_key, split_key};
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::endpoints as decision;
use crate::controllers::endpointslices::{selects, service_selector};
use crate::informer::Change;
use crate::workqueue::WorkQueue;

pub struct EndpointsController {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
}

impl EndpointsController {
    pub fn new(informers: &Arc<Informers>) -> Arc<EndpointsController> {
        let this = Arc::new(EndpointsController { informers: informers.clone(), queue: WorkQueue::new("endpoint") });
        let me = this.clone();
        informers.services.on_change(move |change| me.queue.add(namespaced_key(&changed(change).metadata)));
        let me = this.clone();
        informers.endpoints.on_change(move |change| me.queue.add(namespaced_key(&changed(change).metadata)));
        let me = this.clone();
        informers.pods.on_change(move |change| enqueue_services(&me.informers, &me.queue, change));
        this
    }
}

/// The object after the change (before it, for a delete).
pub fn changed<'a, T>(change: &'a Change<'_, T>) -> &'a T {
    match change {
        Change::Added(object) | Change::Updated { new: object, .. } | Change::Deleted(object) => object,
    }
}

/// Enqueues the Services selecting the pod before or after the change.
pub fn enqueue_services(informers: &Informers, queue: &WorkQueue<String>, change: &Change<'_, Pod>) {
    let (old, new) = match change {
        Change::Added(pod) | Change::Deleted(pod) => (None, pod.as_ref()),
        Change::Updated { old, new } => (Some(old.as_ref()), new.as_ref()),
    };
    let namespace = new.metadata.namespace.as_deref().unwrap_or("");
    for service in informers.services.list_namespace(namespace) {
        let Some(selector) = service_selector(&service) else { continue };
        if selects(selector, new) || old.is_some_and(|old| selects(selector, old)) {
            queue.add(namespaced_key(&service.metadata));
        }
    }
}

/// Runs `f` with the node cache by name, without copying it.
pub fn with_nodes<R>(informers: &Informers, f: impl FnOnce(&HashMap<String, Arc<Node>>) -> R) -> R {
    informers.nodes.with(|index| match index.get("") {
        Some(nodes) => f(nodes),
        None => f(&HashMap::new()),
    })
}

impl Controller for EndpointsController {
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
        let service = self.informers.services.get(namespace, name);
        let current = self.informers.endpoints.get(namespace, name);
        let pods = self.informers.pods.list_namespace(namespace);
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let plan = with_nodes(&self.informers, |nodes| {
            decision::sync(service.as_deref(), &pod_refs, nodes, current.as_deref())
        });
        client.run_plan(&plan).await.map_err(|failure| failure.error)?;
        Ok(plan.requeue_after)
    }
}
