//! Endpoints and client connections.
//!
//! Owns turning `--endpoints` into URLs and opening checked connections. Each
//! [`Client`] made here talks to exactly one endpoint over its own HTTP/2
//! connection, so spreading clients round-robin over the endpoints really
//! spreads the load (etcd-client's own balancing would pick endpoints for us).
//! `Client::connect` is lazy, so every new client is probed with one read before
//! use: an unreachable endpoint fails here with its address in the message
//! instead of as a wall of timeouts in the middle of a test.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::BenchError;

/// Splits a comma-separated endpoint list, adding `http://` where no scheme is given.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, BenchError> {
    let endpoints: Vec<String> =
        list.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e.starts_with("http://") || e.starts_with("https://") {
                    e.to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
    if endpoints.is_empty() {
        return Err(BenchError::Args("--endpoints is empty".into()));
    }
    Ok(endpoints)
}

/// Opens one client to `endpoint` and checks it answers a linearizable read
/// (which also proves the member sees a leader) within `timeout`.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Client, BenchError> {
    let unreachable = |reason: String| BenchError::Unreachable { endpoint: endpoint.to_string(), reason };
    let options = ConnectOptions::new().with_connect_timeout(timeout);
    let mut client = tokio::time::timeout(timeout, Client::connect([endpoint], Some(options)))
        .await
        .map_err(|_| unreachable(format!("no connection within {timeout:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::time::timeout(timeout, client.get("/bench/probe", None))
        .await
        .map_err(|_| unreachable(format!("no answer to a read within {timeout:?} (is it up?)")))?
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(client)
}

/// Opens `n` clients, client `i` on endpoint `i % endpoints.len()`.
pub async fn connect_round_robin(endpoints: &[String], n: usize, timeout: Duration) -> Result<Vec<Client>, BenchError> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(connect(&endpoints[i % endpoints.len()], timeout).await?);
    }
    Ok(clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme() {
        let e = parse_endpoints("127.0.0.1:2379, http://127.0.0.1:2380,,").unwrap();
        assert_eq!(e, vec!["http://127.0.0.1:2379", "http://127.0.0.1:2380"]);
        assert!(parse_endpoints(" , ").is_err());
    }
}
