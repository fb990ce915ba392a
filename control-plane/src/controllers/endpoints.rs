//! The Endpoints controller's decision: the v1 Endpoints object of one Service (deprecated in
//! favour of EndpointSlices, still what older clients and `kubectl get endpoints` read).
//!
//! Inputs the runtime keeps: the Service (None once it is deleted: its Endpoints go too, they
//! carry no ownerReference); the pods of its namespace (index: pods by namespace); the nodes by
//! name (only to skip pods on nodes the cache does not know, as Kubernetes does); the current
//! Endpoints of the same name. O(pods in the namespace · ports).
//!
//! Subsets are packed by identical port sets; addresses sorted by IP; ports by name, number,
//! protocol. More than [`MAX_ADDRESSES`] addresses are truncated (ready ones first) and the
//! object is annotated `endpoints.kubernetes.io/over-capacity: truncated`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::action::{Action, ENDPOINTS, ObjectRef, Plan};
use super::endpointslices::{
    HEADLESS_LABEL, MISSING_NODE_RETRY, in_endpoints, is_headless, pod_hostname, pod_ip, pod_is_ready, pod_reference,
    publish_not_ready, selects, service_ports, service_selector, target_port, to_json,
};

/// The most addresses (ready + not ready) one Endpoints object holds.
pub const MAX_ADDRESSES: usize = 1000;
/// The annotation set when addresses were left out.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// The Endpoints `service` should have, as at most one write against `current`.
///
/// `service` None: the service is gone, so its Endpoints (if any) are deleted. Services without
/// a selector (or ExternalName) are not managed: their Endpoints are the user's.
pub fn sync<N: Borrow<Node>>(
    service: Option<&Service>,
    pods: &[&Pod],
    nodes: &HashMap<String, N>,
    current: Option<&Endpoints>,
) -> Plan {
    let mut plan = Plan::default();
    let Some(service) = service else {
        if let Some(current) = current {
            plan.push(Action::Delete {
                target: target(&current.metadata),
                uid: current.metadata.uid.clone(),
                propagation: None,
            });
        }
        return plan;
    };
    let Some(selector) = service_selector(service) else { return plan };
    let namespace = service.metadata.namespace.as_deref();
    let mut entries: Vec<(EndpointAddress, Vec<EndpointPort>, bool)> = Vec::new();
    for pod in pods.iter().copied().filter(|p| p.metadata.namespace.as_deref() == namespace && selects(selector, p)) {
        if !in_endpoints(pod, service) {
            continue;
        }
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if !node_name.as_deref().is_some_and(|n| nodes.contains_key(n)) && !publish_not_ready(service) {
            plan.requeue(MISSING_NODE_RETRY);
            continue;
        }
        let Some(ip) = pod_ip(pod, "IPv4").or_else(|| pod_ip(pod, "IPv6")) else { continue };
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: pod_hostname(service, pod),
            node_name,
            target_ref: Some(pod_reference(pod)),
        };
        let ready = publish_not_ready(service) || pod_is_ready(pod);
        let ports: Vec<EndpointPort> = service_ports(service)
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: target_port(port, pod)?,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        // A pod that serves none of a ported service's ports is not an endpoint of it.
        if ports.is_empty() && !service_ports(service).is_empty() {
            continue;
        }
        entries.push((address, ports, ready));
    }
    let (subsets, truncated) = pack(entries);
    let labels = endpoints_labels(service, current);
    let mut annotations = current.and_then(|c| c.metadata.annotations.clone()).unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    match current {
        Some(current) => {
            let same = current.subsets.clone().unwrap_or_default() == subsets
                && current.metadata.labels.clone().unwrap_or_default() == labels
                && current.metadata.annotations.clone().unwrap_or_default() == annotations;
            if !same {
                let mut updated = current.clone();
                updated.subsets = Some(subsets);
                updated.metadata.labels = Some(labels);
                updated.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
                plan.push(Action::Update { target: target(&current.metadata), object: to_json(&updated) });
            }
        }
        None => {
            let endpoints = Endpoints {
                metadata: ObjectMeta {
                    name: service.metadata.name.clone(),
                    namespace: service.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    ..ObjectMeta::default()
                },
                subsets: Some(subsets),
            };
            plan.push(Action::Create {
                resource: ENDPOINTS,
                namespace: service.metadata.namespace.clone(),
                object: to_json(&endpoints),
            });
        }
    }
    plan
}

fn target(metadata: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        resource: ENDPOINTS,
        namespace: metadata.namespace.clone(),
        name: metadata.name.clone().unwrap_or_default(),
    }
}

/// Service labels plus the headless label; labels someone else put on the Endpoints that the
/// service does not have are kept (Kubernetes copies the service's labels over the current ones).
fn endpoints_labels(service: &Service, current: Option<&Endpoints>) -> BTreeMap<String, String> {
    let mut labels = current.and_then(|c| c.metadata.labels.clone()).unwrap_or_default();
    labels.extend(service.metadata.labels.clone().unwrap_or_default());
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

type PortKey = Vec<(String, i32, String, String)>;

/// Groups addresses by identical port sets (Kubernetes' RepackSubsets), keeps at most
/// [`MAX_ADDRESSES`] (ready first), sorts everything. Returns whether any were dropped.
fn pack(entries: Vec<(EndpointAddress, Vec<EndpointPort>, bool)>) -> (Vec<EndpointSubset>, bool) {
    let total = entries.len();
    let mut entries = entries;
    // Ready first, then by IP, so truncation drops not-ready addresses first and stays stable.
    entries.sort_by(|a, b| (!a.2, &a.0.ip).cmp(&(!b.2, &b.0.ip)));
    entries.truncate(MAX_ADDRESSES);
    let mut groups: BTreeMap<PortKey, (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for (address, mut ports, ready) in entries {
        ports.sort_by(|a, b| port_sort_key(a).cmp(&port_sort_key(b)));
        let key: PortKey = ports.iter().map(port_sort_key).collect();
        let group = groups.entry(key).or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if ready { group.1.push(address) } else { group.2.push(address) }
    }
    let subsets = groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    (subsets, total > MAX_ADDRESSES)
}

fn port_sort_key(port: &EndpointPort) -> (String, i32, String, String) {
    (
        port.name.clone().unwrap_or_default(),
        port.port,
        port.protocol.clone().unwrap_or_default(),
        port.app_protocol.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpointslices::tests::{nodes, pod, port, service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn web() -> Service {
        service(
            "web",
            &[("app", "web")],
            vec![port("http", 80, Some(IntOrString::String("http".into()))), port("metrics", 9090, None)],
        )
    }

    fn written(plan: &Plan) -> Endpoints {
        match &plan.actions[..] {
            [Action::Create { object, .. } | Action::Update { object, .. }] => {
                serde_json::from_value(object.clone()).unwrap()
            }
            other => panic!("expected one write, got {other:?}"),
        }
    }

    #[test]
    fn ready_and_not_ready_addresses_with_resolved_ports() {
        let svc = web();
        let a = pod("a", "10.0.0.3", "n1", true);
        let b = pod("b", "10.0.0.2", "n1", false);
        let mut c = pod("c", "10.0.0.4", "n1", true);
        c.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let plan = sync(Some(&svc), &[&a, &b, &c], &nodes(&[("n1", "z")]), None);
        let endpoints = written(&plan);
        assert_eq!(endpoints.metadata.name.as_deref(), Some("web"));
        assert_eq!(endpoints.metadata.labels.as_ref().unwrap().get("team").map(String::as_str), Some("a"));
        assert!(endpoints.metadata.owner_references.is_none());
        let subsets = endpoints.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        let ips = |list: &Option<Vec<EndpointAddress>>| list.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.3"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.2"], "terminating c is dropped");
        let ports: Vec<_> = subsets[0].ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.port)).collect();
        assert_eq!(ports, vec![("http".to_string(), 8080), ("metrics".to_string(), 9090)]);
        let address = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(address.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn unchanged_is_a_no_op_changed_is_an_update_and_a_gone_service_deletes() {
        let svc = web();
        let a = pod("a", "10.0.0.3", "n1", true);
        let nodes = nodes(&[("n1", "z")]);
        let mut current = written(&sync(Some(&svc), &[&a], &nodes, None));
        current.metadata.uid = Some("uid-ep".into());
        current.metadata.resource_version = Some("7".into());
        assert!(sync(Some(&svc), &[&a], &nodes, Some(&current)).is_empty());

        let b = pod("b", "10.0.0.9", "n1", true);
        let updated = written(&sync(Some(&svc), &[&a, &b], &nodes, Some(&current)));
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(updated.subsets.unwrap()[0].addresses.as_ref().unwrap().len(), 2);

        let gone = sync(None, &[], &nodes, Some(&current));
        assert!(
            matches!(&gone.actions[..], [Action::Delete { target, uid, .. }] if target.name == "web" && uid.as_deref() == Some("uid-ep"))
        );
    }

    #[test]
    fn publish_not_ready_lists_everything_as_ready() {
        let mut svc = web();
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let b = pod("b", "10.0.0.2", "n1", false);
        let mut c = pod("c", "10.0.0.4", "unknown-node", true);
        c.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let subsets = written(&sync(Some(&svc), &[&b, &c], &nodes(&[("n1", "z")]), None)).subsets.unwrap();
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 2);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn pods_with_different_ports_get_different_subsets() {
        let svc = web();
        let a = pod("a", "10.0.0.3", "n1", true);
        let mut b = pod("b", "10.0.0.2", "n1", true);
        b.spec.as_mut().unwrap().containers[0].ports = None;
        let subsets = written(&sync(Some(&svc), &[&a, &b], &nodes(&[("n1", "z")]), None)).subsets.unwrap();
        let shape: Vec<_> = subsets
            .iter()
            .map(|s| (s.ports.as_ref().map_or(0, Vec::len), s.addresses.as_ref().unwrap()[0].ip.clone()))
            .collect();
        assert!(shape.contains(&(2, "10.0.0.3".into())) && shape.contains(&(1, "10.0.0.2".into())), "{shape:?}");
    }

    #[test]
    fn more_than_the_cap_is_truncated_and_annotated() {
        let svc = web();
        let pods: Vec<Pod> = (0..1005)
            .map(|i| pod(&format!("p{i}"), &format!("10.2.{}.{}", i / 250, i % 250), "n1", i % 2 == 0))
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let endpoints = written(&sync(Some(&svc), &refs, &nodes(&[("n1", "z")]), None));
        let subset = &endpoints.subsets.unwrap()[0];
        let ready = subset.addresses.as_ref().map_or(0, Vec::len);
        let not_ready = subset.not_ready_addresses.as_ref().map_or(0, Vec::len);
        assert_eq!((ready, not_ready), (503, 497), "ready addresses are kept first");
        assert_eq!(
            endpoints.metadata.annotations.unwrap().get(OVER_CAPACITY_ANNOTATION).map(String::as_str),
            Some("truncated")
        );
    }

    #[test]
    fn selectorless_services_are_left_to_their_owner() {
        let mut svc = web();
        svc.spec.as_mut().unwrap().selector = None;
        let a = pod("a", "10.0.0.3", "n1", true);
        assert!(sync(Some(&svc), &[&a], &nodes(&[("n1", "z")]), None).is_empty());
    }
}
