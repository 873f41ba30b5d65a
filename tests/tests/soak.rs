//! The soak (`scripts/soak.sh`; ignored by a plain `cargo test`): Envoy with `--concurrency 2`,
//! the test Felix streaming policy and IP-set changes (`reliability::scenario`) for the whole
//! run while HTTP keep-alive threads and new TCP connections keep the filter busy; every answer
//! is checked against the policy state of the version that decided it (`reliability::oracle`),
//! Envoy's and control's resident memory is sampled every second, the wasm VMs counted.
//!
//! Environment: `ALP_SOAK_SECONDS` (600), `ALP_SOAK_CHANGES` (2 a second, at least 100),
//! `ALP_SOAK_WINDOW_MS` (2000: the uncertainty window after each change),
//! `ALP_SOAK_HTTP_RATE` (2400 requests/s), `ALP_SOAK_TCP_RATE` (160 connections/s),
//! `ALP_SOAK_REPORT` (a file the report is also written to), `ALP_ARTEFACT` (wasm | native).

mod common;

use alp_e2e::reliability::oracle::{self, Timeline};
use alp_e2e::reliability::rss::{self, Sampler};
use alp_e2e::reliability::scenario::{self, change_message, INITIAL};
use alp_e2e::reliability::traffic::{Targets, Traffic, TrafficOptions};
use alp_e2e::reliability::{logscan, now_ms, percentile, table};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::{artifacts, Stack};
use common::{env_f64, felix_message, wait_version, wasm_counters, write_report};
use felix_sim::FelixSim;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
#[ignore = "a long run: scripts/soak.sh"]
fn soak() {
    let seconds = env_f64("ALP_SOAK_SECONDS", 600.0);
    let changes = env_f64("ALP_SOAK_CHANGES", (seconds * 2.0).max(100.0)) as u64;
    let window = env_f64("ALP_SOAK_WINDOW_MS", 2000.0);
    let opts = TrafficOptions {
        http_rate: env_f64("ALP_SOAK_HTTP_RATE", 2400.0),
        tcp_rate: env_f64("ALP_SOAK_TCP_RATE", 160.0),
        ..TrafficOptions::default()
    };
    let artefact = artifacts::Artefact::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let socket = std::env::temp_dir().join(format!("alp-soak-felix-{}.sock", std::process::id()));
    let mut sim = rt.block_on(FelixSim::start(&socket)).expect("test Felix");
    let mut stack = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new(
            scenario::WORKLOAD,
            Updates::FelixSocket(socket.clone()),
        )],
        concurrency: 2,
        wait_synced: false,
        plugin_options: r#""decision_log":"all","decision_log_max_per_second":0"#.into(),
        ..StackOptions::default()
    })
    .expect("start the stack");
    let name = scenario::WORKLOAD;

    let states = scenario::states(changes);
    let verified =
        scenario::verify_with_control(&artifacts::control().unwrap(), stack.run_dir(), &states)
            .expect("the oracle agrees with control check");

    let session = rt
        .block_on(sim.accept_within(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e:#}; {}", stack.diagnostics(name)));
    let ctl_socket = stack.workload(name).control_socket.clone();
    let mut timeline = Timeline {
        states: states.clone(),
        ..Timeline::default()
    };
    let p0 = now_ms();
    rt.block_on(session.send_all(INITIAL.full_stream().iter().map(felix_message)))
        .expect("control reads the stream");
    let v0 = wait_version(&ctl_socket, 0, Duration::from_secs(30)).expect("first snapshot");
    timeline.published.push((p0, 0));
    timeline.versions.insert(v0, 0);
    stack
        .wait_synced(name, Duration::from_secs(60))
        .expect("Envoy enforces the first snapshot");

    let envoy_pid = stack.envoy.proc.pid();
    let control_pid = stack.control(name).unwrap().proc.pid();
    let vm_before = wasm_counters(&stack);
    let sampler = Sampler::start(Arc::new(Mutex::new(vec![envoy_pid, control_pid])));
    let traffic = Traffic::start(
        Targets {
            http: stack.addr(name),
            tcp: stack.tcp_addr(name),
        },
        opts,
    );
    let start = Instant::now();
    let interval = seconds / (changes as f64 + 1.0);
    let mut version = v0;
    for k in 1..=changes {
        let at = Duration::from_secs_f64(interval * k as f64);
        if let Some(d) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(d);
        }
        let msg = felix_message(&change_message(states[k as usize - 1], k));
        let t = now_ms();
        rt.block_on(session.send(msg))
            .unwrap_or_else(|_| panic!("control closed the stream; {}", stack.diagnostics(name)));
        version = wait_version(&ctl_socket, version, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("change {k}: {e:#}; {}", stack.diagnostics(name)));
        timeline.published.push((t, k as usize));
        timeline.versions.insert(version, k as usize);
    }
    if let Some(d) = Duration::from_secs_f64(seconds).checked_sub(start.elapsed()) {
        std::thread::sleep(d);
    }
    let (records, ran) = traffic.stop();
    let samples = sampler.stop();
    let vm_after = wasm_counters(&stack);
    let envoy_alive = stack.envoy.proc.exited().is_none() && stack.envoy.proc.pid() == envoy_pid;
    // Envoy flushes its log every 200 ms.
    std::thread::sleep(Duration::from_millis(1500));
    let decisions = logscan::read(&stack.envoy.proc.log);
    let end = now_ms() + 1.0;
    let s = oracle::summarise(&records, &timeline, &decisions, window, 0.0, end);
    let (prop, missing) = oracle::propagation(&timeline, &decisions);

    let secs = ran.as_secs_f64();
    let rate = s.checked as f64 / secs;
    let http_rate = s.http as f64 / secs;
    let tcp_rate = s.tcp as f64 / secs;
    // Growth after the first minute; for runs under 2 minutes after the first third.
    let (baseline_s, baseline_note) = if seconds >= 120.0 {
        (60.0, "after the first minute".to_string())
    } else {
        (
            seconds / 3.0,
            format!(
                "after the first third ({:.0} s; run shorter than 2 minutes)",
                seconds / 3.0
            ),
        )
    };
    let (eg, eb, el) = rss::growth(&samples, 0, baseline_s);
    let (cg, cb, cl) = rss::growth(&samples, 1, baseline_s);
    let growth = eg.max(cg);
    let vm_stat = |k: &str| k.ends_with("runtime.v8.created") || k.ends_with(".vm_reload");
    let vm_restarts: u64 = vm_after
        .iter()
        .filter(|(k, _)| vm_stat(k))
        .map(|(k, v)| v.saturating_sub(vm_before.get(k).copied().unwrap_or(0)))
        .sum();
    let vm_shown: Vec<String> = vm_after
        .iter()
        .filter(|(k, _)| vm_stat(k) || k.ends_with("wasm_vm_count"))
        .map(|(k, v)| format!("{k} {} -> {v}", vm_before.get(k).copied().unwrap_or(0)))
        .collect();
    let crash_lines = std::fs::read_to_string(&stack.envoy.proc.log)
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("Uncaught RuntimeError") || l.contains("VM failed"))
                .count()
        })
        .unwrap_or(0);
    let restarts = match artefact {
        artifacts::Artefact::Wasm => vm_restarts + crash_lines as u64,
        artifacts::Artefact::Native => u64::from(!envoy_alive),
    };
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let rows = vec![
        vec!["artefact".into(), artefact.as_str().into()],
        vec!["duration".into(), format!("{secs:.0} s of load (Envoy --concurrency 2)")],
        vec!["changes streamed".into(), format!("{changes} ({} policy, {} IP-set), one every {:.0} ms", changes.div_ceil(2), changes / 2, interval * 1000.0)],
        vec!["oracle".into(), format!("State::allows agreed with `control check` on {verified} (state, request) pairs")],
        vec!["requests checked".into(), format!("{} ({} HTTP, {} new TCP connections)", s.checked, s.http, s.tcp)],
        vec!["achieved rate".into(), format!("{rate:.0}/s ({http_rate:.0} HTTP requests/s + {tcp_rate:.0} TCP connections/s)")],
        vec!["pinned by decision log".into(), format!("{} (version -> state exact)", s.pinned)],
        vec!["unpinned, exact".into(), s.exact.to_string()],
        vec!["unpinned, in a window".into(), format!("{} (W = {window:.0} ms after each change: either answer)", s.ambiguous)],
        vec!["wrong decisions".into(), format!("{} (allowed-but-denied {}, denied-but-allowed {}, stale version {})", s.wrong(), s.security, s.wrong_denial, s.stale)],
        vec!["failed / other status".into(), format!("{} (of them allowed by policy: {})", s.unavailable + s.refused_anyway, s.unavailable)],
        vec!["unmapped log versions".into(), s.unmapped_versions.to_string()],
        vec!["propagation".into(), format!("p50 {} ms, p99 {} ms, max {} ms over {} (change, worker) pairs ({} not seen on a worker)", fmt(percentile(&prop, 50.0)), fmt(percentile(&prop, 99.0)), fmt(percentile(&prop, 100.0)), prop.len(), missing)],
        vec!["Envoy RSS".into(), format!("{:.1} -> {:.1} MiB, {eg:+.2} % {baseline_note}", eb as f64 / 1024.0, el as f64 / 1024.0)],
        vec!["control RSS".into(), format!("{:.1} -> {:.1} MiB, {cg:+.2} %", cb as f64 / 1024.0, cl as f64 / 1024.0)],
        vec!["VM restarts".into(), match artefact {
            artifacts::Artefact::Wasm => format!("{restarts} (VMs created or reloaded during the run {vm_restarts}, crash lines {crash_lines}; {})", vm_shown.join(", ")),
            artifacts::Artefact::Native => format!("{restarts} (native: Envoy process {})", if envoy_alive { "ran throughout" } else { "exited" }),
        }],
    ];
    let mut report = table(&["soak", "figure"], &rows);
    for e in s.examples.iter().take(20) {
        report.push_str(&format!("\n  {e}"));
    }
    report.push_str(&format!(
        "\nsoak: {} requests checked, {} wrong decisions, RSS growth {:.2} %",
        s.checked,
        s.wrong(),
        growth
    ));
    write_report("ALP_SOAK_REPORT", &report);
    let failed = s.unavailable + s.refused_anyway;
    assert_eq!(
        s.wrong(),
        0,
        "wrong decisions; run dir {}",
        stack.run_dir().display()
    );
    assert!(growth <= 5.0, "RSS growth {growth:.2} % over 5 %");
    assert_eq!(restarts, 0, "VM or Envoy restarts");
    assert!(
        (failed as f64) <= s.checked as f64 * 0.001,
        "{failed} requests failed (over 0.1 %)"
    );
    assert!(changes >= 100);
    drop(session);
}
