//! The single-member write path: one thread applies proposals in arrival order, syncs the WAL
//! once per group (group commit), then makes the group visible, publishes its watch events and
//! answers its callers. Raft replaces this module's role in a replicated store; `apply` stays.
//!
//! Invariant: a response is sent only after the WAL holding its change is synced, and readers
//! see a revision only after that (the engine's committed revision moves after the sync).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::apply::{Applied, Applier, Proposal};
use crate::error::{Result, StoreError};
use crate::mvcc::Engine;
use crate::watch::WatchHub;

/// Proposals waiting for the writer; a full queue makes callers wait (back-pressure).
const QUEUE_CAPACITY: usize = 4_096;
/// Proposals applied per group commit at most.
const GROUP_MAX: usize = 512;

struct Job {
    proposal: Proposal,
    reply: oneshot::Sender<Result<Applied>>,
}

/// Handle to submit write requests; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Job>,
}

impl Proposer {
    /// Applies `proposal` durably and returns its outcome.
    pub async fn propose(&self, proposal: Proposal) -> Result<Applied> {
        let (reply, outcome) = oneshot::channel();
        self.tx.send(Job { proposal, reply }).await.map_err(|_| StoreError::Stopped)?;
        outcome.await.map_err(|_| StoreError::Stopped)?
    }
}

/// Starts the writer thread. `compactions` receives each compaction to run physically.
pub fn start(
    engine: Arc<Engine>,
    applier: Applier,
    hub: Arc<WatchHub>,
    compactions: std::sync::mpsc::Sender<i64>,
) -> std::io::Result<Proposer> {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    std::thread::Builder::new().name("writer".into()).spawn(move || run(engine, applier, hub, compactions, rx))?;
    Ok(Proposer { tx })
}

fn run(
    engine: Arc<Engine>,
    mut applier: Applier,
    hub: Arc<WatchHub>,
    compactions: std::sync::mpsc::Sender<i64>,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut group: Vec<Job> = Vec::with_capacity(GROUP_MAX);
    let mut outcomes = Vec::with_capacity(GROUP_MAX);
    let mut changes = Vec::new();
    let mut compact_to = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let batches_before = applier.batches_written();
        for job in &group {
            let (outcome, effects) = applier.apply(&job.proposal);
            outcomes.push(outcome);
            changes.extend(effects.changes);
            compact_to.extend(effects.compact_to);
        }
        let wrote = applier.batches_written() != batches_before;
        let synced = if wrote { engine.db().flush_wal(true) } else { Ok(()) };
        if let Err(error) = synced {
            // Without a durable WAL nothing in this group may be acknowledged, and the
            // in-memory revision is ahead of disk: stop serving writes.
            tracing::error!(%error, "WAL sync failed; the store stops accepting writes");
            return;
        }
        engine.publish_committed(applier.revision());
        hub.publish(&changes);
        for revision in compact_to.drain(..) {
            let _ = compactions.send(revision);
        }
        for (job, outcome) in group.drain(..).zip(outcomes.drain(..)) {
            let _ = job.reply.send(outcome);
        }
        changes.clear();
    }
}
