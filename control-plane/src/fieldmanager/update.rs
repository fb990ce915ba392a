//! Ownership after an `Update`: every write that is not an apply (create, update, JSON, merge
//! and strategic patches, `/status` and `/scale` writes).
//!
//! An update never conflicts. The updater takes every field it changed or added; every other
//! manager loses those fields and every field the update removed; entries left owning nothing
//! disappear. The updater's entry is stamped with the time only when it took something.
//!
//! Which entries the update starts from follows Kubernetes:
//! - a write to a subresource keeps the live object's entries whatever the body says;
//! - otherwise a body that resets `managedFields` (`[]` or `[{}]`) starts from none, a body with
//!   valid entries is taken at its word (so clients can repair or migrate ownership, as `kubectl
//!   apply --server-side` does after a client-side apply), and a body without entries (or with
//!   invalid ones) keeps the live object's;
//! - an existing object that has no entries at all is not tracked until it is first applied
//!   (Kubernetes starts tracking on create and on apply only).

use serde_json::{Map, Value};

use super::fieldpath::FieldSet;
use super::managed::{Entry, MAX_UPDATE_ENTRIES, ManagerId, Managers, is_reset};
use super::typed::compare;
use super::{Context, FieldManagerError, strip_set};

/// The `managedFields` to store after `manager` wrote `new` over `live` (`None` for a create);
/// `None` when no entry remains.
pub fn update(
    ctx: &Context<'_>,
    live: Option<&Value>,
    new: &Value,
    manager: &str,
) -> Result<Option<Value>, FieldManagerError> {
    let mut managers = starting_entries(ctx, live, new);
    let existing = live
        .is_some_and(|live| live.pointer("/metadata/uid").and_then(Value::as_str).is_some_and(|uid| !uid.is_empty()));
    if managers.is_empty() && existing {
        return Ok(None);
    }
    let empty = Value::Object(Map::new());
    let id = ManagerId::update(manager_name(manager), ctx.api_version, ctx.subresource);
    // The comparison leaves managedFields out, so neither object is copied without them.
    record_update(ctx, &mut managers, live.unwrap_or(&empty), new, &id)?;
    managers.cap_updates(MAX_UPDATE_ENTRIES);
    Ok(managers.encode())
}

/// An empty manager name is recorded as Kubernetes records it.
pub(crate) fn manager_name(manager: &str) -> &str {
    if manager.is_empty() { "unknown" } else { manager }
}

fn starting_entries(ctx: &Context<'_>, live: Option<&Value>, new: &Value) -> Managers {
    let of = |object: Option<&Value>| Managers::decode(object.and_then(|o| o.pointer("/metadata/managedFields")));
    let live_entries = || of(live).unwrap_or_default();
    if !ctx.subresource.is_empty() {
        return live_entries();
    }
    let sent = new.pointer("/metadata/managedFields");
    if is_reset(sent) {
        return Managers::default();
    }
    match of(Some(new)) {
        Ok(managers) if !managers.is_empty() => managers,
        _ => live_entries(),
    }
}

/// Moves ownership for a change from `live` to `new` made by `id` (their `managedFields` are
/// not looked at).
pub(crate) fn record_update(
    ctx: &Context<'_>,
    managers: &mut Managers,
    live: &Value,
    new: &Value,
    id: &ManagerId,
) -> Result<(), FieldManagerError> {
    let comparison = compare(live, new, ctx.shape)?.excluding(&ctx.ignored);
    let mut taken = comparison.set_fields();
    for entry in managers.entries.values_mut() {
        entry.fields.subtract(&taken);
        entry.fields.subtract(&comparison.removed);
    }
    managers.drop_empty();
    taken.subtract(strip_set());
    if taken.is_empty() {
        return Ok(());
    }
    let entry = managers.entries.entry(id.clone()).or_insert_with(|| Entry {
        fields: FieldSet::new(),
        api_version: ctx.api_version.to_string(),
        time: None,
    });
    entry.fields.extend(&taken);
    entry.time = Some(ctx.now.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::typed::Shape;
    use super::*;

    const T1: &str = "2019-03-30T15:00:00Z";
    const T2: &str = "2019-03-30T16:00:00Z";

    fn ctx<'a>(kind: (&str, &str), api_version: &'a str, subresource: &'a str, now: &'a str) -> Context<'a> {
        Context { shape: Shape::root(kind.0, kind.1), api_version, subresource, ignored: FieldSet::new(), now }
    }

    fn configmap(data: Value, managed: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "test-cm", "namespace": "default", "uid": "u1", "labels": {"test-label": "test"},
                            "managedFields": managed},
               "data": data})
    }

    #[test]
    fn an_update_takes_the_fields_it_changes_from_the_applier() {
        // Kubernetes' documented example: kube-controller-manager updates data.key of a ConfigMap
        // that kubectl applied, and becomes its manager.
        let applied = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1,
            "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}}}]);
        let live = configmap(json!({"key": "some value"}), applied);
        let mut new = live.clone();
        new["data"]["key"] = json!("new value");
        let c = ctx(("", "ConfigMap"), "v1", "", T2);
        let managed = update(&c, Some(&live), &new, "kube-controller-manager").expect("update");
        assert_eq!(
            managed,
            Some(json!([
                {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": T2,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:key": {}}}},
            ]))
        );
    }

    #[test]
    fn a_create_owns_everything_but_server_metadata() {
        let new = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "uid": "u", "creationTimestamp": T1, "labels": {"a": "b"}},
            "data": {"k": "v"}});
        let managed = update(&ctx(("", "ConfigMap"), "v1", "", T1), None, &new, "kubectl-create").expect("create");
        assert_eq!(
            managed,
            Some(json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}}]))
        );
        let unnamed = update(&ctx(("", "ConfigMap"), "v1", "", T1), None, &new, "").expect("create");
        assert_eq!(unnamed.as_ref().and_then(|m| m[0]["manager"].as_str()), Some("unknown"));
    }

    #[test]
    fn removals_leave_every_owner_and_empty_entries_go() {
        let owned = json!([{"manager": "a", "operation": "Update", "apiVersion": "v1", "time": T1, "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:x": {}}}}]);
        let live = configmap(json!({"x": "1", "y": "2"}), owned);
        let mut new = live.clone();
        new["data"] = json!({"y": "2"});
        let managed = update(&ctx(("", "ConfigMap"), "v1", "", T2), Some(&live), &new, "b").expect("update");
        assert_eq!(managed, None, "a removal gives the remover nothing, and a's entry is empty");
    }

    #[test]
    fn a_no_op_update_changes_no_entry() {
        let owned = json!([{"manager": "a", "operation": "Update", "apiVersion": "v1", "time": T1, "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:x": {}}}}]);
        let live = configmap(json!({"x": "1"}), owned.clone());
        let mut new = live.clone();
        new["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
        let managed = update(&ctx(("", "ConfigMap"), "v1", "", T2), Some(&live), &new, "a").expect("update");
        assert_eq!(managed, Some(owned), "same fields, same time");
    }

    #[test]
    fn sent_entries_are_honoured_and_resets_stop_tracking() {
        let live = configmap(
            json!({"x": "1"}),
            json!([{"manager": "a", "operation": "Update", "apiVersion": "v1",
            "time": T1, "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:x": {}}}}]),
        );
        let migrated = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1,
            "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:x": {}}}}]);
        let mut new = live.clone();
        new["metadata"]["managedFields"] = migrated.clone();
        let c = ctx(("", "ConfigMap"), "v1", "", T2);
        assert_eq!(update(&c, Some(&live), &new, "kubectl").expect("update"), Some(migrated.clone()));
        new["metadata"]["managedFields"] = json!([{}]);
        new["data"]["x"] = json!("2");
        assert_eq!(update(&c, Some(&live), &new, "b").expect("update"), None, "reset, and not tracked after");
        // A subresource write cannot change entries.
        new["metadata"]["managedFields"] = migrated;
        let status = ctx(("", "ConfigMap"), "v1", "status", T2);
        let kept = update(&status, Some(&live), &new, "b").expect("update").expect("entries");
        assert_eq!(
            kept,
            json!([{"manager": "b", "operation": "Update", "apiVersion": "v1", "time": T2, "subresource": "status",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:x": {}}}}]),
            "the sent entries are ignored: b takes x from the live entry of a"
        );
    }

    #[test]
    fn a_scale_write_moves_replicas_to_the_scaler() {
        // "Transferring ownership": the HPA-like scaler takes .spec.replicas through /scale.
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment", "uid": "u",
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:selector": {}}}}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}}}});
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(5);
        new["metadata"]["generation"] = json!(2);
        let c = ctx(("apps", "Deployment"), "apps/v1", "scale", T2);
        let managed = update(&c, Some(&live), &new, "hpa").expect("update").expect("entries");
        assert_eq!(managed[0]["fieldsV1"], json!({"f:spec": {"f:selector": {}}}));
        assert_eq!(
            managed[1],
            json!({"manager": "hpa", "operation": "Update", "apiVersion": "apps/v1", "time": T2, "subresource": "scale",
                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}})
        );
    }

    #[test]
    fn ignored_fields_are_owned_by_nobody() {
        let live = json!({"metadata": {"name": "p", "uid": "u", "managedFields": [{"manager": "k", "operation": "Update",
            "apiVersion": "v1", "time": T1, "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}}}}]},
            "spec": {"x": 1}, "status": {"phase": "Pending"}});
        let mut new = live.clone();
        new["status"]["phase"] = json!("Running");
        new["spec"]["x"] = json!(2);
        let mut c = ctx(("", "Pod"), "v1", "", T2);
        c.ignored = FieldSet::from_fields_v1(&json!({"f:status": {}})).expect("set");
        let managed = update(&c, Some(&live), &new, "m").expect("update").expect("entries");
        assert_eq!(managed.as_array().map(Vec::len), Some(1));
        assert_eq!(managed[0]["manager"], "m");
        assert_eq!(managed[0]["fieldsV1"], json!({"f:spec": {"f:x": {}}}));
    }
}
