//! `keel`: one binary, several roles. This file is the CLI only; every role lives in a crate.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel: a small, correct Kubernetes-style cluster")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// The store alone: an etcd-compatible server (etcd's flag names).
    Store(keel_store::config::StoreArgs),
    /// Benchmarks against any list of etcd v3 endpoints (Keel or real etcd).
    Bench(keel_chaos::bench::BenchArgs),
}

fn main() -> Result<()> {
    init_logging();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.role {
        Role::Store(args) => runtime.block_on(keel_store::server::run(args.into_config()?))?,
        Role::Bench(args) => runtime.block_on(keel_chaos::bench::run(args))?,
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
