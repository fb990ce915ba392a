//! The agent's only way to the cluster: the Kubernetes HTTP API of the masters.
//!
//! - `client.rs`: one HTTP/2 connection (TLS, client certificate) to one master at a time,
//!   multiplexing every request of every node; failover to the next `--server` on a transport
//!   error, a timeout or a 5xx; a bound on requests in flight.
//! - `credentials.rs`: the CA and client certificate, from files or a kubeconfig.
//! - `watch.rs`: list-then-watch of one collection, resumed from the last resourceVersion,
//!   relisted on 410 Gone, retried with back-off.

pub mod client;
pub mod credentials;
pub mod watch;

pub use client::{Client, Response};

/// Why a request did not get an answer from any API server.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("bad server URL {0:?}: {1}")]
    ServerUrl(String, String),
    #[error("no API server reachable (tried {0})")]
    Unreachable(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("response body over {0} bytes")]
    TooLarge(usize),
    #[error("{status}: {message}")]
    Status { status: u16, message: String },
    #[error("decoding the answer: {0}")]
    Decode(String),
}

impl ApiError {
    /// The HTTP status of an answer the server gave, if it gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
