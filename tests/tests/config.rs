//! The Envoy bootstrap template renders for every user of it and Envoy accepts the result
//! (`envoy --mode validate`), and docker-compose.yaml stays in step with it.

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
        assert!(
            compose.contains(&format!("yaobank/{w}.jsonl")),
            "control-{w} reads envoy/yaobank/{w}.jsonl"
        );
    }
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
