//! The listener: TLS (HTTP/2 or HTTP/1.1 by ALPN), the client certificate turned into an
//! identity, a bound on connections and on handshake time, and the drain when the master stops.
//!
//! Stopping, in order: the listener closes; every connection is told to finish (HTTP/1.1:
//! close after the response in progress; HTTP/2: GOAWAY, no new streams); requests whose
//! handler has not answered yet get [`DRAIN_TIMEOUT`]; connections then get [`ANSWER_FLUSH`] to
//! write the last answers and close by themselves; whatever is left is cut, which ends the
//! long watches (their clients re-watch through another master, from their resourceVersion).
//! A watch counts as answered once its stream has started: it is not waited for.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{Api, router};
use crate::pki;

/// Open connections at most; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 4_096;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests being handled when the server stops get this long to be answered. A request
/// normally takes milliseconds; one waiting longer waits for a store that is not answering,
/// and its client gets what it would get after a crash (a closed connection).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Once every handler has answered, connections get this long to write the answers out and
/// close before the rest (watches) are cut.
pub const ANSWER_FLUSH: Duration = Duration::from_millis(100);
/// Aborted connection tasks end at their next poll; waiting for them is bounded anyway.
const CUT_TIMEOUT: Duration = Duration::from_millis(250);

/// Serves the API on `listener` until `stop` turns true, then drains (module docs) and returns.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shared = Arc::new(Shared::default());
    let mut connections = JoinSet::new();
    loop {
        // Ended connections are reaped here, so the set holds at most the open ones.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            // Err: the sender is gone, which also means stop.
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((stream, peer, permit)) = accepted else { break };
        let (acceptor, api, shared) = (acceptor.clone(), api.clone(), shared.clone());
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, acceptor, api, &shared).await;
        });
    }
    drop(listener);
    drain(connections, &shared).await;
}

/// The next connection and its permit; None if the permits are closed (never: they live here).
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, std::net::SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = permits.clone().acquire_owned().await.ok()?;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, peer, permit));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accepting an API connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: TLS, identity, HTTP until the client leaves or the server stops.
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    api: Arc<Api>,
    shared: &Arc<Shared>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    let identity = pki::client_identity(tls.get_ref().1.peer_certificates());
    let calls = shared.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let (api, identity) = (api.clone(), identity.clone());
        let handling = calls.enter();
        async move {
            let response = router::serve(api, identity, request.map(Body::new)).await;
            drop(handling);
            Ok::<_, Infallible>(response)
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut stopping = shared.stopping.subscribe();
    let stopping = async move {
        // Err: the server is gone, which also means stop.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%peer, %error, "API connection ended");
    }
}

/// Stops the connections in the order of the module docs.
async fn drain(mut connections: JoinSet<()>, shared: &Shared) {
    let started = Instant::now();
    shared.stopping.send_replace(true);
    shared.answered(started + DRAIN_TIMEOUT).await;
    let flushed_by = Instant::now() + ANSWER_FLUSH;
    while let Ok(Some(_)) = tokio::time::timeout_at(flushed_by, connections.join_next()).await {}
    let (unanswered, cut) = (shared.handling(), connections.len());
    connections.abort_all();
    let cut_by = Instant::now() + CUT_TIMEOUT;
    while let Ok(Some(_)) = tokio::time::timeout_at(cut_by, connections.join_next()).await {}
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, unanswered, cut, "API server stopped");
}

/// What the connections share with the drain.
#[derive(Default)]
struct Shared {
    /// Requests whose handler has not answered yet.
    handling: AtomicUsize,
    /// Woken when `handling` falls to zero.
    idle: Notify,
    /// True once the server stops: every connection finishes gracefully.
    stopping: watch::Sender<bool>,
}

impl Shared {
    fn enter(self: &Arc<Self>) -> Handling {
        self.handling.fetch_add(1, Ordering::SeqCst);
        Handling(self.clone())
    }

    fn handling(&self) -> usize {
        self.handling.load(Ordering::SeqCst)
    }

    /// Waits until no handler is running, or `deadline`.
    async fn answered(&self, deadline: Instant) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so the count falling to zero right after wakes us.
            notified.as_mut().enable();
            if self.handling() == 0 || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// One request being handled; dropping it (answered, or the connection gone) uncounts it.
struct Handling(Arc<Shared>);

impl Drop for Handling {
    fn drop(&mut self) {
        if self.0.handling.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_handlers_only_until_they_answer() {
        let shared = Arc::new(Shared::default());
        let handling = shared.enter();
        let soon = Instant::now() + Duration::from_millis(30);
        shared.answered(soon).await;
        assert_eq!(shared.handling(), 1, "gave up at the deadline with the handler still running");
        let waiter = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.answered(Instant::now() + Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(handling);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("woken when answered").expect("task");
        assert_eq!(shared.handling(), 0);
    }
}
