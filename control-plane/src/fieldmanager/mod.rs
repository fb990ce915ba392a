//! Field management: who owns which field of an object (`metadata.managedFields`), and
//! server-side apply, as Kubernetes' API server does them (its structured-merge-diff library and
//! field manager).
//!
//! # Layout
//! - [`fieldpath`]: paths, field sets, and their `FieldsV1` encoding.
//! - [`schema`]: the server-side apply type table (list maps and their keys, sets, atomic
//!   objects) for every served kind; also what the OpenAPI documents publish as
//!   `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`.
//! - [`typed`]: objects read through the table: field sets and comparisons.
//! - [`merge`]: merging an applied configuration into the live object, and pruning.
//! - [`managed`]: `managedFields` entries: decoding, checking, ordering, the cap on `Update`
//!   entries.
//! - [`update`]: ownership after an `Update` (every write but apply).
//! - [`apply`]: server-side apply with conflicts, `force`, and removal.
//!
//! # API boundary
//! Pure functions of JSON values: no I/O, no clock (the caller passes the time), no knowledge of
//! HTTP or storage. The API server (`crate::apiserver::apply`) decodes requests, calls [`update`]
//! or [`apply`] with the live and new objects, and stores the result through its normal write
//! path (defaults, validation, dry run, one guarded store write).
//!
//! # Invariants
//! - An entry never owns nothing; `Apply` entries are one per manager (and subresource).
//! - Nobody owns the server's metadata (`name`, `uid`, `resourceVersion`, ...), `apiVersion`,
//!   `kind`, or the fields the endpoint resets (`status` through the main resource; everything
//!   but `status` through `/status`).
//! - Recursion is bounded by [`fieldpath::MAX_DEPTH`]; `managedFields` lists by
//!   [`managed::MAX_ENTRIES`].

pub mod apply;
pub mod fieldpath;
pub mod managed;
pub mod merge;
pub mod schema;
pub mod typed;
pub mod update;

use serde_json::{Map, Value};

pub use apply::{Conflict, Conflicts, apply};
pub use fieldpath::{FieldSet, PathElement};
pub use typed::Shape;
pub use update::update;

/// What an operation needs to know besides the objects.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The type of the objects ([`Shape::root`]).
    pub shape: Shape,
    /// The API version of the request (`apps/v1`): recorded in the entries.
    pub api_version: &'a str,
    /// `status` or `scale` for a subresource write, empty for the main resource.
    pub subresource: &'a str,
    /// Fields nobody may own through this endpoint ([`reset_fields`]).
    pub ignored: FieldSet,
    /// The time to stamp changed entries with (RFC 3339).
    pub now: &'a str,
}

/// Why field management failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldManagerError {
    /// The object does not fit its type (a list-map item without its key, a repeated key in an
    /// applied list).
    #[error(transparent)]
    Typed(#[from] typed::TypedError),
    /// The live object's `managedFields` cannot be decoded.
    #[error("failed to decode managed fields: {0}")]
    Managed(#[from] managed::ManagedError),
    /// The apply would change fields other managers own.
    #[error("{}", .0.message())]
    Conflicts(Conflicts),
}

/// The fields Kubernetes never records as owned: type and server-set metadata (built once).
#[must_use]
pub fn strip_set() -> &'static FieldSet {
    static STRIP: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(build_strip_set);
    &STRIP
}

fn build_strip_set() -> FieldSet {
    let field = |name: &str| PathElement::Field(name.to_string());
    let mut paths = vec![vec![field("apiVersion")], vec![field("kind")], vec![field("metadata")]];
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        paths.push(vec![field("metadata"), field(name)]);
    }
    FieldSet::of(&paths)
}

/// The fields an endpoint resets, which nobody owns through it: `status` through the main
/// resource of a kind with a status subresource; through `/status`, every top-level field but
/// `status` (Keel's `/status` keeps everything else as stored). `top_level` names the top-level
/// fields of the objects involved.
#[must_use]
pub fn reset_fields<'a>(has_status: bool, subresource: &str, top_level: impl IntoIterator<Item = &'a str>) -> FieldSet {
    let field = |name: &str| vec![PathElement::Field(name.to_string())];
    match subresource {
        "status" => {
            let paths: Vec<_> = top_level.into_iter().filter(|name| *name != "status").map(field).collect();
            FieldSet::of(&paths)
        }
        "" if has_status => FieldSet::of(&[field("status")]),
        _ => FieldSet::new(),
    }
}

/// A copy of `object` without `metadata.managedFields`.
#[must_use]
pub fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    copy
}

/// The object's `metadata`, created when missing.
fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let map = object.as_object_mut().expect("just made an object");
    let metadata = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    metadata.as_object_mut().expect("just made an object")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_fields_follow_the_endpoint() {
        assert_eq!(reset_fields(true, "", []).to_fields_v1(), serde_json::json!({"f:status": {}}));
        assert!(reset_fields(false, "", []).is_empty());
        let status = reset_fields(true, "status", ["apiVersion", "metadata", "spec", "status"]);
        assert_eq!(status.to_fields_v1(), serde_json::json!({"f:apiVersion": {}, "f:metadata": {}, "f:spec": {}}));
        assert!(reset_fields(true, "scale", ["spec"]).is_empty());
    }

    #[test]
    fn server_metadata_is_never_owned() {
        let strip = strip_set();
        let field = |name: &str| PathElement::Field(name.to_string());
        assert!(strip.has(&[field("metadata"), field("uid")]));
        assert!(strip.has(&[field("kind")]));
        assert!(!strip.has(&[field("metadata"), field("labels")]));
    }
}
