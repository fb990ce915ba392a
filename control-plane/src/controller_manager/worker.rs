//! What every controller shares: a work queue of keys and a sync per key, run by workers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::client::{Client, ClientError};
use crate::workqueue::WorkQueue;

/// Failures of one key in a row after which each further one is logged as a warning.
const LOUD_AFTER_FAILURES: u32 = 5;

pub trait Controller: Send + Sync + 'static {
    fn queue(&self) -> &WorkQueue<String>;

    /// Enqueues every key the caches hold (on taking over: what changed before this master
    /// led was enqueued too, but a full pass costs little and repairs anything missed).
    fn resync(&self);

    /// Makes the world right for `key`; Ok(Some(d)): look again after `d` even if nothing
    /// changes. An error requeues the key with back-off, except [`ClientError::Fenced`], which
    /// ends this term's work.
    fn sync<'a>(
        &'a self,
        key: &'a str,
        client: &'a Client,
    ) -> impl Future<Output = Result<Option<Duration>, ClientError>> + Send + 'a;
}

/// Resyncs `controller` and starts `count` workers on it.
pub fn start<C: Controller>(workers: &mut JoinSet<ClientError>, controller: &Arc<C>, client: &Client, count: usize) {
    controller.resync();
    for _ in 0..count {
        workers.spawn(work(controller.clone(), client.clone()));
    }
}

/// One worker: returns only with the fenced error that ended the term.
async fn work<C: Controller>(controller: Arc<C>, client: Client) -> ClientError {
    let queue = controller.queue();
    loop {
        // The queues live as long as the master and are never shut down.
        let Some(key) = queue.next().await else { return std::future::pending().await };
        // Marks the key done even if this task is aborted mid-sync (leadership lost), so the
        // next leader's workers on this master are not blocked on it.
        let _done = Done { queue, key: &key };
        match controller.sync(&key, &client).await {
            Ok(None) => queue.forget(&key),
            Ok(Some(after)) => {
                queue.forget(&key);
                queue.add_after(key.clone(), after);
            }
            Err(error @ ClientError::Fenced(_)) => return error,
            Err(error) => {
                if queue.failures(&key) >= LOUD_AFTER_FAILURES {
                    tracing::warn!(queue = queue.name(), %key, %error, "sync keeps failing; retrying with back-off");
                } else {
                    tracing::debug!(queue = queue.name(), %key, %error, "sync failed; retrying with back-off");
                }
                queue.add_rate_limited(key.clone());
            }
        }
    }
}

struct Done<'a> {
    queue: &'a WorkQueue<String>,
    key: &'a String,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.queue.done(self.key);
    }
}

/// `<namespace>/<name>` of an object's metadata.
pub fn namespaced_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// Splits a `<namespace>/<name>` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// The current time for the pure syncs.
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
