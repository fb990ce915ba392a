//! The path and query parameters of the operations, by the verb families that take them.
//!
//! Kubernetes generates these from its `ListOptions`, `CreateOptions`, `PatchOptions` and
//! `DeleteOptions` Go types, which k8s-openapi does not carry as schemas; the names, types and
//! meanings here are Kubernetes', the descriptions Keel's own.

use std::borrow::Cow;

/// Where a parameter travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
        }
    }
}

/// A parameter's JSON type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Integer,
}

impl Type {
    pub fn as_str(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Integer => "integer",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub location: Location,
    pub ty: Type,
    pub required: bool,
    pub description: Cow<'static, str>,
}

const fn query(name: &'static str, ty: Type, description: &'static str) -> Parameter {
    Parameter { name, location: Location::Query, ty, required: false, description: Cow::Borrowed(description) }
}

const ALLOW_WATCH_BOOKMARKS: Parameter = query(
    "allowWatchBookmarks",
    Type::Boolean,
    "Ask for BOOKMARK events in a watch; the server sends them when it chooses, so a client must not rely on \
     their timing. Ignored unless watching.",
);
const CONTINUE: Parameter = query(
    "continue",
    Type::String,
    "The continue token of the previous page of a list called with limit: the next page starts after it, at the \
     same resource version. An expired token answers 410 Gone. Not allowed with watch.",
);
const FIELD_SELECTOR: Parameter =
    query("fieldSelector", Type::String, "Only the objects whose fields match this selector. Defaults to all objects.");
const LABEL_SELECTOR: Parameter =
    query("labelSelector", Type::String, "Only the objects whose labels match this selector. Defaults to all objects.");
const LIMIT: Parameter = query(
    "limit",
    Type::Integer,
    "The most objects one list response holds; when more match, the list metadata carries a continue token for \
     the rest. Pages of one list are served at one resource version. Not allowed with watch.",
);
const RESOURCE_VERSION: Parameter = query(
    "resourceVersion",
    Type::String,
    "Which resource versions the read may be served from (see \
     https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions). Unset by default: the \
     newest data.",
);
const RESOURCE_VERSION_MATCH: Parameter = query(
    "resourceVersionMatch",
    Type::String,
    "How resourceVersion applies to a list: Exact or NotOlderThan. Unset by default.",
);
const SEND_INITIAL_EVENTS: Parameter = query(
    "sendInitialEvents",
    Type::Boolean,
    "With watch=true: start the watch with an ADDED event for every existing object, then a BOOKMARK annotated \
     k8s.io/initial-events-end, then the changes. Requires resourceVersionMatch=NotOlderThan.",
);
const TIMEOUT_SECONDS: Parameter =
    query("timeoutSeconds", Type::Integer, "End the list or watch call after this many seconds, active or not.");
const WATCH: Parameter = query(
    "watch",
    Type::Boolean,
    "Stream the changes to the objects (ADDED, MODIFIED and DELETED events) instead of listing them; start from \
     resourceVersion.",
);
const PRETTY: Parameter = query("pretty", Type::String, "If 'true', the response is indented.");
const DRY_RUN: Parameter = query(
    "dryRun",
    Type::String,
    "All: run the whole request (decoding, defaulting, admission, validation) and answer as the real call would, \
     without storing anything. Any other value is refused.",
);
const FIELD_MANAGER: Parameter = query(
    "fieldManager",
    Type::String,
    "The name of the actor making the change, recorded in managedFields: at most 128 printable characters.",
);
const FIELD_MANAGER_FOR_PATCH: Parameter = query(
    "fieldManager",
    Type::String,
    "The name of the actor making the change, recorded in managedFields: at most 128 printable characters. \
     Required for apply patches (application/apply-patch+yaml), optional for the other patch types.",
);
const FIELD_VALIDATION: Parameter = query(
    "fieldValidation",
    Type::String,
    "What the server does with unknown or duplicate fields in the body: Ignore drops them silently, Warn drops \
     them and says so in a Warning header (the default), Strict refuses the request with 400 naming them all.",
);
const FORCE: Parameter = query(
    "force",
    Type::Boolean,
    "For apply patches only: take over the fields other managers own instead of failing with a conflict.",
);
const GRACE_PERIOD_SECONDS: Parameter = query(
    "gracePeriodSeconds",
    Type::Integer,
    "Seconds before the object is deleted: 0 deletes at once, unset uses the kind's default. Must not be \
     negative.",
);
const ORPHAN_DEPENDENTS: Parameter = query(
    "orphanDependents",
    Type::Boolean,
    "Deprecated, use propagationPolicy: true orphans the dependents, false deletes them in the background.",
);
const PROPAGATION_POLICY: Parameter = query(
    "propagationPolicy",
    Type::String,
    "What garbage collection does with the dependents: Orphan leaves them, Background deletes them after the \
     object, Foreground before it. Not together with orphanDependents.",
);

/// `{namespace}` in a namespaced path.
pub fn namespace() -> Parameter {
    Parameter {
        name: "namespace",
        location: Location::Path,
        ty: Type::String,
        required: true,
        description: Cow::Borrowed("The namespace of the objects: a scope for names and for access."),
    }
}

/// `{name}` in an object's path.
pub fn name(kind: &str) -> Parameter {
    Parameter {
        name: "name",
        location: Location::Path,
        ty: Type::String,
        required: true,
        description: Cow::Owned(format!("The name of the {kind}.")),
    }
}

/// Every path takes `pretty`.
pub fn pretty() -> Parameter {
    PRETTY
}

/// list and watch.
pub fn list() -> Vec<Parameter> {
    vec![
        ALLOW_WATCH_BOOKMARKS,
        CONTINUE,
        FIELD_SELECTOR,
        LABEL_SELECTOR,
        LIMIT,
        RESOURCE_VERSION,
        RESOURCE_VERSION_MATCH,
        SEND_INITIAL_EVENTS,
        TIMEOUT_SECONDS,
        WATCH,
    ]
}

/// create and replace.
pub fn write() -> Vec<Parameter> {
    vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION]
}

/// patch.
pub fn patch() -> Vec<Parameter> {
    vec![DRY_RUN, FIELD_MANAGER_FOR_PATCH, FIELD_VALIDATION, FORCE]
}

/// delete.
pub fn delete() -> Vec<Parameter> {
    vec![DRY_RUN, GRACE_PERIOD_SECONDS, ORPHAN_DEPENDENTS, PROPAGATION_POLICY]
}

/// deletecollection: the selection of a list and the options of a delete.
pub fn delete_collection() -> Vec<Parameter> {
    let mut parameters = vec![
        CONTINUE,
        DRY_RUN,
        FIELD_SELECTOR,
        GRACE_PERIOD_SECONDS,
        LABEL_SELECTOR,
        LIMIT,
        ORPHAN_DEPENDENTS,
        PROPAGATION_POLICY,
        RESOURCE_VERSION,
        RESOURCE_VERSION_MATCH,
        SEND_INITIAL_EVENTS,
        TIMEOUT_SECONDS,
    ];
    parameters.sort_by_key(|p| p.name);
    parameters
}

/// A pod's log.
pub fn log() -> Vec<Parameter> {
    vec![
        query("container", Type::String, "The container whose log to read; may be left out when the pod has one."),
        query("follow", Type::Boolean, "Keep the response open and stream the log as it grows."),
        query("limitBytes", Type::Integer, "Stop after this many bytes of log."),
        query("previous", Type::Boolean, "The log of the container's previous run, if it restarted."),
        query("sinceSeconds", Type::Integer, "Only the lines of the last this many seconds."),
        query("tailLines", Type::Integer, "Only the last this many lines."),
        query("timestamps", Type::Boolean, "Start every line with its RFC 3339 timestamp."),
    ]
}

/// exec into a pod's container.
pub fn exec() -> Vec<Parameter> {
    vec![
        query("command", Type::String, "The command to run, one parameter per word (it does not go through a shell)."),
        query("container", Type::String, "The container to run it in; may be left out when the pod has one."),
        query("stderr", Type::Boolean, "Stream the command's standard error."),
        query("stdin", Type::Boolean, "Stream standard input to the command."),
        query("stdout", Type::Boolean, "Stream the command's standard output."),
        query("tty", Type::Boolean, "Give the command a terminal."),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verbs_take_kubernetes_parameter_names_and_types() {
        let names = |parameters: Vec<Parameter>| parameters.iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(names(write()), ["dryRun", "fieldManager", "fieldValidation"]);
        assert_eq!(names(patch()), ["dryRun", "fieldManager", "fieldValidation", "force"]);
        assert!(names(list()).contains(&"watch") && names(list()).contains(&"labelSelector"));
        let collection = names(delete_collection());
        assert!(collection.contains(&"labelSelector") && collection.contains(&"propagationPolicy"));
        assert!(!collection.contains(&"watch"), "deletecollection does not watch");
        let watch = list().into_iter().find(|p| p.name == "watch").expect("watch");
        assert_eq!(watch.ty, Type::Boolean);
        assert!(name("Pod").required && name("Pod").description.contains("Pod"));
    }
}
