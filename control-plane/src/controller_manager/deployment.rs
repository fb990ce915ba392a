//! The Deployment controller's wiring: keys `<ns>/<name>`; ReplicaSet events enqueue their
//! Deployment (or, for orphans, the selecting ones); a deleted pod enqueues the Deployment
//! above its ReplicaSet (Recreate waits for old pods to go).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::replicaset::error_message;
use super::worker::{Controller, namespaced_key, now, split_key};
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::action::{Action, REPLICA_SETS};
use crate::controllers::deployment as decision;
use crate::controllers::replicaset::{controller_of, labels_of, selector_of};
use crate::informer::Change;
use crate::workqueue::WorkQueue;

pub struct Deployments {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
}

impl Deployments {
    pub fn new(informers: &Arc<Informers>) -> Arc<Deployments> {
        let this = Arc::new(Deployments { informers: informers.clone(), queue: WorkQueue::new("deployment") });
        let me = this.clone();
        informers.deployments.on_change(move |change| match change {
            Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d) => {
                me.queue.add(namespaced_key(&d.metadata))
            }
        });
        let me = this.clone();
        informers.replica_sets.on_change(move |change| match change {
            Change::Added(rs) | Change::Deleted(rs) => me.enqueue_for(&rs.metadata),
            Change::Updated { old, new } => {
                if old.metadata.labels != new.metadata.labels
                    || controller_of(&old.metadata) != controller_of(&new.metadata)
                {
                    me.enqueue_for(&old.metadata);
                }
                me.enqueue_for(&new.metadata);
            }
        });
        let me = this.clone();
        informers.pods.on_change(move |change| {
            if let Change::Deleted(pod) = change {
                me.pod_deleted(pod);
            }
        });
        this
    }

    /// The Deployment controlling a ReplicaSet, or every Deployment that could adopt it.
    fn enqueue_for(&self, rs: &ObjectMeta) {
        let namespace = rs.namespace.as_deref().unwrap_or("");
        match controller_of(rs) {
            Some(owner) if owner.kind == "Deployment" => self.queue.add(format!("{namespace}/{}", owner.name)),
            Some(_) => {}
            None => {
                for deployment in self.informers.deployments.list_namespace(namespace) {
                    let selects = deployment
                        .spec
                        .as_ref()
                        .and_then(|spec| selector_of(&spec.selector))
                        .is_some_and(|selector| !selector.is_empty() && selector.matches(labels_of(rs)));
                    if selects {
                        self.queue.add(namespaced_key(&deployment.metadata));
                    }
                }
            }
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet") else { return };
        let Some(rs) = self.informers.replica_sets.get(namespace, &owner.name) else { return };
        if let Some(deployment) = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
            self.queue.add(format!("{namespace}/{}", deployment.name));
        }
    }
}

impl Controller for Deployments {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        for deployment in self.informers.deployments.list() {
            self.queue.add(namespaced_key(&deployment.metadata));
        }
    }

    async fn sync(&self, key: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let (namespace, name) = split_key(key);
        let Some(deployment) = self.informers.deployments.get(namespace, name) else { return Ok(None) };
        let replica_sets = self.informers.replica_sets.list_namespace(namespace);
        let pods = self.informers.pods.list_namespace(namespace);
        let rs_refs: Vec<&ReplicaSet> = replica_sets.iter().map(Arc::as_ref).collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let now = now();
        let plan = decision::sync(&deployment, &rs_refs, &pod_refs, now);
        match client.run_plan(&plan).await {
            Ok(()) => Ok(plan.requeue_after),
            Err(failure) => {
                if let Some(Action::Create { resource, object, .. }) = plan.actions.get(failure.index) {
                    let create_failed = *resource == REPLICA_SETS
                        && !failure.error.is_already_exists()
                        && !matches!(failure.error, ClientError::Fenced(_));
                    if create_failed {
                        report_create_failure(&deployment, object, &failure.error, client, now).await?;
                    }
                }
                Err(failure.error)
            }
        }
    }
}

/// Progressing=False `ReplicaSetCreateError` and a Warning event (only this runtime sees the
/// error).
async fn report_create_failure(
    deployment: &Deployment,
    replica_set: &serde_json::Value,
    error: &ClientError,
    client: &Client,
    now: jiff::Timestamp,
) -> Result<(), ClientError> {
    let name = replica_set.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or_default();
    let plan = decision::create_failed(deployment, name, &error_message(error), now);
    client.run_plan(&plan).await.map_err(|failure| failure.error)
}
