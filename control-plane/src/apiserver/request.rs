//! What a resource request asks for: the path split into resource, namespace, name and
//! subresource, the verb, and the query options. Pure parsing, no I/O.

use std::collections::HashMap;

use http::{HeaderMap, Method};

use super::resources::{self, Resource};
use super::status::ApiError;

/// One request against a resource, parsed from its path and method.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub resource: &'static Resource,
    /// The namespace in the path (None: cluster-scoped, or all namespaces).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Splits `/api/v1/...` or `/apis/<group>/<version>/...` into a [`Target`]; None when the
/// path is not a resource path this server serves.
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let owned = |s: &&str| Some((*s).to_string());
    let (namespace, plural, name, subresource) = match rest {
        ["namespaces", namespace, plural, tail @ ..]
            if !(group.is_empty() && (*plural == "status" || *plural == "finalize")) =>
        {
            (owned(namespace), *plural, tail.first().and_then(owned), tail.get(1).and_then(owned))
        }
        [plural, tail @ ..] => (None, *plural, tail.first().and_then(owned), tail.get(1).and_then(owned)),
        [] => return None,
    };
    let too_deep = match rest {
        ["namespaces", _, _, tail @ ..] if namespace.is_some() => tail.len() > 2,
        [_, tail @ ..] => tail.len() > 2,
        [] => false,
    };
    let resource = resources::find(group, version, plural)?;
    if too_deep || (namespace.is_some() && !resource.namespaced) {
        return None;
    }
    if name.as_deref() == Some("") || namespace.as_deref() == Some("") {
        return None;
    }
    Some(Target { resource, namespace, name, subresource })
}

/// The verb a method means for a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

pub fn verb(method: &Method, target: &Target, query: &Query) -> Result<Verb, ApiError> {
    let collection = target.name.is_none();
    let verb = match (method.as_str(), collection) {
        ("GET", true) if query.watch => Verb::Watch,
        ("GET", true) => Verb::List,
        ("GET", false) => Verb::Get,
        ("POST", true) => Verb::Create,
        // POST to a named subresource (pods/x/binding) creates the subresource.
        ("POST", false) if target.subresource.is_some() => Verb::Create,
        ("PUT", false) => Verb::Update,
        ("PATCH", false) => Verb::Patch,
        ("DELETE", false) => Verb::Delete,
        ("DELETE", true) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
    };
    Ok(verb)
}

/// How strictly a write checks fields it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// The query options Keel understands (the rest are ignored, as Kubernetes ignores unknown
/// parameters).
#[derive(Debug, Default, PartialEq)]
pub struct Query {
    pub watch: bool,
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: bool,
    pub dry_run: bool,
    pub container: Option<String>,
}

pub fn parse_query(raw: Option<&str>) -> Result<Query, ApiError> {
    let pairs: HashMap<String, String> = match raw {
        Some(raw) => serde_urlencoded_pairs(raw),
        None => HashMap::new(),
    };
    let flag = |name: &str| pairs.get(name).is_some_and(|v| v == "true" || v == "1");
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        match pairs.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad_request(format!("invalid {name}: {v:?}"))),
        }
    };
    let field_validation = match pairs.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\" (got {other:?})"
            )));
        }
    };
    let limit = number("limit")?.unwrap_or(0);
    if limit < 0 {
        return Err(ApiError::bad_request("limit must not be negative"));
    }
    let timeout_seconds = number("timeoutSeconds")?.map(|t| t.max(0) as u64);
    Ok(Query {
        watch: flag("watch"),
        label_selector: pairs.get("labelSelector").cloned().unwrap_or_default(),
        field_selector: pairs.get("fieldSelector").cloned().unwrap_or_default(),
        limit,
        continue_token: pairs.get("continue").filter(|c| !c.is_empty()).cloned(),
        resource_version: pairs.get("resourceVersion").filter(|v| !v.is_empty()).cloned(),
        timeout_seconds,
        allow_watch_bookmarks: flag("allowWatchBookmarks"),
        field_manager: pairs.get("fieldManager").cloned(),
        field_validation,
        force: flag("force"),
        dry_run: pairs.get("dryRun").is_some_and(|v| v == "All"),
        container: pairs.get("container").cloned(),
    })
}

/// `a=b&c=d` with percent-decoding and `+` as space.
fn serde_urlencoded_pairs(raw: &str) -> HashMap<String, String> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// The response shape the client asked for in `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Object,
    Table,
}

pub fn shape(headers: &HeaderMap) -> Shape {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    // kubectl lists Table first and plain JSON as the fallback; Table wins when offered.
    if accept.split(',').any(|part| part.contains("as=Table") && part.contains("g=meta.k8s.io")) {
        Shape::Table
    } else {
        Shape::Object
    }
}

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("application/json")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Option<(&'static str, Option<String>, Option<String>, Option<String>)> {
        parse_path(path).map(|t| (t.resource.plural, t.namespace, t.name, t.subresource))
    }

    fn s(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn paths_split_into_resource_namespace_name_subresource() {
        assert_eq!(target("/api/v1/pods"), Some(("pods", None, None, None)));
        assert_eq!(target("/api/v1/namespaces/default/pods"), Some(("pods", s("default"), None, None)));
        assert_eq!(target("/api/v1/namespaces/default/pods/x/log"), Some(("pods", s("default"), s("x"), s("log"))));
        assert_eq!(target("/api/v1/namespaces/kube-system"), Some(("namespaces", None, s("kube-system"), None)));
        assert_eq!(target("/api/v1/namespaces/ns1/status"), Some(("namespaces", None, s("ns1"), s("status"))));
        assert_eq!(target("/api/v1/nodes/n1/status"), Some(("nodes", None, s("n1"), s("status"))));
        assert_eq!(
            target("/apis/apps/v1/namespaces/default/deployments/web/scale"),
            Some(("deployments", s("default"), s("web"), s("scale")))
        );
        assert_eq!(target("/apis/apps/v1/deployments"), Some(("deployments", None, None, None)));
    }

    #[test]
    fn unknown_or_malformed_paths_are_not_targets() {
        assert_eq!(target("/api/v1/widgets"), None);
        assert_eq!(target("/apis/apps/v2/deployments"), None);
        assert_eq!(target("/api/v1/namespaces/default/nodes"), None, "nodes are cluster-scoped");
        assert_eq!(target("/api/v1/namespaces/default/pods/x/log/extra"), None);
        assert_eq!(target("/version"), None);
    }

    #[test]
    fn query_options_parse_with_percent_decoding() {
        let query = parse_query(Some(
            "fieldSelector=metadata.name%3Dx&limit=500&resourceVersion=0&watch=true&labelSelector=app+in+(a%2Cb)",
        ))
        .expect("query");
        assert_eq!(query.field_selector, "metadata.name=x");
        assert_eq!(query.label_selector, "app in (a,b)");
        assert_eq!(query.limit, 500);
        assert!(query.watch);
        assert_eq!(query.resource_version.as_deref(), Some("0"));
        assert!(parse_query(Some("limit=abc")).is_err());
        assert!(parse_query(Some("fieldValidation=Sometimes")).is_err());
        assert_eq!(parse_query(Some("fieldValidation=Strict")).expect("q").field_validation, FieldValidation::Strict);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
