//! Stopping a member cleanly: what `keel store` does on SIGTERM or SIGINT, and what a master
//! does with its embedded member once its API server has stopped. One function, [`stop`], in
//! this order:
//!
//! 1. **Refuse leadership.** The member is marked stopping: it refuses a `TransferLeader`
//!    naming it, so a leader handing over (this one or another) picks a member that stays.
//! 2. **Stop accepting clients.** The client listeners close; open connections are told to go
//!    away (HTTP/2 GOAWAY), so their clients reconnect to other members.
//! 3. **Drain clients.** Calls in flight get [`CLIENT_DRAIN`] to be answered (and
//!    [`ANSWER_FLUSH`] more for the answers to be written out); then every client connection
//!    is cut. Watch and keep-alive streams never end by themselves; their clients re-watch and
//!    keep alive through another member.
//! 4. **Stop background loops.** Lease expiry, auto-compaction, attribute publishing and the
//!    leadership follower are aborted: this member proposes nothing more of its own.
//! 5. **Hand over leadership.** If this member leads, leadership moves to the most up-to-date
//!    voter that answered recently, the next one if it refuses (`raft::handover`, [`HANDOVER`]),
//!    and the member waits until it has applied what it appended, so the writes followers
//!    forwarded to it are answered. With no peer answering this costs nothing.
//! 6. **Close the peer port.** Listener closed, connections cut; the calls being served and
//!    the tasks feeding peers' streams into Raft end ([`SERVER_END`]).
//! 7. **Stop Raft.** The core stops ([`RAFT_STOP`]): no more heartbeats, votes or pre-votes,
//!    and nothing more is written to the log.
//! 8. **Release and flush.** The threads holding the database (Raft log sync, compactor, watch
//!    catch-up) end and every other holder lets go ([`RELEASE`]); the WAL is synced, and RocksDB
//!    closes here, before the process exits (closing it from a thread still running while the
//!    process exits aborts inside RocksDB).
//!
//! **Time.** Every step has its own limit and all of them run under one deadline, [`STOP_BUDGET`]
//! from the signal, so a member stops within 5 s whether its peers are up, gone, or stopping at
//! the same moment. A step cut short leaves nothing worse than a crash, which the store
//! survives by design.
//!
//! **Durability.** Nothing acknowledged depends on a step here. A write is acknowledged only
//! once a quorum has its entry in its fsynced Raft log and the answering member has applied it
//! (architecture invariant), and a skipped or cut step only loses unacknowledged work: a call
//! still in flight, whose client sees a closed connection as after a crash. The WAL sync at the
//! end makes the applied state and the committed log id durable too, which only spares the next
//! start a replay.

pub mod drain;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::raft::handover;
use crate::store::Store;
pub use drain::Drain;

/// The whole stop, from the signal. Service managers, container runtimes, `keel up` and the
/// tests give a process 5 s or more before they kill it; this leaves room for the process to
/// exit after the store is closed.
pub const STOP_BUDGET: Duration = Duration::from_millis(4_500);
/// Calls in flight when the member stops get this long to be answered. A healthy cluster
/// answers in milliseconds; a write that waits longer is waiting for a quorum that is not
/// there, and its client gets the answer it would get after a crash (a closed connection).
pub const CLIENT_DRAIN: Duration = Duration::from_secs(1);
/// Once the last call is answered, connections get this long to write the answers out and
/// close (a client told to go away closes when its last stream ends) before they are cut.
pub const ANSWER_FLUSH: Duration = Duration::from_millis(100);
/// Handing leadership over, and applying what this leader appended. A transfer to a healthy
/// voter takes one vote round (milliseconds); past this the survivors elect a leader
/// themselves after their election timeout, as after a crash.
pub const HANDOVER: Duration = Duration::from_secs(2);
/// A server whose connections are cut ends at once; waiting for its task is bounded anyway.
pub const SERVER_END: Duration = Duration::from_millis(250);
/// The Raft core stops after the storage call it is in.
pub const RAFT_STOP: Duration = Duration::from_millis(500);
/// Once Raft has stopped, the threads and tasks holding the database let go within one catch-up
/// step, one compaction, one log sync.
pub const RELEASE: Duration = Duration::from_millis(500);
/// How often the release step looks at what still holds the database.
const RELEASE_POLL: Duration = Duration::from_millis(5);

/// One gRPC server of a member: the task serving it and its drain.
pub(crate) struct ServerTask {
    pub task: JoinHandle<()>,
    pub drain: Drain,
}

/// What a member runs besides its servers.
#[derive(Default)]
pub(crate) struct Background {
    /// Loops that end only when aborted.
    pub tasks: Vec<JoinHandle<()>>,
    /// Threads that use the database, by name; each ends once the handles feeding it are gone.
    pub threads: Vec<(&'static str, std::thread::JoinHandle<()>)>,
    /// The Raft thread (`raft::runtime`): ended once Raft has stopped, dropping what is left
    /// on it.
    pub raft_runtime: Option<crate::raft::runtime::RaftRuntime>,
}

/// A serving member, as [`stop`] takes it apart.
pub(crate) struct Serving {
    pub store: Arc<Store>,
    pub clients: Vec<ServerTask>,
    pub peers: Vec<ServerTask>,
    pub background: Background,
}

/// Stops `serving` in the order of the module docs, by `deadline` at the latest (give it
/// [`STOP_BUDGET`] from the signal). Returns once the database is closed, or once the deadline
/// leaves it to whoever still holds it (named in the log).
pub(crate) async fn stop(serving: Serving, deadline: Instant) {
    let started = Instant::now();
    let Serving { store, clients, peers, background: Background { tasks, mut threads, raft_runtime } } = serving;
    store.node.begin_stopping();
    let unanswered = drain_clients(&clients, deadline).await;
    let drained_ms = started.elapsed().as_millis() as u64;
    for task in &tasks {
        task.abort();
    }
    let handover = handover::hand_over(&store.node, step(HANDOVER, deadline)).await;
    let handed_ms = started.elapsed().as_millis() as u64;
    for server in &peers {
        server.drain.stop_accepting();
        server.drain.cut();
    }
    // Raft RPCs being served, and the tasks feeding peers' streams into Raft, end first.
    let peers_done_by = step(SERVER_END, deadline);
    for server in &peers {
        server.drain.calls_answered(peers_done_by).await;
    }
    let servers = clients.into_iter().chain(peers).map(|server| server.task);
    end_tasks(servers.chain(tasks), step(SERVER_END, deadline)).await;
    let raft_stopped = tokio::time::timeout_at(step(RAFT_STOP, deadline), store.node.raft.shutdown()).await.is_ok();
    if let Some(runtime) = raft_runtime {
        threads.push(("raft", runtime.stop()));
    }
    let released = release(store, threads, step(RELEASE, deadline)).await;
    let outcome = format!("{handover:?}");
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        drained_ms,
        unanswered,
        handover = outcome,
        handed_ms,
        raft_stopped,
        holders = released.holders,
        lingering = ?released.lingering_threads,
        "store member stopped"
    );
    if !raft_stopped || released.holders > 0 || !released.lingering_threads.is_empty() {
        tracing::warn!("the member did not stop completely by its deadline; the process exit ends the rest");
    }
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C): what "asked to stop" means for every Keel
/// process; both stop it the same way. Listening starts when this is called, not when the
/// future is first polled, so a process calls it before it starts up: a signal arriving
/// meanwhile is kept, not left to its default action (killing the process mid-start). Later
/// signals are ignored: the stop under way is bounded anyway (and a second Ctrl-C, or `keel up`
/// forwarding one to a master that got the first from the terminal, must not cut it short).
pub fn signal() -> impl std::future::Future<Output = ()> + Send + use<> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut streams: Vec<_> = [SignalKind::terminate(), SignalKind::interrupt()]
        .into_iter()
        .filter_map(|kind| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, ?kind, "cannot listen for a stop signal");
                None
            }
        })
        .collect();
    async move {
        if streams.is_empty() {
            return std::future::pending().await;
        }
        let received = streams.iter_mut().map(|stream| Box::pin(stream.recv()));
        futures::future::select_all(received).await;
    }
}

/// `limit` from now, but no later than `deadline`.
fn step(limit: Duration, deadline: Instant) -> Instant {
    deadline.min(Instant::now() + limit)
}

/// Steps 2 and 3: stop accepting, let the calls in flight be answered, cut what is left.
/// Returns how many calls were still unanswered when the connections were cut.
async fn drain_clients(clients: &[ServerTask], deadline: Instant) -> usize {
    for server in clients {
        server.drain.stop_accepting();
    }
    let answered_by = step(CLIENT_DRAIN, deadline);
    for server in clients {
        server.drain.calls_answered(answered_by).await;
    }
    let flushed_by = step(ANSWER_FLUSH, deadline);
    for server in clients {
        server.drain.connections_closed(flushed_by).await;
    }
    let unanswered = clients.iter().map(|server| server.drain.calls()).sum();
    for server in clients {
        server.drain.cut();
    }
    unanswered
}

/// Waits for each task until `deadline`, then aborts the ones still running.
async fn end_tasks(tasks: impl Iterator<Item = JoinHandle<()>>, deadline: Instant) {
    for mut task in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// What step 8 could not end.
struct Released {
    /// Holders of the database other than the release step itself (0: it closed here).
    holders: usize,
    /// Threads still running at the deadline (left detached).
    lingering_threads: Vec<&'static str>,
}

/// Step 8: ends the catch-up thread, drops the store, joins the threads as they finish and
/// waits until nothing else holds the database (all until `deadline`), then syncs the WAL
/// and closes the database if this was the last holder.
async fn release(
    store: Arc<Store>,
    mut threads: Vec<(&'static str, std::thread::JoinHandle<()>)>,
    deadline: Instant,
) -> Released {
    let engine = store.engine.clone();
    if let Some(thread) = store.hub.stop_catch_up() {
        threads.push(("watch-catch-up", thread));
    }
    drop(store);
    loop {
        // A finished thread joins at once: nothing here blocks the runtime.
        let (finished, running): (Vec<_>, Vec<_>) = threads.into_iter().partition(|(_, t)| t.is_finished());
        for (name, thread) in finished {
            if thread.join().is_err() {
                tracing::warn!(thread = name, "a store thread had panicked");
            }
        }
        threads = running;
        if (threads.is_empty() && Arc::strong_count(&engine) == 1) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(RELEASE_POLL).await;
    }
    if let Err(error) = engine.db().flush_wal(true) {
        tracing::warn!(%error, "syncing the WAL at shutdown failed; the next start replays more of the log");
    }
    let holders = Arc::strong_count(&engine) - 1;
    drop(engine);
    Released { holders, lingering_threads: threads.into_iter().map(|(name, _)| name).collect() }
}
