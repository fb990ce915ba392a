//! Field paths and field sets, and their `FieldsV1` encoding.
//!
//! A path names one field of an object: `.spec.replicas`, `.data.key`, an item of a list map
//! (`.spec.containers[name="main"]`), a value of a set (`.metadata.finalizers[="a"]`) or, in lists
//! without keys, a position (`[0]`). A [`FieldSet`] is what one manager owns. It is a tree: at
//! every level it holds the *members* (the paths it contains) and the *children* (the subsets
//! below a path). The two are independent: `.spec.strategy.rollingUpdate` can be a member (the
//! manager created the object) while `.spec.strategy.rollingUpdate.maxSurge` is one too, or only
//! the descendant can be.
//!
//! `FieldsV1` is the JSON form in `metadata.managedFields`: every path element becomes a key
//! (`f:<name>`, `k:<key fields as JSON>`, `v:<value as JSON>`, `i:<index>`), whose value holds the
//! children; a member with children also carries the key `"."`; a member without children is
//! `{}`. Paths print as Kubernetes prints them in conflict messages.
//!
//! The set operations follow Kubernetes' structured-merge-diff: [`FieldSet::difference`] and
//! [`FieldSet::intersection`] work member by member (taking a parent out of a set leaves its
//! children), [`FieldSet::recursive_difference`] also drops everything below a removed member.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// Deepest `FieldsV1` nesting decoded (bounds work on hostile `managedFields`).
pub const MAX_DEPTH: usize = 64;

/// One step of a [`Path`].
#[derive(Clone, Debug)]
pub enum PathElement {
    /// A field of an object (or a key of a map).
    Field(String),
    /// The item of a list map whose key fields have these values, sorted by field name.
    Key(Vec<(String, Value)>),
    /// The item of a set with this (scalar) value.
    Value(Value),
    /// A position in a list that has no keys.
    Index(usize),
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

impl PathElement {
    /// The `FieldsV1` key of this element: `f:name`, `k:{"name":"main"}`, `v:"a"`, `i:0`.
    #[must_use]
    pub fn to_fields_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let object: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(object))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses a `FieldsV1` key; `Ok(None)` for a prefix this version does not know (Kubernetes
    /// skips those so newer encodings survive).
    pub fn from_fields_key(key: &str) -> Result<Option<PathElement>, FieldsError> {
        let bad = || FieldsError::BadPathElement(key.to_string());
        let Some((prefix, rest)) = key.split_once(':') else { return Ok(None) };
        let element = match prefix {
            "f" => PathElement::Field(rest.to_string()),
            "k" => {
                let Value::Object(fields) = serde_json::from_str::<Value>(rest).map_err(|_| bad())? else {
                    return Err(bad());
                };
                // A Map iterates in key order, which is the order keys are kept in.
                PathElement::Key(fields.into_iter().collect())
            }
            "v" => PathElement::Value(serde_json::from_str(rest).map_err(|_| bad())?),
            "i" => PathElement::Index(rest.parse().map_err(|_| bad())?),
            _ => return Ok(None),
        };
        Ok(Some(element))
    }

    /// The variant's rank in Kubernetes' order of path elements.
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((name_a, value_a), (name_b, value_b)) in a.iter().zip(b) {
                    let order = name_a.cmp(name_b).then_with(|| compare_values(value_a, value_b));
                    if order != Ordering::Equal {
                        return order;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    /// `.name`, `[name="main",port=80]`, `[="a"]`, `[0]`, as Kubernetes prints paths.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> =
                    fields.iter().map(|(name, value)| format!("{name}={}", display_value(value))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(value) => write!(f, "[={}]", display_value(value)),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path as Kubernetes prints it: `.spec.template.spec.containers[name="main"].image`.
#[must_use]
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(PathElement::to_string).collect()
}

/// A value as Go's `%v`/`%q` print it inside a path (strings quoted).
fn display_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::String(text) => go_quote(text),
        Value::Array(items) => format!("[{}]", items.iter().map(display_value).collect::<Vec<_>>().join(",")),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", display_value(v))).collect(),
        other => other.to_string(),
    }
}

/// A double-quoted string with Go's escapes for quotes, backslashes and control characters.
fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Kubernetes' total order of values: numbers (compared numerically), then strings, booleans,
/// lists, maps and null.
#[must_use]
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (item_x, item_y) in x.iter().zip(y) {
                let order = compare_values(item_x, item_y);
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((key_x, value_x), (key_y, value_y)) in x.iter().zip(y) {
                let order = key_x.cmp(key_y).then_with(|| compare_values(value_x, value_y));
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Ordering {
    let as_integer = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (as_integer(x), as_integer(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

/// Deep equality in which numbers compare by value (`1` equals `1.0`), as Kubernetes compares.
#[must_use]
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(key, value)| y.get(key).is_some_and(|other| values_equal(value, other)))
        }
        _ => a == b,
    }
}

/// A `FieldsV1` document that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("fieldsV1 must be a JSON object")]
    NotAnObject,
    #[error("parsing key as path element: {0:?}")]
    BadPathElement(String),
    #[error("fieldsV1 nests more than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A set of field paths (what one manager owns, or what changed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The paths of this level that are in the set.
    members: BTreeSet<PathElement>,
    /// The non-empty subsets below paths of this level. A child does not make its path a member.
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    #[must_use]
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// A set of the given paths.
    #[must_use]
    pub fn of(paths: &[Path]) -> FieldSet {
        let mut set = FieldSet::new();
        for path in paths {
            set.insert(path);
        }
        set
    }

    /// No path is in the set (children are never kept empty).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path`; its parents are not added. The empty path (the whole object) is never owned.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else { return };
        let mut set = self;
        for element in parents {
            set = set.children.entry(element.clone()).or_default();
        }
        set.members.insert(last.clone());
    }

    /// `path` is a member.
    #[must_use]
    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else { return false };
        let mut set = self;
        for element in parents {
            match set.children.get(element) {
                Some(child) => set = child,
                None => return false,
            }
        }
        set.members.contains(last)
    }

    /// `element` is a member of this level.
    #[must_use]
    pub fn has_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    /// The subset below `element` (paths relative to it), if any.
    #[must_use]
    pub fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    #[must_use]
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// Adds every path of `other`, in place (what [`union`](Self::union) returns).
    pub fn extend(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            match self.children.get_mut(element) {
                Some(mine) => mine.extend(child),
                None => {
                    self.children.insert(element.clone(), child.clone());
                }
            }
        }
    }

    /// Takes out the members of `other`, in place (what [`difference`](Self::difference)
    /// returns).
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.is_empty() {
            return;
        }
        self.members.retain(|member| !other.members.contains(member));
        self.children.retain(|element, child| {
            if let Some(theirs) = other.children.get(element) {
                child.subtract(theirs);
            }
            !child.is_empty()
        });
    }

    /// Takes out the members of `other` and everything below them, in place (what
    /// [`recursive_difference`](Self::recursive_difference) returns).
    pub fn subtract_recursive(&mut self, other: &FieldSet) {
        if other.is_empty() {
            return;
        }
        self.members.retain(|member| !other.members.contains(member));
        self.children.retain(|element, child| {
            if other.members.contains(element) {
                return false;
            }
            if let Some(theirs) = other.children.get(element) {
                child.subtract_recursive(theirs);
            }
            !child.is_empty()
        });
    }

    /// The members in both sets, level by level.
    #[must_use]
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let common = child.intersection(other.children.get(element)?);
                (!common.is_empty()).then(|| (element.clone(), common))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The members of `self` that are not members of `other`, level by level: taking a parent
    /// out leaves its children, taking children out leaves the parent.
    #[must_use]
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Like [`difference`](Self::difference), but a member of `other` also takes out everything
    /// below it.
    #[must_use]
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(element, _)| !other.members.contains(element))
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(theirs) => child.recursive_difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The set plus every object field that has owned paths below it. Kubernetes does this before
    /// removing what an applier stopped applying, so that giving up everything in a struct field
    /// gives up the field itself. (Keys of maps never have children in the served kinds: every map
    /// holds scalars, so every field with children is a struct field.)
    #[must_use]
    pub fn with_parent_fields(&self) -> FieldSet {
        let mut members = self.members.clone();
        members.extend(self.children.keys().filter(|e| matches!(e, PathElement::Field(_))).cloned());
        let children = self.children.iter().map(|(e, child)| (e.clone(), child.with_parent_fields())).collect();
        FieldSet { members, children }
    }

    /// Every member path, in Kubernetes' order: a level's members first, then its children's.
    #[must_use]
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            out.push(path);
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` form (`{"f:data": {"f:key": {}}}`).
    #[must_use]
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        let elements: BTreeSet<&PathElement> = self.members.iter().chain(self.children.keys()).collect();
        for element in elements {
            let mut inner = match self.children.get(element) {
                Some(child) => match child.to_fields_v1() {
                    Value::Object(inner) => inner,
                    _ => Map::new(),
                },
                None => Map::new(),
            };
            if self.members.contains(element) && !inner.is_empty() {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            map.insert(element.to_fields_key(), Value::Object(inner));
        }
        Value::Object(map)
    }

    /// Parses `FieldsV1`.
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet, FieldsError> {
        let Value::Object(map) = fields else { return Err(FieldsError::NotAnObject) };
        Ok(read_level(map, 0)?.0)
    }
}

/// One level of `FieldsV1`: the subset it describes and whether the path holding it is a member
/// (it says `"."`, or it describes nothing below).
fn read_level(map: &Map<String, Value>, depth: usize) -> Result<(FieldSet, bool), FieldsError> {
    if depth >= MAX_DEPTH {
        return Err(FieldsError::TooDeep);
    }
    let mut set = FieldSet::new();
    let mut dotted = false;
    let mut described = false;
    for (key, value) in map {
        if key == "." {
            dotted = true;
            continue;
        }
        let Some(element) = PathElement::from_fields_key(key)? else { continue };
        let Value::Object(inner) = value else { return Err(FieldsError::NotAnObject) };
        described = true;
        let (child, member) = read_level(inner, depth + 1)?;
        if member {
            set.members.insert(element.clone());
        }
        if !child.is_empty() {
            set.children.insert(element, child);
        }
    }
    Ok((set, dotted || !described))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    fn key(fields: &[(&str, Value)]) -> PathElement {
        PathElement::Key(fields.iter().map(|(n, v)| (n.to_string(), v.clone())).collect())
    }

    #[test]
    fn fields_v1_round_trips_members_children_and_dots() {
        let fields = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {}}}},
            "f:finalizers": {"v:\"a\"": {}},
            "f:args": {"i:0": {}},
        });
        let set = FieldSet::from_fields_v1(&fields).expect("decodes");
        let main = key(&[("name", json!("main"))]);
        assert!(set.has(&[f("metadata"), f("labels")]), "a '.' makes the path a member");
        assert!(set.has(&[f("metadata"), f("labels"), f("app")]));
        assert!(!set.has(&[f("metadata")]), "a path with children only is not a member");
        assert!(set.has(&[f("spec"), f("containers"), main.clone()]));
        assert!(set.has(&[f("spec"), f("containers"), main, f("image")]));
        assert!(set.has(&[f("finalizers"), PathElement::Value(json!("a"))]));
        assert!(set.has(&[f("args"), PathElement::Index(0)]));
        assert_eq!(set.to_fields_v1(), fields);
    }

    #[test]
    fn keys_with_several_fields_encode_sorted_and_compact() {
        let port = key(&[("containerPort", json!(80)), ("protocol", json!("TCP"))]);
        assert_eq!(port.to_fields_key(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        let parsed = PathElement::from_fields_key(r#"k:{"protocol":"TCP","containerPort":80}"#).expect("ok");
        assert_eq!(parsed, Some(port.clone()));
        assert_eq!(port.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    }

    #[test]
    fn paths_print_as_kubernetes_prints_them() {
        let path =
            vec![f("spec"), f("template"), f("spec"), f("containers"), key(&[("name", json!("main"))]), f("image")];
        assert_eq!(path_string(&path), r#".spec.template.spec.containers[name="main"].image"#);
        assert_eq!(
            path_string(&[f("metadata"), f("finalizers"), PathElement::Value(json!("x"))]),
            r#".metadata.finalizers[="x"]"#
        );
        assert_eq!(path_string(&[f("a"), PathElement::Index(2)]), ".a[2]");
        assert_eq!(display_value(&json!("q\"\n")), r#""q\"\n""#);
    }

    #[test]
    fn unknown_prefixes_are_skipped_and_bad_documents_refused() {
        let set = FieldSet::from_fields_v1(&json!({"x:future": {}, "f:a": {}})).expect("decodes");
        assert_eq!(set, FieldSet::of(&[vec![f("a")]]));
        assert_eq!(FieldSet::from_fields_v1(&json!([])), Err(FieldsError::NotAnObject));
        assert_eq!(FieldSet::from_fields_v1(&json!({"f:a": 1})), Err(FieldsError::NotAnObject));
        assert!(matches!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})), Err(FieldsError::BadPathElement(_))));
        assert!(matches!(FieldSet::from_fields_v1(&json!({"i:x": {}})), Err(FieldsError::BadPathElement(_))));
        let mut deep = json!({});
        for _ in 0..(MAX_DEPTH + 1) {
            deep = json!({ "f:a": deep });
        }
        assert_eq!(FieldSet::from_fields_v1(&deep), Err(FieldsError::TooDeep));
    }

    #[test]
    fn set_operations_work_member_by_member() {
        let a = FieldSet::of(&[vec![f("spec")], vec![f("spec"), f("replicas")], vec![f("data"), f("x")]]);
        let b = FieldSet::of(&[vec![f("spec")], vec![f("data"), f("x")], vec![f("data"), f("y")]]);
        assert_eq!(
            a.difference(&b),
            FieldSet::of(&[vec![f("spec"), f("replicas")]]),
            "parent - parent keeps the child"
        );
        assert_eq!(a.recursive_difference(&b), FieldSet::new(), "a removed member takes its children");
        assert_eq!(a.intersection(&b), FieldSet::of(&[vec![f("spec")], vec![f("data"), f("x")]]));
        let union = a.union(&b);
        assert!(union.has(&[f("data"), f("y")]) && union.has(&[f("spec"), f("replicas")]));
        assert!(a.difference(&a).is_empty());
        let (mut in_place, mut recursive, mut extended) = (a.clone(), a.clone(), a.clone());
        in_place.subtract(&b);
        recursive.subtract_recursive(&b);
        extended.extend(&b);
        assert_eq!(in_place, a.difference(&b), "subtract is difference in place");
        assert_eq!(recursive, a.recursive_difference(&b));
        assert_eq!(extended, a.union(&b));
        let nested = FieldSet::of(&[vec![f("spec"), f("template"), f("spec"), key(&[("name", json!("c"))])]]);
        let named = nested.with_parent_fields();
        assert!(named.has(&[f("spec")]) && named.has(&[f("spec"), f("template"), f("spec")]));
        assert!(!named.has(&[f("spec"), f("template"), f("spec"), key(&[("name", json!("c"))]), f("x")]));
    }

    #[test]
    fn paths_come_members_first_then_children_in_order() {
        let set =
            FieldSet::of(&[vec![f("spec"), f("replicas")], vec![f("data")], vec![f("metadata"), f("labels"), f("a")]]);
        let printed: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(printed, vec![".data", ".metadata.labels.a", ".spec.replicas"]);
    }

    #[test]
    fn values_order_numbers_before_strings_and_compare_numerically() {
        assert_eq!(compare_values(&json!(2), &json!(10)), Ordering::Less);
        assert_eq!(compare_values(&json!(1), &json!("a")), Ordering::Less);
        assert!(values_equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!values_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(f("z") < key(&[("a", json!(1))]), "fields sort before keys");
    }
}
