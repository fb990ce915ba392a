//! Runs a component (the scheduler, the controller manager) exactly while this master holds
//! its Lease, with a client fenced by the current term.
//!
//! # Invariants
//! - The component's task is aborted the moment leadership is withdrawn or changes term: no
//!   work of an old term continues, and whatever it still had in flight is refused by the store
//!   (the fence).
//! - A component that ends with a fenced write is not restarted under the same term: the store
//!   said that term is over, whatever the elector still believes.

use std::future::Future;

use tokio::sync::watch;

use crate::apiserver::storage::{Component, Fence};
use crate::client::{Client, ClientError};

/// Leads `component` with `start(client.fenced(term))` whenever `leadership` holds a term,
/// until `stop`.
pub async fn supervise<F, Fut>(
    component: Component,
    client: Client,
    mut leadership: watch::Receiver<Option<Fence>>,
    mut stop: watch::Receiver<bool>,
    start: F,
) where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = ClientError> + Send + 'static,
{
    let name = component.lease_name();
    let status = client.metrics().leader_status.get_or_create(&crate::metrics::NameLabels { name }).clone();
    let mut running: Option<(Fence, tokio::task::JoinHandle<ClientError>)> = None;
    let mut fenced_out: Option<Fence> = None;
    loop {
        let term = *leadership.borrow_and_update();
        let stale = match (&running, term) {
            (Some((current, _)), Some(term)) => *current != term,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if stale {
            if let Some((fence, task)) = running.take() {
                task.abort();
                tracing::info!(component = name, fence = fence.revision, "stopped work of the old term");
            }
        }
        if let (None, Some(term)) = (&running, term) {
            if fenced_out != Some(term) {
                tracing::info!(component = name, fence = term.revision, "starting work");
                running = Some((term, tokio::spawn(start(client.fenced(term)))));
            }
        }
        status.set(i64::from(running.is_some()));
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { break },
            _ = stop.wait_for(|stopping| *stopping) => break,
            ended = async {
                match running.as_mut() {
                    Some((_, task)) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                let Some((fence, _)) = running.take() else { continue };
                match ended {
                    Ok(error) => {
                        tracing::warn!(component = name, fence = fence.revision, %error, "work ended; not restarting under this term");
                        fenced_out = Some(fence);
                    }
                    Err(join) if join.is_panic() => {
                        tracing::error!(component = name, fence = fence.revision, "work panicked; not restarting under this term");
                        fenced_out = Some(fence);
                    }
                    Err(_) => {}
                }
            }
        }
    }
    if let Some((_, task)) = running.take() {
        task.abort();
    }
    status.set(0);
}
