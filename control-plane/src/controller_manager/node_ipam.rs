//! The node IPAM controller's wiring: one key, a pass over every node when nodes change,
//! giving each a `spec.podCIDR` from `--cluster-cidr`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;

use super::worker::Controller;
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::node_ipam::{self as decision, Config, State};
use crate::workqueue::WorkQueue;

const KEY: &str = "nodes";

pub struct NodeIpam {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
    state: Mutex<State>,
    config: Config,
}

impl NodeIpam {
    pub fn new(informers: &Arc<Informers>, config: Config) -> Arc<NodeIpam> {
        let this = Arc::new(NodeIpam {
            informers: informers.clone(),
            queue: WorkQueue::new("node_ipam_controller"),
            state: Mutex::new(State::default()),
            config,
        });
        let me = this.clone();
        informers.nodes.on_change(move |_| me.queue.add(KEY.to_string()));
        this
    }
}

impl Controller for NodeIpam {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        self.queue.add(KEY.to_string());
    }

    async fn sync(&self, _key: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let nodes = self.informers.nodes.list();
        let node_refs: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
        let outcome = {
            let previous = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            decision::sync(&node_refs, &previous, &self.config)
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = outcome.state;
        client.run_plan(&outcome.plan).await.map_err(|failure| failure.error)?;
        Ok(outcome.plan.requeue_after)
    }
}
