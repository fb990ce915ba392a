//! A lean Kubernetes API client: HTTP/2 over TLS to one master at a time.
//!
//! Why not kube-rs: its client speaks HTTP/1.1 only, so 5,000 nodes renewing Leases 500 times a
//! second would need a pool of connections and pay per-request framing and a `tower` stack on
//! each; the agent needs about ten request shapes. Here every node's requests share ONE TLS
//! connection (HTTP/2 streams), and the bodies are plain JSON the callers build and read.
//!
//! Failover: the client holds a connection to `servers[index]`. A transport error, a timeout or
//! a 5xx answer drops it (only if it is still the connection that failed: a burst of failures on
//! one connection moves on once, not once per request) and the next request connects to the
//! next server in the list, trying each once before giving up with [`ApiError::Unreachable`].
//! Callers retry with back-off (`crate::backoff`). HTTP/2 keep-alive pings find a master that
//! stopped answering without closing the socket (SIGSTOP, a partition).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::sync::{Mutex, Semaphore};

use super::ApiError;
use super::credentials::Credentials;

/// How long a request (connect excluded) may take before it counts as a failure of its master.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight at once, over all nodes: the API server allows 200 HTTP/2 streams per
/// connection (hyper's default), and a burst (5,000 registrations) must not queue inside h2.
pub const MAX_IN_FLIGHT: usize = 128;
/// The largest response body read into memory: a 500-item page of Nodes is a few MiB.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// HTTP/2 PING interval and how long an answer may take before the connection is dead.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One API server from `--server`.
#[derive(Clone, Debug)]
struct Server {
    /// `https://host:port`, the prefix of every request URI.
    base: String,
    host: String,
    port: u16,
}

/// A complete answer.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    /// The body as `T` when the status is 2xx, else the server's Status message as an error.
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        if !self.status.is_success() {
            return Err(self.into_error());
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// A non-2xx answer as an error carrying the Status `message`.
    pub fn into_error(self) -> ApiError {
        let message = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).into_owned());
        ApiError::Status { status: self.status.as_u16(), message }
    }
}

/// The live connection and which server it goes to.
struct Connection {
    /// Index into `servers` of the server to use (the connected one, or the next to try).
    index: usize,
    /// Bumped on every new connection, so a failure report names the connection it saw.
    generation: u64,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// Cheap to clone; every clone shares the one connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<Server>,
    tls: tokio_rustls::TlsConnector,
    /// Held while connecting, so concurrent requests wait for one handshake instead of racing.
    connection: Mutex<Connection>,
    in_flight: Semaphore,
}

fn parse_server(url: &str) -> Result<Server, ApiError> {
    let bad = |why: &str| ApiError::ServerUrl(url.to_string(), why.to_string());
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("only https:// is supported"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(443);
    Ok(Server { base: format!("https://{}", uri.authority().map(|a| a.as_str()).unwrap_or(&host)), host, port })
}

impl Client {
    pub fn new(servers: &[String], credentials: &Credentials) -> Result<Client, ApiError> {
        let servers: Vec<Server> = servers.iter().map(|s| parse_server(s)).collect::<Result<_, _>>()?;
        if servers.is_empty() {
            return Err(ApiError::ServerUrl(String::new(), "no --server given".into()));
        }
        let tls = tokio_rustls::TlsConnector::from(credentials.client_config()?);
        Ok(Client {
            inner: Arc::new(Inner {
                servers,
                tls,
                connection: Mutex::new(Connection { index: 0, generation: 0, sender: None }),
                in_flight: Semaphore::new(MAX_IN_FLIGHT),
            }),
        })
    }

    /// The server requests go to now (for logs).
    pub async fn current_server(&self) -> String {
        let connection = self.inner.connection.lock().await;
        self.inner.servers[connection.index].base.clone()
    }

    /// A sender on a live connection, connecting (to the current server, then the others) if
    /// there is none.
    async fn sender(&self) -> Result<(u64, String, SendRequest<Full<Bytes>>), ApiError> {
        let mut connection = self.inner.connection.lock().await;
        if let Some(sender) = connection.sender.as_ref().filter(|s| !s.is_closed()) {
            let base = self.inner.servers[connection.index].base.clone();
            return Ok((connection.generation, base, sender.clone()));
        }
        let count = self.inner.servers.len();
        let mut failures = Vec::new();
        for attempt in 0..count {
            let index = (connection.index + attempt) % count;
            let server = &self.inner.servers[index];
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(server)).await {
                Ok(Ok(sender)) => {
                    if attempt > 0 || connection.generation > 0 {
                        tracing::info!(server = %server.base, "connected to the API server");
                    }
                    connection.index = index;
                    connection.generation += 1;
                    connection.sender = Some(sender.clone());
                    return Ok((connection.generation, server.base.clone(), sender));
                }
                Ok(Err(error)) => failures.push(format!("{}: {error}", server.base)),
                Err(_) => failures.push(format!("{}: no connection within {CONNECT_TIMEOUT:?}", server.base)),
            }
        }
        connection.sender = None;
        Err(ApiError::Unreachable(failures.join("; ")))
    }

    async fn connect(&self, server: &Server) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(server.host.clone()).map_err(|e| ApiError::Transport(e.to_string()))?;
        let tls = self.inner.tls.connect(name, tcp).await.map_err(|e| ApiError::Transport(format!("TLS: {e}")))?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ApiError::Transport(format!("HTTP/2 handshake: {e}")))?;
        let base = server.base.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(server = %base, %error, "API server connection closed");
            }
        });
        Ok(sender)
    }

    /// Forgets the connection `generation` if it is still current, and moves to the next server.
    async fn failed(&self, generation: u64) {
        let mut connection = self.inner.connection.lock().await;
        if connection.generation == generation && connection.sender.is_some() {
            connection.sender = None;
            connection.index = (connection.index + 1) % self.inner.servers.len();
        }
    }

    fn build(
        base: &str,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, ApiError> {
        let mut request =
            Request::builder().method(method).uri(format!("{base}{path}")).header("accept", "application/json");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(Full::new(body)).map_err(|e| ApiError::Transport(format!("building the request: {e}")))
    }

    /// One request, answered completely (any status) or failed.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let _permit = self.inner.in_flight.acquire().await.map_err(|_| ApiError::Transport("client closed".into()))?;
        let (generation, base, mut sender) = self.sender().await?;
        let request = Self::build(&base, method, path, content_type, body)?;
        let exchange = async {
            sender.ready().await.map_err(|e| ApiError::Transport(e.to_string()))?;
            let response = sender.send_request(request).await.map_err(|e| ApiError::Transport(e.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                    Ok(_) => ApiError::TooLarge(MAX_BODY_BYTES),
                    Err(e) => ApiError::Transport(e.to_string()),
                })?
                .to_bytes();
            Ok::<_, ApiError>(Response { status, body })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(response)) => {
                if response.status.is_server_error() {
                    self.failed(generation).await;
                }
                Ok(response)
            }
            Ok(Err(error)) => {
                if !matches!(error, ApiError::TooLarge(_)) {
                    self.failed(generation).await;
                }
                Err(error)
            }
            Err(_) => {
                self.failed(generation).await;
                Err(ApiError::Timeout(REQUEST_TIMEOUT))
            }
        }
    }

    pub async fn get(&self, path: &str) -> Result<Response, ApiError> {
        self.request(Method::GET, path, None, Bytes::new()).await
    }

    /// A streaming GET (a watch): the answer's head, then its body as it arrives. Watches do
    /// not count against [`MAX_IN_FLIGHT`]: they last minutes and there are two.
    pub async fn stream(&self, path: &str) -> Result<(StatusCode, hyper::body::Incoming, u64), ApiError> {
        let (generation, base, mut sender) = self.sender().await?;
        let request = Self::build(&base, Method::GET, path, None, Bytes::new())?;
        let head = async {
            sender.ready().await.map_err(|e| ApiError::Transport(e.to_string()))?;
            sender.send_request(request).await.map_err(|e| ApiError::Transport(e.to_string()))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, head).await {
            Ok(Ok(response)) => Ok((response.status(), response.into_body(), generation)),
            Ok(Err(error)) => {
                self.failed(generation).await;
                Err(error)
            }
            Err(_) => {
                self.failed(generation).await;
                Err(ApiError::Timeout(REQUEST_TIMEOUT))
            }
        }
    }

    /// Reports that a stream opened on connection `generation` broke.
    pub async fn stream_failed(&self, generation: u64) {
        self.failed(generation).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_https_with_a_host() {
        let server = parse_server("https://127.0.0.1:6443").expect("valid");
        assert_eq!(
            (server.base.as_str(), server.host.as_str(), server.port),
            ("https://127.0.0.1:6443", "127.0.0.1", 6443)
        );
        assert_eq!(parse_server("https://[::1]:7443").expect("valid").host, "::1");
        assert_eq!(parse_server("https://master").expect("valid").port, 443);
        assert!(parse_server("http://127.0.0.1:6443").is_err());
        assert!(parse_server("not a url").is_err());
    }
}
