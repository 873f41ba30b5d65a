//! `local-stack`: Envoy with the Calico application layer policy filter, its controls and demo
//! backends on 127.0.0.1, running the YAO bank tutorial's scenario (or your own policy). The YAO
//! bank's policy and workload inventory are the project's own, in `envoy/yaobank/`.
//!
//! Normally started through `scripts/local-stack.sh`, which installs Envoy and builds the module
//! and `control` first.

use alp_e2e::certs::spiffe_id;
use alp_e2e::demo::run_yaobank;
use alp_e2e::demo_tcp::{run_yaobank_tcp, yaobank_tcp_cases};
use alp_e2e::stack::{
    yaobank_ip, yaobank_options, yaobank_yaml_options, Stack, StackOptions, Updates, WorkloadSpec,
    YAOBANK,
};
use alp_e2e::tcp_client::{self, TcpTransport};
use alp_e2e::{compose, PathMode, Request};
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "local-stack",
    about = "Envoy + Calico application layer policy on 127.0.0.1: the YAO bank demonstration"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run the demonstration and exit (status 1 if any outcome was unexpected).
    #[arg(long)]
    once: bool,
    /// Enforce your own policy instead: a Felix ToDataplane JSON Lines file (edits take effect
    /// while the stack runs), on one listener.
    #[arg(long, value_name = "FILE")]
    updates: Option<PathBuf>,
    /// Workload name of the listener protected with --updates.
    #[arg(long, default_value = "app")]
    name: String,
    /// Run the YAO bank on the Felix ToDataplane messages of envoy/yaobank/<workload>.jsonl (the
    /// same policy as Policy Sync would stream it) instead of compiling envoy/yaobank/policy.yaml
    /// with the inventory envoy/yaobank/workloads.yaml.
    #[arg(long, conflicts_with = "updates")]
    felix_updates: bool,
    /// Port of the first inbound (HTTP) listener; the others follow, and each workload's raw
    /// TCP listener is 10 above its inbound port. 0 picks free ports.
    #[arg(long, default_value_t = compose::BASE_PORT)]
    port: u16,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// Pass :path to the filter as the client sent it (no Envoy normalisation).
    #[arg(long)]
    raw_paths: bool,
    /// Load the native Envoy module (dist/libcalico_alp.so, `./native-bundle.sh`) instead of
    /// the wasm module: the same filters, decisions and demonstration.
    #[arg(long)]
    native: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Render envoy/docker-compose.yaml's inputs into DIR: Envoy's config, certificates, the
    /// inventory at the compose network's addresses and the clients' demo script.
    PrepareCompose {
        #[arg(long, default_value = "envoy/compose")]
        out: PathBuf,
    },
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("local-stack: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(Command::PrepareCompose { out }) = &cli.command {
        compose::prepare(out)?;
        println!(
            "local-stack: wrote {0}/envoy.yaml, {0}/certs/, {0}/workloads.yaml and {0}/demo.sh for envoy/docker-compose.yaml",
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let path_mode = if cli.raw_paths {
        PathMode::Raw
    } else {
        PathMode::EnvoyNormalises
    };
    let mut opts = match &cli.updates {
        Some(file) => StackOptions {
            workloads: vec![WorkloadSpec::new(&cli.name, Updates::File(file.clone()))],
            ..StackOptions::default()
        },
        None if cli.felix_updates => {
            println!("local-stack: YAO bank policy from the Felix updates in envoy/yaobank/<workload>.jsonl");
            yaobank_options()
        }
        None => {
            println!("local-stack: YAO bank policy from envoy/yaobank/policy.yaml (Calico v3 YAML) and the inventory envoy/yaobank/workloads.yaml");
            yaobank_yaml_options()
        }
    };
    if cli.native {
        opts.artefact = alp_e2e::artifacts::Artefact::Native;
        println!(
            "local-stack: the native module (dist/libcalico_alp.so) in place of the wasm module"
        );
    }
    for (i, w) in opts.workloads.iter_mut().enumerate() {
        (w.port, w.tcp_port) = ports(cli.port, i)?;
    }
    opts.concurrency = cli.concurrency;
    opts.path_mode = path_mode;
    // A custom policy may deliberately lack inSync; do not wait for it.
    opts.wait_synced = cli.updates.is_none();

    println!(
        "local-stack: starting Envoy ({} workers), {} control(s) and the demo backends ...",
        cli.concurrency,
        opts.workloads.len()
    );
    let stack = Stack::start(opts)?;
    for sa in YAOBANK {
        stack.identity(sa)?;
    }
    describe(&stack, &cli);

    let mut unexpected = 0;
    if cli.updates.is_none() {
        println!(
            "\nYAO bank demonstration (the policy of Calico's application layer policy tutorial):"
        );
        unexpected = run_yaobank(&stack, |case, outcome, _| {
            println!("  {}", case.describe(outcome))
        })?;
        println!("Raw TCP to the tcp_ listeners (the network filter decides each connection; the backend echoes):");
        unexpected += run_yaobank_tcp(&stack, |case, outcome, _| {
            println!("  {}", case.describe(outcome))
        })?;
        let total = alp_e2e::demo::yaobank_cases().len() + yaobank_tcp_cases().len();
        println!("{} of {total} outcomes as expected.", total - unexpected);
    } else {
        let w = &stack.workloads[0];
        let _ = stack.wait_synced(&w.name, Duration::from_secs(10));
        let o = stack.send(&w.name, &Request::get("/"))?;
        println!(
            "\nplaintext GET / from 127.0.0.1 -> {}: {}",
            w.name,
            o.summary()
        );
        let hello = b"hello\n";
        let o = tcp_client::dial(w.tcp_addr, None, &TcpTransport::Plaintext, 0, hello)?;
        let seen = if o.passed(hello) {
            "passed (echoed)".to_string()
        } else if o.closed_silently() {
            "closed, not a byte received".to_string()
        } else {
            o.summary()
        };
        println!("plaintext raw TCP from 127.0.0.1 -> tcp_{}: {seen}", w.name);
    }

    if cli.once {
        return Ok(if unexpected == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    println!("\nThe stack stays up; press Ctrl-C to stop it.");
    let mut stack = stack;
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = stack.envoy.proc.exited() {
            anyhow::bail!(
                "Envoy exited ({status}); log:\n{}",
                stack.envoy.proc.log_tail(30)
            );
        }
    }
    println!("local-stack: stopping");
    drop(stack);
    Ok(if unexpected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn describe(stack: &Stack, cli: &Cli) {
    let run = stack.run_dir();
    println!(
        "local-stack: Envoy pid {} admin http://{}  run directory {}",
        stack.envoy.proc.pid(),
        stack.envoy.admin,
        run.display()
    );
    println!("Protected listeners (mTLS with a SPIFFE client certificate, or plaintext on the same port):");
    for w in &stack.workloads {
        println!(
            "  inbound_{:<9} {}  server identity {}  control unix:{}\n      policy: control serve {}",
            w.name,
            w.addr,
            spiffe_id(&w.name),
            w.control_socket.display(),
            w.source.describe()
        );
        println!(
            "  tcp_{:<13} {}  raw TCP: network filter -> tcp_proxy -> a backend that echoes what it receives",
            w.name, w.tcp_addr
        );
    }
    let ca = stack.ca.cert_file.display();
    let target = stack
        .workloads
        .iter()
        .find(|w| w.name == "database")
        .unwrap_or(&stack.workloads[0]);
    println!(
        "Try it (client certificates for customer, summary and database are in {}/certs):",
        run.display()
    );
    println!(
        "  curl --cacert {ca} --cert {0}/certs/client-summary.pem --key {0}/certs/client-summary.key --interface {1} \\\n       --resolve localhost:{2}:127.0.0.1 https://localhost:{2}/",
        run.display(),
        yaobank_ip("summary"),
        target.addr.port()
    );
    println!("  curl http://{}/      # plaintext", target.addr);
    println!(
        "  openssl s_client -quiet -connect {0} -bind {2}:0 -servername localhost -CAfile {ca} \\\n       -cert {1}/certs/client-summary.pem -key {1}/certs/client-summary.key   # raw TCP over mTLS; type, it echoes",
        target.tcp_addr,
        run.display(),
        yaobank_ip("summary")
    );
    if cli.updates.is_some() {
        println!(
            "Edit {} (Felix ToDataplane JSON Lines) and control applies it at once.",
            target.updates.display()
        );
    }
    println!(
        "Logs: {0}/envoy.log, {0}/access.log, {0}/control-<workload>.log",
        run.display()
    );
}

/// (inbound port, raw TCP port) of the `i`-th workload for `--port base` (0: both free).
fn ports(base: u16, i: usize) -> Result<(u16, u16)> {
    if base == 0 {
        return Ok((0, 0));
    }
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| base.checked_add(i))
        .context("--port: the listeners' ports would pass 65535")?;
    let tcp = port
        .checked_add(compose::TCP_PORT_OFFSET)
        .context("--port: the raw TCP listeners' ports would pass 65535")?;
    Ok((port, tcp))
}
