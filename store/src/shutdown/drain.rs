//! Draining one gRPC server: stop accepting, see when the calls in flight are answered, then
//! cut whatever connections are left.
//!
//! tonic's graceful shutdown stops accepting and tells each connection to go away (HTTP/2
//! GOAWAY), then waits for every connection to close, which a watch or keep-alive stream or a
//! peer's replication stream never does by itself; and tonic runs each connection as a task of
//! its own that nothing outside can end. So [`Drain`] adds what is missing:
//!
//! - a layer ([`Drain::count_calls`]) counting calls until their response is ready: a unary
//!   call until it is answered, a streaming call until its stream is set up (a stream that
//!   runs for hours is not "in flight"); work a call hands to a task of its own can be counted
//!   until that task ends ([`Drain::track_call`]);
//! - a wrapper ([`Severable`]) on every accepted connection, counting it while it is open, that
//!   fails its reads and writes once [`Drain::cut`] is called, so the connection task ends,
//!   dropping its calls and streams (their clients see a closed connection and go elsewhere).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// What one server, its calls and its connections share with whoever stops it. Cheap to clone.
#[derive(Clone)]
pub struct Drain {
    shared: Arc<Shared>,
}

struct Shared {
    /// Calls whose response is not ready yet.
    calls: AtomicUsize,
    /// Accepted connections not closed yet.
    connections: AtomicUsize,
    /// Woken whenever either count falls to zero.
    idle: Notify,
    /// True once the server must stop accepting (its graceful shutdown signal).
    stop_accepting: watch::Sender<bool>,
    /// True once every connection must fail.
    cut: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            shared: Arc::new(Shared {
                calls: AtomicUsize::new(0),
                connections: AtomicUsize::new(0),
                idle: Notify::new(),
                stop_accepting: watch::channel(false).0,
                cut: watch::channel(false).0,
            }),
        }
    }
}

impl Drain {
    /// The layer counting this server's calls.
    pub fn count_calls(&self) -> CountCalls {
        CountCalls { drain: self.clone() }
    }

    /// Wraps every connection `incoming` accepts in a [`Severable`].
    pub fn wrap<I, S, E>(&self, incoming: I) -> impl Stream<Item = Result<Severable<S>, E>> + use<I, S, E>
    where
        I: Stream<Item = Result<S, E>>,
    {
        let drain = self.clone();
        incoming.map(move |accepted| accepted.map(|io| Severable::new(io, &drain)))
    }

    /// The server's graceful shutdown signal: resolves once [`Drain::stop_accepting`] is called.
    pub fn accepting_stopped(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut stop = self.shared.stop_accepting.subscribe();
        async move {
            // Err: the drain is gone, and with it whoever could stop the server.
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }

    /// The listener closes; open connections are told to go away.
    pub fn stop_accepting(&self) {
        self.shared.stop_accepting.send_replace(true);
    }

    /// Every connection's next read or write fails.
    pub fn cut(&self) {
        self.shared.cut.send_replace(true);
    }

    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until no call is in flight, or `deadline`; true if none is.
    pub async fn calls_answered(&self, deadline: Instant) -> bool {
        self.wait_until(|drain| drain.calls() == 0, deadline).await
    }

    /// Waits until every connection has closed, or `deadline`; true if all have.
    pub async fn connections_closed(&self, deadline: Instant) -> bool {
        self.wait_until(|drain| drain.connections() == 0, deadline).await
    }

    async fn wait_until(&self, done: impl Fn(&Drain) -> bool, deadline: Instant) -> bool {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a count falling to zero right after it wakes us.
            notified.as_mut().enable();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(self);
            }
        }
    }

    /// Counts one call of this server until the returned guard is dropped: for work a call
    /// hands to a task of its own (a stream's feeder), which outlives the call's response.
    pub fn track_call(&self) -> Counted {
        self.enter(|shared| &shared.calls)
    }

    fn enter(&self, count: fn(&Shared) -> &AtomicUsize) -> Counted {
        count(&self.shared).fetch_add(1, Ordering::SeqCst);
        Counted { drain: self.clone(), count }
    }
}

/// One call or connection being counted; dropping it uncounts it.
pub struct Counted {
    drain: Drain,
    count: fn(&Shared) -> &AtomicUsize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if (self.count)(&self.drain.shared).fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drain.shared.idle.notify_waiters();
        }
    }
}

/// The tower layer of [`Drain::count_calls`].
#[derive(Clone)]
pub struct CountCalls {
    drain: Drain,
}

impl<S> tower::Layer<S> for CountCalls {
    type Service = CountedCalls<S>;

    fn layer(&self, inner: S) -> CountedCalls<S> {
        CountedCalls { inner, drain: self.drain.clone() }
    }
}

#[derive(Clone)]
pub struct CountedCalls<S> {
    inner: S,
    drain: Drain,
}

impl<S, Request> tower::Service<Request> for CountedCalls<S>
where
    S: tower::Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let counted = self.drain.enter(|shared| &shared.calls);
        let response = self.inner.call(request);
        Box::pin(async move {
            let _counted = counted;
            response.await
        })
    }
}

/// An accepted connection that fails once its server's drain is cut.
pub struct Severable<S> {
    inner: S,
    /// Resolves when the drain is cut; polled only until it does.
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    severed: bool,
    _open: Counted,
}

impl<S> Severable<S> {
    fn new(inner: S, drain: &Drain) -> Severable<S> {
        let mut cut = drain.shared.cut.subscribe();
        let cut = Box::pin(async move {
            // Err: the drain is gone, so is the server: fail as well.
            let _ = cut.wait_for(|cut| *cut).await;
        });
        Severable { inner, cut, severed: false, _open: drain.enter(|shared| &shared.connections) }
    }

    /// True once the drain is cut; otherwise `cx` is woken when it is.
    fn severed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.severed && self.cut.as_mut().poll(cx).is_ready() {
            self.severed = true;
        }
        self.severed
    }
}

fn severed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "keel: the server is stopping")
}

impl<S: Connected> Connected for Severable<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Severable<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Severable<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::{Layer, Service};

    use super::*;

    /// A service whose one call waits for `released`.
    struct Waits(Option<tokio::sync::oneshot::Receiver<()>>);

    impl Service<()> for Waits {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<(), Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            let released = self.0.take();
            Box::pin(async move {
                if let Some(released) = released {
                    let _ = released.await;
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_call_counts_until_its_response_is_ready() {
        let drain = Drain::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let mut service = drain.count_calls().layer(Waits(Some(released)));
        let call = tokio::spawn(service.call(()));
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!drain.calls_answered(soon).await, "the call is in flight");
        assert_eq!(drain.calls(), 1);
        let _ = release.send(());
        assert!(drain.calls_answered(Instant::now() + Duration::from_secs(5)).await);
        call.await.expect("call task").expect("call");
        assert_eq!(drain.calls(), 0);
    }

    #[tokio::test]
    async fn a_cut_fails_a_pending_read_and_later_writes() {
        let drain = Drain::default();
        let (near, mut far) = tokio::io::duplex(64);
        let mut connection = Severable::new(near, &drain);
        assert_eq!(drain.connections(), 1);
        far.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        connection.read_exact(&mut byte).await.expect("reads before the cut");
        let pending = tokio::spawn(async move {
            let read = connection.read(&mut byte).await;
            (read.map_err(|e| e.kind()), connection)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain.cut();
        let (read, mut connection) = pending.await.expect("read task");
        assert_eq!(read, Err(io::ErrorKind::ConnectionAborted));
        assert_eq!(connection.write(b"y").await.map_err(|e| e.kind()), Err(io::ErrorKind::ConnectionAborted));
        drop(connection);
        assert!(drain.connections_closed(Instant::now()).await);
    }
}
