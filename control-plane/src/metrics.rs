//! A master's Prometheus metrics, served at `/metrics` (OpenMetrics text, through the
//! `prometheus-client` crate), under the names operators know: etcd's for the embedded store
//! member, Kubernetes' for the API server, the scheduler, the work queues and leader election,
//! and `keel_fenced_writes_total` and `keel_fence_last_accepted_revision` for the fence.
//!
//! Everything is a plain counter, gauge or histogram updated where it happens (the request
//! path, the scheduler loop, the queues, the supervisor); the store's gauges are sampled by
//! [`watch_store`]. Label values come from fixed sets (verbs, resources, codes, queue and
//! component names), so no family grows without bound.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// kube-apiserver's buckets for `apiserver_request_duration_seconds`.
const REQUEST_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];

/// The OpenMetrics content type `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: String,
    pub scope: &'static str,
    pub component: &'static str,
    pub dry_run: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: String,
    pub scope: &'static str,
    pub component: &'static str,
    pub dry_run: &'static str,
}

/// What `observe_request` labels a request with.
pub struct ObservedRequest {
    pub verb: &'static str,
    pub resource: &'static crate::apiserver::resources::Resource,
    pub subresource: String,
    /// "resource" (one object), "namespace" (a namespace's collection) or "cluster".
    pub scope: &'static str,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub result: &'static str,
    pub profile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    pub name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FenceLabels {
    pub component: &'static str,
    /// "accepted" or "rejected".
    pub result: &'static str,
}

/// The store member's gauges (etcd's names); zero on a master whose store is remote.
#[derive(Default)]
pub struct StoreMetrics {
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    pub leader_changes: Counter,
    pub db_size: Gauge,
    pub db_size_in_use: Gauge,
    pub current_revision: Gauge,
    pub proposals_committed: Gauge,
    pub proposals_applied: Gauge,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    pub schedule_attempts: Family<AttemptLabels, Counter>,
    pub pending_pods: Family<QueueLabels, Gauge>,
    pub scheduler_events_dropped: Counter,
    pub workqueue_depth: Family<NameLabels, Gauge>,
    pub workqueue_adds: Family<NameLabels, Counter>,
    pub leader_status: Family<NameLabels, Gauge>,
    pub fenced_writes: Family<FenceLabels, Counter>,
    /// The store revision of the last fenced write of a component this master had accepted.
    pub fence_last_accepted: Family<NameLabels, Gauge>,
    pub store: StoreMetrics,
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            request_histogram as fn() -> _,
        );
        let schedule_attempts = Family::<AttemptLabels, Counter>::default();
        let pending_pods = Family::<QueueLabels, Gauge>::default();
        let scheduler_events_dropped = Counter::default();
        let workqueue_depth = Family::<NameLabels, Gauge>::default();
        let workqueue_adds = Family::<NameLabels, Counter>::default();
        let leader_status = Family::<NameLabels, Gauge>::default();
        let fenced_writes = Family::<FenceLabels, Counter>::default();
        let fence_last_accepted = Family::<NameLabels, Gauge>::default();
        let store = StoreMetrics::default();

        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            request_duration.clone(),
        );
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            schedule_attempts.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods; 'gated' means number of gated pods.",
            pending_pods.clone(),
        );
        registry.register(
            "keel_scheduler_events_dropped",
            "Scheduler events dropped because the event queue was full.",
            scheduler_events_dropped.clone(),
        );
        registry.register("workqueue_depth", "Current depth of workqueue", workqueue_depth.clone());
        registry.register("workqueue_adds", "Total number of adds handled by workqueue", workqueue_adds.clone());
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
            leader_status.clone(),
        );
        registry.register(
            "keel_fenced_writes",
            "Writes by the scheduler and the controllers carrying their leadership fence, by whether the store accepted them.",
            fenced_writes.clone(),
        );
        registry.register(
            "keel_fence_last_accepted_revision",
            "The store revision of the last fenced write of the component this master had accepted (compare with the fence key's revision: a later term began there).",
            fence_last_accepted.clone(),
        );
        registry.register(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            store.has_leader.clone(),
        );
        registry.register(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            store.is_leader.clone(),
        );
        registry.register(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            store.leader_changes.clone(),
        );
        registry.register(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            store.db_size.clone(),
        );
        registry.register(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            store.db_size_in_use.clone(),
        );
        registry.register(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            store.current_revision.clone(),
        );
        registry.register(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            store.proposals_committed.clone(),
        );
        registry.register(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            store.proposals_applied.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            request_duration,
            schedule_attempts,
            pending_pods,
            scheduler_events_dropped,
            workqueue_depth,
            workqueue_adds,
            leader_status,
            fenced_writes,
            fence_last_accepted,
            store,
        })
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// One API request, answered with `code` after `elapsed`.
    pub fn observe_request(&self, request: ObservedRequest, code: u16, elapsed: Duration) {
        let ObservedRequest { verb, resource, subresource, scope, dry_run } = request;
        let dry_run = if dry_run { "All" } else { "" };
        let labels = DurationLabels {
            verb,
            group: resource.group,
            version: resource.version,
            resource: resource.plural,
            subresource,
            scope,
            component: "apiserver",
            dry_run,
        };
        self.request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        let DurationLabels { verb, group, version, resource, subresource, scope, component, dry_run } = labels;
        let labels = RequestLabels { verb, group, version, resource, subresource, scope, component, dry_run, code };
        self.requests.get_or_create(&labels).inc();
    }

    /// One fenced write's outcome: accepted at store revision `Some(revision)`, or refused.
    pub fn fenced_write(&self, component: &'static str, accepted_at: Option<i64>) {
        let result = if accepted_at.is_some() { "accepted" } else { "rejected" };
        self.fenced_writes.get_or_create(&FenceLabels { component, result }).inc();
        if let Some(revision) = accepted_at {
            let last = self.fence_last_accepted.get_or_create(&NameLabels { name: component });
            // Answers may arrive out of order; the gauge keeps the highest.
            if revision > last.get() {
                last.set(revision);
            }
        }
    }
}

/// How often the store's sizes and revisions are sampled (leadership is followed at once).
pub const STORE_SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Keeps the etcd gauges of the embedded store member current, until the task is aborted:
/// leadership at once on every change, sizes and indexes once per [`STORE_SAMPLE_PERIOD`]
/// (reading RocksDB's properties on every applied entry would cost the writes' CPU).
pub async fn watch_store(metrics: Arc<Metrics>, store: Arc<keel_store::store::Store>) {
    let mut leadership = store.node.watch_leadership();
    let mut leader = None;
    let mut next_sample = tokio::time::Instant::now();
    loop {
        let status = store.node.status();
        // etcd counts every new leader it sees, the first election included.
        if status.leader.is_some() && status.leader != leader {
            metrics.store.leader_changes.inc();
            leader = status.leader;
        }
        metrics.store.has_leader.set(i64::from(status.leader.is_some()));
        metrics.store.is_leader.set(i64::from(store.node.is_leader()));
        if tokio::time::Instant::now() >= next_sample {
            metrics.store.proposals_applied.set(status.applied_index as i64);
            metrics.store.proposals_committed.set(status.last_log_index.max(status.applied_index) as i64);
            metrics.store.db_size.set(store.engine.size_bytes() as i64);
            metrics.store.db_size_in_use.set(store.engine.live_size_bytes() as i64);
            metrics.store.current_revision.set(store.current_revision());
            next_sample = tokio::time::Instant::now() + STORE_SAMPLE_PERIOD;
        }
        if !leadership.changed(next_sample).await {
            return;
        }
    }
}
