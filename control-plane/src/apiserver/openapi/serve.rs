//! Serving the documents: content negotiation, ETags, the `hash` query parameter and caching
//! headers, the way kube-openapi's handlers do them.
//!
//! - Every document answers with an ETag (its content hash, quoted) and honours
//!   `If-None-Match` with 304.
//! - A v3 document asked for with the `hash` the index gave out is immutable: it may be cached
//!   for a year (`Cache-Control: public, immutable, max-age=…`; kube-apiserver sends the same
//!   with an `Expires` date). A `hash` that is not the current one is redirected (301) to the
//!   current URL, so a client holding an old index never caches the wrong bytes under it.
//! - `/openapi/v2` is JSON, or gnostic protobuf when the Accept header prefers it. client-go's
//!   `OpenAPISchema()` (kubectl's `explain --output plaintext-openapiv2`, the v2 fallback of
//!   client-side apply, older kubectls' `explain` and validation, tools built on client-go) asks
//!   only for protobuf and hands the body to `proto.Unmarshal` whatever it is labelled: JSON
//!   would fail there as malformed protobuf, and a 406 fails the call (apply then falls back to
//!   its compiled-in types, explain gives up). So a protobuf Accept gets protobuf, labelled with
//!   a media type client-go can parse; an Accept naming neither encoding gets 406, as from
//!   kube-apiserver.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{Document, OpenApiError, V2Documents, V3Documents, generate_once};
use crate::apiserver::status::ApiError;

/// The protobuf media type clients ask `/openapi/v2` for. Its `@` is not valid in a media type,
/// and client-go fails on a response labelled with it ("mime: unexpected content after media
/// subtype"), so the response is labelled [`PROTOBUF_V2`], as kube-apiserver labels it.
pub const PROTOBUF_V2_ASKED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// What `/openapi/v2` serves protobuf as (clients may ask for it by this name too).
pub const PROTOBUF_V2: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const JSON: &str = "application/json";
/// A hashed v3 URL never changes its content: one year, the longest HTTP caches honour.
const IMMUTABLE: &str = "public, immutable, max-age=31536000";

/// `GET /openapi/v3`.
pub async fn serve_v3_index(headers: &HeaderMap) -> Response {
    let documents = match v3().await {
        Ok(documents) => documents,
        Err(response) => return response,
    };
    if negotiate(headers, &[(JSON, Encoding::Json)]).is_none() {
        return not_acceptable(&[JSON]);
    }
    document_response(headers, documents.index(), JSON, None)
}

/// `GET /openapi/v3/<path>` (`path` is what follows `/openapi/v3/`; `query` the raw query).
pub async fn serve_v3(path: &str, query: Option<&str>, headers: &HeaderMap) -> Response {
    let documents = match v3().await {
        Ok(documents) => documents,
        Err(response) => return response,
    };
    let path = path.trim_matches('/');
    let Some(document) = documents.get(path) else { return ApiError::path_not_found().into_response() };
    if negotiate(headers, &[(JSON, Encoding::Json)]).is_none() {
        return not_acceptable(&[JSON]);
    }
    let cache_control = match hash_parameter(query) {
        Some(hash) if hash != document.hash => {
            let location = format!("/openapi/v3/{path}?hash={}", document.hash);
            return redirect(&location);
        }
        Some(_) => Some(IMMUTABLE),
        None => None,
    };
    document_response(headers, document, JSON, cache_control)
}

/// `GET /openapi/v2`.
pub async fn serve_v2(headers: &HeaderMap) -> Response {
    let documents: &V2Documents = match generate_once(&super::V2, super::generate_v2).await {
        Ok(Ok(documents)) => documents,
        Ok(Err(error)) => return generation_failed(error),
        Err(join) => return ApiError::internal(format!("generating the OpenAPI v2 document: {join}")).into_response(),
    };
    let offered = [(JSON, Encoding::Json), (PROTOBUF_V2_ASKED, Encoding::Protobuf), (PROTOBUF_V2, Encoding::Protobuf)];
    match negotiate(headers, &offered) {
        Some(Encoding::Json) => document_response(headers, &documents.json, JSON, None),
        Some(Encoding::Protobuf) => document_response(headers, &documents.protobuf, PROTOBUF_V2, None),
        None => not_acceptable(&[JSON, PROTOBUF_V2]),
    }
}

async fn v3() -> Result<&'static V3Documents, Response> {
    match generate_once(&super::V3, super::generate_v3).await {
        Ok(Ok(documents)) => Ok(documents),
        Ok(Err(error)) => Err(generation_failed(error)),
        Err(join) => Err(ApiError::internal(format!("generating the OpenAPI v3 documents: {join}")).into_response()),
    }
}

fn generation_failed(error: &OpenApiError) -> Response {
    ApiError::internal(error.to_string()).into_response()
}

/// The two encodings a document may be served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Json,
    Protobuf,
}

/// Picks the encoding the Accept header prefers among `offered` (media type, encoding):
/// the highest `q`, then the earliest listed. `*/*` and `application/*` match the first offer.
/// No Accept header accepts anything.
fn negotiate(headers: &HeaderMap, offered: &[(&str, Encoding)]) -> Option<Encoding> {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    if accept.trim().is_empty() {
        return offered.first().map(|(_, encoding)| *encoding);
    }
    let mut best: Option<(f32, Encoding)> = None;
    // An Accept header is short; 64 ranges are more than any client sends.
    for range in accept.split(',').take(64) {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality =
            parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        if quality <= 0.0 {
            continue;
        }
        let matched = match media_type.as_str() {
            "*/*" | "application/*" => offered.first().map(|(_, encoding)| *encoding),
            exact => offered.iter().find(|(offer, _)| *offer == exact).map(|(_, encoding)| *encoding),
        };
        if let Some(encoding) = matched
            && best.is_none_or(|(known, _)| quality > known)
        {
            best = Some((quality, encoding));
        }
    }
    best.map(|(_, encoding)| encoding)
}

/// The `hash` of `?hash=...&timeout=32s`.
fn hash_parameter(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| pair.strip_prefix("hash="))
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|value| {
        value.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| tag == "*" || tag == etag)
    })
}

fn document_response(
    headers: &HeaderMap,
    document: &Document,
    content_type: &'static str,
    cache_control: Option<&'static str>,
) -> Response {
    let etag = format!("\"{}\"", document.hash);
    let mut response = if not_modified(headers, &etag) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::from(document.bytes.clone()));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // The same URL serves JSON or protobuf: caches must key on Accept.
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Some(cache_control) = cache_control {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    }
    response
}

fn redirect(location: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn not_acceptable(offered: &[&str]) -> Response {
    ApiError::not_acceptable(format!("only the following media types are accepted: {}", offered.join(", ")))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).expect("header"));
        headers
    }

    const V2: &[(&str, Encoding)] =
        &[(JSON, Encoding::Json), (PROTOBUF_V2_ASKED, Encoding::Protobuf), (PROTOBUF_V2, Encoding::Protobuf)];

    #[test]
    fn negotiation_follows_the_accept_header() {
        assert_eq!(negotiate(&HeaderMap::new(), V2), Some(Encoding::Json));
        assert_eq!(negotiate(&accept(PROTOBUF_V2_ASKED), V2), Some(Encoding::Protobuf));
        assert_eq!(negotiate(&accept(PROTOBUF_V2), V2), Some(Encoding::Protobuf));
        assert_eq!(negotiate(&accept("application/json, */*"), V2), Some(Encoding::Json));
        assert_eq!(negotiate(&accept("*/*"), V2), Some(Encoding::Json));
        let prefers_json = format!("{PROTOBUF_V2_ASKED};q=0.5, application/json");
        assert_eq!(negotiate(&accept(&prefers_json), V2), Some(Encoding::Json));
        assert_eq!(negotiate(&accept("application/yaml"), V2), None);
        assert_eq!(negotiate(&accept("application/json;q=0"), V2), None);
        assert_eq!(negotiate(&accept(PROTOBUF_V2), &[(JSON, Encoding::Json)]), None);
    }

    #[test]
    fn etags_and_hashes() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"OTHER\", W/\"ABC\""));
        assert!(not_modified(&headers, "\"ABC\""));
        assert!(!not_modified(&headers, "\"ABD\""));
        assert_eq!(hash_parameter(Some("hash=F00&timeout=32s")), Some("F00"));
        assert_eq!(hash_parameter(Some("timeout=32s")), None);
    }
}
