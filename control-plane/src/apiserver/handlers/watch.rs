//! Watch: newline-delimited `{"type": ..., "object": ...}` events over a chunked response.
//!
//! From a resourceVersion N the watch delivers every change after N (store revision order);
//! without one (or "0") it first sends the current objects as ADDED. A compacted N ends the
//! stream with an ERROR event carrying a 410 Status, as kube-apiserver does. Selectors apply
//! to both sides of a change: an object that stops matching is reported DELETED, one that
//! starts matching ADDED.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Call;
use super::read::Selectors;
use crate::apiserver::request::Shape;
use crate::apiserver::resources::Resource;
use crate::apiserver::status::ApiError;
use crate::apiserver::{Api, object, table};
use crate::kv::{Event, EventKind, KvError, WatchStream, prefix_end};

/// Encoded events buffered toward one client; a client that does not read stalls only itself.
const CLIENT_BUFFER: usize = 64;
/// The longest a watch runs before the client must re-establish it.
const MAX_WATCH: Duration = Duration::from_secs(1800);

pub async fn watch(api: Arc<Api>, call: Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let selectors = Selectors::parse(resource, &call.query.label_selector, &call.query.field_selector)?;
    let namespace = call.target.namespace.clone();
    let prefix = resource.prefix(namespace.as_deref());
    let (initial, start_revision) = match call.query.resource_version.as_deref() {
        None | Some("0") => {
            let page = api.storage.list(resource, namespace.as_deref(), 0, None, 0).await?;
            (page.items, page.revision + 1)
        }
        Some(text) => {
            let revision: i64 =
                text.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {text:?}")))?;
            (Vec::new(), revision + 1)
        }
    };
    let end = prefix_end(prefix.as_bytes());
    let stream = api.storage.kv.watch(prefix.into_bytes(), Some(end), start_revision).await;
    let timeout = call.query.timeout_seconds.map(Duration::from_secs).unwrap_or(MAX_WATCH).min(MAX_WATCH);
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    let writer = EventWriter {
        resource,
        selectors,
        shape: call.shape,
        bookmarks: call.query.allow_watch_bookmarks,
        columns_sent: false,
        tx,
    };
    tokio::spawn(writer.run(initial, stream, timeout));
    let content_type = if call.shape == Shape::Table { table::CONTENT_TYPE } else { "application/json" };
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    Ok(response)
}

struct EventWriter {
    resource: &'static Resource,
    selectors: Selectors,
    shape: Shape,
    bookmarks: bool,
    /// Table watches send the column definitions with the first event only.
    columns_sent: bool,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

impl EventWriter {
    async fn run(mut self, initial: Vec<Value>, stream: Result<WatchStream, KvError>, timeout: Duration) {
        for object in initial {
            if !self.selectors.matches(self.resource, &object) {
                continue;
            }
            if !self.send("ADDED", object).await {
                return;
            }
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => return self.send_error(error).await,
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let batch = tokio::select! {
                _ = &mut deadline => return,
                _ = self.tx.closed() => return,
                batch = stream.recv() => batch,
            };
            match batch {
                None => return,
                Some(Err(error)) => return self.send_error(error).await,
                Some(Ok(batch)) if batch.events.is_empty() => {
                    if self.bookmarks && !self.send_bookmark(batch.revision).await {
                        return;
                    }
                }
                Some(Ok(batch)) => {
                    for event in batch.events {
                        if !self.send_event(event).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Sends one store change as the watch event it means for this client.
    async fn send_event(&mut self, event: Event) -> bool {
        let revision = event.kv.mod_revision;
        let old = event.prev.as_ref().and_then(|prev| object::decode_from_store(&prev.value, revision));
        let new = match event.kind {
            EventKind::Put => object::decode_from_store(&event.kv.value, revision),
            EventKind::Delete => None,
        };
        let matches =
            |object: &Option<Value>| object.as_ref().is_some_and(|o| self.selectors.matches(self.resource, o));
        let (old_matches, new_matches) = (matches(&old), matches(&new));
        match (old, new) {
            (_, Some(new)) if new_matches && old_matches => self.send("MODIFIED", new).await,
            (_, Some(new)) if new_matches => self.send("ADDED", new).await,
            (Some(old), _) if old_matches => self.send("DELETED", old).await,
            _ => true,
        }
    }

    async fn send(&mut self, kind: &str, object: Value) -> bool {
        let object = match self.shape {
            Shape::Object => object,
            Shape::Table => {
                let metadata = json!({ "resourceVersion": object::meta_str(&object, "resourceVersion") });
                let with_columns = !std::mem::replace(&mut self.columns_sent, true);
                table::table(self.resource, &[object], metadata, with_columns)
            }
        };
        self.write(json!({ "type": kind, "object": object })).await
    }

    async fn send_bookmark(&mut self, revision: i64) -> bool {
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": { "resourceVersion": revision.to_string() },
        });
        self.write(json!({ "type": "BOOKMARK", "object": object })).await
    }

    async fn send_error(&mut self, error: KvError) {
        let status = match error {
            KvError::Compacted { compact_revision } => {
                ApiError::gone(format!("too old resource version: (compacted at {compact_revision})"))
            }
            other => ApiError::from(other),
        };
        self.write(json!({ "type": "ERROR", "object": status.to_status() })).await;
    }

    async fn write(&mut self, event: Value) -> bool {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }
}
