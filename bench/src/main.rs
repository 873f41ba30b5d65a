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

mod config;
mod load;
mod plot;
mod policy;
mod procstat;
mod report;
mod wrk;

use alp_e2e::certs::Ca;
use alp_e2e::control::Control;
use alp_e2e::envoy::Envoy;
use alp_e2e::process::{wait_for, Proc};
use alp_e2e::stack::RunDir;
use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use config::{Config, Paths};
use report::{Measurement, Meta, Row, RunReport};
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
    let paths = Paths {
        plain_port: free_port()?,
        mtls_port: free_port()?,
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
    println!(
        "alp-bench: {} setups x {} transports; {:.0}s windows after {:.0}s warm-up, {} connections, open loop at {:.0}/s; Envoy {}",
        setups.len(),
        args.transports.len(),
        args.duration,
        args.warmup,
        args.connections,
        args.rate,
        if pin { "on CPU 0, load on CPU 1" } else { "unpinned" }
    );
    for round in 0..args.rounds.max(1) {
        if args.rounds > 1 {
            println!("round {}/{}", round + 1, args.rounds);
        }
        for (config, rules) in &setups {
            let t = Instant::now();
            let measured =
                measure_setup(&ctx, *config, *rules, &mut notes, round).with_context(|| {
                    format!(
                        "{} at {} rules",
                        config.label(),
                        rules.map_or("-".into(), |r| r.to_string())
                    )
                })?;
            for row in &measured {
                println!(
                    "  {}  ({:.1}s)",
                    report::one_line(row),
                    t.elapsed().as_secs_f64()
                );
            }
            rows.extend(measured);
        }
    }
    let rows = report::best_of_rounds(rows);

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
    };
    let run = RunReport::new(meta, rows);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        args.out.with_extension("json"),
        serde_json::to_string_pretty(&run)? + "\n",
    )?;
    std::fs::write(args.out.with_extension("md"), report::markdown(&run))?;
    plot::draw(&run, &args.out.with_extension("png"))?;
    println!("\n{}", report::targets_text(&run));
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

/// Starts what `config` needs, checks it enforces, and measures each transport.
fn measure_setup(
    ctx: &Ctx,
    config: Config,
    rules: Option<usize>,
    notes: &mut Vec<String>,
    round: usize,
) -> Result<Vec<Row>> {
    let dir = ctx.run_dir.join(format!("{config}-{}", rules.unwrap_or(0)));
    std::fs::create_dir_all(&dir)?;
    let ports = [ctx.paths.plain_port, ctx.paths.mtls_port];
    let (updates, rbac) = match (config.has_policy(), rules) {
        (true, Some(n)) => {
            let snap = policy::bench_snapshot(n, &ports);
            let jsonl: String = policy::to_dataplane(&snap)?
                .iter()
                .map(|m| format!("{m}\n"))
                .collect();
            policy::check_round_trip(&jsonl, &snap)?;
            let file = dir.join("updates.jsonl");
            std::fs::write(&file, jsonl)?;
            let rbac = if config == Config::Rbac {
                policy::rbac_filters(&snap)?
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

    let yaml = config::bootstrap(&ctx.template, config, &ctx.paths, &rbac)?;
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
        let (rss, peak) = procstat::rss_kb(envoy.proc.pid())?;
        let authz_rss = authz
            .as_ref()
            .map(|a| procstat::rss_kb(a.pid()))
            .transpose()?
            .map(|r| r.0);
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
fn calmest(ctx: &Ctx, mut measure: impl FnMut() -> Result<Measurement>) -> Result<Measurement> {
    let mut best = measure()?;
    for _ in 0..ctx.args.retries {
        if !best.disturbed() {
            break;
        }
        let again = measure()?;
        if again.foreign_pct() < best.foreign_pct() {
            best = again;
        }
    }
    Ok(best)
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
