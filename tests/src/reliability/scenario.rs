//! The policy states a reliability run moves through, and the Felix messages between them.
//!
//! Workload `app` (pod IP 127.0.34.1), one GlobalNetworkPolicy `p` in tier `default` (default
//! action Deny):
//!
//! * `/denied...` is denied by a deny rule, `/allowed...` allowed by an allow rule, in every state;
//! * `/p0` ... `/p3` are allowed where bit 0..3 of the state's `mask` is set, else they fall to
//!   the tier's Deny (403);
//! * a raw TCP connection (no HTTP: the path rules never match it) is allowed only from an
//!   address in IP set `s:tcp`; the TCP load connects from [`TCP_SOURCE`], which is in the set
//!   where the state's `member` is true.
//!
//! Change `k` (1, 2, ...) flips one thing: odd `k` one bit of the mask (a policy update), even `k`
//! the membership (an IP-set delta). So a change alters the answer of one kind of request only,
//! and the others keep exactly one right answer even inside the uncertainty window.

use crate::policy::{default_profiles, endpoint, in_sync, policy};
use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

pub const WORKLOAD: &str = "app";
pub const POD_IP: &str = "127.0.34.1";
/// The TCP load's source address (in IP set `s:tcp` where `State::member`).
pub const TCP_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 40, 1));
pub const IPSET: &str = "s:tcp";

/// The kinds of request the load sends; `Class::path` is the HTTP path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Allowed,
    Denied,
    Flip(u8),
    /// A raw TCP connection from `TCP_SOURCE`.
    Tcp,
}

/// The HTTP classes in the order the load cycles through them.
pub const HTTP_CLASSES: [Class; 6] = [
    Class::Allowed,
    Class::Flip(0),
    Class::Denied,
    Class::Flip(1),
    Class::Flip(2),
    Class::Flip(3),
];

impl Class {
    pub fn path(self) -> &'static str {
        match self {
            Class::Allowed => "/allowed/x",
            Class::Denied => "/denied/x",
            Class::Flip(0) => "/p0/x",
            Class::Flip(1) => "/p1/x",
            Class::Flip(2) => "/p2/x",
            Class::Flip(_) => "/p3/x",
            Class::Tcp => "(tcp)",
        }
    }
}

/// One policy state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    pub mask: u8,
    pub member: bool,
}

/// The state before any change.
pub const INITIAL: State = State {
    mask: 0b0101,
    member: true,
};

impl State {
    /// The state after change `k` (k >= 1) from the state before it.
    pub fn next(self, k: u64) -> State {
        if k % 2 == 1 {
            State {
                mask: self.mask ^ (1 << ((k / 2) % 4)),
                member: self.member,
            }
        } else {
            State {
                mask: self.mask,
                member: !self.member,
            }
        }
    }

    /// Whether the policy allows a request (or connection) of `class` in this state.
    pub fn allows(self, class: Class) -> bool {
        match class {
            Class::Allowed => true,
            Class::Denied => false,
            Class::Flip(b) => self.mask & (1 << b) != 0,
            Class::Tcp => self.member,
        }
    }

    /// The policy's inbound rules for this state.
    pub fn rules(self) -> Value {
        let mut rules = vec![
            json!({"action": "deny", "httpMatch": {"paths": [{"prefix": "/denied"}]}}),
            json!({"action": "allow", "httpMatch": {"paths": [{"prefix": "/allowed"}]}}),
        ];
        let flips: Vec<Value> = (0..4u8)
            .filter(|b| self.mask & (1 << b) != 0)
            .map(|b| json!({"prefix": format!("/p{b}")}))
            .collect();
        if !flips.is_empty() {
            rules.push(json!({"action": "allow", "httpMatch": {"paths": flips}}));
        }
        rules.push(json!({"action": "allow", "srcIpSetIds": [IPSET]}));
        Value::Array(rules)
    }

    /// Everything Felix sends on a new stream for this state, `inSync` last.
    pub fn full_stream(self) -> Vec<Value> {
        let members: Vec<String> = if self.member {
            vec![TCP_SOURCE.to_string()]
        } else {
            vec![]
        };
        let mut msgs = default_profiles(WORKLOAD);
        msgs.push(json!({"ipsetUpdate": {"id": IPSET, "type": "IP", "members": members}}));
        msgs.push(policy("p", self.rules()));
        msgs.push(endpoint(WORKLOAD, POD_IP, &["p"]));
        msgs.push(in_sync());
        msgs
    }
}

/// The message of change `k`, which moves `before` to `before.next(k)`.
pub fn change_message(before: State, k: u64) -> Value {
    let after = before.next(k);
    if k % 2 == 1 {
        policy("p", after.rules())
    } else {
        let member = vec![TCP_SOURCE.to_string()];
        if after.member {
            json!({"ipsetDeltaUpdate": {"id": IPSET, "addedMembers": member}})
        } else {
            json!({"ipsetDeltaUpdate": {"id": IPSET, "removedMembers": member}})
        }
    }
}

/// The states 0..=n (index = changes applied).
pub fn states(n: u64) -> Vec<State> {
    let mut v = vec![INITIAL];
    for k in 1..=n {
        let s = v[v.len() - 1].next(k);
        v.push(s);
    }
    v
}

/// Checks [`State::allows`] against the engine: `control check` on every distinct state among
/// `states` with one request of each class. Returns how many (state, class) pairs were checked.
pub fn verify_with_control(control: &Path, dir: &Path, states: &[State]) -> Result<usize> {
    verify_with(control, dir, states, |n, s| {
        let upd = dir.join(format!("oracle-state-{n}.jsonl"));
        crate::policy::write_atomic(&upd, &s.full_stream())?;
        Ok(vec!["--updates".into(), upd.into()])
    })
}

/// The same for the Calico YAML of each state (`yaml(state)`, with the inventory
/// [`INVENTORY_YAML`]), as `control --policy` compiles it.
pub fn verify_yaml_with_control(
    control: &Path,
    dir: &Path,
    states: &[State],
    yaml: impl Fn(State) -> String,
) -> Result<usize> {
    let inv = dir.join("oracle-inventory.yaml");
    std::fs::write(&inv, INVENTORY_YAML)?;
    verify_with(control, dir, states, |n, s| {
        let p = dir.join(format!("oracle-state-{n}.yaml"));
        std::fs::write(&p, yaml(s))?;
        Ok(vec![
            "--policy".into(),
            p.into(),
            "--policy".into(),
            inv.clone().into(),
            "--workload".into(),
            format!("default/{WORKLOAD}").into(),
        ])
    })
}

/// The workload's Calico WorkloadEndpoint (the `--policy` source's inventory).
pub const INVENTORY_YAML: &str = "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-app-eth0
  namespace: default
  labels:
    app: app
spec:
  orchestrator: k8s
  node: node1
  pod: app
  endpoint: eth0
  serviceAccountName: app
  ipNetworks:
  - 127.0.34.1/32
";

/// The state as Calico v3 YAML: GlobalNetworkPolicy `p` allowing `/allowed` and the flipped-on
/// paths, and TCP from `TCP_SOURCE` where `member`; everything else falls to the tier's Deny.
pub fn state_yaml(s: State) -> String {
    let mut y = String::from(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: all()\n  types:\n  - Ingress\n  ingress:\n  - action: Allow\n    http:\n      paths:\n      - prefix: /allowed\n",
    );
    for b in 0..4u8 {
        if s.mask & (1 << b) != 0 {
            y.push_str(&format!("      - prefix: /p{b}\n"));
        }
    }
    if s.member {
        y.push_str(&format!(
            "  - action: Allow\n    source:\n      nets:\n      - {TCP_SOURCE}/32\n"
        ));
    }
    y
}

fn verify_with(
    control: &Path,
    dir: &Path,
    states: &[State],
    source: impl Fn(usize, State) -> Result<Vec<std::ffi::OsString>>,
) -> Result<usize> {
    let mut distinct: Vec<State> = vec![];
    for s in states {
        if !distinct.contains(s) {
            distinct.push(*s);
        }
    }
    let classes: Vec<Class> = HTTP_CLASSES.iter().copied().chain([Class::Tcp]).collect();
    let requests: String = classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let http = match c {
                Class::Tcp => Value::Null,
                c => json!({"method": "GET", "path": c.path(), "host": "alp.test"}),
            };
            let src = if *c == Class::Tcp {
                TCP_SOURCE.to_string()
            } else {
                "127.0.0.1".into()
            };
            format!(
                "{}\n",
                json!({"id": i, "source": {"address": src, "port": 40000},
                       "destination": {"address": POD_IP, "port": 8080, "protocol": "TCP"},
                       "http": http})
            )
        })
        .collect();
    let req_file = dir.join("oracle-requests.jsonl");
    std::fs::write(&req_file, requests)?;
    let mut checked = 0;
    for (n, s) in distinct.iter().enumerate() {
        let out = Command::new(control)
            .arg("check")
            .args(source(n, *s)?)
            .arg("--request")
            .arg(&req_file)
            .output()
            .with_context(|| format!("running {} check", control.display()))?;
        if !out.status.success() {
            bail!(
                "control check failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .context("control check output")?;
        if answers.len() != classes.len() {
            bail!(
                "control check gave {} answers for {} requests",
                answers.len(),
                classes.len()
            );
        }
        for (c, a) in classes.iter().zip(&answers) {
            let allowed = a["decision"] == "allow";
            if allowed != s.allows(*c) {
                bail!("oracle disagrees with control check: state {s:?}, {c:?}: control says {a}");
            }
            checked += 1;
        }
    }
    Ok(checked)
}
