//! Strict decoding of request bodies: unknown and duplicate fields, as `fieldValidation` sees them.
//!
//! Kubernetes decodes a body into the resource's Go type with a decoder that records every object
//! key the type does not declare (`unknown field "spec.foo"`) and every key repeated within one
//! JSON object (`duplicate field "metadata.name"`). With `fieldValidation=Strict` any such record
//! fails the request with `strict decoding error: ...`; with `Warn` each becomes a `Warning`.
//!
//! # How unknown fields are found
//! The body is parsed into an ordered tree that keeps every key, its document position and any
//! repeats (`Node`). The tree is then fed to the resource's k8s-openapi type through a small
//! `serde::Deserializer` of our own. k8s-openapi hands the full list of JSON field names of each
//! struct to `deserialize_struct`, so at every object the decoder knows exactly which keys the type
//! declares: a key outside that list is unknown *whatever its value*, including `null`, `{}` and
//! `[]`, and a declared key is never reported even when its value is null or empty and therefore
//! disappears when the typed object is serialized again. Maps (labels, data, resource lists) are
//! decoded with `deserialize_map` and accept any key. The subtree under an unknown key is not
//! visited, as in Go.
//!
//! # How duplicate fields are found
//! Before typed decoding, each object of the tree is collapsed: the first occurrence of a key keeps
//! its place, a later occurrence is recorded as a duplicate at its own path and merged into the
//! first the way Go's decoder does (objects merge key by key, anything else replaces). Duplicates
//! below an unknown key are dropped afterwards, since Go never descends there.
//!
//! # What comes back
//! The typed round trip of the body: declared fields only, nulls dropped, numeric quantities as
//! text. A resource this module has no type for (anything but the thirteen core kinds Keel serves)
//! is only checked for duplicates and returned as parsed.
//!
//! # Limits and errors
//! Nesting is bounded by [`MAX_DEPTH`]; deeper bodies are a syntax error, never a stack overflow.
//! Values of the wrong type (a string where a number belongs) and malformed quantities fail
//! decoding and are reported as [`StrictError::Syntax`], which callers answer with 400 like
//! Kubernetes does (a bad quantity carries Kubernetes' own text).
//!
//! # Known differences from Kubernetes
//! Kubernetes lists unknown and duplicate fields interleaved in document order; [`StrictError`]
//! keeps the two lists apart and its message names unknown fields first (each list is in document
//! order, and the `Warn` list from [`field_problems`] is fully interleaved). Server-side apply
//! reports unknown fields in its own words (`field not declared in schema`); that path is the
//! caller's. YAML follows YAML 1.2 (`yes` is a string), where kubectl's converter uses YAML 1.1.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validation::{QUANTITY_FORMAT_MSG, Quantity, go_quote};

/// Deepest nesting of objects and arrays a body may have. Real objects stay far below it (a pod
/// template inside a deployment is about fifteen levels); the limit keeps recursion bounded.
pub const MAX_DEPTH: usize = 100;

/// Why a body could not be accepted under `fieldValidation=Strict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictError {
    /// The body is not a well-formed object of the resource's type: malformed JSON or YAML, nesting
    /// beyond [`MAX_DEPTH`], a value of the wrong type, or a mismatched `apiVersion`/`kind`.
    /// Answered with 400 BadRequest.
    #[error("{0}")]
    Syntax(String),
    /// The body decoded, but named fields the type does not have or repeated a key. Each list is in
    /// document order and holds paths such as `spec.template.spec.containers[0].bogus`.
    #[error("{}", fields_message(.unknown, .duplicate))]
    Fields { unknown: Vec<String>, duplicate: Vec<String> },
}

impl StrictError {
    /// The text Kubernetes puts after `<Kind> in version "v1" cannot be handled as a <Kind>: `,
    /// e.g. `strict decoding error: unknown field "spec.foo", duplicate field "metadata.name"`.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

fn fields_message(unknown: &[String], duplicate: &[String]) -> String {
    let parts: Vec<String> = unknown
        .iter()
        .map(|path| problem_text(ProblemKind::Unknown, path))
        .chain(duplicate.iter().map(|path| problem_text(ProblemKind::Duplicate, path)))
        .collect();
    format!("strict decoding error: {}", parts.join(", "))
}

fn problem_text(kind: ProblemKind, path: &str) -> String {
    match kind {
        ProblemKind::Unknown => format!("unknown field {}", go_quote(path)),
        ProblemKind::Duplicate => format!("duplicate field {}", go_quote(path)),
    }
}

/// Decodes a JSON body for `resource` (a plural such as `pods`) and fails on any unknown or
/// duplicate field. On success returns the object as the typed round trip produces it: declared
/// fields only, nulls dropped, numeric quantities turned into text, timestamps re-printed.
pub fn decode_strict(resource: &str, body: &[u8]) -> Result<Value, StrictError> {
    strict_from(resource, parse_json(body)?)
}

/// [`decode_strict`] for a YAML body (`application/apply-patch+yaml`, `application/yaml`).
pub fn decode_strict_yaml(resource: &str, body: &[u8]) -> Result<Value, StrictError> {
    strict_from(resource, parse_yaml(body)?)
}

/// Decodes a JSON body for `fieldValidation=Warn`: the object (without its unknown fields) and one
/// warning per problem, in document order, worded `unknown field "spec.foo"` or
/// `duplicate field "metadata.name"`. Only [`StrictError::Syntax`] is returned as an error.
pub fn field_problems(resource: &str, body: &[u8]) -> Result<(Value, Vec<String>), StrictError> {
    warn_from(resource, parse_json(body)?)
}

/// [`field_problems`] for a YAML body.
pub fn field_problems_yaml(resource: &str, body: &[u8]) -> Result<(Value, Vec<String>), StrictError> {
    warn_from(resource, parse_yaml(body)?)
}

fn strict_from(resource: &str, root: Node) -> Result<Value, StrictError> {
    let (value, problems) = decode_tree(resource, root)?;
    if problems.is_empty() {
        return Ok(value);
    }
    let paths_of = |kind: ProblemKind| -> Vec<String> {
        problems.iter().filter(|p| p.kind == kind).map(|p| p.path.clone()).collect()
    };
    Err(StrictError::Fields { unknown: paths_of(ProblemKind::Unknown), duplicate: paths_of(ProblemKind::Duplicate) })
}

fn warn_from(resource: &str, root: Node) -> Result<(Value, Vec<String>), StrictError> {
    let (value, problems) = decode_tree(resource, root)?;
    Ok((value, problems.iter().map(|p| problem_text(p.kind, &p.path)).collect()))
}

/// Collapses duplicates, decodes into the resource's type and returns the round-tripped object with
/// all problems sorted into document order.
fn decode_tree(resource: &str, root: Node) -> Result<(Value, Vec<Problem>), StrictError> {
    let mut duplicates = Vec::new();
    let root = collapse(root, "", &mut duplicates);
    let sink = RefCell::new(Vec::new());
    let value = decode_typed(resource, &root, &sink)?;
    let unknown = sink.into_inner();
    duplicates.retain(|dup| !unknown.iter().any(|u| is_at_or_below(&dup.path, &u.path)));
    let mut problems = unknown;
    problems.extend(duplicates);
    problems.sort_by_key(|p| p.seq);
    Ok((value, problems))
}

fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

fn decode_typed(resource: &str, root: &Node, sink: &Sink) -> Result<Value, StrictError> {
    if !matches!(root, Node::Map(_)) {
        return Err(StrictError::Syntax("the request body must be an object".to_string()));
    }
    use k8s_openapi::api::discovery::v1 as discovery;
    use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};
    match resource {
        "namespaces" => round_trip::<core::Namespace>(root, sink),
        "nodes" => round_trip::<core::Node>(root, sink),
        "pods" => round_trip::<core::Pod>(root, sink),
        "services" => round_trip::<core::Service>(root, sink),
        "endpoints" => round_trip::<core::Endpoints>(root, sink),
        "endpointslices" => round_trip::<discovery::EndpointSlice>(root, sink),
        "configmaps" => round_trip::<core::ConfigMap>(root, sink),
        "secrets" => round_trip::<core::Secret>(root, sink),
        "events" => round_trip::<core::Event>(root, sink),
        "serviceaccounts" => round_trip::<core::ServiceAccount>(root, sink),
        "deployments" => round_trip::<apps::Deployment>(root, sink),
        "replicasets" => round_trip::<apps::ReplicaSet>(root, sink),
        "leases" => round_trip::<coordination::Lease>(root, sink),
        _ => untyped(root, sink),
    }
}

fn round_trip<T>(root: &Node, sink: &Sink) -> Result<Value, StrictError>
where
    T: for<'de> Deserialize<'de> + Serialize,
{
    let typed =
        T::deserialize(NodeDe::new(root, String::new(), sink)).map_err(|e| StrictError::Syntax(e.to_string()))?;
    serde_json::to_value(&typed).map_err(|e| StrictError::Syntax(e.to_string()))
}

/// A resource without a Rust type: only duplicates can be found.
fn untyped(root: &Node, sink: &Sink) -> Result<Value, StrictError> {
    Value::deserialize(NodeDe::new(root, String::new(), sink)).map_err(|e| StrictError::Syntax(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// The ordered tree.
// ---------------------------------------------------------------------------------------------

/// A parsed body that, unlike `serde_json::Value`, keeps key order, repeated keys and each key's
/// position in the document (for reporting problems in document order).
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    value: Node,
    /// Position of the key among all keys of the document, in reading order.
    seq: usize,
}

fn parse_json(body: &[u8]) -> Result<Node, StrictError> {
    let counter = Cell::new(0);
    let mut de = serde_json::Deserializer::from_slice(body);
    let node = NodeSeed { depth: 0, counter: &counter }.deserialize(&mut de).map_err(syntax)?;
    de.end().map_err(syntax)?;
    Ok(node)
}

fn parse_yaml(body: &[u8]) -> Result<Node, StrictError> {
    let counter = Cell::new(0);
    let de = serde_yaml::Deserializer::from_slice(body);
    NodeSeed { depth: 0, counter: &counter }.deserialize(de).map_err(syntax)
}

fn syntax(err: impl fmt::Display) -> StrictError {
    StrictError::Syntax(err.to_string())
}

/// Builds a [`Node`] from any serde format, numbering keys and refusing to nest past [`MAX_DEPTH`].
#[derive(Clone, Copy)]
struct NodeSeed<'c> {
    depth: usize,
    counter: &'c Cell<usize>,
}

impl NodeSeed<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("the object is nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(NodeSeed { depth: self.depth + 1, counter: self.counter })
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let inner = self.nested()?;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let seq = self.counter.get();
            self.counter.set(seq.saturating_add(1));
            let value = map.next_value_seed(inner)?;
            entries.push(Entry { key, value, seq });
        }
        Ok(Node::Map(entries))
    }
}

/// Reads an object key. JSON keys are strings; YAML also allows scalars, which are spelled out the
/// way Kubernetes' YAML-to-JSON conversion does (`1`, `true`, `null`).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Duplicate keys.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProblemKind {
    Unknown,
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    kind: ProblemKind,
    path: String,
    /// Document position, for sorting.
    seq: usize,
}

type Sink = RefCell<Vec<Problem>>;

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// Removes repeated keys from every object, recording each repeat (Go decodes every occurrence, so
/// repeats inside each occurrence are found too) and merging it into the first occurrence.
fn collapse(node: Node, path: &str, duplicates: &mut Vec<Problem>) -> Node {
    match node {
        Node::Seq(items) => Node::Seq(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| collapse(item, &format!("{path}[{i}]"), duplicates))
                .collect(),
        ),
        Node::Map(entries) => Node::Map(collapse_entries(entries, path, duplicates)),
        scalar => scalar,
    }
}

fn collapse_entries(entries: Vec<Entry>, path: &str, duplicates: &mut Vec<Problem>) -> Vec<Entry> {
    let mut kept: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let key_path = child_path(path, &entry.key);
        let value = collapse(entry.value, &key_path, duplicates);
        match index.get(&entry.key).and_then(|&at| kept.get_mut(at)) {
            Some(first) => {
                duplicates.push(Problem { kind: ProblemKind::Duplicate, path: key_path, seq: entry.seq });
                merge_into(&mut first.value, value);
            }
            None => {
                index.insert(entry.key.clone(), kept.len());
                kept.push(Entry { key: entry.key, value, seq: entry.seq });
            }
        }
    }
    kept
}

/// Go's decoder reuses an already decoded struct or map when a key repeats: objects merge key by
/// key (later wins), anything else is replaced. Both sides are already free of repeats.
fn merge_into(target: &mut Node, later: Node) {
    match (target, later) {
        (Node::Map(existing), Node::Map(additions)) => {
            for addition in additions {
                match existing.iter_mut().find(|e| e.key == addition.key) {
                    Some(slot) => merge_into(&mut slot.value, addition.value),
                    None => existing.push(addition),
                }
            }
        }
        (target, later) => *target = later,
    }
}

// ---------------------------------------------------------------------------------------------
// Typed decoding from the tree.
// ---------------------------------------------------------------------------------------------

/// Error raised while decoding the tree into a typed object, with the path where it happened.
#[derive(Debug)]
struct DecodeError {
    message: String,
    path: Option<String>,
    /// Kubernetes prints some decoding errors bare (a bad quantity); those never get a path.
    bare: bool,
}

impl DecodeError {
    /// Attaches `path` unless a deeper frame already did.
    fn at(mut self, path: &str) -> Self {
        if self.path.is_none() && !self.bare && !path.is_empty() {
            self.path = Some(path.to_string());
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "error decoding {}: {}", go_quote(path), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError { message: msg.to_string(), path: None, bare: false }
    }
}

/// Go decodes JSON null into a non-pointer field as a no-op, leaving the zero value; a scalar,
/// list, map or struct asked for where the tree holds null therefore gets its zero value.
macro_rules! null_as_zero {
    ($($method:ident => $visit:ident($zero:expr)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
                match self.node {
                    Node::Null => visitor.$visit($zero),
                    _ => self.deserialize_any(visitor),
                }
            }
        )*
    };
}

/// A `serde::Deserializer` over one [`Node`] that reports unknown struct keys to the sink.
struct NodeDe<'de, 's> {
    node: &'de Node,
    path: String,
    sink: &'s Sink,
}

impl<'de, 's> NodeDe<'de, 's> {
    fn new(node: &'de Node, path: String, sink: &'s Sink) -> Self {
        NodeDe { node, path, sink }
    }

    fn map_access(&self, entries: &'de [Entry], known: Option<&'static [&'static str]>) -> MapDe<'de, 's> {
        MapDe { entries: entries.iter(), known, path: self.path.clone(), sink: self.sink, pending: None }
    }
}

impl<'de> Deserializer<'de> for NodeDe<'de, '_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let result = match self.node {
            Node::Null => visitor.visit_unit(),
            Node::Bool(v) => visitor.visit_bool(*v),
            Node::I64(v) => visitor.visit_i64(*v),
            Node::U64(v) => visitor.visit_u64(*v),
            Node::F64(v) => visitor.visit_f64(*v),
            Node::Str(v) => visitor.visit_borrowed_str(v),
            Node::Seq(items) => {
                visitor.visit_seq(SeqDe { items: items.iter().enumerate(), path: self.path.clone(), sink: self.sink })
            }
            Node::Map(entries) => visitor.visit_map(self.map_access(entries, None)),
        };
        result.map_err(|e| e.at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.node {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        // k8s-openapi keeps quantities as text; Kubernetes refuses a malformed one while decoding.
        let malformed_quantity = match self.node {
            Node::Str(text) => Quantity::parse(text).is_none(),
            _ => false,
        };
        if name == "Quantity" && malformed_quantity {
            return Err(DecodeError { message: QUANTITY_FORMAT_MSG.to_string(), path: None, bare: true });
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let entries: &'de [Entry] = match self.node {
            Node::Map(entries) => entries,
            Node::Null => &[],
            _ => return self.deserialize_any(visitor),
        };
        let path = self.path.clone();
        visitor.visit_map(self.map_access(entries, Some(fields))).map_err(|e| e.at(&path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let result = match self.node {
            Node::Str(v) => visitor.visit_enum(v.as_str().into_deserializer()),
            Node::Map(entries) => {
                visitor.visit_enum(de::value::MapAccessDeserializer::new(self.map_access(entries, None)))
            }
            _ => Err(de::Error::custom("expected a string or a single-key object for an enumeration")),
        };
        result.map_err(|e| e.at(&self.path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.node {
            Node::Null => visitor.visit_seq(SeqDe { items: [].iter().enumerate(), path: self.path, sink: self.sink }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.node {
            Node::Null => visitor.visit_map(self.map_access(&[], None)),
            _ => self.deserialize_any(visitor),
        }
    }

    null_as_zero! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_str => visit_borrowed_str(""),
        deserialize_string => visit_borrowed_str(""),
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

struct SeqDe<'de, 's> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Node>>,
    path: String,
    sink: &'s Sink,
}

impl<'de> SeqAccess<'de> for SeqDe<'de, '_> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DecodeError> {
        match self.items.next() {
            Some((i, item)) => seed.deserialize(NodeDe::new(item, format!("{}[{i}]", self.path), self.sink)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'de, 's> {
    entries: std::slice::Iter<'de, Entry>,
    /// The field names of the struct being decoded; `None` for maps, where any key is fine.
    known: Option<&'static [&'static str]>,
    path: String,
    sink: &'s Sink,
    pending: Option<&'de Entry>,
}

impl<'de> MapAccess<'de> for MapDe<'de, '_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DecodeError> {
        for entry in self.entries.by_ref() {
            if let Some(known) = self.known
                && !known.contains(&entry.key.as_str())
            {
                let path = child_path(&self.path, &entry.key);
                self.sink.borrow_mut().push(Problem { kind: ProblemKind::Unknown, path, seq: entry.seq });
                continue;
            }
            self.pending = Some(entry);
            let key = de::value::BorrowedStrDeserializer::<DecodeError>::new(&entry.key);
            return seed.deserialize(key).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DecodeError> {
        let entry = self.pending.take().ok_or_else(|| de::Error::custom("a value was requested before its key"))?;
        seed.deserialize(NodeDe::new(&entry.value, child_path(&self.path, &entry.key), self.sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unknown(paths: &[&str]) -> StrictError {
        StrictError::Fields { unknown: paths.iter().map(|p| p.to_string()).collect(), duplicate: Vec::new() }
    }

    fn duplicate(paths: &[&str]) -> StrictError {
        StrictError::Fields { unknown: Vec::new(), duplicate: paths.iter().map(|p| p.to_string()).collect() }
    }

    const DEPLOYMENT: &str = r#"{
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [], "resources": {}}]}
            }
        },
        "status": {}
    }"#;

    #[test]
    fn valid_body_round_trips() {
        let value = decode_strict("deployments", DEPLOYMENT.as_bytes()).expect("valid deployment");
        assert_eq!(value["spec"]["replicas"], json!(2));
        assert_eq!(value["spec"]["template"]["spec"]["containers"][0]["image"], json!("nginx"));
        assert_eq!(value["kind"], json!("Deployment"));
    }

    #[test]
    fn null_and_empty_declared_fields_are_not_unknown() {
        let body = r#"{"metadata":{"name":"p","labels":{},"annotations":null,"ownerReferences":[]},
            "spec":{"containers":[{"name":"c","image":"i","ports":[],"env":null,"resources":{}}],
            "volumes":[],"nodeSelector":{}},"status":{}}"#;
        assert!(decode_strict("pods", body.as_bytes()).is_ok());
    }

    #[test]
    fn unknown_fields_are_found_at_depth_even_when_null_or_empty() {
        let body = r#"{"metadata":{"name":"p","bogusMeta":null},
            "spec":{"containers":[{"name":"c","image":"i","bogus":{}},{"name":"d","image":"i","ports":[{"containerPort":80,"hostPorts":[]}]}]},
            "extra":1}"#;
        let err = decode_strict("pods", body.as_bytes()).expect_err("unknown fields");
        assert_eq!(
            err,
            unknown(&[
                "metadata.bogusMeta",
                "spec.containers[0].bogus",
                "spec.containers[1].ports[0].hostPorts",
                "extra"
            ])
        );
    }

    #[test]
    fn subtree_of_unknown_field_is_not_visited() {
        let body = r#"{"metadata":{"name":"x"},"spec":{"bogus":{"a":1,"a":2,"b":{"c":3}}}}"#;
        assert_eq!(decode_strict("services", body.as_bytes()), Err(unknown(&["spec.bogus"])));
    }

    #[test]
    fn keys_of_maps_are_never_unknown() {
        let body = r#"{"metadata":{"name":"c","labels":{"anything/goes":"x"},"annotations":{"a":"b"}},
            "data":{"whatever.key":"v"},"binaryData":{"k":"AAAA"}}"#;
        assert!(decode_strict("configmaps", body.as_bytes()).is_ok());
    }

    #[test]
    fn duplicates_are_found_at_depth() {
        let body = r#"{"metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},
            "spec":{"template":{"spec":{"containers":[{"name":"c","image":"i","image":"j"}]}}}}"#;
        let err = decode_strict("deployments", body.as_bytes()).expect_err("duplicates");
        assert_eq!(err, duplicate(&["metadata.name", "metadata.labels.x", "spec.template.spec.containers[0].image"]));
        assert_eq!(
            err.message(),
            "strict decoding error: duplicate field \"metadata.name\", duplicate field \"metadata.labels.x\", \
             duplicate field \"spec.template.spec.containers[0].image\""
        );
    }

    #[test]
    fn duplicate_objects_merge_like_go() {
        let body = r#"{"metadata":{"name":"a"},"metadata":{"labels":{"k":"v"}},"data":{"x":"1"}}"#;
        let (value, warnings) = field_problems("configmaps", body.as_bytes()).expect("decodes");
        assert_eq!(warnings, vec!["duplicate field \"metadata\"".to_string()]);
        assert_eq!(value["metadata"]["name"], json!("a"));
        assert_eq!(value["metadata"]["labels"]["k"], json!("v"));
    }

    #[test]
    fn later_scalar_duplicate_wins() {
        let body = r#"{"metadata":{"name":"a"},"data":{"x":"1","x":"2"}}"#;
        let (value, _) = field_problems("configmaps", body.as_bytes()).expect("decodes");
        assert_eq!(value["data"]["x"], json!("2"));
    }

    #[test]
    fn message_names_unknown_then_duplicate() {
        let body = r#"{"metadata":{"name":"a","name":"b"},"spec":{"foo":1}}"#;
        let err = decode_strict("namespaces", body.as_bytes()).expect_err("problems");
        assert_eq!(
            err.message(),
            "strict decoding error: unknown field \"spec.foo\", duplicate field \"metadata.name\""
        );
    }

    #[test]
    fn warnings_are_in_document_order_and_unknown_fields_dropped() {
        let body = r#"{"metadata":{"name":"a","name":"b"},"spec":{"foo":1},"data":{}}"#;
        let (value, warnings) = field_problems("namespaces", body.as_bytes()).expect("decodes");
        assert_eq!(
            warnings,
            vec![
                "duplicate field \"metadata.name\"".to_string(),
                "unknown field \"spec.foo\"".to_string(),
                "unknown field \"data\"".to_string()
            ]
        );
        assert_eq!(value["metadata"]["name"], json!("b"));
        assert!(value["spec"].get("foo").is_none());
    }

    #[test]
    fn syntax_errors_do_not_panic() {
        for body in ["", "{", "{\"a\":}", "[1,2]", "nul", "{\"metadata\":{\"name\":\"a\"}} x", "\"str\""] {
            match decode_strict("pods", body.as_bytes()) {
                Err(StrictError::Syntax(_)) => {}
                other => panic!("{body:?} gave {other:?}"),
            }
        }
        assert!(matches!(decode_strict("widgets", b"[]"), Err(StrictError::Syntax(_))));
    }

    #[test]
    fn wrong_types_are_syntax_errors_with_a_path() {
        let body = r#"{"metadata":{"name":"w"},"spec":{"replicas":"three"}}"#;
        match decode_strict("deployments", body.as_bytes()) {
            Err(StrictError::Syntax(msg)) => assert!(msg.contains("\"spec.replicas\""), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        let body = r#"{"kind":"Service","metadata":{"name":"w"}}"#;
        assert!(matches!(decode_strict("pods", body.as_bytes()), Err(StrictError::Syntax(_))));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(decode_strict("pods", deep.as_bytes()), Err(StrictError::Syntax(_))));
        let nested_objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH + 5), "}".repeat(MAX_DEPTH + 5));
        assert!(matches!(decode_strict("configmaps", nested_objects.as_bytes()), Err(StrictError::Syntax(_))));
        let yaml = format!("{}1", "- ".repeat(MAX_DEPTH + 5));
        assert!(matches!(decode_strict_yaml("pods", yaml.as_bytes()), Err(StrictError::Syntax(_))));
    }

    #[test]
    fn numeric_quantities_are_accepted() {
        let body = r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i",
            "resources":{"limits":{"cpu":1,"memory":"64Mi"},"requests":{"cpu":0.5}}}]}}"#;
        let value = decode_strict("pods", body.as_bytes()).expect("quantities");
        assert_eq!(value["spec"]["containers"][0]["resources"]["limits"]["cpu"], json!("1"));
    }

    #[test]
    fn malformed_quantities_fail_decoding_like_kubernetes() {
        let body = r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i",
            "resources":{"limits":{"cpu":"lots"}}}]}}"#;
        assert_eq!(
            decode_strict("pods", body.as_bytes()),
            Err(StrictError::Syntax(
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                    .to_string()
            ))
        );
    }

    #[test]
    fn nulls_decode_as_zero_values_like_go() {
        let patch = r#"{"metadata":{"labels":{"gone":null},"annotations":null},"spec":{"replicas":null,
            "template":{"spec":{"containers":[{"name":"c","image":null,"ports":[{"containerPort":null}]}]}}}}"#;
        let (value, warnings) = field_problems("deployments", patch.as_bytes()).expect("null values decode");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(value["metadata"]["labels"]["gone"], json!(""));
        assert_eq!(
            decode_strict("pods", b"null"),
            Err(StrictError::Syntax("the request body must be an object".to_string()))
        );
    }

    #[test]
    fn yaml_bodies_report_unknown_and_duplicate_fields() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  nmae: b\ndata:\n  k: v\n  k: w\n";
        let err = decode_strict_yaml("configmaps", yaml.as_bytes()).expect_err("problems");
        assert_eq!(
            err,
            StrictError::Fields { unknown: vec!["metadata.nmae".to_string()], duplicate: vec!["data.k".to_string()] }
        );
        let ok = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n";
        assert_eq!(decode_strict_yaml("configmaps", ok.as_bytes()).expect("valid")["data"]["k"], json!("v"));
        assert!(matches!(decode_strict_yaml("configmaps", b"a: [\n"), Err(StrictError::Syntax(_))));
    }

    #[test]
    fn untyped_resources_still_find_duplicates() {
        let body = r#"{"metadata":{"name":"a"},"spec":{"x":1,"x":2}}"#;
        assert_eq!(decode_strict("widgets", body.as_bytes()), Err(duplicate(&["spec.x"])));
    }

    #[test]
    fn every_listed_resource_decodes_a_minimal_body() {
        for resource in [
            "namespaces",
            "nodes",
            "pods",
            "services",
            "endpoints",
            "endpointslices",
            "configmaps",
            "secrets",
            "events",
            "serviceaccounts",
            "deployments",
            "replicasets",
            "leases",
        ] {
            let body = br#"{"metadata":{"name":"a","bogus":true}}"#;
            assert_eq!(decode_strict(resource, body), Err(unknown(&["metadata.bogus"])), "{resource}");
        }
    }

    #[test]
    fn special_characters_in_paths_are_quoted_like_go() {
        let body = "{\"metadata\":{\"name\":\"a\"},\"we\\\"ird\":1}";
        let err = decode_strict("configmaps", body.as_bytes()).expect_err("unknown");
        assert_eq!(err.message(), "strict decoding error: unknown field \"we\\\"ird\"");
    }
}
