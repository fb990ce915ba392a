//! The node lifecycle controller's wiring: one key, a pass over every node each
//! `--node-monitor-period` (and on node and node-Lease changes), carrying the pure monitor's
//! state from pass to pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::config::ControllerConfig;
use super::worker::{Controller, now};
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::node_lifecycle::{self as decision, Config, State};
use crate::workqueue::WorkQueue;

const KEY: &str = "nodes";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub struct NodeLifecycle {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
    state: Mutex<State>,
    config: Config,
    period: Duration,
}

impl NodeLifecycle {
    pub fn new(informers: &Arc<Informers>, config: &ControllerConfig) -> Arc<NodeLifecycle> {
        let this = Arc::new(NodeLifecycle {
            informers: informers.clone(),
            queue: WorkQueue::new("node_lifecycle_controller"),
            state: Mutex::new(State::default()),
            config: config.node_lifecycle(),
            period: config.node_monitor_period,
        });
        let me = this.clone();
        informers.nodes.on_change(move |_| me.queue.add(KEY.to_string()));
        this
    }
}

impl Controller for NodeLifecycle {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        self.queue.add(KEY.to_string());
    }

    async fn sync(&self, _key: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let nodes = self.informers.nodes.list();
        let node_refs: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
        let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in self.informers.pods.list() {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
                pods_by_node.entry(node).or_default().push(pod);
            }
        }
        let outcome = self.informers.leases.with(|index| {
            let previous = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match index.get(NODE_LEASE_NAMESPACE) {
                Some(leases) => decision::monitor(&node_refs, leases, &pods_by_node, &previous, &self.config, now()),
                None => decision::monitor(
                    &node_refs,
                    &HashMap::<String, Arc<k8s_openapi::api::coordination::v1::Lease>>::new(),
                    &pods_by_node,
                    &previous,
                    &self.config,
                    now(),
                ),
            }
        });
        let master_disruption = outcome.state.master_disruption;
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.master_disruption != master_disruption {
                tracing::warn!(master_disruption, "node lifecycle: every zone is fully disrupted: {master_disruption}");
            }
            *state = outcome.state;
        }
        client.run_plan(&outcome.plan).await.map_err(|failure| failure.error)?;
        let after = outcome.plan.requeue_after.map_or(self.period, |after| after.min(self.period));
        Ok(Some(after))
    }
}
