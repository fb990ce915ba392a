//! The namespace controller's wiring: keys are namespace names. A terminating namespace's
//! content is listed live from the API (every namespaced resource, not only the cached ones),
//! deleted pods first, and the namespace finalized once nothing is left.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::endpoints::changed;
use super::worker::{Controller, now};
use crate::apiserver::resources::RESOURCES;
use crate::client::{Client, ClientError, collection_path};
use crate::components::Informers;
use crate::controllers::action::{Action, NAMESPACES, ObjectRef, PODS, Plan, ResourceRef};
use crate::controllers::namespace::{self as decision, Content, KUBERNETES_FINALIZER};
use crate::informer::Change;
use crate::workqueue::WorkQueue;

/// Objects read per resource per sync; a namespace with more is finished over several syncs.
const LIST_LIMIT: usize = 5_000;

pub struct Namespaces {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
}

impl Namespaces {
    pub fn new(informers: &Arc<Informers>) -> Arc<Namespaces> {
        let this = Arc::new(Namespaces { informers: informers.clone(), queue: WorkQueue::new("namespace") });
        let me = this.clone();
        informers.namespaces.on_change(move |change: &Change<'_, Namespace>| {
            let namespace = changed(change);
            if namespace.metadata.deletion_timestamp.is_some() {
                me.queue.add(namespace.metadata.name.clone().unwrap_or_default());
            }
        });
        let me = this.clone();
        // A pod gone from a terminating namespace may be the last thing it waited for.
        informers.pods.on_change(move |change| {
            if let Change::Deleted(pod) = change {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
                if me.informers.namespaces.get("", namespace).is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
                    me.queue.add(namespace.to_string());
                }
            }
        });
        this
    }
}

impl Controller for Namespaces {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        for namespace in self.informers.namespaces.list() {
            if namespace.metadata.deletion_timestamp.is_some() {
                self.queue.add(namespace.metadata.name.clone().unwrap_or_default());
            }
        }
    }

    async fn sync(&self, name: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let Some(namespace) = self.informers.namespaces.get("", name) else { return Ok(None) };
        if namespace.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let content = list_content(client, name).await?;
        let mut plan = decision::sync(&namespace, &content, now());
        let finalize = take_finalize(&mut plan);
        client.run_plan(&plan).await.map_err(|failure| failure.error)?;
        if finalize {
            finalize_namespace(client, name).await?;
        }
        Ok(plan.requeue_after)
    }
}

/// Everything still in the namespace.
async fn list_content(client: &Client, namespace: &str) -> Result<Vec<Content>, ClientError> {
    let mut content = Vec::new();
    for resource in RESOURCES.iter().filter(|r| r.namespaced) {
        let reference = ResourceRef { group: resource.group, version: resource.version, plural: resource.plural };
        let path = format!("{}?limit={LIST_LIMIT}", collection_path(reference, Some(namespace)));
        let list = client.request(Method::GET, &path, "application/json", None).await?;
        for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
            let Some(metadata) =
                item.get("metadata").and_then(|m| serde_json::from_value::<ObjectMeta>(m.clone()).ok())
            else {
                continue;
            };
            let grace = item.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64);
            content.push(Content::new(reference, &metadata, if reference == PODS { grace } else { None }));
        }
    }
    Ok(content)
}

/// Removes the plan's finalize step (a patch of `namespaces/<n>/finalize`); true if it had one.
/// The API serves `finalize` as PUT only, as Kubernetes does: [`finalize_namespace`].
fn take_finalize(plan: &mut Plan) -> bool {
    let before = plan.actions.len();
    plan.actions.retain(|action| !matches!(action, Action::Patch { subresource: Some("finalize"), .. }));
    plan.actions.len() != before
}

/// PUT `namespaces/<n>/finalize` without this controller's finalizer, from a fresh read.
async fn finalize_namespace(client: &Client, name: &str) -> Result<(), ClientError> {
    let target = ObjectRef { resource: NAMESPACES, namespace: None, name: name.to_string() };
    let mut namespace = client.get(&target).await?;
    let Some(finalizers) = namespace.pointer_mut("/spec/finalizers").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    finalizers.retain(|f| f.as_str() != Some(KUBERNETES_FINALIZER));
    client.update_subresource(&target, "finalize", &namespace).await.map(|_| ())
}
