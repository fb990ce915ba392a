//! The scheduler's wiring: informer callbacks (`feed.rs`) keep the cache and the queue on
//! every master; `lead` runs scheduling cycles and binds while this master holds
//! `kube-system/kube-scheduler`.
//!
//! ```text
//! loop: bind permit → lock { pop → schedule_one → assume } → spawn bind ──► finish_binding, done
//!                                                              └─ error ──► forget, backoff
//!       no fit → spawn PodScheduled=False patch + FailedScheduling, park the pod
//!       queue empty → wait for a callback's wake-up or the next backoff expiry
//! ```
//!
//! Cycles run one at a time under the state lock (no copy of the cache per pod); binds run
//! concurrently, at most `MAX_WRITES_IN_FLIGHT`, as Kubernetes' binding goroutines do. A pod
//! counts on its node from `assume`, so concurrent binds never overcommit a node.
//!
//! # Invariants
//! - Only `lead` pops the queue, and at most one `lead` runs per master (the supervisor).
//! - A term's pods in flight are requeued and their unconfirmed assumptions forgotten when the
//!   next term starts: the old term's binds were aborted (or refused by the fence). One that
//!   did land shows up bound through the informer; a second bind of it is refused by the API
//!   server ("already assigned"), so no pod is ever bound twice.
//! - A fenced write ends `lead` at once (the supervisor does not restart it under that term).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::framework::{PodInfo, PodKey};
use super::writes::{self, Events};
use super::{Cache, Config, Profile, QueueConfig, ScheduleError, Scheduler, SchedulingQueue};
use crate::client::{Client, ClientError};
use crate::components::Informers;
use crate::metrics::{AttemptLabels, Metrics, QueueLabels};

/// Binds and status writes in flight at once.
const MAX_WRITES_IN_FLIGHT: usize = 128;
/// How often expired assumptions are dropped while idle.
const CLEANUP_PERIOD: Duration = Duration::from_secs(1);

/// The cache and the queue, under one lock.
pub struct State {
    pub(super) cache: Cache,
    pub(super) queue: SchedulingQueue,
    /// Pods assumed whose bind has not answered yet.
    binding: HashSet<PodKey>,
}

/// What the callbacks and the loop share.
pub struct Shared {
    state: Mutex<State>,
    pub(super) wake: Notify,
    metrics: Arc<Metrics>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Runner {
    informers: Arc<Informers>,
    shared: Arc<Shared>,
}

/// One turn of the loop.
enum Cycle {
    /// The pod is assumed on the node; bind it.
    Bind { pod: Arc<Pod>, node: String },
    /// No node fits (or a plugin failed): record why.
    Failed { pod: Arc<Pod>, reason: &'static str, message: String },
    /// Nothing to write for the pod popped; go on.
    Again,
    /// Nothing to schedule before this instant (or a wake-up).
    Idle(Option<Instant>),
}

impl Runner {
    /// Registers the informer callbacks (on every master, leading or not).
    pub fn new(informers: &Arc<Informers>, metrics: Arc<Metrics>) -> Arc<Runner> {
        let profile = Profile::default_profile();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cache: Cache::default(),
                queue: SchedulingQueue::new(QueueConfig::default(), profile.events()),
                binding: HashSet::new(),
            }),
            wake: Notify::new(),
            metrics,
        });
        super::feed::register(informers, &shared);
        Arc::new(Runner { informers: informers.clone(), shared })
    }

    /// Pods waiting in the queue (any part).
    pub fn pending(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Schedules until a write is fenced (the term is over) or the task is aborted (dropping
    /// the task set aborts every bind of the term).
    pub async fn lead(self: Arc<Self>, client: Client) -> ClientError {
        self.informers.pods.wait_synced().await;
        self.informers.nodes.wait_synced().await;
        self.start_term();
        let mut scheduler = Scheduler::new(Profile::default_profile(), Config::default());
        let mut rng = StdRng::from_os_rng();
        let permits = Arc::new(Semaphore::new(MAX_WRITES_IN_FLIGHT));
        let mut tasks: JoinSet<Result<(), ClientError>> = JoinSet::new();
        let (events, event_writer) =
            Events::start(client.clone(), self.shared.metrics.scheduler_events_dropped.clone());
        tasks.spawn(event_writer);
        let mut last_cleanup = Instant::now();
        loop {
            while let Some(ended) = tasks.try_join_next() {
                if let Some(error) = fenced(ended) {
                    return error;
                }
            }
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return ClientError::Response("the scheduler's write permits closed".into()),
                },
                Some(ended) = tasks.join_next() => {
                    if let Some(error) = fenced(ended) {
                        return error;
                    }
                    continue;
                }
            };
            let now = Instant::now();
            if now.duration_since(last_cleanup) >= CLEANUP_PERIOD {
                self.cleanup(now);
                last_cleanup = now;
            }
            match self.cycle(&mut scheduler, &mut rng, now) {
                Cycle::Bind { pod, node } => {
                    tasks.spawn(self.clone().bind(client.clone(), events.clone(), pod, node, permit));
                }
                Cycle::Failed { pod, reason, message } => {
                    events.failed(&pod, &message);
                    tasks.spawn(record_failure(client.clone(), pod, reason, message, permit));
                }
                Cycle::Again => drop(permit),
                Cycle::Idle(wakeup) => {
                    drop(permit);
                    let deadline = wakeup.map_or(now + CLEANUP_PERIOD, |at| at.min(now + CLEANUP_PERIOD));
                    tokio::select! {
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                        Some(ended) = tasks.join_next() => {
                            if let Some(error) = fenced(ended) {
                                return error;
                            }
                        }
                    }
                }
            }
        }
    }

    /// A new term: the last term's in-flight pods go back to activeQ, and what it assumed but
    /// never heard back about is forgotten (see the module's invariants).
    fn start_term(&self) {
        let mut state = self.shared.lock();
        let abandoned: Vec<PodKey> = state.binding.drain().collect();
        for key in &abandoned {
            state.cache.forget(key);
        }
        state.queue.requeue_in_flight();
        drop(state);
        if !abandoned.is_empty() {
            tracing::info!(pods = abandoned.len(), "requeued the binds the last term left unanswered");
        }
    }

    /// Drops expired assumptions and reports the queue's sizes.
    fn cleanup(&self, now: Instant) {
        let mut state = self.shared.lock();
        for key in state.cache.cleanup_expired(now) {
            tracing::warn!(pod = %key, "an assumed pod expired before its bind was confirmed");
            state.binding.remove(&key);
        }
        let (active, backoff, unschedulable, gated) = state.queue.sizes();
        drop(state);
        let pending = &self.shared.metrics.pending_pods;
        for (queue, size) in
            [("active", active), ("backoff", backoff), ("unschedulable", unschedulable), ("gated", gated)]
        {
            pending.get_or_create(&QueueLabels { queue }).set(size as i64);
        }
    }

    /// Counts one attempt by its result ("scheduled", "unschedulable", "error").
    fn attempted(&self, result: &'static str) {
        let labels = AttemptLabels { result, profile: super::queue::SCHEDULER_NAME };
        self.shared.metrics.schedule_attempts.get_or_create(&labels).inc();
    }

    /// Pops one pod and picks its node, under the lock.
    fn cycle(&self, scheduler: &mut Scheduler, rng: &mut StdRng, now: Instant) -> Cycle {
        let mut state = self.shared.lock();
        let Some(queued) = state.queue.pop(now) else {
            return Cycle::Idle(state.queue.next_wakeup());
        };
        let info = PodInfo::new(queued.pod.clone());
        if info.terminating() {
            // Kubernetes skips pods being deleted; their deletion removes them from the queue.
            state.queue.done(&queued.key);
            return Cycle::Again;
        }
        match scheduler.schedule_one(&info, &state.cache, rng) {
            Ok(node) => match state.cache.assume(queued.pod.clone(), &node, now) {
                Ok(()) => {
                    state.binding.insert(queued.key);
                    Cycle::Bind { pod: queued.pod, node }
                }
                Err(error) => {
                    tracing::warn!(pod = %queued.key, %error, "not assumed; retrying after backoff");
                    state.queue.failed(&queued.key, &Default::default(), now);
                    self.attempted("error");
                    Cycle::Again
                }
            },
            Err(error) => {
                let (reason, result) = match &error {
                    ScheduleError::Internal { .. } => ("SchedulerError", "error"),
                    _ => ("Unschedulable", "unschedulable"),
                };
                self.attempted(result);
                state.queue.failed(&queued.key, &error.rejecting_plugins(), now);
                Cycle::Failed { pod: queued.pod, reason, message: error.to_string() }
            }
        }
    }

    /// The binding cycle of one pod (its permit is held until it answers).
    async fn bind(
        self: Arc<Self>,
        client: Client,
        events: Events,
        pod: Arc<Pod>,
        node: String,
        _permit: OwnedSemaphorePermit,
    ) -> Result<(), ClientError> {
        let result = writes::bind(&client, &pod, &node).await;
        let key = super::pod_key(&pod);
        let now = Instant::now();
        let mut state = self.shared.lock();
        state.binding.remove(&key);
        match result {
            Ok(()) => {
                state.cache.finish_binding(&key, now);
                state.queue.done(&key);
                drop(state);
                self.attempted("scheduled");
                events.scheduled(&pod, &node);
                Ok(())
            }
            Err(error) => {
                state.cache.forget(&key);
                state.queue.failed(&key, &Default::default(), now);
                drop(state);
                self.shared.wake.notify_one();
                if matches!(error, ClientError::Fenced(_)) {
                    return Err(error);
                }
                self.attempted("error");
                tracing::debug!(pod = %key, %node, %error, "bind failed; retrying after backoff");
                Ok(())
            }
        }
    }
}

/// Writes PodScheduled=False unless the pod already says so.
async fn record_failure(
    client: Client,
    pod: Arc<Pod>,
    reason: &'static str,
    message: String,
    _permit: OwnedSemaphorePermit,
) -> Result<(), ClientError> {
    let Some(condition) = writes::unschedulable_condition(&pod, reason, &message) else { return Ok(()) };
    match writes::set_condition(&client, &pod, condition).await {
        Err(error @ ClientError::Fenced(_)) => Err(error),
        Err(error) => {
            tracing::debug!(pod = %super::pod_key(&pod), %error, "PodScheduled not recorded");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The fenced error a finished task ended with, if it did.
fn fenced(ended: Result<Result<(), ClientError>, tokio::task::JoinError>) -> Option<ClientError> {
    match ended {
        Ok(Err(error)) => Some(error),
        Ok(Ok(())) => None,
        Err(join) if join.is_panic() => Some(ClientError::Response("a scheduler task panicked".into())),
        Err(_) => None,
    }
}
