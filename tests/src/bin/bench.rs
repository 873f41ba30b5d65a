//! `bench`: throughput and latency of one Envoy worker with no filter, a no-op proxy-wasm filter,
//! and the Calico application layer policy filter under the YAO bank policy, measured in one run
//! with `wrk` (Envoy pinned to CPU 0, wrk to CPU 1). Run through `scripts/bench.sh`.

use alp_e2e::stack::{Filter, Stack, StackOptions, Updates, WorkloadSpec};
use alp_e2e::{artifacts, stack::RunDir};
use anyhow::{bail, Context as _, Result};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "wrk against Envoy: no filter, no-op wasm, Calico ALP (YAO bank)"
)]
struct Cli {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Do not pin Envoy and wrk to CPUs 0 and 1.
    #[arg(long)]
    no_pin: bool,
    /// Answer in the inbound listener (direct response) instead of proxying to the backend
    /// listener: isolates the filter's cost from the upstream hop.
    #[arg(long)]
    direct: bool,
}

/// A proxy-wasm module that does nothing: the cost of the wasm machinery alone.
const NOOP_WAT: &str = r#"(module
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump)
      (i32.and (i32.add (local.get $size) (i32.const 15)) (i32.const -16))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
"#;

struct Variant {
    label: &'static str,
    filter: Filter,
    workload: &'static str,
    expect: &'static str,
}

struct Measured {
    rps: f64,
    p50: String,
    p99: String,
    non_2xx: u64,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    artifacts::find_on_path("wrk").context("wrk is not installed: apt-get install -y wrk")?;
    let scratch = RunDir::create("alp-bench")?;
    let noop = build_noop(&scratch.path)?;
    let wasm = artifacts::wasm()?;
    let variants = [
        Variant {
            label: "no filter",
            filter: Filter::Off,
            workload: "customer",
            expect: "200",
        },
        Variant {
            label: "no-op wasm filter",
            filter: Filter::Module(noop),
            workload: "customer",
            expect: "200",
        },
        Variant {
            label: "calico-alp, YAO bank customer: GET allowed",
            filter: Filter::Alp,
            workload: "customer",
            expect: "200",
        },
        Variant {
            label: "calico-alp, YAO bank database: denied (local 403)",
            filter: Filter::Alp,
            workload: "database",
            expect: "403",
        },
    ];
    println!(
        "bench: Envoy --concurrency 1{}, {}, wrk -t1 -c{} -d{}s, plaintext GET / from 127.0.0.1; module {} ({} bytes)",
        if cli.no_pin { "" } else { " on CPU 0, wrk on CPU 1" },
        if cli.direct { "direct response" } else { "proxied to the backend listener" },
        cli.connections,
        cli.duration,
        wasm.display(),
        std::fs::metadata(&wasm)?.len()
    );
    for v in &variants {
        let mut spec = WorkloadSpec::new(
            v.workload,
            Updates::CopyOf(artifacts::yaobank_updates(v.workload)),
        );
        spec.start_control = v.filter == Filter::Alp;
        let stack = Stack::start(StackOptions {
            workloads: vec![spec],
            concurrency: 1,
            wait_synced: v.filter == Filter::Alp,
            filter: v.filter.clone(),
            envoy_wrapper: if cli.no_pin {
                vec![]
            } else {
                vec!["taskset".into(), "-c".into(), "0".into()]
            },
            access_log: Some("/dev/null".into()),
            direct_response: cli.direct,
            ..StackOptions::default()
        })?;
        let url = format!("http://{}/", stack.addr(v.workload));
        let first = alp_e2e::http::get_once(stack.addr(v.workload), None, "/")?;
        if first.status.to_string() != v.expect {
            bail!(
                "{}: expected {} but got {}",
                v.label,
                v.expect,
                first.summary()
            );
        }
        wrk(&cli, &url, 2)?; // warm-up
        let m = wrk(&cli, &url, cli.duration)?;
        println!(
            "  {:<50} {:>9.0} req/s  p50 {:>8}  p99 {:>8}{}",
            v.label,
            m.rps,
            m.p50,
            m.p99,
            if m.non_2xx > 0 {
                format!("  ({} non-2xx, as expected)", m.non_2xx)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn build_noop(dir: &Path) -> Result<PathBuf> {
    let wat = dir.join("noop.wat");
    let out = dir.join("noop.wasm");
    std::fs::write(&wat, NOOP_WAT)?;
    let status = Command::new("wasm-as")
        .arg(&wat)
        .arg("-o")
        .arg(&out)
        .status()
        .context("running wasm-as (apt-get install -y binaryen)")?;
    if !status.success() {
        bail!("wasm-as failed on the no-op module");
    }
    Ok(out)
}

fn wrk(cli: &Cli, url: &str, seconds: u32) -> Result<Measured> {
    let mut cmd = if cli.no_pin {
        Command::new("wrk")
    } else {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    };
    cmd.args([
        "-t1",
        &format!("-c{}", cli.connections),
        &format!("-d{seconds}s"),
        "--latency",
        url,
    ]);
    let out = cmd.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
    };
    Ok(Measured {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .context("wrk printed no Requests/sec")?,
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}
