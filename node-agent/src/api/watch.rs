//! List-then-watch of one collection, forever: the agent's view of its pods and its Nodes.
//!
//! The handler sees [`Event::Listed`] with every object after each (re)list, then one
//! [`Event::Applied`]/[`Event::Deleted`] per change. Level-triggered consumers treat a relist as
//! the whole truth (objects missing from it were deleted meanwhile). A watch that ends (the
//! server's `timeoutSeconds`, a master stopping) resumes from the last resourceVersion seen,
//! BOOKMARKs included; 410 Gone (or an ERROR event) relists; transport errors back off and the
//! client fails over to the next master.

use std::time::Duration;

use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, Client};
use crate::backoff::Backoff;

/// Items per list page.
const PAGE_LIMIT: usize = 500;
/// Pages per list: 500 × 400 = 200,000 objects; more means something is wrong.
const MAX_PAGES: usize = 400;
/// The server ends each watch after about this long (Kubernetes' clients pick 5–10 min).
const WATCH_TIMEOUT_SECONDS: u64 = 300;
/// One watch event line may not exceed this (a pod is a few KiB).
const MAX_EVENT_BYTES: usize = 16 << 20;
/// No bytes at all (the server sends a BOOKMARK every few seconds) for this long means the
/// stream is dead even if its connection is not.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub enum Event {
    Listed(Vec<Value>),
    Applied(Value),
    Deleted(Value),
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct WatchLine {
    #[serde(rename = "type")]
    kind: String,
    object: Value,
}

/// Why one watch ended.
enum Ended {
    /// Resume from the last resourceVersion.
    Resume,
    /// The resourceVersion is too old: list again.
    Relist,
}

/// Lists and watches `path` (e.g. `/api/v1/pods`) with `selector` query parameters (e.g.
/// `fieldSelector=spec.nodeName%21%3D`) until the process stops. Never returns.
pub async fn run(client: Client, path: String, selector: String, mut handle: impl FnMut(Event)) {
    let mut backoff = Backoff::kubelet();
    loop {
        let mut resource_version = match list(&client, &path, &selector).await {
            Ok((items, resource_version)) => {
                handle(Event::Listed(items));
                resource_version
            }
            Err(error) => {
                tracing::warn!(%path, %error, "list failed; retrying");
                backoff.wait().await;
                continue;
            }
        };
        loop {
            match watch(&client, &path, &selector, &mut resource_version, &mut handle, &mut backoff).await {
                Ok(Ended::Resume) => continue,
                Ok(Ended::Relist) => break,
                Err(error) => {
                    tracing::warn!(%path, %error, "watch failed; resuming");
                    backoff.wait().await;
                }
            }
        }
    }
}

async fn list(client: &Client, path: &str, selector: &str) -> Result<(Vec<Value>, String), ApiError> {
    let mut items = Vec::new();
    let mut continue_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = format!("{path}?limit={PAGE_LIMIT}");
        if !selector.is_empty() {
            query.push('&');
            query.push_str(selector);
        }
        if let Some(token) = &continue_token {
            query.push_str("&continue=");
            query.push_str(&percent_encode(token));
        }
        let page: List = client.get(&query).await?.json()?;
        items.extend(page.items);
        match page.metadata.continue_token.filter(|t| !t.is_empty()) {
            Some(token) => continue_token = Some(token),
            None => return Ok((items, page.metadata.resource_version)),
        }
    }
    Err(ApiError::Decode(format!("more than {MAX_PAGES} pages of {PAGE_LIMIT}")))
}

async fn watch(
    client: &Client,
    path: &str,
    selector: &str,
    resource_version: &mut String,
    handle: &mut impl FnMut(Event),
    backoff: &mut Backoff,
) -> Result<Ended, ApiError> {
    let mut query = format!(
        "{path}?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_TIMEOUT_SECONDS}&resourceVersion={resource_version}"
    );
    if !selector.is_empty() {
        query.push('&');
        query.push_str(selector);
    }
    let (status, mut body, generation) = client.stream(&query).await?;
    if status == http::StatusCode::GONE {
        return Ok(Ended::Relist);
    }
    if !status.is_success() {
        if status.is_server_error() {
            client.stream_failed(generation).await;
        }
        return Err(ApiError::Status { status: status.as_u16(), message: "watch refused".into() });
    }
    let mut buffer = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
            Err(_) => {
                client.stream_failed(generation).await;
                return Err(ApiError::Timeout(IDLE_TIMEOUT));
            }
            Ok(None) => return Ok(Ended::Resume),
            Ok(Some(Err(error))) => {
                client.stream_failed(generation).await;
                return Err(ApiError::Transport(error.to_string()));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line = buffer.split_to(end + 1);
            let line = &line[..end];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: WatchLine = serde_json::from_slice(line).map_err(|e| ApiError::Decode(e.to_string()))?;
            if let Some(version) = event.object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                *resource_version = version.to_string();
            }
            match event.kind.as_str() {
                "ADDED" | "MODIFIED" => handle(Event::Applied(event.object)),
                "DELETED" => handle(Event::Deleted(event.object)),
                "BOOKMARK" => {}
                "ERROR" => {
                    let code = event.object.get("code").and_then(Value::as_u64);
                    tracing::info!(%path, ?code, "watch ended with an ERROR event; relisting");
                    return Ok(Ended::Relist);
                }
                other => tracing::warn!(%path, kind = other, "unknown watch event type"),
            }
            backoff.reset();
        }
        if buffer.len() > MAX_EVENT_BYTES {
            return Err(ApiError::TooLarge(MAX_EVENT_BYTES));
        }
    }
}

/// Percent-encodes everything but unreserved characters (continue tokens are base64).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("spec.nodeName!="), "spec.nodeName%21%3D");
        assert_eq!(percent_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
