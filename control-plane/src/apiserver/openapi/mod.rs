//! The OpenAPI documents of the served API, generated from the typed definitions the project
//! already uses (k8s-openapi's `JsonSchema` implementations, the resource catalog, the patch
//! metadata table), never written by hand.
//!
//! - `GET /openapi/v3`: an index naming each group-version's document with a content hash.
//! - `GET /openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`: one OpenAPI 3.0 document
//!   per group-version. kubectl reads them for `kubectl explain`, to compute client-side apply
//!   patches (`x-kubernetes-patch-*`), and to see that the server validates fields itself (the
//!   `fieldValidation` parameter on each kind's PATCH), so `create` and `apply` send
//!   `fieldValidation=Strict` instead of validating against `/openapi/v2`.
//! - `GET /openapi/v2`: one Swagger 2.0 document for every group, as JSON or in gnostic's
//!   protobuf (what client-go asks for).
//!
//! # Layout
//! - [`schemas`]: the definitions of a document, from k8s-openapi, plus what Kubernetes adds (list
//!   kinds, `x-kubernetes-group-version-kind`).
//! - [`extensions`]: per-field vendor extensions from the project's tables; a table plugs in by
//!   implementing [`extensions::FieldExtensions`].
//! - [`parameters`], [`paths`]: the operations of each served resource, in one neutral form.
//! - [`v3`], [`v2`]: that form written as OpenAPI 3.0 and Swagger 2.0; [`v2_protobuf`] encodes the
//!   v2 document for client-go.
//! - [`serve`]: the HTTP side: content negotiation, ETags, `hash` redirects, caching headers.
//!
//! # Invariants
//! - Every document is generated once per process, on first use and off the async workers (it
//!   takes tens of milliseconds), then served from memory: the bytes, and so their hash, never
//!   change while the process runs.
//! - Every `$ref` resolves inside its own document, and every served kind has a definition with
//!   its group-version-kind (unit tests check both for every document).

pub mod extensions;
pub mod parameters;
pub mod paths;
pub mod schemas;
pub mod serve;
pub mod v2;
pub mod v2_protobuf;
pub mod v3;

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::resources::GROUPS;

pub use serve::{serve_v2, serve_v3, serve_v3_index};

#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("the served kind {0} has no typed definition in k8s-openapi")]
    UntypedKind(String),
    #[error("no group-version {0} is served")]
    UnknownGroupVersion(String),
    #[error("serializing an OpenAPI document: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("encoding the OpenAPI v2 document as protobuf: {0}")]
    Protobuf(#[from] v2_protobuf::EncodeError),
}

/// Every group-version this server serves, core first: `("", "v1")`, `("apps", "v1")`, …
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    std::iter::once(("", "v1")).chain(GROUPS.iter().copied()).collect()
}

/// The `info` of every document: the Kubernetes version the API is (its `/version`).
fn info() -> Value {
    json!({ "title": "Kubernetes", "version": format!("v1.{}.0", super::discovery::KUBERNETES_MINOR) })
}

/// `api/v1` or `apis/<group>/<version>`: where a group-version's document sits under
/// `/openapi/v3/`.
pub fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// One generated document, serialized once.
#[derive(Debug)]
pub struct Document {
    pub bytes: Bytes,
    /// SHA-512 of `bytes` in upper-case hex, as Kubernetes hashes its documents: the `hash` of
    /// the v3 index and the ETag.
    pub hash: String,
}

impl Document {
    fn new(bytes: Vec<u8>) -> Document {
        let hash = Sha512::digest(&bytes).iter().map(|byte| format!("{byte:02X}")).collect();
        Document { bytes: Bytes::from(bytes), hash }
    }

    fn json(value: &Value) -> Result<Document, OpenApiError> {
        Ok(Document::new(serde_json::to_vec(value)?))
    }
}

/// The v3 documents, generated together: the index needs all their hashes.
#[derive(Debug)]
pub struct V3Documents {
    /// By [`document_path`].
    documents: Vec<(String, Document)>,
    index: Document,
}

impl V3Documents {
    pub fn index(&self) -> &Document {
        &self.index
    }

    /// The document at `path` (`apis/apps/v1`).
    pub fn get(&self, path: &str) -> Option<&Document> {
        self.documents.iter().find(|(known, _)| known == path).map(|(_, document)| document)
    }
}

/// The v2 document in both of its encodings.
#[derive(Debug)]
pub struct V2Documents {
    pub json: Document,
    pub protobuf: Document,
}

static V3: OnceLock<Result<V3Documents, OpenApiError>> = OnceLock::new();
static V2: OnceLock<Result<V2Documents, OpenApiError>> = OnceLock::new();

/// The v3 documents, generated on the first call. Blocks while generating: async callers go
/// through [`serve`], which generates on a blocking thread.
pub fn v3_documents() -> &'static Result<V3Documents, OpenApiError> {
    V3.get_or_init(generate_v3)
}

/// The v2 document, generated on the first call (see [`v3_documents`]).
pub fn v2_documents() -> &'static Result<V2Documents, OpenApiError> {
    V2.get_or_init(generate_v2)
}

/// The value of `cell`, generated on a blocking thread the first time (generation takes tens of
/// milliseconds of CPU, too long for an async worker that serves other requests meanwhile).
/// Concurrent first callers wait for the one generation.
async fn generate_once<T: Send + Sync + 'static>(
    cell: &'static OnceLock<Result<T, OpenApiError>>,
    generate: fn() -> Result<T, OpenApiError>,
) -> Result<&'static Result<T, OpenApiError>, tokio::task::JoinError> {
    if let Some(done) = cell.get() {
        return Ok(done);
    }
    tokio::task::spawn_blocking(move || cell.get_or_init(generate)).await
}

fn generate_v3() -> Result<V3Documents, OpenApiError> {
    let started = Instant::now();
    let mut documents = Vec::new();
    let mut index = Map::new();
    for (group, version) in group_versions() {
        let path = document_path(group, version);
        let document = Document::json(&v3::document(group, version)?)?;
        let url = format!("/openapi/v3/{path}?hash={}", document.hash);
        index.insert(path.clone(), json!({ "serverRelativeURL": url }));
        documents.push((path, document));
    }
    let index = Document::json(&json!({ "paths": index }))?;
    let bytes: usize = documents.iter().map(|(_, d)| d.bytes.len()).sum();
    tracing::info!(
        documents = documents.len(),
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "generated the OpenAPI v3 documents"
    );
    Ok(V3Documents { documents, index })
}

fn generate_v2() -> Result<V2Documents, OpenApiError> {
    let started = Instant::now();
    let value = v2::document()?;
    let protobuf = Document::new(v2_protobuf::encode(&value)?);
    let json = Document::json(&value)?;
    tracing::info!(
        json_bytes = json.bytes.len(),
        protobuf_bytes = protobuf.bytes.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "generated the OpenAPI v2 document"
    );
    Ok(V2Documents { json, protobuf })
}

#[cfg(test)]
mod tests;
