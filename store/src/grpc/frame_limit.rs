//! Requests over the gRPC receive limit, answered as etcd answers them.
//!
//! etcd's gRPC server (grpc-go) rejects a message over its receive limit with
//! `ResourceExhausted` and "grpc: received message larger than max (N vs. M)"; tonic's decoder
//! says `OutOfRange` and different words. This layer rewrites that one status, so clients see
//! etcd's error. Requests under the limit but over `--max-request-bytes` are rejected by the
//! handlers with etcd's "etcdserver: request is too large".

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};

const TONIC_TEXT: &str = "Error, decoded message length too large: found ";

#[derive(Clone, Copy, Debug, Default)]
pub struct FrameLimitLayer;

impl<S> tower::Layer<S> for FrameLimitLayer {
    type Service = FrameLimit<S>;

    fn layer(&self, inner: S) -> FrameLimit<S> {
        FrameLimit { inner }
    }
}

#[derive(Clone, Debug)]
pub struct FrameLimit<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for FrameLimit<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            rewrite(response.headers_mut());
            Ok(response)
        })
    }
}

/// Replaces tonic's oversized-message status in a trailers-only response with grpc-go's.
fn rewrite(headers: &mut http::HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else { return };
    let Some(etcd) = etcd_status(&status) else { return };
    headers.remove("grpc-message");
    if etcd.add_header(headers).is_err() {
        tracing::warn!("could not encode a gRPC status header");
    }
}

fn etcd_status(status: &Status) -> Option<Status> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    let rest = status.message().strip_prefix(TONIC_TEXT)?;
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let found = numbers.next()?;
    let limit = numbers.next()?;
    Some(Status::resource_exhausted(format!("grpc: received message larger than max ({found} vs. {limit})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_oversized_status_becomes_grpc_go_text() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 3145739 bytes, the limit is: 2097152 bytes",
        );
        let etcd = etcd_status(&tonic).expect("rewritten");
        assert_eq!(etcd.code(), Code::ResourceExhausted);
        assert_eq!(etcd.message(), "grpc: received message larger than max (3145739 vs. 2097152)");
        let compacted = Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        assert!(etcd_status(&compacted).is_none(), "etcd's own OutOfRange errors pass through");
    }

    #[test]
    fn headers_are_rewritten_in_place() {
        let mut headers = http::HeaderMap::new();
        Status::out_of_range("Error, decoded message length too large: found 10 bytes, the limit is: 5 bytes")
            .add_header(&mut headers)
            .expect("encode");
        rewrite(&mut headers);
        let status = Status::from_header_map(&headers).expect("status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "grpc: received message larger than max (10 vs. 5)");
    }
}
