//! The Raft core's own thread: a single-threaded Tokio runtime that runs openraft (core, log
//! and state-machine workers, replication), the peer gRPC server and the peer connections.
//!
//! A member embedded in a master shares its process with the API server, whose requests can
//! hold a runtime thread for hundreds of milliseconds (decoding and encoding a 10,000-pod list,
//! a scheduling burst). On a shared runtime a heartbeat due meanwhile waits for them, and a
//! follower that hears nothing for an election timeout campaigns: a spurious election. On its
//! own OS thread the Raft core is preempted and resumed by the kernel, not by whoever holds a
//! runtime thread, so heartbeats leave on time however busy the rest of the process is.
//!
//! Everything spawned while running here stays here (openraft spawns with `tokio::spawn`), and
//! [`Peers`](crate::raft::transport::Peers) creates its channels inside [`RaftRuntime::handle`],
//! so the connections that carry heartbeats are driven by this thread whoever first asked
//! for them. Callers on other runtimes talk to it through channels and handles, as before.

use std::time::Duration;

use tokio::runtime::Handle;

/// Blocking tasks (snapshot files, directory syncs) still running when the runtime stops get
/// this long; the store survives a cut one as it survives a crash.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(200);

/// The thread and its runtime. [`RaftRuntime::stop`] ends it; dropping it without stopping
/// leaves the thread to the process exit.
pub struct RaftRuntime {
    handle: Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl RaftRuntime {
    /// Starts the thread (named `raft`) and its runtime.
    pub fn start() -> std::io::Result<RaftRuntime> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().thread_name("raft-blocking").build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("raft".into()).spawn(move || {
            // Until asked to stop (or until the stopper is dropped); then every task still here
            // is dropped with the runtime, letting go of what it holds.
            let _ = runtime.block_on(stopped);
            runtime.shutdown_timeout(SHUTDOWN_WAIT);
        })?;
        Ok(RaftRuntime { handle, stop, thread })
    }

    /// Where Raft's tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Ends the runtime (its tasks are dropped) and returns the thread, which finishes within
    /// [`SHUTDOWN_WAIT`].
    pub fn stop(self) -> std::thread::JoinHandle<()> {
        let _ = self.stop.send(());
        self.thread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_what_is_spawned_on_its_own_thread_and_drops_it_when_stopped() {
        let runtime = RaftRuntime::start().expect("start");
        let name = runtime.handle().spawn(async { std::thread::current().name().map(str::to_string) });
        assert_eq!(name.await.expect("task").as_deref(), Some("raft"));
        // A task that never ends is dropped with the runtime, and the thread ends.
        let (held_tx, mut held_rx) = tokio::sync::mpsc::channel::<()>(1);
        runtime.handle().spawn(async move {
            let _held = held_tx;
            std::future::pending::<()>().await
        });
        let thread = runtime.stop();
        assert!(held_rx.recv().await.is_none(), "the pending task's sender was dropped");
        tokio::task::spawn_blocking(move || thread.join()).await.expect("join").expect("thread did not panic");
    }

    #[test]
    fn keeps_its_heartbeat_while_another_runtime_is_blocked() {
        // The property the module exists for: a timer here fires on time while a shared runtime
        // is held by synchronous work.
        let raft = RaftRuntime::start().expect("start");
        let shared = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let ticks = raft.handle().spawn(async {
            let started = std::time::Instant::now();
            let mut ticks = 0;
            while started.elapsed() < Duration::from_millis(300) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
            }
            ticks
        });
        let ticks = shared.block_on(async {
            // Held for the whole window without yielding.
            std::thread::sleep(Duration::from_millis(300));
            ticks.await.expect("task")
        });
        assert!(ticks >= 10, "only {ticks} ticks while the shared runtime was blocked");
        raft.stop().join().expect("thread");
    }
}
