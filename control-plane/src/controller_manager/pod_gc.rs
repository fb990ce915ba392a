//! The pod garbage collector's wiring: one key, a pass over every pod every 20 s (Kubernetes'
//! `gcCheckPeriod`) and when a node goes away.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::config::ControllerConfig;
use super::worker::{Controller, now};
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::pod_gc::{self as decision, Config, State};
use crate::informer::Change;
use crate::workqueue::WorkQueue;

const KEY: &str = "pods";
const PERIOD: Duration = Duration::from_secs(20);

pub struct PodGc {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
    state: Mutex<State>,
    config: Config,
}

impl PodGc {
    pub fn new(informers: &Arc<Informers>, config: &ControllerConfig) -> Arc<PodGc> {
        let this = Arc::new(PodGc {
            informers: informers.clone(),
            queue: WorkQueue::new("pod_garbage_collector"),
            state: Mutex::new(State::default()),
            config: config.pod_gc(),
        });
        let me = this.clone();
        informers.nodes.on_change(move |change| {
            if let Change::Deleted(_) = change {
                me.queue.add(KEY.to_string());
            }
        });
        this
    }
}

impl Controller for PodGc {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        self.queue.add(KEY.to_string());
    }

    async fn sync(&self, _key: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let pods = self.informers.pods.list();
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let nodes: HashSet<String> =
            self.informers.nodes.list().iter().filter_map(|n| n.metadata.name.clone()).collect();
        let outcome = {
            let previous = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            decision::sync(&pod_refs, &nodes, &previous, &self.config, now())
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = outcome.state;
        client.run_plan(&outcome.plan).await.map_err(|failure| failure.error)?;
        Ok(Some(outcome.plan.requeue_after.map_or(PERIOD, |after| after.min(PERIOD))))
    }
}
