//! The controller manager: every controller's work queue, fed by informer callbacks on every
//! master, and the workers that drain them while this master holds
//! `kube-system/kube-controller-manager`.

use std::sync::Arc;

use crate::apiserver::Api;
use crate::client::{Client, ClientError};
use crate::components::Informers;

pub struct ControllerManager {
    _api: Arc<Api>,
    _informers: Arc<Informers>,
}

impl ControllerManager {
    /// Registers the informer callbacks (on every master, leading or not).
    pub fn new(api: &Arc<Api>, informers: &Arc<Informers>) -> Arc<ControllerManager> {
        Arc::new(ControllerManager { _api: api.clone(), _informers: informers.clone() })
    }

    /// Runs every controller until a write is fenced (the term is over) or the task is aborted.
    pub async fn lead(self: Arc<Self>, client: Client) -> ClientError {
        let _ = client;
        std::future::pending().await
    }
}
