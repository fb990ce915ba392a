//! Any etcd v3 endpoint (`keel store` or etcd 3.4), through the etcd-client crate.
//!
//! One etcd-client connection (balanced over the endpoints) serves every call; each call clones
//! the client it needs, which is cheap (the HTTP/2 channel is shared). etcd reports errors as
//! gRPC statuses whose texts clients match on; [`error`] turns them into [`KvError`]s.
//!
//! A watch is one gRPC watch stream. [`RemoteKv::watch`] returns only after etcd confirmed the
//! watch (`created`), so every change committed after it returns is delivered. A task forwards
//! the stream into a bounded channel; when the consumer drops the [`WatchStream`] the task
//! drops the gRPC stream, which resets it, and etcd cancels the watcher.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, CompareOp as EtcdCompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity, KvClient,
    LeaseClient, PutOptions, TlsOptions, WatchClient, WatchOptions, WatchResponseStream,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::wire::{self, WatchMessage};
use super::{
    Compare, CompareOp, CompareTarget, KeyValue, Kv, KvError, Range, RangeResult, Txn, TxnOp, TxnResult, WATCH_BUFFER,
    WatchBatch, WatchStream,
};

/// How long establishing a connection to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on a connection with streams open, so a dead endpoint is noticed (etcd allows
/// a ping every 5 s).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long etcd may take to confirm a new watch.
const WATCH_CREATE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response accepted (a list of many large objects; etcd itself sends up to 2 GiB).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// TLS to the endpoints: the CA that signed their certificates and this client's certificate.
#[derive(Clone, Debug)]
pub struct RemoteTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl RemoteTls {
    fn options(&self) -> Result<TlsOptions, KvError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| KvError::Other(format!("cannot read {}: {e}", path.display())))
        };
        Ok(TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?)))
    }
}

/// [`Kv`] over etcd v3 gRPC.
#[derive(Clone)]
pub struct RemoteKv {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
}

impl RemoteKv {
    /// Connects to `endpoints` (`host:port`, `http://host:port` or, with `tls`,
    /// `https://host:port`). Sends no request: an endpoint that is down shows up on first use.
    pub async fn connect(endpoints: &[String], tls: Option<RemoteTls>) -> Result<RemoteKv, KvError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            // Without a leader etcd fails requests (and cancels watches) instead of holding them.
            .with_require_leader(true);
        if let Some(tls) = tls {
            options = options.with_tls(tls.options()?);
        }
        let client = Client::connect(endpoints, Some(options)).await.map_err(error)?;
        Ok(RemoteKv {
            kv: client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: client.lease_client(),
        })
    }

    async fn range_now(&self, range: Range) -> Result<RangeResult, KvError> {
        let key = range.key.clone();
        let response = self.kv.clone().get(key, Some(get_options(&range))).await.map_err(error)?;
        Ok(wire::range_result(response.0))
    }

    async fn put_now(&self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> Result<(i64, Option<KeyValue>), KvError> {
        let options = PutOptions::new().with_lease(lease).with_prev_key();
        let response = self.kv.clone().put(key, value, Some(options)).await.map_err(error)?.0;
        Ok((wire::revision(&response.header), response.prev_kv.map(wire::key_value)))
    }

    async fn delete_now(&self, key: Vec<u8>, range_end: Option<Vec<u8>>) -> Result<(i64, Vec<KeyValue>), KvError> {
        let response = self.kv.clone().delete(key, Some(delete_options(range_end))).await.map_err(error)?.0;
        Ok((wire::revision(&response.header), response.prev_kvs.into_iter().map(wire::key_value).collect()))
    }

    async fn txn_now(&self, txn: Txn) -> Result<TxnResult, KvError> {
        let request = etcd_client::Txn::new()
            .when(txn.compare.iter().map(compare).collect::<Vec<_>>())
            .and_then(txn.success.iter().map(txn_op).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(txn_op).collect::<Vec<_>>());
        let response = self.kv.clone().txn(request).await.map_err(error)?;
        wire::txn_result(response.0)
    }

    async fn watch_now(
        &self,
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
        start_revision: i64,
    ) -> Result<WatchStream, KvError> {
        let mut options =
            WatchOptions::new().with_start_revision(start_revision).with_prev_key().with_progress_notify();
        if let Some(end) = range_end {
            options = options.with_range(end);
        }
        let stream = self.watch.clone().watch(key, Some(options)).await.map_err(error)?;
        // The request half stays open while the watch runs: etcd keeps serving a stream whose
        // client stopped sending, but a reset (dropping both halves) cancels it.
        let (requests, mut responses) = stream.split();
        tokio::time::timeout(WATCH_CREATE_TIMEOUT, wait_created(&mut responses))
            .await
            .map_err(|_| KvError::Unavailable(format!("watch not created within {WATCH_CREATE_TIMEOUT:?}")))??;
        let (to_consumer, consumer) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            forward(&mut responses, &to_consumer).await;
            drop(requests);
        });
        Ok(consumer)
    }

    async fn lease_grant_now(&self, ttl_seconds: i64) -> Result<i64, KvError> {
        let response = self.lease.clone().grant(ttl_seconds, None).await.map_err(error)?.0;
        if !response.error.is_empty() {
            return Err(message_error(&response.error));
        }
        Ok(response.id)
    }

    /// etcd-client's keeper sends one keep-alive to learn the lease exists, then this sends
    /// another to read the TTL it renewed to (the first answer is not handed out).
    async fn lease_keep_alive_now(&self, id: i64) -> Result<i64, KvError> {
        let (mut keeper, mut responses) = self.lease.clone().keep_alive(id).await.map_err(error)?;
        keeper.keep_alive().await.map_err(error)?;
        let response = responses
            .message()
            .await
            .map_err(error)?
            .ok_or_else(|| KvError::Unavailable("keep-alive stream ended without an answer".into()))?;
        if response.0.ttl <= 0 {
            return Err(KvError::LeaseNotFound);
        }
        Ok(response.0.ttl)
    }

    async fn lease_revoke_now(&self, id: i64) -> Result<(), KvError> {
        self.lease.clone().revoke(id).await.map_err(error)?;
        Ok(())
    }

    async fn compact_now(&self, revision: i64) -> Result<(), KvError> {
        self.kv.clone().compact(revision, None).await.map_err(error)?;
        Ok(())
    }
}

fn get_options(range: &Range) -> GetOptions {
    let mut options = GetOptions::new().with_limit(range.limit).with_revision(range.revision);
    if let Some(end) = &range.range_end {
        options = options.with_range(end.clone());
    }
    if range.count_only {
        options = options.with_count_only();
    }
    if range.serializable {
        options = options.with_serializable();
    }
    options
}

fn delete_options(range_end: Option<Vec<u8>>) -> DeleteOptions {
    let options = DeleteOptions::new().with_prev_key();
    match range_end {
        Some(end) => options.with_range(end),
        None => options,
    }
}

fn compare(compare: &Compare) -> etcd_client::Compare {
    let op = match compare.op {
        CompareOp::Equal => EtcdCompareOp::Equal,
        CompareOp::NotEqual => EtcdCompareOp::NotEqual,
        CompareOp::Greater => EtcdCompareOp::Greater,
        CompareOp::Less => EtcdCompareOp::Less,
    };
    let key = compare.key.clone();
    match &compare.target {
        CompareTarget::Version(v) => etcd_client::Compare::version(key, op, *v),
        CompareTarget::CreateRevision(r) => etcd_client::Compare::create_revision(key, op, *r),
        CompareTarget::ModRevision(r) => etcd_client::Compare::mod_revision(key, op, *r),
        CompareTarget::Value(v) => etcd_client::Compare::value(key, op, v.clone()),
    }
}

fn txn_op(op: &TxnOp) -> etcd_client::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => etcd_client::TxnOp::put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(*lease).with_prev_key()),
        ),
        TxnOp::Delete { key, range_end } => {
            etcd_client::TxnOp::delete(key.clone(), Some(delete_options(range_end.clone())))
        }
        TxnOp::Get(range) => etcd_client::TxnOp::get(range.key.clone(), Some(get_options(range))),
    }
}

/// Reads the stream up to etcd's answer to the create request. (A compacted start revision is
/// answered `created`, then `canceled` with the compact revision: `forward` reports that one.)
async fn wait_created(responses: &mut WatchResponseStream) -> Result<(), KvError> {
    let first = responses
        .message()
        .await
        .map_err(error)?
        .ok_or_else(|| KvError::Unavailable("watch stream ended before the watch was created".into()))?;
    match wire::watch_message(first.0)? {
        WatchMessage::Created => Ok(()),
        WatchMessage::Canceled { compact_revision, reason } => Err(canceled(compact_revision, &reason)),
        WatchMessage::Batch(_) => Err(KvError::Other("watch answered with events before `created`".into())),
    }
}

/// Forwards responses to the consumer until the watch ends or the consumer goes away.
async fn forward(responses: &mut WatchResponseStream, to_consumer: &mpsc::Sender<Result<WatchBatch, KvError>>) {
    loop {
        let next = tokio::select! {
            _ = to_consumer.closed() => return,
            next = responses.message() => next,
        };
        let item = match next {
            Ok(Some(response)) => match wire::watch_message(response.0) {
                Ok(WatchMessage::Batch(batch)) => Ok(batch),
                Ok(WatchMessage::Created) => continue,
                Ok(WatchMessage::Canceled { compact_revision, reason }) => Err(canceled(compact_revision, &reason)),
                Err(e) => Err(e),
            },
            Ok(None) => Err(KvError::Unavailable("watch stream closed by the server".into())),
            Err(e) => Err(error(e)),
        };
        let last = item.is_err();
        if to_consumer.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Why etcd ended a watch.
fn canceled(compact_revision: i64, reason: &str) -> KvError {
    if compact_revision != 0 {
        return KvError::Compacted { compact_revision };
    }
    if reason.is_empty() {
        return KvError::Other("watch canceled by the server".into());
    }
    message_error(reason)
}

/// etcd-client's error as the API server sees it.
fn error(error: etcd_client::Error) -> KvError {
    use etcd_client::Error;
    match error {
        Error::GRpcStatus(status) => status_error(&status),
        Error::TransportError(e) => KvError::Unavailable(e.to_string()),
        Error::IoError(e) => KvError::Unavailable(e.to_string()),
        Error::LeaseKeepAliveError(text) if text.contains("lease not found") => KvError::LeaseNotFound,
        Error::LeaseKeepAliveError(text) | Error::WatchError(text) => KvError::Unavailable(text),
        other => KvError::Other(other.to_string()),
    }
}

fn status_error(status: &tonic::Status) -> KvError {
    let code = status.code();
    // grpc-go's (and Keel's) answer to a frame over the receive limit.
    if code == tonic::Code::ResourceExhausted && status.message().contains("larger than max") {
        return KvError::TooLarge;
    }
    match message_error(status.message()) {
        KvError::Other(text)
            if matches!(code, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled) =>
        {
            KvError::Unavailable(text)
        }
        mapped => mapped,
    }
}

/// etcd's error texts (clients match on them; they are stable across versions).
fn message_error(message: &str) -> KvError {
    const UNAVAILABLE: &[&str] = &[
        "etcdserver: no leader",
        "etcdserver: leader changed",
        "etcdserver: request timed out",
        "etcdserver: server stopped",
        "etcdserver: too many requests",
        "etcdserver: not leader",
    ];
    if message.contains("required revision has been compacted") {
        // etcd's error does not say which revision the store is compacted to.
        KvError::Compacted { compact_revision: 0 }
    } else if message.contains("required revision is a future revision") {
        KvError::FutureRevision
    } else if message.contains("request is too large") {
        KvError::TooLarge
    } else if message.contains("requested lease not found") {
        KvError::LeaseNotFound
    } else if UNAVAILABLE.iter().any(|text| message.contains(text)) {
        KvError::Unavailable(message.to_string())
    } else {
        KvError::Other(message.to_string())
    }
}

impl Kv for RemoteKv {
    fn range(&self, range: Range) -> BoxFuture<'_, Result<RangeResult, KvError>> {
        self.range_now(range).boxed()
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> BoxFuture<'_, Result<(i64, Option<KeyValue>), KvError>> {
        self.put_now(key, value, lease).boxed()
    }

    fn delete(&self, key: Vec<u8>, range_end: Option<Vec<u8>>) -> BoxFuture<'_, Result<(i64, Vec<KeyValue>), KvError>> {
        self.delete_now(key, range_end).boxed()
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult, KvError>> {
        self.txn_now(txn).boxed()
    }

    fn watch(
        &self,
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
        start_revision: i64,
    ) -> BoxFuture<'_, Result<WatchStream, KvError>> {
        self.watch_now(key, range_end, start_revision).boxed()
    }

    fn lease_grant(&self, ttl_seconds: i64) -> BoxFuture<'_, Result<i64, KvError>> {
        self.lease_grant_now(ttl_seconds).boxed()
    }

    fn lease_keep_alive(&self, id: i64) -> BoxFuture<'_, Result<i64, KvError>> {
        self.lease_keep_alive_now(id).boxed()
    }

    fn lease_revoke(&self, id: i64) -> BoxFuture<'_, Result<(), KvError>> {
        self.lease_revoke_now(id).boxed()
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<(), KvError>> {
        self.compact_now(revision).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_error_texts_map_to_kinds() {
        let status = |code, text: &str| error(etcd_client::Error::GRpcStatus(tonic::Status::new(code, text)));
        assert_eq!(
            status(tonic::Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            KvError::Compacted { compact_revision: 0 }
        );
        assert_eq!(
            status(tonic::Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            KvError::FutureRevision
        );
        assert_eq!(status(tonic::Code::InvalidArgument, "etcdserver: request is too large"), KvError::TooLarge);
        assert_eq!(status(tonic::Code::NotFound, "etcdserver: requested lease not found"), KvError::LeaseNotFound);
        assert!(matches!(status(tonic::Code::Unavailable, "etcdserver: no leader"), KvError::Unavailable(_)));
        assert!(matches!(status(tonic::Code::Unavailable, "connection refused"), KvError::Unavailable(_)));
        assert!(matches!(status(tonic::Code::InvalidArgument, "etcdserver: key is not provided"), KvError::Other(_)));
    }
}
