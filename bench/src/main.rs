//! `alp-bench`: our filter (as wasm and as a native dynamic module) against no filter, native
//! RBAC, a no-op wasm filter and the same engine behind ext_authz, in one run on one Envoy build. Run it through `bench/run.sh`, which
//! builds the release artefacts first; see the README's "Benchmarks" section.
//!
//! For each configuration (and rule count, where it has a policy) one Envoy is started with
//! `--concurrency 1` pinned to CPU 0, the load generator is pinned to CPU 1, and every listener
//! answers with a direct response, so what differs between rows is the filter chain alone:
//!
//! * closed loop (max throughput): wrk for plaintext, the bench's own generator for mTLS (wrk
//!   has no client certificates), N connections, after a warm-up;
//! * open loop at a fixed rate (latency without queueing, corrected for coordinated omission):
//!   the bench's generator, both transports;
//! * CPU per request: Envoy's utime+stime over the measured window / requests (ext_authz: plus
//!   the authz server's, which shares CPU 0 with Envoy); memory: Envoy's RSS (one worker);
//! * other work on CPU 0 during a window is recorded, and such windows are flagged.
//!
//! Traffic variants (`variant.rs`), in the same Envoy after the default cells (minimal headers,
//! HTTP/1.1, keep-alive): realistic headers (`headers.rs`), HTTP/2 (`http2.rs`), a connection
//! per request; closed loop only, at a subset of rule counts (`--variant-rules`). Memory with
//! more workers (`--concurrency`): an Envoy of its own per setup and worker count, RSS after a
//! short load every worker served (`warm.rs`).
//!
//! Raw TCP (`--layers tcp`, in the same run by default): for each configuration (and rule count)
//! another Envoy, whose two TCP listeners run the configuration's network filter before
//! tcp_proxy to Envoy's own echo listener; measured are the connection rate (closed loop of
//! short connections) and the throughput of a few long connections (`tcp.rs`).
//!
//! Profile (`--profile`): where Envoy's CPU per request goes, by DSO, from `perf record` on the
//! Envoy process during one extra closed-loop wrk window per setup (plaintext, default traffic,
//! the first rule count; `perf.rs`, `report/profile.rs`).
//!
//! Our filter runs as two configurations: `alp`, the proxy-wasm module, and `native`, the same
//! filter as an Envoy dynamic module; `control serve` feeds both (the wasm filter through an
//! Envoy cluster, the native module over the socket itself). Propagation (`--propagation`, on
//! by default): for both, with `--concurrency 2`, the time from a policy change to its
//! enforcement on every worker (`propagation.rs`, `report/propagation.rs`).

mod config;
mod headers;
mod http2;
mod load;
mod perf;
mod plot;
mod policy;
mod procstat;
mod propagation;
mod report;
mod tcp;
mod variant;
mod warm;
mod wrk;

use alp_e2e::certs::Ca;
use alp_e2e::control::Control;
use alp_e2e::envoy::Envoy;
use alp_e2e::process::{wait_for, Proc};
use alp_e2e::stack::RunDir;
use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use config::{Config, Layer, Paths};
use headers::HeaderSet;
use report::{
    Measurement, MemoryMeta, MemoryRow, Meta, Row, RunReport, TcpMeta, TcpRow, Throughput,
    TrafficMeta, VariantRow,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use variant::{ConnMode, HttpVersion, RuleSel, Variant};

#[derive(Parser)]
#[command(
    name = "alp-bench",
    about = "Envoy with no filter, native RBAC, no-op wasm, calico-alp (wasm and native) and ext_authz, in one run"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark and write the results (markdown, JSON, PNG).
    Run(Box<RunArgs>),
    /// Redraw the PNG and markdown from a results JSON.
    Render {
        /// The JSON a run wrote.
        #[arg(long, default_value = "bench/results/latest.json")]
        from: PathBuf,
        /// Output stem: writes STEM.md and STEM.png.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Parser, Clone, Debug)]
#[command(after_help = "\
The default run (no options): the full matrix of default cells (minimal headers, HTTP/1.1, \
keep-alive; closed and open loop) for none, rbac, noop, alp, native, ext_authz at 1, 100, 1000 and \
10000 rules, plaintext and mTLS: 36 cells; in the same Envoys the three variants (realistic \
headers, HTTP/2, a connection per request), one dimension at a time, closed loop, at 1 and 10000 \
rules (none and noop always): 10 setups x 2 transports x 3 = 60 cells; propagation of 20 policy \
changes for alp and native at 1 and 10000 rules (--concurrency 2); then raw TCP: 36 cells. About 16-17 \
minutes on 2 cores. --variant-rules all (or more values, --cross) widens the variants, \
--headers minimal --http 1 --connection keepalive drops them, --concurrency 1,2 adds the \
memory-only Envoys (about 5 s per setup and worker count), --profile one perf-sampled window per \
HTTP setup (plaintext, default traffic, first rule count: --duration + 1 s each).")]
pub struct RunArgs {
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Seconds of warm-up before each window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Connections of the load generators.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Open-loop rate, requests per second.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Rule counts (configurations with a policy run once per count).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
    rules: Vec<usize>,
    /// Configurations: none, rbac, noop, alp (the wasm filter), native (the same filter as an
    /// Envoy dynamic module), ext_authz.
    #[arg(long, value_delimiter = ',', default_value = "none,rbac,noop,alp,native,ext_authz", value_parser = Config::parse)]
    configs: Vec<Config>,
    /// Transports: plaintext, mtls.
    #[arg(long, value_delimiter = ',', default_value = "plaintext,mtls")]
    transports: Vec<String>,
    /// What to measure: http (requests through the HTTP filters), tcp (raw TCP connections
    /// through the network filters before tcp_proxy). `--layers http`: HTTP only.
    #[arg(long, value_delimiter = ',', default_value = "http,tcp", value_parser = Layer::parse)]
    layers: Vec<Layer>,
    /// Header sets: minimal (`GET` and `Host`), realistic (about 15 fields, 1 KB: user agent,
    /// cookie, bearer token, tracing, ...; `bench/src/headers.rs`). The default cell (minimal,
    /// HTTP/1.1, keep-alive) always runs; other values run as closed-loop variants at
    /// --variant-rules.
    #[arg(long, value_delimiter = ',', default_value = "minimal,realistic", value_parser = HeaderSet::parse)]
    headers: Vec<HeaderSet>,
    /// HTTP versions client to Envoy: 1 (HTTP/1.1), 2 (HTTP/2: h2c with prior knowledge,
    /// mTLS with ALPN h2; the bench's generator, --connections x --h2-streams).
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = HttpVersion::parse)]
    http: Vec<HttpVersion>,
    /// Connections: keepalive, close (a new connection per request with `connection: close`;
    /// mTLS: a full handshake each; HTTP/1.1 only).
    #[arg(long, value_delimiter = ',', default_value = "keepalive,close", value_parser = ConnMode::parse)]
    connection: Vec<ConnMode>,
    /// HTTP/2: streams in flight per connection.
    #[arg(long, default_value_t = 1)]
    h2_streams: usize,
    /// Rule counts at which the configurations with a policy run the variants (those without
    /// run them always); `all`: every count of --rules.
    #[arg(long, value_delimiter = ',', default_value = "1,10000", value_parser = RuleSel::parse)]
    variant_rules: Vec<RuleSel>,
    /// Run every combination of the --headers, --http and --connection values (HTTP/2 with
    /// close excepted), not one dimension at a time.
    #[arg(long)]
    cross: bool,
    /// Envoy worker counts of the memory table. Throughput and CPU are always measured with one
    /// worker pinned to CPU 0 (whose RSS after its windows the table always shows); a list other
    /// than `1` adds, for every setup and each count, an Envoy of its own (not pinned) whose RSS
    /// is sampled after a short load that every worker served.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    concurrency: Vec<u32>,
    /// TCP: seconds of each measured window.
    #[arg(long, default_value_t = 2.0)]
    tcp_duration: f64,
    /// TCP: seconds of warm-up before each window.
    #[arg(long, default_value_t = 0.5)]
    tcp_warmup: f64,
    /// TCP connection rate: concurrent workers, each opening a connection, sending a short
    /// request, reading it echoed and closing, then the next.
    #[arg(long, default_value_t = 16)]
    tcp_workers: usize,
    /// TCP throughput: long-lived connections.
    #[arg(long, default_value_t = 4)]
    tcp_streams: usize,
    /// TCP throughput: bytes per write.
    #[arg(long, default_value_t = 65536)]
    tcp_chunk: usize,
    /// TCP throughput only at these rule counts (configurations without a policy always;
    /// default: every count). The filters decide once per connection, so the rule count only
    /// matters to the connection rate.
    #[arg(long, value_delimiter = ',')]
    tcp_throughput_rules: Option<Vec<usize>>,
    /// TCP: mTLS clients resume TLS sessions when they hold a ticket (rustls keeps 8 per server;
    /// the results record how many handshakes resumed). Default: a full handshake per connection.
    #[arg(long)]
    tcp_resumption: bool,
    /// Output stem: writes STEM.md, STEM.json, STEM.png.
    #[arg(long, default_value = "bench/results/latest")]
    out: PathBuf,
    /// Do not pin Envoy to CPU 0 and the load to CPU 1.
    #[arg(long)]
    no_pin: bool,
    /// The filter module.
    #[arg(long, env = "ALP_WASM", default_value = "dist/calico-alp.wasm")]
    wasm: PathBuf,
    /// The native filter module (`./native-bundle.sh`), for the `native` configuration.
    #[arg(long, env = "ALP_NATIVE", default_value = "dist/libcalico_alp.so")]
    native: PathBuf,
    /// The no-op filter module.
    #[arg(
        long,
        env = "ALP_NOOP_WASM",
        default_value = "target/wasm32-wasip1/release/alp_bench_noop_filter.wasm"
    )]
    noop_wasm: PathBuf,
    /// The `control` binary (release build).
    #[arg(long, env = "ALP_CONTROL", default_value = "target/release/control")]
    control: PathBuf,
    /// The allowed request's path. A non-canonical spelling of it (e.g. `/;v=1/orders/42`, which
    /// Envoy's own normalisation leaves alone) measures the filter's D10 rewrite.
    #[arg(long, default_value = policy::REQUEST_PATH)]
    request_path: String,
    /// A note recorded with the results (e.g. "before", "after").
    #[arg(long, default_value = "")]
    note: String,
    /// Run the whole matrix this many times, interleaved, and keep each cell's best round
    /// (interference only ever slows a window down): highest closed-loop throughput, lowest
    /// open-loop p99.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Measure a window again (up to this many times) when other processes used more than 5%
    /// of Envoy's CPU during it; the least disturbed attempt is kept.
    #[arg(long, default_value_t = 2)]
    retries: usize,
    /// Where Envoy's CPU per request goes: for each HTTP setup at the first --rules count (and
    /// none, noop), after its windows, one more closed-loop wrk window (plaintext, minimal
    /// headers, HTTP/1.1, keep-alive, --connections, --duration) while `perf record -F 4999`
    /// samples the Envoy process; the shares by DSO ([JIT]: the wasm code and V8's stubs;
    /// envoy; kernel; libc; other) times that window's CPU per request. Needs perf (bench/run.sh
    /// installs linux-perf) and wrk; when perf fails the run goes on without the profile.
    /// First round only.
    #[arg(long)]
    profile: bool,
    /// Propagation: for alp and native at each --propagation-rules count, an Envoy of its own
    /// with `--concurrency 2` (not pinned) and control watching its updates file every 10 ms;
    /// the policy is flipped this many times (the allowed request denied, then allowed again,
    /// ...) and each flip timed from the file's replacement until requests on keep-alive
    /// connections held by every worker see the new decision (and, apart, until control
    /// publishes it). 0: not measured.
    #[arg(long, default_value_t = 20)]
    propagation: usize,
    /// The rule counts the propagation is measured at.
    #[arg(long, value_delimiter = ',', default_value = "1,10000")]
    propagation_rules: Vec<usize>,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Run(args) => run(&args),
        Cmd::Render { from, out } => render(&from, out.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alp-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn render(from: &Path, out: Option<&Path>) -> Result<()> {
    let text =
        std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    let run: RunReport =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", from.display()))?;
    let stem = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| from.with_extension(""));
    std::fs::write(stem.with_extension("md"), report::markdown(&run))?;
    plot::draw(&run, &stem.with_extension("png"))?;
    println!(
        "wrote {} and {}",
        stem.with_extension("md").display(),
        stem.with_extension("png").display()
    );
    Ok(())
}

/// Everything a setup needs, fixed for the run.
struct Ctx {
    args: RunArgs,
    envoy: PathBuf,
    template: PathBuf,
    wrk_script: PathBuf,
    paths: Paths,
    run_dir: PathBuf,
    /// The HTTP mTLS clients: HTTP/1.1 keep-alive, HTTP/1.1 a connection per request (no
    /// session resumption: a full handshake each), HTTP/2 (ALPN h2).
    mtls: Arc<tokio_rustls::rustls::ClientConfig>,
    mtls_close: Arc<tokio_rustls::rustls::ClientConfig>,
    mtls_h2: Arc<tokio_rustls::rustls::ClientConfig>,
    /// The traffic variants to run, and the rule counts they run at (`None`: every count).
    variants: Vec<Variant>,
    variant_rules: Option<Vec<usize>>,
    /// The TCP listeners' clients: allowed, and a service account no rule names.
    tcp_mtls: Arc<tokio_rustls::rustls::ClientConfig>,
    tcp_denied_mtls: Arc<tokio_rustls::rustls::ClientConfig>,
    envoy_cpu: Option<usize>,
    load_cpu: Option<usize>,
    has_wrk: bool,
    /// `--profile`, when it can run (perf and wrk installed, plaintext measured).
    profile: bool,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn run(args: &RunArgs) -> Result<()> {
    let started = Instant::now();
    let root = alp_e2e::artifacts::workspace_root();
    let envoy = alp_e2e::artifacts::envoy()?;
    let wants = |c: Config| args.configs.contains(&c);
    for (what, path, needed) in [
        ("filter module", &args.wasm, true),
        ("native module", &args.native, wants(Config::Native)),
        ("no-op module", &args.noop_wasm, true),
        ("control", &args.control, true),
    ] {
        if needed && !path.is_file() {
            bail!(
                "the {what} {} does not exist: run bench/run.sh (it builds everything first)",
                path.display()
            );
        }
    }
    let has_wrk = alp_e2e::artifacts::find_on_path("wrk").is_some();
    if !has_wrk {
        eprintln!("alp-bench: wrk not found (apt-get install -y wrk): plaintext closed loop uses the bench's generator");
    }
    let (profile, profile_note) = profile_possible(args, has_wrk);
    if let Some(n) = &profile_note {
        eprintln!("alp-bench: {n}");
    }
    let dir = RunDir::create("alp-bench")?;
    let ca = Ca::create(&dir.path.join("certs"))?;
    let server = ca.issue("server", "bench-server", true)?;
    let client = ca.issue_with_uri("client", &policy::client_principal(), false)?;
    let http_tls = |alpn: &str, resume: bool| {
        load::tls_config(&ca.cert_file, &client.cert, &client.key, alpn, resume)
    };
    let mtls = http_tls("http/1.1", true)?;
    let mtls_close = http_tls("http/1.1", false)?;
    let mtls_h2 = http_tls("h2", true)?;
    let variants = variant::plan(&args.headers, &args.http, &args.connection, args.cross);
    let variant_rules = RuleSel::counts(&args.variant_rules);
    let other = ca.issue_with_uri(
        "other",
        &format!(
            "spiffe://{}/ns/{}/sa/{}",
            policy::TRUST_DOMAIN,
            policy::CLIENT_NAMESPACE,
            policy::TCP_DENIED_SA
        ),
        false,
    )?;
    let tcp_client = |cert: &Path, key: &Path| -> Result<Arc<tokio_rustls::rustls::ClientConfig>> {
        let mut c = alp_e2e::tls::client_config_from(&ca.cert_file, cert, key)?;
        if !args.tcp_resumption {
            c.resumption = tokio_rustls::rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(c))
    };
    let tcp_mtls = tcp_client(&client.cert, &client.key)?;
    let tcp_denied_mtls = tcp_client(&other.cert, &other.key)?;
    let paths = Paths {
        plain_port: free_port()?,
        mtls_port: free_port()?,
        tcp_plain_port: free_port()?,
        tcp_mtls_port: free_port()?,
        echo_socket: dir.path.join("echo.sock"),
        server_cert: server.cert,
        server_key: server.key,
        ca_file: ca.cert_file.clone(),
        alp_wasm: std::fs::canonicalize(&args.wasm)?,
        native_module: std::fs::canonicalize(&args.native)
            .or_else(|_| std::path::absolute(&args.native))?,
        noop_wasm: std::fs::canonicalize(&args.noop_wasm)?,
        control_socket: dir.path.join("control.sock"),
        authz_socket: dir.path.join("authz.sock"),
    };
    let pin = !args.no_pin;
    let ctx = Ctx {
        args: args.clone(),
        envoy: envoy.clone(),
        template: root.join("bench/envoy.yaml"),
        wrk_script: root.join("bench/wrk-report.lua"),
        paths,
        run_dir: dir.path.clone(),
        mtls,
        mtls_close,
        mtls_h2,
        variants: variants.clone(),
        variant_rules: variant_rules.clone(),
        tcp_mtls,
        tcp_denied_mtls,
        envoy_cpu: pin.then_some(0),
        load_cpu: pin.then_some(1),
        has_wrk,
        profile,
    };
    if pin {
        // This process (probes, /proc reads) stays off Envoy's CPU.
        load::pin_current_thread(1)?;
    }

    let load_before = procstat::loadavg();
    let mut rows = Vec::new();
    let mut variant_rows = Vec::new();
    let mut memory_rows = Vec::new();
    let mut tcp_rows = Vec::new();
    let mut propagation_rows = Vec::new();
    let mut notes: Vec<String> = profile_note.into_iter().collect();
    let mut setups: Vec<(Config, Option<usize>)> = Vec::new();
    for c in [Config::None, Config::Noop] {
        if args.configs.contains(&c) {
            setups.push((c, None));
        }
    }
    for &rules in &args.rules {
        for c in [Config::Rbac, Config::Alp, Config::Native, Config::ExtAuthz] {
            if args.configs.contains(&c) {
                setups.push((c, Some(rules)));
            }
        }
    }
    let http = args.layers.contains(&Layer::Http);
    let tcp = args.layers.contains(&Layer::Tcp);
    // Propagation: our filter's artefacts among --configs, on the HTTP listeners.
    let mut propagation_setups: Vec<(Config, usize)> = Vec::new();
    if http && args.propagation > 0 {
        for &rules in &args.propagation_rules {
            for c in [Config::Alp, Config::Native] {
                if args.configs.contains(&c) {
                    propagation_setups.push((c, rules));
                }
            }
        }
    }
    // Memory-only Envoys unless one worker (the throughput Envoy's) is all that is asked.
    let memory_counts: Vec<u32> = if args.concurrency.iter().all(|&c| c == 1) {
        vec![]
    } else {
        let mut c = args.concurrency.clone();
        c.sort_unstable();
        c.dedup();
        c
    };
    if memory_counts.contains(&0) {
        bail!("--concurrency: worker counts start at 1");
    }
    let variant_setups = setups
        .iter()
        .filter(|(_, n)| variant::runs_at(variant_rules.as_deref(), *n))
        .count();
    println!(
        "alp-bench: HTTP variants {} at {} rules on {variant_setups} setups; memory {}; about {:.1} minutes (more when windows are retried)",
        if variants.is_empty() {
            "none".to_string()
        } else {
            variants.iter().map(|v| v.short()).collect::<Vec<_>>().join(", ")
        },
        variant_rules.as_ref().map_or("all".into(), |l| {
            l.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
        }),
        if memory_counts.is_empty() {
            "from the throughput Envoys (1 worker)".to_string()
        } else {
            format!("also with {memory_counts:?} workers")
        },
        (estimate_seconds(args, &setups, variant_setups, variants.len(), &memory_counts)
            + propagation_setups.len() as f64 * (6.0 + 0.15 * args.propagation as f64))
            / 60.0
    );
    println!(
        "alp-bench: {} setups x {} transports x {}; HTTP {:.0}s windows after {:.0}s warm-up, {} connections, open loop at {:.0}/s; \
         TCP {:.1}s windows after {:.1}s warm-up, {} workers, {} streams of {} KiB writes; Envoy {}",
        setups.len(),
        args.transports.len(),
        args.layers.iter().map(|l| l.key()).collect::<Vec<_>>().join("+"),
        args.duration,
        args.warmup,
        args.connections,
        args.rate,
        args.tcp_duration,
        args.tcp_warmup,
        args.tcp_workers,
        args.tcp_streams,
        args.tcp_chunk / 1024,
        if pin { "on CPU 0, load on CPU 1" } else { "unpinned" }
    );
    for round in 0..args.rounds.max(1) {
        if args.rounds > 1 {
            println!("round {}/{}", round + 1, args.rounds);
        }
        let what = |config: &Config, rules: &Option<usize>, layer: Layer| {
            format!(
                "{} at {} rules ({layer})",
                config.label(),
                rules.map_or("-".into(), |r| r.to_string())
            )
        };
        for (config, rules) in setups.iter().filter(|_| http) {
            let t = Instant::now();
            let (measured, varied) = measure_setup(&ctx, *config, *rules, &mut notes, round)
                .with_context(|| what(config, rules, Layer::Http))?;
            for row in &measured {
                println!(
                    "  {}  ({:.1}s)",
                    report::one_line(row),
                    t.elapsed().as_secs_f64()
                );
                if let Some(p) = &row.profile {
                    println!("  {}", report::profile_line(&row.label, row.rules, p));
                }
            }
            for row in &varied {
                println!(
                    "  {}  ({:.1}s)",
                    report::traffic_line(row),
                    t.elapsed().as_secs_f64()
                );
            }
            rows.extend(measured);
            variant_rows.extend(varied);
        }
        // Memory does not need the best of several rounds.
        for (config, rules) in setups.iter().filter(|_| http && round == 0) {
            for &c in &memory_counts {
                let m = measure_memory(&ctx, *config, *rules, c).with_context(|| {
                    format!("{} with {c} workers", what(config, rules, Layer::Http))
                })?;
                println!("  {}", report::memory_line(&m));
                memory_rows.push(m);
            }
        }
        for (config, rules) in propagation_setups.iter().filter(|_| round == 0) {
            let t = Instant::now();
            let row = propagation::measure(&ctx, *config, *rules, args.propagation)
                .with_context(|| format!("propagation of {} at {rules} rules", config.label()))?;
            println!(
                "  {}  ({:.1}s)",
                report::propagation_line(&row),
                t.elapsed().as_secs_f64()
            );
            propagation_rows.push(row);
        }
        for (config, rules) in setups.iter().filter(|_| tcp) {
            let t = Instant::now();
            let measured = measure_tcp_setup(&ctx, *config, *rules)
                .with_context(|| what(config, rules, Layer::Tcp))?;
            for row in &measured {
                println!(
                    "  {}  ({:.1}s)",
                    report::tcp_one_line(row),
                    t.elapsed().as_secs_f64()
                );
            }
            tcp_rows.extend(measured);
        }
    }
    let rows = report::best_of_rounds(rows);
    let variant_rows = report::best_variants_of_rounds(variant_rows);
    let tcp_rows = report::best_tcp_of_rounds(tcp_rows);

    let git = command_output(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let dirty = !command_output(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_empty();
    let wasm_bytes = std::fs::read(&args.wasm)?;
    let native_bytes = if args.configs.contains(&Config::Native) {
        Some(std::fs::read(&args.native)?)
    } else {
        None
    };
    let meta = Meta {
        date_utc: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        git: format!(
            "{git}{}",
            if dirty {
                " (with uncommitted changes)"
            } else {
                ""
            }
        ),
        envoy: envoy_version(&command_output(
            &envoy.display().to_string(),
            &["--version"],
        )),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default(),
        // SAFETY: sysconf has no preconditions. (Not available_parallelism: this thread is pinned.)
        cores: usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(0),
        kernel: command_output("uname", &["-r"]),
        rounds: args.rounds.max(1),
        duration_s: args.duration,
        warmup_s: args.warmup,
        connections: args.connections,
        open_rate: args.rate,
        pinned: pin,
        wasm_bytes: wasm_bytes.len() as u64,
        wasm_fnv64: format!("{:016x}", fnv64(&wasm_bytes)),
        native_bytes: native_bytes.as_ref().map(|b| b.len() as u64),
        native_fnv64: native_bytes.as_ref().map(|b| format!("{:016x}", fnv64(b))),
        load_before,
        load_after: procstat::loadavg(),
        seconds: started.elapsed().as_secs_f64(),
        note: args.note.clone(),
        notes,
        tcp: tcp.then(|| TcpMeta {
            duration_s: args.tcp_duration,
            warmup_s: args.tcp_warmup,
            workers: args.tcp_workers,
            streams: args.tcp_streams,
            chunk_bytes: args.tcp_chunk,
            message_bytes: tcp::MESSAGE.len(),
            resumption: args.tcp_resumption,
        }),
        traffic: (http && !variants.is_empty()).then(|| TrafficMeta {
            variants: variants.clone(),
            rules: variant_rules.clone(),
            cross: args.cross,
            h2_streams: args.h2_streams,
            realistic_headers: HeaderSet::Realistic.fields().len(),
            realistic_header_bytes: HeaderSet::Realistic.http1_bytes(),
        }),
        memory: (http && !memory_counts.is_empty()).then(|| MemoryMeta {
            concurrency: memory_counts.clone(),
            connections: memory_connections(args),
            seconds: memory_seconds(args),
        }),
    };
    let run = RunReport::new(meta, rows, tcp_rows, variant_rows, memory_rows)
        .with_propagation(propagation_rows);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        args.out.with_extension("json"),
        serde_json::to_string_pretty(&run)? + "\n",
    )?;
    std::fs::write(args.out.with_extension("md"), report::markdown(&run))?;
    plot::draw(&run, &args.out.with_extension("png"))?;
    if !run.targets.is_empty() {
        println!("\n{}", report::targets_text(&run));
    }
    println!(
        "alp-bench: wrote {}.{{md,json,png}} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Roughly how long a run takes without retried windows: its windows (warm-ups included) and
/// a few seconds per Envoy started (start, policy, readiness, probes).
fn estimate_seconds(
    args: &RunArgs,
    setups: &[(Config, Option<usize>)],
    variant_setups: usize,
    variants: usize,
    memory_counts: &[u32],
) -> f64 {
    let (n, t) = (setups.len() as f64, args.transports.len() as f64);
    let window = args.warmup + args.duration;
    // wrk (plaintext closed loop) runs whole seconds.
    let wrk = |s: f64| s.ceil().max(1.0);
    let plain = if args.transports.iter().any(|t| t == "plaintext") {
        wrk(args.warmup) + wrk(args.duration) - window
    } else {
        0.0
    };
    let mut s = 0.0;
    if args.layers.contains(&Layer::Http) {
        s += n * (t * 2.0 * window + plain + 4.0) + window;
        s += variant_setups as f64 * variants as f64 * (t * window + plain);
        s += n * memory_counts.len() as f64 * (t * memory_seconds(args) + 4.0);
        if args.profile {
            let profiled = setups
                .iter()
                .filter(|(_, r)| profiled_rules(args, *r))
                .count();
            s += profiled as f64 * (wrk(args.duration) + 1.0);
        }
    }
    if args.layers.contains(&Layer::Tcp) {
        s += n * (t * 2.0 * (args.tcp_warmup + args.tcp_duration) + 2.5);
    }
    s * args.rounds.max(1) as f64
}

/// Whether `--profile` can run, and if it cannot, why (a note for the results).
fn profile_possible(args: &RunArgs, has_wrk: bool) -> (bool, Option<String>) {
    if !args.profile {
        return (false, None);
    }
    let why = if !args.layers.contains(&Layer::Http) {
        "HTTP is not measured (--layers)"
    } else if !args.transports.iter().any(|t| t == "plaintext") {
        "it profiles the plaintext transport, which --transports leaves out"
    } else if !has_wrk {
        "wrk is not installed (apt-get install -y wrk)"
    } else if !perf::available() {
        "perf is not installed (apt-get install -y linux-perf; bench/run.sh does so)"
    } else {
        return (true, None);
    };
    (false, Some(format!("--profile: no profile: {why}.")))
}

/// `--profile` runs at the setups without a policy and the first rule count of the run.
fn profiled_rules(args: &RunArgs, rules: Option<usize>) -> bool {
    rules.is_none() || rules == args.rules.first().copied()
}

/// The memory-only Envoys' load: connections and seconds per listener and round.
fn memory_connections(args: &RunArgs) -> usize {
    args.connections.max(8)
}

fn memory_seconds(args: &RunArgs) -> f64 {
    args.warmup.max(0.5)
}

/// `Envoy 1.40.0 (9e55809)` from `envoy --version` (`.../envoy  version: HASH/1.40.0/Clean/RELEASE/BoringSSL`).
fn envoy_version(text: &str) -> String {
    let v = text.rsplit("version:").next().unwrap_or("").trim();
    let parts: Vec<&str> = v.split('/').collect();
    match parts.as_slice() {
        [hash, version, ..] => format!("Envoy {version} ({})", &hash[..hash.len().min(7)]),
        _ => v.to_string(),
    }
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn taskset(cpu: Option<usize>) -> Vec<String> {
    match cpu {
        Some(c) => vec!["taskset".into(), "-c".into(), c.to_string()],
        None => vec![],
    }
}

/// What a configuration runs besides Envoy, started before it.
struct Servers {
    /// The native RBAC filters (`Config::Rbac`).
    rbac: Vec<serde_json::Value>,
    control: Option<Control>,
    authz: Option<Proc>,
}

/// The servers `config` needs and an Envoy with its HTTP listeners (`pin`: the taskset prefix,
/// `concurrency`: its workers; `control_args`: more flags for `control serve`), under `dir`.
fn start_http_setup(
    ctx: &Ctx,
    config: Config,
    rules: Option<usize>,
    dir: &Path,
    pin: &[String],
    concurrency: u32,
    control_args: &[String],
) -> Result<(Servers, Envoy)> {
    let servers = start_servers(ctx, config, rules, Layer::Http, dir, control_args)?;
    let yaml = config::bootstrap(
        &ctx.template,
        Layer::Http,
        config,
        &ctx.paths,
        &servers.rbac,
    )?;
    let config_file = dir.join("envoy.yaml");
    std::fs::write(&config_file, yaml)?;
    let envoy = Envoy::start(
        &ctx.envoy,
        pin,
        &config_file,
        dir,
        concurrency,
        Duration::from_secs(120),
    )?;
    Ok((servers, envoy))
}

/// Writes `layer`'s policy for `rules` under `dir` and starts what `config` needs: `control
/// serve` (with `control_args`) for our filter, as wasm or native, `control ext-authz` (pinned
/// with Envoy) for ext_authz.
fn start_servers(
    ctx: &Ctx,
    config: Config,
    rules: Option<usize>,
    layer: Layer,
    dir: &Path,
    control_args: &[String],
) -> Result<Servers> {
    std::fs::create_dir_all(dir)?;
    let ports = match layer {
        Layer::Http => [ctx.paths.plain_port, ctx.paths.mtls_port],
        Layer::Tcp => [ctx.paths.tcp_plain_port, ctx.paths.tcp_mtls_port],
    };
    let (updates, rbac) = match (config.has_policy(), rules) {
        (true, Some(n)) => {
            let snap = match layer {
                Layer::Http => policy::bench_snapshot(n, &ports),
                Layer::Tcp => policy::tcp_snapshot(n, &ports),
            };
            let jsonl: String = policy::to_dataplane(&snap)?
                .iter()
                .map(|m| format!("{m}\n"))
                .collect();
            policy::check_round_trip(&jsonl, &snap)?;
            let file = dir.join("updates.jsonl");
            std::fs::write(&file, jsonl)?;
            let rbac = if config == Config::Rbac {
                policy::rbac_filters(&snap, layer)?
            } else {
                vec![]
            };
            (Some(file), rbac)
        }
        _ => (None, vec![]),
    };
    let _ = std::fs::remove_file(&ctx.paths.control_socket);
    let _ = std::fs::remove_file(&ctx.paths.authz_socket);

    // Policy servers first (the filter fetches at start; ext_authz connects on first request).
    let control = match (config, &updates) {
        (c, Some(file)) if c.uses_control() => Some(Control::start(
            &ctx.args.control,
            "bench",
            &alp_e2e::control::Source::Updates(file.clone()),
            &ctx.paths.control_socket,
            control_args,
            &dir.join("control.log"),
            Duration::from_secs(60),
        )?),
        _ => None,
    };
    let authz = match (config, &updates) {
        (Config::ExtAuthz, Some(file)) => {
            let wrapper = taskset(ctx.envoy_cpu);
            let mut cmd = match wrapper.split_first() {
                Some((p, a)) => {
                    let mut c = Command::new(p);
                    c.args(a).arg(&ctx.args.control);
                    c
                }
                None => Command::new(&ctx.args.control),
            };
            cmd.arg("ext-authz")
                .arg("--updates")
                .arg(file)
                .arg("--listen")
                .arg(format!("unix:{}", ctx.paths.authz_socket.display()))
                .args(["--threads", "1"])
                .env("RUST_LOG", "warn");
            let mut proc = Proc::spawn("control-ext-authz", cmd, &dir.join("ext-authz.log"))?;
            if wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
                (proc.exited().is_some() || ctx.paths.authz_socket.exists()).then_some(())
            })
            .is_none()
                || proc.exited().is_some()
            {
                bail!(
                    "control ext-authz did not start; log:\n{}",
                    proc.log_tail(20)
                );
            }
            Some(proc)
        }
        _ => None,
    };

    Ok(Servers {
        rbac,
        control,
        authz,
    })
}

/// The HTTP listeners' targets (plaintext, mTLS) with the default traffic.
fn http_targets(ctx: &Ctx) -> (load::Target, load::Target) {
    let plain = load::Target {
        addr: SocketAddr::from(([127, 0, 0, 1], ctx.paths.plain_port)),
        tls: None,
        path: ctx.args.request_path.clone(),
        headers: HeaderSet::Minimal,
    };
    let mtls = load::Target {
        addr: SocketAddr::from(([127, 0, 0, 1], ctx.paths.mtls_port)),
        tls: Some(Arc::clone(&ctx.mtls)),
        path: ctx.args.request_path.clone(),
        headers: HeaderSet::Minimal,
    };
    (plain, mtls)
}

/// Waits until the request is allowed (the filter has its snapshot, ext_authz its policy).
fn wait_allowed(ctx: &Ctx, envoy: &Envoy, plain: &load::Target) -> Result<()> {
    let ready = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        (load::probe(plain, false).ok() == Some(200)).then_some(())
    });
    if ready.is_none() {
        bail!(
            "GET {} never answered 200 (last: {:?}); Envoy log {}:\n{}",
            ctx.args.request_path,
            load::probe(plain, false),
            envoy.proc.log.display(),
            envoy.proc.log_tail(20)
        );
    }
    Ok(())
}

/// `base` (a listener's default target) with `variant`'s headers and TLS client.
fn variant_target(ctx: &Ctx, base: &load::Target, variant: Variant) -> load::Target {
    let tls = base.tls.as_ref().map(|_| {
        Arc::clone(match (variant.http, variant.connection) {
            (HttpVersion::Http2, _) => &ctx.mtls_h2,
            (HttpVersion::Http1, ConnMode::Close) => &ctx.mtls_close,
            (HttpVersion::Http1, ConnMode::KeepAlive) => &ctx.mtls,
        })
    });
    load::Target {
        tls,
        headers: variant.headers,
        ..base.clone()
    }
}

/// One request with `variant`'s traffic: its status.
fn probe_variant(target: &load::Target, variant: Variant) -> Result<u16> {
    match variant.http {
        HttpVersion::Http1 => load::probe(target, variant.connection == ConnMode::Close),
        HttpVersion::Http2 => http2::probe(target),
    }
}

/// Starts what `config` needs, checks it enforces, and measures each transport: the default
/// cells (closed and open loop), then, where `variant::runs_at` says so, the traffic variants
/// (closed loop), so the default cells' memory samples are as before.
fn measure_setup(
    ctx: &Ctx,
    config: Config,
    rules: Option<usize>,
    notes: &mut Vec<String>,
    round: usize,
) -> Result<(Vec<Row>, Vec<VariantRow>)> {
    let dir = ctx.run_dir.join(format!("{config}-{}", rules.unwrap_or(0)));
    let (Servers { control, authz, .. }, envoy) =
        start_http_setup(ctx, config, rules, &dir, &taskset(ctx.envoy_cpu), 1, &[])?;

    let (plain, mtls) = http_targets(ctx);
    wait_allowed(ctx, &envoy, &plain)?;
    let variants: &[Variant] = if variant::runs_at(ctx.variant_rules.as_deref(), rules) {
        &ctx.variants
    } else {
        &[]
    };
    // Enforcing: the other path is denied by every configuration with a policy, with every
    // traffic variant to be measured.
    for target in [&plain, &mtls] {
        for &v in std::iter::once(&Variant::DEFAULT).chain(variants) {
            let target = variant_target(ctx, target, v);
            let allowed = probe_variant(&target, v)?;
            let denied = probe_variant(
                &load::Target {
                    path: policy::DENIED_PATH.into(),
                    ..target.clone()
                },
                v,
            )?;
            let want_denied = if config.has_policy() { 403 } else { 200 };
            if allowed != 200 || denied != want_denied {
                bail!(
                    "{} on {} ({}): GET {} -> {allowed}, GET {} -> {denied} (want 200 and {want_denied})",
                    config.label(),
                    if target.tls.is_some() {
                        "mTLS"
                    } else {
                        "plaintext"
                    },
                    v.short(),
                    ctx.args.request_path,
                    policy::DENIED_PATH
                );
            }
        }
    }

    let mut pids = vec![envoy.proc.pid()];
    if let Some(a) = &authz {
        pids.push(a.pid());
    }
    let target_of = |transport: &str| match transport {
        "plaintext" => Ok(&plain),
        "mtls" => Ok(&mtls),
        other => bail!("unknown transport {other:?} (plaintext, mtls)"),
    };
    let mut rows = Vec::new();
    for transport in &ctx.args.transports {
        let target = target_of(transport)?;
        let closed = if target.tls.is_none() && ctx.has_wrk {
            closed_wrk(ctx, target, &pids, false)?
        } else {
            closed_own(ctx, target, &pids)?
        };
        if config == Config::None && target.tls.is_none() && ctx.has_wrk {
            let own = closed_own(ctx, target, &pids)?;
            let prefix = if ctx.args.rounds > 1 {
                format!("Round {}: g", round + 1)
            } else {
                "G".to_string()
            };
            notes.push(format!(
                "{prefix}enerator check, no filter, plaintext, closed loop: wrk {:.0} req/s (p50 {:.0} µs), the bench's generator {:.0} req/s (p50 {:.0} µs).",
                closed.rps, closed.p50_us, own.rps, own.p50_us
            ));
        }
        // Beyond the configuration's maximum the open loop would only measure a growing queue.
        let open = if closed.rps < ctx.args.rate * 1.1 {
            skipped_open(&closed)
        } else {
            open_own(ctx, target, &pids)?
        };
        for m in [&closed, &open] {
            check_clean(config, transport, Variant::DEFAULT, m)?;
        }
        let (rss, peak, authz_rss) =
            procstat::memory_kb(envoy.proc.pid(), authz.as_ref().map(|a| a.pid()))?;
        rows.push(Row {
            config: config.key().into(),
            label: config.label().into(),
            rules,
            transport: transport.clone(),
            closed,
            open,
            envoy_rss_kb: rss,
            envoy_rss_peak_kb: peak,
            authz_rss_kb: authz_rss,
            profile: None,
        });
    }
    let mut varied = Vec::new();
    for transport in &ctx.args.transports {
        let base = target_of(transport)?;
        for &v in variants {
            let target = variant_target(ctx, base, v);
            let counters = || -> Result<(u64, u64)> {
                let stat = |n: &str| envoy.stat(&format!("http.bench.{n}"));
                Ok((
                    stat("downstream_cx_total")?.unwrap_or(0),
                    stat("downstream_cx_http2_total")?.unwrap_or(0),
                ))
            };
            let before = counters()?;
            let closed = closed_variant(ctx, &target, v, &pids)?;
            let after = counters()?;
            check_clean(config, transport, v, &closed)?;
            variant::check_connections(
                v,
                after.0 - before.0,
                after.1 - before.1,
                closed.requests,
                ctx.args.connections,
            )
            .map_err(|e| anyhow::anyhow!("{} {transport}: {e}", config.label()))?;
            varied.push(VariantRow {
                config: config.key().into(),
                label: config.label().into(),
                rules,
                transport: transport.clone(),
                variant: v,
                closed,
            });
        }
    }
    if ctx.profile && round == 0 && profiled_rules(&ctx.args, rules) {
        match profile_window(ctx, &plain, &pids) {
            Ok(p) => {
                if let Some(row) = rows.iter_mut().find(|r| r.transport == "plaintext") {
                    row.profile = Some(p);
                }
            }
            Err(e) => {
                let n = format!(
                    "--profile: no profile of {}{}: {e:#}",
                    config.label(),
                    rules.map_or(String::new(), |r| format!(" at {r} rules"))
                );
                eprintln!("alp-bench: {n}");
                notes.push(n);
            }
        }
    }
    drop(envoy);
    drop(authz);
    drop(control);
    Ok((rows, varied))
}

/// Fails the run when a measured window saw non-2xx responses or errors.
fn check_clean(config: Config, transport: &str, v: Variant, m: &Measurement) -> Result<()> {
    if m.non_2xx > 0 || m.errors > 0 {
        bail!(
            "{} {transport} ({}): {} non-2xx responses, {} errors in a measured window",
            config.label(),
            v.short(),
            m.non_2xx,
            m.errors
        );
    }
    Ok(())
}

/// A variant's closed loop: wrk for plaintext HTTP/1.1 (when installed), else the bench's
/// HTTP/1.1 or HTTP/2 generator.
fn closed_variant(
    ctx: &Ctx,
    target: &load::Target,
    v: Variant,
    pids: &[u32],
) -> Result<Measurement> {
    let close = v.connection == ConnMode::Close;
    match v.http {
        HttpVersion::Http1 if target.tls.is_none() && ctx.has_wrk => {
            closed_wrk(ctx, target, pids, close)
        }
        HttpVersion::Http1 => own(
            ctx,
            target,
            pids,
            load::Pace::Closed,
            Gen::Http1(v.connection),
        ),
        HttpVersion::Http2 => own(
            ctx,
            target,
            pids,
            load::Pace::Closed,
            Gen::Http2 {
                streams: ctx.args.h2_streams,
            },
        ),
    }
}

/// The memory of `config` with `concurrency` workers: an Envoy of its own (not pinned), its
/// RSS after a short load that every worker served on both listeners.
fn measure_memory(
    ctx: &Ctx,
    config: Config,
    rules: Option<usize>,
    concurrency: u32,
) -> Result<MemoryRow> {
    let dir = ctx.run_dir.join(format!(
        "memory{concurrency}-{config}-{}",
        rules.unwrap_or(0)
    ));
    let (Servers { control, authz, .. }, envoy) =
        start_http_setup(ctx, config, rules, &dir, &[], concurrency, &[])?;
    let (plain, mtls) = http_targets(ctx);
    wait_allowed(ctx, &envoy, &plain)?;
    let worker_connections = warm::every_worker(
        &envoy,
        &[("plaintext", &plain), ("mtls", &mtls)],
        concurrency,
        memory_connections(&ctx.args),
        Duration::from_secs_f64(memory_seconds(&ctx.args)),
        ctx.load_cpu,
    )?;
    let (rss, peak, authz_rss) =
        procstat::memory_kb(envoy.proc.pid(), authz.as_ref().map(|a| a.pid()))?;
    drop(envoy);
    drop(authz);
    drop(control);
    Ok(MemoryRow {
        config: config.key().into(),
        label: config.label().into(),
        rules,
        concurrency,
        envoy_rss_kb: rss,
        envoy_rss_peak_kb: peak,
        authz_rss_kb: authz_rss,
        worker_connections,
    })
}

/// What a load generator counted in one window.
struct Counts {
    requests: u64,
    non_2xx: u64,
    errors: u64,
    unsent: u64,
    seconds: f64,
}

fn measurement(
    generator: &str,
    counts: Counts,
    pct: [f64; 3],
    cpu: &procstat::CpuUsed,
) -> Measurement {
    let Counts {
        requests,
        non_2xx,
        errors,
        unsent,
        seconds,
    } = counts;
    let per_req = |s: f64| {
        if requests > 0 {
            s * 1e6 / requests as f64
        } else {
            f64::NAN
        }
    };
    Measurement {
        generator: generator.into(),
        requests,
        non_2xx,
        errors,
        unsent,
        seconds,
        rps: requests as f64 / seconds.max(1e-9),
        p50_us: pct[0],
        p99_us: pct[1],
        p999_us: pct[2],
        envoy_cpu_us_per_req: per_req(cpu.per_process_s.first().copied().unwrap_or(0.0)),
        authz_cpu_us_per_req: cpu.per_process_s.get(1).map(|&s| per_req(s)),
        cpu0_busy_pct: cpu.busy_share * 100.0,
        cpu0_foreign_pct: cpu.foreign_share * 100.0,
        cpu1_foreign_pct: cpu.load_foreign_share * 100.0,
    }
}

/// `measure` again while the window was disturbed by other work, keeping the calmest attempt.
fn calmest(ctx: &Ctx, measure: impl FnMut() -> Result<Measurement>) -> Result<Measurement> {
    calmest_of(ctx, measure)
}

/// wrk's closed loop on `target`, sending the bench generator's request bytes (`close`: with
/// `connection: close`, so wrk reconnects for every request).
fn closed_wrk(ctx: &Ctx, target: &load::Target, pids: &[u32], close: bool) -> Result<Measurement> {
    let request = request_file(ctx, target, close)?;
    calmest(ctx, || closed_wrk_once(ctx, target, &request, pids))
}

/// The file of request bytes wrk sends to `target`.
fn request_file(ctx: &Ctx, target: &load::Target, close: bool) -> Result<PathBuf> {
    let request = ctx.run_dir.join(format!(
        "request-{}-{}{}.http",
        target.addr.port(),
        target.headers,
        if close { "-close" } else { "" }
    ));
    std::fs::write(&request, target.request_bytes(close))?;
    Ok(request)
}

/// perf starts this long after wrk, and stops at least this long before wrk's window ends.
const PERF_DELAY: Duration = Duration::from_millis(200);
const PERF_MARGIN: Duration = Duration::from_millis(300);

/// `--profile`'s window: wrk's closed loop on `target` (Envoy already warm from the setup's
/// windows), `perf record` on Envoy (`pids[0]`) inside it, Envoy's CPU over the whole window.
fn profile_window(ctx: &Ctx, target: &load::Target, pids: &[u32]) -> Result<report::Profile> {
    let request = request_file(ctx, target, false)?;
    let url = format!("http://{}{}", target.addr, target.path);
    let a = &ctx.args;
    let duration = Duration::from_secs_f64(a.duration);
    let window_len = Duration::from_secs(wrk::whole_seconds(duration));
    let sampled = window_len
        .saturating_sub(PERF_DELAY + PERF_MARGIN)
        .max(Duration::from_millis(200));
    let data = ctx
        .run_dir
        .join(format!("perf-{}-{}.data", pids[0], target.addr.port()));
    let _ = std::fs::remove_file(&data);
    let window = procstat::CpuWindow::start(
        pids,
        ctx.envoy_cpu.unwrap_or(0),
        ctx.load_cpu.map(|c| (c, procstat::Own::Children)),
    )?;
    let (r, recorded) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            wrk::run(
                &ctx.wrk_script,
                &url,
                &request,
                a.connections,
                duration,
                ctx.load_cpu,
            )
        });
        std::thread::sleep(PERF_DELAY);
        let recorded = perf::Recording::start(pids[0], sampled, &data).and_then(|p| p.wait());
        let r = load.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (r, recorded)
    });
    let cpu = window.stop()?;
    let r = r?;
    let data = recorded?;
    let dsos = perf::report(&data)?;
    let _ = std::fs::remove_file(&data);
    let counts = Counts {
        requests: r.requests,
        non_2xx: r.errors_status,
        errors: r.errors(),
        unsent: 0,
        seconds: r.duration_us as f64 / 1e6,
    };
    let window = measurement(
        "wrk (perf record)",
        counts,
        [r.p50_us, r.p99_us, r.p999_us],
        &cpu,
    );
    if window.non_2xx > 0 || window.errors > 0 {
        bail!(
            "{} non-2xx responses, {} errors in the profiled window",
            window.non_2xx,
            window.errors
        );
    }
    Ok(report::Profile {
        binary: ctx
            .envoy
            .file_name()
            .map_or("envoy".into(), |n| n.to_string_lossy().into_owned()),
        frequency_hz: perf::FREQUENCY_HZ,
        sampled_s: sampled.as_secs_f64(),
        samples: dsos.iter().map(|d| d.samples).sum(),
        dsos,
        window,
    })
}

fn closed_wrk_once(
    ctx: &Ctx,
    target: &load::Target,
    request: &Path,
    pids: &[u32],
) -> Result<Measurement> {
    let url = format!("http://{}{}", target.addr, target.path);
    let a = &ctx.args;
    wrk::run(
        &ctx.wrk_script,
        &url,
        request,
        a.connections,
        Duration::from_secs_f64(a.warmup),
        ctx.load_cpu,
    )?;
    let window = procstat::CpuWindow::start(
        pids,
        ctx.envoy_cpu.unwrap_or(0),
        ctx.load_cpu.map(|c| (c, procstat::Own::Children)),
    )?;
    let r = wrk::run(
        &ctx.wrk_script,
        &url,
        request,
        a.connections,
        Duration::from_secs_f64(a.duration),
        ctx.load_cpu,
    )?;
    let cpu = window.stop()?;
    let counts = Counts {
        requests: r.requests,
        non_2xx: r.errors_status,
        errors: r.errors(),
        unsent: 0,
        seconds: r.duration_us as f64 / 1e6,
    };
    Ok(measurement(
        "wrk",
        counts,
        [r.p50_us, r.p99_us, r.p999_us],
        &cpu,
    ))
}

/// Which of the bench's generators, and how it uses connections.
#[derive(Clone, Copy, Debug)]
enum Gen {
    Http1(ConnMode),
    /// Streams in flight per connection.
    Http2 {
        streams: usize,
    },
}

fn own(
    ctx: &Ctx,
    target: &load::Target,
    pids: &[u32],
    pace: load::Pace,
    how: Gen,
) -> Result<Measurement> {
    calmest(ctx, || own_once(ctx, target, pids, pace, how))
}

fn own_once(
    ctx: &Ctx,
    target: &load::Target,
    pids: &[u32],
    pace: load::Pace,
    how: Gen,
) -> Result<Measurement> {
    let a = &ctx.args;
    let settings = load::Settings {
        connections: a.connections,
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        pace,
        cpu: ctx.load_cpu,
        watch: Some((pids.to_vec(), ctx.envoy_cpu.unwrap_or(0))),
        connection: match how {
            Gen::Http1(c) => c,
            Gen::Http2 { .. } => ConnMode::KeepAlive,
        },
    };
    let (o, generator) = match how {
        Gen::Http1(_) => (load::run(target, &settings)?, "alp-bench"),
        Gen::Http2 { streams } => (
            http2::run(target, &settings, streams)?,
            "alp-bench (HTTP/2)",
        ),
    };
    let cpu = o.cpu.clone().context("no CPU window")?;
    let counts = Counts {
        requests: o.requests,
        non_2xx: o.non_2xx,
        errors: o.errors,
        unsent: o.unsent,
        seconds: o.elapsed.as_secs_f64(),
    };
    Ok(measurement(
        generator,
        counts,
        [
            o.percentile_us(50.0),
            o.percentile_us(99.0),
            o.percentile_us(99.9),
        ],
        &cpu,
    ))
}

fn closed_own(ctx: &Ctx, target: &load::Target, pids: &[u32]) -> Result<Measurement> {
    own(
        ctx,
        target,
        pids,
        load::Pace::Closed,
        Gen::Http1(ConnMode::KeepAlive),
    )
}

/// The open loop not run: the rate is beyond what the configuration can do (see `closed`).
fn skipped_open(closed: &Measurement) -> Measurement {
    Measurement {
        generator: "skipped: rate above the closed-loop maximum".into(),
        requests: 0,
        non_2xx: 0,
        errors: 0,
        unsent: 1,
        seconds: 0.0,
        rps: closed.rps,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
        envoy_cpu_us_per_req: f64::NAN,
        authz_cpu_us_per_req: None,
        cpu0_busy_pct: 0.0,
        cpu0_foreign_pct: 0.0,
        cpu1_foreign_pct: 0.0,
    }
}

fn open_own(ctx: &Ctx, target: &load::Target, pids: &[u32]) -> Result<Measurement> {
    own(
        ctx,
        target,
        pids,
        load::Pace::Open {
            rate: ctx.args.rate,
        },
        Gen::Http1(ConnMode::KeepAlive),
    )
}

/// A window whose CPU figures tell whether other work disturbed it.
trait Calm {
    fn foreign(&self) -> f64;
    fn calm(&self) -> bool;
}

impl Calm for Measurement {
    fn foreign(&self) -> f64 {
        self.foreign_pct()
    }
    fn calm(&self) -> bool {
        !self.disturbed()
    }
}

impl Calm for Throughput {
    fn foreign(&self) -> f64 {
        self.foreign_pct()
    }
    fn calm(&self) -> bool {
        !self.disturbed()
    }
}

/// [`calmest`] for any kind of window.
fn calmest_of<M: Calm>(ctx: &Ctx, mut measure: impl FnMut() -> Result<M>) -> Result<M> {
    let mut best = measure()?;
    for _ in 0..ctx.args.retries {
        if best.calm() {
            break;
        }
        let again = measure()?;
        if again.foreign() < best.foreign() {
            best = again;
        }
    }
    Ok(best)
}

/// The TCP side of `config`: its own Envoy with the TCP listeners, the same policy servers;
/// checks it enforces (the allowed connection echoed, a denied one closed unanswered), then
/// measures the connection rate and the throughput on each transport.
fn measure_tcp_setup(ctx: &Ctx, config: Config, rules: Option<usize>) -> Result<Vec<TcpRow>> {
    let dir = ctx
        .run_dir
        .join(format!("tcp-{config}-{}", rules.unwrap_or(0)));
    let Servers {
        rbac,
        control,
        authz,
    } = start_servers(ctx, config, rules, Layer::Tcp, &dir, &[])?;
    let _ = std::fs::remove_file(&ctx.paths.echo_socket);
    let yaml = config::bootstrap(&ctx.template, Layer::Tcp, config, &ctx.paths, &rbac)?;
    let config_file = dir.join("envoy.yaml");
    std::fs::write(&config_file, yaml)?;
    let envoy = Envoy::start(
        &ctx.envoy,
        &taskset(ctx.envoy_cpu),
        &config_file,
        &dir,
        1,
        Duration::from_secs(120),
    )?;
    let local = std::net::Ipv4Addr::LOCALHOST;
    let plain = tcp::Target {
        addr: SocketAddr::from((local, ctx.paths.tcp_plain_port)),
        tls: None,
        source: None,
    };
    let mtls = tcp::Target {
        addr: SocketAddr::from((local, ctx.paths.tcp_mtls_port)),
        tls: Some(Arc::clone(&ctx.tcp_mtls)),
        source: None,
    };
    // Ready when the connection is allowed (the filter has its snapshot, ext_authz its policy).
    let ready = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        matches!(tcp::probe(&plain), Ok(tcp::Probe::Echoed)).then_some(())
    });
    if ready.is_none() {
        bail!(
            "the TCP listener never echoed (last: {:?}); Envoy log {}:\n{}",
            tcp::probe(&plain),
            envoy.proc.log.display(),
            envoy.proc.log_tail(20)
        );
    }
    // Enforcing: from another source (plaintext) or as another service account (mTLS), the
    // connection is closed unanswered by every configuration with a policy.
    let denied_plain = tcp::Target {
        source: Some(policy::TCP_DENIED_SOURCE),
        ..plain.clone()
    };
    let denied_mtls = tcp::Target {
        tls: Some(Arc::clone(&ctx.tcp_denied_mtls)),
        ..mtls.clone()
    };
    let want_denied = if config.has_policy() {
        tcp::Probe::Closed
    } else {
        tcp::Probe::Echoed
    };
    for (name, allowed, denied, who) in [
        (
            "plaintext",
            &plain,
            &denied_plain,
            format!("from {}", policy::TCP_DENIED_SOURCE),
        ),
        (
            "mTLS",
            &mtls,
            &denied_mtls,
            format!("as {}", policy::TCP_DENIED_SA),
        ),
    ] {
        let a = tcp::probe(allowed)?;
        let d = tcp::probe(denied)?;
        if a != tcp::Probe::Echoed || d != want_denied {
            bail!(
                "{} on TCP {name}: the allowed connection {a:?}, the one {who} {d:?} (want Echoed and {want_denied:?})",
                config.label()
            );
        }
    }

    let mut pids = vec![envoy.proc.pid()];
    if let Some(a) = &authz {
        pids.push(a.pid());
    }
    let throughput_here = match (&ctx.args.tcp_throughput_rules, rules) {
        (Some(list), Some(n)) => list.contains(&n),
        _ => true,
    };
    let mut rows = Vec::new();
    for transport in &ctx.args.transports {
        let target = match transport.as_str() {
            "plaintext" => &plain,
            "mtls" => &mtls,
            other => bail!("unknown transport {other:?} (plaintext, mtls)"),
        };
        let connect = calmest_of(ctx, || tcp_rate_once(ctx, target, &pids))?;
        if connect.errors > 0 {
            bail!(
                "{} tcp {transport}: {} failed connections in the connection-rate window",
                config.label(),
                connect.errors
            );
        }
        let stream = if throughput_here {
            let t = calmest_of(ctx, || tcp_throughput_once(ctx, target, &pids))?;
            if t.errors > 0 {
                bail!(
                    "{} tcp {transport}: {} long connections failed",
                    config.label(),
                    t.errors
                );
            }
            Some(t)
        } else {
            None
        };
        // TLS handshakes so far on the listener, and how many resumed a session.
        let tls_sessions = match target.tls {
            Some(_) => {
                let stat = |n: &str| envoy.stat(&format!("listener.tcp_mtls.ssl.{n}"));
                Some((
                    stat("handshake")?.unwrap_or(0),
                    stat("session_reused")?.unwrap_or(0),
                ))
            }
            None => None,
        };
        let (rss, peak, authz_rss) =
            procstat::memory_kb(envoy.proc.pid(), authz.as_ref().map(|a| a.pid()))?;
        rows.push(TcpRow {
            config: config.key().into(),
            label: config.label().into(),
            rules,
            transport: transport.clone(),
            connect,
            stream,
            tls_sessions,
            envoy_rss_kb: rss,
            envoy_rss_peak_kb: peak,
            authz_rss_kb: authz_rss,
        });
    }
    drop(envoy);
    drop(authz);
    drop(control);
    Ok(rows)
}

fn tcp_settings(ctx: &Ctx, connections: usize, pids: &[u32]) -> tcp::Settings {
    let a = &ctx.args;
    tcp::Settings {
        connections,
        warmup: Duration::from_secs_f64(a.tcp_warmup),
        duration: Duration::from_secs_f64(a.tcp_duration),
        chunk: a.tcp_chunk,
        cpu: ctx.load_cpu,
        watch: (pids.to_vec(), ctx.envoy_cpu.unwrap_or(0)),
    }
}

fn tcp_rate_once(ctx: &Ctx, target: &tcp::Target, pids: &[u32]) -> Result<Measurement> {
    let o = tcp::connection_rate(target, &tcp_settings(ctx, ctx.args.tcp_workers, pids))?;
    let cpu = o.cpu.clone().context("no CPU window")?;
    let counts = Counts {
        requests: o.connections,
        non_2xx: 0,
        errors: o.errors,
        unsent: 0,
        seconds: o.elapsed.as_secs_f64(),
    };
    Ok(measurement(
        "alp-bench tcp connection rate",
        counts,
        [
            o.percentile_us(50.0),
            o.percentile_us(99.0),
            o.percentile_us(99.9),
        ],
        &cpu,
    ))
}

fn tcp_throughput_once(ctx: &Ctx, target: &tcp::Target, pids: &[u32]) -> Result<Throughput> {
    let settings = tcp_settings(ctx, ctx.args.tcp_streams, pids);
    let o = tcp::throughput(target, &settings)?;
    let cpu = o.cpu.clone().context("no CPU window")?;
    let seconds = o.elapsed.as_secs_f64();
    let mb = o.bytes as f64 / 1e6;
    let per_mb = |s: f64| {
        if mb > 0.0 {
            s * 1e6 / mb
        } else {
            f64::NAN
        }
    };
    Ok(Throughput {
        streams: settings.connections,
        chunk_bytes: settings.chunk,
        bytes: o.bytes,
        errors: o.errors,
        seconds,
        mb_per_s: mb / seconds.max(1e-9),
        envoy_cpu_us_per_mb: per_mb(cpu.per_process_s.first().copied().unwrap_or(0.0)),
        authz_cpu_us_per_mb: cpu.per_process_s.get(1).map(|&s| per_mb(s)),
        cpu0_busy_pct: cpu.busy_share * 100.0,
        cpu0_foreign_pct: cpu.foreign_share * 100.0,
        cpu1_foreign_pct: cpu.load_foreign_share * 100.0,
    })
}
