//! `keel bench`: store benchmarks against any list of etcd v3 endpoints.

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated etcd v3 endpoints (host:port).
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub endpoints: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("not implemented yet")]
    NotYet,
}

pub async fn run(_args: BenchArgs) -> Result<(), BenchError> {
    Err(BenchError::NotYet)
}
