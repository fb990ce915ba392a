//! The EndpointSlice controller's decision: for one Service, the EndpointSlices that list its
//! selected pods, diffed against the slices that exist into creates, updates and deletes.
//!
//! Inputs the runtime keeps (all from informer caches, read-only):
//! - the Service (key `<namespace>/<name>`; a deleted Service needs no sync: its slices carry an
//!   ownerReference and the garbage collector removes them);
//! - the pods of the Service's namespace (index: pods by namespace); the selector is matched here;
//! - the nodes by name (for zones; a `HashMap<String, N>` where `N` borrows as a `Node`);
//! - the slices labelled `kubernetes.io/service-name=<service>` in the namespace (index: slices
//!   by namespace and that label).
//!
//! The sync is O(pods in the namespace + existing endpoints): endpoints are matched by address
//! through maps, never by scanning slices per endpoint.
//!
//! Differences from Kubernetes' reconciler, on purpose: endpoints are kept in the slice that
//! already holds them; new endpoints fill slices that change anyway, then the fullest slices
//! with room, then slices that would be deleted (an update instead of a delete plus a create),
//! then new slices. Endpoints inside a slice are sorted by address, so equal content compares
//! equal. The `endpoints.kubernetes.io/last-change-trigger-time` annotation is not written
//! (the sync does not know when the triggering change happened).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Node, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::action::{Action, ENDPOINT_SLICES, ObjectRef, Plan};

/// `kubernetes.io/service-name`: which Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: which controller owns a slice's content.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The managed-by value of this controller (Kubernetes' own, so clients recognise the slices).
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// `service.kubernetes.io/headless`: set (empty) on slices and Endpoints of headless services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The node label an endpoint's zone comes from.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Kubernetes' `--max-endpoints-per-slice` default.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The API's limit on endpoints in one slice; a larger setting is clamped to it.
pub const API_MAX_ENDPOINTS_PER_SLICE: usize = 1000;
/// How soon to look again when a pod was left out because its node is not in the cache yet.
pub const MISSING_NODE_RETRY: Duration = Duration::from_secs(5);

/// The controller's flags.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Endpoints per slice (1..=1000; 100 by default).
    pub max_endpoints_per_slice: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_endpoints_per_slice: DEFAULT_MAX_ENDPOINTS_PER_SLICE }
    }
}

/// The slices `service` should have, as writes against `existing`.
///
/// `pods` are the pods of the service's namespace (the selector is applied here); `existing`
/// the slices labelled with the service's name (others are ignored). Services without a
/// selector and ExternalName services get an empty plan: their slices are someone else's.
pub fn sync<N: Borrow<Node>>(
    service: &Service,
    pods: &[&Pod],
    nodes: &HashMap<String, N>,
    existing: &[&EndpointSlice],
    config: &Config,
) -> Plan {
    let mut plan = Plan::default();
    let Some(selector) = service_selector(service) else { return plan };
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let max = config.max_endpoints_per_slice.clamp(1, API_MAX_ENDPOINTS_PER_SLICE);

    let ours: Vec<&EndpointSlice> =
        existing.iter().copied().filter(|s| is_managed_slice_of(s, &service_name)).collect();
    let (owned, stale): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) =
        ours.into_iter().partition(|s| owned_by(&s.metadata, service));
    for slice in stale {
        plan.push(delete(slice, &namespace));
    }

    let mut desired = DesiredEndpoints::default();
    for pod in
        pods.iter().copied().filter(|p| selects(selector, p) && p.metadata.namespace.as_deref() == Some(&namespace))
    {
        if !in_slices(pod) {
            continue;
        }
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = node_name.as_deref().and_then(|n| nodes.get(n)).map(Borrow::borrow);
        if node.is_none() && !publish_not_ready(service) {
            plan.requeue(MISSING_NODE_RETRY);
            continue;
        }
        let ports = resolve_ports(service, pod);
        for address_type in address_types(service) {
            if let Some(ip) = pod_ip(pod, address_type) {
                let endpoint = endpoint_for(service, pod, node, ip);
                desired.insert(address_type, ports.clone(), endpoint);
            }
        }
    }

    let labels = slice_labels(service);
    let owner = owner_reference(service);
    let context =
        SliceContext { namespace: &namespace, service_name: &service_name, labels: &labels, owner: &owner, max };
    let total_desired: usize = desired.groups.values().map(BTreeMap::len).sum();
    if total_desired == 0 {
        reconcile_placeholder(&context, &owned, address_types(service)[0], &mut plan);
        return plan;
    }
    let mut by_group: BTreeMap<GroupKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in owned {
        by_group.entry(group_key_of_slice(slice)).or_default().push(slice);
    }
    let keys: BTreeSet<GroupKey> = by_group.keys().cloned().chain(desired.groups.keys().cloned()).collect();
    for key in keys {
        let slices = by_group.remove(&key).unwrap_or_default();
        let pool = desired.groups.remove(&key).unwrap_or_default();
        let ports = desired.ports.get(&key).cloned().unwrap_or_default();
        reconcile_group(&context, &key, &ports, slices, pool, &mut plan);
    }
    plan
}

/// What every written slice of the service shares.
struct SliceContext<'a> {
    namespace: &'a str,
    service_name: &'a str,
    labels: &'a BTreeMap<String, String>,
    owner: &'a OwnerReference,
    max: usize,
}

/// Slices are grouped by address type and by their (resolved) port list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    address_type: &'static str,
    ports: Vec<(String, i32, String, String)>,
}

#[derive(Default)]
struct DesiredEndpoints {
    /// Endpoints by address, per group.
    groups: BTreeMap<GroupKey, BTreeMap<String, Endpoint>>,
    /// The port list of each group, as written.
    ports: BTreeMap<GroupKey, Vec<EndpointPort>>,
}

impl DesiredEndpoints {
    fn insert(&mut self, address_type: &'static str, ports: Vec<EndpointPort>, endpoint: Endpoint) {
        let key = GroupKey { address_type, ports: port_key(&ports) };
        let address = endpoint.addresses.first().cloned().unwrap_or_default();
        self.ports.entry(key.clone()).or_insert(ports);
        self.groups.entry(key).or_default().insert(address, endpoint);
    }
}

fn port_key(ports: &[EndpointPort]) -> Vec<(String, i32, String, String)> {
    let mut key: Vec<_> = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

fn group_key_of_slice(slice: &EndpointSlice) -> GroupKey {
    GroupKey {
        address_type: match slice.address_type.as_str() {
            "IPv6" => "IPv6",
            "FQDN" => "FQDN",
            _ => "IPv4",
        },
        ports: port_key(slice.ports.as_deref().unwrap_or_default()),
    }
}

/// One group: keep endpoints where they are, fill room, create what is missing, delete what
/// is empty.
fn reconcile_group(
    context: &SliceContext<'_>,
    key: &GroupKey,
    ports: &[EndpointPort],
    slices: Vec<&EndpointSlice>,
    mut pool: BTreeMap<String, Endpoint>,
    plan: &mut Plan,
) {
    // Each existing slice keeps the endpoints it has that are still wanted (in their new form).
    let mut kept: Vec<(&EndpointSlice, Vec<Endpoint>)> = Vec::with_capacity(slices.len());
    let mut emptied: Vec<&EndpointSlice> = Vec::new();
    for slice in slices {
        let endpoints: Vec<Endpoint> = slice
            .endpoints
            .iter()
            .filter_map(|e| e.addresses.first().and_then(|address| pool.remove(address)))
            .collect();
        if endpoints.is_empty() { emptied.push(slice) } else { kept.push((slice, endpoints)) }
    }
    let max = context.max;
    let mut leftover = pool.into_values();
    // Fill slices that change anyway, then the fullest unchanged ones.
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by_key(|&i| {
        let (slice, endpoints) = &kept[i];
        let changed = !same_endpoints(&slice.endpoints, endpoints);
        (!changed, std::cmp::Reverse(endpoints.len()))
    });
    for i in order {
        let endpoints = &mut kept[i].1;
        while endpoints.len() < max {
            let Some(endpoint) = leftover.next() else { break };
            endpoints.push(endpoint);
        }
    }
    for (slice, endpoints) in kept {
        update_if_changed(context, slice, key, ports, endpoints, plan);
    }
    let mut rest: Vec<Endpoint> = leftover.collect();
    let mut emptied = emptied.into_iter();
    while !rest.is_empty() {
        let chunk: Vec<Endpoint> = rest.drain(..rest.len().min(max)).collect();
        match emptied.next() {
            Some(slice) => update_if_changed(context, slice, key, ports, chunk, plan),
            None => plan.push(create(context, key.address_type, ports.to_vec(), chunk)),
        }
    }
    for slice in emptied {
        plan.push(delete(slice, context.namespace));
    }
}

/// No endpoints at all: exactly one placeholder slice (no endpoints, no ports) remains.
fn reconcile_placeholder(
    context: &SliceContext<'_>,
    owned: &[&EndpointSlice],
    address_type: &'static str,
    plan: &mut Plan,
) {
    let placeholder = owned.iter().copied().find(|s| {
        s.endpoints.is_empty() && s.ports.as_ref().is_none_or(Vec::is_empty) && s.address_type == address_type
    });
    match placeholder {
        Some(slice) => {
            let key = GroupKey { address_type, ports: Vec::new() };
            update_if_changed(context, slice, &key, &[], Vec::new(), plan);
        }
        None => plan.push(create(context, address_type, Vec::new(), Vec::new())),
    }
    for slice in owned.iter().filter(|s| placeholder.is_none_or(|p| p.metadata.uid != s.metadata.uid)) {
        plan.push(delete(slice, context.namespace));
    }
}

fn same_endpoints(current: &[Endpoint], desired: &[Endpoint]) -> bool {
    current.len() == desired.len() && sorted(current.to_vec()) == sorted(desired.to_vec())
}

fn sorted(mut endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    endpoints
}

fn update_if_changed(
    context: &SliceContext<'_>,
    slice: &EndpointSlice,
    key: &GroupKey,
    ports: &[EndpointPort],
    endpoints: Vec<Endpoint>,
    plan: &mut Plan,
) {
    let endpoints = sorted(endpoints);
    let labels_ok = context.labels.iter().all(|(k, v)| label(&slice.metadata, k) == Some(v.as_str()))
        && slice
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| !l.contains_key(HEADLESS_LABEL) || context.labels.contains_key(HEADLESS_LABEL));
    let owner_ok = slice.metadata.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r == context.owner));
    let ports_ok = port_key(slice.ports.as_deref().unwrap_or_default()) == key.ports;
    if labels_ok
        && owner_ok
        && ports_ok
        && slice.address_type == key.address_type
        && sorted(slice.endpoints.clone()) == endpoints
    {
        return;
    }
    let mut updated = slice.clone();
    let mut labels = updated.metadata.labels.take().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    labels.extend(context.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    updated.metadata.labels = Some(labels);
    let mut owners: Vec<OwnerReference> = updated.metadata.owner_references.take().unwrap_or_default();
    owners.retain(|r| r.uid != context.owner.uid);
    owners.push(context.owner.clone());
    updated.metadata.owner_references = Some(owners);
    updated.address_type = key.address_type.to_string();
    updated.ports = Some(ports.to_vec());
    updated.endpoints = endpoints;
    let target = ObjectRef {
        resource: ENDPOINT_SLICES,
        namespace: Some(context.namespace.to_string()),
        name: slice.metadata.name.clone().unwrap_or_default(),
    };
    plan.push(Action::Update { target, object: to_json(&updated) });
}

fn create(
    context: &SliceContext<'_>,
    address_type: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> Action {
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", context.service_name)),
            namespace: Some(context.namespace.to_string()),
            labels: Some(context.labels.clone()),
            owner_references: Some(vec![context.owner.clone()]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_string(),
        endpoints: sorted(endpoints),
        ports: Some(ports),
    };
    Action::Create {
        resource: ENDPOINT_SLICES,
        namespace: Some(context.namespace.to_string()),
        object: to_json(&slice),
    }
}

fn delete(slice: &EndpointSlice, namespace: &str) -> Action {
    Action::Delete {
        target: ObjectRef {
            resource: ENDPOINT_SLICES,
            namespace: Some(namespace.to_string()),
            name: slice.metadata.name.clone().unwrap_or_default(),
        },
        uid: slice.metadata.uid.clone(),
        propagation: None,
    }
}

/// A k8s-openapi object as the JSON an Action carries. These types serialize infallibly
/// (string-keyed maps only); should that ever break, `null` reaches the API server, which
/// rejects it, rather than a silently wrong object.
pub(crate) fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

fn is_managed_slice_of(slice: &EndpointSlice, service_name: &str) -> bool {
    label(&slice.metadata, SERVICE_NAME_LABEL) == Some(service_name)
        && label(&slice.metadata, MANAGED_BY_LABEL) == Some(MANAGED_BY)
}

fn owned_by(metadata: &ObjectMeta, service: &Service) -> bool {
    let Some(uid) = service.metadata.uid.as_deref() else { return true };
    metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.uid == uid && r.controller == Some(true)))
}

pub(crate) fn label<'a>(metadata: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
}

/// The selector of a service the endpoint controllers manage (None: not theirs).
pub(crate) fn service_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

/// A service selector is a plain equality map; an empty one selects nothing (Kubernetes
/// converts it with `SelectorFromValidatedSet`, which for an empty set selects everything —
/// but an empty selector is treated as "no selector" by both endpoint controllers).
pub(crate) fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    if selector.is_empty() {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

pub(crate) fn publish_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

pub(crate) fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn phase_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

pub(crate) fn has_ip(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()) || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    })
}

/// Kubernetes' ShouldPodBeInEndpoints with terminating pods included (slices list them).
fn in_slices(pod: &Pod) -> bool {
    !phase_terminal(pod) && has_ip(pod)
}

/// Pods the v1 Endpoints list: terminating ones only with publishNotReadyAddresses.
pub(crate) fn in_endpoints(pod: &Pod, service: &Service) -> bool {
    !phase_terminal(pod) && has_ip(pod) && (pod.metadata.deletion_timestamp.is_none() || publish_not_ready(service))
}

/// Pod condition Ready is True.
pub(crate) fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The address families the service's slices are for.
fn address_types(service: &Service) -> Vec<&'static str> {
    let spec = service.spec.as_ref();
    let families: Vec<&'static str> = spec
        .and_then(|s| s.ip_families.as_ref())
        .map(|f| f.iter().map(|f| if f == "IPv6" { "IPv6" } else { "IPv4" }).collect())
        .unwrap_or_default();
    if !families.is_empty() {
        let mut unique = Vec::new();
        for family in families {
            if !unique.contains(&family) {
                unique.push(family);
            }
        }
        return unique;
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if ip.contains(':') => vec!["IPv6"],
        _ => vec!["IPv4"],
    }
}

/// The pod's IP of a family, from status.podIPs (falling back to status.podIP).
pub(crate) fn pod_ip<'a>(pod: &'a Pod, address_type: &str) -> Option<&'a str> {
    let status = pod.status.as_ref()?;
    let wants_v6 = address_type == "IPv6";
    let listed = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str());
    listed.chain(status.pod_ip.as_deref()).find(|ip| !ip.is_empty() && ip.contains(':') == wants_v6)
}

fn endpoint_for(service: &Service, pod: &Pod, node: Option<&Node>, ip: &str) -> Endpoint {
    let serving = pod_is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(service) || (serving && !terminating);
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: pod_hostname(service, pod),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(pod_reference(pod)),
        zone: node.and_then(|n| label(&n.metadata, ZONE_LABEL)).map(str::to_string),
        ..Endpoint::default()
    }
}

/// spec.hostname is published only when the pod's subdomain is this service.
pub(crate) fn pod_hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.clone())
}

pub(crate) fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The service's ports as this pod serves them: named targetPorts looked up in the pod's
/// containers (and restartable init containers); a port the pod cannot resolve is left out.
fn resolve_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(service)
        .iter()
        .filter_map(|port| {
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(target_port(port, pod)?),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

pub(crate) fn service_ports(service: &Service) -> &[ServicePort] {
    service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default()
}

/// Kubernetes' FindPort: a number is used as is, a name must match a container port of the
/// same protocol, no targetPort means the service port.
pub(crate) fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) if name.is_empty() => Some(port.port),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            container_ports(pod)
                .find(|c| c.name.as_deref() == Some(name) && c.protocol.as_deref().unwrap_or("TCP") == protocol)
                .map(|c| c.container_port)
        }
    }
}

fn container_ports(pod: &Pod) -> impl Iterator<Item = &ContainerPort> {
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default().iter();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    containers.chain(sidecars).flat_map(|c| c.ports.iter().flatten())
}

/// Service labels, minus the reserved ones, plus service-name, managed-by and headless.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    labels.insert(SERVICE_NAME_LABEL.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The Service as its slices' controller (the garbage collector deletes them with it).
fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub(crate) fn service(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ports: Some(ports),
                cluster_ip: Some("10.96.0.10".into()),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub(crate) fn port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: target,
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    pub(crate) fn pod(name: &str, ip: &str, node: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    pub(crate) fn nodes(names: &[(&str, &str)]) -> HashMap<String, Node> {
        names
            .iter()
            .map(|(name, zone)| {
                let node = Node {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        labels: Some(BTreeMap::from([(ZONE_LABEL.to_string(), zone.to_string())])),
                        ..ObjectMeta::default()
                    },
                    ..Node::default()
                };
                (name.to_string(), node)
            })
            .collect()
    }

    fn web() -> Service {
        service("web", &[("app", "web")], vec![port("http", 80, Some(IntOrString::String("http".into())))])
    }

    fn created(plan: &Plan) -> Vec<EndpointSlice> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { object, .. } => serde_json::from_value(object.clone()).ok(),
                _ => None,
            })
            .collect()
    }

    fn updated(plan: &Plan) -> Vec<EndpointSlice> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Update { object, .. } => serde_json::from_value(object.clone()).ok(),
                _ => None,
            })
            .collect()
    }

    /// Turns a create into the slice the API server would store.
    fn stored(mut slice: EndpointSlice, name: &str) -> EndpointSlice {
        slice.metadata.name = Some(name.into());
        slice.metadata.uid = Some(format!("uid-{name}"));
        slice.metadata.resource_version = Some("1".into());
        slice
    }

    #[test]
    fn a_new_service_gets_one_slice_with_resolved_ports_conditions_and_zone() {
        let svc = web();
        let ready = pod("a", "10.0.0.2", "n1", true);
        let unready = pod("b", "10.0.0.3", "n1", false);
        let mut terminating = pod("c", "10.0.0.4", "n1", true);
        terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let plan = sync(&svc, &[&ready, &unready, &terminating], &nodes(&[("n1", "z1")]), &[], &Config::default());
        let slices = created(&plan);
        assert_eq!(slices.len(), 1, "{plan:?}");
        let slice = &slices[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(label(&slice.metadata, SERVICE_NAME_LABEL), Some("web"));
        assert_eq!(label(&slice.metadata, MANAGED_BY_LABEL), Some(MANAGED_BY));
        assert_eq!(label(&slice.metadata, "team"), Some("a"));
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Service", "uid-web", Some(true)));
        let ports = slice.ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port, ports[0].protocol.as_deref()),
            (Some("http"), Some(8080), Some("TCP"))
        );
        let conditions: Vec<_> = slice
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (e.addresses[0].as_str(), c.ready, c.serving, c.terminating)
            })
            .collect();
        assert_eq!(
            conditions,
            vec![
                ("10.0.0.2", Some(true), Some(true), Some(false)),
                ("10.0.0.3", Some(false), Some(false), Some(false)),
                ("10.0.0.4", Some(false), Some(true), Some(true)),
            ]
        );
        let first = &slice.endpoints[0];
        assert_eq!(first.zone.as_deref(), Some("z1"));
        assert_eq!(first.node_name.as_deref(), Some("n1"));
        let target = first.target_ref.as_ref().unwrap();
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref(), target.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
    }

    #[test]
    fn an_up_to_date_slice_is_left_alone_and_a_change_updates_it_in_place() {
        let svc = web();
        let a = pod("a", "10.0.0.2", "n1", true);
        let nodes = nodes(&[("n1", "z1")]);
        let first = sync(&svc, &[&a], &nodes, &[], &Config::default());
        let slice = stored(created(&first).remove(0), "web-abc");
        let again = sync(&svc, &[&a], &nodes, &[&slice], &Config::default());
        assert!(again.is_empty(), "{again:?}");

        let not_ready = pod("a", "10.0.0.2", "n1", false);
        let plan = sync(&svc, &[&not_ready], &nodes, &[&slice], &Config::default());
        let updates = updated(&plan);
        assert_eq!(updates.len(), 1, "{plan:?}");
        assert_eq!(updates[0].metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(updates[0].metadata.resource_version.as_deref(), Some("1"));
        assert_eq!(updates[0].endpoints[0].conditions.as_ref().unwrap().ready, Some(false));
    }

    #[test]
    fn endpoints_are_split_at_the_per_slice_limit() {
        let svc = web();
        let pods: Vec<Pod> =
            (0..250).map(|i| pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 200, i % 200), "n1", true)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = sync(&svc, &refs, &nodes(&[("n1", "z1")]), &[], &Config::default());
        let mut sizes: Vec<usize> = created(&plan).iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![50, 100, 100]);
    }

    #[test]
    fn no_endpoints_means_one_placeholder_and_extra_slices_go() {
        let svc = web();
        let empty = sync(&svc, &[], &nodes(&[]), &[], &Config::default());
        let placeholder = created(&empty);
        assert_eq!(placeholder.len(), 1);
        assert!(placeholder[0].endpoints.is_empty());
        assert_eq!(placeholder[0].ports.as_deref(), Some(&[][..]));

        let a = pod("a", "10.0.0.2", "n1", true);
        let with_pod =
            stored(created(&sync(&svc, &[&a], &nodes(&[("n1", "z")]), &[], &Config::default())).remove(0), "web-1");
        let kept = stored(placeholder[0].clone(), "web-0");
        let plan = sync(&svc, &[], &nodes(&[]), &[&kept, &with_pod], &Config::default());
        assert_eq!(plan.actions.len(), 1, "{plan:?}");
        assert!(
            matches!(&plan.actions[0], Action::Delete { target, uid, .. } if target.name == "web-1" && uid.as_deref() == Some("uid-web-1"))
        );
    }

    #[test]
    fn an_emptied_slice_is_reused_instead_of_deleted_and_created() {
        let svc = web();
        let nodes = nodes(&[("n1", "z1")]);
        let a = pod("a", "10.0.0.2", "n1", true);
        let old = stored(created(&sync(&svc, &[&a], &nodes, &[], &Config::default())).remove(0), "web-1");
        let b = pod("b", "10.0.0.9", "n1", true);
        let plan = sync(&svc, &[&b], &nodes, &[&old], &Config::default());
        let updates = updated(&plan);
        assert_eq!(plan.actions.len(), 1, "{plan:?}");
        assert_eq!(updates[0].endpoints[0].addresses, vec!["10.0.0.9".to_string()]);
    }

    #[test]
    fn pods_with_unresolvable_named_ports_form_their_own_group() {
        let svc = web();
        let a = pod("a", "10.0.0.2", "n1", true);
        let mut b = pod("b", "10.0.0.3", "n1", true);
        b.spec.as_mut().unwrap().containers[0].ports = None;
        let plan = sync(&svc, &[&a, &b], &nodes(&[("n1", "z")]), &[], &Config::default());
        let mut groups: Vec<(usize, usize)> =
            created(&plan).iter().map(|s| (s.ports.as_ref().unwrap().len(), s.endpoints.len())).collect();
        groups.sort();
        assert_eq!(groups, vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn unselected_terminal_ipless_and_nodeless_pods_are_left_out() {
        let svc = web();
        let mut other = pod("o", "10.0.0.5", "n1", true);
        other.metadata.labels = Some(BTreeMap::from([("app".to_string(), "db".to_string())]));
        let mut done = pod("d", "10.0.0.6", "n1", true);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut pending = pod("p", "", "n1", false);
        pending.status.as_mut().unwrap().pod_ips = None;
        let lost = pod("l", "10.0.0.7", "gone", true);
        let plan = sync(&svc, &[&other, &done, &pending, &lost], &nodes(&[("n1", "z")]), &[], &Config::default());
        let slices = created(&plan);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty(), "only a placeholder: {:?}", slices[0]);
        assert_eq!(plan.requeue_after, Some(MISSING_NODE_RETRY), "a pod on an unknown node is retried");
    }

    #[test]
    fn services_without_selector_and_foreign_or_stale_slices() {
        let mut manual = web();
        manual.spec.as_mut().unwrap().selector = None;
        assert!(sync(&manual, &[], &nodes(&[]), &[], &Config::default()).is_empty());

        let svc = web();
        let a = pod("a", "10.0.0.2", "n1", true);
        let nodes = nodes(&[("n1", "z")]);
        let mut foreign = stored(created(&sync(&svc, &[&a], &nodes, &[], &Config::default())).remove(0), "mirrored");
        foreign.metadata.labels.as_mut().unwrap().insert(MANAGED_BY_LABEL.into(), "someone-else".into());
        let mut stale = stored(created(&sync(&svc, &[&a], &nodes, &[], &Config::default())).remove(0), "old");
        stale.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-of-an-earlier-web".into();
        let plan = sync(&svc, &[&a], &nodes, &[&foreign, &stale], &Config::default());
        assert!(matches!(&plan.actions[0], Action::Delete { target, .. } if target.name == "old"), "{plan:?}");
        assert_eq!(created(&plan).len(), 1);
        assert_eq!(plan.actions.len(), 2, "the foreign slice is not touched: {plan:?}");
    }

    #[test]
    fn headless_label_and_hostname() {
        let mut svc = web();
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let mut a = pod("a", "10.0.0.2", "n1", true);
        let spec = a.spec.as_mut().unwrap();
        spec.hostname = Some("a-0".into());
        spec.subdomain = Some("web".into());
        let plan = sync(&svc, &[&a], &nodes(&[("n1", "z")]), &[], &Config::default());
        let slice = created(&plan).remove(0);
        assert_eq!(label(&slice.metadata, HEADLESS_LABEL), Some(""));
        assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("a-0"));
    }
}
