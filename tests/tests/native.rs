//! What only the native module has to show (the rest of the suite runs against it with
//! `ALP_ARTEFACT=native`): Envoy loads it with the ABI version it was written for; every worker
//! and both filters of a workload share one compiled program, compiled once per version (not
//! once per worker as a wasm VM does); a module file that cannot be loaded makes Envoy refuse
//! the configuration (fail closed: no listener without its filter).

use alp_e2e::artifacts::{self, Artefact};
use alp_e2e::certs::Ca;
use alp_e2e::envoy::{validate, BootstrapParams, PathMode, WorkloadParams};
use alp_e2e::filter_stats::read_prometheus;
use alp_e2e::policy::{single_policy, write_in_place};
use alp_e2e::stack::{RunDir, StackOptions, Updates, WorkloadSpec};
use alp_e2e::{Request, Stack};
use serde_json::json;
use std::time::{Duration, Instant};

fn rules(path: &str) -> serde_json::Value {
    json!([{"action": "allow", "httpMatch": {"paths": [{"prefix": path}]}}])
}

/// The log lines of `stack`'s Envoy that contain `needle`.
fn envoy_lines(stack: &Stack, needle: &str) -> Vec<String> {
    stack
        .envoy
        .proc
        .log_tail(100_000)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn one_program_per_process_compiled_once_per_version() {
    let stack = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new(
            "app",
            Updates::Messages(single_policy("app", "127.0.0.1", vec![], rules("/a"))),
        )],
        concurrency: 2,
        artefact: Artefact::Native,
        ..StackOptions::default()
    })
    .expect("start the stack");
    assert_eq!(
        stack.send("app", &Request::get("/a")).unwrap().summary(),
        "200 app: ok"
    );
    assert_eq!(
        stack.send("app", &Request::get("/b")).unwrap().summary(),
        "403 denied by policy"
    );
    for needle in [
        "Dynamic module ABI version v0.2.0 matched",
        "configured as the native HTTP filter",
        "configured as the native network filter",
    ] {
        assert!(
            !envoy_lines(&stack, needle).is_empty(),
            "no {needle:?} in Envoy's log; {}",
            stack.diagnostics("app")
        );
    }

    // A new version: the HTTP filter and the network filter, on both workers, follow the one
    // program, installed once.
    write_in_place(
        &stack.workload("app").updates,
        &single_policy("app", "127.0.0.1", vec![], rules("/b")),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack.send("app", &Request::get("/b")).unwrap().status() != Some(200) {
        assert!(Instant::now() < deadline, "{}", stack.diagnostics("app"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let installs = envoy_lines(&stack, "installed (");
    assert_eq!(
        installs.len(),
        2,
        "one install per version for the whole process: {installs:#?}"
    );

    // The gauges move on the configuration's tick, without traffic.
    let gauge = |name: &str| {
        read_prometheus(&stack.envoy)
            .iter()
            .find(|s| s.family == name)
            .map_or(0.0, |s| s.value)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while gauge("alp_snapshot_age_seconds") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "the age gauge does not move: {}",
            stack.diagnostics("app")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let version = gauge("alp_snapshot_version") as u64;
    assert!(
        installs[1].contains(&format!("policy version {version} installed")),
        "alp_snapshot_version {version} is the version in force: {installs:#?}"
    );
}

#[test]
fn a_module_that_cannot_be_loaded_is_refused_with_its_configuration() {
    let envoy = artifacts::envoy().expect("envoy is required for this test");
    let dir = RunDir::create("alp-native-missing").unwrap();
    let ca = Ca::create(&dir.path.join("certs")).unwrap();
    let cert = ca.issue("server-app", "app", true).unwrap();
    let params = |module: std::path::PathBuf| BootstrapParams {
        admin_address: "127.0.0.1".into(),
        admin_port: 0,
        wasm_file: "/nonexistent/no-filter.wasm".into(),
        ca_file: ca.cert_file.clone(),
        trust_domain: "cluster.local".into(),
        access_log: dir.path.join("access.log"),
        path_mode: PathMode::EnvoyNormalises,
        run_dir: dir.path.clone(),
        workloads: vec![WorkloadParams {
            name: "app".into(),
            listen_address: "127.0.0.1".into(),
            listen_port: 0,
            tcp_port: 0,
            server_cert: cert.cert.clone(),
            server_key: cert.key.clone(),
            control_socket: dir.path.join("control-app.sock"),
        }],
        wasm_filter: true,
        native_module: Some(module),
        direct_response: false,
        envoy_backend: true,
        plugin_options: String::new(),
    };
    let write = |name: &str, p: &BootstrapParams| {
        let file = dir.path.join(name);
        std::fs::write(&file, p.render().unwrap()).unwrap();
        file
    };
    let module = artifacts::native_module().expect("the native module (./native-bundle.sh)");
    let good = write("good.yaml", &params(module));
    validate(&envoy, &good).expect("the bootstrap with the native module validates");

    let missing = write("missing.yaml", &params(dir.path.join("libmissing.so")));
    let err = validate(&envoy, &missing).expect_err("a missing module must be refused");
    assert!(format!("{err:#}").contains("libmissing.so"), "{err:#}");

    // Not a module at all (a text file with the right name).
    let bogus = dir.path.join("libbogus.so");
    std::fs::write(&bogus, "not a shared object").unwrap();
    let bad = write("bogus.yaml", &params(bogus));
    assert!(
        validate(&envoy, &bad).is_err(),
        "a file that is no module must be refused"
    );
}
