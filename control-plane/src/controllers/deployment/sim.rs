//! A small in-memory cluster for the Deployment controller's tests: it applies plans to a set
//! of ReplicaSets, plays the ReplicaSet controller and the kubelet in one crude step (a
//! ReplicaSet has its pods one tick after it asks; a pod is available one tick after it
//! exists), and reads status as `kubectl rollout status` does.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::*;
use crate::controllers::action::{Action, DEPLOYMENTS, EventRecord, Plan, REPLICA_SETS};
use crate::controllers::replicaset::tests::{at, labels, template};

fn deployment(replicas: i32, image: &str, strategy: &str) -> Deployment {
    let rolling = (strategy == "RollingUpdate").then(|| RollingUpdateDeployment {
        max_surge: Some(IntOrString::Int(1)),
        max_unavailable: Some(IntOrString::Int(0)),
    });
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            resource_version: Some("1".into()),
            annotations: Some(labels(&[
                ("kubernetes.io/change-cause", "first"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..LabelSelector::default() },
            template: template("web", image),
            strategy: Some(DeploymentStrategy { type_: Some(strategy.into()), rolling_update: rolling }),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

struct Cluster {
    deployment: Deployment,
    sets: Vec<ReplicaSet>,
    events: Vec<EventRecord>,
    clock: i64,
    uids: u32,
}

impl Cluster {
    fn new(deployment: Deployment) -> Cluster {
        Cluster { deployment, sets: Vec::new(), events: Vec::new(), clock: 0, uids: 0 }
    }

    fn now(&self) -> Timestamp {
        at(self.clock)
    }

    fn pods(&self) -> Vec<Pod> {
        let mut pods = Vec::new();
        for rs in &self.sets {
            let status = rs.status.clone().unwrap_or_default();
            for index in 0..status.replicas {
                let ready = index < status.available_replicas.unwrap_or(0);
                let mut pod = crate::controllers::replicaset::tests::pod(
                    &format!("{}-{index}", rs.metadata.name.as_deref().unwrap_or("")),
                    rs.metadata.uid.as_deref().unwrap_or(""),
                    "web",
                    "Running",
                    ready.then_some(-10),
                );
                if !ready {
                    pod.status = Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() });
                }
                pods.push(pod);
            }
        }
        pods
    }

    fn sync(&mut self) -> Plan {
        let pods = self.pods();
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let set_refs: Vec<&ReplicaSet> = self.sets.iter().collect();
        let plan = super::sync(&self.deployment, &set_refs, &pod_refs, self.now());
        self.apply(&plan);
        self.clock += 1;
        plan
    }

    fn apply(&mut self, plan: &Plan) {
        for action in &plan.actions {
            match action {
                Action::Create { resource, object, .. } if *resource == REPLICA_SETS => {
                    let mut rs: ReplicaSet = serde_json::from_value(object.clone()).expect("a ReplicaSet");
                    self.uids += 1;
                    rs.metadata.uid = Some(format!("rs-uid-{}", self.uids));
                    rs.metadata.creation_timestamp = Some(Time(self.now()));
                    rs.metadata.generation = Some(1);
                    rs.metadata.resource_version = Some("1".into());
                    assert!(!self.sets.iter().any(|s| s.metadata.name == rs.metadata.name), "AlreadyExists");
                    self.sets.push(rs);
                }
                Action::Update { target, object } if target.resource == REPLICA_SETS => {
                    let updated: ReplicaSet = serde_json::from_value(object.clone()).expect("a ReplicaSet");
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|s| s.metadata.name.as_deref() == Some(&target.name))
                        .expect("exists");
                    assert_eq!(
                        updated.metadata.resource_version, rs.metadata.resource_version,
                        "one write per RS per plan"
                    );
                    let generation = rs.metadata.generation.unwrap_or(1) + i64::from(updated.spec != rs.spec);
                    let status = rs.status.clone();
                    *rs = updated;
                    rs.metadata.generation = Some(generation);
                    rs.metadata.resource_version = Some(format!("{}", generation + 100));
                    rs.status = status;
                }
                Action::UpdateStatus { target, object } if target.resource == DEPLOYMENTS => {
                    let updated: Deployment = serde_json::from_value(object.clone()).expect("a Deployment");
                    self.deployment.status = updated.status;
                    self.deployment.metadata.annotations = updated.metadata.annotations;
                }
                Action::Delete { target, .. } if target.resource == REPLICA_SETS => {
                    self.sets.retain(|s| s.metadata.name.as_deref() != Some(&target.name));
                }
                Action::Event(event) => self.events.push(event.clone()),
                other => panic!("unexpected action {other:?}"),
            }
        }
    }

    /// ReplicaSet controller + kubelet: a ReplicaSet's pods exist as asked, and those that
    /// existed a tick ago are available.
    fn kubelet(&mut self) {
        for rs in &mut self.sets {
            let spec = spec_replicas(rs);
            let before = rs.status.clone().unwrap_or_default();
            let available = spec.min(before.replicas);
            rs.status = Some(ReplicaSetStatus {
                replicas: spec,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                fully_labeled_replicas: Some(spec),
                observed_generation: rs.metadata.generation,
                conditions: None,
                terminating_replicas: None,
            });
        }
        self.clock += 1;
    }

    fn set(&self, name: &str) -> &ReplicaSet {
        self.sets.iter().find(|s| s.metadata.name.as_deref() == Some(name)).expect("the ReplicaSet")
    }

    fn new_name(&self) -> String {
        let spec = self.deployment.spec.as_ref().expect("spec");
        let collisions = self.deployment.status.as_ref().and_then(|s| s.collision_count);
        format!("web-{}", pod_template_hash(&spec.template, collisions))
    }

    fn change_template(&mut self, image: &str) {
        self.deployment.spec.as_mut().expect("spec").template = template("web", image);
        self.bump_generation();
    }

    fn bump_generation(&mut self) {
        let generation = self.deployment.metadata.generation.unwrap_or(1) + 1;
        self.deployment.metadata.generation = Some(generation);
    }

    /// Syncs and runs the kubelet until the rollout status says done (at most `limit` rounds),
    /// checking `invariant` after every half step; returns the rollout status lines seen.
    fn run(&mut self, limit: usize, invariant: &dyn Fn(&Cluster)) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..limit {
            self.sync();
            invariant(self);
            seen.push(rollout_status(&self.deployment));
            if seen.last().is_some_and(|line| line.ends_with("successfully rolled out")) {
                return seen;
            }
            self.kubelet();
            invariant(self);
        }
        panic!("rollout did not finish: {seen:#?}");
    }

    fn condition(&self, type_: &str) -> Option<(String, String)> {
        let status = self.deployment.status.as_ref()?;
        let condition = status.conditions.iter().flatten().find(|c| c.type_ == type_)?;
        Some((condition.status.clone(), condition.reason.clone().unwrap_or_default()))
    }
}

fn annotation(meta: &ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref().and_then(|a| a.get(key).cloned())
}

/// kubectl 1.33's `DeploymentStatusViewer`.
fn rollout_status(deployment: &Deployment) -> String {
    let status = deployment.status.clone().unwrap_or_default();
    let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if deployment.metadata.generation > status.observed_generation {
        return "Waiting for deployment spec update to be observed...".into();
    }
    let progressing = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing");
    if progressing.and_then(|c| c.reason.as_deref()) == Some("ProgressDeadlineExceeded") {
        return "error: deployment \"web\" exceeded its progress deadline".into();
    }
    let (updated, total, available) =
        (status.updated_replicas.unwrap_or(0), status.replicas.unwrap_or(0), status.available_replicas.unwrap_or(0));
    if updated < replicas {
        return format!(
            "Waiting for deployment \"web\" rollout to finish: {updated} out of {replicas} new replicas have been updated..."
        );
    }
    if total > updated {
        return format!(
            "Waiting for deployment \"web\" rollout to finish: {} old replicas are pending termination...",
            total - updated
        );
    }
    if available < updated {
        return format!(
            "Waiting for deployment \"web\" rollout to finish: {available} of {updated} updated replicas are available..."
        );
    }
    "deployment \"web\" successfully rolled out".into()
}

fn rolled_out(replicas: i32, image: &str, strategy: &str) -> Cluster {
    let mut cluster = Cluster::new(deployment(replicas, image, strategy));
    cluster.run(20, &|_| {});
    cluster
}

#[test]
fn fresh_deployment_creates_its_first_replica_set() {
    let mut cluster = Cluster::new(deployment(3, "nginx:1.25", "RollingUpdate"));
    let plan = cluster.sync();
    let Action::Create { object, namespace, .. } = &plan.actions[0] else { panic!("a create first: {plan:?}") };
    assert_eq!(namespace.as_deref(), Some("default"));
    let hash = pod_template_hash(&template("web", "nginx:1.25"), None);
    assert_eq!(object["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(object["metadata"]["labels"], serde_json::json!({"app": "web", "pod-template-hash": hash}));
    assert_eq!(object["spec"]["selector"]["matchLabels"], serde_json::json!({"app": "web", "pod-template-hash": hash}));
    assert_eq!(object["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], Value::String(hash.clone()));
    assert_eq!(object["spec"]["replicas"], 3);
    assert_eq!(
        object["metadata"]["ownerReferences"],
        serde_json::json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web",
                            "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        object["metadata"]["annotations"],
        serde_json::json!({
            "deployment.kubernetes.io/revision": "1",
            "deployment.kubernetes.io/desired-replicas": "3",
            "deployment.kubernetes.io/max-replicas": "4",
            "kubernetes.io/change-cause": "first",
        })
    );
    assert!(object["metadata"].get("creationTimestamp").is_none());
    assert_eq!(cluster.events[0].message, format!("Scaled up replica set web-{hash} from 0 to 3"));
    assert_eq!(cluster.events[0].reason, "ScalingReplicaSet");
    assert!(matches!(plan.actions.last(), Some(Action::UpdateStatus { .. })));
    assert_eq!(annotation(&cluster.deployment.metadata, REVISION_ANNOTATION).as_deref(), Some("1"));
    assert_eq!(cluster.condition("Progressing"), Some(("True".into(), "NewReplicaSetCreated".into())));
    assert_eq!(cluster.condition("Available"), Some(("False".into(), "MinimumReplicasUnavailable".into())));
    let progressing = cluster.deployment.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    assert!(
        progressing.iter().any(|c| c.message.as_deref() == Some(&format!("Created new replica set \"web-{hash}\"")))
    );
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(601)));
}

#[test]
fn rolling_update_stays_within_surge_and_availability() {
    let mut cluster = rolled_out(3, "nginx:1.25", "RollingUpdate");
    assert_eq!(cluster.condition("Progressing"), Some(("True".into(), "NewReplicaSetAvailable".into())));
    let old = cluster.new_name();
    cluster.change_template("nginx:1.26");
    let new = cluster.new_name();
    assert_ne!(old, new);
    let seen = cluster.run(40, &|cluster| {
        let total: i32 = cluster.sets.iter().map(spec_replicas).sum();
        let pods: i32 = cluster.sets.iter().map(status_replicas).sum();
        let available: i32 = cluster.sets.iter().map(available_replicas).sum();
        assert!(total <= 4 && pods <= 4, "surge exceeded: {total} asked, {pods} running");
        assert!(available >= 3, "availability dropped to {available}");
    });
    assert_eq!(spec_replicas(cluster.set(&old)), 0);
    assert_eq!(status_replicas(cluster.set(&old)), 0);
    assert_eq!(spec_replicas(cluster.set(&new)), 3);
    assert_eq!(annotation(&cluster.set(&new).metadata, REVISION_ANNOTATION).as_deref(), Some("2"));
    assert_eq!(annotation(&cluster.deployment.metadata, REVISION_ANNOTATION).as_deref(), Some("2"));
    assert_eq!(cluster.condition("Progressing"), Some(("True".into(), "NewReplicaSetAvailable".into())));
    assert_eq!(cluster.condition("Available"), Some(("True".into(), "MinimumReplicasAvailable".into())));
    // kubectl rollout status walked through its waiting lines before success.
    assert!(seen.iter().any(|l| l.contains("out of 3 new replicas have been updated")), "{seen:#?}");
    assert!(seen.iter().any(|l| l.contains("old replicas are pending termination")), "{seen:#?}");
    let status = cluster.deployment.status.clone().unwrap_or_default();
    assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (Some(3), Some(3), Some(3)));
    assert_eq!(status.unavailable_replicas, None);
    // Settled: another sync writes nothing.
    cluster.kubelet();
    let plan = cluster.sync();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    let scaled: Vec<_> = cluster.events.iter().map(|e| e.message.as_str()).collect();
    assert!(scaled.contains(&format!("Scaled down replica set {old} from 3 to 2").as_str()), "{scaled:#?}");
}

#[test]
fn recreate_scales_old_to_zero_before_the_new_one_up() {
    let mut cluster = rolled_out(2, "nginx:1.25", "Recreate");
    let old = cluster.new_name();
    cluster.change_template("nginx:1.26");
    let new = cluster.new_name();
    cluster.run(20, &|cluster| {
        let old_running =
            cluster.sets.iter().find(|s| s.metadata.name.as_deref() == Some(&old)).map_or(0, status_replicas);
        let new_asked = cluster.sets.iter().find(|s| s.metadata.name.as_deref() == Some(&new)).map_or(0, spec_replicas);
        assert!(old_running == 0 || new_asked == 0, "old pods ({old_running}) while new ones asked ({new_asked})");
    });
    assert_eq!(spec_replicas(cluster.set(&new)), 2);
    assert_eq!(spec_replicas(cluster.set(&old)), 0);
}

#[test]
fn undo_reuses_the_old_replica_set_with_the_next_revision() {
    let mut cluster = rolled_out(2, "nginx:1.25", "RollingUpdate");
    let first = cluster.new_name();
    cluster.change_template("nginx:1.26");
    cluster.run(40, &|_| {});
    let second = cluster.new_name();
    // kubectl rollout undo: the template of revision 1 back.
    cluster.change_template("nginx:1.25");
    assert_eq!(cluster.new_name(), first);
    cluster.run(40, &|_| {});
    assert_eq!(cluster.sets.len(), 2, "no third ReplicaSet");
    let reused = cluster.set(&first);
    assert_eq!(annotation(&reused.metadata, REVISION_ANNOTATION).as_deref(), Some("3"));
    assert_eq!(annotation(&reused.metadata, REVISION_HISTORY_ANNOTATION).as_deref(), Some("1"));
    assert_eq!(spec_replicas(reused), 2);
    assert_eq!(spec_replicas(cluster.set(&second)), 0);
    assert_eq!(annotation(&cluster.deployment.metadata, REVISION_ANNOTATION).as_deref(), Some("3"));
}

#[test]
fn restart_annotation_makes_a_new_replica_set() {
    let mut cluster = rolled_out(1, "nginx:1.25", "RollingUpdate");
    let before = cluster.new_name();
    let spec = cluster.deployment.spec.as_mut().expect("spec");
    spec.template.metadata.get_or_insert_with(Default::default).annotations =
        Some(labels(&[("kubectl.kubernetes.io/restartedAt", "2025-01-01T00:00:00Z")]));
    cluster.bump_generation();
    cluster.run(20, &|_| {});
    assert_ne!(cluster.new_name(), before);
    assert_eq!(cluster.sets.len(), 2);
}

#[test]
fn history_cleanup_keeps_revision_history_limit() {
    let mut d = deployment(1, "v0", "RollingUpdate");
    d.spec.as_mut().expect("spec").revision_history_limit = Some(2);
    let mut cluster = Cluster::new(d);
    cluster.run(20, &|_| {});
    for version in 1..=4 {
        cluster.change_template(&format!("v{version}"));
        cluster.run(40, &|_| {});
    }
    // One more sync after completion cleans up (the status said complete).
    cluster.kubelet();
    cluster.sync();
    let mut revisions: Vec<i64> = cluster.sets.iter().map(history::revision).collect();
    revisions.sort();
    assert_eq!(revisions, vec![3, 4, 5], "the current and revisionHistoryLimit=2 old ones");
}

#[test]
fn paused_deployment_only_scales_proportionally() {
    let mut d = deployment(10, "v1", "RollingUpdate");
    let rolling =
        RollingUpdateDeployment { max_surge: Some(IntOrString::Int(3)), max_unavailable: Some(IntOrString::Int(2)) };
    d.spec.as_mut().expect("spec").strategy =
        Some(DeploymentStrategy { type_: Some("RollingUpdate".into()), rolling_update: Some(rolling) });
    let mut cluster = Cluster::new(d);
    cluster.run(20, &|_| {});
    let old = cluster.new_name();
    cluster.change_template("v2");
    let new = cluster.new_name();
    cluster.sync(); // new RS created with 3 (surge), old scaled down to 8 (unavailable 2)
    assert_eq!((spec_replicas(cluster.set(&old)), spec_replicas(cluster.set(&new))), (8, 3));
    cluster.kubelet();
    // Pause, then scale 10 → 20 mid-rollout.
    let spec = cluster.deployment.spec.as_mut().expect("spec");
    spec.paused = Some(true);
    spec.replicas = Some(20);
    cluster.bump_generation();
    cluster.sync();
    // 23 − 11 = 12 more: old round(8 × 23 / 13) − 8 = 6, new round(3 × 23 / 13) − 3 = 2, the
    // leftover 4 to the largest (old).
    assert_eq!((spec_replicas(cluster.set(&old)), spec_replicas(cluster.set(&new))), (18, 5));
    assert_eq!(cluster.condition("Progressing"), Some(("Unknown".into(), "DeploymentPaused".into())));
    // Paused: no further rollout steps however often it syncs.
    for _ in 0..5 {
        cluster.kubelet();
        cluster.sync();
    }
    assert_eq!((spec_replicas(cluster.set(&old)), spec_replicas(cluster.set(&new))), (18, 5));
    // Resume: the rollout continues.
    cluster.deployment.spec.as_mut().expect("spec").paused = Some(false);
    cluster.bump_generation();
    cluster.sync();
    assert_eq!(cluster.condition("Progressing").map(|c| c.1), Some("DeploymentResumed".into()));
    cluster.run(60, &|_| {});
    assert_eq!(spec_replicas(cluster.set(&new)), 20);
}

#[test]
fn a_taken_name_bumps_the_collision_count() {
    let mut cluster = Cluster::new(deployment(1, "nginx", "RollingUpdate"));
    let name = cluster.new_name();
    let mut squatter = ReplicaSet::default();
    squatter.metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some("default".into()),
        uid: Some("squatter".into()),
        labels: Some(labels(&[("app", "other")])),
        ..ObjectMeta::default()
    };
    cluster.sets.push(squatter);
    let plan = cluster.sync();
    assert_eq!(plan.actions.len(), 1, "{plan:?}");
    assert_eq!(cluster.deployment.status.as_ref().and_then(|s| s.collision_count), Some(1));
    assert_ne!(cluster.new_name(), name);
    cluster.run(20, &|_| {});
    assert!(cluster.sets.iter().any(|s| s.metadata.name.as_deref() == Some(cluster.new_name().as_str())));
}

#[test]
fn progress_deadline_exceeded_when_pods_never_come_up() {
    let mut d = deployment(1, "nginx", "RollingUpdate");
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(30);
    let mut cluster = Cluster::new(d);
    cluster.sync();
    cluster.clock += 31;
    cluster.sync();
    assert_eq!(cluster.condition("Progressing"), Some(("False".into(), "ProgressDeadlineExceeded".into())));
    assert_eq!(rollout_status(&cluster.deployment), "error: deployment \"web\" exceeded its progress deadline");
}

#[test]
fn adopts_a_matching_orphan_replica_set_first() {
    let mut cluster = Cluster::new(deployment(1, "nginx", "RollingUpdate"));
    let mut orphan = ReplicaSet::default();
    orphan.metadata = ObjectMeta {
        name: Some("web-orphan".into()),
        namespace: Some("default".into()),
        uid: Some("orphan-uid".into()),
        labels: Some(labels(&[("app", "web")])),
        ..ObjectMeta::default()
    };
    let set_refs = [&orphan];
    let plan = super::sync(&cluster.deployment, &set_refs, &[], cluster.now());
    let Action::Patch { patch, .. } = &plan.actions[0] else { panic!("{plan:?}") };
    assert_eq!(patch["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(patch["metadata"]["uid"], "orphan-uid");
    assert_eq!(plan.actions.len(), 1);
    cluster.clock += 1;
}
