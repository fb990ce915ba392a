//! A minimal HTTPS client for the API benchmarks: mutual TLS, HTTP/2 by ALPN, one request at a time.
//!
//! Owns reading the client credentials, parsing `--servers` URLs, and one connection to one API
//! server ([`Endpoint`]). The benchmarks give every worker its own `Endpoint` per server, so a run
//! holds exactly `workers × servers` connections, each owned by one task, and the server sees the
//! same spread of load over its connections whatever the client library would pool. That is why
//! this uses hyper's connection API directly rather than a pooled client: a reconnect is an
//! explicit, counted event ([`Endpoint::connects`]), not something a pool does quietly, and a
//! benchmark that reconnects a lot measures handshakes rather than the API.
//!
//! TLS is rustls with the ring provider passed explicitly (the build carries no other provider).
//! The client offers `h2` and `http/1.1`; HTTP/2 is used when the server picks it, HTTP/1.1
//! otherwise. Every request is bounded by a timeout covering connect, send and reading the whole
//! body, and every body by [`MAX_BODY_BYTES`]. After any transport error or timeout the connection
//! is dropped and the next request opens a new one (an HTTP/1.1 connection with a request cut off
//! halfway cannot be reused, and an HTTP/2 one that failed usually cannot either).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Largest response body read; a list of 10,000 pods is a few tens of MB.
pub const MAX_BODY_BYTES: usize = 512 << 20;

/// What can go wrong setting up TLS or making one request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{path}: {reason}")]
    Credentials { path: String, reason: String },
    #[error("invalid server URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("connecting to {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("{server}: {reason}")]
    Transport { server: String, reason: String },
    #[error("{server}: no complete answer within {timeout:?}")]
    Timeout { server: String, timeout: Duration },
    #[error("{server}: response body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge { server: String },
}

impl HttpError {
    /// True for a request that ran out of time (as opposed to one that failed outright).
    pub fn is_timeout(&self) -> bool {
        matches!(self, HttpError::Timeout { .. })
    }
}

/// Reads the CA bundle, the client certificate chain and its key, and builds the client
/// configuration every connection of a run shares.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca_cert in read_certs(ca)? {
        roots.add(ca_cert)?;
    }
    let chain = read_certs(cert)?;
    let key_pem = read(key)?;
    let private_key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| credentials(key, e.to_string()))?
        .ok_or_else(|| credentials(key, "no private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private_key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn credentials(path: &Path, reason: String) -> HttpError {
    HttpError::Credentials { path: path.display().to_string(), reason }
}

fn read(path: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path).map_err(|e| credentials(path, e.to_string()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| credentials(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(credentials(path, "no certificate in the file".into()));
    }
    Ok(certs)
}

/// One API server, parsed from an `https://host:port` URL.
#[derive(Debug, Clone)]
pub struct Server {
    /// The URL as given, without a trailing slash; names the server in messages.
    pub url: String,
    /// Host to connect to (an IPv6 literal without its brackets).
    host: String,
    port: u16,
    /// `host:port` as it goes into the `:authority` / `Host` header.
    authority: String,
    /// The name the server certificate must carry (DNS name or IP address).
    server_name: ServerName<'static>,
}

impl Server {
    pub fn parse(url: &str) -> Result<Server, HttpError> {
        let bad = |reason: &str| HttpError::Url { url: url.to_string(), reason: reason.to_string() };
        let trimmed = url.trim().trim_end_matches('/');
        let uri: Uri = trimmed.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the scheme must be https"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
            return Err(bad("give the server only (https://host:port), no path"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let server_name = ServerName::try_from(host.clone()).map_err(|_| bad("invalid host name"))?;
        let port = authority.port_u16().unwrap_or(443);
        Ok(Server { url: trimmed.to_string(), host, port, authority: authority.as_str().to_string(), server_name })
    }
}

/// Parses a comma-separated `--servers` list; at least one, no duplicates.
pub fn parse_servers(list: &[String]) -> Result<Vec<Arc<Server>>, HttpError> {
    let mut servers: Vec<Arc<Server>> = Vec::with_capacity(list.len());
    for url in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let server = Server::parse(url)?;
        if servers.iter().any(|s| s.authority == server.authority) {
            return Err(HttpError::Url { url: url.to_string(), reason: "listed twice".into() });
        }
        servers.push(Arc::new(server));
    }
    if servers.is_empty() {
        return Err(HttpError::Url { url: String::new(), reason: "no server given".into() });
    }
    Ok(servers)
}

/// One request: the parts the benchmarks vary.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    /// Path and query, e.g. `/api/v1/namespaces/x/pods?limit=500`.
    pub path: &'a str,
    pub accept: &'a str,
    /// Content type of `body`; `None` for a request without a body.
    pub content_type: Option<&'a str>,
    pub body: Bytes,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str, accept: &'a str) -> Self {
        Request { method: Method::GET, path, accept, content_type: None, body: Bytes::new() }
    }

    pub fn json(method: Method, path: &'a str, content_type: &'a str, body: Bytes) -> Self {
        Request { method, path, accept: "application/json", content_type: Some(content_type), body }
    }
}

/// A complete answer: status and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Which protocol a connection speaks, as ALPN decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http2,
    Http1,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http2 => "HTTP/2",
            Protocol::Http1 => "HTTP/1.1",
        }
    }
}

enum Sender {
    Http2(http2::SendRequest<Full<Bytes>>),
    Http1(http1::SendRequest<Full<Bytes>>),
}

/// An open connection: the request side, and the task that drives the socket (aborted on drop,
/// so a dropped connection never outlives its owner).
struct Connection {
    sender: Sender,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http2(s) => s.is_closed(),
            Sender::Http1(s) => s.is_closed(),
        }
    }
}

/// One server as seen by one task: at most one open connection, reopened on demand.
pub struct Endpoint {
    server: Arc<Server>,
    tls: TlsConnector,
    timeout: Duration,
    connection: Option<Connection>,
    /// Connections opened so far (1 in a healthy run; more means reconnects).
    connects: u64,
    /// Protocol of the most recent connection.
    protocol: Option<Protocol>,
}

impl Endpoint {
    /// An endpoint that connects on first use; `timeout` bounds every request (and connecting).
    pub fn new(server: Arc<Server>, tls: Arc<rustls::ClientConfig>, timeout: Duration) -> Self {
        Endpoint { server, tls: TlsConnector::from(tls), timeout, connection: None, connects: 0, protocol: None }
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn connects(&self) -> u64 {
        self.connects
    }

    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// Opens the connection now (if none is open), so a timed phase does not pay for handshakes.
    pub async fn warm_up(&mut self) -> Result<(), HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.ensure_connected()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HttpError::Timeout { server: self.server.url.clone(), timeout }),
        }
    }

    /// Sends one request and reads the whole answer, within the endpoint's timeout.
    pub async fn send(&mut self, request: Request<'_>) -> Result<Reply, HttpError> {
        self.send_within(request, self.timeout).await
    }

    /// Like [`Endpoint::send`], with its own timeout (for slow calls such as deleting a collection).
    pub async fn send_within(&mut self, request: Request<'_>, timeout: Duration) -> Result<Reply, HttpError> {
        let outcome = tokio::time::timeout(timeout, self.exchange(request)).await;
        let outcome = outcome.unwrap_or_else(|_| Err(HttpError::Timeout { server: self.server.url.clone(), timeout }));
        if outcome.is_err() {
            self.connection = None;
        }
        outcome
    }

    /// Sends a request and returns its status and body as it arrives (a watch), once the
    /// head is in (within the endpoint's timeout; the body has none).
    pub async fn stream(&mut self, request: Request<'_>) -> Result<(StatusCode, hyper::body::Incoming), HttpError> {
        let timeout = self.timeout;
        let head = tokio::time::timeout(timeout, self.send_head(request)).await;
        let outcome = head.unwrap_or_else(|_| Err(HttpError::Timeout { server: self.server.url.clone(), timeout }));
        if outcome.is_err() {
            self.connection = None;
        }
        let response = outcome?;
        Ok((response.status(), response.into_body()))
    }

    async fn exchange(&mut self, request: Request<'_>) -> Result<Reply, HttpError> {
        let response = self.send_head(request).await?;
        let server = &self.server;
        let status = response.status();
        let body = match Limited::new(response.into_body(), MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(HttpError::BodyTooLarge { server: server.url.clone() });
            }
            Err(e) => return Err(HttpError::Transport { server: server.url.clone(), reason: e.to_string() }),
        };
        Ok(Reply { status, body })
    }

    async fn send_head(&mut self, request: Request<'_>) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
        self.ensure_connected().await?;
        let server = &self.server;
        let transport = |e: hyper::Error| HttpError::Transport { server: server.url.clone(), reason: e.to_string() };
        let Some(connection) = self.connection.as_mut() else {
            return Err(HttpError::Transport { server: server.url.clone(), reason: "not connected".into() });
        };
        let response = match &mut connection.sender {
            Sender::Http2(sender) => {
                // HTTP/2 carries scheme and authority as pseudo-headers: the URI must be absolute.
                let uri = format!("https://{}{}", server.authority, request.path);
                let built = build(&request, &uri, None).map_err(|reason| request_error(server, reason))?;
                sender.ready().await.map_err(transport)?;
                sender.send_request(built).await.map_err(transport)?
            }
            Sender::Http1(sender) => {
                let built = build(&request, request.path, Some(&server.authority))
                    .map_err(|reason| request_error(server, reason))?;
                sender.ready().await.map_err(transport)?;
                sender.send_request(built).await.map_err(transport)?
            }
        };
        Ok(response)
    }

    async fn ensure_connected(&mut self) -> Result<(), HttpError> {
        if self.connection.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.connection = None;
        let (connection, protocol) = connect(&self.server, &self.tls).await?;
        self.connection = Some(connection);
        self.protocol = Some(protocol);
        self.connects += 1;
        Ok(())
    }
}

fn request_error(server: &Server, reason: String) -> HttpError {
    HttpError::Transport { server: server.url.clone(), reason }
}

fn build(request: &Request<'_>, uri: &str, host: Option<&str>) -> Result<http::Request<Full<Bytes>>, String> {
    let mut builder = http::Request::builder().method(request.method.clone()).uri(uri);
    builder = builder.header(header::ACCEPT, request.accept);
    if let Some(host) = host {
        builder = builder.header(header::HOST, host);
    }
    if let Some(content_type) = request.content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(Full::new(request.body.clone())).map_err(|e| format!("building the request: {e}"))
}

/// TCP, TLS with ALPN, then the HTTP handshake the negotiated protocol calls for.
async fn connect(server: &Server, tls: &TlsConnector) -> Result<(Connection, Protocol), HttpError> {
    let failed = |reason: String| HttpError::Connect { server: server.url.clone(), reason };
    let tcp = TcpStream::connect((server.host.as_str(), server.port)).await.map_err(|e| failed(e.to_string()))?;
    // Requests are small and latency is what is measured: do not let Nagle hold them back.
    tcp.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
    let stream = tls.connect(server.server_name.clone(), tcp).await.map_err(|e| failed(format!("TLS: {e}")))?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let url = server.url.clone();
    if h2 {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| failed(format!("HTTP/2 handshake: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(server = %url, %error, "HTTP/2 connection ended");
            }
        });
        Ok((Connection { sender: Sender::Http2(sender), driver }, Protocol::Http2))
    } else {
        let (sender, connection) =
            http1::handshake(io).await.map_err(|e| failed(format!("HTTP/1.1 handshake: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(server = %url, %error, "HTTP/1.1 connection ended");
            }
        });
        Ok((Connection { sender: Sender::Http1(sender), driver }, Protocol::Http1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_urls() {
        let s = Server::parse("https://127.0.0.1:6443/").expect("valid");
        assert_eq!(
            (s.url.as_str(), s.host.as_str(), s.port, s.authority.as_str()),
            ("https://127.0.0.1:6443", "127.0.0.1", 6443, "127.0.0.1:6443")
        );
        assert!(matches!(s.server_name, ServerName::IpAddress(_)));
        let v6 = Server::parse("https://[::1]:7000").expect("valid");
        assert_eq!((v6.host.as_str(), v6.authority.as_str()), ("::1", "[::1]:7000"));
        let named = Server::parse("https://localhost").expect("valid");
        assert_eq!(named.port, 443);
        assert!(matches!(named.server_name, ServerName::DnsName(_)));
        for bad in ["http://127.0.0.1:6443", "127.0.0.1:6443", "https://127.0.0.1:6443/api", "", "https://"] {
            assert!(Server::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn server_lists_need_one_and_no_duplicates() {
        let list = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_servers(&list(&["https://a:1", " https://b:2 "])).expect("valid").len(), 2);
        assert!(parse_servers(&list(&["https://a:1", "https://a:1/"])).is_err());
        assert!(parse_servers(&list(&[" ", ""])).is_err());
    }

    #[test]
    fn http1_requests_carry_host_and_http2_an_absolute_uri() {
        let body = Bytes::from_static(b"{}");
        let r = Request::json(Method::POST, "/api/v1/namespaces", "application/json", body);
        let h1 = build(&r, r.path, Some("127.0.0.1:6443")).expect("builds");
        assert_eq!(h1.uri().to_string(), "/api/v1/namespaces");
        assert_eq!(h1.headers()[header::HOST], "127.0.0.1:6443");
        assert_eq!(h1.headers()[header::CONTENT_TYPE], "application/json");
        let h2 = build(&r, "https://127.0.0.1:6443/api/v1/namespaces", None).expect("builds");
        assert_eq!(h2.uri().authority().map(|a| a.as_str()), Some("127.0.0.1:6443"));
        assert!(h2.headers().get(header::HOST).is_none());
        let get = Request::get("/x?limit=1", "application/json");
        assert!(build(&get, get.path, Some("h")).expect("builds").headers().get(header::CONTENT_TYPE).is_none());
    }
}
