//! Server-side apply: merging an applied configuration, conflicts, `force`, and removal of what
//! an applier stopped applying.
//!
//! An apply by manager M, as Kubernetes runs it:
//! 1. An object that has no `managedFields` at all first gets an `Update` entry
//!    `before-first-apply` owning everything it holds, so its existing fields have an owner.
//! 2. The configuration is merged into the live object ([`super::merge::merge`]); M's entry
//!    becomes exactly the fields of the configuration.
//! 3. What M applied last time and no longer applies is removed, unless someone owns it
//!    ([`super::merge::prune`]).
//! 4. Every field the result changes or adds that another manager owns is a conflict: the apply
//!    fails with all of them, or, with `force`, the others lose those fields. Others also lose
//!    fields the result removed.
//! 5. M's entry is stamped with the time if the object changed; an apply that changes nothing
//!    leaves the object as it was.
//!
//! `kubectl` itself gets two extras, for moving from client-side to server-side apply: conflicts
//! on fields whose value is still the one in the `last-applied-configuration` annotation are
//! forced (they were kubectl's own), and when the object carries that annotation, it is kept up
//! to date with what was applied, so a later client-side `kubectl apply` still works.

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, Path, path_string, values_equal};
use super::managed::{Entry, ManagerId, Managers};
use super::merge::{merge, prune};
use super::typed::{compare, to_field_set};
use super::update::record_update;
use super::{Context, FieldManagerError, strip_set, without_managed_fields};

/// The manager name whose applies upgrade client-side apply's ownership.
pub const KUBECTL: &str = "kubectl";

/// The annotation client-side `kubectl apply` keeps its last applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The entry given, on its first apply, to an object that had no `managedFields`.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: ManagerId,
    pub path: Path,
}

/// Every conflict of a failed apply, ordered by manager then path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// Kubernetes' message: `Apply failed with 1 conflict: conflict with "alice": .spec.replicas`,
    /// or, for several, one block per manager.
    #[must_use]
    pub fn message(&self) -> String {
        match self.0.as_slice() {
            [only] => format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager.describe(),
                path_string(&only.path)
            ),
            all => {
                let mut lines = Vec::new();
                let mut current: Option<&ManagerId> = None;
                for conflict in all {
                    if current != Some(&conflict.manager) {
                        lines.push(format!("conflicts with {}:", conflict.manager.describe()));
                        current = Some(&conflict.manager);
                    }
                    lines.push(format!("- {}", path_string(&conflict.path)));
                }
                format!("Apply failed with {} conflicts: {}", all.len(), lines.join("\n"))
            }
        }
    }

    /// The `details.causes` of the 409: `(message, field)` per conflict, the `FieldManagerConflict`
    /// causes Kubernetes lists.
    #[must_use]
    pub fn causes(&self) -> Vec<(String, String)> {
        self.0.iter().map(|c| (format!("conflict with {}", c.manager.describe()), path_string(&c.path))).collect()
    }
}

/// The object to store after `manager` applied `config` (with `managedFields` set), given the
/// live object (`None`: the apply creates it). `config` must not carry `managedFields`.
pub fn apply(
    ctx: &Context<'_>,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, FieldManagerError> {
    let mut managers = Managers::decode(live.and_then(|l| l.pointer("/metadata/managedFields")))?;
    let live = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    if managers.is_empty() {
        let id = ManagerId::update(BEFORE_FIRST_APPLY, ctx.api_version, ctx.subresource);
        record_update(ctx, &mut managers, &Value::Object(Map::new()), &live, &id)?;
    }
    let id = ManagerId::apply(manager, ctx.subresource);
    let (managers, mut object) = match apply_once(ctx, &managers, &live, config, &id, force) {
        Err(FieldManagerError::Conflicts(conflicts)) if manager == KUBECTL => {
            let allowed = owned_by_client_side_apply(ctx, &live).unwrap_or_default();
            let remaining: Vec<Conflict> = conflicts.0.into_iter().filter(|c| !allowed.has(&c.path)).collect();
            if !remaining.is_empty() {
                return Err(FieldManagerError::Conflicts(Conflicts(remaining)));
            }
            apply_once(ctx, &managers, &live, config, &id, true)?
        }
        outcome => outcome?,
    };
    if manager == KUBECTL {
        refresh_last_applied(&mut object, config);
    }
    let metadata = super::metadata_mut(&mut object);
    match managers.encode() {
        Some(entries) => metadata.insert("managedFields".into(), entries),
        None => metadata.remove("managedFields"),
    };
    Ok(object)
}

/// One attempt: the new entries and the object (the live one when nothing changed).
fn apply_once(
    ctx: &Context<'_>,
    managers: &Managers,
    live: &Value,
    config: &Value,
    id: &ManagerId,
    force: bool,
) -> Result<(Managers, Value), FieldManagerError> {
    let mut managers = managers.clone();
    let merged = merge(live, config, ctx.shape)?;
    let previous = managers.entries.get(id).cloned();
    let last = previous.as_ref().map(|entry| entry.fields.clone()).unwrap_or_default();
    let applied = to_field_set(config, ctx.shape)?.recursive_difference(&ctx.ignored);
    managers.entries.insert(
        id.clone(),
        Entry { fields: applied, api_version: ctx.api_version.to_string(), time: previous.and_then(|e| e.time) },
    );
    let result = prune(&merged, &managers.all_fields(), &last, ctx.shape)?;
    let comparison = compare(live, &result, ctx.shape)?.excluding(&ctx.ignored);
    let set_fields = comparison.set_fields();
    let mut conflicts = Vec::new();
    for (other, entry) in managers.entries.iter().filter(|(other, _)| *other != id) {
        let taken = entry.fields.intersection(&set_fields);
        conflicts.extend(taken.paths().into_iter().map(|path| Conflict { manager: other.clone(), path }));
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by_key(|conflict| conflict.manager.identifier());
        return Err(FieldManagerError::Conflicts(Conflicts(conflicts)));
    }
    for (other, entry) in managers.entries.iter_mut() {
        entry.fields = if other == id {
            entry.fields.difference(&strip_set())
        } else {
            entry.fields.difference(&set_fields).difference(&comparison.removed)
        };
    }
    managers.drop_empty();
    if values_equal(live, &result) {
        return Ok((managers, live.clone()));
    }
    if let Some(entry) = managers.entries.get_mut(id) {
        entry.time = Some(ctx.now.to_string());
    }
    Ok((managers, result))
}

/// The fields client-side apply manages: those of the `last-applied-configuration` annotation
/// whose value the live object still has. `None` without a usable annotation.
fn owned_by_client_side_apply(ctx: &Context<'_>, live: &Value) -> Option<FieldSet> {
    let text = live.pointer("/metadata/annotations")?.get(LAST_APPLIED)?.as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(ctx.api_version) {
        return None;
    }
    let fields = to_field_set(&last, ctx.shape).ok()?;
    let comparison = compare(&last, live, ctx.shape).ok()?;
    Some(fields.difference(&comparison.modified).difference(&comparison.added).difference(&comparison.removed))
}

/// Keeps an existing `last-applied-configuration` annotation equal to what kubectl applied.
fn refresh_last_applied(object: &mut Value, config: &Value) {
    let has_annotation = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|text| !text.is_empty());
    if !has_annotation {
        return;
    }
    let mut applied = config.clone();
    if let Some(metadata) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        let emptied = match metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            Some(annotations) => {
                annotations.remove(LAST_APPLIED);
                annotations.is_empty()
            }
            None => false,
        };
        if emptied {
            metadata.remove("annotations");
        }
    }
    // kubectl's encoder ends the JSON with a newline; so does Kubernetes'.
    let text = format!("{applied}\n");
    if let Some(annotations) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.insert(LAST_APPLIED.into(), Value::String(text));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::typed::Shape;
    use super::*;

    const T1: &str = "2019-03-30T15:00:00Z";
    const T2: &str = "2019-03-30T16:00:00Z";
    const T3: &str = "2019-03-30T17:00:00Z";

    fn ctx<'a>(group: &str, kind: &str, api_version: &'a str, now: &'a str) -> Context<'a> {
        Context { shape: Shape::root(group, kind), api_version, subresource: "", ignored: FieldSet::new(), now }
    }

    fn entries(object: &Value) -> Vec<(String, String, Value)> {
        object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap_or("").to_string(),
                    e["operation"].as_str().unwrap_or("").to_string(),
                    e["fieldsV1"].clone(),
                )
            })
            .collect()
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm", "labels": {"test-label": "test"}}, "data": data})
    }

    /// The stored form after an apply that creates: the server fills uid and namespace.
    fn stored(mut object: Value) -> Value {
        object["metadata"]["uid"] = json!("u1");
        object["metadata"]["namespace"] = json!("default");
        object
    }

    #[test]
    fn the_documented_configmap_apply() {
        let object = apply(&ctx("", "ConfigMap", "v1", T1), None, &cm(json!({"key": "some value"})), "kubectl", false)
            .expect("apply");
        assert_eq!(
            object["metadata"]["managedFields"],
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}}}])
        );
        assert_eq!(object["data"]["key"], "some value");
    }

    #[test]
    fn two_appliers_conflict_and_force_moves_ownership() {
        let c = ctx("", "ConfigMap", "v1", T1);
        let live = stored(apply(&c, None, &cm(json!({"key": "a"})), "alice", false).expect("alice"));
        let bob = cm(json!({"key": "b"}));
        let error = apply(&ctx("", "ConfigMap", "v1", T2), Some(&live), &bob, "bob", false).expect_err("conflict");
        let FieldManagerError::Conflicts(conflicts) = &error else { panic!("{error}") };
        assert_eq!(conflicts.message(), "Apply failed with 1 conflict: conflict with \"alice\": .data.key");
        assert_eq!(conflicts.causes(), vec![("conflict with \"alice\"".to_string(), ".data.key".to_string())]);
        let forced = apply(&ctx("", "ConfigMap", "v1", T2), Some(&live), &bob, "bob", true).expect("forced");
        assert_eq!(forced["data"]["key"], "b");
        assert_eq!(
            entries(&forced),
            vec![
                ("alice".into(), "Apply".into(), json!({"f:metadata": {"f:labels": {"f:test-label": {}}}})),
                (
                    "bob".into(),
                    "Apply".into(),
                    json!({"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}})
                ),
            ]
        );
    }

    #[test]
    fn the_same_value_is_shared_without_conflict_and_a_no_op_changes_nothing() {
        let live = stored(
            apply(&ctx("", "ConfigMap", "v1", T1), None, &cm(json!({"key": "a"})), "alice", false).expect("alice"),
        );
        let shared =
            apply(&ctx("", "ConfigMap", "v1", T2), Some(&live), &cm(json!({"key": "a"})), "bob", false).expect("bob");
        assert_eq!(entries(&shared).len(), 2);
        let bob = shared["metadata"]["managedFields"].as_array().into_iter().flatten().find(|e| e["manager"] == "bob");
        assert!(bob.is_some_and(|e| e.get("time").is_none()), "bob changed nothing, so no time: {shared}");
        let again = apply(&ctx("", "ConfigMap", "v1", T3), Some(&shared), &cm(json!({"key": "a"})), "bob", false)
            .expect("again");
        assert_eq!(again, shared, "a repeated apply is a no-op");
        // Now neither may change the shared field alone.
        let error = apply(&ctx("", "ConfigMap", "v1", T3), Some(&shared), &cm(json!({"key": "z"})), "bob", false);
        assert!(matches!(error, Err(FieldManagerError::Conflicts(_))));
    }

    #[test]
    fn a_field_dropped_by_its_applier_goes_only_when_nobody_else_owns_it() {
        let c1 = ctx("", "ConfigMap", "v1", T1);
        let live = stored(apply(&c1, None, &cm(json!({"a": "1", "b": "2"})), "alice", false).expect("alice"));
        // bob shares b.
        let live = apply(
            &ctx("", "ConfigMap", "v1", T2),
            Some(&live),
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "test-cm"}, "data": {"b": "2"}}),
            "bob",
            false,
        )
        .expect("bob");
        // alice stops applying both.
        let after =
            apply(&ctx("", "ConfigMap", "v1", T3), Some(&live), &cm(json!({})), "alice", false).expect("alice again");
        assert_eq!(after["data"], json!({"b": "2"}), "a is removed, b is kept for bob");
        assert_eq!(after["metadata"]["labels"], json!({"test-label": "test"}));
    }

    #[test]
    fn transferring_replicas_to_an_autoscaler() {
        // The "Transferring ownership" example of Kubernetes' documentation.
        let shape = ("apps", "Deployment");
        let config = |replicas: Option<i64>| {
            let mut spec = json!({"selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}}});
            if let Some(replicas) = replicas {
                spec["replicas"] = json!(replicas);
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}}, "spec": spec})
        };
        let c = |now| ctx(shape.0, shape.1, "apps/v1", now);
        let live = stored(apply(&c(T1), None, &config(Some(3)), "kubectl", false).expect("user"));
        // The user hands replicas over with a private manager applying only replicas.
        let handover = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx-deployment"}, "spec": {"replicas": 3}});
        let live = apply(&c(T2), Some(&live), &handover, "handover-to-hpa", false).expect("handover");
        // The user stops applying replicas: it stays, owned by handover-to-hpa.
        let live = apply(&c(T2), Some(&live), &config(None), "kubectl", false).expect("user without replicas");
        assert_eq!(live["spec"]["replicas"], 3);
        let owners: Vec<String> = entries(&live)
            .into_iter()
            .filter(|(_, _, f)| f["f:spec"].get("f:replicas").is_some())
            .map(|e| e.0)
            .collect();
        assert_eq!(owners, vec!["handover-to-hpa"]);
        // The autoscaler writes replicas through /scale: the temporary manager disappears.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(7);
        let scale = Context { subresource: "scale", ..c(T3) };
        let managed =
            super::super::update::update(&scale, Some(&live), &scaled, "hpa").expect("scale").expect("entries");
        let names: Vec<&str> = managed.as_array().into_iter().flatten().filter_map(|e| e["manager"].as_str()).collect();
        assert_eq!(names, vec!["kubectl", "hpa"]);
    }

    #[test]
    fn list_items_are_owned_by_key_and_removed_with_their_applier() {
        let c = ctx("apps", "Deployment", "apps/v1", T1);
        let base = |containers: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": containers}}}})
        };
        let live =
            stored(apply(&c, None, &base(json!([{"name": "main", "image": "nginx"}])), "alice", false).expect("alice"));
        let live = apply(&c, Some(&live), &base(json!([{"name": "sidecar", "image": "envoy"}])), "bob", false)
            .expect("bob adds an item");
        let names: Vec<&str> = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, vec!["main", "sidecar"]);
        let error = apply(&c, Some(&live), &base(json!([{"name": "main", "image": "nginx:2"}])), "bob", false)
            .expect_err("conflict");
        assert_eq!(
            error.to_string(),
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.template.spec.containers[name=\"main\"].image"
        );
        let live = apply(&c, Some(&live), &base(json!([])), "bob", false).expect("bob gives up the sidecar");
        assert_eq!(live["spec"]["template"]["spec"]["containers"], json!([{"name": "main", "image": "nginx"}]));
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let c = ctx("", "ConfigMap", "v1", T1);
        let live = stored(apply(&c, None, &cm(json!({"a": "1", "b": "1"})), "alice", false).expect("alice"));
        let mut changed = live.clone();
        changed["data"]["c"] = json!("1");
        let managed =
            super::super::update::update(&c, Some(&live), &changed, "carol").expect("carol").expect("entries");
        changed["metadata"]["managedFields"] = managed;
        let error =
            apply(&c, Some(&changed), &cm(json!({"a": "2", "b": "2", "c": "2"})), "bob", false).expect_err("conflicts");
        assert_eq!(
            error.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"alice\":\n- .data.a\n- .data.b\nconflicts with \"carol\" using v1:\n- .data.c"
        );
    }

    #[test]
    fn an_object_without_entries_gets_a_before_first_apply_owner() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm", "uid": "u"}, "data": {"key": "old"}});
        let error = apply(&ctx("", "ConfigMap", "v1", T1), Some(&live), &cm(json!({"key": "new"})), "alice", false)
            .expect_err("conflict");
        assert_eq!(
            error.to_string(),
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using v1: .data.key"
        );
    }

    #[test]
    fn upgrading_from_client_side_apply() {
        // "Upgrading from client-side apply": fields client-side apply set are kubectl's, so
        // `kubectl apply --server-side` takes them without conflicts; a field someone else changed
        // since (here with `kubectl scale`) still conflicts.
        let c = ctx("", "ConfigMap", "v1", T1);
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm"}, "data": {"a": "1", "b": "1"}});
        let mut created = applied.clone();
        created["metadata"]["annotations"] = json!({LAST_APPLIED: format!("{applied}\n")});
        let managed = super::super::update::update(&c, None, &created, "kubectl-client-side-apply")
            .expect("create")
            .expect("entries");
        let mut live = stored(created);
        live["metadata"]["managedFields"] = managed;
        let mut edited = live.clone();
        edited["data"]["b"] = json!("2");
        edited["metadata"]["managedFields"] =
            super::super::update::update(&c, Some(&live), &edited, "kubectl-edit").expect("edit").expect("entries");
        let server_side = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm"}, "data": {"a": "9", "b": "9"}});
        let error = apply(&ctx("", "ConfigMap", "v1", T2), Some(&edited), &server_side, "kubectl", false)
            .expect_err("b conflicts");
        assert_eq!(error.to_string(), "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.b");
        let other =
            apply(&ctx("", "ConfigMap", "v1", T2), Some(&edited), &server_side, "someone", false).expect_err("both");
        assert!(other.to_string().starts_with("Apply failed with 2 conflicts"), "{other}");
        let only_a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm"}, "data": {"a": "9", "b": "2"}});
        let upgraded =
            apply(&ctx("", "ConfigMap", "v1", T2), Some(&edited), &only_a, "kubectl", false).expect("no conflict");
        assert_eq!(upgraded["data"], json!({"a": "9", "b": "2"}));
        let annotation = upgraded["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap_or("");
        assert_eq!(annotation, format!("{only_a}\n"), "kubectl's annotation follows the server-side apply");
        let kubectl = entries(&upgraded).into_iter().find(|e| e.0 == "kubectl").expect("kubectl entry");
        assert_eq!(kubectl.2, json!({"f:data": {"f:a": {}, "f:b": {}}}));
    }
}
