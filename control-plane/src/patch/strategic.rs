//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`), the body that
//! `kubectl apply`, `kubectl edit` and `kubectl patch --type strategic` send.
//!
//! # Algorithm
//!
//! A strategic merge patch is a JSON merge patch (RFC 7386) that knows, per field, how lists
//! combine, and that carries directives in keys starting with `$`. [`apply`] walks the patch and
//! the stored object together, guided by the [`schema`](super::schema) of the object's kind:
//!
//! - **Objects** merge key by key; `null` deletes a key. The object-level directive `$patch` says
//!   how the object itself combines: `merge` (the default), `replace` (the patch's object is
//!   taken as is) or `delete` (the object is removed; at the top level the result is `{}`).
//!   `$retainKeys: [..]` first clears the stored keys it does not list, then merges; every key
//!   the patch sets must be listed.
//! - **Lists** combine by the field's [`ListStrategy`]:
//!   - *atomic* lists (no strategy, and every list of an unknown kind) are replaced;
//!   - *sets* of scalars (such as `metadata.finalizers`) become the union, without duplicates;
//!   - *keyed* lists of objects (containers by `name`, ports by `containerPort`, ...) merge item
//!     by item: a patch item merges into the stored item with the same merge-key value, or is
//!     added. An item `{"$patch": "delete", <key>: v}` removes every stored item with key `v`;
//!     an item `{"$patch": "replace"}` makes the rest of the patch list replace the stored list.
//!
//!   Sibling keys direct a list field `f`: `$deleteFromPrimitiveList/f: [..]` removes those values
//!   after the merge, and `$setElementOrder/f: [..]` (merge-key objects, or scalars for sets)
//!   gives the final order.
//! - **Order** of a merged set or keyed list follows Kubernetes' implementation: items named by
//!   `$setElementOrder` (or, without it, the items of the patch list) come in that order; the
//!   remaining stored items keep their relative order and are interleaved by their stored
//!   position: a stored item goes before a named item only when both were stored and it was
//!   stored first. So a new item lands before any unmentioned stored items that follow the named
//!   ones, exactly as `kubectl patch` against a Kubernetes API server shows (a container added
//!   by a patch without `$setElementOrder` comes first). `kubectl apply` always sends
//!   `$setElementOrder`, which fixes the order of everything it manages.
//! - **Missing fields**: a patch value for a field the object lacks is merged into nothing, which
//!   removes its `null`s and directives, so directives never reach the stored object.
//!
//! # Deliberate differences from Kubernetes
//!
//! - `$patch: merge` is accepted (as the default) on objects and on keyed-list items, where
//!   Kubernetes rejects it.
//! - Directives inside a replaced value (`$patch: replace`, an atomic list, a new item) are
//!   interpreted against an empty original instead of being stored verbatim.
//! - `$deleteFromPrimitiveList` on an atomic list removes the values instead of replacing the list
//!   with the deletion list; `$setElementOrder` on an atomic list is ignored (the list is replaced
//!   in the patch's order anyway).
//! - When a set is patched with both additions and `$deleteFromPrimitiveList`, deletions are
//!   applied last (Kubernetes' order depends on Go map iteration unless `$setElementOrder` is
//!   present, in which case it also deletes last).
//!
//! # Limits
//!
//! The input is untrusted: nesting deeper than [`MAX_DEPTH`] levels is an error, merges use hash
//! lookups so large lists stay linear, and no input panics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use super::schema::{self, Field, ListStrategy, StructType};

/// The deepest nesting of objects and lists a patch may have. Kubernetes objects nest about 15
/// levels deep; the bound only stops hostile input from exhausting the stack.
pub const MAX_DEPTH: usize = 100;

/// The object-level and list-item directive key.
const PATCH_DIRECTIVE: &str = "$patch";
/// The key listing the fields a `retainKeys` object keeps.
const RETAIN_KEYS: &str = "$retainKeys";
/// The key prefix of an ordering directive: `$setElementOrder/<field>`.
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
/// The key prefix of a set deletion directive: `$deleteFromPrimitiveList/<field>`.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// The longest rendering of a patch value quoted in an error message.
const ERROR_VALUE_CHARS_MAX: usize = 200;

/// Why a patch could not be applied. Every variant is the client's fault (HTTP 400/422).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The patch body, or the stored object, is not a JSON object.
    #[error("{what} must be a JSON object, got {found}")]
    NotAnObject {
        /// Which document: "patch" or "original object".
        what: &'static str,
        /// The JSON type found instead.
        found: &'static str,
    },
    /// `$patch` holds something other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {value} in map at {path} (expected replace, delete or merge)")]
    InvalidPatchDirective { path: String, value: String },
    /// A list item, or a `$setElementOrder` entry, of a list merged by key lacks the key.
    #[error("map: {item} does not contain declared merge key: {key} (in list {path})")]
    MissingMergeKey { path: String, key: String, item: String },
    /// A malformed `$setElementOrder/<field>`, or one that contradicts the patch list.
    #[error("invalid patch format of $setElementOrder for {path}: {reason}")]
    InvalidSetElementOrder { path: String, reason: String },
    /// A malformed `$deleteFromPrimitiveList/<field>`.
    #[error("invalid patch format of $deleteFromPrimitiveList for {path}: {reason}")]
    InvalidDeleteFromPrimitiveList { path: String, reason: String },
    /// A malformed `$retainKeys`, or a patch setting a field it does not retain.
    #[error("invalid patch format of $retainKeys at {path}: {reason}")]
    InvalidRetainKeys { path: String, reason: String },
    /// The patch nests deeper than [`MAX_DEPTH`].
    #[error("patch nests deeper than {max_depth} levels")]
    TooDeep { max_depth: usize },
}

/// Applies the strategic merge `patch` to `original`, an object of the given API group (`""` for
/// core) and kind, such as `("apps", "Deployment")`, and returns the patched object.
///
/// Kinds without patch metadata in [`schema`] get JSON merge patch semantics plus the directives:
/// every list is atomic.
///
/// # Errors
///
/// A [`PatchError`] when the patch is malformed: not an object, an unknown `$patch` value, a
/// malformed list directive or `$retainKeys`, a keyed-list item without its merge key, or
/// nesting deeper than [`MAX_DEPTH`]. `original` must be an object too.
pub fn apply(group: &str, kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject { what: "patch", found: json_type(patch) });
    };
    let Value::Object(original) = original else {
        return Err(PatchError::NotAnObject { what: "original object", found: json_type(original) });
    };
    let merged = merge_object(Some(original.clone()), patch, schema::lookup(group, kind), &Path::ROOT)?;
    // `$patch: delete` at the top level leaves an empty object, as in Kubernetes.
    Ok(Value::Object(merged.unwrap_or_default()))
}

// --- objects ---

/// What the `$patch` directive of an object asks for.
enum ObjectDirective {
    Merge,
    Replace,
    Delete,
}

/// Merges the object `patch` into `original` (`None` when the field is missing or holds a
/// non-object). Returns `None` when the patch deletes the object.
fn merge_object(
    original: Option<Map<String, Value>>,
    patch: &Map<String, Value>,
    ty: Option<&'static StructType>,
    path: &Path<'_>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    path.check_depth()?;
    match object_directive(patch, path)? {
        ObjectDirective::Delete => Ok(None),
        ObjectDirective::Replace => merge_fields(Map::new(), patch, ty, path).map(Some),
        ObjectDirective::Merge => merge_fields(original.unwrap_or_default(), patch, ty, path).map(Some),
    }
}

fn object_directive(patch: &Map<String, Value>, path: &Path<'_>) -> Result<ObjectDirective, PatchError> {
    let Some(value) = patch.get(PATCH_DIRECTIVE) else {
        return Ok(ObjectDirective::Merge);
    };
    match value.as_str() {
        Some("merge") => Ok(ObjectDirective::Merge),
        Some("replace") => Ok(ObjectDirective::Replace),
        Some("delete") => Ok(ObjectDirective::Delete),
        _ => Err(invalid_directive(value, path)),
    }
}

/// Everything a patch object says about one field of the object it patches.
#[derive(Default)]
struct FieldEdit<'p> {
    /// The field's value in the patch.
    value: Option<&'p Value>,
    /// `$setElementOrder/<field>`.
    order: Option<&'p [Value]>,
    /// `$deleteFromPrimitiveList/<field>`.
    delete: Option<&'p [Value]>,
}

/// Applies `$retainKeys` and then every field edit of `patch` to `original`.
fn merge_fields(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Option<&'static StructType>,
    path: &Path<'_>,
) -> Result<Map<String, Value>, PatchError> {
    apply_retain_keys(&mut original, patch, path)?;
    for (name, edit) in field_edits(patch, path)? {
        let field = ty.and_then(|ty| ty.field(name));
        // Taking the value in place (rather than removing the key) keeps the key's position.
        let current = original.get_mut(name).map(Value::take);
        match merge_field(current, &edit, field, &path.field(name))? {
            Some(value) => original.insert(name.to_owned(), value),
            None => original.remove(name),
        };
    }
    Ok(original)
}

/// Groups the keys of a patch object by the field they edit, validating the list directives.
fn field_edits<'p>(
    patch: &'p Map<String, Value>,
    path: &Path<'_>,
) -> Result<BTreeMap<&'p str, FieldEdit<'p>>, PatchError> {
    let mut edits: BTreeMap<&str, FieldEdit> = BTreeMap::new();
    for (key, value) in patch {
        if key == PATCH_DIRECTIVE || key == RETAIN_KEYS {
            continue;
        }
        if key.starts_with(SET_ELEMENT_ORDER) {
            let (name, list) = list_directive(key, SET_ELEMENT_ORDER, value)
                .map_err(|reason| PatchError::InvalidSetElementOrder { path: path.to_string(), reason })?;
            edits.entry(name).or_default().order = Some(list);
        } else if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let (name, list) = list_directive(key, DELETE_FROM_PRIMITIVE_LIST, value)
                .map_err(|reason| PatchError::InvalidDeleteFromPrimitiveList { path: path.to_string(), reason })?;
            edits.entry(name).or_default().delete = Some(list);
        } else {
            edits.entry(key).or_default().value = Some(value);
        }
    }
    Ok(edits)
}

/// Splits a list directive `<prefix>/<field>: [..]` into the field name and the list. The error
/// says why the directive is malformed.
fn list_directive<'p>(key: &'p str, prefix: &str, value: &'p Value) -> Result<(&'p str, &'p [Value]), String> {
    let name = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("key {key:?} names no field; expected {prefix}/<field>"))?;
    let list = value.as_array().ok_or_else(|| format!("{key} must be a list, got {}", json_type(value)))?;
    Ok((name, list))
}

/// `$retainKeys: [..]` clears the stored fields it does not list. Kubernetes applies it wherever
/// it appears (the schema's `retain_keys` only says where clients send it), and so does this.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    let Some(list) = patch.get(RETAIN_KEYS) else {
        return Ok(());
    };
    let invalid = |reason: String| PatchError::InvalidRetainKeys { path: path.to_string(), reason };
    let names = list.as_array().ok_or_else(|| invalid("must be a list of field names".to_owned()))?;
    let mut retained = HashSet::with_capacity(names.len());
    for name in names {
        let name = name.as_str().ok_or_else(|| invalid(format!("{} is not a field name", render(name))))?;
        retained.insert(name);
    }
    // A patch that sets a field it does not retain contradicts itself.
    for (key, value) in patch {
        if !value.is_null() && !is_directive_key(key) && !retained.contains(key.as_str()) {
            return Err(invalid(format!("field {key:?} is set by the patch but not listed")));
        }
    }
    original.retain(|key, _| retained.contains(key.as_str()));
    Ok(())
}

fn is_directive_key(key: &str) -> bool {
    key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// Applies one field's edit to its current value. Returns `None` when the field ends up absent.
fn merge_field(
    current: Option<Value>,
    edit: &FieldEdit<'_>,
    field: Option<&'static Field>,
    path: &Path<'_>,
) -> Result<Option<Value>, PatchError> {
    let has_list_directives = edit.order.is_some() || edit.delete.is_some();
    match edit.value {
        Some(Value::Null) => Ok(None),
        Some(Value::Array(_)) => merge_list_field(current, edit, field, path),
        None if has_list_directives => merge_list_field(current, edit, field, path),
        Some(value) if has_list_directives => Err(list_directive_error(edit, path, value)),
        Some(Value::Object(patch)) => {
            let original = match current {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            };
            let merged = merge_object(original, patch, field.and_then(Field::object_type), path)?;
            Ok(merged.map(Value::Object))
        }
        Some(scalar) => Ok(Some(scalar.clone())),
        None => Ok(current),
    }
}

/// The error for list directives given for a field that is not a list (`found` is its value).
fn list_directive_error(edit: &FieldEdit<'_>, path: &Path<'_>, found: &Value) -> PatchError {
    let reason = format!("the field is a {}, not a list", json_type(found));
    if edit.order.is_some() {
        PatchError::InvalidSetElementOrder { path: path.to_string(), reason }
    } else {
        PatchError::InvalidDeleteFromPrimitiveList { path: path.to_string(), reason }
    }
}

/// Applies a list edit (a patch list and/or list directives) to a field's current value.
fn merge_list_field(
    current: Option<Value>,
    edit: &FieldEdit<'_>,
    field: Option<&'static Field>,
    path: &Path<'_>,
) -> Result<Option<Value>, PatchError> {
    let items = edit.value.and_then(Value::as_array).map(Vec::as_slice);
    let original = match (current, items) {
        (Some(Value::Array(original)), _) => original,
        // Directives alone cannot create a list.
        (None, None) => return Ok(None),
        (Some(other), None) => return Err(list_directive_error(edit, path, &other)),
        // A new list, or a list replacing a value of another type.
        (_, Some(_)) => Vec::new(),
    };
    let list_edit = ListEdit { items, order: edit.order, delete: edit.delete };
    merge_list(original, &list_edit, field, path).map(|merged| Some(Value::Array(merged)))
}

// --- lists ---

/// Everything a patch says about one list field.
struct ListEdit<'p> {
    /// The patch's list, if it has one (directives may come alone).
    items: Option<&'p [Value]>,
    /// `$setElementOrder/<field>`.
    order: Option<&'p [Value]>,
    /// `$deleteFromPrimitiveList/<field>`.
    delete: Option<&'p [Value]>,
}

/// Merges a list edit into the stored list `original` according to the field's strategy.
fn merge_list(
    original: Vec<Value>,
    edit: &ListEdit<'_>,
    field: Option<&'static Field>,
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    path.check_depth()?;
    let mut merged = match field.map_or(ListStrategy::Atomic, Field::list_strategy) {
        ListStrategy::Atomic => merge_atomic(original, edit, path)?,
        ListStrategy::Set => merge_set(original, edit, path)?,
        ListStrategy::Keyed { merge_key } => {
            merge_keyed(original, edit, merge_key, field.and_then(Field::item_type), path)?
        }
    };
    if let Some(deleted) = edit.delete {
        let deleted: HashSet<String> = deleted.iter().map(identity).collect();
        merged.retain(|item| !deleted.contains(&identity(item)));
    }
    Ok(merged)
}

/// A patch list with its directive items taken out.
struct ListItems<'p> {
    /// An item `{"$patch": "replace"}` was present: the list replaces the stored one.
    replace: bool,
    /// Merge-key values of `{"$patch": "delete"}` items (keyed lists only).
    deleted_keys: Vec<&'p Value>,
    /// The other items, in patch order.
    regular: Vec<&'p Value>,
}

/// Separates directive items from regular ones. As in Kubernetes, an item carrying
/// `$patch: replace` is only a marker (its other fields are ignored). In lists that are not keyed
/// a `{"$patch": "delete"}` item is simply dropped: there is nothing it could name.
fn split_items<'p>(items: &'p [Value], merge_key: Option<&str>, path: &Path<'_>) -> Result<ListItems<'p>, PatchError> {
    let mut split = ListItems { replace: false, deleted_keys: Vec::new(), regular: Vec::new() };
    for item in items {
        let Some(directive) = item.as_object().and_then(|map| map.get(PATCH_DIRECTIVE)) else {
            split.regular.push(item);
            continue;
        };
        match (directive.as_str(), merge_key) {
            (Some("replace"), _) => split.replace = true,
            (Some("merge"), _) => split.regular.push(item),
            (Some("delete"), Some(key)) => {
                let value = item.get(key).ok_or_else(|| missing_merge_key(item, key, path))?;
                split.deleted_keys.push(value);
            }
            (Some("delete"), None) => {}
            _ => return Err(invalid_directive(directive, path)),
        }
    }
    Ok(split)
}

/// Interprets each patch item against nothing (removing `null`s and directives); items that
/// delete themselves disappear.
fn clean_items(items: &[&Value], ty: Option<&'static StructType>, path: &Path<'_>) -> Result<Vec<Value>, PatchError> {
    let item_path = path.item();
    let mut cleaned = Vec::with_capacity(items.len());
    for item in items {
        if let Some(value) = clean_value(item, ty, &item_path)? {
            cleaned.push(value);
        }
    }
    Ok(cleaned)
}

/// A patch value applied to nothing.
fn clean_value(value: &Value, ty: Option<&'static StructType>, path: &Path<'_>) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Object(patch) => Ok(merge_object(None, patch, ty, path)?.map(Value::Object)),
        Value::Array(items) => {
            path.check_depth()?;
            let split = split_items(items, None, path)?;
            Ok(Some(Value::Array(clean_items(&split.regular, None, path)?)))
        }
        scalar => Ok(Some(scalar.clone())),
    }
}

/// Atomic lists: the patch's list (cleaned) replaces the stored one.
fn merge_atomic(original: Vec<Value>, edit: &ListEdit<'_>, path: &Path<'_>) -> Result<Vec<Value>, PatchError> {
    let Some(items) = edit.items else {
        return Ok(original);
    };
    let split = split_items(items, None, path)?;
    clean_items(&split.regular, None, path)
}

/// Sets of scalars: the union of the stored and the patch values, without duplicates (the
/// stored list is deduplicated too, as Kubernetes does), then ordered.
fn merge_set(original: Vec<Value>, edit: &ListEdit<'_>, path: &Path<'_>) -> Result<Vec<Value>, PatchError> {
    let split = split_items(edit.items.unwrap_or_default(), None, path)?;
    let added = clean_items(&split.regular, None, path)?;
    let patch_ids: Vec<String> = added.iter().map(identity).collect();
    let wanted = wanted_order(edit.order, patch_ids, None, path)?;
    let (merged, stored) = if split.replace {
        let merged = deduplicate(added);
        let stored = merged.iter().map(|item| Some(identity(item))).collect();
        (merged, stored)
    } else {
        let stored: Vec<Option<String>> = original.iter().map(|item| Some(identity(item))).collect();
        (deduplicate(original.into_iter().chain(added)), stored)
    };
    Ok(order_items(merged, &wanted, &stored, &|item| Some(identity(item))))
}

/// Lists of objects merged by `merge_key`: deletions first, then each patch item merges into the
/// stored item with its key or is added, then the list is ordered.
fn merge_keyed(
    original: Vec<Value>,
    edit: &ListEdit<'_>,
    merge_key: &str,
    item_type: Option<&'static StructType>,
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let split = split_items(edit.items.unwrap_or_default(), Some(merge_key), path)?;
    let key_of = |item: &Value| item.as_object()?.get(merge_key).map(identity);
    let patch_ids = split
        .regular
        .iter()
        .map(|item| key_of(item).ok_or_else(|| missing_merge_key(item, merge_key, path)))
        .collect::<Result<Vec<String>, PatchError>>()?;
    let wanted = wanted_order(edit.order, patch_ids.clone(), Some(merge_key), path)?;
    if split.replace {
        let merged = clean_items(&split.regular, item_type, path)?;
        let stored: Vec<Option<String>> = merged.iter().map(key_of).collect();
        return Ok(order_items(merged, &wanted, &stored, &key_of));
    }
    let stored: Vec<Option<String>> = original.iter().map(key_of).collect();
    let deleted: HashSet<String> = split.deleted_keys.iter().map(|key| identity(key)).collect();
    let kept = original.into_iter().filter(|item| key_of(item).is_none_or(|key| !deleted.contains(&key)));
    let merged = merge_items_by_key(kept.collect(), &split.regular, &patch_ids, item_type, &key_of, path)?;
    Ok(order_items(merged, &wanted, &stored, &key_of))
}

/// Merges each patch item (with merge-key identity `patch_ids[i]`) into the first item of
/// `items` with the same key, or appends it. A later patch item with a repeated key merges into
/// the result of the earlier one.
fn merge_items_by_key(
    items: Vec<Value>,
    patch: &[&Value],
    patch_ids: &[String],
    item_type: Option<&'static StructType>,
    key_of: &dyn Fn(&Value) -> Option<String>,
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let item_path = path.item();
    let mut position: HashMap<String, usize> = HashMap::with_capacity(items.len() + patch.len());
    for (index, item) in items.iter().enumerate() {
        if let Some(key) = key_of(item) {
            position.entry(key).or_insert(index);
        }
    }
    // `None` marks an item a patch removed; see below.
    let mut slots: Vec<Option<Value>> = items.into_iter().map(Some).collect();
    for (item, key) in patch.iter().zip(patch_ids) {
        let Value::Object(item_patch) = item else { continue };
        match position.get(key) {
            Some(&index) => {
                let stored = match slots.get_mut(index).and_then(Option::take) {
                    Some(Value::Object(map)) => Some(map),
                    _ => None,
                };
                // Items that delete themselves were split out, so this is `Some` in practice;
                // a `None` result would leave the slot empty, i.e. remove the item.
                let merged = merge_object(stored, item_patch, item_type, &item_path)?;
                if let Some(slot) = slots.get_mut(index) {
                    *slot = merged.map(Value::Object);
                }
            }
            None => {
                if let Some(added) = merge_object(None, item_patch, item_type, &item_path)? {
                    position.insert(key.clone(), slots.len());
                    slots.push(Some(Value::Object(added)));
                }
            }
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

/// The identities in the order the result must follow for the named items: the
/// `$setElementOrder` list if given (after checking the patch list agrees with it), else the
/// patch list's own order. `merge_key` is `None` for sets, whose entries are the values.
fn wanted_order(
    order: Option<&[Value]>,
    patch_ids: Vec<String>,
    merge_key: Option<&str>,
    path: &Path<'_>,
) -> Result<Vec<String>, PatchError> {
    let Some(order) = order else {
        return Ok(patch_ids);
    };
    let order_ids = order
        .iter()
        .map(|entry| match merge_key {
            None => Ok(identity(entry)),
            Some(key) => entry
                .as_object()
                .and_then(|map| map.get(key))
                .map(identity)
                .ok_or_else(|| missing_merge_key(entry, key, path)),
        })
        .collect::<Result<Vec<String>, PatchError>>()?;
    // Like Kubernetes, require the patch items to appear in $setElementOrder, in the same
    // relative order: otherwise the client's two statements of the order disagree.
    let mut remaining = order_ids.iter();
    if let Some(stray) = patch_ids.iter().find(|id| !remaining.any(|entry| entry == *id)) {
        let reason = format!("patch item {stray} is missing from the order list or out of order");
        return Err(PatchError::InvalidSetElementOrder { path: path.to_string(), reason });
    }
    Ok(order_ids)
}

/// Orders a merged list. Items whose identity is in `wanted` are sorted by it; the rest keep
/// their relative order. The two runs are then interleaved by position in the stored list
/// (`stored[i]` is the identity of stored item `i`): a leftover item goes first only when both
/// it and the next wanted item were stored and it was stored earlier. This is Kubernetes'
/// `mergeSortedSlice`, so results match what a Kubernetes API server returns.
fn order_items(
    merged: Vec<Value>,
    wanted: &[String],
    stored: &[Option<String>],
    identity_of: &dyn Fn(&Value) -> Option<String>,
) -> Vec<Value> {
    let wanted_position = first_positions(wanted.iter().map(String::as_str));
    let stored_position = first_positions(stored.iter().flatten().map(String::as_str));
    let mut named: Vec<(usize, Option<usize>, Value)> = Vec::new();
    let mut leftover: Vec<(Option<usize>, Value)> = Vec::new();
    for item in merged {
        let id = identity_of(&item);
        let stored_at = id.as_deref().and_then(|id| stored_position.get(id).copied());
        match id.as_deref().and_then(|id| wanted_position.get(id).copied()) {
            Some(rank) => named.push((rank, stored_at, item)),
            None => leftover.push((stored_at, item)),
        }
    }
    named.sort_by_key(|(rank, _, _)| *rank);
    let named = named.into_iter().map(|(_, stored_at, item)| (stored_at, item));
    interleave(leftover.into_iter(), named)
}

/// Maps each identity to the index of its first occurrence.
fn first_positions<'a>(ids: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut positions = HashMap::new();
    for (index, id) in ids.enumerate() {
        positions.entry(id).or_insert(index);
    }
    positions
}

/// Merges two runs of `(stored position, item)`, preferring `named` unless the `leftover` item
/// was stored before the named one.
fn interleave(
    leftover: impl Iterator<Item = (Option<usize>, Value)>,
    named: impl Iterator<Item = (Option<usize>, Value)>,
) -> Vec<Value> {
    let mut leftover = leftover.peekable();
    let mut named = named.peekable();
    let mut result = Vec::new();
    while let (Some((left, _)), Some((right, _))) = (leftover.peek(), named.peek()) {
        let left_first = matches!((left, right), (Some(left), Some(right)) if left < right);
        let next = if left_first { leftover.next() } else { named.next() };
        result.extend(next.map(|(_, item)| item));
    }
    result.extend(leftover.map(|(_, item)| item));
    result.extend(named.map(|(_, item)| item));
    result
}

/// Removes repeated values, keeping the first occurrence.
fn deduplicate(values: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    values.into_iter().filter(|value| seen.insert(identity(value))).collect()
}

/// A hashable identity of a value for comparing merge keys and set members. Numbers compare by
/// value (`80` equals `80.0`, as they do once Go decodes JSON); other values by their JSON text,
/// which keeps the string `"80"` distinct from the number.
fn identity(value: &Value) -> String {
    let Value::Number(number) = value else {
        return value.to_string();
    };
    if let Some(integer) = number.as_i64() {
        return integer.to_string();
    }
    if let Some(integer) = number.as_u64() {
        return integer.to_string();
    }
    match number.as_f64() {
        // Whole floats within the exactly representable range compare equal to integers.
        Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => format!("{float:.0}"),
        _ => number.to_string(),
    }
}

// --- errors and paths ---

fn invalid_directive(value: &Value, path: &Path<'_>) -> PatchError {
    PatchError::InvalidPatchDirective { path: path.to_string(), value: render(value) }
}

fn missing_merge_key(item: &Value, key: &str, path: &Path<'_>) -> PatchError {
    PatchError::MissingMergeKey { path: path.to_string(), key: key.to_owned(), item: render(item) }
}

/// A value as JSON, shortened for an error message.
fn render(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(ERROR_VALUE_CHARS_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Where in the object the merge is, for error messages and the depth bound. A linked list on
/// the stack: building a child costs nothing, and the text is only rendered for an error.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
    /// How many objects and lists enclose this point.
    depth: usize,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Field(&'a str),
    /// The items of a list.
    Item,
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path { parent: None, segment: Segment::Root, depth: 0 };

    fn field(&'a self, name: &'a str) -> Path<'a> {
        Path { parent: Some(self), segment: Segment::Field(name), depth: self.depth + 1 }
    }

    fn item(&'a self) -> Path<'a> {
        Path { parent: Some(self), segment: Segment::Item, depth: self.depth + 1 }
    }

    fn check_depth(&self) -> Result<(), PatchError> {
        if self.depth > MAX_DEPTH { Err(PatchError::TooDeep { max_depth: MAX_DEPTH }) } else { Ok(()) }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut segments = Vec::with_capacity(self.depth + 1);
        let mut next = Some(self);
        while let Some(path) = next {
            segments.push(path.segment);
            next = path.parent;
        }
        let mut wrote_field = false;
        for segment in segments.into_iter().rev() {
            match segment {
                Segment::Root => {}
                Segment::Field(name) if wrote_field => write!(f, ".{name}")?,
                Segment::Field(name) => write!(f, "{name}")?,
                Segment::Item => write!(f, "[]")?,
            }
            wrote_field |= matches!(segment, Segment::Field(_));
        }
        if !wrote_field {
            write!(f, "<root>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Applies `patch` to `original` and compares with `expected`. Every result is also checked
    /// for leftover directive keys, which must never reach a stored object.
    fn check(group: &str, kind: &str, original: Value, patch: Value, expected: Value) {
        let result = apply(group, kind, &original, &patch).unwrap_or_else(|error| panic!("{error}\npatch: {patch}"));
        assert_eq!(result, expected, "\npatch:    {patch}\noriginal: {original}");
        assert_no_directives(&result);
    }

    /// Applies a patch that must fail and returns the error.
    fn check_error(group: &str, kind: &str, original: Value, patch: Value) -> PatchError {
        match apply(group, kind, &original, &patch) {
            Ok(result) => panic!("patch {patch} should fail, produced {result}"),
            Err(error) => error,
        }
    }

    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    assert!(!is_directive_key(key), "directive {key} leaked into {value}");
                    assert_no_directives(child);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    /// A Pod whose spec is `spec`.
    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    /// A Deployment whose pod template spec is `pod_spec`.
    fn deployment(pod_spec: Value) -> Value {
        json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "template": {"spec": pod_spec}}})
    }

    fn containers(names: &[&str]) -> Value {
        names.iter().map(|name| json!({"name": name, "image": format!("{name}:1")})).collect()
    }

    // --- objects ---

    #[test]
    fn objects_merge_recursively() {
        check(
            "",
            "Pod",
            json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"b": "3", "c": "4"}}}),
            json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "3", "c": "4"}}}),
        );
    }

    #[test]
    fn null_deletes_a_field_and_is_not_stored_when_absent() {
        check(
            "",
            "Pod",
            json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null, "missing": null}}}),
            json!({"metadata": {"name": "p", "labels": {"b": "2"}}}),
        );
    }

    #[test]
    fn scalars_and_changed_types_are_replaced() {
        check(
            "apps",
            "Deployment",
            json!({"spec": {"replicas": 1, "paused": "yes", "selector": {"matchLabels": {"app": "x"}}}}),
            json!({"spec": {"replicas": 3, "paused": {"now": true}, "selector": "none"}}),
            json!({"spec": {"replicas": 3, "paused": {"now": true}, "selector": "none"}}),
        );
    }

    #[test]
    fn patch_replace_directive_replaces_a_map_and_drops_its_nulls() {
        check(
            "",
            "Pod",
            json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3", "d": null}}}),
            json!({"metadata": {"name": "p", "labels": {"c": "3"}}}),
        );
    }

    #[test]
    fn patch_delete_directive_removes_a_map() {
        check(
            "apps",
            "Deployment",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}}),
            json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
        );
    }

    #[test]
    fn patch_delete_directive_at_the_top_level_leaves_an_empty_object() {
        check("", "ConfigMap", json!({"data": {"a": "1"}}), json!({"$patch": "delete"}), json!({}));
    }

    #[test]
    fn explicit_merge_directive_is_the_default() {
        check(
            "",
            "ConfigMap",
            json!({"data": {"a": "1"}}),
            json!({"$patch": "merge", "data": {"$patch": "merge", "b": "2"}}),
            json!({"data": {"a": "1", "b": "2"}}),
        );
    }

    #[test]
    fn unknown_patch_directive_is_rejected() {
        let error = check_error("", "ConfigMap", json!({}), json!({"data": {"$patch": "squash"}}));
        assert_eq!(error, PatchError::InvalidPatchDirective { path: "data".into(), value: "\"squash\"".into() });
        let error =
            check_error("", "Pod", pod(json!({})), json!({"spec": {"containers": [{"name": "a", "$patch": 1}]}}));
        assert!(matches!(error, PatchError::InvalidPatchDirective { .. }), "{error}");
    }

    #[test]
    fn fields_that_merely_start_with_a_dollar_are_data() {
        // CustomResourceDefinition schemas have `$ref` and `$schema` fields.
        check(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            json!({"spec": {"schema": {"$ref": "#/a"}}}),
            json!({"spec": {"schema": {"$ref": "#/b", "$schema": "draft-4"}}}),
            json!({"spec": {"schema": {"$ref": "#/b", "$schema": "draft-4"}}}),
        );
    }

    // --- retainKeys ---

    #[test]
    fn retain_keys_clears_unlisted_fields_of_a_deployment_strategy() {
        check(
            "apps",
            "Deployment",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
    }

    #[test]
    fn retain_keys_switches_a_volume_source() {
        check(
            "",
            "Pod",
            pod(json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "secret": {"secretName": "s"}}]})),
            json!({"spec": {
                "$setElementOrder/volumes": [{"name": "v"}, {"name": "w"}],
                "volumes": [{"$retainKeys": ["hostPath", "name"], "name": "v", "hostPath": {"path": "/x"}}]
            }}),
            pod(json!({"volumes": [
                {"name": "v", "hostPath": {"path": "/x"}},
                {"name": "w", "secret": {"secretName": "s"}}
            ]})),
        );
    }

    #[test]
    fn retain_keys_must_list_every_field_the_patch_sets() {
        let error = check_error(
            "apps",
            "Deployment",
            json!({}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}}),
        );
        assert!(matches!(&error, PatchError::InvalidRetainKeys { path, .. } if path == "spec.strategy"), "{error}");
    }

    #[test]
    fn retain_keys_must_be_a_list_of_names() {
        let error =
            check_error("apps", "Deployment", json!({}), json!({"spec": {"strategy": {"$retainKeys": "type"}}}));
        assert!(matches!(error, PatchError::InvalidRetainKeys { .. }), "{error}");
        let error = check_error("apps", "Deployment", json!({}), json!({"spec": {"strategy": {"$retainKeys": [1]}}}));
        assert!(matches!(error, PatchError::InvalidRetainKeys { .. }), "{error}");
    }

    // --- keyed lists ---

    #[test]
    fn kubectl_apply_changes_the_image_and_keeps_server_side_ports() {
        let original = deployment(json!({"containers": [
            {"name": "main", "image": "nginx:1.25", "ports": [{"containerPort": 80}], "imagePullPolicy": "IfNotPresent"}
        ]}));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "main"}],
            "containers": [{"image": "nginx:1.26", "name": "main"}]
        }}}});
        let expected = deployment(json!({"containers": [
            {"name": "main", "image": "nginx:1.26", "ports": [{"containerPort": 80}], "imagePullPolicy": "IfNotPresent"}
        ]}));
        check("apps", "Deployment", original, patch, expected);
    }

    #[test]
    fn keyed_items_merge_by_key_and_leave_other_items_alone() {
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["a", "b"])})),
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
            pod(json!({"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]})),
        );
    }

    #[test]
    fn nested_keyed_lists_merge_through_a_deployment_template() {
        let original = deployment(json!({"containers": [{
            "name": "app",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}]
        }]}));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{
            "name": "app",
            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
            "ports": [{"containerPort": 443, "protocol": "TCP"}]
        }]}}}});
        let expected = deployment(json!({"containers": [{
            "name": "app",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https", "protocol": "TCP"}]
        }]}));
        check("apps", "Deployment", original, patch, expected);
    }

    #[test]
    fn new_item_without_order_directive_goes_before_unmentioned_items() {
        // What a Kubernetes API server does for `kubectl patch` adding a container.
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["a"])})),
            json!({"spec": {"containers": [{"name": "b", "image": "b:1"}]}}),
            pod(json!({"containers": containers(&["b", "a"])})),
        );
    }

    #[test]
    fn patch_order_wins_and_unmentioned_items_keep_their_place() {
        // The design proposal's example: live B C A, patch A' B' D.
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["b", "c", "a"])})),
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2"}, {"name": "b", "image": "b:2"}, {"name": "d", "image": "d:1"}
            ]}}),
            pod(json!({"containers": [
                {"name": "c", "image": "c:1"}, {"name": "a", "image": "a:2"},
                {"name": "b", "image": "b:2"}, {"name": "d", "image": "d:1"}
            ]})),
        );
    }

    #[test]
    fn new_keyed_item_in_an_existing_list_gets_its_directives_stripped() {
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["a"])})),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "image": "b:1", "args": null, "env": [{"name": "X", "$patch": "delete"}]}]
            }}),
            pod(json!({"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1", "env": []}]})),
        );
    }

    #[test]
    fn missing_keyed_list_is_created_without_directives_or_nulls() {
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["a"])})),
            json!({"spec": {
                "$setElementOrder/initContainers": [{"name": "second"}, {"name": "first"}],
                "initContainers": [
                    {"name": "second", "$retainKeys": ["name", "env"], "env": [{"name": "A", "value": "1"}, {"name": "B", "$patch": "delete"}]},
                    {"name": "gone", "$patch": "delete"},
                    {"name": "first", "image": "busybox", "resources": {"$patch": "merge", "limits": {"cpu": null}}}
                ]
            }}),
            pod(json!({
                "containers": containers(&["a"]),
                "initContainers": [
                    {"name": "second", "env": [{"name": "A", "value": "1"}]},
                    {"name": "first", "image": "busybox", "resources": {"limits": {}}}
                ]
            })),
        );
    }

    #[test]
    fn delete_directive_removes_every_item_with_the_key() {
        check(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "a", "image": "dup"}]})),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            pod(json!({"containers": [{"name": "b"}]})),
        );
    }

    #[test]
    fn delete_directive_needs_the_merge_key() {
        let error = check_error("", "Pod", pod(json!({})), json!({"spec": {"containers": [{"$patch": "delete"}]}}));
        assert!(matches!(&error, PatchError::MissingMergeKey { key, .. } if key == "name"), "{error}");
    }

    #[test]
    fn replace_marker_replaces_a_keyed_list() {
        check(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "a", "ports": [{"containerPort": 1}]}, {"name": "b"}]})),
            json!({"spec": {"containers": [{"name": "a", "image": "new"}, {"$patch": "replace"}]}}),
            pod(json!({"containers": [{"name": "a", "image": "new"}]})),
        );
    }

    #[test]
    fn patch_item_without_merge_key_is_rejected_with_a_clear_message() {
        let error = check_error(
            "apps",
            "Deployment",
            deployment(json!({"containers": containers(&["a"])})),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        );
        assert_eq!(
            error.to_string(),
            "map: {\"image\":\"x\"} does not contain declared merge key: name (in list spec.template.spec.containers)"
        );
    }

    #[test]
    fn patch_item_that_is_not_an_object_in_a_keyed_list_is_rejected() {
        let error = check_error("", "Pod", pod(json!({})), json!({"spec": {"containers": ["a"]}}));
        assert!(matches!(&error, PatchError::MissingMergeKey { item, .. } if item == "\"a\""), "{error}");
    }

    #[test]
    fn repeated_patch_keys_merge_in_sequence() {
        check(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "a", "image": "a:1"}]})),
            json!({"spec": {"containers": [{"name": "a", "image": "a:2"}, {"name": "a", "tty": true}]}}),
            pod(json!({"containers": [{"name": "a", "image": "a:2", "tty": true}]})),
        );
    }

    #[test]
    fn numeric_merge_keys_compare_by_value() {
        check(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]})),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80.0, "protocol": "TCP"}]}]}}),
            // The patch's spelling of the key is stored, as for any field the patch sets.
            pod(
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80.0, "name": "http", "protocol": "TCP"}]}]}),
            ),
        );
    }

    #[test]
    fn service_ports_merge_by_port_number() {
        check(
            "",
            "Service",
            json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "m", "port": 9090}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8081}]}}),
            json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8081}, {"name": "m", "port": 9090}]}}),
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        check(
            "",
            "ConfigMap",
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "A", "name": "a"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "A", "name": "a", "controller": true}]}}),
        );
    }

    #[test]
    fn node_status_merges_addresses_and_conditions_by_type() {
        check(
            "",
            "Node",
            json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]
            }}),
            json!({"status": {
                "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "DiskPressure"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                "conditions": [{"type": "Ready", "status": "True"}]
            }}),
            json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]
            }}),
        );
    }

    #[test]
    fn pod_lists_merge_by_their_own_keys() {
        check(
            "",
            "Pod",
            pod(json!({
                "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["a"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}],
                "imagePullSecrets": [{"name": "s1"}]
            })),
            json!({"spec": {
                "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
                "imagePullSecrets": [{"name": "s1"}]
            }}),
            pod(json!({
                "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
                "imagePullSecrets": [{"name": "s1"}]
            })),
        );
    }

    #[test]
    fn pod_status_conditions_merge_by_type() {
        check(
            "",
            "Pod",
            json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}),
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}
            ]}}),
        );
    }

    #[test]
    fn service_account_image_pull_secrets_are_atomic_but_secrets_merge() {
        check(
            "",
            "ServiceAccount",
            json!({"secrets": [{"name": "a"}], "imagePullSecrets": [{"name": "x"}]}),
            json!({"secrets": [{"name": "b"}], "imagePullSecrets": [{"name": "y"}]}),
            json!({"secrets": [{"name": "b"}, {"name": "a"}], "imagePullSecrets": [{"name": "y"}]}),
        );
    }

    // --- $setElementOrder ---

    #[test]
    fn set_element_order_alone_reorders_a_keyed_list() {
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["b", "a"])})),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}]}}),
            pod(json!({"containers": containers(&["a", "b"])})),
        );
    }

    #[test]
    fn set_element_order_interleaves_server_only_items_by_stored_position() {
        // Live C B D A E, order A B. The design proposal's text puts C D E first; the Kubernetes
        // implementation (mergeSortedSlice) yields C D A B E, and Keel matches the implementation.
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["c", "b", "d", "a", "e"])})),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:2"}]
            }}),
            pod(json!({"containers": [
                {"name": "c", "image": "c:1"}, {"name": "d", "image": "d:1"}, {"name": "a", "image": "a:2"},
                {"name": "b", "image": "b:2"}, {"name": "e", "image": "e:1"}
            ]})),
        );
    }

    #[test]
    fn set_element_order_with_deletion_and_server_added_items() {
        // The proposal's env example: the server added ENV4 and ENV5 and reordered the list.
        let env = |names: &[&str]| -> Value { names.iter().map(|name| json!({"name": name, "value": name})).collect() };
        let original =
            pod(json!({"containers": [{"name": "c", "env": env(&["ENV2", "ENV5", "ENV1", "ENV3", "ENV4"])}]}));
        let patch = json!({"spec": {"containers": [{
            "name": "c",
            "$setElementOrder/env": [{"name": "ENV1"}, {"name": "ENV2"}, {"name": "ENV6"}],
            "env": [{"name": "ENV3", "$patch": "delete"}, {"name": "ENV6", "value": "ENV6"}]
        }]}});
        let expected =
            pod(json!({"containers": [{"name": "c", "env": env(&["ENV5", "ENV1", "ENV2", "ENV6", "ENV4"])}]}));
        check("", "Pod", original, patch, expected);
    }

    #[test]
    fn set_element_order_ignores_entries_not_in_the_list() {
        check(
            "",
            "Pod",
            pod(json!({"containers": containers(&["a", "b"])})),
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}}),
            pod(json!({"containers": containers(&["b", "a"])})),
        );
    }

    #[test]
    fn set_element_order_must_be_a_list() {
        let error =
            check_error("", "Pod", pod(json!({})), json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}));
        assert!(matches!(&error, PatchError::InvalidSetElementOrder { path, .. } if path == "spec"), "{error}");
    }

    #[test]
    fn set_element_order_must_agree_with_the_patch_list() {
        let missing = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}});
        let error = check_error("", "Pod", pod(json!({})), missing);
        assert!(matches!(error, PatchError::InvalidSetElementOrder { .. }), "{error}");
        let reversed = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b"}, {"name": "a"}]
        }});
        let error = check_error("", "Pod", pod(json!({})), reversed);
        assert!(matches!(error, PatchError::InvalidSetElementOrder { .. }), "{error}");
    }

    #[test]
    fn set_element_order_entries_need_the_merge_key() {
        let original = pod(json!({"containers": containers(&["a"])}));
        let error =
            check_error("", "Pod", original, json!({"spec": {"$setElementOrder/containers": [{"image": "a"}]}}));
        assert!(matches!(&error, PatchError::MissingMergeKey { key, .. } if key == "name"), "{error}");
    }

    #[test]
    fn list_directives_on_a_non_list_or_without_a_field_name_are_rejected() {
        let error = check_error("", "Pod", pod(json!({})), json!({"metadata": {"$setElementOrder/name": ["a"]}}));
        assert!(matches!(error, PatchError::InvalidSetElementOrder { .. }), "{error}");
        let error = check_error("", "Pod", pod(json!({})), json!({"metadata": {"$setElementOrder": ["a"]}}));
        assert!(matches!(error, PatchError::InvalidSetElementOrder { .. }), "{error}");
        let error = check_error("", "Pod", pod(json!({})), json!({"metadata": {"$deleteFromPrimitiveList/": ["a"]}}));
        assert!(matches!(error, PatchError::InvalidDeleteFromPrimitiveList { .. }), "{error}");
        let error =
            check_error("", "Pod", pod(json!({})), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}));
        assert!(matches!(error, PatchError::InvalidDeleteFromPrimitiveList { .. }), "{error}");
        let error = check_error(
            "",
            "Pod",
            pod(json!({})),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": "a"}}),
        );
        assert!(matches!(error, PatchError::InvalidDeleteFromPrimitiveList { .. }), "{error}");
    }

    #[test]
    fn list_directives_alone_do_not_create_a_missing_list() {
        check(
            "",
            "Pod",
            json!({"metadata": {"name": "p"}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["a"], "$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"name": "p"}}),
        );
    }

    #[test]
    fn null_wins_over_list_directives() {
        check(
            "",
            "Pod",
            json!({"metadata": {"name": "p", "finalizers": ["a"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["a"], "finalizers": null}}),
            json!({"metadata": {"name": "p"}}),
        );
    }

    // --- sets of scalars ---

    #[test]
    fn finalizers_merge_as_a_set() {
        check(
            "",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        );
    }

    #[test]
    fn set_additions_without_order_go_before_unmentioned_values_and_duplicates_go() {
        check(
            "",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "a", "b"]}}),
            json!({"metadata": {"finalizers": ["z"]}}),
            json!({"metadata": {"finalizers": ["z", "a", "b"]}}),
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_values() {
        check(
            "",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "c", "absent"]}}),
            json!({"metadata": {"finalizers": ["a"]}}),
        );
    }

    #[test]
    fn set_element_order_reorders_a_set() {
        check(
            "",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
        );
    }

    #[test]
    fn set_order_deletion_and_addition_with_server_only_values() {
        // The proposal's finalizers example: the server added d and e and reordered.
        check(
            "",
            "Pod",
            json!({"metadata": {"finalizers": ["b", "e", "a", "c", "d"]}}),
            json!({"metadata": {
                "$setElementOrder/finalizers": ["a", "b", "f"],
                "$deleteFromPrimitiveList/finalizers": ["c"],
                "finalizers": ["f"]
            }}),
            json!({"metadata": {"finalizers": ["e", "a", "b", "f", "d"]}}),
        );
    }

    #[test]
    fn replace_marker_replaces_a_set() {
        check(
            "",
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c", {"$patch": "replace"}, "c"]}}),
            json!({"metadata": {"finalizers": ["c"]}}),
        );
    }

    #[test]
    fn node_pod_cidrs_merge_as_a_set() {
        check(
            "",
            "Node",
            json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}}),
            json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}),
            json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}),
        );
    }

    // --- empty and atomic lists ---

    #[test]
    fn empty_patch_list_leaves_merged_lists_alone() {
        check(
            "",
            "Pod",
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}}),
            json!({"metadata": {"finalizers": []}, "spec": {"containers": []}}),
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}}),
        );
    }

    #[test]
    fn empty_patch_list_empties_an_atomic_list_and_creates_a_missing_one() {
        check(
            "",
            "Pod",
            pod(json!({"tolerations": [{"key": "k", "operator": "Exists"}]})),
            json!({"spec": {"tolerations": [], "containers": []}}),
            pod(json!({"tolerations": [], "containers": []})),
        );
    }

    #[test]
    fn atomic_lists_are_replaced_and_cleaned() {
        check(
            "",
            "Pod",
            pod(json!({"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]})),
            json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists", "value": null}, {"$patch": "replace"}]}}),
            pod(json!({"tolerations": [{"key": "c", "operator": "Exists"}]})),
        );
    }

    #[test]
    fn node_taints_are_atomic() {
        check(
            "",
            "Node",
            json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
        );
    }

    #[test]
    fn delete_from_primitive_list_on_an_atomic_list_removes_values() {
        check(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "a", "args": ["-v", "-x", "-y"]}]})),
            json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["-x"]}]}}),
            pod(json!({"containers": [{"name": "a", "args": ["-v", "-y"]}]})),
        );
    }

    // --- unknown kinds ---

    #[test]
    fn unknown_kinds_replace_every_list() {
        check(
            "example.com",
            "Widget",
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "x", "size": 1}]}}),
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "x"}]}}),
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "x"}]}}),
        );
    }

    #[test]
    fn unknown_kinds_still_honour_directives_and_nulls() {
        check(
            "example.com",
            "Widget",
            json!({"spec": {"a": {"x": 1, "y": 2}, "b": {"z": 3}, "c": 4, "list": [1, 2, 3]}}),
            json!({"spec": {
                "a": {"$patch": "replace", "x": 9},
                "b": {"$patch": "delete"},
                "c": null,
                "$deleteFromPrimitiveList/list": [2]
            }}),
            json!({"spec": {"a": {"x": 9}, "list": [1, 3]}}),
        );
    }

    // --- bad input ---

    #[test]
    fn patch_and_original_must_be_objects() {
        let error = check_error("", "Pod", json!({}), json!([1]));
        assert_eq!(error, PatchError::NotAnObject { what: "patch", found: "list" });
        assert_eq!(error.to_string(), "patch must be a JSON object, got list");
        let error = check_error("", "Pod", json!("x"), json!({}));
        assert_eq!(error, PatchError::NotAnObject { what: "original object", found: "string" });
    }

    /// A patch of `levels` nested objects (built by hand: serde_json's parser stops at 128).
    fn nested_patch(levels: usize) -> Value {
        let mut value = json!({"leaf": true});
        for _ in 0..levels {
            value = json!({"n": value});
        }
        value
    }

    #[test]
    fn deep_patches_are_rejected_and_shallow_ones_accepted() {
        let error = check_error("example.com", "Widget", json!({}), nested_patch(MAX_DEPTH + 20));
        assert_eq!(error, PatchError::TooDeep { max_depth: MAX_DEPTH });
        let result = apply("example.com", "Widget", &json!({}), &nested_patch(MAX_DEPTH - 5));
        assert_eq!(result, Ok(nested_patch(MAX_DEPTH - 5)));
    }

    #[test]
    fn deep_lists_count_towards_the_depth_bound() {
        let mut value = json!(1);
        for _ in 0..MAX_DEPTH + 20 {
            value = json!([value]);
        }
        let error = check_error("example.com", "Widget", json!({}), json!({"spec": value}));
        assert_eq!(error, PatchError::TooDeep { max_depth: MAX_DEPTH });
    }

    #[test]
    fn malformed_input_is_an_error_or_a_clean_result_never_a_panic() {
        let original = json!({
            "metadata": {"finalizers": [1, {"a": 1}, ["x"]], "ownerReferences": "not a list"},
            "spec": {"containers": [7, {"image": "no name"}, {"name": "a", "ports": [{"containerPort": 1}]}]}
        });
        let patches = [
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": {"nested": true}}]}]}}),
            json!({"spec": {"containers": [{"name": null}], "$setElementOrder/containers": [{"name": null}]}}),
            json!({"spec": {"containers": [[{"name": "a"}]]}}),
            json!({"metadata": {"finalizers": [{"$patch": "delete"}, [1, {"$patch": "replace"}], null]}}),
            json!({"metadata": {"ownerReferences": [{"uid": 1}], "$deleteFromPrimitiveList/ownerReferences": [{}]}}),
            json!({"metadata": {"$setElementOrder/finalizers": [{"a": 1}, 1, ["x"], null]}}),
            json!({"spec": {"$retainKeys": [], "containers": null}}),
            json!({"$setElementOrder/spec": [], "spec": {"$patch": "replace", "$retainKeys": ["x"], "x": [{"$patch": 0}]}}),
        ];
        let mut failures = 0;
        for patch in patches {
            match apply("", "Pod", &original, &patch) {
                Ok(result) => assert_no_directives(&result),
                Err(_) => failures += 1,
            }
        }
        // The patches above include both kinds: some are rejected, some apply.
        assert!(failures > 0 && failures < 8, "{failures} patches failed");
    }

    #[test]
    fn long_values_are_shortened_in_error_messages() {
        let item = json!({"image": "x".repeat(10_000)});
        let error = check_error("", "Pod", pod(json!({})), json!({"spec": {"containers": [item]}}));
        assert!(error.to_string().len() < 400, "{error}");
    }

    #[test]
    fn large_keyed_lists_merge() {
        let env: Vec<Value> = (0..20_000).map(|i| json!({"name": format!("V{i}"), "value": "old"})).collect();
        let patch: Vec<Value> = (0..20_000).rev().map(|i| json!({"name": format!("V{i}"), "value": "new"})).collect();
        let original = pod(json!({"containers": [{"name": "a", "env": env}]}));
        let patched = apply("", "Pod", &original, &json!({"spec": {"containers": [{"name": "a", "env": patch}]}}))
            .expect("patch applies");
        let merged = patched["spec"]["containers"][0]["env"].as_array().expect("env is a list");
        assert_eq!(merged.len(), 20_000);
        // The patch order wins: it listed the variables in reverse.
        assert_eq!(merged[0], json!({"name": "V19999", "value": "new"}));
    }
}
