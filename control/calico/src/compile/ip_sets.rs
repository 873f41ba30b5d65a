//! The IP sets the active rules reference: one per distinct endpoint selector (`s:`) or
//! selector and named port (`n:`), its id a 64-bit FNV-1a hash (hex) of a canonical
//! description, its members the matching workloads' addresses.

use super::selection::{Endpoint, EndpointSel};
use crate::model::{PolicySet, DEFAULT_PORT_PROTOCOL};
use crate::values::parse_ip;
use alp_felix::wire::felix::{self as w, ip_set_update::IpSetType, to_dataplane::Payload};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The IP sets the active rules reference: id -> (type, members).
#[derive(Default)]
pub(super) struct IpSets(BTreeMap<String, (IpSetType, BTreeSet<String>)>);

impl IpSets {
    pub(super) fn selector(&mut self, sel: &EndpointSel, eps: &[Endpoint<'_>]) -> String {
        let id = format!("s:{}", fnv(&sel.describe()));
        self.0.entry(id.clone()).or_insert_with(|| {
            let members = eps
                .iter()
                .filter(|e| sel.matches(e))
                .flat_map(|e| e.ips.iter().map(IpAddr::to_string))
                .collect();
            (IpSetType::Ip, members)
        });
        id
    }

    /// The named port `name` of the endpoints `sel` selects, for `proto` (`None`: any
    /// protocol, each member with its port's own).
    pub(super) fn named_port(
        &mut self,
        sel: &EndpointSel,
        name: &str,
        proto: Option<&str>,
        eps: &[Endpoint<'_>],
    ) -> String {
        let id = format!(
            "n:{}",
            fnv(&format!(
                "{} named port {}:{name}",
                sel.describe(),
                proto.unwrap_or("any")
            ))
        );
        self.0.entry(id.clone()).or_insert_with(|| {
            let mut members = BTreeSet::new();
            for e in eps.iter().filter(|e| sel.matches(e)) {
                for p in &e.workload.spec.ports {
                    let p_proto = p
                        .protocol
                        .as_ref()
                        .map_or(DEFAULT_PORT_PROTOCOL, |p| p.named_port_protocol());
                    if p.name == name && proto.is_none_or(|want| want == p_proto) {
                        for ip in &e.ips {
                            members.insert(format!("{ip},{p_proto}:{}", p.port));
                        }
                    }
                }
            }
            (IpSetType::IpAndPort, members)
        });
        id
    }

    /// The endpoints of the Kubernetes Service `namespace/name` (its EndpointSlices), as
    /// Felix's service index makes them: with `ports`, `<ip>,<proto>:<port>` for each address
    /// and numbered port (`svc:`); without, the addresses (`svcnoport:`).
    pub(super) fn service(
        &mut self,
        set: &PolicySet,
        namespace: &str,
        name: &str,
        ports: bool,
    ) -> String {
        let service = format!("{namespace}/{name}");
        let prefix = if ports { "svc" } else { "svcnoport" };
        let id = format!("{prefix}:{}", fnv(&service));
        self.0.entry(id.clone()).or_insert_with(|| {
            let mut members = BTreeSet::new();
            for slice in set
                .endpoint_slices
                .iter()
                .filter(|s| s.namespace == namespace && s.service == name)
            {
                let addrs = slice.addresses.iter().filter_map(|a| parse_ip(a));
                for addr in addrs {
                    if !ports {
                        members.insert(addr.to_string());
                        continue;
                    }
                    for p in &slice.ports {
                        let Some(port) = p.port else { continue };
                        let proto = match p.protocol.as_deref() {
                            Some("UDP") => "udp",
                            Some("SCTP") => "sctp",
                            _ => "tcp",
                        };
                        members.insert(format!("{addr},{proto}:{port}"));
                    }
                }
            }
            let kind = if ports {
                IpSetType::IpAndPort
            } else {
                IpSetType::Ip
            };
            (kind, members)
        });
        id
    }

    /// The IP set step: one `ipsetUpdate` per set, in id order.
    pub(super) fn into_updates(self) -> Vec<Payload> {
        self.0
            .into_iter()
            .map(|(id, (kind, members))| {
                Payload::IpsetUpdate(w::IpSetUpdate {
                    id,
                    members: members.into_iter().collect(),
                    r#type: kind as i32,
                })
            })
            .collect()
    }
}
