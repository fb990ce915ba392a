//! The pod workers: each takes a pod key from the queue and makes the runtime and the API agree
//! with the pod as last seen (level-triggered: what happened in between does not matter).
//!
//! - bound to one of our nodes, not terminal, not being deleted: create the sandbox once the
//!   node has a pod CIDR (until then the pod is reported Pending, ContainerCreating), start its
//!   containers, write status whenever it differs from the last status written;
//! - being deleted (deletionTimestamp): stop the containers within the grace period, stop the
//!   sandbox, write the terminal status, then `DELETE` with `gracePeriodSeconds: 0` and the UID
//!   as a precondition, as the kubelet does;
//! - gone from the API, or replaced by a pod of another UID: stop and remove what runs.
//!
//! A failed sync is retried with per-key exponential back-off (100 ms doubling to 30 s).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use jiff::Timestamp;
use serde_json::json;

use crate::agent::{Agent, PodRecord};
use crate::api::ApiError;
use crate::model::Pod;
use crate::runtime::{ContainerConfig, ContainerState, Runtime, RuntimeError, SandboxConfig, SandboxStatus};
use crate::status;

const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("API: {0}")]
    Api(#[from] ApiError),
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
}

/// One worker, forever.
pub async fn work<R: Runtime>(agent: Arc<Agent<R>>) {
    loop {
        let key = agent.queue.next().await;
        let outcome = sync(&agent, &key).await;
        let retry = {
            let mut view = agent.view();
            match outcome {
                Ok(()) => {
                    view.failures.remove(&key);
                    None
                }
                Err(error) => {
                    let failures = view.failures.entry(key.clone()).or_insert(0);
                    *failures = failures.saturating_add(1);
                    let delay = RETRY_INITIAL.saturating_mul(1 << (*failures - 1).min(16)).min(RETRY_MAX);
                    tracing::warn!(pod = %key, %error, ?delay, "pod sync failed; retrying");
                    Some(delay)
                }
            }
        };
        agent.queue.done(&key);
        if let Some(delay) = retry {
            agent.queue.add_after(&key, delay);
        }
    }
}

async fn sync<R: Runtime>(agent: &Agent<R>, key: &str) -> Result<(), SyncError> {
    let (pod, record) = {
        let view = agent.view();
        (view.pods.get(key).cloned(), view.records.get(key).cloned())
    };
    let record = match (pod.as_ref(), record) {
        (None, None) => return Ok(()),
        (None, Some(record)) => {
            teardown(agent, &record).await?;
            forget(agent, key, &record);
            return Ok(());
        }
        (Some(pod), Some(record)) if record.uid != pod.metadata.uid => {
            teardown(agent, &record).await?;
            forget(agent, key, &record);
            None
        }
        (Some(_), record) => record,
    };
    let Some(pod) = pod else { return Ok(()) };
    if record.as_ref().is_some_and(|r| r.deleted) {
        return Ok(());
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return terminate(agent, key, &pod, record).await;
    }
    if pod.is_terminal() && record.as_ref().is_none_or(|r| r.sandbox_id.is_none()) {
        // Finished before we saw it (or before a restart): nothing to run.
        return Ok(());
    }
    run(agent, key, &pod, record).await
}

fn new_record(pod: &Pod) -> PodRecord {
    PodRecord {
        uid: pod.metadata.uid.clone(),
        sandbox_id: None,
        start_time: pod.status.start_time.clone().unwrap_or_else(|| status::time(Timestamp::now())),
        last_status: None,
        stopped: false,
        deleted: false,
    }
}

fn store<R: Runtime>(agent: &Agent<R>, key: &str, record: &PodRecord) {
    agent.view().records.insert(key.to_string(), record.clone());
}

fn forget<R: Runtime>(agent: &Agent<R>, key: &str, record: &PodRecord) {
    agent.view().records.remove(key);
    agent.forget_uid(&record.uid);
}

async fn run<R: Runtime>(agent: &Agent<R>, key: &str, pod: &Pod, record: Option<PodRecord>) -> Result<(), SyncError> {
    let mut record = record.unwrap_or_else(|| new_record(pod));
    agent.remember_uid(&record.uid, key);
    if record.sandbox_id.is_none() {
        let cidr = agent.view().cidrs.get(pod.node()).cloned();
        if let Some(cidr) = cidr {
            let sandbox = agent
                .runtime
                .run_sandbox(SandboxConfig {
                    uid: pod.metadata.uid.clone(),
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    node: pod.node().to_string(),
                    pod_cidr: cidr,
                    annotations: pod.metadata.annotations.clone(),
                })
                .await?;
            record.sandbox_id = Some(sandbox.id.clone());
            store(agent, key, &record);
            for container in &pod.spec.containers {
                let config = ContainerConfig { name: container.name.clone(), image: container.image.clone() };
                agent.runtime.start_container(&sandbox.id, config).await?;
            }
        } else {
            tracing::debug!(pod = %key, node = pod.node(), "waiting for the node's pod CIDR");
        }
    }
    let sandbox = match &record.sandbox_id {
        Some(id) => Some(agent.runtime.sandbox_status(id).await?),
        None => None,
    };
    write_status(agent, key, pod, &mut record, sandbox.as_ref(), false).await?;
    // A pod whose containers all finished for good (restartPolicy Never/OnFailure) gives its
    // sandbox back, as the kubelet kills the sandbox of a terminal pod.
    let phase = record.last_status.as_ref().and_then(|s| s.get("phase")).and_then(|p| p.as_str());
    if matches!(phase, Some("Succeeded" | "Failed"))
        && !record.stopped
        && let Some(id) = &record.sandbox_id
    {
        agent.runtime.stop_sandbox(id).await?;
        record.stopped = true;
        store(agent, key, &record);
    }
    Ok(())
}

async fn terminate<R: Runtime>(
    agent: &Agent<R>,
    key: &str,
    pod: &Pod,
    record: Option<PodRecord>,
) -> Result<(), SyncError> {
    let mut record = record.unwrap_or_else(|| new_record(pod));
    if let (Some(id), false) = (record.sandbox_id.clone(), record.stopped) {
        let grace = Duration::from_secs(pod.grace_seconds() as u64);
        let sandbox = agent.runtime.sandbox_status(&id).await?;
        for container in sandbox.containers.iter().filter(|c| !matches!(c.state, ContainerState::Exited { .. })) {
            agent.runtime.stop_container(&container.id, grace).await?;
        }
        agent.runtime.stop_sandbox(&id).await?;
        record.stopped = true;
        store(agent, key, &record);
    }
    if let Some(id) = record.sandbox_id.clone() {
        let sandbox = agent.runtime.sandbox_status(&id).await?;
        write_status(agent, key, pod, &mut record, Some(&sandbox), true).await?;
    }
    delete(agent, pod).await?;
    if let Some(id) = &record.sandbox_id {
        agent.runtime.remove_sandbox(id).await?;
    }
    record.sandbox_id = None;
    record.deleted = true;
    store(agent, key, &record);
    Ok(())
}

/// Stops and removes a sandbox whose pod is gone.
async fn teardown<R: Runtime>(agent: &Agent<R>, record: &PodRecord) -> Result<(), SyncError> {
    let Some(id) = &record.sandbox_id else { return Ok(()) };
    match agent.runtime.stop_sandbox(id).await {
        Ok(()) | Err(RuntimeError::SandboxNotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    agent.runtime.remove_sandbox(id).await?;
    Ok(())
}

/// PATCHes `pods/<name>/status` if the status differs from the last one written.
async fn write_status<R: Runtime>(
    agent: &Agent<R>,
    key: &str,
    pod: &Pod,
    record: &mut PodRecord,
    sandbox: Option<&SandboxStatus>,
    terminating: bool,
) -> Result<(), SyncError> {
    let host_ip = agent.nodes.get(pod.node()).map(|n| n.ip.to_string()).unwrap_or_default();
    let generated = status::generate(&status::Inputs {
        pod,
        sandbox,
        host_ip: &host_ip,
        start_time: &record.start_time,
        runtime_name: &agent.runtime_name,
        terminating,
        now: Timestamp::now(),
    });
    if record.last_status.as_ref() == Some(&generated) {
        return Ok(());
    }
    let body = serde_json::to_vec(&status::patch(pod, &generated)).map_err(|e| ApiError::Decode(e.to_string()))?;
    let path = format!("/api/v1/namespaces/{}/pods/{}/status", pod.metadata.namespace, pod.metadata.name);
    let response = agent
        .client
        .request(Method::PATCH, &path, Some("application/strategic-merge-patch+json"), Bytes::from(body))
        .await?;
    match response.status.as_u16() {
        // Deleted meanwhile, or a different pod now has the name: the watch will tell.
        404 | 409 => return Ok(()),
        _ if !response.status.is_success() => return Err(response.into_error().into()),
        _ => {}
    }
    tracing::debug!(pod = %key, phase = ?generated.get("phase"), "pod status written");
    record.last_status = Some(generated);
    store(agent, key, record);
    Ok(())
}

/// The kubelet's final removal: `DELETE` with grace 0 and the UID as a precondition.
async fn delete<R: Runtime>(agent: &Agent<R>, pod: &Pod) -> Result<(), SyncError> {
    let options = json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": pod.metadata.uid},
    });
    let body = serde_json::to_vec(&options).map_err(|e| ApiError::Decode(e.to_string()))?;
    let path = format!("/api/v1/namespaces/{}/pods/{}", pod.metadata.namespace, pod.metadata.name);
    let response = agent.client.request(Method::DELETE, &path, Some("application/json"), Bytes::from(body)).await?;
    match response.status.as_u16() {
        // Gone already, or the name now belongs to another pod.
        404 | 409 => Ok(()),
        _ if response.status.is_success() => {
            tracing::debug!(pod = %pod.key(), "pod deleted");
            Ok(())
        }
        _ => Err(response.into_error().into()),
    }
}
