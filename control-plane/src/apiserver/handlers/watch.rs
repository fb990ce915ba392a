//! Watch: newline-delimited `{"type": ..., "object": ...}` events over a chunked response,
//! served from the resource's [`watch_cache`](crate::apiserver::watch_cache), never from a
//! store watch of its own.
//!
//! From a resourceVersion N the watch delivers every change after N, in store revision order;
//! without one (or "0") it first sends the current objects as ADDED. An N older than the
//! cache's window answers 200 with one ERROR event carrying a 410 Expired Status, as
//! kube-apiserver does, and the client re-lists. Selectors apply to both sides of a change: an
//! object that stops matching is reported DELETED, one that starts matching ADDED. With
//! `allowWatchBookmarks`, BOOKMARK events tell a client whose changes are elsewhere how far the
//! cache has seen, so it can resume from there.
//!
//! The stream ends at the timeout, when the client goes away, or when the cache drops this
//! watch (it fell behind, or the cache restarted). Up to that point it is gap-free, so the
//! client re-watches from the last resourceVersion it saw and misses nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use super::Call;
use super::read::Selectors;
use crate::apiserver::request::Shape;
use crate::apiserver::resources::Resource;
use crate::apiserver::status::ApiError;
use crate::apiserver::watch_cache::{CacheError, CachedEvent, Notice, Start, Subscription, WatchFrom};
use crate::apiserver::{Api, object, table};

/// Encoded events buffered toward one client; a client that does not read stalls only itself
/// (and, once its cache channel is full too, is dropped by the cache).
const CLIENT_BUFFER: usize = 64;
/// The longest a watch runs before the client must re-establish it.
const MAX_WATCH: Duration = Duration::from_secs(1800);
/// A client with bookmarks whose stream has advanced past what it was told hears about it
/// this often at most (and, besides, on each progress notification from the store).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

type Sink = mpsc::Sender<Result<Bytes, Infallible>>;

pub async fn watch(api: Arc<Api>, call: Call) -> Result<Response, ApiError> {
    let resource = call.target.resource;
    let selectors = Selectors::parse(resource, &call.query.label_selector, &call.query.field_selector)?;
    let initial = initial_events(call.query.send_initial_events);
    let from = match initial {
        // A streaming list starts from the current objects whatever resourceVersion it names
        // (they are not older than it).
        Initial::ObjectsThenBookmark => WatchFrom::Snapshot,
        _ => watch_from(call.query.resource_version.as_deref())?,
    };
    let prefix = resource.prefix(call.target.namespace.as_deref()).into_bytes();
    let subscription = api.watch_caches.get(resource).subscribe(&prefix, from).await;
    // A negative timeoutSeconds ends the watch at once, as an expired context does in Go.
    let timeout = call.query.timeout_seconds.map(|t| Duration::from_secs(t.max(0) as u64));
    let timeout = timeout.unwrap_or(MAX_WATCH).min(MAX_WATCH);
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    match subscription {
        Ok(subscription) => {
            let writer = EventWriter {
                resource,
                selectors,
                prefix,
                shape: call.shape,
                bookmarks: call.query.allow_watch_bookmarks,
                initial,
                columns_sent: false,
                tx,
                from: 0,
                position: 0,
                announced: 0,
            };
            tokio::spawn(writer.run(subscription, timeout));
        }
        // Kubernetes answers a too old resourceVersion inside the stream, not with the status.
        Err(error @ CacheError::TooOld { .. }) => {
            let status = ApiError::from(error).to_status();
            // The channel is new, so this one line fits; dropping `tx` then ends the stream.
            let _ = tx.try_send(Ok(encode_line("ERROR", &status)));
        }
        Err(error) => return Err(error.into()),
    }
    let content_type = if call.shape == Shape::Table { table::CONTENT_TYPE } else { "application/json" };
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    Ok(response)
}

/// What a watch that starts from the current objects sends of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Initial {
    /// Every current object as ADDED (a watch without a resourceVersion, or from "0").
    Objects,
    /// The objects, then a BOOKMARK annotated `k8s.io/initial-events-end` (a streaming list:
    /// `sendInitialEvents=true`).
    ObjectsThenBookmark,
    /// Nothing: only the changes from now on (`sendInitialEvents=false`).
    Nothing,
}

fn initial_events(send_initial_events: Option<bool>) -> Initial {
    match send_initial_events {
        Some(true) => Initial::ObjectsThenBookmark,
        Some(false) => Initial::Nothing,
        None => Initial::Objects,
    }
}

/// The annotation on the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Unset or "0": the current objects, then changes. A number: the changes after it.
fn watch_from(resource_version: Option<&str>) -> Result<WatchFrom, ApiError> {
    match resource_version {
        None | Some("0") => Ok(WatchFrom::Snapshot),
        Some(text) => match text.parse::<i64>() {
            Ok(0) => Ok(WatchFrom::Snapshot),
            Ok(revision) if revision > 0 => Ok(WatchFrom::Revision(revision)),
            _ => Err(ApiError::bad_request(format!("invalid resourceVersion {text:?}"))),
        },
    }
}

/// One client's stream: turns the cache's events into the watch events they mean for this
/// client (namespace, selectors, shape) and writes them out in order.
struct EventWriter {
    resource: &'static Resource,
    selectors: Selectors,
    /// The store prefix of the watched namespace (or of every object).
    prefix: Vec<u8>,
    shape: Shape,
    bookmarks: bool,
    /// What a start from the current objects sends of them.
    initial: Initial,
    /// Table watches send the column definitions with the first event only.
    columns_sent: bool,
    tx: Sink,
    /// Events at or below this revision are already accounted for (the snapshot, or the
    /// client's resourceVersion).
    from: i64,
    /// How far this stream has come: every event up to here is written or did not concern
    /// the client.
    position: i64,
    /// The newest revision the client was told, by an event or a bookmark.
    announced: i64,
}

impl EventWriter {
    async fn run(mut self, subscription: Subscription, timeout: Duration) {
        let Subscription { start, from, mut notices } = subscription;
        self.from = from;
        self.position = from;
        // After a snapshot the client knows only its objects' versions, not the snapshot's.
        self.announced = if matches!(start, Start::Snapshot(_)) { 0 } else { from };
        if !self.send_start(start).await {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark_timer = tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        bookmark_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let open = tokio::select! {
                _ = &mut deadline => return,
                _ = self.tx.closed() => return,
                _ = bookmark_timer.tick(), if self.bookmarks => self.bookmark_if_behind().await,
                notice = notices.recv() => match notice {
                    // Dropped by the cache (behind, or restarting): the client re-watches.
                    None => return,
                    Some(notice) => self.handle(notice).await,
                },
            };
            if !open {
                return;
            }
        }
    }

    /// The snapshot as ADDED events, or the replayed events. False when the client is gone.
    async fn send_start(&mut self, start: Start) -> bool {
        match start {
            Start::Snapshot(objects) => {
                let objects = if self.initial == Initial::Nothing { Vec::new() } else { objects };
                for object in objects {
                    if self.selectors.matches(self.resource, &object) && !self.send("ADDED", &object).await {
                        return false;
                    }
                }
                if self.initial == Initial::ObjectsThenBookmark && self.bookmarks {
                    self.announced = self.position;
                    let bookmark = self.bookmark_object(Some(json!({ INITIAL_EVENTS_END: "true" })));
                    return self.tx.send(Ok(encode_line("BOOKMARK", &bookmark))).await.is_ok();
                }
            }
            Start::Replay(events) => {
                for event in events {
                    if !self.send_event(&event).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    async fn handle(&mut self, notice: Notice) -> bool {
        match notice {
            Notice::Events(events) => {
                let from = self.from;
                for event in events.iter().filter(|event| event.revision > from) {
                    if !self.send_event(event).await {
                        return false;
                    }
                }
                true
            }
            Notice::Progress(revision) => {
                self.position = self.position.max(revision);
                self.bookmark_if_behind().await
            }
        }
    }

    /// Sends one change as the watch event it means for this client, if any.
    async fn send_event(&mut self, event: &CachedEvent) -> bool {
        self.position = self.position.max(event.revision);
        if !event.key.starts_with(&self.prefix) {
            return true;
        }
        let matches = |object: Option<&Arc<Value>>| object.is_some_and(|o| self.selectors.matches(self.resource, o));
        let (old_matches, new_matches) = (matches(event.old.as_ref()), matches(event.new.as_ref()));
        let sent = match (&event.old, &event.new) {
            (_, Some(new)) if new_matches && old_matches => self.send("MODIFIED", new).await,
            (_, Some(new)) if new_matches => self.send("ADDED", new).await,
            (Some(old), _) if old_matches => {
                // The last state, at the revision that removed it (from the client's view).
                let mut gone = Value::clone(old);
                object::set_resource_version(&mut gone, event.revision);
                self.send("DELETED", &gone).await
            }
            _ => return true,
        };
        self.announced = self.announced.max(event.revision);
        sent
    }

    async fn send(&mut self, kind: &str, object: &Value) -> bool {
        let line = match self.shape {
            Shape::Object => encode_line(kind, object),
            Shape::Table => {
                let metadata = json!({ "resourceVersion": object::meta_str(object, "resourceVersion") });
                let with_columns = !std::mem::replace(&mut self.columns_sent, true);
                encode_line(kind, &table::table(self.resource, std::slice::from_ref(object), metadata, with_columns))
            }
        };
        self.tx.send(Ok(line)).await.is_ok()
    }

    /// A BOOKMARK at this stream's position, when bookmarks are on and the client has not
    /// heard of it yet.
    async fn bookmark_if_behind(&mut self) -> bool {
        if !self.bookmarks || self.position <= self.announced {
            return true;
        }
        let object = self.bookmark_object(None);
        self.announced = self.position;
        self.tx.send(Ok(encode_line("BOOKMARK", &object))).await.is_ok()
    }

    /// A bookmark's object: only the kind and this stream's position (and annotations).
    fn bookmark_object(&self, annotations: Option<Value>) -> Value {
        let mut metadata = json!({ "resourceVersion": self.position.to_string() });
        if let Some(annotations) = annotations {
            metadata["annotations"] = annotations;
        }
        json!({ "kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata })
    }
}

/// One watch event as a line of JSON, without copying the object.
fn encode_line(kind: &str, object: &Value) -> Bytes {
    #[derive(Serialize)]
    struct WatchEvent<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    // Serializing a Value cannot fail: its map keys are strings.
    let mut line = serde_json::to_vec(&WatchEvent { kind, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources;

    fn configmap(namespace: &str, labels: Value, revision: i64) -> Arc<Value> {
        let mut object = json!({ "metadata": { "name": "c", "namespace": namespace, "labels": labels } });
        object::set_resource_version(&mut object, revision);
        Arc::new(object)
    }

    fn event(revision: i64, old: Option<&Arc<Value>>, new: Option<&Arc<Value>>) -> Arc<CachedEvent> {
        let namespace = old.or(new).and_then(|o| object::meta_str(o, "namespace")).unwrap_or_default();
        let key = format!("/registry/configmaps/{namespace}/c").into_bytes();
        Arc::new(CachedEvent { revision, key, old: old.cloned(), new: new.cloned() })
    }

    /// Runs a writer over `start` and `notices` to the end; returns each line's type and
    /// resourceVersion.
    async fn written(
        label_selector: &str,
        bookmarks: bool,
        start: Start,
        from: i64,
        notices: Vec<Notice>,
    ) -> Vec<String> {
        let resource = resources::find("", "v1", "configmaps").expect("configmaps");
        let (tx, mut rx) = mpsc::channel(1_024);
        let writer = EventWriter {
            resource,
            selectors: Selectors::parse(resource, label_selector, "").expect("selector"),
            prefix: resource.prefix(Some("default")).into_bytes(),
            shape: Shape::Object,
            bookmarks,
            initial: Initial::Objects,
            columns_sent: false,
            tx,
            from: 0,
            position: 0,
            announced: 0,
        };
        let (notice_tx, notice_rx) = mpsc::channel(notices.len().max(1));
        for notice in notices {
            notice_tx.try_send(notice).expect("room for every notice");
        }
        drop(notice_tx);
        writer.run(Subscription { start, from, notices: notice_rx }, Duration::from_secs(10)).await;
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            let line: Value = serde_json::from_slice(&line.expect("bytes")).expect("a JSON line");
            let revision = line["object"]["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
            lines.push(format!("{} {revision}", line["type"].as_str().unwrap_or_default()));
        }
        lines
    }

    #[tokio::test]
    async fn selectors_apply_to_both_sides_of_a_change_and_namespaces_filter() {
        let plain = configmap("default", json!({}), 11);
        let watched = configmap("default", json!({ "watched": "yes" }), 12);
        let touched = configmap("default", json!({ "watched": "yes", "x": "y" }), 13);
        let unwatched = configmap("default", json!({}), 14);
        let elsewhere = configmap("other", json!({ "watched": "yes" }), 16);
        let events: Arc<[Arc<CachedEvent>]> = Arc::from(vec![
            event(10, None, Some(&plain)),
            event(11, Some(&plain), Some(&plain)),
            event(12, Some(&plain), Some(&watched)),
            event(13, Some(&watched), Some(&touched)),
            event(14, Some(&touched), Some(&unwatched)),
            event(15, Some(&unwatched), None),
            event(16, None, Some(&elsewhere)),
        ]);
        let lines = written("watched=yes", false, Start::Replay(vec![]), 10, vec![Notice::Events(events)]).await;
        // Revision 10 is not after `from`; the last change is in another namespace.
        assert_eq!(lines, vec!["ADDED 12", "MODIFIED 13", "DELETED 14"]);
    }

    #[tokio::test]
    async fn bookmarks_follow_progress_only_when_asked_and_never_go_back() {
        let object = configmap("default", json!({}), 20);
        let snapshot = || Start::Snapshot(vec![object.clone()]);
        let notices = || vec![Notice::Progress(25), Notice::Progress(24), Notice::Progress(30)];
        let lines = written("", true, snapshot(), 20, notices()).await;
        assert_eq!(lines, vec!["ADDED 20", "BOOKMARK 25", "BOOKMARK 30"]);
        assert_eq!(written("", false, snapshot(), 20, notices()).await, vec!["ADDED 20"]);
        let ahead = written("", true, Start::Replay(vec![]), 40, notices()).await;
        assert!(ahead.is_empty(), "a client at 40 hears of nothing older: {ahead:?}");
    }

    #[test]
    fn resource_versions_choose_where_a_watch_starts() {
        assert_eq!(watch_from(None), Ok(WatchFrom::Snapshot));
        assert_eq!(watch_from(Some("0")), Ok(WatchFrom::Snapshot));
        assert_eq!(watch_from(Some("42")), Ok(WatchFrom::Revision(42)));
        for bad in ["-3", "x", "1.5"] {
            assert_eq!(watch_from(Some(bad)).map_err(|e| e.code.as_u16()), Err(400), "{bad}");
        }
    }

    #[test]
    fn an_event_line_is_one_json_object_and_a_newline() {
        let line = encode_line("ADDED", &json!({ "metadata": { "name": "a" } }));
        assert_eq!(&line[..], b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n");
    }
}
