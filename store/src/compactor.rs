//! Compaction scheduling: the thread that runs physical compactions, and etcd's periodic
//! auto-compaction (`--auto-compaction-retention`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::apply::{Applied, Proposal};
use crate::error::StoreError;
use crate::mvcc::engine::META_SCHEDULED_COMPACT;
use crate::mvcc::{Engine, compact};
use crate::store::Store;

/// How far physical compaction got: what `Compact` with `physical` waits on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionProgress {
    /// The highest revision whose physical compaction finished.
    pub finished: i64,
    /// The highest revision whose physical compaction failed (it resumes on restart).
    pub failed: i64,
}

/// The physical-compaction thread, as [`start`] hands it out.
pub struct Compactor {
    /// Send a revision to compact up to it. The thread ends once every sender is dropped.
    pub requests: mpsc::Sender<i64>,
    /// How far compaction got.
    pub progress: watch::Receiver<CompactionProgress>,
    /// Joined when the member stops, before its database closes.
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the physical-compaction thread. A compaction interrupted by a restart is resumed
/// first.
pub fn start(engine: Arc<Engine>) -> std::io::Result<Compactor> {
    let (tx, rx) = mpsc::channel::<i64>();
    let (done_tx, done_rx) = watch::channel(CompactionProgress { finished: engine.compact_revision(), failed: 0 });
    let pending = engine.meta_i64(META_SCHEDULED_COMPACT).ok().flatten();
    // The thread holds the engine only while it compacts: whoever owns the store closes the
    // database, never this thread (a database closed by a thread still running while the
    // process exits aborts inside RocksDB); a stopping member joins it before closing.
    let engine = Arc::downgrade(&engine);
    let thread = std::thread::Builder::new().name("compactor".into()).spawn(move || {
        let mut next = pending;
        // Ends when the store drops its sender (or the engine is gone).
        loop {
            let revision = match next.take() {
                Some(revision) => revision,
                None => match rx.recv() {
                    Ok(revision) => revision,
                    Err(_) => return,
                },
            };
            let Some(engine) = engine.upgrade() else { return };
            run_one(&engine, revision, &done_tx);
        }
    })?;
    Ok(Compactor { requests: tx, progress: done_rx, thread })
}

fn run_one(engine: &Engine, revision: i64, progress: &watch::Sender<CompactionProgress>) {
    let started = Instant::now();
    let outcome = compact::run(engine, revision);
    match &outcome {
        Ok(()) => {
            tracing::info!(revision, took_ms = started.elapsed().as_millis() as u64, "finished physical compaction")
        }
        Err(error) => tracing::error!(%error, revision, "physical compaction failed; it resumes on restart"),
    }
    progress.send_modify(|p| match outcome {
        Ok(()) => p.finished = p.finished.max(revision),
        Err(_) => p.failed = p.failed.max(revision),
    });
}

/// etcd's periodic auto-compaction: keep `retention` of history. Samples the revision every
/// tenth of the retention and compacts to the newest sample at least `retention` old.
pub async fn auto_compact(store: Arc<Store>, retention: Duration) {
    let sample_every = (retention / 10).max(Duration::from_secs(1));
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut ticker = tokio::time::interval(sample_every);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        samples.push_back((now, store.current_revision()));
        let mut target = None;
        while let Some(&(at, revision)) = samples.front() {
            if now.duration_since(at) < retention {
                break;
            }
            target = Some(revision);
            samples.pop_front();
        }
        let Some(revision) = target else { continue };
        // Only the leader compacts, as etcd's compactor runs on the leader: one proposal per
        // period for the whole cluster.
        if revision <= store.engine.compact_revision() || !store.node.is_leader() {
            continue;
        }
        match store.propose(Proposal::Compact { revision }).await {
            Ok(Applied::Compact { .. }) => tracing::info!(revision, "auto-compacted"),
            Ok(_) | Err(StoreError::Compacted) => {}
            Err(error) => tracing::warn!(%error, revision, "auto-compaction failed"),
        }
    }
}
