//! `keel bench pod-startup`: pod startup latency, as Kubernetes' SLO defines it (create →
//! Running, image present): `--pods` pods created at `--rate` pods/s through every master of a
//! running cluster with node agents, timed by a pod watch until each reports phase Running.
//! Reports p50/p99/max. The pods are deleted afterwards (grace 0).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use super::BenchError;
use super::api::{ApiConnArgs, JSON, Setup, call, ensure_namespace, header, truncate};
use super::https::{Endpoint, Request};
use super::scheduler::{clean_up, pod_index, read_events, start_watch};
use super::stats::{Latencies, render_grid};

const MAX_PODS: usize = 100_000;

const HELP: &str = "\
Pod startup latency on a running cluster with node agents (`keel up --agents 3 --runtime \
simulated`, or containerd agents): creates --pods pods at --rate pods/s through every master \
and times each from its create to phase Running (Kubernetes' pod startup SLO measure). With the \
simulated runtime the figure includes its --simulated-start-delay-ms (1 s by default).

Example:
  keel bench pod-startup --pods 100 --rate 50";

#[derive(clap::Args, Debug)]
#[command(about = "Pod startup: create → Running latency at a fixed create rate")]
#[command(long_about = HELP)]
pub struct PodStartupArgs {
    #[command(flatten)]
    pub conn: ApiConnArgs,
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    /// Pods created per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Namespace of the pods (created if missing, deleted afterwards).
    #[arg(long, default_value = "bench-startup")]
    pub namespace: String,
    /// Image of the pods' one container.
    #[arg(long, default_value = "busybox")]
    pub image: String,
    /// Longest wait for every pod to run, in seconds.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
}

#[derive(Default)]
struct Times {
    created: HashMap<usize, Instant>,
    running: HashMap<usize, Instant>,
}

pub async fn run(args: PodStartupArgs) -> Result<(), BenchError> {
    args.conn.check()?;
    if !(1..=MAX_PODS).contains(&args.pods) {
        return Err(BenchError::Args(format!("--pods must be between 1 and {MAX_PODS}")));
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(BenchError::Args("--rate must be a positive number".into()));
    }
    let setup = Arc::new(Setup::load(&args.conn)?);
    ensure_namespace(&setup, &args.namespace).await?;
    let (connection, watch) = start_watch(&setup, &args.namespace).await?;
    let times = Arc::new(Mutex::new(Times::default()));
    let reader = tokio::spawn(read_running(connection, watch, times.clone(), args.pods));

    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut creators = tokio::task::JoinSet::new();
    let workers = setup.concurrency.min(args.pods);
    for worker in 0..workers {
        let (setup, times, namespace, image) =
            (setup.clone(), times.clone(), args.namespace.clone(), args.image.clone());
        let pods = args.pods;
        creators.spawn(async move {
            let mut endpoints: Vec<Endpoint> = setup.endpoints();
            let mut failed = 0;
            for i in (worker..pods).step_by(workers) {
                tokio::time::sleep_until((started + interval * i as u32).into()).await;
                let body = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": format!("pod-{i}")},
                    "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "main", "image": image}]},
                });
                let path = format!("/api/v1/namespaces/{namespace}/pods");
                let servers = endpoints.len();
                let endpoint = &mut endpoints[i % servers];
                if let Ok(mut times) = times.lock() {
                    times.created.insert(i, Instant::now());
                }
                let request = Request::json(Method::POST, &path, JSON, Bytes::from(body.to_string()));
                if let Err(error) = call(endpoint, request, &[StatusCode::CREATED]).await {
                    failed += 1;
                    eprintln!("creating pod-{i}: {}: {}", error.failure, truncate(&error.detail, 200));
                }
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(done) = creators.join_next().await {
        failed += done.unwrap_or(0);
    }
    let created_in = started.elapsed();
    let finished = tokio::time::timeout(Duration::from_secs(args.max_seconds), reader).await;

    let report = {
        let times = times.lock().map_err(|_| test_error("the timing lock was poisoned".into()))?;
        let mut latencies = Latencies::with_capacity(times.running.len());
        for (i, running) in &times.running {
            if let Some(created) = times.created.get(i) {
                latencies.record(running.saturating_duration_since(*created));
            }
        }
        let summary = latencies.summary();
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0));
        let lines = vec![
            format!(
                "pods: {} at {} pods/s (created in {:.1}s), image {}",
                args.pods,
                args.rate,
                created_in.as_secs_f64(),
                args.image
            ),
            format!("failed creates: {failed}"),
        ];
        let mut out = header("pod-startup", args.conn.label.as_deref(), &setup, &lines);
        out.push('\n');
        let row = vec![
            "create → Running".to_string(),
            summary.count.to_string(),
            ms(summary.p50),
            ms(summary.p99),
            ms(summary.max),
        ];
        out.push_str(&render_grid(&["measure", "pods", "p50 ms", "p99 ms", "max ms"], &[row]));
        out
    };
    println!("{report}");
    clean_up(&setup, &args.namespace).await;
    match finished {
        Ok(Ok(Ok(()))) if failed == 0 => Ok(()),
        Ok(Ok(Ok(()))) => Err(test_error(format!("{failed} pods were not created"))),
        Ok(Ok(Err(reason))) => Err(test_error(reason)),
        Ok(Err(_)) => Err(test_error("the watch reader failed".into())),
        Err(_) => Err(test_error(format!("not every pod ran within {}s", args.max_seconds))),
    }
}

fn test_error(reason: String) -> BenchError {
    BenchError::Test { test: "pod-startup".into(), reason }
}

/// Reads the pod watch until `total` pods have reported phase Running.
async fn read_running(
    // The watch's connection: dropping it would close the stream.
    _connection: Endpoint,
    mut body: hyper::body::Incoming,
    times: Arc<Mutex<Times>>,
    total: usize,
) -> Result<(), String> {
    read_events(&mut body, |event| {
        let object = &event["object"];
        if object["status"]["phase"] != "Running" {
            return Ok(false);
        }
        let Some(i) = pod_index(object) else { return Ok(false) };
        let mut times = times.lock().map_err(|_| "the timing lock was poisoned".to_string())?;
        times.running.entry(i).or_insert_with(Instant::now);
        Ok(times.running.len() >= total)
    })
    .await
}
