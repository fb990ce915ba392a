//! Fewer, larger socket writes: what is ready to send together leaves in one write. Used on
//! every connection a member accepts (client and peer ports) and opens (to other members), and
//! on the load generator's connections (`keel bench`), which would otherwise send one write per
//! request.
//!
//! # Why
//! A client keeps many calls in flight on one HTTP/2 connection, and they complete in bursts: a
//! committed log entry answers every write batched into it, a read-index round answers every
//! read that waited for it. Each answering task hands its response frames to the connection's
//! `h2` task and wakes it, and tokio runs a task woken that way next. So the connection task ran
//! once per response and wrote each one on its own: measured on the leader, one `writev` per
//! response against one `recvfrom` per ten requests. A call to another member went out as two
//! or three writes (HEADERS, DATA, an empty DATA ending the stream), each made by a different
//! poll. On loopback a write also runs the receiver's TCP input, so these writes were a large
//! part of serving a small call.
//!
//! # How
//! [`CoalescedWrites`] wraps a connection. The first write after the connection was last flushed
//! is deferred once: the wrapper wakes its own task and answers `Pending`, the way a full socket
//! does. The task goes to the back of the run queue, the other tasks with something to send run
//! and queue their frames, and when the connection task comes back it writes all of them
//! together. Every write after that goes straight through until the writer flushes (`h2` flushes
//! once its buffer is empty), which arms the deferral again. A lone message is delayed by one
//! pass through the run queue, not by a timer; reads are untouched. The wrapper also reports
//! that it takes no vectored writes, so `h2` copies small payloads into one buffer (see
//! [`CoalescedWrites::is_write_vectored`]). Under TLS the wrapper sits below the encryption, so
//! it coalesces TLS records.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// Wraps each accepted connection of `incoming` in [`CoalescedWrites`].
pub fn coalesce_incoming<I, S, E>(incoming: I) -> impl Stream<Item = Result<CoalescedWrites<S>, E>>
where
    I: Stream<Item = Result<S, E>>,
{
    incoming.map(|accepted| accepted.map(CoalescedWrites::new))
}

/// A connection whose first write after each flush yields once to the scheduler.
#[derive(Debug)]
pub struct CoalescedWrites<S> {
    inner: S,
    /// The next write is deferred once (set by a completed flush).
    armed: bool,
}

impl<S> CoalescedWrites<S> {
    pub fn new(inner: S) -> Self {
        CoalescedWrites { inner, armed: true }
    }

    /// True when this write must wait one scheduler pass (and the task has been woken for it).
    fn defer(&mut self, cx: &Context<'_>) -> bool {
        if !self.armed {
            return false;
        }
        self.armed = false;
        cx.waker().wake_by_ref();
        true
    }
}

impl<S: Connected> Connected for CoalescedWrites<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescedWrites<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.defer(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    /// Not vectored, on purpose: over a vectored stream `h2` sends a DATA payload of 256 bytes
    /// or more as its own buffer and writes it before queueing the next frame, so every response
    /// with a value of that size would still take one write. Without vectored writes `h2` copies
    /// payloads under 1 KiB into its 16 KiB write buffer, and a burst leaves together.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_ready() {
            this.armed = true;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the inner stream.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn the_first_write_after_a_flush_yields_once_then_everything_passes() {
        let mut io = CoalescedWrites::new(Recorder::default());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut io).poll_write(&mut cx, b"a").is_pending(), "first write deferred");
        assert!(matches!(Pin::new(&mut io).poll_write(&mut cx, b"a"), Poll::Ready(Ok(1))));
        assert!(matches!(Pin::new(&mut io).poll_write(&mut cx, b"b"), Poll::Ready(Ok(1))), "no second deferral");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert!(Pin::new(&mut io).poll_write(&mut cx, b"c").is_pending(), "re-armed by the flush");
        assert!(matches!(Pin::new(&mut io).poll_write(&mut cx, b"c"), Poll::Ready(Ok(1))));
        assert_eq!(io.inner.writes, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[tokio::test]
    async fn a_deferred_write_completes_without_outside_help() {
        // The deferral wakes its own task: a plain write_all finishes, bytes intact, in order.
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut writer = CoalescedWrites::new(client);
        let mut reader = CoalescedWrites::new(server);
        let rounds = async {
            for round in 0..3u8 {
                writer.write_all(&[round; 1000]).await.expect("write");
                writer.flush().await.expect("flush");
                let mut got = [0u8; 1000];
                reader.read_exact(&mut got).await.expect("read");
                assert_eq!(got, [round; 1000]);
            }
        };
        // A deferral that forgot to wake its task would hang here, not pass.
        tokio::time::timeout(std::time::Duration::from_secs(5), rounds).await.expect("a deferred write never resumed");
    }
}
