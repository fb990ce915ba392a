//! Query parameters as kube-apiserver decodes them. Each verb reads only its own options type
//! (GetOptions, ListOptions, CreateOptions, UpdateOptions, PatchOptions, DeleteOptions), so a
//! parameter another verb would read is ignored, as Kubernetes ignores it. Pure parsing.
//!
//! The conversions are apimachinery's (`runtime.Convert_Slice_string_To_*`): the first value
//! of a repeated parameter counts; a boolean is false only when absent, `false` or `0` (any
//! case) and true for anything else, the empty string included; an integer is Go's
//! `strconv.ParseInt`, whose error text is the message of the 400. Then the options are
//! validated as `k8s.io/apimachinery/.../validation` does, each problem a field cause of a 422
//! naming `<Kind>Options.meta.k8s.io`.

use crate::apiserver::status::ApiError;
use crate::registry::validation::{FieldCause, go_quote};

/// Longest `fieldManager` Kubernetes accepts (apimachinery's `FieldManagerMaxLength`).
pub const FIELD_MANAGER_MAX_BYTES: usize = 128;
/// Query parameters read at most; a longer query is refused rather than parsed.
pub const MAX_PARAMETERS: usize = 256;
/// The group options types belong to.
const META_GROUP: &str = "meta.k8s.io";

/// The query's `name=value` pairs in order, percent-decoded, `+` as space.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Params, ApiError> {
        let Some(raw) = raw else { return Ok(Params::default()) };
        let pairs: Vec<(String, String)> = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        if pairs.len() > MAX_PARAMETERS {
            return Err(ApiError::bad_request(format!("too many query parameters (at most {MAX_PARAMETERS})")));
        }
        Ok(Params(pairs))
    }

    /// The first value of `name`, as Go's `url.Values.Get`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.clone()).collect()
    }

    /// apimachinery's boolean: only `false` and `0` (any case) are false once present.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.first(name).map(|value| !matches!(value.to_ascii_lowercase().as_str(), "false" | "0"))
    }

    /// An int64 parameter; a bad one is a 400 with `strconv.ParseInt`'s text.
    pub fn int64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.first(name) {
            None => Ok(None),
            Some(text) => parse_int64(text).map(Some).map_err(ApiError::bad_request),
        }
    }

    fn string(&self, name: &str) -> Option<String> {
        self.first(name).map(str::to_string)
    }
}

/// Go's `strconv.ParseInt(text, 10, 64)`, with its error text.
fn parse_int64(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(text)));
    }
    text.parse::<i64>().map_err(|_| format!("strconv.ParseInt: parsing {}: value out of range", go_quote(text)))
}

/// How strictly a write checks fields it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// `resourceVersionMatch` of a list or watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionMatch {
    /// Exactly the state at the resourceVersion.
    Exact,
    /// Any state at least as new as the resourceVersion.
    NotOlderThan,
}

/// What a request's options say, decoded for its verb (fields of other verbs stay default).
#[derive(Debug, Default, PartialEq)]
pub struct Query {
    pub watch: bool,
    pub label_selector: String,
    pub field_selector: String,
    /// Page size; 0 or less means no paging (as Kubernetes treats it).
    pub limit: i64,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<VersionMatch>,
    /// A watch that starts with the current objects, ended by a bookmark (WatchList).
    pub send_initial_events: Option<bool>,
    pub timeout_seconds: Option<i64>,
    pub allow_watch_bookmarks: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: bool,
    /// `dryRun=All`: run every check, write nothing.
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    /// A delete's preconditions (only a DeleteOptions body carries them).
    pub preconditions: Option<Preconditions>,
    pub container: Option<String>,
}

/// The options type a request decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionsKind {
    Get,
    List,
    Create,
    Update,
    /// PatchOptions; `apply` is whether the body is an apply patch (which needs a manager and
    /// alone may carry `force`).
    Patch {
        apply: bool,
    },
    Delete,
    /// DeleteOptions and the ListOptions that choose what to delete.
    DeleteCollection,
}

impl Query {
    /// Decodes and validates the options of `kind` from `params`.
    pub fn decode(params: &Params, kind: OptionsKind) -> Result<Query, ApiError> {
        let mut query = Query { container: params.string("container"), ..Query::default() };
        match kind {
            OptionsKind::Get => query.resource_version = params.string("resourceVersion"),
            OptionsKind::List => query.read_list(params)?,
            OptionsKind::Create | OptionsKind::Update | OptionsKind::Patch { .. } => query.read_write(params, kind)?,
            OptionsKind::Delete => query.read_delete(params)?,
            OptionsKind::DeleteCollection => {
                query.read_list(params)?;
                query.read_delete(params)?;
            }
        }
        Ok(query)
    }

    fn read_list(&mut self, params: &Params) -> Result<(), ApiError> {
        self.label_selector = params.string("labelSelector").unwrap_or_default();
        self.field_selector = params.string("fieldSelector").unwrap_or_default();
        self.watch = params.flag("watch").unwrap_or(false);
        self.allow_watch_bookmarks = params.flag("allowWatchBookmarks").unwrap_or(false);
        self.resource_version = params.string("resourceVersion").filter(|rv| !rv.is_empty());
        self.timeout_seconds = params.int64("timeoutSeconds")?;
        self.limit = params.int64("limit")?.unwrap_or(0);
        self.continue_token = params.string("continue").filter(|token| !token.is_empty());
        self.send_initial_events = params.flag("sendInitialEvents");
        let match_text = params.string("resourceVersionMatch").unwrap_or_default();
        let causes = self.list_causes(&match_text);
        if !causes.is_empty() {
            return Err(ApiError::invalid(META_GROUP, "ListOptions", "", &causes));
        }
        self.resource_version_match = match match_text.as_str() {
            "Exact" => Some(VersionMatch::Exact),
            "NotOlderThan" => Some(VersionMatch::NotOlderThan),
            _ => None,
        };
        Ok(())
    }

    /// apimachinery's ValidateListOptions, with the WatchList feature on (so a watch may ask
    /// for its initial events, as client-go's and kube-rs's streaming lists do).
    fn list_causes(&self, match_text: &str) -> Vec<FieldCause> {
        let mut causes = Vec::new();
        let path = "resourceVersionMatch";
        let not_older = "NotOlderThan";
        if self.watch {
            if self.send_initial_events.is_some() && match_text != not_older {
                causes.push(forbidden(path, "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
            }
            if !match_text.is_empty() {
                if self.send_initial_events.is_none() {
                    causes.push(forbidden(
                        path,
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    ));
                }
                if match_text != not_older {
                    causes.push(not_supported(path, &go_quote(match_text), &[not_older]));
                }
                if self.continue_token.is_some() {
                    causes.push(forbidden(path, "resourceVersionMatch is forbidden when continue is provided"));
                }
            }
            return causes;
        }
        if !match_text.is_empty() {
            if self.resource_version.is_none() {
                causes.push(forbidden(path, "resourceVersionMatch is forbidden unless resourceVersion is provided"));
            }
            if self.continue_token.is_some() {
                causes.push(forbidden(path, "resourceVersionMatch is forbidden when continue is provided"));
            }
            if match_text != "Exact" && match_text != not_older {
                causes.push(not_supported(path, &go_quote(match_text), &["Exact", not_older, ""]));
            }
            if match_text == "Exact" && self.resource_version.as_deref() == Some("0") {
                causes.push(forbidden(path, "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""));
            }
        }
        if self.send_initial_events.is_some() {
            causes.push(forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"));
        }
        causes
    }

    fn read_write(&mut self, params: &Params, kind: OptionsKind) -> Result<(), ApiError> {
        let dry_run = params.all("dryRun");
        let manager = params.string("fieldManager").unwrap_or_default();
        let validation = params.string("fieldValidation").unwrap_or_default();
        let force = params.flag("force");
        let mut causes = Vec::new();
        let options_kind = match kind {
            OptionsKind::Create => "CreateOptions",
            OptionsKind::Update => "UpdateOptions",
            _ => "PatchOptions",
        };
        if let OptionsKind::Patch { apply } = kind {
            if !apply && force.is_some() {
                causes.push(forbidden("force", "may not be specified for non-apply patch"));
            }
            if apply && manager.is_empty() {
                causes.push(FieldCause {
                    reason: "FieldValueRequired",
                    message: "Required value: is required for apply patch".into(),
                    field: "fieldManager".into(),
                });
            }
        }
        causes.extend(field_manager_causes(&manager));
        causes.extend(dry_run_causes(&dry_run));
        if !matches!(validation.as_str(), "" | "Ignore" | "Warn" | "Strict") {
            causes.push(not_supported("fieldValidation", &go_quote(&validation), &["", "Ignore", "Strict", "Warn"]));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(META_GROUP, options_kind, "", &causes));
        }
        self.dry_run = !dry_run.is_empty();
        self.field_manager = Some(manager).filter(|m| !m.is_empty());
        self.force = force.unwrap_or(false);
        self.field_validation = match validation.as_str() {
            "Ignore" => FieldValidation::Ignore,
            "Strict" => FieldValidation::Strict,
            // Unset: kube-apiserver's default for a request without the parameter.
            _ => FieldValidation::Warn,
        };
        Ok(())
    }

    /// DeleteOptions from the query (a body, when sent, replaces them: see [`DeleteBody`]).
    fn read_delete(&mut self, params: &Params) -> Result<(), ApiError> {
        let options = DeleteBody {
            grace_period_seconds: params.int64("gracePeriodSeconds")?,
            propagation_policy: params.string("propagationPolicy"),
            orphan_dependents: params.flag("orphanDependents"),
            dry_run: params.all("dryRun"),
            ..DeleteBody::default()
        };
        self.apply_delete(&options)
    }

    /// Validates DeleteOptions (ValidateDeleteOptions) and takes them.
    pub fn apply_delete(&mut self, options: &DeleteBody) -> Result<(), ApiError> {
        let mut causes = Vec::new();
        if let (Some(_), Some(policy)) = (options.orphan_dependents, options.propagation_policy.as_deref()) {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: {}: orphanDependents and deletionPropagation cannot be both set",
                    go_quote(policy)
                ),
                field: "propagationPolicy".into(),
            });
        }
        if let Some(policy) = options.propagation_policy.as_deref() {
            if !matches!(policy, "Foreground" | "Background" | "Orphan") {
                causes.push(not_supported(
                    "propagationPolicy",
                    &go_quote(policy),
                    &["Foreground", "Background", "Orphan", "nil"],
                ));
            }
        }
        causes.extend(dry_run_causes(&options.dry_run));
        if !causes.is_empty() {
            return Err(ApiError::invalid(META_GROUP, "DeleteOptions", "", &causes));
        }
        self.dry_run = !options.dry_run.is_empty();
        self.grace_period_seconds = options.grace_period_seconds;
        self.propagation_policy = options.propagation_policy.clone();
        self.orphan_dependents = options.orphan_dependents;
        self.preconditions = options.preconditions.clone();
        Ok(())
    }
}

/// DeleteOptions as a body carries them (`kubectl delete` sends one); with a body, the query's
/// delete parameters are not read at all, as in kube-apiserver.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBody {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    #[serde(default)]
    pub dry_run: Vec<String>,
    pub preconditions: Option<Preconditions>,
}

/// What the object must still be for a delete to go ahead.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteBody {
    pub fn parse(body: &[u8]) -> Result<DeleteBody, ApiError> {
        serde_json::from_slice(body).map_err(|error| ApiError::bad_request(format!("invalid DeleteOptions: {error}")))
    }
}

fn forbidden(field: &str, detail: &str) -> FieldCause {
    FieldCause { reason: "FieldValueForbidden", message: format!("Forbidden: {detail}"), field: field.into() }
}

/// A NotSupported cause; `rendered` is the bad value as Kubernetes prints it.
fn not_supported(field: &str, rendered: &str, supported: &[&str]) -> FieldCause {
    let supported: Vec<String> = supported.iter().map(|value| go_quote(value)).collect();
    FieldCause {
        reason: "FieldValueNotSupported",
        message: format!("Unsupported value: {rendered}: supported values: {}", supported.join(", ")),
        field: field.into(),
    }
}

/// Only `All` is a dry-run value (ValidateDryRun); the values print as a JSON list.
fn dry_run_causes(values: &[String]) -> Vec<FieldCause> {
    if values.iter().all(|value| value == "All") {
        return Vec::new();
    }
    let rendered = serde_json::to_string(values).unwrap_or_default();
    vec![not_supported("dryRun", &rendered, &["All"])]
}

/// ValidateFieldManager: at most 128 bytes, printable characters only.
fn field_manager_causes(manager: &str) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    if manager.len() > FIELD_MANAGER_MAX_BYTES {
        causes.push(FieldCause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {FIELD_MANAGER_MAX_BYTES} bytes"),
            field: "fieldManager".into(),
        });
    }
    for (position, character) in manager.chars().enumerate() {
        if character.is_control() || matches!(character, '\u{ad}' | '\u{2028}' | '\u{2029}' | '\u{feff}') {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: {}: invalid character U+{:04X} (at position {position})",
                    go_quote(manager),
                    character as u32
                ),
                field: "fieldManager".into(),
            });
        }
    }
    causes
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(raw: &str) -> Params {
        Params::parse(Some(raw)).expect("params")
    }

    fn list(raw: &str) -> Result<Query, ApiError> {
        Query::decode(&params(raw), OptionsKind::List)
    }

    #[test]
    fn booleans_are_false_only_when_absent_false_or_zero() {
        for truthy in ["true", "True", "TRUE", "1", "t", "yes", ""] {
            assert!(list(&format!("watch={truthy}")).expect("q").watch, "{truthy:?}");
        }
        for falsy in ["false", "False", "FALSE", "0"] {
            assert!(!list(&format!("watch={falsy}")).expect("q").watch, "{falsy:?}");
        }
        assert!(!list("").expect("q").watch);
        assert!(list("watch=true&watch=false").expect("q").watch, "the first value counts");
    }

    #[test]
    fn integers_fail_with_go_texts() {
        let error = list("limit=abc").expect_err("bad");
        assert_eq!(error.code, http::StatusCode::BAD_REQUEST);
        assert_eq!(error.message, "strconv.ParseInt: parsing \"abc\": invalid syntax");
        let error = list("timeoutSeconds=99999999999999999999").expect_err("range");
        assert_eq!(error.message, "strconv.ParseInt: parsing \"99999999999999999999\": value out of range");
        assert_eq!(list("limit=-5").expect("negative is no paging").limit, -5);
        assert_eq!(list("limit=%2B7").expect("plus sign").limit, 7);
        assert!(Query::decode(&params("limit=abc"), OptionsKind::Create).is_ok(), "create ignores list options");
    }

    #[test]
    fn resource_version_match_rules() {
        let error = list("resourceVersionMatch=NotOlderThan").expect_err("needs rv");
        assert_eq!(error.code, http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            error.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
        );
        let error = list("resourceVersion=5&resourceVersionMatch=Newest").expect_err("unknown");
        assert!(
            error.message.ends_with(
                "resourceVersionMatch: Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\""
            ),
            "{}",
            error.message
        );
        let query = list("resourceVersion=5&resourceVersionMatch=Exact").expect("exact");
        assert_eq!(query.resource_version_match, Some(VersionMatch::Exact));
        assert!(list("sendInitialEvents=true").is_err(), "a list cannot ask for initial events");
        let watch = list("watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan").expect("watch list");
        assert_eq!(watch.send_initial_events, Some(true));
        assert!(list("watch=1&sendInitialEvents=true").is_err());
    }

    #[test]
    fn dry_run_accepts_only_all() {
        let query = Query::decode(&params("dryRun=All&fieldManager=me"), OptionsKind::Create).expect("q");
        assert!(query.dry_run);
        assert_eq!(query.field_manager.as_deref(), Some("me"));
        let error = Query::decode(&params("dryRun=Some"), OptionsKind::Create).expect_err("bad");
        assert_eq!(error.code, http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            error.message,
            "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: [\"Some\"]: supported values: \"All\""
        );
        let error = Query::decode(&params("dryRun=true"), OptionsKind::Delete).expect_err("bad");
        assert!(error.message.starts_with("DeleteOptions.meta.k8s.io"), "{}", error.message);
    }

    #[test]
    fn patch_options_rules() {
        let error = Query::decode(&params("force=false"), OptionsKind::Patch { apply: false }).expect_err("force");
        assert!(
            error.message.ends_with("force: Forbidden: may not be specified for non-apply patch"),
            "{}",
            error.message
        );
        let error = Query::decode(&params(""), OptionsKind::Patch { apply: true }).expect_err("manager");
        assert!(error.message.ends_with("fieldManager: Required value: is required for apply patch"));
        let query = Query::decode(&params("fieldManager=a&force=true"), OptionsKind::Patch { apply: true }).expect("q");
        assert!(query.force);
        let long = "m".repeat(129);
        let error = Query::decode(&params(&format!("fieldManager={long}")), OptionsKind::Update).expect_err("long");
        assert!(error.message.ends_with("fieldManager: Too long: may not be more than 128 bytes"));
        let error = Query::decode(&params("fieldValidation=Sometimes"), OptionsKind::Update).expect_err("fv");
        assert!(error.message.contains("fieldValidation: Unsupported value: \"Sometimes\""), "{}", error.message);
    }

    #[test]
    fn delete_options_rules() {
        let query = Query::decode(&params("gracePeriodSeconds=0&propagationPolicy=Foreground"), OptionsKind::Delete)
            .expect("q");
        assert_eq!(query.grace_period_seconds, Some(0));
        assert_eq!(query.propagation_policy.as_deref(), Some("Foreground"));
        let error = Query::decode(&params("propagationPolicy=Later"), OptionsKind::Delete).expect_err("bad");
        assert!(
            error.message.ends_with(
                "propagationPolicy: Unsupported value: \"Later\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ),
            "{}",
            error.message
        );
        assert!(Query::decode(&params("gracePeriodSeconds=soon"), OptionsKind::Delete).is_err());
        let body = DeleteBody::parse(br#"{"propagationPolicy":"Background","dryRun":["All"]}"#).expect("body");
        let mut query = Query::default();
        query.apply_delete(&body).expect("valid");
        assert!(query.dry_run);
    }

    #[test]
    fn query_text_is_percent_decoded() {
        let query = list("fieldSelector=metadata.name%3Dx&labelSelector=app+in+(a%2Cb)").expect("q");
        assert_eq!(query.field_selector, "metadata.name=x");
        assert_eq!(query.label_selector, "app in (a,b)");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
