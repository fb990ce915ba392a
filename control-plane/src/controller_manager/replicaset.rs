//! The ReplicaSet controller's wiring: keys `<ns>/<name>`; pod events keep the expectations
//! and enqueue the owning (or, for orphans, the selecting) ReplicaSets.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::worker::{Controller, namespaced_key, now, split_key};
use crate::client::{Client, ClientError, PlanFailure};
use crate::components::Informers;
use crate::controllers::action::{Action, PODS};
use crate::controllers::replicaset::{
    self as decision, Expectations, FailureReason, ManageFailure, controller_of, labels_of, selector_of,
};
use crate::informer::Change;
use crate::workqueue::WorkQueue;

pub struct ReplicaSets {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
    expectations: Mutex<Expectations>,
}

impl ReplicaSets {
    pub fn new(informers: &Arc<Informers>) -> Arc<ReplicaSets> {
        let this = Arc::new(ReplicaSets {
            informers: informers.clone(),
            queue: WorkQueue::new("replicaset"),
            expectations: Mutex::new(Expectations::default()),
        });
        let me = this.clone();
        informers.replica_sets.on_change(move |change| match change {
            Change::Added(rs) | Change::Updated { new: rs, .. } => me.queue.add(namespaced_key(&rs.metadata)),
            Change::Deleted(rs) => {
                let key = namespaced_key(&rs.metadata);
                me.expectations().forget(&key);
                me.queue.add(key);
            }
        });
        let me = this.clone();
        informers.pods.on_change(move |change| me.pod_changed(change));
        this
    }

    fn expectations(&self) -> MutexGuard<'_, Expectations> {
        self.expectations.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if let Some(owner) = owner_key(pod) {
                    self.expectations().observe_creation(&owner);
                }
                self.enqueue_for(pod);
            }
            Change::Updated { old, new } => {
                if new.metadata.deletion_timestamp.is_some() && old.metadata.deletion_timestamp.is_none() {
                    self.observe_deletion(new);
                }
                if old.metadata.labels != new.metadata.labels || owner_key(old) != owner_key(new) {
                    self.enqueue_for(old);
                }
                self.enqueue_for(new);
            }
            Change::Deleted(pod) => {
                self.observe_deletion(pod);
                self.enqueue_for(pod);
            }
        }
    }

    fn observe_deletion(&self, pod: &Pod) {
        if let (Some(owner), Some(uid)) = (owner_key(pod), pod.metadata.uid.as_deref()) {
            self.expectations().observe_deletion(&owner, uid);
        }
    }

    /// The pod's ReplicaSet, or every ReplicaSet of its namespace that could adopt it.
    fn enqueue_for(&self, pod: &Pod) {
        match controller_of(&pod.metadata) {
            Some(owner) if owner.kind == "ReplicaSet" => {
                self.queue.add(format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), owner.name))
            }
            Some(_) => {}
            None => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
                for rs in self.informers.replica_sets.list_namespace(namespace) {
                    let selects = rs
                        .spec
                        .as_ref()
                        .and_then(|spec| selector_of(&spec.selector))
                        .is_some_and(|selector| !selector.is_empty() && selector.matches(labels_of(&pod.metadata)));
                    if selects {
                        self.queue.add(namespaced_key(&rs.metadata));
                    }
                }
            }
        }
    }

    /// After a failed plan: the pod writes that failed or never ran will not be seen by the
    /// informer, so they count as observed; a failed pod write becomes the ReplicaFailure
    /// condition and a Warning event.
    async fn settle_failure(
        &self,
        rs: &ReplicaSet,
        key: &str,
        plan_actions: &[Action],
        failure: &PlanFailure,
        client: &Client,
    ) {
        let mut failed_pod_write = None;
        {
            let mut expectations = self.expectations();
            for (index, action) in plan_actions.iter().enumerate().skip(failure.index) {
                let reason = match action {
                    Action::Create { resource, .. } if *resource == PODS => {
                        expectations.observe_creation(key);
                        FailureReason::FailedCreate
                    }
                    Action::Delete { target, uid: Some(uid), .. } if target.resource == PODS => {
                        expectations.observe_deletion(key, uid);
                        FailureReason::FailedDelete
                    }
                    _ => continue,
                };
                if index == failure.index {
                    failed_pod_write = Some(reason);
                }
            }
            if let Some(reason) = failed_pod_write {
                expectations.record_failure(key, ManageFailure { reason, message: error_message(&failure.error) });
            }
        }
        if failed_pod_write.is_some() {
            let recorded = self.expectations().failure(key).cloned();
            if let Some(recorded) = recorded {
                let _ = client.run(&Action::Event(decision::failure_event(rs, &recorded))).await;
            }
        }
    }
}

impl Controller for ReplicaSets {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        for rs in self.informers.replica_sets.list() {
            self.queue.add(namespaced_key(&rs.metadata));
        }
    }

    async fn sync(&self, key: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let (namespace, name) = split_key(key);
        let Some(rs) = self.informers.replica_sets.get(namespace, name) else { return Ok(None) };
        let siblings = self.informers.replica_sets.list_namespace(namespace);
        let pods = self.informers.pods.list_namespace(namespace);
        let sibling_refs: Vec<&ReplicaSet> = siblings.iter().map(Arc::as_ref).collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let now = now();
        let plan = {
            let mut expectations = self.expectations();
            let plan = decision::sync(&rs, &sibling_refs, &pod_refs, &expectations, now);
            expectations.expect_plan(key, &plan, now);
            plan
        };
        match client.run_plan(&plan).await {
            Ok(()) => {
                let wrote_pods = plan.actions.iter().any(|a| is_pod_write(a));
                if wrote_pods {
                    self.expectations().clear_failure(key);
                }
                Ok(plan.requeue_after)
            }
            Err(failure) => {
                if !matches!(failure.error, ClientError::Fenced(_)) {
                    self.settle_failure(&rs, key, &plan.actions, &failure, client).await;
                }
                Err(failure.error)
            }
        }
    }
}

fn is_pod_write(action: &Action) -> bool {
    match action {
        Action::Create { resource, .. } => *resource == PODS,
        Action::Delete { target, .. } => target.resource == PODS,
        _ => false,
    }
}

/// `<ns>/<rs>` of the ReplicaSet controlling the pod.
fn owner_key(pod: &Pod) -> Option<String> {
    let owner = controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet")?;
    Some(format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), owner.name))
}

/// The API's message, as Kubernetes puts it in conditions and events.
pub fn error_message(error: &ClientError) -> String {
    match error {
        ClientError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
