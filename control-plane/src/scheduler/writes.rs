//! What the scheduler writes, all through the leader's fenced client: the `pods/binding` of
//! a placed pod, the `PodScheduled=False` condition of one no node fits, and the `Scheduled` /
//! `FailedScheduling` events.
//!
//! Events are best effort, as client-go's broadcaster makes them: they go through a bounded
//! queue to a few writers and are dropped (and counted) when it is full, so a scheduling burst
//! never waits on its own events.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::apiserver::object;
use crate::client::{Client, ClientError};
use crate::controllers::action::{Action, EventRecord, InvolvedObject, ObjectRef, PODS, PatchType};

/// Events waiting to be written; beyond this they are dropped.
const EVENT_QUEUE: usize = 1_000;
/// Events written at once.
const EVENT_WRITERS: usize = 8;

/// The sending side of the event queue.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<EventRecord>,
    /// `keel_scheduler_events_dropped_total`.
    dropped: Counter,
}

impl Events {
    /// The queue, and the future that writes it (it ends with the first fenced write, or when
    /// every sender is gone).
    pub fn start(client: Client, dropped: Counter) -> (Events, impl Future<Output = Result<(), ClientError>> + Send) {
        let (queue, receiver) = mpsc::channel(EVENT_QUEUE);
        let writer = async move {
            let mut records = tokio_stream::wrappers::ReceiverStream::new(receiver)
                .map(|record| {
                    let client = client.clone();
                    async move { client.run(&Action::Event(record)).await }
                })
                .buffer_unordered(EVENT_WRITERS);
            while let Some(written) = records.next().await {
                match written {
                    Ok(_) => {}
                    Err(error @ ClientError::Fenced(_)) => return Err(error),
                    Err(error) => tracing::debug!(%error, "a scheduler event was not recorded"),
                }
            }
            Ok(())
        };
        (Events { queue, dropped }, writer)
    }

    /// `Scheduled`: "Successfully assigned <ns>/<pod> to <node>".
    pub fn scheduled(&self, pod: &Pod, node: &str) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.send(pod, "Normal", "Scheduled", format!("Successfully assigned {namespace}/{name} to {node}"));
    }

    /// `FailedScheduling` with the fit error's message.
    pub fn failed(&self, pod: &Pod, message: &str) {
        self.send(pod, "Warning", "FailedScheduling", truncate_note(message));
    }

    fn send(&self, pod: &Pod, event_type: &'static str, reason: &str, message: String) {
        let involved = InvolvedObject {
            api_version: "v1".to_string(),
            kind: "Pod".to_string(),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let record = EventRecord { involved, event_type, reason: reason.to_string(), message };
        if self.queue.try_send(record).is_err() {
            self.dropped.inc();
        }
    }
}

/// Event notes are cut at 1024 characters, ending " ...", as Kubernetes cuts them.
fn truncate_note(message: &str) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message.to_string();
    }
    let mut end = MAX - 4;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &message[..end])
}

/// POST pods/<name>/binding, checked against the pod's uid.
pub async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<(), ClientError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    client.bind(namespace, name, uid, node).await.map(|_| ())
}

/// The PodScheduled condition a failed attempt leaves, or None when the pod already shows it
/// (Kubernetes skips the write when nothing changed).
pub fn unschedulable_condition(pod: &Pod, reason: &str, message: &str) -> Option<Value> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = current {
        if c.status == "False" && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message) {
            return None;
        }
    }
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.as_ref().map(|t| json!(t)),
        _ => None,
    };
    Some(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition.unwrap_or_else(|| json!(object::now_rfc3339())),
    }))
}

/// Strategic-merge PATCH of pods/<name>/status with `condition` (merged by type).
pub async fn set_condition(client: &Client, pod: &Pod, condition: Value) -> Result<(), ClientError> {
    let target = ObjectRef {
        resource: PODS,
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    };
    let patch = json!({ "status": { "conditions": [condition] } });
    client.patch(&target, Some("status"), PatchType::Strategic, &patch).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod_with(condition: Option<PodCondition>) -> Pod {
        Pod {
            status: Some(PodStatus { conditions: condition.map(|c| vec![c]), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn an_unchanged_condition_is_not_written_again() {
        let same = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/3 nodes are available".into()),
            ..Default::default()
        };
        assert_eq!(unschedulable_condition(&pod_with(Some(same)), "Unschedulable", "0/3 nodes are available"), None);
        let written = unschedulable_condition(&pod_with(None), "Unschedulable", "0/3 nodes are available");
        let written = written.expect("a first failure writes the condition");
        assert_eq!(written["status"], "False");
        assert_eq!(written["reason"], "Unschedulable");
        assert_eq!(written["message"], "0/3 nodes are available");
    }

    #[test]
    fn a_changed_message_is_written_and_keeps_the_transition_time() {
        let earlier = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/2 nodes are available".into()),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
            )),
            ..Default::default()
        };
        let written = unschedulable_condition(&pod_with(Some(earlier)), "Unschedulable", "0/3 nodes are available")
            .expect("a new message is written");
        assert_eq!(written["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn long_notes_are_cut_as_kubernetes_cuts_them() {
        let long = "x".repeat(2000);
        let cut = truncate_note(&long);
        assert_eq!(cut.len(), 1024);
        assert!(cut.ends_with(" ..."));
        assert_eq!(truncate_note("short"), "short");
    }
}
