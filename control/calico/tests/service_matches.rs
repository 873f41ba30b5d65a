//! Service matches (`source.services` / `destination.services`) compiled as Felix does, with
//! the Services' endpoints read from `EndpointSlice`s of the inventory: the four examples of
//! Calico's documentation that use them load, compile and decide.

use alp_calico::{compile, load_texts};
use alp_engine::testdata::shared_file;
use alp_engine::RequestSpec;
use alp_felix::wire::felix::{self as w, to_dataplane::Payload, ToDataplane};

/// Workloads: my-app/app, backend/api, frontend/web (two), kube-system/dns; the Services
/// `default/kubernetes`, `kube-system/kube-dns` and `frontend/frontend-service` as
/// EndpointSlices (one of them in two slices), as `kubectl get endpointslices -o yaml` lists
/// them.
const INVENTORY: &str = "\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpointList
items:
- metadata: {name: app, namespace: my-app, labels: {app: app}}
  spec: {pod: app, ipNetworks: [10.1.0.1/32]}
- metadata: {name: api, namespace: backend, labels: {app: api}}
  spec: {pod: api, ipNetworks: [10.2.0.1/32]}
- metadata: {name: web-1, namespace: frontend, labels: {app: web}}
  spec: {pod: web-1, ipNetworks: [10.3.0.1/32]}
- metadata: {name: web-2, namespace: frontend, labels: {app: web}}
  spec: {pod: web-2, ipNetworks: [10.3.0.2/32]}
- metadata: {name: dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
  spec: {pod: dns, ipNetworks: [10.4.0.1/32]}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: frontend-service, namespace: frontend}
  spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: frontend-service-a
    namespace: frontend
    labels: {kubernetes.io/service-name: frontend-service}
  addressType: IPv4
  endpoints:
  - addresses: [10.3.0.1]
    conditions: {ready: true}
    targetRef: {kind: Pod, name: web-1, namespace: frontend}
  ports:
  - {name: http, port: 8080, protocol: TCP}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: frontend-service-b
    namespace: frontend
    labels: {kubernetes.io/service-name: frontend-service}
  addressType: IPv4
  endpoints:
  - addresses: [10.3.0.2]
  ports:
  - {name: http, port: 8080, protocol: TCP}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: kubernetes
    namespace: default
    labels: {kubernetes.io/service-name: kubernetes}
  endpoints:
  - addresses: [192.168.0.10]
  ports:
  - {name: https, port: 6443, protocol: TCP}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: kube-dns-x
    namespace: kube-system
    labels: {kubernetes.io/service-name: kube-dns}
  endpoints:
  - addresses: [10.4.0.1]
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  - {name: unnamed}
";

fn example(file: &str) -> String {
    shared_file(&format!("examples/calico-docs/{file}")).unwrap_or_else(|e| panic!("{e}"))
}

fn compiled(file: &str, workload: &str) -> Vec<ToDataplane> {
    let policy = example(file);
    let set = load_texts(&[(file, &policy), ("inventory.yaml", INVENTORY)]).unwrap_or_else(|p| {
        panic!(
            "{}",
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let (ns, name) = workload.split_once('/').expect("NS/NAME");
    compile(&set, ns, name).unwrap_or_else(|e| panic!("{e}"))
}

fn rules(msgs: &[ToDataplane], egress: bool) -> Vec<w::Rule> {
    msgs.iter()
        .find_map(|m| match &m.payload {
            Some(Payload::ActivePolicyUpdate(u)) => u.policy.clone(),
            _ => None,
        })
        .map(|p| {
            if egress {
                p.outbound_rules
            } else {
                p.inbound_rules
            }
        })
        .expect("an active policy")
}

fn ipset(msgs: &[ToDataplane], id: &str) -> (i32, Vec<String>) {
    msgs.iter()
        .find_map(|m| match &m.payload {
            Some(Payload::IpsetUpdate(u)) if u.id == id => Some((u.r#type, u.members.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ip set {id}"))
}

/// A GET from `from` to port `port` of the workload (a port counts with an address only).
fn decide(msgs: &[ToDataplane], from: &str, port: u16) -> String {
    let engine = alp_felix::engine_from_updates(msgs);
    let request = format!(
        r#"{{"source":{{"address":"{from}"}},"destination":{{"address":"10.2.0.1","port":{port}}},"http":{{"method":"GET","path":"/"}}}}"#
    );
    let spec: RequestSpec = serde_json::from_str(&request).expect("request");
    let e = engine.explain(&engine.decide(&spec.request()));
    format!(
        "{} {}",
        e.decision,
        e.policy.map(|p| p.name).unwrap_or_default()
    )
    .trim_end()
    .to_string()
}

const IP: i32 = w::ip_set_update::IpSetType::Ip as i32;
const IP_AND_PORT: i32 = w::ip_set_update::IpSetType::IpAndPort as i32;

#[test]
fn source_service_is_the_services_endpoints() {
    let file = "docs__network-policy__policy-rules__service-policy__L79.yaml";
    let msgs = compiled(file, "backend/api");
    let r = &rules(&msgs, false)[0];
    assert_eq!(r.src_ip_set_ids.len(), 1, "{r:?}");
    assert!(r.src_ip_set_ids[0].starts_with("svcnoport:"), "{r:?}");
    assert_eq!(
        ipset(&msgs, &r.src_ip_set_ids[0]),
        (IP, vec!["10.3.0.1".into(), "10.3.0.2".into()])
    );
    assert_eq!(
        decide(&msgs, "10.3.0.2", 80),
        "allow allow-frontend-service-access"
    );
    assert_eq!(decide(&msgs, "10.4.0.1", 80), "deny");
}

#[test]
fn source_service_with_destination_ports() {
    let file = "docs__network-policy__policy-rules__service-policy__L98.yaml";
    let msgs = compiled(file, "backend/api");
    assert_eq!(
        decide(&msgs, "10.3.0.1", 80),
        "allow allow-frontend-service-access"
    );
    assert_eq!(decide(&msgs, "10.3.0.1", 81), "deny");
    assert_eq!(decide(&msgs, "10.1.0.1", 80), "deny");
}

#[test]
fn destination_services_are_ip_and_port_sets() {
    for (file, workload, members) in [
        (
            "docs__network-policy__policy-rules__service-policy__L30.yaml",
            "my-app/app",
            vec!["192.168.0.10,tcp:6443"],
        ),
        (
            "docs__network-policy__policy-rules__service-policy__L53.yaml",
            "backend/api",
            vec!["10.4.0.1,tcp:53", "10.4.0.1,udp:53"],
        ),
    ] {
        let msgs = compiled(file, workload);
        let r = &rules(&msgs, true)[0];
        assert_eq!(r.dst_ip_port_set_ids.len(), 1, "{file}: {r:?}");
        assert!(r.dst_ip_port_set_ids[0].starts_with("svc:"), "{r:?}");
        let members: Vec<String> = members.into_iter().map(String::from).collect();
        assert_eq!(
            ipset(&msgs, &r.dst_ip_port_set_ids[0]),
            (IP_AND_PORT, members),
            "{file}"
        );
        // An egress-only policy (its types default to Egress) leaves inbound requests to the
        // namespace profile.
        assert_eq!(decide(&msgs, "10.9.9.9", 80), "allow", "{file}");
    }
}
