//! The control plane's active components on a master: the shared informers, and per
//! component an elector and a supervisor that runs the component while this master leads.
//!
//! ```text
//! Informers (always) ──callbacks──► scheduler cache/queue, controller work queues (always)
//! Elector(kube-scheduler) ──Some(fence)──► supervisor ──► Scheduler::lead(client.fenced(fence))
//! Elector(kube-controller-manager) ─────► supervisor ──► ControllerManager::lead(...)
//! ```
//! Keeping the caches and queues current on every master means a new leader starts from warm
//! state: it needs no list, only the term.

pub mod informers;
pub mod supervisor;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::apiserver::Api;
use crate::apiserver::storage::Component;
use crate::client::Client;
use crate::election::{ElectionConfig, Elector, identity};
pub use informers::Informers;

/// User agents, which are also the default field managers of the components' writes.
pub const SCHEDULER_AGENT: &str = "kube-scheduler";
pub const CONTROLLER_MANAGER_AGENT: &str = "kube-controller-manager";

/// The running components of one master.
pub struct Components {
    stop: watch::Sender<bool>,
    /// One per component: its elector and supervisor.
    electors: Vec<JoinHandle<()>>,
    informers: Vec<JoinHandle<()>>,
}

impl Components {
    /// Stops the components' work and releases their Leases (so another master takes over at
    /// once rather than after a lease duration), by `deadline`; then the informers.
    pub async fn stop_by(self, deadline: tokio::time::Instant) {
        let _ = self.stop.send(true);
        for mut elector in self.electors {
            if tokio::time::timeout_at(deadline, &mut elector).await.is_err() {
                elector.abort();
            }
        }
        for informer in self.informers {
            informer.abort();
        }
    }
}

/// Starts the informers and, per component, an elector and the supervised component.
pub fn start(
    api: &Arc<Api>,
    master: &str,
    election: ElectionConfig,
    controllers: &crate::controller_manager::ControllerConfig,
    api_address: std::net::SocketAddr,
) -> Result<Components, informers::MissingResource> {
    let (stop_tx, stop) = watch::channel(false);
    let (informers, unstarted) = Informers::new(api)?;
    let mut tasks = Vec::new();
    let scheduler = crate::scheduler::runner::Runner::new(&informers, api.metrics.clone());
    tasks.push(elect(
        api,
        Component::Scheduler,
        master,
        election,
        stop.clone(),
        Client::new(api.clone(), "system:kube-scheduler", SCHEDULER_AGENT),
        move |client| scheduler.clone().lead(client),
    ));
    let controllers =
        crate::controller_manager::ControllerManager::new(&informers, controllers, api_address, &api.metrics);
    tasks.push(elect(
        api,
        Component::ControllerManager,
        master,
        election,
        stop,
        Client::new(api.clone(), "system:kube-controller-manager", CONTROLLER_MANAGER_AGENT),
        move |client| controllers.clone().lead(client),
    ));
    // Every callback is registered: now the informers may read.
    let informer_tasks = unstarted.spawn();
    Ok(Components { stop: stop_tx, electors: tasks, informers: informer_tasks })
}

fn elect<F, Fut>(
    api: &Arc<Api>,
    component: Component,
    master: &str,
    config: ElectionConfig,
    stop: watch::Receiver<bool>,
    client: Client,
    start: F,
) -> JoinHandle<()>
where
    F: Fn(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = crate::client::ClientError> + Send + 'static,
{
    let elector = Elector { api: api.clone(), component, identity: identity(master), config };
    let (leadership_tx, leadership_rx) = watch::channel(None);
    let elector_stop = stop.clone();
    tokio::spawn(async move {
        // Aborting this task (a stop past its budget) aborts the elector too: its last Lease
        // release may wait for a quorum that is gone, and it holds the API (and so the store).
        let mut elector = AbortOnDrop(tokio::spawn(elector.run(leadership_tx, elector_stop)));
        supervisor::supervise(component, client, leadership_rx, stop, start).await;
        let _ = (&mut elector.0).await;
    })
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
