//! Objects read through the type table: the path element of a list item, the field set of an
//! object ([`to_field_set`]), and what changed between two objects ([`compare`]).
//!
//! The rules are structured-merge-diff's:
//! - a scalar, `null`, an atomic object or list, and every list the table does not describe is
//!   a *leaf*: owned, compared and replaced whole;
//! - an object's fields are visited one by one; a field whose value is `null` or `{}` is a member
//!   itself (there is nothing below it to own);
//! - a list map's items are visited by key (`k:{"name":"main"}`), a set's by value; every item is
//!   a member, and an item that appears twice is owned whole, without its fields;
//! - comparing marks leaves that changed as *modified*, and paths present on one side only as
//!   *added* or *removed*, containers included.
//!
//! A value whose shape does not match the table (an object where a list was expected) is
//! treated as a leaf rather than refused: validation reports such objects, this module only
//! decides ownership.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, MAX_DEPTH, Path, PathElement, path_string, values_equal};
use super::schema::{FieldType, Item, Key, StructType};

/// What the table says about a value.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Nothing: objects merge field by field, lists are atomic, scalars are leaves.
    Untyped,
    /// An object with described fields.
    Struct(&'static StructType),
    /// Owned whole.
    Atomic,
    /// A list map.
    ListMap(&'static [Key], Item),
    /// A set of scalars.
    Set,
}

impl Shape {
    /// The shape of a kind's objects (untyped for kinds the table does not know).
    #[must_use]
    pub fn root(group: &str, kind: &str) -> Shape {
        super::schema::root(group, kind).map_or(Shape::Untyped, Shape::Struct)
    }

    fn of_field(ty: FieldType) -> Shape {
        match ty {
            FieldType::Struct(inner) => Shape::Struct(inner),
            FieldType::AtomicStruct(_) | FieldType::AtomicMap => Shape::Atomic,
            FieldType::ListMap { keys, item } => Shape::ListMap(keys, item),
            FieldType::Set => Shape::Set,
        }
    }

    /// The shape of the field `name` of an object of this shape.
    #[must_use]
    pub fn field(self, name: &str) -> Shape {
        match self {
            Shape::Struct(ty) => ty.field(name).map_or(Shape::Untyped, |field| Shape::of_field(field.ty)),
            _ => Shape::Untyped,
        }
    }

    /// The field is a non-pointer struct in Go: an empty object has it as `{}`.
    fn zero_present(self, name: &str) -> bool {
        matches!(self, Shape::Struct(ty) if ty.field(name).is_some_and(|field| field.zero_present))
    }
}

/// How a (non-atomic) list identifies its items.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ListKind {
    Map(&'static [Key], Item),
    Set,
}

impl ListKind {
    pub(crate) fn item_shape(self) -> Shape {
        match self {
            ListKind::Map(_, Item::Struct(ty)) => Shape::Struct(ty),
            ListKind::Map(_, Item::Atomic(_)) => Shape::Atomic,
            ListKind::Set => Shape::Untyped,
        }
    }
}

/// How one value is walked.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node {
    Leaf,
    /// An object, its fields described by the shape.
    Object(Shape),
    List(ListKind),
}

pub(crate) fn node(shape: Shape, value: &Value) -> Node {
    match (shape, value) {
        (Shape::Atomic, _) => Node::Leaf,
        (Shape::Struct(_) | Shape::Untyped, Value::Object(_)) => Node::Object(shape),
        (Shape::ListMap(keys, item), Value::Array(_)) => Node::List(ListKind::Map(keys, item)),
        (Shape::Set, Value::Array(_)) => Node::List(ListKind::Set),
        _ => Node::Leaf,
    }
}

/// The node of a value seen on two sides: `null` takes the other side's form (as Kubernetes
/// treats it), different forms make a leaf.
pub(crate) fn joint_node(shape: Shape, lhs: Option<&Value>, rhs: Option<&Value>) -> Node {
    let present = |v: Option<&Value>| v.filter(|v| !v.is_null()).map(|v| node(shape, v));
    match (present(lhs), present(rhs)) {
        (Some(a), Some(b)) => match (a, b) {
            (Node::Object(_), Node::Object(_)) | (Node::List(_), Node::List(_)) => a,
            _ => Node::Leaf,
        },
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => Node::Leaf,
    }
}

/// `None`, `null`, `{}` or `[]`: a container with nothing to visit.
pub(crate) fn is_emptyish(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// An object that cannot be read through the type table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypedError {
    #[error("{path}: element {index}: {reason}")]
    Item { path: String, index: usize, reason: String },
    #[error("{path}: duplicate entries for key {key}")]
    Duplicate { path: String, key: String },
    #[error("{path}: nested more than {MAX_DEPTH} levels deep")]
    TooDeep { path: String },
}

pub(crate) fn check_depth(path: &[PathElement]) -> Result<(), TypedError> {
    if path.len() > MAX_DEPTH {
        return Err(TypedError::TooDeep { path: path_string(&path[..MAX_DEPTH]) });
    }
    Ok(())
}

/// The path element that identifies `item` in a list of `kind`.
fn item_element(kind: ListKind, item: &Value) -> Result<PathElement, String> {
    match kind {
        ListKind::Map(keys, _) => {
            let fields = match item {
                Value::Null => return Err("associative list with keys may not have a null element".into()),
                Value::Object(fields) => fields,
                _ => return Err("associative list with keys may not have non-map elements".into()),
            };
            let mut key = Vec::with_capacity(keys.len());
            for Key { name, default } in keys {
                match (fields.get(*name), default) {
                    (Some(value), _) => key.push((name.to_string(), value.clone())),
                    (None, Some(default)) => key.push((name.to_string(), default.to_value())),
                    (None, None) => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {name:?} (and doesn't have default value)"
                        ));
                    }
                }
            }
            key.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(key))
        }
        ListKind::Set => match item {
            Value::Object(_) => Err("associative list without keys has an element that's a map type".into()),
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => Err("associative list without keys has an element that's an explicit null".into()),
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
    }
}

/// The items of a list by path element: the distinct elements in first-seen order, the element
/// of each item in list order, and the items of each element (more than one when the list
/// repeats a key).
pub(crate) struct Indexed<'a> {
    pub order: Vec<PathElement>,
    pub positions: Vec<PathElement>,
    pub items: BTreeMap<PathElement, Vec<&'a Value>>,
}

pub(crate) fn index_items<'a>(
    kind: ListKind,
    list: &'a [Value],
    path: &[PathElement],
) -> Result<Indexed<'a>, TypedError> {
    let mut indexed = Indexed {
        order: Vec::with_capacity(list.len()),
        positions: Vec::with_capacity(list.len()),
        items: BTreeMap::new(),
    };
    for (index, item) in list.iter().enumerate() {
        let element =
            item_element(kind, item).map_err(|reason| TypedError::Item { path: path_string(path), index, reason })?;
        indexed.positions.push(element.clone());
        match indexed.items.get_mut(&element) {
            Some(seen) => seen.push(item),
            None => {
                indexed.order.push(element.clone());
                indexed.items.insert(element, vec![item]);
            }
        }
    }
    Ok(indexed)
}

pub(crate) fn list_items(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

pub(crate) fn object_fields(value: Option<&Value>) -> Option<&Map<String, Value>> {
    match value {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Every field of `value` (of the given shape), as Kubernetes computes an applier's set.
pub fn to_field_set(value: &Value, shape: Shape) -> Result<FieldSet, TypedError> {
    let mut set = FieldSet::new();
    fields_of(value, shape, &mut Vec::new(), &mut set)?;
    Ok(set)
}

fn fields_of(value: &Value, shape: Shape, path: &mut Path, set: &mut FieldSet) -> Result<(), TypedError> {
    check_depth(path)?;
    match node(shape, value) {
        Node::Leaf => set.insert(path),
        Node::Object(shape) => {
            for (name, child) in object_fields(Some(value)).into_iter().flatten() {
                path.push(PathElement::Field(name.clone()));
                fields_of(child, shape.field(name), path, set)?;
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Node::List(kind) => {
            let indexed = index_items(kind, list_items(Some(value)), path)?;
            for element in indexed.order {
                let items = &indexed.items[&element];
                path.push(element);
                if let [only] = items.as_slice() {
                    fields_of(only, kind.item_shape(), path, set)?;
                }
                set.insert(path);
                path.pop();
            }
        }
    }
    Ok(())
}

/// What changed from one object to another.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub removed: FieldSet,
    pub modified: FieldSet,
    pub added: FieldSet,
}

impl Comparison {
    /// The comparison without `fields` (and everything below them): changes nobody may own.
    #[must_use]
    pub fn excluding(mut self, fields: &FieldSet) -> Comparison {
        self.removed.subtract_recursive(fields);
        self.modified.subtract_recursive(fields);
        self.added.subtract_recursive(fields);
        self
    }

    /// The fields set by the change (modified or added).
    #[must_use]
    pub fn set_fields(&self) -> FieldSet {
        let mut set = self.modified.clone();
        set.extend(&self.added);
        set
    }
}

/// The change from `lhs` to `rhs` (whole objects of the given shape), `metadata.managedFields`
/// left out. Fields that Go always has
/// (see [`super::schema::Field::zero_present`]) count as `{}` where a side lacks them.
pub fn compare(lhs: &Value, rhs: &Value, shape: Shape) -> Result<Comparison, TypedError> {
    let mut comparison = Comparison::default();
    compare_at(Some(lhs), Some(rhs), shape, &mut Vec::new(), &mut comparison)?;
    Ok(comparison)
}

fn compare_leaf(lhs: Option<&Value>, rhs: Option<&Value>, path: &[PathElement], out: &mut Comparison) {
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        (Some(a), Some(b)) if !values_equal(a, b) => out.modified.insert(path),
        _ => {}
    }
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: Shape,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), TypedError> {
    check_depth(path)?;
    let node = joint_node(shape, lhs, rhs);
    if matches!(node, Node::Leaf) || (is_emptyish(lhs) && is_emptyish(rhs)) {
        compare_leaf(lhs, rhs, path, out);
        return Ok(());
    }
    match node {
        Node::Leaf => {}
        Node::Object(shape) => compare_fields(lhs, rhs, shape, path, out)?,
        Node::List(kind) => compare_items(kind, lhs, rhs, path, out)?,
    }
    if lhs.is_none() {
        out.added.insert(path);
    } else if rhs.is_none() {
        out.removed.insert(path);
    }
    Ok(())
}

fn compare_fields(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: Shape,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), TypedError> {
    let empty = Value::Object(Map::new());
    let (left, right) = (object_fields(lhs), object_fields(rhs));
    let mut names: Vec<&str> = left.into_iter().chain(right).flat_map(|m| m.keys().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        // Who owns what is not itself owned: `metadata.managedFields` is never compared (the
        // callers compare whole stored objects without copying them to drop it).
        if name == "managedFields" && matches!(path.as_slice(), [PathElement::Field(m)] if m == "metadata") {
            continue;
        }
        // A side that has the object but not a field Go always has, has it as `{}`.
        let fill = |fields: Option<&'_ Map<String, Value>>| fields.is_some() && shape.zero_present(name);
        let l = left.and_then(|m| m.get(name)).or_else(|| fill(left).then_some(&empty));
        let r = right.and_then(|m| m.get(name)).or_else(|| fill(right).then_some(&empty));

        path.push(PathElement::Field(name.to_string()));
        compare_at(l, r, shape.field(name), path, out)?;
        path.pop();
    }
    Ok(())
}

fn compare_items(
    kind: ListKind,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), TypedError> {
    let left = index_items(kind, list_items(lhs), path)?;
    let right = index_items(kind, list_items(rhs), path)?;
    let mut order = left.order.clone();
    order.extend(right.order.iter().filter(|e| !left.items.contains_key(*e)).cloned());
    for element in order {
        let l = left.items.get(&element).map_or(&[][..], Vec::as_slice);
        let r = right.items.get(&element).map_or(&[][..], Vec::as_slice);
        path.push(element);
        match (l.len(), r.len()) {
            (0 | 1, 0 | 1) => compare_at(l.first().copied(), r.first().copied(), kind.item_shape(), path, out)?,
            (2.., 2..) => {
                let same = l.len() == r.len() && l.iter().zip(r).all(|(a, b)| values_equal(a, b));
                if !same {
                    out.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(single) = r.first() {
                    compare_at(None, Some(single), kind.item_shape(), path, out)?;
                }
                out.removed.insert(path);
            }
            (_, 2..) => {
                if let Some(single) = l.first() {
                    compare_at(Some(single), None, kind.item_shape(), path, out)?;
                }
                out.added.insert(path);
            }
        }
        path.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> Shape {
        Shape::root("apps", "Deployment")
    }

    #[test]
    fn applied_sets_name_leaves_items_and_empty_values() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {
                    "containers": [{"name": "main", "image": "nginx", "ports": [{"containerPort": 80}], "securityContext": {}}],
                    "tolerations": [{"key": "a"}],
                }},
            },
        });
        let set = to_field_set(&config, deployment()).expect("set");
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:name": {}, "f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {
                        "f:containers": {"k:{\"name\":\"main\"}": {
                            ".": {}, "f:name": {}, "f:image": {}, "f:securityContext": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                        }},
                        "f:tolerations": {},
                    }},
                },
            })
        );
    }

    #[test]
    fn sets_own_values_and_duplicates_are_owned_whole() {
        let object = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}}}});
        let set = to_field_set(&object, deployment()).expect("set");
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}},
                   "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {}}}}}})
        );
    }

    #[test]
    fn malformed_list_items_are_reported_as_kubernetes_words_them() {
        let missing = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        // `name` defaults to "" for containers, so that one is keyed; service accounts have no default.
        assert!(to_field_set(&missing, deployment()).is_ok());
        let account = json!({"secrets": [{"namespace": "x"}]});
        let error = to_field_set(&account, Shape::root("", "ServiceAccount")).expect_err("no key");
        assert_eq!(
            error.to_string(),
            ".secrets: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
        let bad_set = json!({"metadata": {"finalizers": [{"a": 1}]}});
        assert!(to_field_set(&bad_set, Shape::root("", "ConfigMap")).is_err());
    }

    #[test]
    fn comparisons_see_modified_added_and_removed_paths() {
        let before = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
        let after =
            json!({"metadata": {"labels": {"a": "9"}}, "data": {"k": "v", "n": "new"}, "binaryData": {"x": "eA=="}});
        let cmp = compare(&before, &after, Shape::root("", "ConfigMap")).expect("compare");
        assert_eq!(cmp.modified.to_fields_v1(), json!({"f:metadata": {"f:labels": {"f:a": {}}}}));
        assert_eq!(cmp.removed.to_fields_v1(), json!({"f:metadata": {"f:labels": {"f:b": {}}}}));
        assert_eq!(cmp.added.to_fields_v1(), json!({"f:data": {"f:n": {}}, "f:binaryData": {".": {}, "f:x": {}}}));
    }

    #[test]
    fn a_creation_owns_the_containers_it_adds_but_not_those_go_always_has() {
        let created = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                     "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
        });
        let cmp = compare(&json!({}), &created, deployment()).expect("compare");
        assert!(cmp.modified.is_empty() && cmp.removed.is_empty());
        let added = cmp.added.to_fields_v1();
        assert_eq!(added["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}), "a new map is owned");
        assert!(added["f:spec"].get(".").is_none(), "spec is in every Deployment");
        assert!(added["f:spec"]["f:strategy"].get(".").is_none(), "strategy is a non-pointer struct");
        assert_eq!(added["f:spec"]["f:strategy"]["f:rollingUpdate"], json!({".": {}, "f:maxSurge": {}}));
        let container = &added["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:ports"]["."], json!({}));
    }

    #[test]
    fn list_items_compare_by_key_and_atomic_lists_whole() {
        let before = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
            "tolerations": [{"key": "x"}]}}}});
        let after = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}],
            "tolerations": [{"key": "y"}]}}}});
        let cmp = compare(&before, &after, deployment()).expect("compare");
        let spec = |set: &FieldSet| set.to_fields_v1()["f:spec"]["f:template"]["f:spec"].clone();
        assert_eq!(
            spec(&cmp.modified),
            json!({"f:containers": {"k:{\"name\":\"b\"}": {"f:image": {}}}, "f:tolerations": {}})
        );
        assert_eq!(
            spec(&cmp.removed),
            json!({"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}}})
        );
    }

    #[test]
    fn hostile_depth_is_an_error() {
        let mut deep = json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            deep = json!({ "x": deep });
        }
        assert!(matches!(to_field_set(&deep, Shape::Untyped), Err(TypedError::TooDeep { .. })));
        assert!(matches!(compare(&deep, &json!({}), Shape::Untyped), Err(TypedError::TooDeep { .. })));
    }
}
