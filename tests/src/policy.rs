//! Felix `ToDataplane` messages in protobuf JSON mapping, written as the JSON Lines files that
//! `control serve --updates FILE` reads.
//!
//! The helpers build what Felix sends to one workload's Policy Sync stream: its endpoint with the
//! `default` tier, the active policies that tier references, profiles, IP sets, service accounts
//! and namespaces, then `inSync`.

use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;

/// `{"workloadEndpointUpdate": ...}` for pod `default/<workload>` with one tier `default`
/// (default action Deny) listing `policies` (GlobalNetworkPolicy names) and the usual profiles.
pub fn endpoint(workload: &str, ip: &str, policies: &[&str]) -> Value {
    let ids: Vec<Value> = policies
        .iter()
        .map(|p| json!({"name": p, "kind": "GlobalNetworkPolicy"}))
        .collect();
    let tiers = if ids.is_empty() {
        json!([])
    } else {
        json!([{"name": "default", "ingressPolicies": ids, "egressPolicies": [], "defaultAction": "Deny"}])
    };
    json!({"workloadEndpointUpdate": {
        "id": {"orchestratorId": "k8s", "workloadId": format!("default/{workload}"), "endpointId": "eth0"},
        "endpoint": {
            "state": "active",
            "name": format!("cali-{workload}"),
            "profileIds": ["kns.default", format!("ksa.default.{workload}")],
            "ipv4Nets": [format!("{ip}/32")],
            "tiers": tiers,
        }
    }})
}

/// `{"activePolicyUpdate": ...}`: GlobalNetworkPolicy `name` in tier `default`.
pub fn policy(name: &str, inbound_rules: Value) -> Value {
    json!({"activePolicyUpdate": {
        "id": {"name": name, "kind": "GlobalNetworkPolicy"},
        "policy": {"tier": "default", "inboundRules": inbound_rules, "outboundRules": [{"action": "allow"}]}
    }})
}

/// `{"ipsetUpdate": ...}` of type IP (or NET) with `members`.
pub fn ipset(id: &str, kind: &str, members: &[&str]) -> Value {
    json!({"ipsetUpdate": {"id": id, "type": kind, "members": members}})
}

pub fn service_account(name: &str, labels: Value) -> Value {
    json!({"serviceAccountUpdate": {"id": {"namespace": "default", "name": name}, "labels": labels}})
}

/// `{"namespaceUpdate": ...}`: namespace `name` with `labels` (Felix adds
/// `kubernetes.io/metadata.name` itself; so do these tests where they need it).
pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"namespaceUpdate": {"id": {"name": name}, "labels": labels}})
}

pub fn in_sync() -> Value {
    json!({"inSync": {}})
}

/// The profiles Calico's Kubernetes datastore gives every pod of namespace `default`.
pub fn default_profiles(workload: &str) -> Vec<Value> {
    vec![
        json!({"activeProfileUpdate": {"id": {"name": "kns.default"},
            "profile": {"inboundRules": [{"action": "allow"}], "outboundRules": [{"action": "allow"}]}}}),
        json!({"activeProfileUpdate": {"id": {"name": format!("ksa.default.{workload}")}, "profile": {}}}),
        json!({"namespaceUpdate": {"id": {"name": "default"}, "labels": {"kubernetes.io/metadata.name": "default"}}}),
    ]
}

/// A complete, in-sync stream for `workload`: one policy `p` with `rules`, extra messages first.
pub fn single_policy(workload: &str, ip: &str, extra: Vec<Value>, rules: Value) -> Vec<Value> {
    let mut msgs = extra;
    msgs.extend(default_profiles(workload));
    msgs.push(policy("p", rules));
    msgs.push(endpoint(workload, ip, &["p"]));
    msgs.push(in_sync());
    msgs
}

/// The messages as JSON Lines text.
pub fn to_jsonl(msgs: &[Value]) -> String {
    msgs.iter().map(|m| format!("{m}\n")).collect()
}

/// Replaces `path` atomically (write a sibling, then rename), as a careful writer does.
pub fn write_atomic(path: &Path, msgs: &[Value]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, to_jsonl(msgs)).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// Rewrites `path` in place (truncate and write), as `echo > file` does.
pub fn write_in_place(path: &Path, msgs: &[Value]) -> Result<()> {
    fs::write(path, to_jsonl(msgs)).with_context(|| format!("writing {}", path.display()))
}
