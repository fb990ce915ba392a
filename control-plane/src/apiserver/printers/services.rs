//! Service, Endpoints and EndpointSlice rows: how traffic reaches pods.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::{AGE, Column, NAME, age, array_at, column, format_string_map, int_at, name, or_none, str_at, wide};

pub(super) const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName."),
    column("Cluster-IP", "string", "Virtual IP address of the service inside the cluster."),
    column("External-IP", "string", "Addresses the service is reachable on from outside the cluster."),
    column("Port(s)", "string", "Service ports, with node ports, and their protocols."),
    AGE,
    wide("Selector", "string", "Labels of the pods the service sends traffic to."),
];

pub(super) const ENDPOINTS_COLUMNS: &[Column] =
    &[NAME, column("Endpoints", "string", "Up to three address:port pairs backing the service."), AGE];

pub(super) const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    column("AddressType", "string", "Kind of addresses in the slice: IPv4, IPv6 or FQDN."),
    column("Ports", "string", "Up to three ports exposed by the endpoints."),
    column("Endpoints", "string", "Up to three endpoint addresses."),
    AGE,
];

/// How many entries the ENDPOINTS and PORTS cells list before summarizing the rest.
const LISTED_MAX: usize = 3;

pub(super) fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(service).into(),
        service_type(service).into(),
        cluster_ip(service).into(),
        external_ip(service).into(),
        or_none(&ports(service)).into(),
        age(service, now).into(),
        or_none(&format_string_map(service, &["spec", "selector"])).into(),
    ]
}

/// `spec.type`, which defaults to ClusterIP when the API server stores the service.
fn service_type(service: &Value) -> &str {
    match str_at(service, &["spec", "type"]) {
        "" => "ClusterIP",
        type_ => type_,
    }
}

/// The primary cluster IP ("None" for a headless service), `<none>` when unset.
fn cluster_ip(service: &Value) -> String {
    match array_at(service, &["spec", "clusterIPs"]).first() {
        Some(first) => first.as_str().unwrap_or("").to_owned(),
        // A service written with only the singular field: Kubernetes fills clusterIPs from it.
        None => or_none(str_at(service, &["spec", "clusterIP"])),
    }
}

fn external_ip(service: &Value) -> String {
    let external_ips: Vec<&str> =
        array_at(service, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match service_type(service) {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(service);
            if addresses.is_empty() && external_ips.is_empty() {
                return "<pending>".to_owned();
            }
            addresses.extend(external_ips);
            addresses.join(",")
        }
        "ExternalName" => str_at(service, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// Load balancer ingress points (IP, else hostname), sorted and without duplicates.
fn load_balancer_addresses(service: &Value) -> Vec<&str> {
    let ingress = array_at(service, &["status", "loadBalancer", "ingress"]);
    let addresses: BTreeSet<&str> = ingress
        .iter()
        .map(|point| match str_at(point, &["ip"]) {
            "" => str_at(point, &["hostname"]),
            ip => ip,
        })
        .filter(|address| !address.is_empty())
        .collect();
    addresses.into_iter().collect()
}

/// "80/TCP", "80:30080/TCP", comma separated.
fn ports(service: &Value) -> String {
    let ports = array_at(service, &["spec", "ports"]);
    let pieces: Vec<String> = ports
        .iter()
        .map(|port| {
            let number = int_at(port, &["port"]).unwrap_or(0);
            let protocol = match str_at(port, &["protocol"]) {
                "" => "TCP",
                protocol => protocol,
            };
            match int_at(port, &["nodePort"]).unwrap_or(0) {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

pub(super) fn endpoints_cells(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(endpoints).into(), format_endpoints(endpoints).into(), age(endpoints, now).into()]
}

/// Up to three `ip:port` (or bare `ip` for a subset without ports) entries, then "+ N more...";
/// `<none>` without subsets.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = array_at(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut listed: Vec<String> = Vec::new();
    let mut total: usize = 0;
    for subset in subsets {
        let addresses = array_at(subset, &["addresses"]);
        let ports = array_at(subset, &["ports"]);
        let ip = |address: &Value| str_at(address, &["ip"]).to_owned();
        if ports.is_empty() {
            total += addresses.len();
            listed.extend(addresses.iter().map(ip).take(LISTED_MAX.saturating_sub(listed.len())));
            continue;
        }
        for port in ports {
            let number = int_at(port, &["port"]).unwrap_or(0);
            total += addresses.len();
            let room = LISTED_MAX.saturating_sub(listed.len());
            listed.extend(addresses.iter().take(room).map(|address| join_host_port(&ip(address), number)));
        }
    }
    with_more(&listed, total, None)
}

/// `host:port`, bracketing IPv6 hosts (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

pub(super) fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = array_at(slice, &["ports"])
        .iter()
        .map(|port| match (int_at(port, &["port"]), str_at(port, &["name"])) {
            (Some(number), _) => number.to_string(),
            (None, name) if !name.is_empty() => name.to_owned(),
            // A port without a number matches every port; Kubernetes prints it as "*".
            (None, _) => "*".to_owned(),
        })
        .collect();
    let addresses: Vec<String> = array_at(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| array_at(endpoint, &["addresses"]))
        .map(|address| address.as_str().unwrap_or("").to_owned())
        .collect();
    vec![
        name(slice).into(),
        str_at(slice, &["addressType"]).into(),
        with_more(&ports, ports.len(), Some("<unset>")).into(),
        with_more(&addresses, addresses.len(), Some("<unset>")).into(),
        age(slice, now).into(),
    ]
}

/// The first three of `entries` joined by commas, then " + N more..." for the rest of `total`;
/// `empty` (when given) replaces an empty result.
fn with_more(entries: &[String], total: usize, empty: Option<&str>) -> String {
    let shown = &entries[..entries.len().min(LISTED_MAX)];
    let joined = shown.join(",");
    if total > LISTED_MAX {
        return format!("{joined} + {} more...", total - LISTED_MAX);
    }
    match empty {
        Some(placeholder) if joined.is_empty() => placeholder.to_owned(),
        _ => joined,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{now, row};
    use super::*;

    fn cells_of(resource: &str, object: &Value) -> Vec<Value> {
        super::super::cells(resource, object, now())
    }

    #[test]
    fn node_port_service() {
        let service = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-11-16T10:00:00Z"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.12.34",
                "clusterIPs": ["10.96.12.34"],
                "selector": {"app": "web", "tier": "front"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                    {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"},
                ],
            },
        });
        let expected = row(&[
            "web".into(),
            "NodePort".into(),
            "10.96.12.34".into(),
            "<none>".into(),
            "80:30080/TCP,53:30053/UDP".into(),
            "7d".into(),
            "app=web,tier=front".into(),
        ]);
        assert_eq!(cells_of("services", &service), expected);
    }

    #[test]
    fn headless_service() {
        let service = json!({
            "metadata": {"name": "db", "creationTimestamp": "2026-11-23T09:30:00Z"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}], "selector": {"app": "db"}},
        });
        let expected = row(&[
            "db".into(),
            "ClusterIP".into(),
            "None".into(),
            "<none>".into(),
            "5432/TCP".into(),
            "30m".into(),
            "app=db".into(),
        ]);
        assert_eq!(cells_of("services", &service), expected);
    }

    #[test]
    fn load_balancer_and_external_name_services() {
        let pending = json!({
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"], "ports": [{"port": 443, "nodePort": 31443}]},
        });
        let row = cells_of("services", &pending);
        assert_eq!(row[3], "<pending>");
        assert_eq!(row[4], "443:31443/TCP");
        assert_eq!(row[6], "<none>");

        let assigned = json!({
            "spec": {"type": "LoadBalancer", "externalIPs": ["198.51.100.7"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}},
        });
        assert_eq!(cells_of("services", &assigned)[3], "203.0.113.9,lb.example.com,198.51.100.7");

        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        let row = cells_of("services", &external);
        assert_eq!(row[2], "<none>");
        assert_eq!(row[3], "db.example.com");
        assert_eq!(row[4], "<none>");

        let with_external_ips = json!({"spec": {"externalIPs": ["192.0.2.1", "192.0.2.2"]}});
        assert_eq!(cells_of("services", &with_external_ips)[3], "192.0.2.1,192.0.2.2");
        assert_eq!(cells_of("services", &json!({"spec": {"type": "Weird"}}))[3], "<unknown>");
    }

    #[test]
    fn endpoints_rows() {
        let endpoints = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-11-23T09:59:00Z"},
            "subsets": [
                {
                    "addresses": [{"ip": "10.244.1.7"}, {"ip": "10.244.2.9"}],
                    "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9113}],
                },
                {"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 8080}]},
            ],
        });
        let expected =
            row(&["web".into(), "10.244.1.7:8080,10.244.2.9:8080,10.244.1.7:9113 + 2 more...".into(), "60s".into()]);
        assert_eq!(cells_of("endpoints", &endpoints), expected);

        let ipv6 = json!({"subsets": [{"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells_of("endpoints", &ipv6)[1], "[fd00::5]:80");
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]});
        assert_eq!(cells_of("endpoints", &headless)[1], "10.0.0.1,10.0.0.2");
        assert_eq!(cells_of("endpoints", &json!({"subsets": []}))[1], "<none>");
        assert_eq!(cells_of("endpoints", &json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.3"}]}]}))[1], "");
    }

    #[test]
    fn endpoint_slice_rows() {
        let slice = json!({
            "metadata": {"name": "web-abc12", "creationTimestamp": "2026-11-23T09:00:00Z"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "grpc"}, {}],
            "endpoints": [
                {"addresses": ["10.244.1.7"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.9"]},
                {"addresses": ["10.244.3.4"]},
                {"addresses": ["10.244.4.2"]},
            ],
        });
        let expected = row(&[
            "web-abc12".into(),
            "IPv4".into(),
            "8080,grpc,*".into(),
            "10.244.1.7,10.244.2.9,10.244.3.4 + 1 more...".into(),
            "60m".into(),
        ]);
        assert_eq!(cells_of("endpointslices", &slice), expected);
        let empty = json!({"addressType": "IPv6"});
        assert_eq!(cells_of("endpointslices", &empty)[2..4], ["<unset>", "<unset>"]);
    }
}
