//! `alp-bench`: our filter against no filter, native RBAC, a no-op wasm filter and the same
//! engine behind ext_authz, in one run on one Envoy build. Run it through `bench/run.sh`, which
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
//! Raw TCP (`--layers tcp`, in the same run by default): for each configuration (and rule count)
//! another Envoy, whose two TCP listeners run the configuration's network filter before
//! tcp_proxy to Envoy's own echo listener; measured are the connection rate (closed loop of
//! short connections) and the throughput of a few long connections (`tcp.rs`).

mod config;
mod load;
mod plot;
mod policy;
mod procstat;
mod report;
mod tcp;
mod wrk;

use alp_e2e::certs::Ca;
use alp_e2e::control::Control;
use alp_e2e::envoy::Envoy;
use alp_e2e::process::{wait_for, Proc};
use alp_e2e::stack::RunDir;
use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use config::{Config, Layer, Paths};
use report::{Measurement, Meta, Row, RunReport, TcpMeta, TcpRow, Throughput};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "alp-bench",
    about = "Envoy with no filter, native RBAC, no-op wasm, calico-alp and ext_authz, in one run"
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
    /// Configurations: none, rbac, noop, alp, ext_authz.
    #[arg(long, value_delimiter = ',', default_value = "none,rbac,noop,alp,ext_authz", value_parser = Config::parse)]
    configs: Vec<Config>,
    /// Transports: plaintext, mtls.
    #[arg(long, value_delimiter = ',', default_value = "plaintext,mtls")]
    transports: Vec<String>,
    /// What to measure: http (requests through the HTTP filters), tcp (raw TCP connections
    /// through the network filters before tcp_proxy). `--layers http`: HTTP only.
    #[arg(long, value_delimiter = ',', default_value = "http,tcp", value_parser = Layer::parse)]
    layers: Vec<Layer>,
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
    mtls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// The TCP listeners' clients: allowed, and a service account no rule names.
    tcp_mtls: Arc<tokio_rustls::rustls::ClientConfig>,
    tcp_denied_mtls: Arc<tokio_rustls::rustls::ClientConfig>,
    envoy_cpu: Option<usize>,
    load_cpu: Option<usize>,
    has_wrk: bool,
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
    for (what, path) in [
        ("filter module", &args.wasm),
        ("no-op module", &args.noop_wasm),
        ("control", &args.control),
    ] {
        if !path.is_file() {
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
    let dir = RunDir::create("alp-bench")?;
    let ca = Ca::create(&dir.path.join("certs"))?;
    let server = ca.issue("server", "bench-server", true)?;
    let client = ca.issue_with_uri("client", &policy::client_principal(), false)?;
    let mtls = load::tls_config(&ca.cert_file, &client.cert, &client.key)?;
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
        tcp_mtls,
        tcp_denied_mtls,
        envoy_cpu: pin.then_some(0),
        load_cpu: pin.then_some(1),
        has_wrk,
    };
    if pin {
        // This process (probes, /proc reads) stays off Envoy's CPU.
        load::pin_current_thread(1)?;
    }

    let load_before = procstat::loadavg();
    let mut rows = Vec::new();
    let mut tcp_rows = Vec::new();
    let mut notes = Vec::new();
    let mut setups: Vec<(Config, Option<usize>)> = Vec::new();
    for c in [Config::None, Config::Noop] {
        if args.configs.contains(&c) {
            setups.push((c, None));
        }
    }
    for &rules in &args.rules {
        for c in [Config::Rbac, Config::Alp, Config::ExtAuthz] {
            if args.configs.contains(&c) {
                setups.push((c, Some(rules)));
            }
        }
    }
    let http = args.layers.contains(&Layer::Http);
    let tcp = args.layers.contains(&Layer::Tcp);
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
            let measured = measure_setup(&ctx, *config, *rules, &mut notes, round)
                .with_context(|| what(config, rules, Layer::Http))?;
            for row in &measured {
                println!(
                    "  {}  ({:.1}s)",
                    report::one_line(row),
                    t.elapsed().as_secs_f64()
                );
            }
            rows.extend(measured);
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
    };
    let run = RunReport::new(meta, rows, tcp_rows);
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

/// Writes `layer`'s policy for `rules` under `dir` and starts what `config` needs: `control
/// serve` for our filter, `control ext-authz` (pinned with Envoy) for ext_authz.
fn start_servers(
    ctx: &Ctx,
    config: Config,
    rules: Option<usize>,
    layer: Layer,
    dir: &Path,
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
        (Config::Alp, Some(file)) => Some(Control::start(
            &ctx.args.control,
            "bench",
            &alp_e2e::control::Source::Updates(file.clone()),
            &ctx.paths.control_socket,
            &[],
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

/// Starts what `config` needs, checks it enforces, and measures each transport.
fn measure_setup(
    ctx: &Ctx,
    config: Config,
    rules: Option<usize>,
    notes: &mut Vec<String>,
    round: usize,
) -> Result<Vec<Row>> {
    let dir = ctx.run_dir.join(format!("{config}-{}", rules.unwrap_or(0)));
    let Servers {
        rbac,
        control,
        authz,
    } = start_servers(ctx, config, rules, Layer::Http, &dir)?;
    let yaml = config::bootstrap(&ctx.template, Layer::Http, config, &ctx.paths, &rbac)?;
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

    let plain = load::Target {
        addr: SocketAddr::from(([127, 0, 0, 1], ctx.paths.plain_port)),
        tls: None,
        path: ctx.args.request_path.clone(),
    };
    let mtls = load::Target {
        addr: SocketAddr::from(([127, 0, 0, 1], ctx.paths.mtls_port)),
        tls: Some(Arc::clone(&ctx.mtls)),
        path: ctx.args.request_path.clone(),
    };
    // Ready when the request is allowed (the filter has its snapshot, ext_authz its policy).
    let ready = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        (load::probe(&plain).ok() == Some(200)).then_some(())
    });
    if ready.is_none() {
        bail!(
            "GET {} never answered 200 (last: {:?}); Envoy log {}:\n{}",
            ctx.args.request_path,
            load::probe(&plain),
            envoy.proc.log.display(),
            envoy.proc.log_tail(20)
        );
    }
    // Enforcing: the other path is denied by every configuration with a policy.
    for target in [&plain, &mtls] {
        let allowed = load::probe(target)?;
        let denied = load::probe(&load::Target {
            path: policy::DENIED_PATH.into(),
            ..target.clone()
        })?;
        let want_denied = if config.has_policy() { 403 } else { 200 };
        if allowed != 200 || denied != want_denied {
            bail!(
                "{} on {}: GET {} -> {allowed}, GET {} -> {denied} (want 200 and {want_denied})",
                config.label(),
                if target.tls.is_some() {
                    "mTLS"
                } else {
                    "plaintext"
                },
                ctx.args.request_path,
                policy::DENIED_PATH
            );
        }
    }

    let mut pids = vec![envoy.proc.pid()];
    if let Some(a) = &authz {
        pids.push(a.pid());
    }
    let mut rows = Vec::new();
    for transport in &ctx.args.transports {
        let target = match transport.as_str() {
            "plaintext" => &plain,
            "mtls" => &mtls,
            other => bail!("unknown transport {other:?} (plaintext, mtls)"),
        };
        let closed = if target.tls.is_none() && ctx.has_wrk {
            closed_wrk(ctx, target, &pids)?
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
            if m.non_2xx > 0 || m.errors > 0 {
                bail!(
                    "{} {transport}: {} non-2xx responses, {} errors in a measured window",
                    config.label(),
                    m.non_2xx,
                    m.errors
                );
            }
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
        });
    }
    drop(envoy);
    drop(authz);
    drop(control);
    Ok(rows)
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

fn closed_wrk(ctx: &Ctx, target: &load::Target, pids: &[u32]) -> Result<Measurement> {
    calmest(ctx, || closed_wrk_once(ctx, target, pids))
}

fn closed_wrk_once(ctx: &Ctx, target: &load::Target, pids: &[u32]) -> Result<Measurement> {
    let url = format!("http://{}{}", target.addr, target.path);
    let a = &ctx.args;
    wrk::run(
        &ctx.wrk_script,
        &url,
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

fn own(ctx: &Ctx, target: &load::Target, pids: &[u32], pace: load::Pace) -> Result<Measurement> {
    calmest(ctx, || own_once(ctx, target, pids, pace))
}

fn own_once(
    ctx: &Ctx,
    target: &load::Target,
    pids: &[u32],
    pace: load::Pace,
) -> Result<Measurement> {
    let a = &ctx.args;
    let settings = load::Settings {
        connections: a.connections,
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        pace,
        cpu: ctx.load_cpu,
        watch: Some((pids.to_vec(), ctx.envoy_cpu.unwrap_or(0))),
    };
    let o = load::run(target, &settings)?;
    let cpu = o.cpu.clone().context("no CPU window")?;
    let counts = Counts {
        requests: o.requests,
        non_2xx: o.non_2xx,
        errors: o.errors,
        unsent: o.unsent,
        seconds: o.elapsed.as_secs_f64(),
    };
    Ok(measurement(
        "alp-bench",
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
    own(ctx, target, pids, load::Pace::Closed)
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
    } = start_servers(ctx, config, rules, Layer::Tcp, &dir)?;
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
