//! `keel bench scheduler`: scheduling throughput on a running cluster, as Kubernetes'
//! scheduler_perf measures it: `--nodes` Node objects (Ready, with capacity, no agent behind
//! them) and then `--pods` pending pods, created through every master at `--concurrency`; a
//! watch on the pods sees each one bound. Reports pods/s from the first create to the last
//! bind, create→bound latency (p50/p99/max), any pod bound twice, and the store's leader
//! changes during the run (from every master's `etcd_server_leader_changes_seen_total`).
//!
//! Everything it makes carries the label `keel.dev/bench=scheduler` or lives in its
//! namespace, and is deleted at the end (pods with grace 0: no kubelet runs them) unless
//! `--keep`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::BenchError;
use super::api::{ApiConnArgs, JSON, OP_HEADERS, Setup, call, ensure_namespace, header, leader_changes, truncate};
use super::https::{Endpoint, Request};
use super::stats::{Latencies, render_grid};

/// Most nodes and pods one run makes.
const MAX_OBJECTS: usize = 100_000;
/// Zones the nodes are spread over (`topology.kubernetes.io/zone`).
const ZONES: usize = 10;
const BENCH_LABEL: &str = "keel.dev/bench";

const HELP: &str = "\
Scheduling throughput on a running cluster (start one with `keel up`). Creates --nodes Ready \
Node objects (no agent behind them, as scheduler_perf's fake nodes), then --pods pods of \
100m CPU / 128Mi through every master at --concurrency, and watches them get bound. Reports \
pods/s from the first create to the last bind, create→bound latency (p50/p99/max), pods bound \
twice (must be 0) and the store's leader changes during the run (must be 0). Cleans up \
afterwards unless --keep.

Example:
  keel bench scheduler --nodes 5000 --pods 10000";

#[derive(clap::Args, Debug)]
#[command(about = "Scheduler throughput: pods/s from first create to last bind, on --nodes fake nodes")]
#[command(long_about = HELP)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub conn: ApiConnArgs,
    /// Nodes to create.
    #[arg(long, default_value_t = 5_000)]
    pub nodes: usize,
    /// Pods to create and wait for.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Namespace of the pods (created if missing).
    #[arg(long, default_value = "bench-scheduler")]
    pub namespace: String,
    /// Longest wait for every pod to be bound, in seconds.
    #[arg(long, default_value_t = 300)]
    pub max_seconds: u64,
    /// Leave the nodes and pods in place afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// When each pod was created and bound, and what the watch saw.
#[derive(Default)]
struct Timeline {
    created: HashMap<usize, Instant>,
    bound: HashMap<usize, Instant>,
    /// Pods whose nodeName changed once set (a double bind; must stay 0).
    rebound: usize,
}

pub async fn run(args: SchedulerArgs) -> Result<(), BenchError> {
    args.conn.check()?;
    for (flag, value) in [("--nodes", args.nodes), ("--pods", args.pods)] {
        if !(1..=MAX_OBJECTS).contains(&value) {
            return Err(BenchError::Args(format!("{flag} must be between 1 and {MAX_OBJECTS}")));
        }
    }
    let setup = Arc::new(Setup::load(&args.conn)?);
    ensure_namespace(&setup, &args.namespace).await?;
    let changes_before = leader_changes(&setup).await?;

    let started = Instant::now();
    let failed = fan_out(&setup, args.nodes, |i| {
        (Method::POST, "/api/v1/nodes".to_string(), node(i), &[StatusCode::CREATED, StatusCode::CONFLICT][..])
    })
    .await;
    let nodes_took = started.elapsed();
    if failed > 0 {
        return Err(test_error(format!("{failed} of {} nodes were not created", args.nodes)));
    }

    let (connection, watch) = start_watch(&setup, &args.namespace).await?;
    let timeline = Arc::new(std::sync::Mutex::new(Timeline::default()));
    let total = args.pods;
    let reader = tokio::spawn(read_watch(connection, watch, timeline.clone(), total));

    let pods_started = Instant::now();
    let namespace = args.namespace.clone();
    let creates = timeline.clone();
    let failed = fan_out_timed(
        &setup,
        total,
        move |i| (Method::POST, format!("/api/v1/namespaces/{namespace}/pods"), pod(i), &[StatusCode::CREATED][..]),
        creates,
    )
    .await;
    let create_took = pods_started.elapsed();
    let deadline = Duration::from_secs(args.max_seconds);
    let all_bound = tokio::time::timeout(deadline.saturating_sub(create_took), reader).await;
    let changes_after = leader_changes(&setup).await?;

    let report = {
        let timeline = timeline.lock().map_err(|_| test_error("the timeline lock was poisoned".into()))?;
        summarize(&args, &setup, &timeline, nodes_took, create_took, failed, changes_after - changes_before)
    };
    println!("{report}");
    if !args.keep {
        clean_up(&setup, &args.namespace).await;
    }
    match all_bound {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(reason))) => Err(test_error(reason)),
        Ok(Err(_)) => Err(test_error("the watch reader failed".into())),
        Err(_) => Err(test_error(format!("not every pod was bound within {}s", args.max_seconds))),
    }
}

fn test_error(reason: String) -> BenchError {
    BenchError::Test { test: "scheduler".into(), reason }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

fn node(i: usize) -> Bytes {
    let name = format!("bench-node-{i}");
    let now = now_rfc3339();
    let resources = json!({"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let body = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES),
            BENCH_LABEL: "scheduler",
        }},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "a benchmark node", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        },
    });
    Bytes::from(body.to_string())
}

fn pod(i: usize) -> Bytes {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", BENCH_LABEL: "scheduler"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "busybox",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
        },
    });
    Bytes::from(body.to_string())
}

type Make = (Method, String, Bytes, &'static [StatusCode]);

/// Sends `count` requests made by `make(i)` from `--concurrency` workers, each through the next
/// server in turn; the number that failed.
async fn fan_out(setup: &Arc<Setup>, count: usize, make: impl Fn(usize) -> Make + Send + Sync + 'static) -> usize {
    fan_out_inner(setup, count, Arc::new(make), None).await
}

/// [`fan_out`], recording when each request was sent in the timeline.
async fn fan_out_timed(
    setup: &Arc<Setup>,
    count: usize,
    make: impl Fn(usize) -> Make + Send + Sync + 'static,
    timeline: Arc<std::sync::Mutex<Timeline>>,
) -> usize {
    fan_out_inner(setup, count, Arc::new(make), Some(timeline)).await
}

async fn fan_out_inner(
    setup: &Arc<Setup>,
    count: usize,
    make: Arc<dyn Fn(usize) -> Make + Send + Sync>,
    timeline: Option<Arc<std::sync::Mutex<Timeline>>>,
) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..setup.concurrency {
        let (setup, make, next, failed, timeline) =
            (setup.clone(), make.clone(), next.clone(), failed.clone(), timeline.clone());
        workers.spawn(async move {
            let mut endpoints = setup.endpoints();
            let mut turn = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let (method, path, body, expect) = make(i);
                let servers = endpoints.len();
                let endpoint = &mut endpoints[turn % servers];
                turn += 1;
                if let Some(timeline) = &timeline {
                    if let Ok(mut timeline) = timeline.lock() {
                        timeline.created.insert(i, Instant::now());
                    }
                }
                let request = Request::json(method, &path, JSON, body);
                if let Err(error) = call(endpoint, request, expect).await {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("{path}: {}: {}", error.failure, truncate(&error.detail, 200));
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    failed.load(Ordering::Relaxed)
}

/// Lists the namespace's pods and opens a watch from that list's resourceVersion; the
/// connection it runs on, and its body.
pub(super) async fn start_watch(
    setup: &Setup,
    namespace: &str,
) -> Result<(Endpoint, hyper::body::Incoming), BenchError> {
    let mut endpoint = setup.endpoints().remove(0);
    let path = format!("/api/v1/namespaces/{namespace}/pods?limit=1");
    let (_, reply) = call(&mut endpoint, Request::get(&path, JSON), &[StatusCode::OK])
        .await
        .map_err(|e| test_error(format!("listing pods: {}: {}", e.failure, truncate(&e.detail, 200))))?;
    let list: Value = serde_json::from_slice(&reply.body).map_err(|e| test_error(format!("pod list: {e}")))?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let path = format!("/api/v1/namespaces/{namespace}/pods?watch=true&resourceVersion={rv}");
    let (status, body) = endpoint
        .stream(Request::get(&path, JSON))
        .await
        .map_err(|e| test_error(format!("opening the pod watch: {e}")))?;
    if status != StatusCode::OK {
        return Err(test_error(format!("the pod watch answered {status}")));
    }
    Ok((endpoint, body))
}

/// Reads a watch's newline-delimited events, handing each to `on_event` until it returns
/// true (done) or an error.
pub(super) async fn read_events(
    body: &mut hyper::body::Incoming,
    mut on_event: impl FnMut(&Value) -> Result<bool, String>,
) -> Result<(), String> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Err(format!("the pod watch failed: {error}")),
            None => return Err("the pod watch ended early".into()),
        };
        let Ok(data) = frame.into_data() else { continue };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            if on_event(&event)? {
                return Ok(());
            }
        }
    }
}

/// The index of a benchmark pod named `pod-<i>`.
pub(super) fn pod_index(object: &Value) -> Option<usize> {
    object["metadata"]["name"].as_str()?.strip_prefix("pod-")?.parse().ok()
}

/// Reads watch events until `total` pods are bound; a pod whose node changes once set is a
/// double bind.
async fn read_watch(
    // The watch's connection: dropping it would close the stream.
    _connection: Endpoint,
    mut body: hyper::body::Incoming,
    timeline: Arc<std::sync::Mutex<Timeline>>,
    total: usize,
) -> Result<(), String> {
    let mut nodes: HashMap<usize, String> = HashMap::new();
    read_events(&mut body, |event| {
        let object = &event["object"];
        let Some(index) = pod_index(object) else { return Ok(false) };
        let Some(node) = object["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else { return Ok(false) };
        let mut timeline = timeline.lock().map_err(|_| "the timeline lock was poisoned".to_string())?;
        match nodes.get(&index) {
            Some(first) if first != node => timeline.rebound += 1,
            Some(_) => {}
            None => {
                nodes.insert(index, node.to_string());
                timeline.bound.insert(index, Instant::now());
            }
        }
        Ok(timeline.bound.len() >= total)
    })
    .await
}

fn summarize(
    args: &SchedulerArgs,
    setup: &Setup,
    timeline: &Timeline,
    nodes_took: Duration,
    create_took: Duration,
    failed_creates: usize,
    leader_changes: u64,
) -> String {
    let first_create = timeline.created.values().min().copied();
    let last_bound = timeline.bound.values().max().copied();
    let span = match (first_create, last_bound) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let mut latencies = Latencies::with_capacity(timeline.bound.len());
    for (index, bound) in &timeline.bound {
        if let Some(created) = timeline.created.get(index) {
            latencies.record(bound.saturating_duration_since(*created));
        }
    }
    let latency = latencies.summary();
    let bound = timeline.bound.len();
    let rate = |n: usize, d: Duration| if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() };
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0));
    let lines = vec![
        format!("nodes: {} (created in {:.1}s)", args.nodes, nodes_took.as_secs_f64()),
        format!("pods: {} of 100m CPU / 128Mi, created at concurrency {}", args.pods, setup.concurrency),
    ];
    let mut out = header("scheduler", args.conn.label.as_deref(), setup, &lines);
    out.push('\n');
    let grid = vec![
        vec![
            "create pods".to_string(),
            (args.pods - failed_creates).to_string(),
            failed_creates.to_string(),
            format!("{:.2}", create_took.as_secs_f64()),
            format!("{:.0}", rate(args.pods - failed_creates, create_took)),
            "-".into(),
            "-".into(),
            "-".into(),
        ],
        vec![
            "create → bound".to_string(),
            bound.to_string(),
            (args.pods - bound).to_string(),
            format!("{:.2}", span.as_secs_f64()),
            format!("{:.0}", rate(bound, span)),
            ms(latency.p50),
            ms(latency.p99),
            ms(latency.max),
        ],
    ];
    out.push_str(&render_grid(&OP_HEADERS, &grid));
    out.push_str(&format!("\n- scheduling throughput: {:.0} pods/s (first create to last bind)\n", rate(bound, span)));
    out.push_str(&format!("- pods bound twice: {}\n", timeline.rebound));
    out.push_str(&format!("- store leader changes during the run: {leader_changes}\n"));
    out
}

/// Deletes the pods (grace 0), the namespace and the nodes; failures are printed, not fatal.
pub(super) async fn clean_up(setup: &Setup, namespace: &str) {
    let mut endpoint = setup.endpoints().remove(0);
    let grace = Bytes::from(json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}).to_string());
    let steps = [
        format!("/api/v1/namespaces/{namespace}/pods"),
        format!("/api/v1/nodes?labelSelector={BENCH_LABEL}%3Dscheduler"),
        format!("/api/v1/namespaces/{namespace}"),
    ];
    for path in steps {
        let request = Request::json(Method::DELETE, &path, JSON, grace.clone());
        match endpoint.send_within(request, Duration::from_secs(600)).await {
            Ok(reply) if reply.status.is_success() => {}
            Ok(reply) => eprintln!(
                "cleaning up {path}: {}: {}",
                reply.status,
                truncate(&String::from_utf8_lossy(&reply.body), 200)
            ),
            Err(error) => eprintln!("cleaning up {path}: {error}"),
        }
    }
}
