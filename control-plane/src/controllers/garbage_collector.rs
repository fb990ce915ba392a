//! The garbage collector's decision: dependents whose owners are gone are deleted; owners
//! deleted in the foreground wait for their dependents; owners deleted with orphaning release
//! them.
//!
//! # The graph the runtime keeps
//! [`Graph`] holds every object of every served resource by UID (only what the collector needs:
//! name, namespace, owner references, finalizers, whether it is being deleted) and the reverse
//! index owner UID → dependent UIDs, so every decision is O(owners + dependents of one object).
//! The runtime feeds it from the informers of all served resources ([`Graph::upsert`] on
//! add/update, [`Graph::remove`] on delete); both return the UIDs worth a [`Graph::sync`]
//! (the object, its owners, its dependents). It must not sync before every informer has
//! listed once: before that an owner not yet seen looks deleted. (Kubernetes also re-reads an
//! owner from the API before calling it absent; the runtime should do the same live GET for the
//! owners [`Plan`]s call absent when its caches might lag, e.g. right after a relist.)
//!
//! # What the API server must do (DELETE with propagationPolicy)
//! - `Orphan` (and the default for core/v1 ReplicationController): add the finalizer `orphan`
//!   and set deletionTimestamp instead of deleting; this collector strips the object's UID from
//!   its dependents' ownerReferences, then removes `orphan`.
//! - `Foreground`: add `foregroundDeletion` and set deletionTimestamp; this collector deletes the
//!   dependents and removes `foregroundDeletion` once no dependent with
//!   `blockOwnerDeletion: true` remains.
//! - `Background` (the default for everything else): delete at once (or wait for other
//!   finalizers); the dependents are then owner-less and this collector deletes them.
//! - A write that removes the last finalizer of an object with deletionTimestamp deletes it
//!   (already so in `apiserver/hooks.rs`).
//!
//! # Writes
//! Deletes carry the dependent's UID as precondition (never a same-named successor). Owner
//! references and finalizers are changed by a JSON patch that `test`s the list read and
//! replaces it, so a concurrent change fails the write (the runtime requeues) rather than
//! being lost.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::json;

use super::action::{Action, EventRecord, InvolvedObject, ObjectRef, PatchType, Plan, Propagation, ResourceRef};
use super::endpointslices::to_json;

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// One object as the collector sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub resource: ResourceRef,
    /// `apps/v1`, `v1`: for events.
    pub api_version: String,
    pub kind: String,
    /// None for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owner_references: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    /// deletionTimestamp is set.
    pub deleting: bool,
}

impl Object {
    /// The collector's view of an object's metadata.
    pub fn new(resource: ResourceRef, api_version: &str, kind: &str, metadata: &ObjectMeta) -> Object {
        Object {
            resource,
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: metadata.namespace.clone(),
            name: metadata.name.clone().unwrap_or_default(),
            uid: metadata.uid.clone().unwrap_or_default(),
            owner_references: metadata.owner_references.clone().unwrap_or_default(),
            finalizers: metadata.finalizers.clone().unwrap_or_default(),
            deleting: metadata.deletion_timestamp.is_some(),
        }
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    fn target(&self) -> ObjectRef {
        ObjectRef { resource: self.resource, namespace: self.namespace.clone(), name: self.name.clone() }
    }
}

/// Every object by UID, and who owns whom.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    objects: HashMap<String, Object>,
    /// Owner UID → dependent UIDs (owners may be absent: that is what makes a dependent dangle).
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<&Object> {
        self.objects.get(uid)
    }

    /// Every object's UID (for a full resync).
    pub fn uids(&self) -> impl Iterator<Item = &String> {
        self.objects.keys()
    }

    /// Adds or replaces an object; returns the UIDs to sync: itself, its old and new owners, and
    /// (when it appears or starts being deleted) its dependents.
    pub fn upsert(&mut self, object: Object) -> Vec<String> {
        let uid = object.uid.clone();
        let mut touched = vec![uid.clone()];
        let old = self.objects.remove(&uid);
        if let Some(old) = &old {
            for owner in &old.owner_references {
                self.unlink(&owner.uid, &uid);
                touched.push(owner.uid.clone());
            }
        }
        for owner in &object.owner_references {
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.clone());
            touched.push(owner.uid.clone());
        }
        if old.as_ref().is_none_or(|o| o.deleting != object.deleting) {
            touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        self.objects.insert(uid, object);
        touched.sort();
        touched.dedup();
        touched
    }

    /// Forgets a deleted object; returns the UIDs to sync (its owners, its dependents).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched = Vec::new();
        if let Some(old) = self.objects.remove(uid) {
            for owner in &old.owner_references {
                self.unlink(&owner.uid, uid);
                touched.push(owner.uid.clone());
            }
        }
        touched.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        touched.sort();
        touched.dedup();
        touched
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    fn dependents_of<'a>(&'a self, uid: &str) -> impl Iterator<Item = &'a Object> + 'a {
        self.dependents.get(uid).into_iter().flatten().filter_map(|d| self.objects.get(d))
    }

    /// What to do about the object with this UID (as a dependent and as an owner).
    pub fn sync(&self, uid: &str) -> Plan {
        let mut plan = Plan::default();
        let Some(object) = self.objects.get(uid) else { return plan };
        if object.deleting {
            if object.has_finalizer(ORPHAN_FINALIZER) {
                self.orphan_dependents(object, &mut plan);
                return plan;
            }
            if object.has_finalizer(FOREGROUND_FINALIZER) {
                self.delete_dependents(object, &mut plan);
            }
            return plan;
        }
        self.as_dependent(object, &mut plan);
        plan
    }

    /// Keep, release from dead owners, or delete a dependent.
    fn as_dependent(&self, object: &Object, plan: &mut Plan) {
        if object.owner_references.is_empty() {
            return;
        }
        let mut solid = false;
        let mut gone: Vec<&str> = Vec::new();
        let mut waiting = false;
        for reference in &object.owner_references {
            match self.owner_state(object, reference, plan) {
                OwnerState::Solid => solid = true,
                OwnerState::Absent => gone.push(reference.uid.as_str()),
                OwnerState::Waiting => {
                    waiting = true;
                    gone.push(reference.uid.as_str());
                }
            }
        }
        if solid {
            if !gone.is_empty() {
                let kept: Vec<OwnerReference> =
                    object.owner_references.iter().filter(|r| !gone.contains(&r.uid.as_str())).cloned().collect();
                plan.push(patch_list(
                    object,
                    "/metadata/ownerReferences",
                    to_json(&object.owner_references),
                    to_json(&kept),
                ));
            }
            return;
        }
        let has_dependents = self.dependents_of(&object.uid).next().is_some();
        let propagation = if waiting && has_dependents {
            Propagation::Foreground
        } else if object.has_finalizer(ORPHAN_FINALIZER) {
            Propagation::Orphan
        } else if object.has_finalizer(FOREGROUND_FINALIZER) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        plan.push(Action::Delete {
            target: object.target(),
            uid: Some(object.uid.clone()),
            propagation: Some(propagation),
        });
    }

    fn owner_state(&self, dependent: &Object, reference: &OwnerReference, plan: &mut Plan) -> OwnerState {
        let Some(owner) = self.objects.get(&reference.uid) else { return OwnerState::Absent };
        match (&owner.namespace, &dependent.namespace) {
            (None, _) => {}
            (Some(theirs), Some(ours)) if theirs == ours => {}
            (Some(_), Some(ours)) => {
                plan.push(Action::Event(EventRecord {
                    involved: involved(dependent),
                    event_type: "Warning",
                    reason: "OwnerRefInvalidNamespace".into(),
                    message: format!(
                        "ownerRef [{}/{}, namespace: {ours}, name: {}, uid: {}] does not exist in namespace \"{ours}\"",
                        reference.api_version, reference.kind, reference.name, reference.uid
                    ),
                }));
                return OwnerState::Absent;
            }
            // A cluster-scoped object cannot be owned by a namespaced one.
            (Some(_), None) => return OwnerState::Absent,
        }
        if owner.deleting && owner.has_finalizer(FOREGROUND_FINALIZER) {
            OwnerState::Waiting
        } else {
            OwnerState::Solid
        }
    }

    /// Foreground deletion: delete each dependent (by its own decision), then drop the
    /// finalizer once no blocking dependent remains.
    fn delete_dependents(&self, owner: &Object, plan: &mut Plan) {
        let mut blocking = 0usize;
        for dependent in self.dependents_of(&owner.uid) {
            let blocks =
                dependent.owner_references.iter().any(|r| r.uid == owner.uid && r.block_owner_deletion == Some(true));
            if blocks {
                blocking += 1;
            }
            if !dependent.deleting {
                self.as_dependent(dependent, plan);
            }
        }
        if blocking == 0 {
            plan.push(remove_finalizer(owner, FOREGROUND_FINALIZER));
        }
    }

    /// Orphaning: take the owner out of each dependent's ownerReferences, then drop `orphan`.
    fn orphan_dependents(&self, owner: &Object, plan: &mut Plan) {
        for dependent in self.dependents_of(&owner.uid) {
            let kept: Vec<OwnerReference> =
                dependent.owner_references.iter().filter(|r| r.uid != owner.uid).cloned().collect();
            plan.push(patch_list(
                dependent,
                "/metadata/ownerReferences",
                to_json(&dependent.owner_references),
                to_json(&kept),
            ));
        }
        plan.push(remove_finalizer(owner, ORPHAN_FINALIZER));
    }
}

enum OwnerState {
    /// Present, not waiting on its dependents: the dependent stays.
    Solid,
    /// Not in the graph (or in another namespace: the reference cannot be honoured).
    Absent,
    /// Present, deleting with `foregroundDeletion`: the dependent should go.
    Waiting,
}

fn remove_finalizer(object: &Object, finalizer: &str) -> Action {
    let kept: Vec<&String> = object.finalizers.iter().filter(|f| *f != finalizer).collect();
    patch_list(object, "/metadata/finalizers", json!(object.finalizers), json!(kept))
}

/// A JSON patch that applies only if `path` still holds `current`.
fn patch_list(object: &Object, path: &str, current: serde_json::Value, new: serde_json::Value) -> Action {
    Action::Patch {
        target: object.target(),
        subresource: None,
        patch_type: PatchType::Json,
        patch: json!([
            { "op": "test", "path": "/metadata/uid", "value": object.uid },
            { "op": "test", "path": path, "value": current },
            { "op": "replace", "path": path, "value": new },
        ]),
    }
}

fn involved(object: &Object) -> InvolvedObject {
    InvolvedObject {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        uid: object.uid.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::action::{NAMESPACES, PODS, REPLICA_SETS};

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn object(resource: ResourceRef, namespace: Option<&str>, uid: &str, owners: Vec<OwnerReference>) -> Object {
        Object {
            resource,
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: namespace.map(str::to_string),
            name: format!("name-{uid}"),
            uid: uid.into(),
            owner_references: owners,
            finalizers: Vec::new(),
            deleting: false,
        }
    }

    fn deleting(mut object: Object, finalizer: &str) -> Object {
        object.deleting = true;
        object.finalizers = vec![finalizer.into()];
        object
    }

    fn graph(objects: Vec<Object>) -> Graph {
        let mut graph = Graph::default();
        for object in objects {
            graph.upsert(object);
        }
        graph
    }

    fn deletes(plan: &Plan) -> Vec<(String, Option<Propagation>)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { target, uid, propagation } => {
                    assert!(uid.is_some(), "every delete has a UID precondition");
                    Some((target.name.clone(), *propagation))
                }
                _ => None,
            })
            .collect()
    }

    fn patches(plan: &Plan) -> Vec<(String, String, serde_json::Value)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Patch { target, patch, patch_type: PatchType::Json, .. } => {
                    Some((target.name.clone(), patch[2]["path"].as_str()?.to_string(), patch[2]["value"].clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_dependent_whose_owners_are_all_gone_is_deleted_in_the_background() {
        let g = graph(vec![object(PODS, Some("ns"), "pod", vec![owner_ref("rs", true)])]);
        assert_eq!(deletes(&g.sync("pod")), vec![("name-pod".to_string(), Some(Propagation::Background))]);
        let g = graph(vec![
            object(REPLICA_SETS, Some("ns"), "rs", vec![]),
            object(PODS, Some("ns"), "pod", vec![owner_ref("rs", true)]),
        ]);
        assert!(g.sync("pod").is_empty());
        assert!(g.sync("rs").is_empty());
    }

    #[test]
    fn a_dependent_with_one_live_owner_only_loses_the_dead_reference() {
        let g = graph(vec![
            object(REPLICA_SETS, Some("ns"), "alive", vec![]),
            object(PODS, Some("ns"), "pod", vec![owner_ref("alive", false), owner_ref("dead", false)]),
        ]);
        let plan = g.sync("pod");
        assert!(deletes(&plan).is_empty());
        let patch = &patches(&plan)[0];
        assert_eq!(patch.1, "/metadata/ownerReferences");
        assert_eq!(patch.2.as_array().unwrap().len(), 1);
        assert_eq!(patch.2[0]["uid"], "alive");
    }

    #[test]
    fn an_owner_in_another_namespace_does_not_count() {
        let g = graph(vec![
            object(REPLICA_SETS, Some("other"), "rs", vec![]),
            object(PODS, Some("ns"), "pod", vec![owner_ref("rs", true)]),
        ]);
        let plan = g.sync("pod");
        assert_eq!(deletes(&plan).len(), 1);
        assert!(plan.actions.iter().any(|a| matches!(a, Action::Event(e) if e.reason == "OwnerRefInvalidNamespace")));
        // A cluster-scoped owner is fine for a namespaced dependent.
        let g = graph(vec![
            object(NAMESPACES, None, "cluster", vec![]),
            object(PODS, Some("ns"), "pod", vec![owner_ref("cluster", true)]),
        ]);
        assert!(g.sync("pod").is_empty());
    }

    #[test]
    fn foreground_deletion_deletes_dependents_then_drops_the_finalizer() {
        let mut g = graph(vec![
            deleting(object(REPLICA_SETS, Some("ns"), "rs", vec![]), FOREGROUND_FINALIZER),
            object(PODS, Some("ns"), "blocking", vec![owner_ref("rs", true)]),
            object(PODS, Some("ns"), "loose", vec![owner_ref("rs", false)]),
        ]);
        let plan = g.sync("rs");
        let mut deleted = deletes(&plan);
        deleted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            deleted,
            vec![
                ("name-blocking".into(), Some(Propagation::Background)),
                ("name-loose".into(), Some(Propagation::Background))
            ]
        );
        assert!(patches(&plan).is_empty(), "a blocking dependent remains: the finalizer stays");

        // The blocking pod is being deleted (graceful): still blocks, not deleted again.
        let touched = g.upsert(deleting(object(PODS, Some("ns"), "blocking", vec![owner_ref("rs", true)]), "kubelet"));
        assert!(touched.contains(&"rs".to_string()));
        assert!(deletes(&g.sync("rs")).iter().all(|(n, _)| n != "name-blocking"));
        let touched = g.remove("blocking");
        assert_eq!(touched, vec!["rs".to_string()], "its owner is worth a sync");
        let plan = g.sync("rs");
        let patch = patches(&plan).pop().unwrap();
        assert_eq!(
            (patch.0.as_str(), patch.1.as_str(), patch.2.clone()),
            ("name-rs", "/metadata/finalizers", json!([]))
        );
    }

    #[test]
    fn a_dependent_with_its_own_dependents_is_deleted_in_the_foreground_under_a_waiting_owner() {
        let g = graph(vec![
            deleting(object(REPLICA_SETS, Some("ns"), "deploy", vec![]), FOREGROUND_FINALIZER),
            object(REPLICA_SETS, Some("ns"), "rs", vec![owner_ref("deploy", true)]),
            object(PODS, Some("ns"), "pod", vec![owner_ref("rs", true)]),
        ]);
        assert_eq!(deletes(&g.sync("deploy")), vec![("name-rs".to_string(), Some(Propagation::Foreground))]);
    }

    #[test]
    fn orphaning_strips_the_owner_from_dependents_then_drops_orphan() {
        let g = graph(vec![
            deleting(object(REPLICA_SETS, Some("ns"), "rs", vec![]), ORPHAN_FINALIZER),
            object(PODS, Some("ns"), "a", vec![owner_ref("rs", true), owner_ref("other", false)]),
        ]);
        let plan = g.sync("rs");
        assert!(deletes(&plan).is_empty());
        let patches = patches(&plan);
        assert_eq!(patches.len(), 2);
        assert_eq!(patches[0].0, "name-a");
        assert_eq!(patches[0].2.as_array().unwrap().len(), 1);
        assert_eq!(patches[0].2[0]["uid"], "other");
        assert_eq!((patches[1].0.as_str(), patches[1].2.clone()), ("name-rs", json!([])));
        // The owner being deleted with orphan is not "waiting": its dependents are not deleted.
        assert!(deletes(&g.sync("a")).is_empty());
    }

    #[test]
    fn patches_test_what_they_read() {
        let g = graph(vec![deleting(object(REPLICA_SETS, Some("ns"), "rs", vec![]), ORPHAN_FINALIZER)]);
        let plan = g.sync("rs");
        let Action::Patch { patch, .. } = &plan.actions[0] else { panic!("{plan:?}") };
        assert_eq!(patch[0], json!({ "op": "test", "path": "/metadata/uid", "value": "rs" }));
        assert_eq!(patch[1], json!({ "op": "test", "path": "/metadata/finalizers", "value": ["orphan"] }));
    }
}
