//! Merging an applied configuration into the live object, and taking out what an applier
//! stopped applying.
//!
//! [`merge`] follows structured-merge-diff: the applied value wins for leaves (scalars, atomic
//! objects and lists); objects merge field by field; list maps merge item by item by key and sets
//! become the union. Items of a merged list come in the live order, except that items both sides
//! have follow the applied order, and new items come after the live items before them. A `null`
//! in the result is dropped (a stored object never holds one; Kubernetes' typed objects drop them
//! too), so applying `field: null` removes a scalar.
//!
//! [`prune`] is the removal step of an apply: a field, list item or map entry goes when the
//! applier applied it last time, does not apply it now, and no manager (the applier included)
//! owns it. It is computed as Kubernetes computes it, in three passes over the merged object.

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, Path, PathElement};
use super::typed::{
    Node, Shape, TypedError, check_depth, index_items, is_emptyish, joint_node, list_items, node, object_fields,
    to_field_set,
};

/// `config` merged into `live` (both whole objects of the given shape).
pub fn merge(live: &Value, config: &Value, shape: Shape) -> Result<Value, TypedError> {
    let merged = merge_at(Some(live), Some(config), shape, &mut Vec::new())?;
    Ok(merged.unwrap_or_else(|| Value::Object(Map::new())))
}

fn merge_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: Shape,
    path: &mut Path,
) -> Result<Option<Value>, TypedError> {
    check_depth(path)?;
    let node = joint_node(shape, lhs, rhs);
    if matches!(node, Node::Leaf) || (is_emptyish(lhs) && is_emptyish(rhs)) {
        return Ok(rhs.or(lhs).cloned());
    }
    match node {
        Node::Object(shape) => merge_fields(lhs, rhs, shape, path).map(Some),
        Node::List(kind) => merge_items(kind, lhs, rhs, path).map(Some),
        Node::Leaf => Ok(rhs.or(lhs).cloned()),
    }
}

fn merge_fields(lhs: Option<&Value>, rhs: Option<&Value>, shape: Shape, path: &mut Path) -> Result<Value, TypedError> {
    let (left, right) = (object_fields(lhs), object_fields(rhs));
    let mut out = Map::new();
    let mut seen = std::collections::BTreeSet::new();
    let names = left.into_iter().flat_map(Map::keys).chain(right.into_iter().flat_map(Map::keys));
    for name in names {
        if !seen.insert(name) {
            continue;
        }
        path.push(PathElement::Field(name.clone()));
        let merged =
            merge_at(left.and_then(|m| m.get(name)), right.and_then(|m| m.get(name)), shape.field(name), path)?;
        path.pop();
        match merged {
            Some(Value::Null) | None => {}
            Some(value) => {
                out.insert(name.clone(), value);
            }
        }
    }
    Ok(Value::Object(out))
}

/// Merges two lists item by item, in Kubernetes' order: live items keep their order, items both
/// lists have come where the applied list puts them relative to each other, and an applied item
/// the live list lacks comes after the live items before it.
fn merge_items(
    kind: super::typed::ListKind,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Path,
) -> Result<Value, TypedError> {
    let (left_list, right_list) = (list_items(lhs), list_items(rhs));
    let left = index_items(kind, left_list, path)?;
    let right = index_items(kind, right_list, path)?;
    if let Some((element, _)) = right.items.iter().find(|(_, items)| items.len() > 1) {
        return Err(TypedError::Duplicate { path: super::fieldpath::path_string(path), key: element.to_string() });
    }
    // Live elements in list order (repeats included, as the live list has them).
    let left_elements = &left.positions;
    let right_elements = &right.order;
    // A repeated live element merges as `null` (the applied item replaces the repeats).
    let null = Value::Null;
    let left_single = |element: &PathElement| -> Option<&Value> {
        left.items.get(element).map(|items| if items.len() == 1 { items[0] } else { &null })
    };
    let right_single = |element: &PathElement| right.items.get(element).map(|items| items[0]);
    let mut shared: std::collections::VecDeque<&PathElement> =
        right_elements.iter().filter(|e| left.items.contains_key(*e)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_right = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(left_elements.len().max(right_elements.len()));
    let item_shape = kind.item_shape();
    let (mut li, mut ri) = (0, 0);
    while li < left_elements.len() || ri < right_elements.len() {
        if li < left_elements.len() && ri < right_elements.len() {
            let element = &left_elements[li];
            if *element == right_elements[ri] {
                merged_right.insert(element.clone());
                push_item(&mut out, left_single(element), right_single(element), item_shape, element, path)?;
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if right.items.contains_key(element) && next_shared.is_some_and(|next| next != element) {
                li += 1;
                continue;
            }
        }
        if li < left_elements.len() {
            let element = &left_elements[li];
            if !right.items.contains_key(element) {
                push_item(&mut out, Some(&left_list[li]), None, item_shape, element, path)?;
                li += 1;
                continue;
            } else if merged_right.contains(element) {
                li += 1;
            }
        }
        if ri < right_elements.len() {
            let element = &right_elements[ri];
            merged_right.insert(element.clone());
            push_item(&mut out, left_single(element), right_single(element), item_shape, element, path)?;
            ri += 1;
            if next_shared.is_some_and(|next| next == element) {
                next_shared = shared.pop_front();
            }
        }
    }
    Ok(Value::Array(out))
}

fn push_item(
    out: &mut Vec<Value>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: Shape,
    element: &PathElement,
    path: &mut Path,
) -> Result<(), TypedError> {
    path.push(element.clone());
    let merged = merge_at(lhs, rhs, shape, path)?;
    path.pop();
    if let Some(item) = merged.filter(|item| !item.is_null()) {
        out.push(item);
    }
    Ok(())
}

/// `value` without the members of `set` (each taken out with everything below it). A container
/// left empty by the removal goes too (`None`).
pub fn remove_items(value: &Value, set: &FieldSet, shape: Shape) -> Value {
    remove_at(value, set, shape, 0).unwrap_or_else(|| Value::Object(Map::new()))
}

fn remove_at(value: &Value, set: &FieldSet, shape: Shape, depth: usize) -> Option<Value> {
    if depth > super::fieldpath::MAX_DEPTH {
        return Some(value.clone());
    }
    match node(shape, value) {
        Node::Leaf => Some(value.clone()),
        Node::Object(shape) => {
            let fields = object_fields(Some(value))?;
            let mut out = Map::new();
            for (name, child) in fields {
                let element = PathElement::Field(name.clone());
                if set.has_member(&element) {
                    continue;
                }
                let kept = match set.child(&element) {
                    Some(below) => remove_at(child, below, shape.field(name), depth + 1),
                    None => Some(child.clone()),
                };
                if let Some(kept) = kept {
                    out.insert(name.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Node::List(kind) => {
            let items = list_items(Some(value));
            // Items were keyed when the set was made; an item that cannot be keyed is kept.
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Ok(indexed) = index_items(kind, std::slice::from_ref(item), &[]) else {
                    out.push(item.clone());
                    continue;
                };
                let Some(element) = indexed.order.first() else { continue };
                if set.has_member(element) {
                    continue;
                }
                let kept = match set.child(element) {
                    Some(below) => remove_at(item, below, kind.item_shape(), depth + 1),
                    None => Some(item.clone()),
                };
                out.extend(kept);
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
    }
}

/// `merged` without what the applier applied last time (`last`), no longer applies, and nobody
/// owns (`owned`: every manager's set, the applier's new one included).
pub fn prune(merged: &Value, owned: &FieldSet, last: &FieldSet, shape: Shape) -> Result<Value, TypedError> {
    if last.is_empty() {
        return Ok(merged.clone());
    }
    let last = last.with_parent_fields();
    // 1. Everything the applier had, out.
    let without_last = remove_items(merged, &last, shape);
    // 2. Back what is still there or owned by anyone: the rest is what nobody holds.
    let merged_set = to_field_set(merged, shape)?.with_parent_fields();
    let kept = to_field_set(&without_last, shape)?.with_parent_fields().union(&owned.with_parent_fields());
    let unowned_out = remove_items(merged, &merged_set.difference(&kept), shape);
    // 3. Of that, remove only what the applier had: fields nobody ever applied stay.
    let remaining = to_field_set(&unowned_out, shape)?.with_parent_fields();
    let dropped = merged_set.difference(&remaining).intersection(&last);
    Ok(remove_items(merged, &dropped, shape))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> Shape {
        Shape::root("apps", "Deployment")
    }

    fn containers(names_images: &[(&str, &str)]) -> Value {
        let items: Vec<Value> = names_images.iter().map(|(n, i)| json!({"name": n, "image": i})).collect();
        json!({"spec": {"template": {"spec": {"containers": items}}}})
    }

    fn names(object: &Value) -> Vec<String> {
        object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| format!("{}={}", i["name"].as_str().unwrap_or(""), i["image"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn objects_merge_field_by_field_and_leaves_take_the_applied_value() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "paused": false}});
        let config = json!({"metadata": {"labels": {"a": "9", "c": "3"}}, "spec": {"replicas": 4}});
        let merged = merge(&live, &config, deployment()).expect("merge");
        assert_eq!(
            merged,
            json!({"metadata": {"labels": {"a": "9", "b": "2", "c": "3"}}, "spec": {"replicas": 4, "paused": false}})
        );
    }

    #[test]
    fn atomic_values_are_replaced_whole() {
        let live = json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}},
            "template": {"spec": {"nodeSelector": {"x": "1", "y": "2"}, "tolerations": [{"key": "t1"}, {"key": "t2"}]}}}});
        let config = json!({"spec": {"selector": {"matchLabels": {"a": "1"}},
            "template": {"spec": {"nodeSelector": {"x": "1"}, "tolerations": [{"key": "t3"}]}}}});
        let merged = merge(&live, &config, deployment()).expect("merge");
        assert_eq!(merged, config);
    }

    #[test]
    fn list_maps_merge_by_key_keeping_live_order() {
        let live = containers(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let merged = merge(&live, &containers(&[("c", "2"), ("d", "2")]), deployment()).expect("merge");
        assert_eq!(names(&merged), vec!["a=1", "b=1", "c=2", "d=2"]);
        let swapped =
            merge(&containers(&[("a", "1"), ("b", "1")]), &containers(&[("b", "2"), ("a", "2")]), deployment());
        assert_eq!(names(&swapped.expect("merge")), vec!["b=2", "a=2"], "shared items follow the applied order");
        let error = merge(&live, &containers(&[("x", "1"), ("x", "2")]), deployment()).expect_err("duplicate");
        assert_eq!(error.to_string(), ".spec.template.spec.containers: duplicate entries for key [name=\"x\"]");
    }

    #[test]
    fn ports_are_keyed_by_port_and_protocol() {
        let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "c",
            "ports": [{"containerPort": 53, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP", "name": "dns"}]}]}}}});
        let config = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 53, "name": "tcp"}]}]}}}});
        let merged = merge(&live, &config, deployment()).expect("merge");
        let ports = &merged["spec"]["template"]["spec"]["containers"][0]["ports"];
        assert_eq!(
            ports,
            &json!([{"containerPort": 53, "protocol": "TCP", "name": "tcp"}, {"containerPort": 53, "protocol": "UDP", "name": "dns"}])
        );
    }

    #[test]
    fn sets_become_the_union_and_nulls_are_dropped() {
        let live = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}}});
        let config = json!({"metadata": {"finalizers": ["c", "a"], "labels": {"x": null}}});
        let merged = merge(&live, &config, Shape::root("", "ConfigMap")).expect("merge");
        assert_eq!(merged, json!({"metadata": {"finalizers": ["c", "a", "b"], "labels": {"y": "2"}}}));
    }

    #[test]
    fn removal_takes_members_with_their_children_and_drops_emptied_containers() {
        let value = json!({"metadata": {"labels": {"a": "1"}, "name": "x"}, "data": {"k": "v", "j": "w"}});
        let set = FieldSet::from_fields_v1(&json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:k": {}}}))
            .expect("set");
        assert_eq!(
            remove_items(&value, &set, Shape::root("", "ConfigMap")),
            json!({"metadata": {"name": "x"}, "data": {"j": "w"}})
        );
    }

    #[test]
    fn pruning_removes_only_what_the_applier_dropped_and_nobody_owns() {
        let shape = Shape::root("", "ConfigMap");
        let merged =
            json!({"metadata": {"name": "c"}, "data": {"mine": "1", "shared": "2", "unowned": "3", "kept": "4"}});
        let last =
            FieldSet::from_fields_v1(&json!({"f:data": {"f:mine": {}, "f:shared": {}, "f:kept": {}}})).expect("last");
        let now =
            FieldSet::from_fields_v1(&json!({"f:metadata": {"f:name": {}}, "f:data": {"f:kept": {}}})).expect("now");
        let other = FieldSet::from_fields_v1(&json!({"f:data": {"f:shared": {}}})).expect("other");
        let pruned = prune(&merged, &now.union(&other), &last, shape).expect("prune");
        assert_eq!(pruned, json!({"metadata": {"name": "c"}, "data": {"shared": "2", "unowned": "3", "kept": "4"}}));
    }

    #[test]
    fn pruning_a_list_item_and_a_whole_struct() {
        let merged = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}});
        let last = FieldSet::from_fields_v1(&json!({"f:spec": {"f:replicas": {},
            "f:strategy": {"f:rollingUpdate": {"f:maxSurge": {}}},
            "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:image": {}},
                                                       "k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}))
        .expect("last");
        let now = FieldSet::from_fields_v1(&json!({"f:spec": {"f:replicas": {},
            "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}))
        .expect("now");
        let pruned = prune(&merged, &now, &last, deployment()).expect("prune");
        assert_eq!(names(&pruned), vec!["b=1"], "the dropped item goes");
        assert!(pruned["spec"].get("strategy").is_none(), "a struct given up entirely goes, defaults and all");
        assert_eq!(pruned["spec"]["replicas"], 2);
    }
}
