//! etcdserverpb.Watch: one bidirectional stream carries many watchers.
//!
//! Each stream has one bounded outgoing buffer shared by its watchers. Control responses
//! (created, canceled, progress) wait for room; events never do (the hub drops a watcher to
//! catch-up instead). Fragmentation happens on the way out, per watcher choice.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbWatchRequest as WatchRequest, PbWatchRequestUnion as RequestUnion, PbWatchResponse as WatchResponse,
};
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::generated::watch::watch_server::Watch;
use crate::store::Store;
use crate::watch::filter::EventFilter;
use crate::watch::hub::{Registration, WatcherKey};
use crate::watch::{Outgoing, WatchParams};

/// Responses buffered per stream before its watchers fall back to catch-up.
const STREAM_BUFFER: usize = 1_024;
/// Watchers one stream may hold.
const MAX_WATCHERS_PER_STREAM: usize = 10_000;
/// etcd's WatchCreateRequest filter values.
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;

pub struct WatchService {
    pub store: Arc<Store>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut session = Session { store, tx, watchers: HashMap::new(), next_id: 0 };
            session.serve(inbound).await;
            session.close();
        });
        // etcd splits at its gRPC send limit: the request limit plus the gRPC allowance.
        let max_bytes = self.store.limits.max_request_bytes + super::GRPC_OVERHEAD_BYTES;
        let outbound = ReceiverStream::new(rx)
            .flat_map(move |outgoing| futures::stream::iter(fragments(outgoing, max_bytes).into_iter().map(Ok)));
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// One watch stream's state.
struct Session {
    store: Arc<Store>,
    tx: mpsc::Sender<Outgoing>,
    /// watch_id → hub key.
    watchers: HashMap<i64, WatcherKey>,
    /// Next automatically assigned watch_id.
    next_id: i64,
}

impl Session {
    async fn serve(&mut self, mut inbound: Streaming<WatchRequest>) {
        while let Ok(Some(request)) = inbound.message().await {
            let sent = match request.request_union {
                Some(RequestUnion::CreateRequest(create)) => {
                    let filter = EventFilter {
                        key: create.key,
                        range_end: create.range_end,
                        no_put: create.filters.contains(&FILTER_NOPUT),
                        no_delete: create.filters.contains(&FILTER_NODELETE),
                        prev_kv: create.prev_kv,
                    };
                    let params = WatchParams {
                        filter,
                        start_revision: create.start_revision,
                        progress_notify: create.progress_notify,
                        fragment: create.fragment,
                        watch_id: create.watch_id,
                    };
                    self.create(params).await
                }
                Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
                Some(RequestUnion::ProgressRequest(_)) => {
                    let revision = self.store.hub.progress_revision(self.watchers.values().copied());
                    let response =
                        WatchResponse { header: Some(self.store.header(revision)), watch_id: -1, ..Default::default() };
                    self.send(response).await
                }
                None => true,
            };
            if !sent {
                break;
            }
        }
    }

    async fn send(&self, response: WatchResponse) -> bool {
        self.tx.send(Outgoing { response, fragment: false }).await.is_ok()
    }

    /// Answers created (or created + canceled) for one create request.
    async fn create(&mut self, mut params: WatchParams) -> bool {
        let current = self.store.current_revision();
        let refuse = |reason: &str, watch_id: i64| WatchResponse {
            header: Some(self.store.header(current)),
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let filter = &params.filter;
        if filter.range_end.len() > 0 && filter.range_end != b"\0" && filter.key >= filter.range_end {
            return self.send(refuse("mvcc: watcher range is empty", -1)).await;
        }
        if self.watchers.len() >= MAX_WATCHERS_PER_STREAM {
            let reason = format!("keel: too many watchers on one stream (limit {MAX_WATCHERS_PER_STREAM})");
            return self.send(refuse(&reason, -1)).await;
        }
        if params.watch_id == 0 {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            params.watch_id = self.next_id;
            self.next_id += 1;
        } else if self.watchers.contains_key(&params.watch_id) {
            return self.send(refuse("mvcc: duplicate watch ID provided on the WatchStream", -1)).await;
        }
        let watch_id = params.watch_id;
        match self.store.hub.register(params, self.tx.clone()) {
            Registration::Registered { key, revision } => {
                self.watchers.insert(watch_id, key);
                let created = WatchResponse {
                    header: Some(self.store.header(revision)),
                    watch_id,
                    created: true,
                    ..Default::default()
                };
                let sent = self.send(created).await;
                self.store.hub.announced(key);
                sent
            }
            Registration::Compacted { compact_revision, revision } => {
                let created = WatchResponse {
                    header: Some(self.store.header(revision)),
                    watch_id,
                    created: true,
                    ..Default::default()
                };
                let canceled = WatchResponse {
                    header: Some(self.store.header(0)),
                    watch_id,
                    canceled: true,
                    compact_revision,
                    ..Default::default()
                };
                self.send(created).await && self.send(canceled).await
            }
        }
    }

    async fn cancel(&mut self, watch_id: i64) -> bool {
        let Some(key) = self.watchers.remove(&watch_id) else { return true };
        self.store.hub.cancel(key);
        let response = WatchResponse {
            header: Some(self.store.header(self.store.current_revision())),
            watch_id,
            canceled: true,
            ..Default::default()
        };
        self.send(response).await
    }

    fn close(&mut self) {
        for (_, key) in self.watchers.drain() {
            self.store.hub.cancel(key);
        }
    }
}

/// Splits a response whose encoding reaches `max_bytes` into fragments (etcd's rule: only when
/// the watcher asked for it and there are at least two events; every fragment but the last
/// has `fragment = true`; each holds at least one event).
fn fragments(outgoing: Outgoing, max_bytes: usize) -> Vec<WatchResponse> {
    let Outgoing { mut response, fragment } = outgoing;
    if !fragment || response.events.len() < 2 || response.encoded_len() < max_bytes {
        return vec![response];
    }
    let events = std::mem::take(&mut response.events);
    let template = WatchResponse { fragment: true, ..response };
    let base = template.encoded_len();
    let mut out = Vec::new();
    let mut current = template.clone();
    let mut size = base;
    for event in events {
        // Field 11, length-delimited: one tag byte plus the length varint.
        let event_size = event.encoded_len() + 1 + prost::length_delimiter_len(event.encoded_len());
        if !current.events.is_empty() && size + event_size >= max_bytes {
            out.push(std::mem::replace(&mut current, template.clone()));
            size = base;
        }
        size += event_size;
        current.events.push(event);
    }
    current.fragment = false;
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{Event, KeyValue};

    fn response_with(events: usize, value_bytes: usize) -> WatchResponse {
        let events = (0..events)
            .map(|i| Event {
                kv: Some(KeyValue {
                    key: format!("k{i}").into_bytes(),
                    value: vec![b'x'; value_bytes],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        WatchResponse { watch_id: 3, events, ..Default::default() }
    }

    #[test]
    fn fragments_only_when_asked_and_large() {
        let small = fragments(Outgoing { response: response_with(3, 10), fragment: true }, 1_000);
        assert_eq!(small.len(), 1);
        assert!(!small[0].fragment);
        let unasked = fragments(Outgoing { response: response_with(10, 200), fragment: false }, 1_000);
        assert_eq!(unasked.len(), 1);
    }

    #[test]
    fn fragments_cover_every_event_once_and_flag_all_but_last() {
        let parts = fragments(Outgoing { response: response_with(10, 200), fragment: true }, 1_000);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 10);
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.fragment, i + 1 < parts.len());
            assert_eq!(part.watch_id, 3);
            assert!(part.encoded_len() < 1_000 || part.events.len() == 1);
        }
    }
}
