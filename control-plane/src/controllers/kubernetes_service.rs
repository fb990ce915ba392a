//! The `kubernetes` Service in `default`, its Endpoints and its EndpointSlice: how pods find
//! the API servers.
//!
//! Inputs: the three objects as they are (None: missing), and the advertise addresses of the
//! API servers alive now (the runtime derives them from its master leases, Kubernetes' "lease"
//! reconciler: 15 s TTL, reconciled every 10 s). An empty address list leaves the Endpoints
//! and slice alone: the caller is itself an API server, so "none" means it does not know yet,
//! and publishing no address would cut every client off.
//!
//! The Service is only created or has its ports/type/labels put right: its cluster IP is the
//! API server's to allocate (the first address of the service range, given as input) and is
//! immutable once set.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::action::{Action, ENDPOINT_SLICES, ENDPOINTS, ObjectRef, Plan, SERVICES};
use super::endpointslices::{SERVICE_NAME_LABEL, to_json};

pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";
/// Endpoints the mirroring controller must not copy into slices (this controller writes both).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

#[derive(Clone, Debug)]
pub struct Config {
    /// The Service's cluster IP (the first address of `--service-cluster-ip-range`).
    pub cluster_ip: IpAddr,
    /// The Service port (443).
    pub service_port: i32,
    /// The API servers' secure port (6443 in Keel and kubeadm).
    pub api_server_port: i32,
}

/// The writes that make the three objects right.
pub fn sync(
    config: &Config,
    addresses: &[IpAddr],
    service: Option<&Service>,
    endpoints: Option<&Endpoints>,
    slice: Option<&EndpointSlice>,
) -> Plan {
    let mut plan = Plan::default();
    sync_service(config, service, &mut plan);
    let mut addresses: Vec<IpAddr> =
        addresses.iter().copied().filter(|a| a.is_ipv4() == config.cluster_ip.is_ipv4()).collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return plan;
    }
    sync_endpoints(config, &addresses, endpoints, &mut plan);
    sync_slice(config, &addresses, slice, &mut plan);
    plan
}

fn target(resource: super::action::ResourceRef) -> ObjectRef {
    ObjectRef { resource, namespace: Some(NAMESPACE.into()), name: NAME.into() }
}

fn meta(labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(NAMESPACE.into()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sync_service(config: &Config, current: Option<&Service>, plan: &mut Plan) {
    let wanted_labels = labels(&[("component", "apiserver"), ("provider", "kubernetes")]);
    let ports = vec![ServicePort {
        name: Some("https".into()),
        protocol: Some("TCP".into()),
        port: config.service_port,
        target_port: Some(IntOrString::Int(config.api_server_port)),
        ..ServicePort::default()
    }];
    match current {
        None => {
            let service = Service {
                metadata: meta(wanted_labels),
                spec: Some(ServiceSpec {
                    type_: Some("ClusterIP".into()),
                    cluster_ip: Some(config.cluster_ip.to_string()),
                    cluster_ips: Some(vec![config.cluster_ip.to_string()]),
                    ip_family_policy: Some("SingleStack".into()),
                    session_affinity: Some("None".into()),
                    ports: Some(ports),
                    ..ServiceSpec::default()
                }),
                status: None,
            };
            plan.push(Action::Create {
                resource: SERVICES,
                namespace: Some(NAMESPACE.into()),
                object: to_json(&service),
            });
        }
        Some(current) => {
            let spec = current.spec.clone().unwrap_or_default();
            let same_ports = spec.ports.as_ref().is_some_and(|p| {
                p.len() == 1
                    && p[0].name == ports[0].name
                    && p[0].port == ports[0].port
                    && p[0].protocol.as_deref().unwrap_or("TCP") == "TCP"
                    && p[0].target_port == ports[0].target_port
            });
            let labels_ok =
                wanted_labels.iter().all(|(k, v)| current.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
            let type_ok = spec.type_.as_deref().unwrap_or("ClusterIP") == "ClusterIP";
            if same_ports && labels_ok && type_ok {
                return;
            }
            let mut updated = current.clone();
            updated.metadata.labels.get_or_insert_with(BTreeMap::new).extend(wanted_labels);
            let spec = updated.spec.get_or_insert_with(Default::default);
            spec.ports = Some(ports);
            spec.type_ = Some("ClusterIP".into());
            plan.push(Action::Update { target: target(SERVICES), object: to_json(&updated) });
        }
    }
}

fn sync_endpoints(config: &Config, addresses: &[IpAddr], current: Option<&Endpoints>, plan: &mut Plan) {
    let subsets = vec![EndpointSubset {
        addresses: Some(
            addresses.iter().map(|ip| EndpointAddress { ip: ip.to_string(), ..EndpointAddress::default() }).collect(),
        ),
        not_ready_addresses: None,
        ports: Some(vec![EndpointPort {
            name: Some("https".into()),
            port: config.api_server_port,
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]),
    }];
    let wanted_labels = labels(&[(SKIP_MIRROR_LABEL, "true")]);
    match current {
        None => {
            let endpoints = Endpoints { metadata: meta(wanted_labels), subsets: Some(subsets) };
            plan.push(Action::Create {
                resource: ENDPOINTS,
                namespace: Some(NAMESPACE.into()),
                object: to_json(&endpoints),
            });
        }
        Some(current) => {
            let labels_ok = current.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR_LABEL)).map(String::as_str)
                == Some("true");
            if labels_ok && current.subsets.as_ref() == Some(&subsets) {
                return;
            }
            let mut updated = current.clone();
            updated.metadata.labels.get_or_insert_with(BTreeMap::new).extend(wanted_labels);
            updated.subsets = Some(subsets);
            plan.push(Action::Update { target: target(ENDPOINTS), object: to_json(&updated) });
        }
    }
}

fn sync_slice(config: &Config, addresses: &[IpAddr], current: Option<&EndpointSlice>, plan: &mut Plan) {
    let endpoints: Vec<discovery::Endpoint> = addresses
        .iter()
        .map(|ip| discovery::Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions { ready: Some(true), ..EndpointConditions::default() }),
            ..discovery::Endpoint::default()
        })
        .collect();
    let ports = vec![discovery::EndpointPort {
        name: Some("https".into()),
        port: Some(config.api_server_port),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }];
    let address_type = if config.cluster_ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let wanted_labels = labels(&[(SERVICE_NAME_LABEL, NAME)]);
    match current {
        None => {
            let slice = EndpointSlice {
                metadata: meta(wanted_labels),
                address_type: address_type.into(),
                endpoints,
                ports: Some(ports),
            };
            plan.push(Action::Create {
                resource: ENDPOINT_SLICES,
                namespace: Some(NAMESPACE.into()),
                object: to_json(&slice),
            });
        }
        Some(current) => {
            let labels_ok = current.metadata.labels.as_ref() == Some(&wanted_labels);
            if labels_ok
                && current.endpoints == endpoints
                && current.ports.as_ref() == Some(&ports)
                && current.address_type == address_type
            {
                return;
            }
            let mut updated = current.clone();
            updated.metadata.labels = Some(wanted_labels);
            updated.endpoints = endpoints;
            updated.ports = Some(ports);
            updated.address_type = address_type.into();
            plan.push(Action::Update { target: target(ENDPOINT_SLICES), object: to_json(&updated) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config { cluster_ip: "10.96.0.1".parse().unwrap(), service_port: 443, api_server_port: 6443 }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    fn created<T: serde::de::DeserializeOwned>(plan: &Plan, resource: super::super::action::ResourceRef) -> T {
        plan.actions
            .iter()
            .find_map(|a| match a {
                Action::Create { resource: r, object, .. }
                | Action::Update { target: ObjectRef { resource: r, .. }, object }
                    if *r == resource =>
                {
                    serde_json::from_value(object.clone()).ok()
                }
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn creates_the_service_endpoints_and_slice() {
        let plan = sync(&config(), &ips(&["127.0.0.3", "127.0.0.1", "127.0.0.2"]), None, None, None);
        assert_eq!(plan.actions.len(), 3);
        let service: Service = created(&plan, SERVICES);
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.target_port.clone()),
            (Some("https"), 443, Some(IntOrString::Int(6443)))
        );
        assert_eq!(service.metadata.labels.unwrap().get("component").map(String::as_str), Some("apiserver"));
        let endpoints: Endpoints = created(&plan, ENDPOINTS);
        let listed: Vec<String> =
            endpoints.subsets.unwrap()[0].addresses.iter().flatten().map(|a| a.ip.clone()).collect();
        assert_eq!(listed, vec!["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
        assert_eq!(endpoints.metadata.labels.unwrap().get(SKIP_MIRROR_LABEL).map(String::as_str), Some("true"));
        let slice: EndpointSlice = created(&plan, ENDPOINT_SLICES);
        assert_eq!(slice.endpoints.len(), 3);
        assert_eq!(slice.metadata.labels.unwrap().len(), 1);
    }

    #[test]
    fn up_to_date_objects_are_left_alone_and_a_lost_master_is_removed() {
        let first = sync(&config(), &ips(&["127.0.0.1", "127.0.0.2"]), None, None, None);
        let service: Service = created(&first, SERVICES);
        let endpoints: Endpoints = created(&first, ENDPOINTS);
        let slice: EndpointSlice = created(&first, ENDPOINT_SLICES);
        let same = sync(&config(), &ips(&["127.0.0.2", "127.0.0.1"]), Some(&service), Some(&endpoints), Some(&slice));
        assert!(same.is_empty(), "{same:?}");
        let fewer = sync(&config(), &ips(&["127.0.0.2"]), Some(&service), Some(&endpoints), Some(&slice));
        assert_eq!(fewer.actions.len(), 2);
        let updated: Endpoints = created(&fewer, ENDPOINTS);
        assert_eq!(updated.subsets.unwrap()[0].addresses.as_ref().unwrap().len(), 1);
        let none = sync(&config(), &[], Some(&service), Some(&endpoints), Some(&slice));
        assert!(none.is_empty(), "no known address never empties the endpoints");
    }
}
