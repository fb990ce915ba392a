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

/// Starts the informers, the electors and the supervised components; they stop when `stop`
/// turns true (electors release their Leases) or when the handles are aborted.
pub fn start(
    api: &Arc<Api>,
    master: &str,
    election: ElectionConfig,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, informers::MissingResource> {
    let (informers, tasks) = Informers::start(api)?;
    let _ = (&informers, master, election, &stop, SCHEDULER_AGENT, CONTROLLER_MANAGER_AGENT);
    // The scheduler: Runner::new(&informers) and `lead` under Component::Scheduler (below).
    // The controller manager: ControllerManager::new and `lead` under Component::ControllerManager.
    Ok(tasks)
}

#[allow(dead_code)] // used by the components wired next
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
        let elector = tokio::spawn(elector.run(leadership_tx, elector_stop));
        supervisor::supervise(component, client, leadership_rx, stop, start).await;
        let _ = elector.await;
    })
}
