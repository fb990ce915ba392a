//! `keel bench control-plane-failover`: how long the controllers are gone when the master
//! leading them dies. On a `keel up --restart-masters` cluster, `--kills` times: find the
//! holder of `kube-system/kube-controller-manager`, kill -9 its master (by the PID file `keel
//! up` wrote), scale a Deployment through a surviving master at once, and time (a) the Lease's
//! new holder and (b) the first reconcile of the new leader: the Deployment's
//! `status.observedGeneration` reaching the scaled generation. Then wait for the killed master
//! to be back (`/readyz`) before the next kill. Reports median, p99 and max of both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::BenchError;
use super::api::{ApiConnArgs, JSON, Setup, call, ensure_namespace, header, truncate};
use super::https::{Endpoint, Request};
use super::stats::{Latencies, Summary, render_grid};

const MAX_KILLS: usize = 1_000;
/// Longest wait for one failover, and for a killed master to be back.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager";
const MERGE_PATCH: &str = "application/merge-patch+json";

const HELP: &str = "\
Controller-manager failover on a running `keel up --restart-masters` cluster. Each of --kills \
rounds kills (SIGKILL) the master holding kube-system/kube-controller-manager, scales a \
Deployment through another master at once, and times the Lease's new holder and the new \
leader's first reconcile (the Deployment's observedGeneration catching up). The killed master \
is restarted by `keel up`; the next round waits until it serves again.

Example:
  keel up --dir .keel --restart-masters &
  keel bench control-plane-failover --kills 10 --up-dir .keel";

#[derive(clap::Args, Debug)]
#[command(about = "Control-plane failover: kill the controller manager's master, time the takeover")]
#[command(long_about = HELP)]
pub struct ControlPlaneFailoverArgs {
    #[command(flatten)]
    pub conn: ApiConnArgs,
    /// Holder kills.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// The `keel up --dir` whose master-N.pid files name the masters' PIDs.
    #[arg(long, default_value = ".keel")]
    pub up_dir: PathBuf,
    /// Namespace of the benchmark's Deployment (created if missing).
    #[arg(long, default_value = "bench-failover")]
    pub namespace: String,
}

pub async fn run(args: ControlPlaneFailoverArgs) -> Result<(), BenchError> {
    args.conn.check()?;
    if !(1..=MAX_KILLS).contains(&args.kills) {
        return Err(BenchError::Args(format!("--kills must be between 1 and {MAX_KILLS}")));
    }
    let setup = Arc::new(Setup::load(&args.conn)?);
    if setup.servers.len() < 2 {
        return Err(BenchError::Args("--servers must name every master (at least two)".into()));
    }
    ensure_namespace(&setup, &args.namespace).await?;
    let mut endpoints = setup.endpoints();
    let deployment_path = format!("/apis/apps/v1/namespaces/{}/deployments/failover", args.namespace);
    create_deployment(&mut endpoints, &args.namespace).await?;

    let mut to_holder = Latencies::with_capacity(args.kills);
    let mut to_reconcile = Latencies::with_capacity(args.kills);
    for round in 0..args.kills {
        let holder = steady(&mut endpoints, &deployment_path).await?;
        let pid = master_pid(&args.up_dir, holder)?;
        let survivor = (holder + 1) % endpoints.len();
        kill(pid)?;
        let killed = Instant::now();
        let replicas = 1 + (round % 2) as i64;
        let wanted = scale(&mut endpoints[survivor], &deployment_path, replicas, killed).await?;
        let (took_holder, took_reconcile) =
            wait_takeover(&mut endpoints[survivor], &deployment_path, holder, wanted, killed).await?;
        to_holder.record(took_holder);
        to_reconcile.record(took_reconcile);
        eprintln!(
            "round {}: killed master {} (pid {pid}); new holder after {:.0} ms, first reconcile after {:.0} ms",
            round + 1,
            holder + 1,
            took_holder.as_secs_f64() * 1000.0,
            took_reconcile.as_secs_f64() * 1000.0
        );
        wait_back(&mut endpoints[holder]).await?;
    }
    let lines = vec![format!("kills: {} (SIGKILL of the kube-controller-manager holder's master)", args.kills)];
    let mut out = header("control-plane-failover", args.conn.label.as_deref(), &setup, &lines);
    out.push('\n');
    let row = |what: &str, s: Summary| {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0));
        vec![what.to_string(), s.count.to_string(), ms(s.p50), ms(s.p99), ms(s.max)]
    };
    let grid = vec![
        row("kill → new Lease holder", to_holder.summary()),
        row("kill → first reconcile", to_reconcile.summary()),
    ];
    out.push_str(&render_grid(&["measure", "kills", "median ms", "p99 ms", "max ms"], &grid));
    println!("{out}");
    Ok(())
}

fn test_error(reason: String) -> BenchError {
    BenchError::Test { test: "control-plane-failover".into(), reason }
}

async fn create_deployment(endpoints: &mut [Endpoint], namespace: &str) -> Result<(), BenchError> {
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "failover"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "failover"}},
            "template": {"metadata": {"labels": {"app": "failover"}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}},
        },
    });
    let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments");
    let request = Request::json(Method::POST, &path, JSON, Bytes::from(body.to_string()));
    call(&mut endpoints[0], request, &[StatusCode::CREATED, StatusCode::CONFLICT])
        .await
        .map_err(|e| test_error(format!("creating the Deployment: {}: {}", e.failure, truncate(&e.detail, 200))))?;
    Ok(())
}

async fn get_json(endpoint: &mut Endpoint, path: &str) -> Option<Value> {
    let (_, reply) = call(endpoint, Request::get(path, JSON), &[StatusCode::OK]).await.ok()?;
    serde_json::from_slice(&reply.body).ok()
}

/// `master-2_<suffix>` → 1.
fn master_index(identity: &str) -> Option<usize> {
    let name = identity.split('_').next()?;
    name.strip_prefix("master-")?.parse::<usize>().ok()?.checked_sub(1)
}

/// Waits until the Lease has a holder and the Deployment is reconciled; the holder's index.
async fn steady(endpoints: &mut [Endpoint], deployment: &str) -> Result<usize, BenchError> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let servers = endpoints.len();
    let mut turn = 0;
    while Instant::now() < deadline {
        let endpoint = &mut endpoints[turn % servers];
        turn += 1;
        let holder = get_json(endpoint, LEASE)
            .await
            .and_then(|lease| lease["spec"]["holderIdentity"].as_str().and_then(master_index));
        let object = get_json(endpoint, deployment).await;
        if let (Some(holder), Some(object)) = (holder, object) {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
            let observed = object["status"]["observedGeneration"].as_i64().unwrap_or(-1);
            if observed >= generation && holder < servers {
                return Ok(holder);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Err(test_error(format!("no steady holder and reconciled Deployment within {STEP_TIMEOUT:?}")))
}

fn master_pid(dir: &std::path::Path, index: usize) -> Result<u32, BenchError> {
    let path = dir.join(format!("master-{}.pid", index + 1));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Args(format!("reading {}: {e} (is --up-dir keel up's --dir?)", path.display())))?;
    text.trim().parse().map_err(|_| BenchError::Args(format!("{} holds no PID", path.display())))
}

fn kill(pid: u32) -> Result<(), BenchError> {
    // SAFETY: kill(2) with a PID read from keel up's pid file; no memory is involved.
    let killed = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    if killed != 0 {
        return Err(test_error(format!("kill -9 {pid}: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

/// Scales the Deployment, retrying while the survivor's store elects a leader; the new
/// generation.
async fn scale(endpoint: &mut Endpoint, deployment: &str, replicas: i64, since: Instant) -> Result<i64, BenchError> {
    let body = Bytes::from(json!({"spec": {"replicas": replicas}}).to_string());
    while since.elapsed() < STEP_TIMEOUT {
        let request = Request::json(Method::PATCH, deployment, MERGE_PATCH, body.clone());
        if let Ok((_, reply)) = call(endpoint, request, &[StatusCode::OK]).await {
            let object: Value = serde_json::from_slice(&reply.body).map_err(|e| test_error(format!("patch: {e}")))?;
            return Ok(object["metadata"]["generation"].as_i64().unwrap_or(0));
        }
        tokio::time::sleep(POLL).await;
    }
    Err(test_error("the scale was not accepted".into()))
}

/// Polls until the Lease names another master and the Deployment's observedGeneration reaches
/// `generation`; how long after `since` each happened.
async fn wait_takeover(
    endpoint: &mut Endpoint,
    deployment: &str,
    killed: usize,
    generation: i64,
    since: Instant,
) -> Result<(Duration, Duration), BenchError> {
    let mut holder_at = None;
    let mut reconciled_at = None;
    while since.elapsed() < STEP_TIMEOUT {
        if holder_at.is_none() {
            let holder = get_json(endpoint, LEASE)
                .await
                .and_then(|lease| lease["spec"]["holderIdentity"].as_str().and_then(master_index));
            if holder.is_some_and(|h| h != killed) {
                holder_at = Some(since.elapsed());
            }
        }
        if reconciled_at.is_none() {
            let observed = get_json(endpoint, deployment)
                .await
                .and_then(|d| d["status"]["observedGeneration"].as_i64())
                .unwrap_or(-1);
            if observed >= generation {
                reconciled_at = Some(since.elapsed());
            }
        }
        if let (Some(holder), Some(reconciled)) = (holder_at, reconciled_at) {
            return Ok((holder, reconciled));
        }
        tokio::time::sleep(POLL).await;
    }
    Err(test_error(format!("no takeover within {STEP_TIMEOUT:?}")))
}

/// Waits until the restarted master answers `/readyz`.
async fn wait_back(endpoint: &mut Endpoint) -> Result<(), BenchError> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        if call(endpoint, Request::get("/readyz", "text/plain"), &[StatusCode::OK]).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(test_error(format!(
        "the killed master did not serve again within {STEP_TIMEOUT:?} (was keel up started with --restart-masters?)"
    )))
}
