//! Connections between members: the peer TLS material and a pool of gRPC channels to the other
//! members of the cluster.
//!
//! This module owns *how* a member reaches another one; what is said over the connection lives
//! elsewhere (`network` for Raft's RPCs, the forwarding modules for Keel's own calls). Every
//! caller gets its clients from [`Peers`], so they all share one HTTP/2 connection per member,
//! the same timeouts and the same TLS rules.
//!
//! Failover speed drives the settings: a member that is down or partitioned must cost a caller
//! at most [`CONNECT_TIMEOUT`] to find out (connection refused or no SYN/ACK), and an established
//! connection to a member that died silently is dropped by HTTP/2 keep-alive within about
//! [`KEEPALIVE_INTERVAL`] + [`KEEPALIVE_TIMEOUT`]. Channels connect lazily, on first use, and
//! reconnect on the next call after a failure, so building a client never blocks.
//!
//! Peer TLS is mutual: with `--peer-cert-file`, `--peer-key-file` and `--peer-trusted-ca-file`,
//! a member presents its certificate when it calls another member and only accepts servers
//! whose certificate the cluster CA signed, and the peer server ([`PeerTls::server_config`])
//! only accepts callers presenting a certificate the same CA signed.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use crate::raft::generated::peer_client::PeerClient;
use crate::raft::generated::peer_server::{Peer, PeerServer};
use crate::raft::types::PeerNode;
use keel_net::coalesce::CoalescedWrites;

/// Largest gRPC message a member sends or accepts from another member. Log entries travel in
/// batches (a whole `AppendEntries` is one message), snapshot chunks are at most 1 MiB.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;
/// How long opening a TCP connection to a member may take before the member counts as
/// unreachable. Members are expected on a low-latency network.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// How long the TLS handshake may take, on either side.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 PING interval on an established connection, idle or not.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long an HTTP/2 PING may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 flow-control windows: large enough that a snapshot or a big batch streams at LAN speed.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;
const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("member {member_id:x} has no peer URL")]
    NoPeerUrl { member_id: u64 },
    #[error("invalid peer URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "peer URL {url:?} is https but peer TLS is not configured \
         (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file)"
    )]
    TlsNotConfigured { url: String },
    #[error("cannot read peer TLS file {path}: {source}")]
    TlsFile { path: PathBuf, source: std::io::Error },
    #[error("invalid peer TLS material ({what}): {source}")]
    TlsMaterial { what: &'static str, source: tonic::transport::Error },
}

/// The peer port's TLS material, PEM-encoded: this member's certificate and key, and the CA
/// that signs every member's certificate.
#[derive(Clone)]
pub struct PeerTls {
    identity: Identity,
    ca: Certificate,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("PeerTls { .. }")
    }
}

impl PeerTls {
    /// Reads the files of `--peer-cert-file`, `--peer-key-file` and `--peer-trusted-ca-file`.
    pub fn load(cert_file: &Path, key_file: &Path, trusted_ca_file: &Path) -> Result<PeerTls, TransportError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TransportError::TlsFile { path: path.to_path_buf(), source })
        };
        PeerTls::from_pem(read(cert_file)?, read(key_file)?, read(trusted_ca_file)?)
    }

    /// Builds the material from PEM text, checking that both the client and the server side
    /// accept it (so a bad file fails at startup, not on the first connection).
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>, ca_pem: Vec<u8>) -> Result<PeerTls, TransportError> {
        let tls = PeerTls { identity: Identity::from_pem(cert_pem, key_pem), ca: Certificate::from_pem(ca_pem) };
        Endpoint::from_static("https://127.0.0.1:2380")
            .tls_config(tls.client_config("127.0.0.1"))
            .map_err(|source| TransportError::TlsMaterial { what: "client side", source })?;
        Server::builder()
            .tls_config(tls.server_config())
            .map_err(|source| TransportError::TlsMaterial { what: "server side", source })?;
        Ok(tls)
    }

    /// The peer server's TLS: presents this member's certificate and requires every caller to
    /// present a certificate signed by the cluster CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(false)
            .timeout(TLS_HANDSHAKE_TIMEOUT)
    }

    /// The TLS of a call to another member: presents this member's certificate and only trusts
    /// a server whose certificate the cluster CA signed for `server_name` (a DNS name or an IP
    /// address, as the peer URL has it).
    pub fn client_config(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(self.identity.clone())
            .ca_certificate(self.ca.clone())
            .domain_name(server_name)
            .assume_http2(true)
            .timeout(TLS_HANDSHAKE_TIMEOUT)
    }
}

/// Wraps a `keelpeer.Peer` implementation for serving, with the message size limits callers
/// use ([`MAX_PEER_MESSAGE_BYTES`]); tonic's default 4 MiB would refuse batched entries.
pub fn peer_server<S: Peer>(service: S) -> PeerServer<S> {
    PeerServer::new(service)
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
}

/// Which connection to a member a call travels on. Snapshots get their own connection, so a
/// multi-gigabyte transfer never queues heartbeats and votes behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lane {
    Control,
    Bulk,
}

/// A member's address as a channel needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerAddress {
    /// The URL as configured (the key that tells whether a member moved).
    url: String,
    /// What the channel dials: scheme, host (`localhost` replaced by 127.0.0.1), port.
    dial: String,
    /// The name the server certificate must carry: the host as configured.
    server_name: String,
    tls: bool,
}

impl PeerAddress {
    fn parse(url: &str) -> Result<PeerAddress, TransportError> {
        let bad = |reason: &str| TransportError::BadUrl { url: url.to_string(), reason: reason.to_string() };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => return Err(bad("the scheme must be http or https")),
            None => return Err(bad("missing scheme (http:// or https://)")),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("missing host"))?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
            return Err(bad("a peer URL has no path"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("a peer URL has no user information"));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let server_name = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let dial_host = if host.eq_ignore_ascii_case("localhost") { "127.0.0.1" } else { host };
        let scheme = if tls { "https" } else { "http" };
        Ok(PeerAddress { url: url.to_string(), dial: format!("{scheme}://{dial_host}:{port}"), server_name, tls })
    }
}

/// Tunables of [`Peers`]; the defaults are the constants of this module.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_message_bytes: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            connect_timeout: CONNECT_TIMEOUT,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_timeout: KEEPALIVE_TIMEOUT,
            max_message_bytes: MAX_PEER_MESSAGE_BYTES,
        }
    }
}

struct Slot {
    address: PeerAddress,
    channel: Channel,
}

struct PeersInner {
    tls: Option<PeerTls>,
    options: TransportOptions,
    /// The runtime that drives the connections (`raft::runtime`); `None`: whichever runtime
    /// first asks for a member's channel.
    runtime: Option<tokio::runtime::Handle>,
    /// One entry per (member, lane): bounded by the membership, since callers only address
    /// members, and entries of removed members are dropped with [`Peers::forget`]/[`Peers::retain`].
    slots: Mutex<HashMap<(u64, Lane), Slot>>,
}

/// The channels to the other members. Cheap to clone; all clones share the pool.
///
/// A member is reached at the first of its peer URLs. When a member's URLs change (a
/// `MemberUpdate`), the next call with the new [`PeerNode`] replaces the channel; a removed
/// member's channels are dropped with [`Peers::forget`] or [`Peers::retain`].
#[derive(Clone)]
pub struct Peers {
    inner: Arc<PeersInner>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("tls", &self.inner.tls.is_some()).field("options", &self.inner.options).finish()
    }
}

impl Peers {
    /// A pool using peer TLS `tls` for `https://` peer URLs (`None`: plain `http://` only).
    pub fn new(tls: Option<PeerTls>) -> Peers {
        Peers::with_options(tls, TransportOptions::default())
    }

    pub fn with_options(tls: Option<PeerTls>, options: TransportOptions) -> Peers {
        Peers { inner: Arc::new(PeersInner { tls, options, runtime: None, slots: Mutex::new(HashMap::new()) }) }
    }

    /// A pool whose connections run on `runtime` (the Raft thread's), whichever task first
    /// calls a member: heartbeats then never wait for a busy caller's runtime.
    pub fn on_runtime(tls: Option<PeerTls>, runtime: tokio::runtime::Handle) -> Peers {
        let options = TransportOptions::default();
        let inner = PeersInner { tls, options, runtime: Some(runtime), slots: Mutex::new(HashMap::new()) };
        Peers { inner: Arc::new(inner) }
    }

    pub fn options(&self) -> &TransportOptions {
        &self.inner.options
    }

    /// A client for member `member_id` at `node`'s first peer URL, for small request/response
    /// calls (Raft messages, forwarded writes, read index, leases, membership).
    pub fn client(&self, member_id: u64, node: &PeerNode) -> Result<PeerClient<Channel>, TransportError> {
        Ok(self.wrap(self.channel(member_id, node)?))
    }

    /// A client on a separate connection to the same member, for long transfers (snapshots).
    pub fn bulk_client(&self, member_id: u64, node: &PeerNode) -> Result<PeerClient<Channel>, TransportError> {
        Ok(self.wrap(self.lane_channel(member_id, node, Lane::Bulk)?))
    }

    /// The shared channel to member `member_id` at `node`'s first peer URL; connects lazily.
    pub fn channel(&self, member_id: u64, node: &PeerNode) -> Result<Channel, TransportError> {
        self.lane_channel(member_id, node, Lane::Control)
    }

    /// Drops the channels to `member_id` (a removed member; or to force a new connection).
    pub fn forget(&self, member_id: u64) {
        self.slots().retain(|(id, _), _| *id != member_id);
    }

    /// Keeps only the channels of members for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(u64) -> bool) {
        self.slots().retain(|(id, _), _| keep(*id));
    }

    fn wrap(&self, channel: Channel) -> PeerClient<Channel> {
        PeerClient::new(channel)
            .max_decoding_message_size(self.inner.options.max_message_bytes)
            .max_encoding_message_size(self.inner.options.max_message_bytes)
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<(u64, Lane), Slot>> {
        // The map is never left half-updated, so a panic elsewhere does not invalidate it.
        self.inner.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lane_channel(&self, member_id: u64, node: &PeerNode, lane: Lane) -> Result<Channel, TransportError> {
        let url = node.peer_urls.first().ok_or(TransportError::NoPeerUrl { member_id })?;
        let mut slots = self.slots();
        if let Some(slot) = slots.get(&(member_id, lane))
            && slot.address.url == *url
        {
            return Ok(slot.channel.clone());
        }
        let address = PeerAddress::parse(url)?;
        // The channel's worker, and the connection it opens, are spawned where it is created.
        let _on_runtime = self.inner.runtime.as_ref().map(tokio::runtime::Handle::enter);
        let channel = self.endpoint(&address)?.connect_with_connector_lazy(Dialer);
        if let Some(old) = slots.insert((member_id, lane), Slot { address, channel: channel.clone() }) {
            tracing::info!(member_id = format!("{member_id:x}"), old = %old.address.url, new = %url, "peer URL changed");
        }
        Ok(channel)
    }

    fn endpoint(&self, address: &PeerAddress) -> Result<Endpoint, TransportError> {
        let options = &self.inner.options;
        let endpoint = Endpoint::from_shared(address.dial.clone())
            .map_err(|e| TransportError::BadUrl { url: address.url.clone(), reason: e.to_string() })?
            .connect_timeout(options.connect_timeout)
            .http2_keep_alive_interval(options.keepalive_interval)
            .keep_alive_timeout(options.keepalive_timeout)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
        if !address.tls {
            return Ok(endpoint);
        }
        let tls =
            self.inner.tls.as_ref().ok_or_else(|| TransportError::TlsNotConfigured { url: address.url.clone() })?;
        endpoint
            .tls_config(tls.client_config(&address.server_name))
            .map_err(|source| TransportError::TlsMaterial { what: "client side", source })
    }
}

/// Opens the TCP connection under a channel to a member: no Nagle delay, writes coalesced
/// (tonic adds TLS above it for `https://` peers, and bounds the whole connect by
/// [`TransportOptions::connect_timeout`]). Its errors are the socket's own `io::Error`s, so
/// callers can tell a refused connection (nothing was sent) from a broken one.
#[derive(Clone, Copy, Debug)]
struct Dialer;

impl tower::Service<Uri> for Dialer {
    type Response = TokioIo<CoalescedWrites<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}")))?;
            let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(CoalescedWrites::new(tcp)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(url: &str) -> PeerNode {
        PeerNode { peer_urls: vec![url.to_string()] }
    }

    #[test]
    fn parses_peer_urls() {
        let a = PeerAddress::parse("http://localhost:2380").expect("valid");
        assert_eq!(a.dial, "http://127.0.0.1:2380");
        assert_eq!(a.server_name, "localhost");
        assert!(!a.tls);
        let a = PeerAddress::parse("https://10.0.0.7:2380/").expect("valid");
        assert_eq!(a.dial, "https://10.0.0.7:2380");
        assert_eq!(a.server_name, "10.0.0.7");
        assert!(a.tls);
        let a = PeerAddress::parse("https://[::1]:2380").expect("valid");
        assert_eq!(a.dial, "https://[::1]:2380");
        assert_eq!(a.server_name, "::1");
        let a = PeerAddress::parse("http://keel-0.keel:2380").expect("valid");
        assert_eq!(a.dial, "http://keel-0.keel:2380");
        for bad in
            ["keel-0:2380", "unix:///tmp/x", "http://", "http://host:2380/path", "http://u@host:2380", "ftp://h:1"]
        {
            assert!(matches!(PeerAddress::parse(bad), Err(TransportError::BadUrl { .. })), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn pools_channels_per_member_and_url() {
        let peers = Peers::new(None);
        assert!(matches!(peers.client(1, &PeerNode::default()), Err(TransportError::NoPeerUrl { member_id: 1 })));
        assert!(matches!(
            peers.client(1, &node("https://127.0.0.1:2380")),
            Err(TransportError::TlsNotConfigured { .. })
        ));
        peers.client(1, &node("http://127.0.0.1:2380")).expect("client");
        peers.client(1, &node("http://127.0.0.1:2380")).expect("client");
        peers.bulk_client(1, &node("http://127.0.0.1:2380")).expect("client");
        peers.client(2, &node("http://127.0.0.1:2381")).expect("client");
        assert_eq!(peers.slots().len(), 3);
        // A moved member: its channel is replaced, not added.
        peers.client(1, &node("http://127.0.0.1:2390")).expect("client");
        assert_eq!(peers.slots().len(), 3);
        assert_eq!(peers.slots()[&(1, Lane::Control)].address.url, "http://127.0.0.1:2390");
        peers.forget(1);
        assert_eq!(peers.slots().len(), 1);
        peers.retain(|id| id != 2);
        assert!(peers.slots().is_empty());
    }

    #[tokio::test]
    async fn a_refused_connection_is_known_not_to_have_sent_anything() {
        // Forwarding retries only a call that certainly never left; the dialer's errors must keep
        // the socket's own error in the status for that check.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let peers = Peers::new(None);
        let mut client = peers.client(1, &node(&format!("http://127.0.0.1:{port}"))).expect("client");
        let request = crate::raft::wire::ReadIndexRequest { cluster_id: 1, target: 1 };
        let status = client.read_index(request).await.expect_err("nothing listens there");
        assert!(crate::raft::proposer::never_sent(&status), "{status:?}");
    }

    #[test]
    fn rejects_bad_tls_material() {
        let result = PeerTls::from_pem(b"not a cert".to_vec(), b"not a key".to_vec(), b"not a ca".to_vec());
        assert!(matches!(result, Err(TransportError::TlsMaterial { .. })), "{result:?}");
        let missing = Path::new("/nonexistent/keel.pem");
        assert!(matches!(PeerTls::load(missing, missing, missing), Err(TransportError::TlsFile { .. })));
    }
}
