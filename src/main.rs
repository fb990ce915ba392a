//! `keel`: one binary, several roles. This file is the CLI only; every role lives in a crate.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel: a small, correct Kubernetes-style cluster")]
struct Cli {
    #[command(subcommand)]
    role: Role,
    /// Threads of the async runtime [default: one per CPU]. Processes sharing a machine (the
    /// three members of `keel up` on a small one) do better with fewer: a thread that sleeps
    /// and wakes between requests costs a context switch each time. With 1, the runtime is
    /// tokio's current-thread scheduler: everything runs on the main thread, without the
    /// work-stealing scheduler's bookkeeping.
    #[arg(long, global = true, value_name = "N")]
    worker_threads: Option<std::num::NonZeroUsize>,
}

#[derive(Subcommand)]
enum Role {
    /// A local three-master cluster on loopback (Ctrl-C stops it).
    Up(keel_control_plane::up::UpArgs),
    /// A master: an embedded store replica and the Kubernetes API server on it.
    Master(Box<keel_control_plane::master::MasterArgs>),
    /// A node agent: registers Nodes, renews their Leases, runs the pods bound to them.
    Agent(Box<keel_node_agent::AgentArgs>),
    /// The store alone: an etcd-compatible server (etcd's flag names).
    Store(StoreCommand),
    /// Benchmarks against any list of etcd v3 endpoints (Keel or real etcd).
    Bench(keel_chaos::bench::BenchCommand),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct StoreCommand {
    #[command(subcommand)]
    action: Option<StoreAction>,
    #[command(flatten)]
    args: keel_store::config::StoreArgs,
}

#[derive(Subcommand)]
enum StoreAction {
    /// Creates a new data directory from a snapshot saved with `etcdctl snapshot save`.
    Restore {
        /// The snapshot file.
        snapshot: std::path::PathBuf,
        #[command(flatten)]
        args: keel_store::config::StoreArgs,
    },
}

/// mimalloc for the Rust heap: the request paths allocate small, short-lived buffers (HTTP/2
/// frames, protobuf messages, batches) on one thread and free them on another, which glibc's
/// allocator handles slowly; see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The one runtime every role runs on: `threads` workers, or on one thread when it is 1.
fn runtime(threads: Option<std::num::NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(one) if one.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads.get());
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// How long the runtime waits, once the role has returned, for blocking tasks still running (a
/// snapshot being streamed out, a defragmentation) before the process exits anyway. A stopped
/// role has closed its store already; nothing such a task does is still needed, and without a
/// bound one stuck task would keep the process alive (dropping a runtime waits for them all).
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> Result<()> {
    init_logging();
    let cli = Cli::parse();
    let runtime = runtime(cli.worker_threads)?;
    let outcome = run(&runtime, cli.role);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    outcome
}

fn run(runtime: &tokio::runtime::Runtime, role: Role) -> Result<()> {
    match role {
        Role::Store(StoreCommand { action: None, args }) => {
            runtime.block_on(keel_store::server::run(args.into_config()?))?
        }
        Role::Store(StoreCommand { action: Some(StoreAction::Restore { snapshot, args }), .. }) => {
            let config = args.into_config()?;
            let revision = keel_store::server::restore(&config, &snapshot)?;
            println!("restored {} into {} at revision {revision}", snapshot.display(), config.data_dir.display());
        }
        Role::Up(args) => runtime.block_on(keel_control_plane::up::run(args))?,
        Role::Master(args) => runtime.block_on(keel_control_plane::master::run(*args))?,
        Role::Agent(args) => runtime.block_on(keel_node_agent::run(*args))?,
        Role::Bench(cmd) => runtime.block_on(keel_chaos::bench::run_command(cmd))?,
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        // openraft narrates every vote and append at info; its warnings are what an operator needs.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
