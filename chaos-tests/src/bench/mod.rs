//! `keel bench`: store benchmarks against any list of etcd v3 endpoints.
//!
//! The same run works against Keel and against real etcd, so both can be
//! measured with one tool and one set of parameters. This module owns the CLI
//! and the orchestration: it checks the arguments, connects, runs the chosen
//! tests in order, prints one markdown table row per test and deletes the keys
//! it wrote. The workloads live in [`kv`] (put/get closed loops) and [`watch`]
//! (watch delivery latency); [`stats`] owns percentiles and the table; [`conn`]
//! owns endpoints and connections.
//!
//! `keel bench failover` measures leader failover ([`failover`]); `keel bench api` and
//! `keel bench api-list` measure the Kubernetes API server over HTTPS ([`api`], with its
//! client in [`https`]); `keel bench scheduler` the scheduler's throughput ([`scheduler`]);
//! `keel bench control-plane-failover` the controllers' takeover ([`control_plane_failover`]);
//! `keel bench pod-startup` create → Running latency ([`pod_startup`]).
//!
//! Every key is under `/bench/<random run id>/`, so runs never collide and the
//! cleanup is one prefix delete. (The revisions written stay in the store's
//! history until someone compacts; the tool never compacts a store it does not own.)
//!
//! Every test is bounded by its op count and by `--max-seconds`; every request
//! by `--timeout`. Errors are counted and reported; a test that keeps failing
//! stops the run with a message naming what failed.

pub mod api;
mod conn;
pub mod control_plane_failover;
pub mod failover;
mod grpc;
mod https;
mod kv;
pub mod pod_startup;
pub mod scheduler;
mod stats;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;

use stats::Row;

/// How long watchers may still deliver after the last put.
const WATCH_DRAIN: Duration = Duration::from_secs(5);

/// The tests, in their default order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TestKind {
    /// Puts from one client, one request in flight.
    SeqPut,
    /// Puts with `--inflight` requests in flight over `--clients` connections.
    Put,
    /// Linearizable gets of existing keys, `--inflight` in flight.
    GetLinearizable,
    /// Serializable gets of existing keys, `--inflight` in flight.
    GetSerializable,
    /// Watch delivery latency and lost events.
    Watch,
}

impl TestKind {
    fn name(self) -> &'static str {
        match self {
            TestKind::SeqPut => "seq-put",
            TestKind::Put => "put",
            TestKind::GetLinearizable => "get-linearizable",
            TestKind::GetSerializable => "get-serializable",
            TestKind::Watch => "watch",
        }
    }
}

// `keel bench [flags]` runs the KV tests; `keel bench failover [flags]` the failover benchmark;
// `keel bench api` and `keel bench api-list` the API server benchmarks.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    pub action: Option<BenchAction>,
    #[command(flatten)]
    pub args: BenchArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchAction {
    // about and long_about: on `FailoverArgs`.
    Failover(failover::FailoverArgs),
    // about and long_about: on `ApiArgs` and `ApiListArgs`.
    Api(api::ApiArgs),
    ApiList(api::ApiListArgs),
    // about and long_about: on `SchedulerArgs`.
    Scheduler(scheduler::SchedulerArgs),
    // about and long_about: on `ControlPlaneFailoverArgs`.
    ControlPlaneFailover(control_plane_failover::ControlPlaneFailoverArgs),
    // about and long_about: on `PodStartupArgs`.
    PodStartup(pod_startup::PodStartupArgs),
}

/// Runs `keel bench` or one of its subcommands.
pub async fn run_command(cmd: BenchCommand) -> Result<(), BenchError> {
    match cmd.action {
        None => run(cmd.args).await,
        Some(BenchAction::Failover(args)) => failover::run(args).await,
        Some(BenchAction::Api(args)) => api::run(args).await,
        Some(BenchAction::ApiList(args)) => api::run_list(args).await,
        Some(BenchAction::Scheduler(args)) => scheduler::run(args).await,
        Some(BenchAction::ControlPlaneFailover(args)) => control_plane_failover::run(args).await,
        Some(BenchAction::PodStartup(args)) => pod_startup::run(args).await,
    }
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated etcd v3 endpoints (host:port or http://host:port).
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub endpoints: String,
    /// Comma-separated tests to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "seq-put,put,get-linearizable,get-serializable,watch"
    )]
    pub tests: Vec<TestKind>,
    /// Connections for the throughput tests, round-robin over the endpoints (default: one per
    /// endpoint). Whatever the number, the requests in flight are spread evenly over the
    /// endpoints, then over each endpoint's connections.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Requests in flight in the throughput tests.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Operations per throughput test (put, get-*).
    #[arg(long, default_value_t = 20_000)]
    pub total: u64,
    /// Operations in the sequential put test.
    #[arg(long, default_value_t = 2_000)]
    pub seq_total: u64,
    /// Value size in bytes (the watch test needs at least 20 for its timestamp).
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys the put and get tests use (pre-populated before the gets).
    #[arg(long, default_value_t = 1_000)]
    pub keyspace: u64,
    /// Watchers in the watch test, each on its own watch stream.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Puts the watch test's writer makes.
    #[arg(long, default_value_t = 1_000)]
    pub watch_puts: u64,
    /// Puts per second the watch test's writer makes.
    #[arg(long, default_value_t = 200.0)]
    pub watch_rate: f64,
    /// Time limit of each test, in seconds; a test stops there, finished or not.
    #[arg(long, default_value_t = 60)]
    pub max_seconds: u64,
    /// Time limit of each request (and of connecting), in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Name shown in the header, e.g. "etcd 3.4, 1 member".
    #[arg(long)]
    pub label: Option<String>,
    /// Keep the keys written instead of deleting `/bench/<run id>/` at the end.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid arguments: {0}")]
    Args(String),
    #[error("cannot use endpoint {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("test {test} failed: {reason}")]
    Test { test: String, reason: String },
}

impl BenchArgs {
    fn check(&self) -> Result<(), BenchError> {
        let positive = [
            ("--clients", self.clients.map_or(1, |c| c as u64)),
            ("--inflight", self.inflight as u64),
            ("--total", self.total),
            ("--seq-total", self.seq_total),
            ("--keyspace", self.keyspace),
            ("--watchers", self.watchers as u64),
            ("--watch-puts", self.watch_puts),
            ("--max-seconds", self.max_seconds),
            ("--timeout", self.timeout),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(BenchError::Args(format!("{flag} must be at least 1")));
            }
        }
        if !(self.watch_rate.is_finite() && self.watch_rate > 0.0) {
            return Err(BenchError::Args("--watch-rate must be a positive number".into()));
        }
        if self.tests.is_empty() {
            return Err(BenchError::Args("--tests is empty".into()));
        }
        Ok(())
    }

    /// Connections for the throughput tests over `endpoints` endpoints.
    fn connections(&self, endpoints: usize) -> usize {
        self.clients.unwrap_or(endpoints)
    }
}

/// Everything the tests share.
struct Ctx {
    args: BenchArgs,
    endpoints: Vec<String>,
    prefix: String,
    /// etcd-client on the first endpoint: the watch test's writer and the final cleanup.
    client: Client,
    /// `--clients` connections round-robin over the endpoints, for the closed-loop tests:
    /// connection `i` is on endpoint `i % endpoints.len()`.
    conns: Vec<grpc::KvConn>,
    value: Arc<Vec<u8>>,
    timeout: Duration,
    max_time: Duration,
    populated: bool,
}

pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    args.check()?;
    let endpoints = conn::parse_endpoints(&args.endpoints)?;
    let prefix = format!("/bench/{:08x}/", rand::random::<u32>());
    let timeout = Duration::from_secs(args.timeout);
    println!("{}", header(&args, &endpoints, &prefix));

    let client = conn::connect(&endpoints[0], timeout).await?;
    let conns = grpc::connect_round_robin(&endpoints, args.connections(endpoints.len()), timeout).await?;
    let mut ctx = Ctx {
        value: Arc::new(vec![b'v'; args.value_size]),
        max_time: Duration::from_secs(args.max_seconds),
        args,
        endpoints,
        prefix,
        client,
        conns,
        timeout,
        populated: false,
    };

    let mut rows = Vec::new();
    let mut outcome = Ok(());
    let mut done = Vec::new();
    for &test in &ctx.args.tests.clone() {
        if done.contains(&test) {
            continue;
        }
        done.push(test);
        tracing::info!("bench: running {}", test.name());
        match run_one(&mut ctx, test).await {
            Ok(row) => {
                tracing::info!("bench: {}: {} ops in {:.2}s", row.test, row.ops, row.elapsed.as_secs_f64());
                rows.push(row);
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if !rows.is_empty() {
        println!("{}", stats::render_table(&rows));
    }
    if !ctx.args.keep {
        match kv::delete_prefix(&ctx.client, &ctx.prefix, ctx.timeout).await {
            Ok(n) => tracing::info!("bench: deleted {n} keys under {}", ctx.prefix),
            Err(e) => tracing::warn!("bench: could not delete {}: {e}", ctx.prefix),
        }
    }
    outcome
}

async fn run_one(ctx: &mut Ctx, test: TestKind) -> Result<Row, BenchError> {
    let keys = kv::KeySpace { prefix: ctx.prefix.clone(), size: ctx.args.keyspace };
    let endpoints = ctx.endpoints.len();
    let closed_loop = |op, clients, inflight, total| kv::Workload {
        name: test.name(),
        op,
        clients,
        endpoints,
        inflight,
        total,
        keys: keys.clone(),
        value: ctx.value.clone(),
        max_time: ctx.max_time,
        op_timeout: ctx.timeout,
    };
    match test {
        TestKind::SeqPut => {
            let w = closed_loop(kv::Op::Put, &ctx.conns[..1], 1, ctx.args.seq_total);
            kv::run(w).await
        }
        TestKind::Put => {
            let w = closed_loop(kv::Op::Put, &ctx.conns, ctx.args.inflight, ctx.args.total);
            kv::run(w).await
        }
        TestKind::GetLinearizable | TestKind::GetSerializable => {
            if !ctx.populated {
                let fill = closed_loop(kv::Op::Put, &ctx.conns, ctx.args.inflight, ctx.args.keyspace);
                let row = kv::run(fill).await.map_err(|e| BenchError::Test {
                    test: test.name().into(),
                    reason: format!("populating the keyspace: {e}"),
                })?;
                if row.ops < ctx.args.keyspace {
                    return Err(BenchError::Test {
                        test: test.name().into(),
                        reason: format!("populated only {} of {} keys", row.ops, ctx.args.keyspace),
                    });
                }
                tracing::info!("bench: populated {} keys", row.ops);
                ctx.populated = true;
            }
            let op = if test == TestKind::GetLinearizable { kv::Op::GetLinearizable } else { kv::Op::GetSerializable };
            let w = closed_loop(op, &ctx.conns, ctx.args.inflight, ctx.args.total);
            kv::run(w).await
        }
        TestKind::Watch => {
            // Own connections, so watch streams do not queue behind earlier tests'
            // traffic; at least one per endpoint so every endpoint serves watchers.
            let n = ctx.args.connections(endpoints).max(endpoints).min(ctx.args.watchers);
            let watch_clients = conn::connect_round_robin(&ctx.endpoints, n, ctx.timeout).await?;
            watch::run(watch::WatchTest {
                watch_clients: &watch_clients,
                writer: ctx.client.clone(),
                key: format!("{}watch/key", ctx.prefix),
                watchers: ctx.args.watchers,
                puts: ctx.args.watch_puts,
                rate: ctx.args.watch_rate,
                value_size: ctx.args.value_size,
                max_time: ctx.max_time,
                op_timeout: ctx.timeout,
                drain: WATCH_DRAIN,
            })
            .await
        }
    }
}

fn header(args: &BenchArgs, endpoints: &[String], prefix: &str) -> String {
    let label = args.label.as_deref().unwrap_or("unlabeled run");
    let tests: Vec<&str> = args.tests.iter().map(|t| t.name()).collect();
    format!(
        "## keel bench: {label}\n\n\
         - endpoints: {}\n\
         - tests: {}\n\
         - clients={} inflight={} total={} seq-total={} value-size={}B keyspace={}\n\
         - watchers={} watch-puts={} watch-rate={}/s\n\
         - max-seconds={} per test, timeout={}s per request, keys under {prefix}{}\n",
        endpoints.join(","),
        tests.join(","),
        args.connections(endpoints.len()),
        args.inflight,
        args.total,
        args.seq_total,
        args.value_size,
        args.keyspace,
        args.watchers,
        args.watch_puts,
        args.watch_rate,
        args.max_seconds,
        args.timeout,
        if args.keep { " (kept)" } else { " (deleted at the end)" },
    )
}
