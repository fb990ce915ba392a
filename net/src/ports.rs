//! Free TCP ports on 127.0.0.1 for processes that are about to be started (test servers, the
//! clusters `keel bench failover --launch` runs).
//!
//! The ports come from below Linux's ephemeral range (32768–60999 by default). A port found
//! free by binding `127.0.0.1:0` lies inside that range, and between the check and the
//! server's own bind an outgoing connection (an etcdctl run, a member dialing a member that is
//! down) can take it as its source port: seen in CI as "address already in use".

use std::net::TcpListener;
use std::ops::Range;

/// Where the ports are picked, at random.
pub const LOCAL_PORTS: Range<u16> = 10_000..32_000;

/// Tries per port wanted before giving up.
const TRIES_PER_PORT: usize = 1_000;

/// `n` distinct ports of `LOCAL_PORTS` that were free a moment ago (all were held at once,
/// then released). Errors only when that many free ports could not be found.
pub fn free_local_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let mut held: Vec<(u16, TcpListener)> = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(TRIES_PER_PORT) {
        if held.len() == n {
            break;
        }
        let port = rand::random_range(LOCAL_PORTS);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push((port, listener));
        }
    }
    if held.len() < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("found only {} of {n} free ports in {LOCAL_PORTS:?} on 127.0.0.1", held.len()),
        ));
    }
    Ok(held.into_iter().map(|(port, _)| port).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports = free_local_ports(6).expect("six free ports");
        assert_eq!(ports.len(), 6);
        assert!(ports.iter().all(|p| LOCAL_PORTS.contains(p)), "{ports:?}");
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), 6, "{ports:?}");
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).expect("released, so free again");
        }
    }
}
