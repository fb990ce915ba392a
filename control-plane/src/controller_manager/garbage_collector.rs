//! The garbage collector's wiring: keys are UIDs; every informer feeds the graph (Keel serves
//! no custom resources, so the informers' resources are every resource objects are owned
//! through: pods, ReplicaSets, Deployments, Services, Endpoints, EndpointSlices, Leases, ...).
//!
//! A dependent is deleted (or released) only after the owners the graph calls absent are
//! confirmed absent by a live GET: the informers are separate streams, and a pod's informer
//! may see the pod before the ReplicaSet's informer sees its new owner.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::de::DeserializeOwned;

use super::worker::Controller;
use crate::apiserver::resources;
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::action::{self, ObjectRef, ResourceRef};
use crate::controllers::garbage_collector::{Graph, Object};
use crate::informer::{Change, Informer};
use crate::workqueue::WorkQueue;

/// How soon to look again when the cache lags behind an owner the API already has.
const CACHE_LAG_RETRY: Duration = Duration::from_secs(1);

pub struct GarbageCollector {
    graph: Mutex<Graph>,
    queue: WorkQueue<String>,
}

impl GarbageCollector {
    pub fn new(informers: &Arc<Informers>) -> Arc<GarbageCollector> {
        let this = Arc::new(GarbageCollector {
            graph: Mutex::new(Graph::default()),
            queue: WorkQueue::new("garbage_collector"),
        });
        this.watch(&informers.pods, action::PODS, "v1", "Pod");
        this.watch(&informers.nodes, action::NODES, "v1", "Node");
        this.watch(&informers.namespaces, action::NAMESPACES, "v1", "Namespace");
        this.watch(&informers.services, action::SERVICES, "v1", "Service");
        this.watch(&informers.endpoints, action::ENDPOINTS, "v1", "Endpoints");
        this.watch(&informers.endpoint_slices, action::ENDPOINT_SLICES, "discovery.k8s.io/v1", "EndpointSlice");
        this.watch(&informers.replica_sets, action::REPLICA_SETS, "apps/v1", "ReplicaSet");
        this.watch(&informers.deployments, action::DEPLOYMENTS, "apps/v1", "Deployment");
        this.watch(&informers.service_accounts, action::SERVICE_ACCOUNTS, "v1", "ServiceAccount");
        this.watch(&informers.leases, action::LEASES, "coordination.k8s.io/v1", "Lease");
        this
    }

    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn watch<T>(
        self: &Arc<Self>,
        informer: &Informer<T>,
        resource: ResourceRef,
        api_version: &'static str,
        kind: &'static str,
    ) where
        T: k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
    {
        let me = self.clone();
        informer.on_change(move |change| {
            let touched = match change {
                Change::Added(object) | Change::Updated { new: object, .. } => {
                    me.graph().upsert(Object::new(resource, api_version, kind, object.metadata()))
                }
                Change::Deleted(object) => me.graph().remove(object.metadata().uid.as_deref().unwrap_or_default()),
            };
            for uid in touched {
                me.queue.add(uid);
            }
        });
    }
}

impl Controller for GarbageCollector {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        let uids: Vec<String> = {
            let graph = self.graph();
            graph.uids().cloned().collect()
        };
        for uid in uids {
            self.queue.add(uid);
        }
    }

    async fn sync(&self, uid: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let (plan, object, absent_owners) = {
            let graph = self.graph();
            let plan = graph.sync(uid);
            let Some(object) = graph.get(uid).cloned() else { return Ok(None) };
            let absent: Vec<OwnerReference> =
                object.owner_references.iter().filter(|r| graph.get(&r.uid).is_none()).cloned().collect();
            (plan, object, absent)
        };
        if plan.actions.is_empty() {
            return Ok(plan.requeue_after);
        }
        if !object.deleting {
            for owner in &absent_owners {
                if owner_exists(client, &object, owner).await? {
                    return Ok(Some(CACHE_LAG_RETRY));
                }
            }
        }
        client.run_plan(&plan).await.map_err(|failure| failure.error)?;
        Ok(plan.requeue_after)
    }
}

/// Whether the API still has the owner (same UID). An owner of a kind Keel does not serve
/// counts as present: never delete on a reference that cannot be checked.
async fn owner_exists(client: &Client, dependent: &Object, owner: &OwnerReference) -> Result<bool, ClientError> {
    let Some(resource) = resources::by_kind(&owner.api_version, &owner.kind) else { return Ok(true) };
    let target = ObjectRef {
        resource: ResourceRef { group: resource.group, version: resource.version, plural: resource.plural },
        namespace: if resource.namespaced { dependent.namespace.clone() } else { None },
        name: owner.name.clone(),
    };
    match client.get(&target).await {
        Ok(found) => Ok(found.pointer("/metadata/uid").and_then(|u| u.as_str()) == Some(owner.uid.as_str())),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}
