//! What particular resources do beyond plain storage: namespaces must exist (and not be
//! terminating) for objects to be created in them; pods start Pending and are deleted
//! gracefully; services get a cluster IP and node ports (claimed in the store, so two services
//! never share one); objects with finalizers linger with a deletionTimestamp; a deleted
//! namespace is Terminating until the namespace controller has emptied it and removed its
//! `kubernetes` finalizer (`namespaces/<n>/finalize`, `handlers::subresource`).

use std::time::Duration;

use serde_json::{Value, json};

use super::Api;
use super::object;
use super::resources::Resource;
use super::status::ApiError;
use super::storage::{Stored, WriteMode};
use crate::kv::{Compare, OpResult, Range, Txn, TxnOp};

/// Service cluster IPs come from 10.96.0.0/12 (Kubernetes' default service CIDR).
const SERVICE_NET: u32 = 0x0a60_0000;
const SERVICE_NET_SIZE: u32 = 1 << 20;
/// Node ports come from Kubernetes' default range.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
/// Tries at finding a free IP or port before giving up.
const ALLOCATION_ATTEMPTS: usize = 32;

/// 404 when the namespace is missing, 403 when it is being deleted. Read from this master's
/// watch cache, as Kubernetes' NamespaceLifecycle admission reads its informer, and from the
/// store only when the cache does not have it (a namespace created a moment ago): a create
/// costs no store read.
pub async fn check_namespace_open(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(namespace) = namespace.filter(|_| resource.namespaced) else { return Ok(()) };
    let namespaces = super::resources::namespaces();
    let cached = api.watch_caches.get(namespaces).cached(namespaces.key(None, namespace).as_bytes());
    let object = match cached {
        Some(object) => object,
        None => match api.storage.get(namespaces, None, namespace).await? {
            Some(stored) => std::sync::Arc::new(stored.object),
            None => return Err(ApiError::not_found("", "namespaces", namespace)),
        },
    };
    if object::meta_str(&object, "deletionTimestamp").is_some() {
        // Kubernetes' NewForbidden around NamespaceLifecycle's refusal, with its cause.
        let why = format!("unable to create new content in namespace {namespace} because it is being terminated");
        let refused = match name {
            "" => format!("{} is forbidden: {why}", resource.qualified_plural()),
            name => format!("{} \"{name}\" is forbidden: {why}", resource.qualified_plural()),
        };
        let cause = json!({
            "reason": "NamespaceTerminating",
            "message": format!("namespace {namespace} is being terminated"),
            "field": "metadata.namespace",
        });
        let details = json!({ "name": name, "group": resource.group, "kind": resource.plural, "causes": [cause] });
        return Err(ApiError { details: Some(details), ..ApiError::forbidden(refused) });
    }
    Ok(())
}

/// A secret's `stringData` is a write-only convenience: it is folded into `data` (base64),
/// overriding keys of the same name, and never stored.
fn fold_string_data(secret: &mut Value) {
    let Some(map) = secret.as_object_mut() else { return };
    let Some(Value::Object(strings)) = map.remove("stringData") else { return };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, json!(crate::pki::base64_encode(text.as_bytes())));
        }
    }
}

/// Server-set fields of a new object.
pub fn before_create(resource: &Resource, object: &mut Value) {
    match resource.plural {
        "secrets" => fold_string_data(object),
        "pods" => {
            if object.get("status").is_none_or(|s| s.get("phase").is_none()) {
                let qos = crate::registry::pod_admission::qos_class(object);
                object["status"] = json!({ "phase": "Pending", "qosClass": qos });
            }
            crate::registry::pod_admission::add_default_tolerations(object);
        }
        "namespaces" => object["status"] = json!({ "phase": "Active" }),
        "deployments" | "replicasets" if object.get("status").is_none() => object["status"] = json!({}),
        _ => {}
    }
}

/// Carries over what an update may leave out but must not lose (a service's allocations), or
/// must not change (a namespace's `spec.finalizers`: only `finalize` does).
pub fn before_update(resource: &Resource, object: &mut Value, old: &Value) {
    if resource.plural == "secrets" {
        fold_string_data(object);
    }
    if resource.plural == "namespaces" {
        set_namespace_finalizers(object, old.pointer("/spec/finalizers").cloned().unwrap_or_else(|| json!([])));
    }
    if resource.plural != "services" {
        return;
    }
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if object.pointer(&format!("/spec/{field}")).is_none() {
            if let (Some(value), Some(spec)) = (old.pointer(&format!("/spec/{field}")), object.get_mut("spec")) {
                spec[field] = value.clone();
            }
        }
    }
    let old_ports = old.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(ports) = object.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
            let same = old_ports.iter().find(|o| o.get("port") == port.get("port") && o.get("nodePort").is_some());
            if let Some(node_port) = same.and_then(|o| o.get("nodePort")) {
                port["nodePort"] = node_port.clone();
            }
        }
    }
}

/// Sets a namespace's `spec.finalizers` (creating `spec` if it is missing).
pub fn set_namespace_finalizers(namespace: &mut Value, finalizers: Value) {
    match namespace.get_mut("spec") {
        Some(Value::Object(spec)) => {
            spec.insert("finalizers".into(), finalizers);
        }
        _ => namespace["spec"] = json!({ "finalizers": finalizers }),
    }
}

/// An object whose deletion was waiting only for its finalizers, which are now gone (for a
/// namespace, `spec.finalizers` too).
pub fn finalized(resource: &Resource, object: &Value) -> bool {
    let deleting = object::meta_str(object, "deletionTimestamp").is_some();
    deleting && !has_finalizers(resource, object)
}

/// Whether something still holds the object's deletion: `metadata.finalizers`, and for a
/// namespace `spec.finalizers` (the namespace controller's `kubernetes`).
fn has_finalizers(resource: &Resource, object: &Value) -> bool {
    let listed = |pointer: &str| object.pointer(pointer).and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    listed("/metadata/finalizers") || (resource.plural == "namespaces" && listed("/spec/finalizers"))
}

/// Stores a new object; a service claims its cluster IP and node ports in the same txn. A dry
/// run picks the same allocations and checks them free, claiming nothing.
pub async fn create(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    object: &mut Value,
    mode: WriteMode,
) -> Result<Stored, ApiError> {
    if resource.plural != "services" {
        return api.storage.create(resource, namespace, name, object, mode).await;
    }
    for _ in 0..ALLOCATION_ATTEMPTS {
        let claims = allocate_service(object);
        let created = match mode {
            WriteMode::DryRun => check_claims(api, resource, namespace, name, object, &claims).await?,
            _ => create_with_claims(api, resource, namespace, name, object, &claims, mode).await?,
        };
        match created {
            Some(stored) => return Ok(stored),
            None => continue,
        }
    }
    Err(ApiError::internal("no free cluster IP or node port found"))
}

/// The keys a service claims: its cluster IP and node ports.
fn allocate_service(service: &mut Value) -> Vec<Vec<u8>> {
    let mut claims = Vec::new();
    let service_type = service.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let Some(spec) = service.get_mut("spec").filter(|s| s.is_object()) else { return claims };
    if service_type != "ExternalName" {
        let ip = match spec.get("clusterIP").and_then(Value::as_str) {
            Some("None") => None,
            Some(ip) if !ip.is_empty() => Some(ip.to_string()),
            _ => {
                let offset = rand::random_range(10..SERVICE_NET_SIZE - 1);
                Some(std::net::Ipv4Addr::from(SERVICE_NET + offset).to_string())
            }
        };
        if let Some(ip) = ip {
            claims.push(format!("/registry/keel/serviceips/{ip}").into_bytes());
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    if service_type == "NodePort" || service_type == "LoadBalancer" {
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut() {
                let node_port = port
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| rand::random_range(NODE_PORTS) as u64);
                port["nodePort"] = json!(node_port);
                claims.push(format!("/registry/keel/nodeports/{node_port}").into_bytes());
            }
        }
    }
    claims
}

/// Creates the object and every claim key at once; None when a claim was taken.
async fn create_with_claims(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    object: &Value,
    claims: &[Vec<u8>],
    mode: WriteMode,
) -> Result<Option<Stored>, ApiError> {
    let key = resource.key(namespace, name).into_bytes();
    let owner = key.clone();
    let mut compare = vec![Compare::mod_revision(&key, 0)];
    compare.extend(claims.iter().map(|claim| Compare::mod_revision(claim, 0)));
    let mut success = vec![TxnOp::Put { key: key.clone(), value: object::encode_for_store(object), lease: 0 }];
    success.extend(claims.iter().map(|claim| TxnOp::Put { key: claim.clone(), value: owner.clone(), lease: 0 }));
    let mut txn = Txn { compare, success, failure: vec![TxnOp::Get(Range::key(&key))] };
    mode.guard(&mut txn);
    let outcome = api.storage.kv.txn(txn).await?;
    if let Some(fenced) = (!outcome.succeeded).then(|| mode.fence_failure(&outcome)).flatten() {
        return Err(fenced);
    }
    if outcome.succeeded {
        let mut created = object.clone();
        object::set_resource_version(&mut created, outcome.revision);
        return Ok(Some(Stored { object: created, revision: outcome.revision }));
    }
    match outcome.results.first() {
        Some(OpResult::Get(existing)) if !existing.kvs.is_empty() => {
            Err(ApiError::already_exists(resource.group, resource.plural, name))
        }
        _ => Ok(None),
    }
}

/// The dry run of [`create_with_claims`]: AlreadyExists when the object exists, None when a
/// claim is taken, else the object as it would be created.
async fn check_claims(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    object: &Value,
    claims: &[Vec<u8>],
) -> Result<Option<Stored>, ApiError> {
    for claim in claims {
        if !api.storage.kv.range(Range::key(claim)).await?.kvs.is_empty() {
            return Ok(None);
        }
    }
    api.storage.create(resource, namespace, name, object, WriteMode::DryRun).await.map(Some)
}

/// The DeleteOptions a delete honours.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteOptions<'a> {
    pub grace_period_seconds: Option<i64>,
    /// "Orphan", "Foreground" or "Background" (None: Background, apps/v1's and core's default).
    pub propagation_policy: Option<&'a str>,
}

/// The garbage collector's finalizers for `policy`, as kube-apiserver sets them on delete:
/// Orphan adds `orphan`, Foreground adds `foregroundDeletion` (each dropping the other), an
/// explicit Background drops both. Returns whether the finalizers changed.
fn set_gc_finalizers(object: &mut Value, policy: Option<&str>) -> bool {
    use crate::controllers::garbage_collector::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
    let (add, remove): (Option<&str>, &[&str]) = match policy {
        Some("Orphan") => (Some(ORPHAN_FINALIZER), &[FOREGROUND_FINALIZER]),
        Some("Foreground") => (Some(FOREGROUND_FINALIZER), &[ORPHAN_FINALIZER]),
        Some("Background") => (None, &[ORPHAN_FINALIZER, FOREGROUND_FINALIZER]),
        _ => return false,
    };
    let current: Vec<String> = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let mut wanted: Vec<String> = current.iter().filter(|f| !remove.contains(&f.as_str())).cloned().collect();
    if let Some(add) = add.filter(|a| !wanted.iter().any(|f| f == a)) {
        wanted.push(add.to_string());
    }
    if wanted == current {
        return false;
    }
    let metadata = object::metadata_mut(object);
    if wanted.is_empty() {
        metadata.remove("finalizers");
    } else {
        metadata.insert("finalizers".into(), json!(wanted));
    }
    true
}

/// What a delete did: removed the object, or marked it for deletion later.
pub struct Deletion {
    /// The object's last state (removed) or its new one (marked).
    pub stored: Stored,
    pub immediate: bool,
}

/// Deletes an object the way its resource wants: at once, or by setting deletionTimestamp
/// (finalizers pending, graceful pod deletion, a namespace to empty). A dry run starts no
/// cleanup and frees nothing.
pub async fn delete(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    mut current: Stored,
    options: &DeleteOptions<'_>,
    mode: WriteMode,
) -> Result<Deletion, ApiError> {
    let finalizers_changed =
        resource.plural != "namespaces" && set_gc_finalizers(&mut current.object, options.propagation_policy);
    let has_finalizers = has_finalizers(resource, &current.object);
    let grace = match resource.plural {
        "pods" => pod_grace_seconds(&current.object, options.grace_period_seconds),
        _ => 0,
    };
    let commit = !mode.is_dry_run();
    if has_finalizers || grace > 0 {
        let marked = mark_deleting(api, resource, namespace, name, &current, grace, finalizers_changed, mode).await?;
        if commit && grace > 0 && !has_finalizers {
            tokio::spawn(reap_unclaimed_pod(
                api.storage.clone(),
                namespace.map(str::to_string),
                name.to_string(),
                grace,
            ));
        }
        return Ok(Deletion { stored: marked, immediate: false });
    }
    let deleted = api.storage.delete(resource, namespace, name, current.revision, mode).await?;
    if commit && resource.plural == "services" {
        release_service(api, &deleted.object).await;
    }
    Ok(Deletion { stored: deleted, immediate: true })
}

/// A pod on a node is deleted gracefully (the node agent confirms); an unscheduled one at once.
fn pod_grace_seconds(pod: &Value, asked: Option<i64>) -> i64 {
    let scheduled = pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let terminal = matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    if !scheduled || terminal {
        return 0;
    }
    let default = pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
    asked.unwrap_or(default).max(0)
}

/// Sets deletionTimestamp (now + `grace`); an object already marked is written again only
/// when its finalizers `changed` (a second delete with another propagation policy).
#[allow(clippy::too_many_arguments)]
async fn mark_deleting(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    current: &Stored,
    grace: i64,
    changed: bool,
    mode: WriteMode,
) -> Result<Stored, ApiError> {
    if object::meta_str(&current.object, "deletionTimestamp").is_some() {
        if !changed {
            return Ok(current.clone());
        }
        return api.storage.update(resource, namespace, name, &current.object, current.revision, mode).await;
    }
    let mut marked = current.object.clone();
    let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
    let metadata = object::metadata_mut(&mut marked);
    metadata.insert("deletionTimestamp".into(), json!(when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
    metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
    // Kubernetes' BeforeDelete: setting deletionTimestamp is a change a controller must see.
    if let Some(generation) = metadata.get("generation").and_then(Value::as_i64).filter(|g| *g > 0) {
        metadata.insert("generation".into(), json!(generation + 1));
    }
    if resource.plural == "namespaces" {
        marked["status"] = json!({ "phase": "Terminating" });
    }
    api.storage.update(resource, namespace, name, &marked, current.revision, mode).await
}

/// Frees a deleted service's cluster IP and node ports.
async fn release_service(api: &Api, service: &Value) {
    let mut keys = Vec::new();
    if let Some(ip) = service.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|ip| *ip != "None") {
        keys.push(format!("/registry/keel/serviceips/{ip}"));
    }
    for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(node_port) = port.get("nodePort").and_then(Value::as_u64) {
            keys.push(format!("/registry/keel/nodeports/{node_port}"));
        }
    }
    for key in keys {
        if let Err(error) = api.storage.kv.delete(key.clone().into_bytes(), None).await {
            tracing::warn!(%key, %error, "releasing a service allocation failed");
        }
    }
}

/// Until node agents exist to confirm, a terminating pod whose node is not registered is
/// removed when its grace period ends (what Kubernetes' pod garbage collector does for pods
/// on missing nodes).
async fn reap_unclaimed_pod(storage: super::storage::Storage, namespace: Option<String>, name: String, grace: i64) {
    tokio::time::sleep(Duration::from_secs(grace.max(0) as u64)).await;
    let Some(pods) = super::resources::find("", "v1", "pods") else { return };
    let Some(nodes) = super::resources::find("", "v1", "nodes") else { return };
    let Ok(Some(pod)) = storage.get(pods, namespace.as_deref(), &name).await else { return };
    if object::meta_str(&pod.object, "deletionTimestamp").is_none() {
        return;
    }
    let node = pod.object.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
    if matches!(storage.get(nodes, None, &node).await, Ok(Some(_))) {
        return;
    }
    if let Err(error) = storage.delete(pods, namespace.as_deref(), &name, pod.revision, WriteMode::Commit).await {
        tracing::debug!(?error, %name, "reaping a terminated pod");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_folded_into_data() {
        let mut secret = json!({"data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "hunter2", "c": ""}});
        fold_string_data(&mut secret);
        assert_eq!(secret, json!({"data": {"a": "eA==", "b": "aHVudGVyMg==", "c": ""}}));
    }

    #[test]
    fn a_service_claims_its_ip_and_node_ports() {
        let mut service =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30443}]}});
        let claims = allocate_service(&mut service);
        let ip = service["spec"]["clusterIP"].as_str().expect("an IP").to_string();
        assert!(ip.starts_with("10."), "{ip}");
        assert_eq!(service["spec"]["ports"][1]["nodePort"], 30443, "a requested node port is kept");
        let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("allocated");
        assert!(NODE_PORTS.contains(&(node_port as u16)));
        assert_eq!(claims.len(), 3);
        let mut headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        assert!(allocate_service(&mut headless).is_empty());
    }
}
