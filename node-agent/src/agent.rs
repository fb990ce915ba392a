//! One agent process: N hollow nodes sharing one API client, one pod watch, one Node watch,
//! one runtime and one pool of pod workers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::api::{Client, watch};
use crate::backoff::Backoff;
use crate::lease::NodeLease;
use crate::model::{self, Node, Pod};
use crate::node::{self, HollowNode, Shape};
use crate::queue::WorkQueue;
use crate::runtime::Runtime;

/// Every this many lease renewals a node re-reports its status (10 s × 30 = the kubelet's
/// 5 min nodeStatusReportFrequency).
const REPORT_EVERY: u64 = 30;
/// Attempts per lease renewal before waiting for the next period (the kubelet's 5).
const RENEW_ATTEMPTS: usize = 5;

/// What the agent knows of one pod it runs (or ran).
#[derive(Clone, Debug)]
pub struct PodRecord {
    pub uid: String,
    pub sandbox_id: Option<String>,
    /// status.startTime: when the agent first generated status for the pod.
    pub start_time: String,
    /// The status last written, so an unchanged status is not written again.
    pub last_status: Option<Value>,
    /// Stopped for its deletion (containers and sandbox).
    pub stopped: bool,
    /// The final DELETE succeeded: nothing left to do until the watch drops the pod.
    pub deleted: bool,
}

/// The agent's view, behind one lock held only for map operations (never across an await).
#[derive(Default)]
pub struct View {
    /// The latest pods bound to our nodes, by `namespace/name`.
    pub pods: HashMap<String, Pod>,
    /// Our nodes' pod CIDRs, once assigned.
    pub cidrs: HashMap<String, String>,
    /// The pods the agent has acted on, by `namespace/name`.
    pub records: HashMap<String, PodRecord>,
    /// Consecutive failed syncs per key, for the retry back-off.
    pub failures: HashMap<String, u32>,
}

pub struct Agent<R: Runtime> {
    pub client: Client,
    pub runtime: R,
    /// `simulated`: the prefix of container IDs.
    pub runtime_name: String,
    pub nodes: HashMap<String, HollowNode>,
    pub shape: Shape,
    pub lease_duration_seconds: u32,
    pub view: Mutex<View>,
    pub queue: WorkQueue,
    /// Pod UID → key, for the runtime's notifications (shared with its callback).
    pub uid_keys: Arc<Mutex<HashMap<String, String>>>,
}

impl<R: Runtime> Agent<R> {
    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn remember_uid(&self, uid: &str, key: &str) {
        let mut map = self.uid_keys.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(uid.to_string(), key.to_string());
    }

    pub fn forget_uid(&self, uid: &str) {
        let mut map = self.uid_keys.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(uid);
    }

    /// Re-adopts what the runtime still runs for our nodes (after an agent restart).
    pub async fn adopt(&self) {
        let sandboxes = match self.runtime.list_sandboxes().await {
            Ok(sandboxes) => sandboxes,
            Err(error) => {
                tracing::warn!(%error, "listing the runtime's sandboxes failed; adopting nothing");
                return;
            }
        };
        let now = crate::status::time(jiff::Timestamp::now());
        for sandbox in sandboxes.into_iter().filter(|s| self.nodes.contains_key(&s.node)) {
            let key = format!("{}/{}", sandbox.namespace, sandbox.name);
            self.remember_uid(&sandbox.uid, &key);
            let record = PodRecord {
                uid: sandbox.uid,
                sandbox_id: Some(sandbox.id),
                start_time: now.clone(),
                last_status: None,
                stopped: !sandbox.ready,
                deleted: false,
            };
            self.view().records.insert(key, record);
        }
    }

    /// Applies one pod watch event to the view and queues the keys it touches.
    pub fn on_pod_event(&self, event: watch::Event) {
        let mut touched = Vec::new();
        {
            let mut view = self.view();
            match event {
                watch::Event::Listed(items) => {
                    let fresh: HashMap<String, Pod> = items
                        .into_iter()
                        .filter_map(model::decode::<Pod>)
                        .filter(|pod| self.nodes.contains_key(pod.node()))
                        .map(|pod| (pod.key(), pod))
                        .collect();
                    let mut keys: HashSet<String> = view.pods.keys().cloned().collect();
                    keys.extend(fresh.keys().cloned());
                    keys.extend(view.records.keys().cloned());
                    view.pods = fresh;
                    touched.extend(keys);
                }
                watch::Event::Applied(object) => {
                    if let Some(pod) = model::decode::<Pod>(object) {
                        let key = pod.key();
                        if self.nodes.contains_key(pod.node()) {
                            view.pods.insert(key.clone(), pod);
                            touched.push(key);
                        } else if view.pods.remove(&key).is_some() {
                            touched.push(key);
                        }
                    }
                }
                watch::Event::Deleted(object) => {
                    if let Some(pod) = model::decode::<Pod>(object) {
                        let key = pod.key();
                        if view.pods.remove(&key).is_some() || view.records.contains_key(&key) {
                            touched.push(key);
                        }
                    }
                }
            }
        }
        for key in touched {
            self.queue.add(&key);
        }
    }

    /// Applies one Node watch event: a pod CIDR appearing wakes that node's waiting pods.
    pub fn on_node_event(&self, event: watch::Event) {
        let objects = match event {
            watch::Event::Listed(items) => items,
            watch::Event::Applied(object) => vec![object],
            watch::Event::Deleted(_) => return,
        };
        let mut woken = Vec::new();
        {
            let mut view = self.view();
            for node in objects.into_iter().filter_map(model::decode::<Node>) {
                if !self.nodes.contains_key(&node.metadata.name) {
                    continue;
                }
                let Some(cidr) = node.pod_cidr() else { continue };
                if view.cidrs.get(&node.metadata.name) == Some(&cidr) {
                    continue;
                }
                tracing::info!(node = %node.metadata.name, %cidr, "pod CIDR assigned");
                view.cidrs.insert(node.metadata.name.clone(), cidr);
                woken.extend(view.pods.values().filter(|p| p.node() == node.metadata.name).map(Pod::key));
            }
        }
        for key in woken {
            self.queue.add(&key);
        }
    }

    /// One node's life: register, then renew its Lease every quarter of its duration, starting
    /// at `offset` into the period so an agent's nodes renew spread over it.
    pub async fn run_node(self: Arc<Self>, node: HollowNode, offset: Duration) {
        let mut backoff = Backoff::kubelet();
        let uid = loop {
            match node::register(&self.client, &node, &self.shape).await {
                Ok(uid) => break uid,
                Err(error) => {
                    tracing::warn!(node = %node.name, %error, "registering the node failed; retrying");
                    backoff.wait().await;
                }
            }
        };
        tracing::debug!(node = %node.name, "registered");
        let mut lease = NodeLease::new(&node.name, &uid, self.lease_duration_seconds);
        let period = Duration::from_secs(u64::from(self.lease_duration_seconds.max(4) / 4));
        self.renew(&node, &mut lease).await;
        tokio::time::sleep(offset).await;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewals: u64 = 0;
        loop {
            ticker.tick().await;
            self.renew(&node, &mut lease).await;
            renewals += 1;
            if renewals.is_multiple_of(REPORT_EVERY)
                && let Err(error) = node::report_status(&self.client, &node, &self.shape).await
            {
                tracing::warn!(node = %node.name, %error, "reporting node status failed");
            }
        }
    }

    async fn renew(&self, node: &HollowNode, lease: &mut NodeLease) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(7));
        for attempt in 1..=RENEW_ATTEMPTS {
            match lease.renew(&self.client).await {
                Ok(()) => return,
                Err(error) if attempt == RENEW_ATTEMPTS => {
                    tracing::warn!(node = %node.name, %error, "renewing the node lease failed; next period");
                }
                Err(error) => {
                    tracing::debug!(node = %node.name, %error, attempt, "renewing the node lease failed; retrying");
                    backoff.wait().await;
                }
            }
        }
    }
}
