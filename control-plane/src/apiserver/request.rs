//! What a resource request asks for: the path split into resource, namespace, name and
//! subresource, the verb, and the query options. Pure parsing, no I/O.

use http::{HeaderMap, Method};

pub use super::options::{FieldValidation, OptionsKind, Params, Query};
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

/// The verb of a request; `params` tell a watch from a list (`watch` as apimachinery reads a
/// boolean).
pub fn verb(method: &Method, target: &Target, params: &Params) -> Result<Verb, ApiError> {
    let collection = target.name.is_none();
    let verb = match (method.as_str(), collection) {
        ("GET", true) if params.flag("watch").unwrap_or(false) => Verb::Watch,
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
}
