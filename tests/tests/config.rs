//! The Envoy bootstrap template renders for every user of it and Envoy accepts the result
//! (`envoy --mode validate`), and docker-compose.yaml stays in step with it: the same names, and
//! clients at the addresses the compose inventory lists.

use alp_e2e::artifacts;
use alp_e2e::certs::Ca;
use alp_e2e::envoy::{validate, BootstrapParams, PathMode, WorkloadParams};
use alp_e2e::stack::{RunDir, YAOBANK};
use std::path::Path;

fn params(run: &Path, ca: &Ca, wasm: &Path, mode: PathMode, names: &[&str]) -> BootstrapParams {
    BootstrapParams {
        admin_address: "127.0.0.1".into(),
        admin_port: 0,
        wasm_file: wasm.to_path_buf(),
        ca_file: ca.cert_file.clone(),
        trust_domain: "cluster.local".into(),
        access_log: run.join("access.log"),
        path_mode: mode,
        run_dir: run.to_path_buf(),
        wasm_filter: true,
        native_module: None,
        direct_response: false,
        envoy_backend: true,
        plugin_options: String::new(),
        workloads: names
            .iter()
            .map(|n| {
                let c = ca.issue(&format!("server-{n}"), n, true).unwrap();
                WorkloadParams {
                    name: n.to_string(),
                    listen_address: "127.0.0.1".into(),
                    listen_port: 0,
                    tcp_port: 0,
                    server_cert: c.cert,
                    server_key: c.key,
                    control_socket: run.join(format!("control-{n}.sock")),
                }
            })
            .collect(),
    }
}

#[test]
fn bootstrap_validates_for_the_harness_in_every_path_mode() {
    let envoy = artifacts::envoy().expect("envoy is required for this test");
    let wasm = artifacts::wasm().expect("the filter module is required for this test");
    let dir = RunDir::create("alp-config").unwrap();
    let ca = Ca::create(&dir.path.join("certs")).unwrap();
    for (mode, names) in [
        (PathMode::EnvoyNormalises, &YAOBANK[..]),
        (PathMode::IstioBase, &["app"][..]),
        (PathMode::Raw, &["app"][..]),
    ] {
        let yaml = params(&dir.path, &ca, &wasm, mode, names).render().unwrap();
        for n in names {
            // Shared data (the snapshot) is per vm_id: one distinctive vm_id per workload.
            assert!(
                yaml.contains(&format!("vm_id: calico-alp-{n}\n")),
                "one distinctive vm_id per workload"
            );
            assert!(yaml.contains(&format!("\"control_cluster\":\"alp_control_{n}\"")));
        }
        // Two filters per workload (HTTP and network), both on the workload's vm_id.
        let vm_ids = yaml
            .lines()
            .filter(|l| l.trim_start().starts_with("vm_id:"))
            .count();
        assert_eq!(vm_ids, 2 * names.len(), "every filter has its vm_id");
        for n in names {
            assert_eq!(
                yaml.matches(&format!("vm_id: calico-alp-{n}\n")).count(),
                2,
                "the network filter shares the HTTP filter's vm_id (one snapshot per workload)"
            );
            assert!(
                yaml.contains(&format!("- name: tcp_{n}\n")),
                "listener tcp_{n}"
            );
            assert!(yaml.contains(&format!("cluster: backend_tcp_{n}\n")));
        }
        assert_eq!(
            yaml.matches("'{\"filter\":\"network\",").count(),
            names.len(),
            "one network filter configuration per workload"
        );
        let fail_closed = yaml
            .lines()
            .filter(|l| l.trim() == "failure_policy: FAIL_CLOSED")
            .count();
        assert_eq!(fail_closed, 2 * names.len(), "both filters fail closed");
        // The TLS chain connects upstream only after the handshake (the plaintext chain needs
        // nothing); Envoy requires max_early_data_bytes with that mode.
        assert_eq!(
            yaml.matches("upstream_connect_mode: ON_DOWNSTREAM_TLS_HANDSHAKE")
                .count(),
            names.len()
        );
        assert!(yaml.contains("name: envoy.filters.network.echo"));
        assert!(yaml.contains("use_remote_address: true"));
        let (normalize, merge, escaped) = mode.hcm_settings();
        assert!(
            yaml.contains(&format!("normalize_path: {normalize}\n")),
            "{mode:?}"
        );
        assert!(
            yaml.contains(&format!("merge_slashes: {merge}\n")),
            "{mode:?}"
        );
        assert!(
            yaml.contains(&format!("path_with_escaped_slashes_action: {escaped}\n")),
            "{mode:?}"
        );
        // The routes the path tests tell apart, and the backend that echoes them.
        assert!(yaml.contains("path_separated_prefix: \"/admin\""));
        assert!(yaml.contains(&format!("- name: backend_{}\n    address:", names[0])));
        let file = dir.path.join(format!("envoy-{mode:?}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        validate(&envoy, &file).unwrap();
    }
    // The path tests' variant: the backend socket is served by the harness, not by Envoy.
    let mut echo = params(&dir.path, &ca, &wasm, PathMode::Raw, &["app"]);
    echo.envoy_backend = false;
    let yaml = echo.render().unwrap();
    assert!(
        !yaml.contains("- name: backend_app\n    address:"),
        "no backend listener"
    );
    assert!(
        yaml.contains("cluster_name: backend_app"),
        "the backend cluster stays"
    );
    assert!(
        !yaml.contains("- name: backend_tcp_app\n    address:")
            && !yaml.contains("name: envoy.filters.network.echo"),
        "no TCP echo listener"
    );
    assert!(
        yaml.contains("cluster_name: backend_tcp_app"),
        "the TCP backend cluster stays"
    );
    let file = dir.path.join("envoy-echo.yaml");
    std::fs::write(&file, yaml).unwrap();
    validate(&envoy, &file).unwrap();
    // The benchmark's variant: no wasm filter, direct responses.
    let mut bench = params(&dir.path, &ca, &wasm, PathMode::EnvoyNormalises, &["app"]);
    bench.wasm_filter = false;
    bench.direct_response = true;
    let yaml = bench.render().unwrap();
    assert!(
        !yaml.contains("name: envoy.filters.http.wasm")
            && !yaml.contains("name: envoy.filters.network.wasm")
            && yaml.contains("direct_response: { status: 200")
    );
    let file = dir.path.join("envoy-bench.yaml");
    std::fs::write(&file, yaml).unwrap();
    validate(&envoy, &file).unwrap();
}

#[test]
fn compose_uses_the_same_template_and_names() {
    let root = artifacts::workspace_root();
    let compose = std::fs::read_to_string(root.join("envoy/docker-compose.yaml"))
        .expect("envoy/docker-compose.yaml");
    // The compose file runs what `local-stack prepare-compose` renders from envoy/bootstrap.yaml.
    assert!(
        compose.contains("envoy/compose/envoy.yaml") || compose.contains("./compose/envoy.yaml"),
        "compose must mount the rendered template"
    );
    for w in YAOBANK {
        assert!(
            compose.contains(&format!("control-{w}:")),
            "compose service control-{w}"
        );
        assert!(
            compose.contains(&format!("/run/alp/control-{w}.sock")),
            "control-{w} listens where the template's cluster points"
        );
        // Each control compiles the project's policy with the compose inventory, for its workload.
        let control = service(&compose, &format!("control-{w}"));
        assert!(
            control.contains(&format!(
                "[\"serve\", \"--policy\", \"/etc/alp/yaobank/policy.yaml\", \"--policy\", \"/etc/alp/compose/workloads.yaml\", \"--workload\", \"default/{w}\", \"--listen\", \"unix:/run/alp/control-{w}.sock\"]"
            )),
            "control-{w} compiles envoy/yaobank/policy.yaml with envoy/compose/workloads.yaml:\n{control}"
        );
    }
    for mount in [
        "./yaobank/policy.yaml:/etc/alp/yaobank/policy.yaml:ro",
        "./compose/workloads.yaml:/etc/alp/compose/workloads.yaml:ro",
    ] {
        assert!(compose.contains(mount), "the controls mount {mount}");
    }
    assert!(
        !compose.contains(".jsonl"),
        "the compose demo runs on the Calico YAML, as ./local-stack.sh does"
    );
    assert!(
        compose.contains("envoyproxy/envoy:v1.40"),
        "compose pins the Envoy version the tests use"
    );
}

#[test]
fn compose_variant_renders_and_validates() {
    let envoy = artifacts::envoy().expect("envoy is required for this test");
    let wasm = artifacts::wasm().expect("the filter module is required for this test");
    let dir = RunDir::create("alp-compose").unwrap();
    // Stand-ins for the containers' /etc/alp and /run/alp, filled as the compose mounts fill them.
    let (etc, run) = (dir.path.join("etc/alp"), dir.path.join("run/alp"));
    std::fs::create_dir_all(&run).unwrap();
    alp_e2e::compose::prepare(&etc).unwrap();
    std::fs::copy(&wasm, etc.join("calico-alp.wasm")).unwrap();
    let yaml = alp_e2e::compose::compose_params(&etc, &run)
        .render()
        .unwrap();
    let file = dir.path.join("envoy-compose.yaml");
    std::fs::write(&file, &yaml).unwrap();
    validate(&envoy, &file).unwrap();

    // What prepare-compose writes for the containers is the same rendering with the real paths.
    let written = std::fs::read_to_string(etc.join("envoy.yaml")).unwrap();
    let mapped = written
        .replace("/etc/alp", &etc.display().to_string())
        .replace("/run/alp", &run.display().to_string());
    assert_eq!(mapped, yaml);
    // And beside it the compose inventory and the clients' script.
    assert_eq!(
        std::fs::read_to_string(etc.join("workloads.yaml")).unwrap(),
        alp_e2e::compose::compose_inventory().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("demo.sh")).unwrap(),
        alp_e2e::compose::demo_script()
    );
    let compose =
        std::fs::read_to_string(artifacts::workspace_root().join("envoy/docker-compose.yaml"))
            .unwrap();
    for (i, _) in YAOBANK.iter().enumerate() {
        let http = alp_e2e::compose::BASE_PORT + i as u16;
        let tcp = alp_e2e::compose::TCP_BASE_PORT + i as u16;
        for port in [http, tcp] {
            assert!(
                compose.contains(&format!("\"{port}:{port}\"")),
                "compose publishes port {port}"
            );
            assert!(
                written.contains(&format!("port_value: {port}")),
                "the rendered config listens on {port}"
            );
        }
    }
}

/// The lines of service `name` in the compose file (its key at two spaces, up to the next key at
/// that depth or less).
fn service(compose: &str, name: &str) -> String {
    let head = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != head);
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("envoy/docker-compose.yaml has no service {name}"));
    let rest = lines.take_while(|l| l.is_empty() || l.starts_with("   "));
    std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// The compose demo's clients come from the addresses and present the identities the policy
/// expects: each has a fixed address on the compose network, the pods' are the addresses of
/// their workloads in the inventory the controls compile (envoy/compose/workloads.yaml, the
/// local stack's inventory at the compose addresses), each pod's client holds only its own
/// certificate and runs its own share of the demonstration; and control, given that inventory,
/// decides by those addresses.
#[test]
fn compose_clients_have_the_addresses_and_identities_the_inventory_lists() {
    use alp_e2e::compose::{client_address, compose_inventory, CLIENTS, ENVOY_ADDRESS};
    let root = artifacts::workspace_root();
    let compose = std::fs::read_to_string(root.join("envoy/docker-compose.yaml")).unwrap();
    let network = compose
        .split("\nnetworks:\n")
        .nth(1)
        .expect("a top-level networks: section");
    assert!(
        network.contains(&format!("- subnet: {}\n", alp_e2e::compose::SUBNET))
            && network.contains(&format!("ip_range: {} ", alp_e2e::compose::IP_RANGE)),
        "the network yaobank has the subnet and range of tests/src/compose.rs:\n{network}"
    );
    let (subnet, dynamic) = ([10, 210, 10], 128);
    let envoy = service(&compose, "envoy");
    assert!(
        envoy.contains(&format!("ipv4_address: {ENVOY_ADDRESS}\n")),
        "{envoy}"
    );
    let mut seen = vec![ENVOY_ADDRESS];
    for client in CLIENTS {
        let addr = client_address(client);
        assert!(
            addr.octets()[..3] == subnet && addr.octets()[3] > 1 && addr.octets()[3] < dynamic,
            "{client}: {addr} is a fixed address of the subnet, outside Docker's range"
        );
        assert!(!seen.contains(&addr), "{client}: {addr} is taken");
        seen.push(addr);
        let block = service(&compose, &format!("client-{client}"));
        assert!(
            block.contains(&format!("ipv4_address: {addr}\n"))
                || block.ends_with(&format!("ipv4_address: {addr}")),
            "client-{client} has the address {addr}:\n{block}"
        );
        assert!(
            block.contains(&format!("sh /etc/alp/demo.sh {client};")),
            "client-{client} runs its own cases:\n{block}"
        );
        assert!(block.contains("./compose/demo.sh:/etc/alp/demo.sh:ro"));
        for sa in YAOBANK {
            let mounts = block.contains(&format!("./compose/certs/client-{sa}.key:"));
            assert_eq!(
                mounts,
                sa == client,
                "client-{client} holds the key of {sa}: {mounts}"
            );
        }
    }
    // The inventory the controls compile lists each pod's workload at its client's address.
    let inventory = compose_inventory().unwrap();
    assert!(!inventory.contains("127.0.10."), "{inventory}");
    for w in YAOBANK {
        let block = inventory
            .split("\n- apiVersion: ")
            .find(|d| d.contains(&format!(" pod: {w}\n")))
            .unwrap_or_else(|| panic!("no workload {w} in the compose inventory"));
        assert!(
            block.contains(&format!("serviceAccountName: {w}\n"))
                && block.contains(&format!("ipNetworks: [\"{}/32\"]", client_address(w))),
            "{w} runs as service account {w} at {}:\n{block}",
            client_address(w)
        );
    }
    // And control, on that inventory, decides by those addresses: summary admits customer's
    // certificate from client-customer's address only; database admits summary's from
    // client-summary's.
    let control = artifacts::control().expect("the control binary is required");
    let dir = RunDir::create("alp-compose-inventory").unwrap();
    let file = dir.path.join("workloads.yaml");
    std::fs::write(&file, &inventory).unwrap();
    for (to, sa, from, allowed) in [
        ("summary", "customer", "customer", true),
        ("summary", "customer", "outsider", false),
        ("summary", "customer", "database", false),
        ("database", "summary", "summary", true),
        ("database", "summary", "customer", false),
        ("customer", "", "outsider", true),
    ] {
        let principal = if sa.is_empty() {
            String::new()
        } else {
            alp_e2e::certs::spiffe_id(sa)
        };
        let request = serde_json::json!({
            "source": {"principal": principal, "address": client_address(from).to_string(), "port": 40000},
            "destination": {"principal": alp_e2e::certs::spiffe_id(to), "address": client_address(to).to_string(), "port": 80, "protocol": "TCP"},
            "http": {"method": "GET", "path": "/", "host": to},
        });
        let mut child = std::process::Command::new(&control)
            .arg("check")
            .arg("--policy")
            .arg(artifacts::yaobank_policy())
            .arg("--policy")
            .arg(&file)
            .args(["--workload", &format!("default/{to}"), "--request", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            answer["decision"] == "allow",
            allowed,
            "{sa:?} from client-{from} ({}) to {to}: {answer}",
            client_address(from)
        );
    }
}

/// The local stack's inventory (envoy/yaobank/workloads.yaml, a List) and control's test copy of
/// it (control/calico/tests/data/yaobank-workloads.yaml, one document per resource) hold the
/// same resources, and list each workload at the address the local stack's clients bind to
/// (`yaobank_ip`).
#[test]
fn the_yaobank_inventories_agree() {
    let root = artifacts::workspace_root();
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let content = |l: &&str| !l.trim_start().starts_with('#') && !l.trim().is_empty();
    // The List's items, each line back at the indentation of a document of its own.
    let listed = read("envoy/yaobank/workloads.yaml");
    let mut lines = listed.lines().filter(content);
    assert_eq!(
        [lines.next(), lines.next(), lines.next()],
        [Some("apiVersion: v1"), Some("kind: List"), Some("items:")]
    );
    let ours: Vec<String> = lines
        .map(|l| {
            if let Some(first) = l.strip_prefix("- ") {
                format!("---\n{first}")
            } else {
                l.strip_prefix("  ")
                    .unwrap_or_else(|| panic!("an item's line: {l:?}"))
                    .to_string()
            }
        })
        .collect();
    let copy = read("control/calico/tests/data/yaobank-workloads.yaml");
    let theirs: Vec<String> = std::iter::once("---".to_string())
        .chain(copy.lines().filter(content).map(str::to_string))
        .collect();
    assert_eq!(
        ours.join("\n"),
        theirs.join("\n"),
        "envoy/yaobank/workloads.yaml and control's test copy differ"
    );
    for w in YAOBANK {
        let line = format!("    ipNetworks: [\"{}/32\"]", alp_e2e::stack::yaobank_ip(w));
        assert!(listed.contains(&line), "{w}: {line}");
    }
}
