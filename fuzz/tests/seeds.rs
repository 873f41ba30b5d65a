//! Regenerates the generated seeds, `corpus/<target>/gen-*`, from the repository's own test
//! material (envoy/yaobank, control/calico/tests/data): run by hand after the formats change,
//!
//!     cargo test -p alp-fuzz --test seeds -- --ignored
//!
//! and commit what it writes. Hand-written seeds (the other files) are left alone. It also
//! writes the regression inputs that are easier built than written (`regressions/*/gen-*`).

use alp_felix::{parse_updates, SyncState};
use prost::Message;
use std::path::{Path, PathBuf};

fn repo(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    write_in("corpus", target, name, bytes);
}

fn write_in(folder: &str, target: &str, name: &str, bytes: &[u8]) {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("gen-{name}")), bytes).unwrap();
}

#[test]
#[ignore = "writes corpus files; run by hand"]
fn regenerate_corpus() {
    for workload in ["customer", "summary", "database"] {
        let text = repo(&format!("envoy/yaobank/{workload}.jsonl"));
        write("felix_json", &format!("{workload}.jsonl"), text.as_bytes());
        let messages = parse_updates(&text).unwrap();
        let array = serde_json::to_string(&messages).unwrap();
        write("felix_json", &format!("{workload}.json"), array.as_bytes());

        let mut stream = Vec::new();
        for message in &messages {
            message.encode_length_delimited(&mut stream).unwrap();
        }
        write("felix_proto", &format!("{workload}.bin"), &stream);

        let mut state = SyncState::new();
        state.replay(&messages);
        let (version, snapshot) = state.snapshot().unwrap();
        let bytes = alp_engine::envelope::encode(version, &snapshot).unwrap();
        write("envelope", &format!("{workload}.bin"), &bytes);
    }
    let empty = alp_engine::envelope::encode(7, &alp_engine::Snapshot::default()).unwrap();
    write("envelope", "empty.bin", &empty);
    write_in(
        "regressions",
        "envelope",
        "template-26-params.bin",
        &template_snapshot(26),
    );

    // A policy and the workload it selects, small enough for libFuzzer's default -max_len.
    let policy = repo("envoy/yaobank/policy.yaml");
    let first_policy = policy
        .split("\n---\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let workloads = repo("control/calico/tests/data/yaobank-workloads.yaml");
    let first_workload = workloads
        .split("\n---\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    write(
        "calico_yaml",
        "customer.yaml",
        format!("{first_policy}\n---\n{first_workload}\n").as_bytes(),
    );
    write("calico_yaml", "yaobank-policy.yaml", policy.as_bytes());
    write(
        "calico_yaml",
        "yaobank-workloads.yaml",
        workloads.as_bytes(),
    );

    // Header maps: serialized, and in the target's pair form (0xFF between parts).
    let pairs: [(&[u8], &[u8]); 4] = [
        (b":authority", b"summary"),
        (b":path", b"/api/v1/../items;x?q=1"),
        (b":method", b"GET"),
        (b"cookie", b"\xff\x00"),
    ];
    write(
        "header_map",
        "map.bin",
        &alp_fuzz::header_map::serialize(&pairs),
    );
    let mut pair_form = Vec::new();
    for (i, (k, v)) in pairs.iter().take(3).enumerate() {
        if i > 0 {
            pair_form.push(0xff);
        }
        pair_form.extend_from_slice(k);
        pair_form.push(0xff);
        pair_form.extend_from_slice(v);
    }
    write("header_map", "pairs.bin", &pair_form);
}

/// A snapshot whose one policy has a route template with `params` parameters: matchit panics
/// past 25 (found by path_match; the engine compiles templates from snapshots).
fn template_snapshot(params: usize) -> Vec<u8> {
    use alp_engine::snapshot::{Endpoint, HttpMatch, PathMatch, Policy, PolicyId, Rule, Tier};
    let template: String = (0..params).map(|i| format!("/{{p{i}}}")).collect();
    let id = PolicyId {
        name: "many-params".into(),
        namespace: String::new(),
        kind: "GlobalNetworkPolicy".into(),
    };
    let snapshot = alp_engine::Snapshot {
        endpoint: Some(Endpoint {
            tiers: vec![Tier {
                name: "default".into(),
                ingress_policies: vec![id.clone()],
                default_action: "Deny".into(),
            }],
            profile_ids: Vec::new(),
        }),
        policies: vec![Policy {
            id,
            namespace: String::new(),
            inbound_rules: vec![Rule {
                action: "allow".into(),
                http_match: Some(HttpMatch {
                    methods: Vec::new(),
                    paths: vec![PathMatch::Template(template)],
                }),
                ..Rule::default()
            }],
        }],
        ..alp_engine::Snapshot::default()
    };
    alp_engine::envelope::encode(1, &snapshot).unwrap()
}
