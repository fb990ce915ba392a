//! The scheduler: places pods on nodes. The core (everything but `runner`, `feed` and
//! `writes`) is pure: no I/O, no async, no API client; the wiring calls it.
//!
//! # Layout
//! - `resources.rs`: Kubernetes quantities → integers (milli-cpu, bytes); what a pod requests
//!   (containers, sidecars, init peaks, overhead; the non-zero scoring defaults).
//! - `selector.rs`: label selectors, node selector terms, tolerations, compiled once per pod.
//! - `framework.rs`: `PodInfo`, `NodeInfo`, `CycleState`, `Status`/`Code`, `ClusterEvent`, the
//!   extension-point traits (PreFilter, Filter, PreScore, Score + NormalizeScore).
//! - `plugins/`: one file per default plugin, and `Profile` (their order and weights).
//! - `schedule.rs`: `Scheduler::schedule_one`, one cycle; `FitError` and its exact message.
//! - `cache.rs`: `Cache`, nodes with their bound and assumed pods; scheduling reads it directly.
//! - `queue.rs`: `SchedulingQueue`, activeQ / backoffQ / unschedulable set, cluster-event moves.
//! - `runner.rs`: the loop that runs while this master leads (cycles, concurrent binds);
//!   `feed.rs`: the informer callbacks that keep the cache and queue on every master;
//!   `writes.rs`: bindings, the PodScheduled condition, the events.
//!
//! # The loop the wiring runs
//! ```text
//! informer event   → cache.upsert_*/remove_* → Some(event) → queue.on_cluster_event(event, now)
//! pod informer     → queue.add / update / delete (unbound pods of default-scheduler)
//! loop: queue.pop(now) → PodInfo::new(pod) → scheduler.schedule_one(&info, &cache, &mut rng)
//!   Ok(node)  → cache.assume(pod, node, now) → POST binding → ok: cache.finish_binding,
//!               queue.done(key) | err: cache.forget, queue.failed(key, {}, now)
//!   Err(e)    → patch PodScheduled=False (e.to_string()), queue.failed(key, e.rejecting_plugins(), now)
//! timers: queue.next_wakeup() ; cache.cleanup_expired(now) every second or so
//! ```
//!
//! # Invariants
//! - Nothing here reads a clock or a random source: `now` and the `Rng` are passed in, so
//!   every decision replays exactly in tests.
//! - `NodeInfo`'s sums always equal the sums over its pods (`add_pod`/`remove_pod` only).
//! - Filters do not allocate on success; per-pod work happens once in PreFilter/PreScore.
//! - Messages and reasons are Kubernetes' own strings (kubectl users and tests compare them).

pub mod cache;
mod feed;
pub mod framework;
pub mod plugins;
pub mod queue;
pub mod resources;
pub mod runner;
pub mod schedule;
pub mod selector;
#[cfg(test)]
mod testutil;
mod writes;

pub use cache::{Cache, CacheError, SpreadSourceKind};
pub use framework::{ActionType, ClusterEvent, Code, EventResource, NodeInfo, PodInfo, PodKey, Status, pod_key};
pub use plugins::Profile;
pub use queue::{QueueConfig, QueueError, QueuedPod, SchedulingQueue};
pub use resources::{QuantityError, parse_milli, parse_value};
pub use schedule::{Config, FitError, ScheduleError, Scheduler};
pub use selector::Selector;
