//! A lean etcd KV client for the closed-loop throughput tests.
//!
//! The put and get tests measure servers on the machine that also runs this load generator
//! (two cores, in the reference setup). etcd-client sends every call through tonic's channel,
//! a tower buffer and a balancer, each a task hop; on such a machine the generator then takes a
//! fifth of the CPU and caps what a fast server can show. This client speaks the same gRPC
//! (HTTP/2, `application/grpc`, length-prefixed protobuf, `grpc-status` trailers) straight over
//! one `h2` connection per client, so a worker's call goes from its own task to the socket.
//! Servers see exactly the same requests either way. Like grpc-go's transport, which batches the
//! frames queued while it writes, a connection sends the requests that are ready together in one
//! socket write (`keel_net::coalesce`); with one write per request the generator took 13–14 µs
//! of CPU per get instead of 9–10 on the two-core reference machine, and the servers took a
//! receive per request.
//!
//! Plain-text endpoints only (the benchmarks run on loopback); other tests use etcd-client.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use etcd_client::proto::{PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse};
use h2::client::SendRequest;
use http::{HeaderMap, Method, Request, Uri};
use keel_net::coalesce::CoalescedWrites;
use prost::Message;

use super::BenchError;

/// Largest response body accepted (a get of one small key is far below it).
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// The gRPC message prefix: compressed flag (1 byte) and length (4 bytes, big-endian).
const PREFIX_BYTES: usize = 5;

/// One HTTP/2 connection to one endpoint; clones share it (calls are multiplexed).
#[derive(Clone)]
pub struct KvConn {
    send: SendRequest<Bytes>,
    put: Uri,
    range: Uri,
}

impl KvConn {
    /// Connects to `endpoint` (`http://host:port`) and checks it answers a linearizable read
    /// (which also proves the member sees a leader) within `timeout`.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<KvConn, BenchError> {
        let unreachable = |reason: String| BenchError::Unreachable { endpoint: endpoint.to_string(), reason };
        let authority = endpoint.strip_prefix("http://").ok_or_else(|| {
            unreachable("the throughput tests' client speaks plain HTTP/2 only (use an http:// endpoint)".into())
        })?;
        let uri = |path: &str| {
            format!("http://{authority}{path}").parse::<Uri>().map_err(|e| unreachable(format!("bad endpoint: {e}")))
        };
        let (put, range) = (uri("/etcdserverpb.KV/Put")?, uri("/etcdserverpb.KV/Range")?);
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            h2::client::Builder::new()
                .initial_window_size(1 << 20)
                .initial_connection_window_size(8 << 20)
                .handshake::<_, Bytes>(CoalescedWrites::new(tcp))
                .await
                .map_err(|e| e.to_string())
        };
        let (send, connection) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| unreachable(format!("no connection within {timeout:?}")))?
            .map_err(unreachable)?;
        // The connection task ends when every clone of `send` is dropped or the peer closes.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "bench connection closed");
            }
        });
        let conn = KvConn { send, put, range };
        let probe = PbRangeRequest { key: b"/bench/probe".to_vec(), ..Default::default() };
        tokio::time::timeout(timeout, conn.range(&probe))
            .await
            .map_err(|_| unreachable(format!("no answer to a read within {timeout:?} (is it up?)")))?
            .map_err(unreachable)?;
        Ok(conn)
    }

    pub async fn put(&self, request: &PbPutRequest) -> Result<PbPutResponse, String> {
        self.unary(&self.put, request).await
    }

    pub async fn range(&self, request: &PbRangeRequest) -> Result<PbRangeResponse, String> {
        self.unary(&self.range, request).await
    }

    async fn unary<Q: Message, R: Message + Default>(&self, uri: &Uri, request: &Q) -> Result<R, String> {
        let len = request.encoded_len();
        let mut body = BytesMut::with_capacity(PREFIX_BYTES + len);
        body.put_u8(0);
        body.put_u32(u32::try_from(len).map_err(|_| format!("request of {len} bytes is too large"))?);
        request.encode(&mut body).map_err(|e| e.to_string())?;
        let head = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| e.to_string())?;

        let mut send = self.send.clone().ready().await.map_err(|e| format!("connection: {e}"))?;
        let (response, mut stream) = send.send_request(head, false).map_err(|e| format!("send: {e}"))?;
        stream.send_data(body.freeze(), true).map_err(|e| format!("send: {e}"))?;
        let (parts, mut recv) = response.await.map_err(|e| format!("response: {e}"))?.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", parts.status));
        }
        // A trailers-only response carries the status in the headers.
        if parts.headers.contains_key("grpc-status") {
            check_status(&parts.headers)?;
            return Err("no message in the response".into());
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| format!("body: {e}"))?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
            }
            data.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.map_err(|e| format!("trailers: {e}"))?;
        check_status(&trailers.unwrap_or_default())?;
        R::decode(message(&data)?).map_err(|e| format!("cannot decode the response: {e}"))
    }
}

/// Ok for `grpc-status: 0`; otherwise the status and its message.
fn check_status(headers: &HeaderMap) -> Result<(), String> {
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("(missing)");
    if status == "0" {
        return Ok(());
    }
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
    Err(format!("grpc-status {status}: {message}"))
}

/// The one uncompressed message of a unary response body.
fn message(body: &[u8]) -> Result<&[u8], String> {
    let Some((prefix, rest)) = body.split_first_chunk::<PREFIX_BYTES>() else {
        return Err(format!("response body of {} bytes has no message prefix", body.len()));
    };
    if prefix[0] != 0 {
        return Err("compressed responses are not supported".into());
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if rest.len() != len {
        return Err(format!("message prefix says {len} bytes, body has {}", rest.len()));
    }
    Ok(rest)
}

/// Opens `n` connections, connection `i` to endpoint `i % endpoints.len()`.
pub async fn connect_round_robin(endpoints: &[String], n: usize, timeout: Duration) -> Result<Vec<KvConn>, BenchError> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(KvConn::connect(&endpoints[i % endpoints.len()], timeout).await?);
    }
    Ok(conns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_taken_from_its_prefix() {
        assert_eq!(message(&[0, 0, 0, 0, 2, 7, 8]), Ok(&[7u8, 8][..]));
        assert_eq!(message(&[0, 0, 0, 0, 0]), Ok(&[][..]));
        assert!(message(&[0, 0, 0]).is_err(), "short prefix");
        assert!(message(&[0, 0, 0, 0, 3, 1]).is_err(), "truncated message");
        assert!(message(&[1, 0, 0, 0, 0]).is_err(), "compressed");
    }

    #[test]
    fn statuses_other_than_ok_are_errors() {
        let mut headers = HeaderMap::new();
        assert!(check_status(&headers).is_err(), "a missing status is an error");
        headers.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(check_status(&headers), Ok(()));
        headers.insert("grpc-status", "14".parse().unwrap());
        headers.insert("grpc-message", "etcdserver: no leader".parse().unwrap());
        assert_eq!(check_status(&headers), Err("grpc-status 14: etcdserver: no leader".into()));
    }
}
