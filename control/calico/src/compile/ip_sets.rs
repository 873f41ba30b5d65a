//! The IP sets the active rules reference: one per distinct endpoint selector (`s:`) or
//! selector and named port (`n:`), its id a 64-bit FNV-1a hash (hex) of a canonical
//! description, its members the matching workloads' addresses.

use super::selection::{Endpoint, EndpointSel};
use crate::model::DEFAULT_PORT_PROTOCOL;
use crate::values::protocol;
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

    pub(super) fn named_port(
        &mut self,
        sel: &EndpointSel,
        name: &str,
        proto: &str,
        eps: &[Endpoint<'_>],
    ) -> String {
        let id = format!(
            "n:{}",
            fnv(&format!("{} named port {proto}:{name}", sel.describe()))
        );
        self.0.entry(id.clone()).or_insert_with(|| {
            let mut members = BTreeSet::new();
            for e in eps.iter().filter(|e| sel.matches(e)) {
                for p in &e.workload.spec.ports {
                    let p_proto = p
                        .protocol
                        .as_ref()
                        .and_then(protocol)
                        .unwrap_or_else(|| DEFAULT_PORT_PROTOCOL.into());
                    if p.name == name && p_proto == proto {
                        for ip in &e.ips {
                            members.insert(format!("{ip},{proto}:{}", p.port));
                        }
                    }
                }
            }
            (IpSetType::IpAndPort, members)
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
