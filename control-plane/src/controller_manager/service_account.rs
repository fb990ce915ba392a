//! The ServiceAccount controller's wiring: keys are namespace names; the `default`
//! ServiceAccount of every active namespace, re-created if deleted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;

use super::endpoints::changed;
use super::worker::Controller;
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::controllers::service_account as decision;
use crate::informer::Change;
use crate::workqueue::WorkQueue;

const DEFAULT: &str = "default";

pub struct ServiceAccounts {
    informers: Arc<Informers>,
    queue: WorkQueue<String>,
}

impl ServiceAccounts {
    pub fn new(informers: &Arc<Informers>) -> Arc<ServiceAccounts> {
        let this = Arc::new(ServiceAccounts { informers: informers.clone(), queue: WorkQueue::new("serviceaccount") });
        let me = this.clone();
        informers.namespaces.on_change(move |change| {
            me.queue.add(changed(change).metadata.name.clone().unwrap_or_default());
        });
        let me = this.clone();
        informers.service_accounts.on_change(move |change: &Change<'_, ServiceAccount>| {
            if let Change::Deleted(account) = change {
                if account.metadata.name.as_deref() == Some(DEFAULT) {
                    me.queue.add(account.metadata.namespace.clone().unwrap_or_default());
                }
            }
        });
        this
    }
}

impl Controller for ServiceAccounts {
    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn resync(&self) {
        for namespace in self.informers.namespaces.list() {
            self.queue.add(namespace.metadata.name.clone().unwrap_or_default());
        }
    }

    async fn sync(&self, name: &str, client: &Client) -> Result<Option<Duration>, ClientError> {
        let Some(namespace) = self.informers.namespaces.get("", name) else { return Ok(None) };
        let existing = self.informers.service_accounts.get(name, DEFAULT);
        let plan = decision::sync(&namespace, existing.as_deref());
        match client.run_plan(&plan).await {
            Ok(()) => Ok(None),
            // The cache had not seen it yet.
            Err(failure) if failure.error.is_already_exists() => Ok(None),
            Err(failure) => Err(failure.error),
        }
    }
}
