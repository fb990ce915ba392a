//! `keel bench api` and `keel bench api-list`: the Kubernetes API server measured from outside,
//! over the same mutual-TLS HTTPS a kubectl user goes through.
//!
//! Why two benchmarks: writes and big reads stress different parts of an API server. `api` is
//! the write path (admission, validation, the store's compare-and-swap, the answer's encoding):
//! `--concurrency` workers each loop over create → update (with the resourceVersion the create
//! returned) → merge-patch → delete of one ConfigMap, sending every call to the next server, so
//! a write made through one master is read-modified through another. `api-list` is the read path
//! at scale: it fills a namespace with `--pods` pods, then times a full list, the same list in
//! pages of `--page-size` following `metadata.continue` (what kubectl does), and the full list
//! as a server-side Table (what `kubectl get pods` asks for).
//!
//! What counts: a call is an error unless the server answers the one status the API promises
//! (201 for a create, 200 otherwise; 409 is accepted where the object may exist from an earlier
//! run), or a list holds exactly `--pods` items. Errors are tallied per status, the first
//! [`PRINTED_ERRORS`] are printed with their bodies, and any error makes the run exit non-zero
//! after the tables are printed.
//!
//! Bounds: every call has `--timeout`; a run stops after [`MAX_ERRORS`] failed calls; `api` stops
//! at `--duration` or `--requests`; a paginated list gives up after more pages than `--pods`
//! explains; objects the run could not delete are remembered up to [`MAX_LEAKED`] and retried at
//! the end. The HTTPS side (one connection per worker and server) is in [`super::https`];
//! percentiles and tables are [`super::stats`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::BenchError;
use super::https::{self, Endpoint, Reply, Request, Server};
use super::stats::{self, Latencies, Row};

/// The three API servers `keel up` starts.
const DEFAULT_SERVERS: &str = "https://127.0.0.1:6443,https://127.0.0.1:6444,https://127.0.0.1:6445";
/// A run stops once this many calls have failed: past that, nothing useful is measured.
pub const MAX_ERRORS: u64 = 1_000;
/// Failed calls printed with their answer (the rest are only counted).
pub const PRINTED_ERRORS: usize = 5;
/// Characters of an error body printed.
const ERROR_BODY_CHARS: usize = 400;
/// Objects a run remembers for deletion at the end after their delete failed.
pub const MAX_LEAKED: usize = 10_000;
/// Consecutive failures after which the end-of-run cleanup gives up.
const CLEANUP_GIVE_UP: u32 = 10;
/// Most workers; each holds one connection per server.
const MAX_CONCURRENCY: usize = 4_096;
/// Most pods `api-list` creates.
const MAX_PODS: u64 = 1_000_000;
/// Most timed repetitions of each list variant.
const MAX_REPEAT: u32 = 10_000;
/// Longest `--duration`.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most calls one `api` run makes, with or without `--requests`: every successful call keeps a
/// 16-byte latency sample until the run ends, so this bounds the run's memory (160 MB).
const MAX_REQUESTS: u64 = 10_000_000;
/// Default time limit of a `--requests` run.
const REQUESTS_TIME_LIMIT: Duration = Duration::from_secs(600);
/// Deleting a whole collection is one call doing `--pods` deletes; it gets longer than `--timeout`.
const DELETE_COLLECTION_TIMEOUT: Duration = Duration::from_secs(600);
/// What kubectl sends to get a server-side Table.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
pub(super) const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";

/// TLS and server flags both API benchmarks take.
#[derive(clap::Args, Debug, Clone)]
pub struct ApiConnArgs {
    /// Comma-separated API server URLs; every worker sends each call to the next one.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SERVERS)]
    pub servers: Vec<String>,
    /// CA bundle that signed the servers' certificates.
    #[arg(long, default_value = ".keel/pki/ca.crt")]
    pub cacert: PathBuf,
    /// Client certificate (the admin credential `keel up` writes).
    #[arg(long, default_value = ".keel/pki/admin.crt")]
    pub cert: PathBuf,
    /// Key of the client certificate.
    #[arg(long, default_value = ".keel/pki/admin.key")]
    pub key: PathBuf,
    /// Workers, each with one call in flight and one connection per server.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Time limit of each call (connecting included), in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Name shown in the header, e.g. "keel up, 3 masters".
    #[arg(long)]
    pub label: Option<String>,
}

impl ApiConnArgs {
    pub(super) fn check(&self) -> Result<(), BenchError> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(BenchError::Args(format!("--concurrency must be between 1 and {MAX_CONCURRENCY}")));
        }
        if self.timeout == 0 {
            return Err(BenchError::Args("--timeout must be at least 1".into()));
        }
        https::parse_servers(&self.servers).map_err(|e| BenchError::Args(e.to_string()))?;
        Ok(())
    }
}

const API_HELP: &str = "\
Mutating API calls at a fixed concurrency through all masters. Each of --concurrency workers \
loops: create a ConfigMap (POST, expects 201), update it with the returned resourceVersion \
(PUT, 200), merge-patch it (PATCH application/merge-patch+json, 200), delete it (DELETE, 200); \
every call goes to the next server of --servers. The namespace is created first (409 accepted). \
Reports count, ops/s and p50/p99/max latency per operation and overall, and errors by HTTP \
status; any error makes the run exit non-zero.

Examples:
  keel bench api
  keel bench api --servers https://127.0.0.1:6443 --concurrency 8 --requests 20000";

#[derive(clap::Args, Debug)]
#[command(about = "API server writes: create/update/patch/delete ConfigMaps at a fixed concurrency")]
#[command(long_about = API_HELP)]
pub struct ApiArgs {
    #[command(flatten)]
    pub conn: ApiConnArgs,
    /// How long the workers run (e.g. 10s, 500ms, 2m; at most 1h); with --requests a time limit (default 10m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many API calls in total (rounded up to whole create-update-patch-delete
    /// cycles; at most 10,000,000, which also bounds a --duration run).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Namespace of the ConfigMaps (created if missing).
    #[arg(long, default_value = "keel-bench")]
    pub namespace: String,
}

/// Default run length of `keel bench api` without `--requests`.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl ApiArgs {
    fn check(&self) -> Result<(), BenchError> {
        self.conn.check()?;
        check_namespace(&self.namespace)?;
        if self.requests.is_some_and(|r| !(1..=MAX_REQUESTS).contains(&r)) {
            return Err(BenchError::Args(format!("--requests must be between 1 and {MAX_REQUESTS}")));
        }
        Ok(())
    }

    /// The time limit and the number of cycles (of four calls) to run at most.
    fn limits(&self) -> (Duration, u64) {
        let cycles = |calls: u64| calls.div_ceil(MutateOp::ALL.len() as u64);
        match self.requests {
            Some(calls) => (self.duration.unwrap_or(REQUESTS_TIME_LIMIT), cycles(calls)),
            None => (self.duration.unwrap_or(DEFAULT_DURATION), cycles(MAX_REQUESTS)),
        }
    }
}

const API_LIST_HELP: &str = "\
Lists of many pods. Creates --pods pods (one container `main`, image busybox; 409 accepted when \
they exist from an earlier run) in --namespace at --concurrency, then times --repeat repetitions \
of: (a) the full list as JSON, (b) the list in pages of --page-size following metadata.continue \
to the end, as kubectl does (the time is the sum over the pages), (c) the full list as a Table, \
with kubectl's Accept header. Each list must hold exactly --pods items. Reports p50/p99/max per \
variant, items, pages and bytes. Deletes the pods at the end unless --keep.

Examples:
  keel bench api-list
  keel bench api-list --pods 1000 --repeat 20 --keep";

#[derive(clap::Args, Debug)]
#[command(about = "API server reads: list thousands of pods (full, paginated, as a Table)")]
#[command(long_about = API_LIST_HELP)]
pub struct ApiListArgs {
    #[command(flatten)]
    pub conn: ApiConnArgs,
    /// Pods in the namespace.
    #[arg(long, default_value_t = 10_000)]
    pub pods: u64,
    /// Timed repetitions of each list variant.
    #[arg(long, default_value_t = 10)]
    pub repeat: u32,
    /// Page size (`limit`) of the paginated variant; kubectl uses 500.
    #[arg(long, default_value_t = 500)]
    pub page_size: u64,
    /// Namespace of the pods (created if missing).
    #[arg(long, default_value = "keel-bench-list")]
    pub namespace: String,
    /// Leave the pods in place instead of deleting them at the end.
    #[arg(long)]
    pub keep: bool,
}

impl ApiListArgs {
    fn check(&self) -> Result<(), BenchError> {
        self.conn.check()?;
        check_namespace(&self.namespace)?;
        if !(1..=MAX_PODS).contains(&self.pods) {
            return Err(BenchError::Args(format!("--pods must be between 1 and {MAX_PODS}")));
        }
        if !(1..=MAX_REPEAT).contains(&self.repeat) {
            return Err(BenchError::Args(format!("--repeat must be between 1 and {MAX_REPEAT}")));
        }
        if self.page_size == 0 {
            return Err(BenchError::Args("--page-size must be at least 1".into()));
        }
        Ok(())
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds; more than zero, at most an hour.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 10s"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    let duration = Duration::from_millis(amount.saturating_mul(millis_per_unit));
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(format!("{text:?}: must be more than zero and at most 1h"));
    }
    Ok(duration)
}

/// A Kubernetes namespace name: a DNS label.
fn check_namespace(name: &str) -> Result<(), BenchError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid { Ok(()) } else { Err(BenchError::Args(format!("--namespace {name:?} is not a valid namespace name"))) }
}

/// Why a call counts as failed. Ordered so the tally prints statuses first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The server answered with another status than the one expected.
    Status(u16),
    /// No complete answer within `--timeout`.
    Timeout,
    /// Connecting, TLS or the HTTP exchange failed.
    Transport,
    /// The expected status, but a body that does not say what it must.
    BadBody,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(code) => write!(f, "{code}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Transport => f.write_str("transport"),
            Failure::BadBody => f.write_str("bad body"),
        }
    }
}

/// Failed calls by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally(BTreeMap<Failure, u64>);

impl Tally {
    pub fn add(&mut self, failure: Failure, count: u64) {
        *self.0.entry(failure).or_default() += count;
    }

    pub fn merge(&mut self, other: &Tally) {
        for (&failure, &count) in &other.0 {
            self.add(failure, count);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `409: 3, timeout: 1`, or `None` without failures.
    pub fn describe(&self) -> Option<String> {
        let parts: Vec<String> = self.0.iter().map(|(f, n)| format!("{f}: {n}")).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// The run-wide count of failed calls and the first few, printed after the table.
#[derive(Default)]
struct ErrorLog {
    count: AtomicU64,
    printed: Mutex<Vec<String>>,
}

impl ErrorLog {
    fn note(&self, what: &str, server: &str, failure: Failure, detail: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut printed) = self.printed.lock()
            && printed.len() < PRINTED_ERRORS
        {
            printed.push(format!("{what} via {server}: {failure}: {}", truncate(detail, ERROR_BODY_CHARS)));
        }
    }

    fn too_many(&self) -> bool {
        self.count.load(Ordering::Relaxed) >= MAX_ERRORS
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self) -> Option<String> {
        let printed = self.printed.lock().ok()?;
        if printed.is_empty() {
            return None;
        }
        let total = self.count();
        let mut out = format!("first {} of {total} failed calls:\n", printed.len());
        for line in printed.iter() {
            out.push_str(&format!("- {line}\n"));
        }
        Some(out)
    }
}

pub(super) fn truncate(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

/// A failed call: its kind and what to print about it.
#[derive(Debug)]
pub(super) struct CallError {
    pub(super) failure: Failure,
    pub(super) detail: String,
}

/// Sends `request`, times it, and checks the status against `expect`.
pub(super) async fn call(
    endpoint: &mut Endpoint,
    request: Request<'_>,
    expect: &[StatusCode],
) -> Result<(Duration, Reply), CallError> {
    let sent = Instant::now();
    let outcome = endpoint.send(request).await;
    let took = sent.elapsed();
    match outcome {
        Ok(reply) if expect.contains(&reply.status) => Ok((took, reply)),
        Ok(reply) => Err(CallError {
            failure: Failure::Status(reply.status.as_u16()),
            detail: String::from_utf8_lossy(&reply.body).into_owned(),
        }),
        Err(e) => Err(CallError {
            failure: if e.is_timeout() { Failure::Timeout } else { Failure::Transport },
            detail: e.to_string(),
        }),
    }
}

/// What both benchmarks share once the flags are checked.
pub(super) struct Setup {
    pub(super) servers: Vec<Arc<Server>>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    pub(super) concurrency: usize,
}

impl Setup {
    pub(super) fn load(args: &ApiConnArgs) -> Result<Setup, BenchError> {
        let servers = https::parse_servers(&args.servers).map_err(|e| BenchError::Args(e.to_string()))?;
        let tls = https::client_config(&args.cacert, &args.cert, &args.key)
            .map_err(|e| BenchError::Args(format!("{e} (is the cluster up? `keel up` writes .keel/pki)")))?;
        Ok(Setup { servers, tls, timeout: Duration::from_secs(args.timeout), concurrency: args.concurrency })
    }

    /// One endpoint per server, for one task.
    pub(super) fn endpoints(&self) -> Vec<Endpoint> {
        self.servers.iter().map(|s| Endpoint::new(s.clone(), self.tls.clone(), self.timeout)).collect()
    }
}

/// Creates the namespace if it is missing, trying each server once; 409 means it exists.
/// The sum of `etcd_server_leader_changes_seen_total` over the masters.
pub(super) async fn leader_changes(setup: &Setup) -> Result<u64, BenchError> {
    let mut sum = 0;
    for mut endpoint in setup.endpoints() {
        let (_, reply) =
            call(&mut endpoint, Request::get("/metrics", "text/plain"), &[StatusCode::OK]).await.map_err(|e| {
                BenchError::Test {
                    test: "metrics".into(),
                    reason: format!("reading /metrics: {}: {}", e.failure, truncate(&e.detail, 200)),
                }
            })?;
        let text = String::from_utf8_lossy(&reply.body);
        let value = text
            .lines()
            .find(|l| l.starts_with("etcd_server_leader_changes_seen_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        sum += value as u64;
    }
    Ok(sum)
}

pub(super) async fn ensure_namespace(setup: &Setup, namespace: &str) -> Result<(), BenchError> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    let body = Bytes::from(body.to_string());
    let path = format!("/api/v1/namespaces/{namespace}");
    let mut reasons = Vec::new();
    for mut endpoint in setup.endpoints() {
        let request = Request::json(Method::POST, "/api/v1/namespaces", JSON, body.clone());
        let created = match call(&mut endpoint, request, &[StatusCode::CREATED, StatusCode::CONFLICT]).await {
            Ok((_, reply)) => reply.status == StatusCode::CREATED,
            Err(e) => {
                reasons.push(format!("{}: {}: {}", endpoint.server().url, e.failure, truncate(&e.detail, 200)));
                continue;
            }
        };
        if created {
            return Ok(());
        }
        // There already: fine unless a previous run's deletion is still emptying it, in which
        // case every create in it would be refused. Wait for it to go, then create it again.
        let deadline = Instant::now() + NAMESPACE_GONE_WAIT;
        loop {
            let (_, reply) = call(&mut endpoint, Request::get(&path, JSON), &[StatusCode::OK, StatusCode::NOT_FOUND])
                .await
                .map_err(|e| BenchError::Test {
                    test: "namespace".into(),
                    reason: format!("reading namespace {namespace}: {}: {}", e.failure, truncate(&e.detail, 200)),
                })?;
            let terminating = reply.status == StatusCode::OK
                && serde_json::from_slice::<Value>(&reply.body)
                    .is_ok_and(|ns| ns.pointer("/metadata/deletionTimestamp").is_some());
            if reply.status == StatusCode::OK && !terminating {
                return Ok(());
            }
            if reply.status == StatusCode::NOT_FOUND {
                let request = Request::json(Method::POST, "/api/v1/namespaces", JSON, body.clone());
                if call(&mut endpoint, request, &[StatusCode::CREATED]).await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Test {
                    test: "namespace".into(),
                    reason: format!("namespace {namespace} was still being deleted after {NAMESPACE_GONE_WAIT:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Err(BenchError::Unreachable {
        endpoint: setup.servers.iter().map(|s| s.url.as_str()).collect::<Vec<_>>().join(","),
        reason: format!("creating namespace {namespace}: {}", reasons.join("; ")),
    })
}

/// How long [`ensure_namespace`] waits for a terminating namespace (a previous run's) to go.
const NAMESPACE_GONE_WAIT: Duration = Duration::from_secs(180);

/// The markdown header both benchmarks print: title, servers, parameters, machine.
pub(super) fn header(title: &str, label: Option<&str>, setup: &Setup, lines: &[String]) -> String {
    let mut out = format!("## keel bench {title}: {}\n\n", label.unwrap_or("unlabeled run"));
    let servers: Vec<&str> = setup.servers.iter().map(|s| s.url.as_str()).collect();
    out.push_str(&format!("- servers: {}\n", servers.join(",")));
    for line in lines {
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str(&format!("- {}\n", machine()));
    out
}

/// CPUs and CPU model of this machine (client and servers usually share it).
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    let model = model.map(|m| format!(" ({m})")).unwrap_or_default();
    format!("machine: {cpus} CPUs{model}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Columns of the `api` table and of `api-list`'s `create-pods` line: the shared [`Row`] without
/// its `lost` column, which no API test has.
pub(super) const OP_HEADERS: [&str; 8] = ["op", "ok", "errors", "secs", "ops/s", "p50 ms", "p99 ms", "max ms"];

/// Renders rows under [`OP_HEADERS`], then one `- op: note` line per row with a note.
pub(super) fn render_ops(rows: &[Row]) -> String {
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1000.0));
    let grid: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.test.clone(),
                r.ops.to_string(),
                r.errors.to_string(),
                format!("{:.2}", r.elapsed.as_secs_f64()),
                format!("{:.0}", r.ops_per_sec()),
                ms(r.latency.p50),
                ms(r.latency.p99),
                ms(r.latency.max),
            ]
        })
        .collect();
    let mut out = stats::render_grid(&OP_HEADERS, &grid);
    for row in rows {
        if let Some(note) = &row.note {
            out.push_str(&format!("- {}: {note}\n", row.test));
        }
    }
    out
}

/// Connections opened by a run's endpoints, and the protocol they spoke.
fn connections_line(connects: u64, endpoints: u64, protocol: Option<https::Protocol>) -> String {
    let protocol = protocol.map_or("no connection", https::Protocol::name);
    let reconnects = connects.saturating_sub(endpoints);
    format!("connections: {connects} opened for {endpoints} worker-server pairs ({protocol}), {reconnects} reconnects")
}

// ---------------------------------------------------------------------------------------------
// keel bench api

/// The calls of one cycle, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutateOp {
    Create,
    Update,
    Patch,
    Delete,
}

impl MutateOp {
    pub const ALL: [MutateOp; 4] = [MutateOp::Create, MutateOp::Update, MutateOp::Patch, MutateOp::Delete];

    fn name(self) -> &'static str {
        match self {
            MutateOp::Create => "create",
            MutateOp::Update => "update",
            MutateOp::Patch => "patch",
            MutateOp::Delete => "delete",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Latencies of the successful calls of one operation, and its failures.
#[derive(Debug, Default, Clone)]
pub struct OpStats {
    pub latencies: Latencies,
    pub failures: Tally,
}

/// What one worker (or a whole run, once merged) measured.
#[derive(Debug, Default, Clone)]
pub struct MutateReport {
    /// Indexed by [`MutateOp::index`].
    pub ops: [OpStats; 4],
    /// ConfigMaps whose delete failed, to retry at the end (at most [`MAX_LEAKED`]).
    pub leaked: Vec<String>,
    pub connects: u64,
    pub protocol: Option<https::Protocol>,
}

impl MutateReport {
    pub fn merge(&mut self, other: MutateReport) {
        for (mine, theirs) in self.ops.iter_mut().zip(other.ops) {
            mine.latencies.merge(theirs.latencies);
            mine.failures.merge(&theirs.failures);
        }
        let room = MAX_LEAKED.saturating_sub(self.leaked.len());
        self.leaked.extend(other.leaked.into_iter().take(room));
        self.connects += other.connects;
        self.protocol = self.protocol.or(other.protocol);
    }

    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|o| o.failures.total()).sum()
    }

    /// One row per operation and an `all` row, throughput over `elapsed`.
    pub fn rows(&self, elapsed: Duration) -> Vec<Row> {
        let row = |name: &str, stats: &OpStats| Row {
            test: name.to_string(),
            ops: stats.latencies.len() as u64,
            errors: stats.failures.total(),
            lost: None,
            elapsed,
            latency: stats.latencies.clone().summary(),
            note: stats.failures.describe().map(|d| format!("errors by status: {d}")),
        };
        let mut rows: Vec<Row> = MutateOp::ALL.iter().map(|op| row(op.name(), &self.ops[op.index()])).collect();
        let mut all = OpStats::default();
        for stats in &self.ops {
            all.latencies.merge(stats.latencies.clone());
            all.failures.merge(&stats.failures);
        }
        rows.push(row("all", &all));
        rows
    }
}

/// One worker of `keel bench api`.
struct Mutator {
    /// Worker number, part of every object name.
    index: usize,
    run_id: String,
    namespace: Arc<str>,
    /// One per server; call `k` of this worker goes to `endpoints[(index + k) % len]`.
    endpoints: Vec<Endpoint>,
    turn: usize,
    report: MutateReport,
    log: Arc<ErrorLog>,
}

/// What all workers share: when to stop.
struct Budget {
    time_limit: Duration,
    /// Cycles the whole run may start (from `--requests`, or [`MAX_REQUESTS`]).
    max_cycles: u64,
    cycles_started: AtomicU64,
}

impl Budget {
    /// Claims one cycle; false once the budget is spent.
    fn claim(&self) -> bool {
        self.cycles_started.fetch_add(1, Ordering::Relaxed) < self.max_cycles
    }
}

impl Mutator {
    async fn run(mut self, budget: Arc<Budget>, start: Arc<Barrier>) -> MutateReport {
        for endpoint in &mut self.endpoints {
            if let Err(error) = endpoint.warm_up().await {
                tracing::warn!(%error, "bench api: worker {} could not connect before the start", self.index);
            }
        }
        start.wait().await;
        let deadline = Instant::now() + budget.time_limit;
        let mut cycle: u64 = 0;
        while Instant::now() < deadline && !self.log.too_many() && budget.claim() {
            let name = format!("bench-{}-{}-{cycle}", self.run_id, self.index);
            self.cycle(&name).await;
            cycle += 1;
        }
        self.report.connects = self.endpoints.iter().map(Endpoint::connects).sum();
        self.report.protocol = self.endpoints.iter().find_map(Endpoint::protocol);
        self.report
    }

    /// Create, update, patch, delete. A failed create skips the rest (there is nothing to change);
    /// a failed update or patch does not (the object is still there and must go).
    async fn cycle(&mut self, name: &str) {
        let body = self.config_map(name, None, "created");
        let Some(created) = self.step(MutateOp::Create, &self.collection_path(), Method::POST, JSON, body).await else {
            return;
        };
        let item = self.item_path(name);
        match resource_version(&created.body) {
            Some(rv) => {
                let body = self.config_map(name, Some(&rv), "updated");
                self.step(MutateOp::Update, &item, Method::PUT, JSON, body).await;
            }
            None => {
                self.fail(MutateOp::Update, Failure::BadBody, "the create's answer has no metadata.resourceVersion")
            }
        }
        let patch = Bytes::from(json!({"data": {"patched": "yes"}}).to_string());
        self.step(MutateOp::Patch, &item, Method::PATCH, MERGE_PATCH, patch).await;
        if self.step(MutateOp::Delete, &item, Method::DELETE, JSON, Bytes::new()).await.is_none()
            && self.report.leaked.len() < MAX_LEAKED
        {
            self.report.leaked.push(name.to_string());
        }
    }

    /// One timed call; records it and returns the answer if it had the expected status.
    async fn step(
        &mut self,
        op: MutateOp,
        path: &str,
        method: Method,
        content_type: &str,
        body: Bytes,
    ) -> Option<Reply> {
        let expect = if op == MutateOp::Create { StatusCode::CREATED } else { StatusCode::OK };
        let endpoint_index = (self.index + self.turn) % self.endpoints.len();
        self.turn = self.turn.wrapping_add(1);
        let endpoint = &mut self.endpoints[endpoint_index];
        let request = if method == Method::DELETE {
            Request { method, path, accept: JSON, content_type: None, body }
        } else {
            Request::json(method, path, content_type, body)
        };
        match call(endpoint, request, &[expect]).await {
            Ok((took, reply)) => {
                self.report.ops[op.index()].latencies.record(took);
                Some(reply)
            }
            Err(e) => {
                let server = endpoint.server().url.clone();
                self.report.ops[op.index()].failures.add(e.failure, 1);
                self.log.note(&format!("{} {path}", op.name()), &server, e.failure, &e.detail);
                None
            }
        }
    }

    fn fail(&mut self, op: MutateOp, failure: Failure, detail: &str) {
        self.report.ops[op.index()].failures.add(failure, 1);
        self.log.note(op.name(), "-", failure, detail);
    }

    fn collection_path(&self) -> String {
        format!("/api/v1/namespaces/{}/configmaps", self.namespace)
    }

    fn item_path(&self, name: &str) -> String {
        format!("/api/v1/namespaces/{}/configmaps/{name}", self.namespace)
    }

    fn config_map(&self, name: &str, resource_version: Option<&str>, step: &str) -> Bytes {
        let mut metadata = json!({"name": name, "labels": {"keel-bench-run": self.run_id}});
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = json!(rv);
        }
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"step": step}});
        Bytes::from(body.to_string())
    }
}

/// `metadata.resourceVersion` of an object in JSON.
fn resource_version(body: &[u8]) -> Option<String> {
    let object: Value = serde_json::from_slice(body).ok()?;
    object.pointer("/metadata/resourceVersion")?.as_str().filter(|rv| !rv.is_empty()).map(str::to_string)
}

/// Runs `keel bench api`.
pub async fn run(args: ApiArgs) -> Result<(), BenchError> {
    args.check()?;
    let setup = Setup::load(&args.conn)?;
    let (time_limit, max_cycles) = args.limits();
    let stop = match args.requests {
        Some(_) => format!("requests={} ({max_cycles} cycles), time limit {time_limit:?}", max_cycles * 4),
        None => format!("duration={time_limit:?}"),
    };
    let lines = [
        format!("concurrency={} {stop}, timeout={}s per call", setup.concurrency, args.conn.timeout),
        format!(
            "each worker: create → update → merge-patch → delete a ConfigMap in {}, next server per call",
            args.namespace
        ),
    ];
    println!("{}", header("api", args.conn.label.as_deref(), &setup, &lines));
    ensure_namespace(&setup, &args.namespace).await?;

    let log = Arc::new(ErrorLog::default());
    let budget = Arc::new(Budget { time_limit, max_cycles, cycles_started: AtomicU64::new(0) });
    let start = Arc::new(Barrier::new(setup.concurrency + 1));
    let run_id = format!("{:08x}", rand::random::<u32>());
    let namespace: Arc<str> = Arc::from(args.namespace.as_str());
    let mut workers = Vec::with_capacity(setup.concurrency);
    for index in 0..setup.concurrency {
        let worker = Mutator {
            index,
            run_id: run_id.clone(),
            namespace: namespace.clone(),
            endpoints: setup.endpoints(),
            turn: 0,
            report: MutateReport::default(),
            log: log.clone(),
        };
        workers.push(tokio::spawn(worker.run(budget.clone(), start.clone())));
    }
    start.wait().await;
    let began = Instant::now();
    let mut report = MutateReport::default();
    for worker in workers {
        match worker.await {
            Ok(r) => report.merge(r),
            Err(e) => return Err(BenchError::Test { test: "api".into(), reason: format!("a worker failed: {e}") }),
        }
    }
    let elapsed = began.elapsed();
    print_mutate_results(&report, elapsed, &log, setup.concurrency * setup.servers.len());
    clean_up_leaked(&setup, &args.namespace, &report.leaked).await;
    finish("api", report.errors(), &log)
}

fn print_mutate_results(report: &MutateReport, elapsed: Duration, log: &ErrorLog, pairs: usize) {
    println!("{}", render_ops(&report.rows(elapsed)));
    println!("- {}", connections_line(report.connects, pairs as u64, report.protocol));
    if log.too_many() {
        println!("- stopped early after {} failed calls", log.count());
    }
    if let Some(errors) = log.render() {
        println!("\n{errors}");
    }
}

/// Deletes the ConfigMaps whose delete failed during the run; 404 means already gone.
async fn clean_up_leaked(setup: &Setup, namespace: &str, leaked: &[String]) {
    if leaked.is_empty() {
        return;
    }
    let mut endpoints = setup.endpoints();
    let (mut deleted, mut failed_in_a_row) = (0usize, 0u32);
    for (i, name) in leaked.iter().enumerate() {
        let path = format!("/api/v1/namespaces/{namespace}/configmaps/{name}");
        let endpoint = &mut endpoints[i % setup.servers.len()];
        let request =
            Request { method: Method::DELETE, path: &path, accept: JSON, content_type: None, body: Bytes::new() };
        match call(endpoint, request, &[StatusCode::OK, StatusCode::NOT_FOUND]).await {
            Ok(_) => (deleted, failed_in_a_row) = (deleted + 1, 0),
            Err(_) => failed_in_a_row += 1,
        }
        if failed_in_a_row >= CLEANUP_GIVE_UP {
            break;
        }
    }
    if deleted < leaked.len() {
        tracing::warn!("bench api: {} ConfigMaps left in {namespace} (label keel-bench-run)", leaked.len() - deleted);
    }
}

/// Ok when nothing failed; otherwise the error that makes the command exit non-zero.
fn finish(test: &str, errors: u64, log: &ErrorLog) -> Result<(), BenchError> {
    let errors = errors.max(log.count());
    if errors == 0 {
        Ok(())
    } else {
        Err(BenchError::Test { test: test.into(), reason: format!("{errors} calls failed (see above)") })
    }
}

// ---------------------------------------------------------------------------------------------
// keel bench api-list

/// The three ways a client lists the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListVariant {
    /// One GET of the whole list as JSON.
    Full,
    /// GETs of `limit` items following `metadata.continue`.
    Paged,
    /// One GET of the whole list, asking for a server-side Table.
    Table,
}

impl ListVariant {
    pub const ALL: [ListVariant; 3] = [ListVariant::Full, ListVariant::Paged, ListVariant::Table];

    fn name(self) -> &'static str {
        match self {
            ListVariant::Full => "list",
            ListVariant::Paged => "list-paged",
            ListVariant::Table => "list-table",
        }
    }
}

/// The part of a list (or Table) answer the benchmark reads.
#[derive(Debug, Deserialize)]
struct ListBody {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ListMeta,
    /// Present in a list.
    items: Option<Vec<IgnoredAny>>,
    /// Present in a Table.
    rows: Option<Vec<IgnoredAny>>,
}

#[derive(Debug, Default, Deserialize)]
struct ListMeta {
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// One page as seen by the pagination logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSummary {
    pub items: u64,
    pub bytes: u64,
    /// `metadata.continue`; `None` or empty on the last page.
    pub continue_token: Option<String>,
}

/// Parses a list or Table answer: rows of a Table, items of anything else.
fn summarize(body: &[u8]) -> Result<(PageSummary, String), String> {
    let list: ListBody = serde_json::from_slice(body).map_err(|e| format!("not a list: {e}"))?;
    let entries = if list.kind == "Table" { list.rows } else { list.items };
    let entries = entries
        .ok_or_else(|| format!("a {} without entries", if list.kind.is_empty() { "body" } else { &list.kind }))?;
    let summary = PageSummary {
        items: entries.len() as u64,
        bytes: body.len() as u64,
        continue_token: list.metadata.continue_token,
    };
    Ok((summary, list.kind))
}

/// Where a paginated list stands. Pure: fed one page at a time, it says what to fetch next,
/// and refuses a token that does not advance, an oversized page, or more pages than allowed.
#[derive(Debug)]
pub struct Pagination {
    limit: u64,
    max_pages: u64,
    pub pages: u64,
    pub items: u64,
    pub bytes: u64,
    last_token: Option<String>,
}

/// What a [`Pagination`] wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum NextPage {
    /// Fetch the page after this continue token.
    After(String),
    Done,
}

impl Pagination {
    /// Pages of `limit` items; enough pages for `expected_items` plus a few more.
    pub fn new(limit: u64, expected_items: u64) -> Self {
        let max_pages = expected_items.div_ceil(limit.max(1)) + 2;
        Pagination { limit: limit.max(1), max_pages, pages: 0, items: 0, bytes: 0, last_token: None }
    }

    /// The path and query of the next request, `base` being the collection path.
    pub fn query(&self, base: &str) -> String {
        match &self.last_token {
            None => format!("{base}?limit={}", self.limit),
            Some(token) => format!("{base}?limit={}&continue={}", self.limit, percent_encode(token)),
        }
    }

    pub fn feed(&mut self, page: PageSummary) -> Result<NextPage, String> {
        self.pages += 1;
        self.items += page.items;
        self.bytes += page.bytes;
        if page.items > self.limit {
            return Err(format!("page {} has {} items, more than limit={}", self.pages, page.items, self.limit));
        }
        let token = match page.continue_token {
            Some(token) if !token.is_empty() => token,
            _ => return Ok(NextPage::Done),
        };
        if self.last_token.as_deref() == Some(token.as_str()) {
            return Err(format!("page {} repeats the previous continue token", self.pages));
        }
        if self.pages >= self.max_pages {
            return Err(format!("still not done after {} pages ({} items)", self.pages, self.items));
        }
        self.last_token = Some(token.clone());
        Ok(NextPage::After(token))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (tokens are base64 and
/// may hold `+`, `/` and `=`).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One timed list.
#[derive(Debug)]
struct Listed {
    took: Duration,
    items: u64,
    pages: u64,
    bytes: u64,
    kind: String,
}

/// Lists the pods once in `variant`; the time is that of the HTTP exchanges only (parsing the
/// answer, done here only to count, is not timed).
async fn list_once(
    endpoint: &mut Endpoint,
    variant: ListVariant,
    base: &str,
    args: &ApiListArgs,
) -> Result<Listed, CallError> {
    let bad = |detail: String| CallError { failure: Failure::BadBody, detail };
    if variant == ListVariant::Paged {
        let mut pagination = Pagination::new(args.page_size, args.pods);
        let mut took = Duration::ZERO;
        loop {
            let path = pagination.query(base);
            let (t, reply) = call(endpoint, Request::get(&path, JSON), &[StatusCode::OK]).await?;
            took += t;
            let (page, kind) = summarize(&reply.body).map_err(bad)?;
            if pagination.feed(page).map_err(bad)? == NextPage::Done {
                let Pagination { items, pages, bytes, .. } = pagination;
                return Ok(Listed { took, items, pages, bytes, kind });
            }
        }
    }
    let accept = if variant == ListVariant::Table { TABLE_ACCEPT } else { JSON };
    let (took, reply) = call(endpoint, Request::get(base, accept), &[StatusCode::OK]).await?;
    let (page, kind) = summarize(&reply.body).map_err(bad)?;
    Ok(Listed { took, items: page.items, pages: 1, bytes: page.bytes, kind })
}

/// Results of one list variant over the repetitions.
#[derive(Debug, Default)]
struct VariantStats {
    latencies: Latencies,
    failures: Tally,
    /// Items, pages and bytes of the most recent list.
    items: Option<u64>,
    pages: u64,
    bytes: u64,
    kinds: Vec<String>,
}

impl VariantStats {
    fn record(&mut self, listed: Listed, expected: u64) -> Result<(), CallError> {
        if !self.kinds.contains(&listed.kind) {
            self.kinds.push(listed.kind.clone());
        }
        // Shown even when wrong: the count seen is what tells what went wrong.
        (self.items, self.pages, self.bytes) = (Some(listed.items), listed.pages, listed.bytes);
        if listed.items != expected {
            return Err(CallError {
                failure: Failure::BadBody,
                detail: format!("{} items, expected {expected} (pods left from another run?)", listed.items),
            });
        }
        self.latencies.record(listed.took);
        Ok(())
    }

    fn cells(&self, variant: ListVariant) -> Vec<String> {
        let summary = self.latencies.clone().summary();
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0));
        vec![
            variant.name().to_string(),
            summary.count.to_string(),
            self.failures.total().to_string(),
            self.items.map_or("-".to_string(), |n| n.to_string()),
            self.pages.to_string(),
            format!("{:.2}", self.bytes as f64 / (1 << 20) as f64),
            ms(summary.p50),
            ms(summary.p99),
            ms(summary.max),
        ]
    }
}

const LIST_HEADERS: [&str; 9] = ["variant", "lists", "errors", "items", "pages", "MiB", "p50 ms", "p99 ms", "max ms"];

/// Runs `keel bench api-list`.
pub async fn run_list(args: ApiListArgs) -> Result<(), BenchError> {
    args.check()?;
    let setup = Setup::load(&args.conn)?;
    let lines = [
        format!(
            "pods={} in {}, repeat={} per variant, page-size={}, concurrency={} for creating, timeout={}s per call",
            args.pods, args.namespace, args.repeat, args.page_size, setup.concurrency, args.conn.timeout
        ),
        format!("repetition r of variant k goes to server (r + k) mod servers; Table Accept: {TABLE_ACCEPT}"),
    ];
    println!("{}", header("api-list", args.conn.label.as_deref(), &setup, &lines));
    ensure_namespace(&setup, &args.namespace).await?;
    let changes_before = leader_changes(&setup).await?;

    let log = Arc::new(ErrorLog::default());
    let created = create_pods(&setup, &args, log.clone()).await;
    println!("{}", render_ops(std::slice::from_ref(&created.row)));
    let mut errors = created.row.errors;
    if errors == 0 {
        let variants = time_lists(&setup, &args, &log).await;
        let grid: Vec<Vec<String>> = ListVariant::ALL.iter().zip(&variants).map(|(v, s)| s.cells(*v)).collect();
        println!("{}", stats::render_grid(&LIST_HEADERS, &grid));
        for (variant, s) in ListVariant::ALL.iter().zip(&variants) {
            if let Some(d) = s.failures.describe() {
                println!("- {}: errors by status: {d}", variant.name());
            }
            println!("- {}: answer kind {}", variant.name(), s.kinds.join(", "));
        }
        errors += variants.iter().map(|s| s.failures.total()).sum::<u64>();
    }
    if let Some(printed) = log.render() {
        println!("\n{printed}");
    }
    if !args.keep {
        delete_pods(&setup, &args).await;
    }
    // The store's leader must hold through the whole run: heavy lists and a burst of writes
    // must not starve Raft's heartbeats into an election.
    let changes = leader_changes(&setup).await?.saturating_sub(changes_before);
    println!("- store leader changes during the run (create, lists, delete): {changes} (must be 0)");
    finish("api-list", errors, &log)
}

/// The `create-pods` row of `api-list`.
struct Created {
    row: Row,
}

fn pod_name(i: u64) -> String {
    format!("bench-pod-{i:06}")
}

/// The smallest valid pod: one container `main`, image busybox. `keel up` runs no nodes, so the
/// pods stay Pending; they exist to be listed.
fn pod_body(name: &str) -> Bytes {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "keel-bench-list"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    });
    Bytes::from(pod.to_string())
}

/// Creates pods `0..--pods` at `--concurrency`; 409 (already there) counts as done.
async fn create_pods(setup: &Setup, args: &ApiListArgs, log: Arc<ErrorLog>) -> Created {
    let base = Arc::<str>::from(format!("/api/v1/namespaces/{}/pods", args.namespace));
    let job = IndexedJob {
        total: args.pods,
        what: "create pod",
        make: Arc::new(move |i| (Method::POST, base.to_string(), Some(pod_body(&pod_name(i))))),
        done: vec![StatusCode::CREATED, StatusCode::CONFLICT],
        log,
    };
    let began = Instant::now();
    let outcome = run_indexed(setup, job).await;
    let existing = outcome.by_status.get(&StatusCode::CONFLICT.as_u16()).copied().unwrap_or(0);
    let created = outcome.by_status.get(&StatusCode::CREATED.as_u16()).copied().unwrap_or(0);
    let mut notes = vec![format!("{created} created, {existing} already there")];
    notes.extend(outcome.failures.describe().map(|d| format!("errors by status: {d}")));
    Created {
        row: Row {
            test: "create-pods".into(),
            ops: created + existing,
            errors: outcome.failures.total(),
            lost: None,
            elapsed: began.elapsed(),
            latency: outcome.latencies.summary(),
            note: Some(notes.join("; ")),
        },
    }
}

/// Times `--repeat` rounds of the three variants, interleaved so drift hits all three alike.
async fn time_lists(setup: &Setup, args: &ApiListArgs, log: &ErrorLog) -> Vec<VariantStats> {
    let base = format!("/api/v1/namespaces/{}/pods", args.namespace);
    let mut endpoints = setup.endpoints();
    for endpoint in &mut endpoints {
        if let Err(error) = endpoint.warm_up().await {
            tracing::warn!(%error, "bench api-list: could not connect before timing");
        }
    }
    let mut variants: Vec<VariantStats> = ListVariant::ALL.iter().map(|_| VariantStats::default()).collect();
    for round in 0..args.repeat as usize {
        for (k, variant) in ListVariant::ALL.into_iter().enumerate() {
            if log.too_many() {
                return variants;
            }
            let endpoint = &mut endpoints[(round + k) % setup.servers.len()];
            let server = endpoint.server().url.clone();
            let stats = &mut variants[k];
            let outcome = match list_once(endpoint, variant, &base, args).await {
                Ok(listed) => stats.record(listed, args.pods),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                stats.failures.add(e.failure, 1);
                log.note(variant.name(), &server, e.failure, &e.detail);
            }
        }
    }
    variants
}

/// Deletes the pods: one DELETE of the collection, or (if the server refuses that) one by one.
async fn delete_pods(setup: &Setup, args: &ApiListArgs) {
    let base = format!("/api/v1/namespaces/{}/pods", args.namespace);
    let mut endpoint = Endpoint::new(setup.servers[0].clone(), setup.tls.clone(), setup.timeout);
    let request = Request { method: Method::DELETE, path: &base, accept: JSON, content_type: None, body: Bytes::new() };
    let began = Instant::now();
    match endpoint.send_within(request, DELETE_COLLECTION_TIMEOUT).await {
        Ok(reply) if reply.status == StatusCode::OK => {
            tracing::info!("bench api-list: deleted the pods of {} in {:.1?}", args.namespace, began.elapsed());
            return;
        }
        Ok(reply) => tracing::warn!("bench api-list: DELETE {base}: {}; deleting one by one", reply.status),
        Err(error) => tracing::warn!(%error, "bench api-list: DELETE {base} failed; deleting one by one"),
    }
    let job = IndexedJob {
        total: args.pods,
        what: "delete pod",
        make: Arc::new(move |i| (Method::DELETE, format!("{base}/{}", pod_name(i)), None)),
        done: vec![StatusCode::OK, StatusCode::ACCEPTED, StatusCode::NOT_FOUND],
        log: Arc::new(ErrorLog::default()),
    };
    let outcome = run_indexed(setup, job).await;
    if outcome.failures.total() > 0 {
        tracing::warn!("bench api-list: {} pods not deleted from {}", outcome.failures.total(), args.namespace);
    }
}

/// Builds call `i` of an [`IndexedJob`]: method, path, body.
type MakeCall = Arc<dyn Fn(u64) -> (Method, String, Option<Bytes>) + Send + Sync>;

/// Calls `0..total`, each once, spread over workers and servers.
struct IndexedJob {
    total: u64,
    what: &'static str,
    make: MakeCall,
    /// Statuses that complete a call; each is counted in `by_status`.
    done: Vec<StatusCode>,
    log: Arc<ErrorLog>,
}

#[derive(Debug, Default)]
struct IndexedOutcome {
    latencies: Latencies,
    by_status: BTreeMap<u16, u64>,
    failures: Tally,
}

/// Runs an [`IndexedJob`] at the setup's concurrency; call `i` goes to server `i % servers`.
/// Stops early once the log holds [`MAX_ERRORS`] failures.
async fn run_indexed(setup: &Setup, job: IndexedJob) -> IndexedOutcome {
    let job = Arc::new(job);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(setup.concurrency);
    for _ in 0..setup.concurrency {
        let (job, next, mut endpoints) = (job.clone(), next.clone(), setup.endpoints());
        workers.push(tokio::spawn(async move {
            let mut outcome = IndexedOutcome::default();
            while !job.log.too_many() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= job.total {
                    break;
                }
                let (method, path, body) = (job.make)(i);
                let server_count = endpoints.len() as u64;
                let endpoint = &mut endpoints[(i % server_count) as usize];
                let request = match body {
                    Some(body) => Request::json(method, &path, JSON, body),
                    None => Request { method, path: &path, accept: JSON, content_type: None, body: Bytes::new() },
                };
                match call(endpoint, request, &job.done).await {
                    Ok((took, reply)) => {
                        outcome.latencies.record(took);
                        *outcome.by_status.entry(reply.status.as_u16()).or_default() += 1;
                    }
                    Err(e) => {
                        outcome.failures.add(e.failure, 1);
                        job.log.note(&format!("{} {path}", job.what), &endpoint.server().url, e.failure, &e.detail);
                    }
                }
            }
            outcome
        }));
    }
    let mut total = IndexedOutcome::default();
    for worker in workers {
        match worker.await {
            Ok(outcome) => {
                total.latencies.merge(outcome.latencies);
                for (status, n) in outcome.by_status {
                    *total.by_status.entry(status).or_default() += n;
                }
                total.failures.merge(&outcome.failures);
            }
            Err(e) => {
                total.failures.add(Failure::Transport, 1);
                job.log.note(job.what, "-", Failure::Transport, &format!("worker failed: {e}"));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `keel bench <action>` as the binary parses it.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        action: super::super::BenchAction,
    }

    fn parse(args: &[&str]) -> Result<super::super::BenchAction, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.action)
    }

    #[test]
    fn api_defaults_are_the_local_cluster() {
        let Ok(super::super::BenchAction::Api(args)) = parse(&["api"]) else { panic!("api should parse") };
        assert_eq!(args.conn.servers.len(), 3);
        assert_eq!(args.conn.servers[2], "https://127.0.0.1:6445");
        assert_eq!(args.conn.cacert, PathBuf::from(".keel/pki/ca.crt"));
        assert_eq!(args.conn.concurrency, 32);
        assert_eq!(args.limits(), (Duration::from_secs(10), MAX_REQUESTS / 4));
        assert!(args.check().is_ok());
    }

    #[test]
    fn api_flags_parse_and_check() {
        let Ok(super::super::BenchAction::Api(args)) =
            parse(&["api", "--servers", "https://a:1,https://b:2", "--concurrency", "4", "--requests", "10"])
        else {
            panic!("should parse")
        };
        assert_eq!(args.conn.servers, vec!["https://a:1", "https://b:2"]);
        // 10 calls round up to 3 cycles of 4; the time limit is the --requests default.
        assert_eq!(args.limits(), (REQUESTS_TIME_LIMIT, 3));
        let Ok(super::super::BenchAction::Api(timed)) = parse(&["api", "--duration", "500ms"]) else { panic!() };
        assert_eq!(timed.limits(), (Duration::from_millis(500), MAX_REQUESTS / 4));
        let too_many = (MAX_REQUESTS + 1).to_string();
        let refused = [
            &["api", "--concurrency", "0"][..],
            &["api", "--requests", "0"],
            &["api", "--requests", &too_many],
            &["api", "--namespace", "Bad_NS"],
        ];
        for bad in refused {
            let Ok(super::super::BenchAction::Api(args)) = parse(bad) else { panic!("{bad:?} should parse") };
            assert!(args.check().is_err(), "{bad:?} should be refused");
        }
        assert!(parse(&["api", "--duration", "ten"]).is_err());
    }

    #[test]
    fn api_list_flags_parse_and_check() {
        let Ok(super::super::BenchAction::ApiList(args)) = parse(&["api-list"]) else {
            panic!("api-list should parse")
        };
        assert_eq!((args.pods, args.repeat, args.page_size, args.keep), (10_000, 10, 500, false));
        assert_eq!(args.namespace, "keel-bench-list");
        assert!(args.check().is_ok());
        let Ok(super::super::BenchAction::ApiList(args)) = parse(&["api-list", "--pods", "0", "--keep"]) else {
            panic!()
        };
        assert!(args.keep);
        assert!(args.check().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["0s", "", "s", "10 s", "1.5s", "10x", "2h", "61m", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn reports_merge_into_rows_per_op_and_overall() {
        let mut a = MutateReport::default();
        a.ops[MutateOp::Create.index()].latencies.record(millis(1));
        a.ops[MutateOp::Create.index()].latencies.record(millis(3));
        a.ops[MutateOp::Delete.index()].latencies.record(millis(9));
        a.ops[MutateOp::Update.index()].failures.add(Failure::Status(409), 1);
        a.leaked.push("x".into());
        a.connects = 3;
        let mut b = MutateReport::default();
        b.ops[MutateOp::Create.index()].latencies.record(millis(2));
        b.ops[MutateOp::Update.index()].failures.add(Failure::Status(409), 2);
        b.ops[MutateOp::Patch.index()].failures.add(Failure::Timeout, 1);
        b.connects = 4;
        b.protocol = Some(https::Protocol::Http2);
        let mut total = MutateReport::default();
        total.merge(a);
        total.merge(b);
        assert_eq!((total.errors(), total.connects, total.leaked.len()), (4, 7, 1));
        assert_eq!(total.protocol, Some(https::Protocol::Http2));

        let rows = total.rows(Duration::from_secs(2));
        let names: Vec<&str> = rows.iter().map(|r| r.test.as_str()).collect();
        assert_eq!(names, ["create", "update", "patch", "delete", "all"]);
        assert_eq!((rows[0].ops, rows[0].errors, rows[0].latency.p50), (3, 0, Some(millis(2))));
        assert_eq!(rows[0].ops_per_sec(), 1.5);
        assert_eq!(rows[1].note.as_deref(), Some("errors by status: 409: 3"));
        assert_eq!(rows[2].note.as_deref(), Some("errors by status: timeout: 1"));
        let all = &rows[4];
        assert_eq!((all.ops, all.errors, all.latency.max), (4, 4, Some(millis(9))));
        assert_eq!(all.note.as_deref(), Some("errors by status: 409: 3, timeout: 1"));
    }

    #[test]
    fn op_table_has_no_lost_column() {
        let mut report = MutateReport::default();
        report.ops[MutateOp::Create.index()].latencies.record(millis(4));
        report.ops[MutateOp::Create.index()].failures.add(Failure::Status(500), 1);
        let text = render_ops(&report.rows(Duration::from_secs(1)));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("| op ") && !lines[0].contains("lost"), "{text}");
        assert_eq!(lines[2], "| create |  1 |      1 | 1.00 |     1 |   4.00 |   4.00 |   4.00 |", "{text}");
        assert!(text.contains("- create: errors by status: 500: 1"), "{text}");
        assert!(text.contains("- all: errors by status: 500: 1"), "{text}");
    }

    #[test]
    fn leaked_names_are_bounded() {
        let mut total = MutateReport::default();
        for _ in 0..3 {
            let part = MutateReport { leaked: vec!["n".into(); MAX_LEAKED / 2], ..Default::default() };
            total.merge(part);
        }
        assert_eq!(total.leaked.len(), MAX_LEAKED);
    }

    #[test]
    fn budget_hands_out_exactly_the_cycles() {
        let budget = Budget { time_limit: millis(1), max_cycles: 2, cycles_started: AtomicU64::new(0) };
        assert_eq!([budget.claim(), budget.claim(), budget.claim()], [true, true, false]);
    }

    #[test]
    fn error_log_keeps_the_first_few() {
        let log = ErrorLog::default();
        for i in 0..(PRINTED_ERRORS + 3) {
            log.note("create", "https://a:1", Failure::Status(500), &format!("body {i} {}", "x".repeat(1000)));
        }
        assert_eq!(log.count(), PRINTED_ERRORS as u64 + 3);
        let text = log.render().expect("some errors");
        assert!(text.starts_with(&format!("first {PRINTED_ERRORS} of {} failed calls", PRINTED_ERRORS + 3)), "{text}");
        assert!(text.contains("body 0") && !text.contains(&format!("body {PRINTED_ERRORS}")), "{text}");
        assert!(text.lines().all(|l| l.chars().count() < ERROR_BODY_CHARS + 100), "bodies are truncated");
        assert!(finish("t", 0, &ErrorLog::default()).is_ok());
        assert!(finish("t", 0, &log).is_err());
    }

    #[test]
    fn resource_versions_are_read_from_objects() {
        assert_eq!(resource_version(br#"{"metadata":{"resourceVersion":"42"}}"#), Some("42".into()));
        assert_eq!(resource_version(br#"{"metadata":{"resourceVersion":""}}"#), None);
        assert_eq!(resource_version(br#"{"metadata":{}}"#), None);
        assert_eq!(resource_version(b"not json"), None);
    }

    #[test]
    fn lists_and_tables_are_counted() {
        let list = br#"{"kind":"PodList","metadata":{"continue":"abc"},"items":[{"a":1},{"b":{"c":[]}}]}"#;
        let (page, kind) = summarize(list).expect("a list");
        assert_eq!((page.items, page.continue_token.as_deref(), kind.as_str()), (2, Some("abc"), "PodList"));
        assert_eq!(page.bytes, list.len() as u64);
        let table = br#"{"kind":"Table","metadata":{},"columnDefinitions":[{}],"rows":[{},{},{}]}"#;
        assert_eq!(summarize(table).expect("a table").0.items, 3);
        assert_eq!(summarize(br#"{"kind":"PodList","metadata":{},"items":[]}"#).expect("empty").0.items, 0);
        assert!(summarize(br#"{"kind":"Table","items":[{}]}"#).is_err(), "a Table is counted by rows");
        assert!(summarize(br#"{"kind":"Status","status":"Failure"}"#).is_err());
        assert!(summarize(b"[]").is_err());
    }

    /// Drives a [`Pagination`] over fake pages, as `list_once` drives it over real ones.
    fn paginate(limit: u64, expected: u64, pages: &[(u64, Option<&str>)]) -> Result<(Pagination, Vec<String>), String> {
        let mut pagination = Pagination::new(limit, expected);
        let mut queries = vec![pagination.query("/p")];
        for &(items, token) in pages {
            let page = PageSummary { items, bytes: 10, continue_token: token.map(str::to_string) };
            match pagination.feed(page)? {
                NextPage::After(_) => queries.push(pagination.query("/p")),
                NextPage::Done => return Ok((pagination, queries)),
            }
        }
        Err("ran out of fake pages".into())
    }

    #[test]
    fn pagination_follows_continue_tokens_to_the_end() {
        let (p, queries) =
            paginate(500, 1200, &[(500, Some("t1")), (500, Some("a+b/c=")), (200, None)]).expect("three pages");
        assert_eq!((p.pages, p.items, p.bytes), (3, 1200, 30));
        assert_eq!(queries, ["/p?limit=500", "/p?limit=500&continue=t1", "/p?limit=500&continue=a%2Bb%2Fc%3D"]);
        // An empty token also ends the list, as the API defines it.
        let (p, _) = paginate(500, 10, &[(10, Some(""))]).expect("one page");
        assert_eq!((p.pages, p.items), (1, 10));
    }

    #[test]
    fn pagination_refuses_loops_and_oversized_pages() {
        let repeated = paginate(2, 10, &[(2, Some("t")), (2, Some("t")), (2, None)]);
        assert!(repeated.is_err_and(|e| e.contains("repeats")));
        let oversized = paginate(2, 10, &[(3, None)]);
        assert!(oversized.is_err_and(|e| e.contains("more than limit")));
        // 4 items in pages of 2 may take ceil(4/2) + 2 = 4 pages, not an endless sequence.
        let tokens = ["a", "b", "c", "d", "e", "f"];
        let endless: Vec<(u64, Option<&str>)> = tokens.iter().map(|t| (1, Some(*t))).collect();
        assert!(paginate(2, 4, &endless).is_err_and(|e| e.contains("not done after 4 pages")));
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("a b&c=d+/é"), "a%20b%26c%3Dd%2B%2F%C3%A9");
    }

    #[test]
    fn variant_stats_check_the_item_count() {
        let mut stats = VariantStats::default();
        let listed = |items| Listed { took: millis(5), items, pages: 2, bytes: 2 << 20, kind: "PodList".into() };
        assert!(stats.record(listed(10), 10).is_ok());
        assert!(stats.record(listed(9), 10).is_err_and(|e| e.failure == Failure::BadBody));
        // The count seen is shown even when it is wrong.
        let cells = stats.cells(ListVariant::Paged);
        assert_eq!(cells, ["list-paged", "1", "0", "9", "2", "2.00", "5.0", "5.0", "5.0"]);
        assert_eq!(stats.kinds, ["PodList"]);
    }

    #[test]
    fn names_and_namespaces() {
        assert_eq!(pod_name(7), "bench-pod-000007");
        assert!(check_namespace("keel-bench").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
        let pod: Value = serde_json::from_slice(&pod_body("p")).expect("json");
        assert_eq!(pod.pointer("/spec/containers/0/image"), Some(&json!("busybox")));
        assert_eq!(pod.pointer("/spec/containers/0/name"), Some(&json!("main")));
    }
}
