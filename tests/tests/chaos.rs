//! Chaos (`scripts/chaos.sh`; ignored by a plain `cargo test`): faults injected while the load of
//! `reliability::traffic` flows, every answer checked against the policy as in the soak
//! (`reliability::oracle`). Per case: requests checked, wrong decisions of both kinds
//! (allowed-but-denied: a security violation; denied-but-allowed or unavailable: lost
//! availability), time to recover.
//!
//! Stacks, one after the other:
//! 1. Felix source (`poll_timeout_ms` 2000, rendered bootstrap edited): control SIGKILLed and
//!    restarted; control SIGSTOPped past the poll timeout; the test Felix restarting and stalling
//!    before `inSync`, resetting mid-message, sending an undecodable message (control's reconnects
//!    counted, its readiness sampled); Envoy drained and restarted (from then on through a proxy
//!    to control's socket); that proxy flipping a byte in a snapshot body.
//! 2. Calico YAML source: the policy file replaced with invalid YAML, truncated, deleted, made
//!    unreadable; a good file after each.
//! 3. wasm only: the crash switch (`debug_abort_path`, a module built with `--features chaos`,
//!    `$ALP_CHAOS_WASM`) under `failure_policy` FAIL_CLOSED and FAIL_RELOAD; and the released
//!    module refusing the key.
//!
//! `ALP_CHAOS_QUICK=1`: shorter faults, fewer repetitions (about a minute of faults, for CI).
//! `ALP_CHAOS_REPORT`: a file the report is also written to.

mod common;

use alp_e2e::http::Conn;
use alp_e2e::reliability::logscan;
use alp_e2e::reliability::oracle::{self, Summary, Timeline};
use alp_e2e::reliability::scenario::{self, change_message, state_yaml, State, INITIAL};
use alp_e2e::reliability::traffic::{Record, Targets, Traffic, TrafficOptions};
use alp_e2e::reliability::{now_ms, table};
use alp_e2e::stack::{Filter, StackOptions, Updates, WorkloadSpec};
use alp_e2e::{artifacts, Stack};
use common::{control_metric, felix_message, wait_version, wasm_counters, write_report};
use felix_sim::raw::{Behaviour, RawFelix};
use felix_sim::{FelixSim, Session};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const NAME: &str = scenario::WORKLOAD;
const WINDOW_MS: f64 = 2000.0;
const WAIT: Duration = Duration::from_secs(30);

/// One case's window and what the driver saw.
struct Case {
    name: String,
    start: f64,
    /// When the fault ended (recovery is measured from here).
    fault_end: f64,
    end: f64,
    /// Availability may be lost while the fault lasts (a crash, an Envoy restart).
    may_refuse: bool,
    note: String,
    /// Set by the driver when something the case requires did not happen.
    failure: Option<String>,
    /// Report how many answers came from a corrupted envelope the filter accepted.
    corrupt_note: bool,
}

struct Row {
    stack: &'static str,
    case: Case,
    summary: Summary,
    recover_ms: Option<f64>,
}

fn quick() -> bool {
    std::env::var("ALP_CHAOS_QUICK").is_ok_and(|v| v == "1")
}

fn secs(quick: f64, full: f64) -> Duration {
    Duration::from_secs_f64(if self::quick() { quick } else { full })
}

fn sleep(d: Duration) {
    std::thread::sleep(d)
}

/// Rewrites the rendered bootstrap and restarts Envoy on it.
fn edit_bootstrap(stack: &mut Stack, edit: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(&stack.config_file).unwrap();
    let new = edit(text.clone());
    assert_ne!(text, new, "the bootstrap edit changed nothing");
    std::fs::write(&stack.config_file, new).unwrap();
    stack
        .restart_envoy()
        .expect("Envoy restarts on the edited bootstrap");
}

fn targets(stack: &Stack) -> Targets {
    Targets {
        http: stack.addr(NAME),
        tcp: stack.tcp_addr(NAME),
    }
}

fn ready(socket: &Path) -> bool {
    alp_e2e::http::unix_get(socket, "/readyz").is_ok_and(|r| r.status == 200)
}

/// Samples control's readiness every 100 ms for `d`: (samples, not ready).
fn sample_ready(socket: &Path, d: Duration) -> (u32, u32) {
    let until = Instant::now() + d;
    let (mut n, mut not) = (0, 0);
    while Instant::now() < until {
        n += 1;
        if !ready(socket) {
            not += 1;
        }
        sleep(Duration::from_millis(100));
    }
    (n, not)
}

fn reconnects(socket: &Path) -> u64 {
    control_metric(socket, "alp_control_felix_reconnects_total").unwrap_or(0.0) as u64
}

/// The Felix side of stack 1.
struct Felix {
    rt: Runtime,
    socket: PathBuf,
    sim: Option<FelixSim>,
    session: Option<Session>,
}

impl Felix {
    fn accept(&mut self, stack: &Stack) -> &Session {
        let sim = self.sim.as_mut().expect("a test Felix");
        let s = self
            .rt
            .block_on(sim.accept_within(WAIT))
            .unwrap_or_else(|e| panic!("{e:#}; {}", stack.diagnostics(NAME)));
        self.session = Some(s);
        self.session.as_ref().unwrap()
    }

    fn send(&self, v: &serde_json::Value) {
        self.rt
            .block_on(self.session.as_ref().unwrap().send(felix_message(v)))
            .expect("control reads the stream");
    }

    fn send_state(&self, s: State) {
        for m in s.full_stream() {
            self.send(&m);
        }
    }

    /// Felix dies (connections dropped, socket removed).
    fn crash(&mut self) {
        self.session = None;
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.crash());
        }
    }

    fn restart(&mut self) {
        self.crash();
        self.sim = Some(self.rt.block_on(FelixSim::start(&self.socket)).unwrap());
    }
}

/// The states a stack goes through and when each was published.
struct Driver {
    timeline: Timeline,
    current: usize,
    control_socket: PathBuf,
    version: u64,
}

impl Driver {
    fn new(control_socket: PathBuf) -> Self {
        Driver {
            timeline: Timeline {
                states: scenario::states(400),
                ..Timeline::default()
            },
            current: 0,
            control_socket,
            version: 0,
        }
    }

    fn state(&self) -> State {
        self.timeline.states[self.current]
    }

    /// Records the version control now serves for the current state (after a restart or a
    /// new stream: same state, new version).
    /// A new stream with the same content publishes no new version: waits for control's
    /// readiness, then briefly for a new version, and keeps whatever it serves.
    fn learn_version(&mut self, stack: &Stack) -> Duration {
        let began = Instant::now();
        let deadline = began + WAIT;
        while !ready(&self.control_socket) {
            assert!(
                Instant::now() < deadline,
                "control not ready within {WAIT:?}; {}",
                stack.diagnostics(NAME)
            );
            sleep(Duration::from_millis(10));
        }
        let took = began.elapsed();
        self.version = wait_version(&self.control_socket, self.version, Duration::from_secs(1))
            .or_else(|_| wait_version(&self.control_socket, 0, WAIT))
            .unwrap_or_else(|e| panic!("{e:#}; {}", stack.diagnostics(NAME)));
        self.timeline.versions.insert(self.version, self.current);
        took
    }

    /// Publishes the next change with `send` (at the time it is called), waits for control's
    /// new version. `in_force`: false for a change whose snapshot is corrupted on the wire: the
    /// filter may refuse it (keeping the state before) or accept the envelope, so either state
    /// is right until the next clean change; every answer must still be that of the version
    /// that decided it.
    fn change(
        &mut self,
        stack: &Stack,
        in_force: bool,
        send: impl FnOnce(&serde_json::Value, State),
    ) {
        let k = self.current + 1;
        let msg = change_message(self.state(), k as u64);
        let t = now_ms();
        send(&msg, self.timeline.states[k]);
        self.current = k;
        self.version = wait_version(&self.control_socket, self.version, WAIT)
            .unwrap_or_else(|e| panic!("change {k}: {e:#}; {}", stack.diagnostics(NAME)));
        self.timeline.versions.insert(self.version, k);
        if in_force {
            self.timeline.published.push((t, k));
        } else {
            self.timeline.optional.push((t, k));
        }
    }
}

/// Where the proxy flipped bits (offset in the envelope, its length, the bit).
static WHERE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A proxy between Envoy and control's socket that, while `corrupt` is set, flips one byte of
/// each 200 body (a snapshot envelope) at a pseudo-random offset.
struct FlipProxy {
    corrupt: Arc<AtomicBool>,
    flipped: Arc<AtomicU64>,
    path: PathBuf,
}

impl FlipProxy {
    fn start(path: &Path, upstream: &Path) -> FlipProxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let corrupt = Arc::new(AtomicBool::new(false));
        let flipped = Arc::new(AtomicU64::new(0));
        let (c, f, up) = (corrupt.clone(), flipped.clone(), upstream.to_path_buf());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = UnixStream::connect(&up) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (c, f) = (c.clone(), f.clone());
                std::thread::spawn(move || relay_responses(server, client, &c, &f));
            }
        });
        FlipProxy {
            corrupt,
            flipped,
            path: path.to_path_buf(),
        }
    }
}

fn relay_responses(
    server: UnixStream,
    mut client: UnixStream,
    corrupt: &AtomicBool,
    flipped: &AtomicU64,
) {
    relay(server, &mut client, corrupt, flipped);
    // The server closed: so does the client's side (a client reading to the end of the
    // connection, the native module's, gets its EOF although the copying thread holds a clone).
    let _ = client.shutdown(std::net::Shutdown::Both);
}

fn relay(server: UnixStream, client: &mut UnixStream, corrupt: &AtomicBool, flipped: &AtomicU64) {
    let mut r = BufReader::new(server);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let status_200 = head.split_whitespace().nth(1) == Some("200");
        let len = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if status_200 && len > 0 && corrupt.load(Ordering::SeqCst) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Quick (CI): in the envelope's magic or schema, which a filter always detects;
            // full: anywhere (the envelope has no checksum: a flip in the body may decode).
            let span = if quick() { len.min(10) } else { len };
            let at = (seed % span as u64) as usize;
            body[at] ^= 1 << (seed % 8);
            flipped.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut w) = WHERE.lock() {
                w.push(format!("byte {at}/{len} bit {}", seed % 8));
            }
        }
        if client.write_all(head.as_bytes()).is_err() || client.write_all(&body).is_err() {
            return;
        }
    }
}

/// Judges every case of a stack once its load has stopped.
fn judge(
    stack_name: &'static str,
    stack: &Stack,
    records: &[Record],
    timeline: &Timeline,
    cases: Vec<Case>,
    rows: &mut Vec<Row>,
) {
    sleep(Duration::from_millis(1500));
    let decisions = logscan::read(&stack.envoy.proc.log);
    for case in cases {
        let summary = oracle::summarise(
            records, timeline, &decisions, WINDOW_MS, case.start, case.end,
        );
        let last = oracle::last_refusal(
            records,
            timeline,
            &decisions,
            WINDOW_MS,
            case.fault_end,
            case.end,
        );
        let recover_ms = Some(last.map_or(0.0, |l| (l - case.fault_end).max(0.0)));
        let mut case = case;
        if case.corrupt_note {
            case.note.push_str(&format!(
                "; {} answers decided with a corrupted envelope the filter accepted, each as that version's policy says",
                summary.optional_pinned
            ));
        }
        if case.may_refuse {
            let during: Vec<&Record> = records
                .iter()
                .filter(|r| r.sent_ms >= case.start && r.sent_ms < case.fault_end)
                .collect();
            let served = during.iter().filter(|r| r.answer.is_allowed()).count();
            let first = oracle::first_refusal(
                records, timeline, &decisions, WINDOW_MS, case.start, case.end,
            );
            case.note.push_str(&format!(
                "; during the fault {} requests, {served} served{}",
                during.len(),
                match (first, last) {
                    (Some(f), Some(l)) => format!(
                        ", refusals of allowed requests from +{:.0} to +{:.0} ms",
                        f - case.start,
                        l - case.start
                    ),
                    _ => String::new(),
                }
            ));
        }
        rows.push(Row {
            stack: stack_name,
            case,
            summary,
            recover_ms,
        });
    }
}

fn felix_stack(rows: &mut Vec<Row>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let socket = std::env::temp_dir().join(format!("alp-chaos-felix-{}.sock", std::process::id()));
    let sim = rt.block_on(FelixSim::start(&socket)).unwrap();
    let mut felix = Felix {
        rt,
        socket: socket.clone(),
        sim: Some(sim),
        session: None,
    };
    let mut stack = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new(
            NAME,
            Updates::FelixSocket(socket.clone()),
        )],
        wait_synced: false,
        plugin_options: r#""decision_log":"all","decision_log_max_per_second":0"#.into(),
        ..StackOptions::default()
    })
    .expect("start the stack");
    // A short poll timeout, so a stopped control outlasts it.
    edit_bootstrap(&mut stack, |t| {
        t.replace("\"poll_timeout_ms\":20000", "\"poll_timeout_ms\":2000")
    });
    let ctl = stack.workload(NAME).control_socket.clone();
    let mut d = Driver::new(ctl.clone());
    felix.accept(&stack);
    let t0 = now_ms();
    felix.send_state(INITIAL);
    d.learn_version(&stack);
    d.timeline.published.push((t0, 0));
    stack.wait_synced(NAME, WAIT).unwrap();
    let traffic = Traffic::start(
        targets(&stack),
        TrafficOptions {
            http_rate: 1200.0,
            tcp_rate: 100.0,
            ..TrafficOptions::default()
        },
    );
    let mut cases = vec![];
    sleep(Duration::from_secs(1));

    // Control SIGKILLed and restarted.
    let kills = if quick() { 2 } else { 5 };
    for i in 0..kills {
        let start = now_ms();
        stack.kill_control(NAME);
        sleep(secs(0.7, 1.5));
        felix.session = None;
        stack.start_control(NAME, WAIT).unwrap();
        felix.accept(&stack);
        felix.send_state(d.state());
        d.learn_version(&stack);
        let fault_end = now_ms();
        let ready_after = fault_end - start;
        // A change right after: the new stream is followed.
        d.change(&stack, true, |m, _| felix.send(m));
        sleep(Duration::from_millis(700));
        cases.push(Case {
            name: format!("control SIGKILL + restart #{}", i + 1),
            start,
            fault_end,
            end: now_ms(),
            may_refuse: false,
            note: format!("restarted control ready {ready_after:.0} ms after the kill; a change after it enforced"),
            failure: None,
            corrupt_note: false,
        });
    }

    // Control SIGSTOPped for longer than the poll timeout (2 s; the callout's own timeout is 7 s).
    {
        let stop_for = secs(3.0, 9.0);
        let start = now_ms();
        let pid = stack.control(NAME).unwrap().proc.pid();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        sleep(stop_for);
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        let fault_end = now_ms();
        let t = Instant::now();
        d.change(&stack, true, |m, _| felix.send(m));
        let took = t.elapsed();
        sleep(Duration::from_millis(1500));
        cases.push(Case {
            name: format!("control SIGSTOP {:.0} s", stop_for.as_secs_f64()),
            start,
            fault_end,
            end: now_ms(),
            may_refuse: false,
            note: format!(
                "after SIGCONT a change was published in {:.0} ms and enforced",
                took.as_secs_f64() * 1000.0
            ),
            failure: None,
            corrupt_note: false,
        });
    }

    // The test Felix restarts and stalls in the middle of its state (before inSync).
    {
        let stall = secs(3.0, 8.0);
        let start = now_ms();
        felix.restart();
        felix.accept(&stack);
        let msgs = d.state().full_stream();
        for m in &msgs[..msgs.len() / 2] {
            felix.send(m);
        }
        let (n, not_ready) = sample_ready(&ctl, stall);
        for m in &msgs[msgs.len() / 2..] {
            felix.send(m);
        }
        let fault_end = now_ms();
        let ready_ms = d.learn_version(&stack).as_secs_f64() * 1000.0;
        sleep(Duration::from_millis(1000));
        let failure = (not_ready + 3 < n).then(|| {
            format!(
                "control ready in {} of {n} samples during the stall",
                n - not_ready
            )
        });
        cases.push(Case {
            name: format!("Felix stalls mid-state {:.0} s", stall.as_secs_f64()),
            start,
            fault_end,
            end: now_ms(),
            may_refuse: false,
            note: format!("control not ready in {not_ready}/{n} samples during the stall; ready again {ready_ms:.0} ms after the rest arrived"),
            failure,
            corrupt_note: false,
        });
    }

    // The test Felix resets mid-message, then sends an undecodable message.
    for (behaviour, label) in [
        (Behaviour::ResetMidMessage, "Felix resets mid-message"),
        (Behaviour::Undecodable, "Felix sends an undecodable message"),
    ] {
        let dur = secs(4.0, 10.0);
        let start = now_ms();
        felix.crash();
        let before = reconnects(&ctl);
        let raw = felix
            .rt
            .block_on(RawFelix::start(&socket, behaviour))
            .unwrap();
        let (n, not_ready) = sample_ready(&ctl, dur);
        let syncs = raw.syncs();
        let recon = reconnects(&ctl) - before;
        drop(raw);
        felix.sim = Some(felix.rt.block_on(FelixSim::start(&socket)).unwrap());
        felix.accept(&stack);
        felix.send_state(d.state());
        let fault_end = now_ms();
        let back = d.learn_version(&stack).as_secs_f64() * 1000.0;
        sleep(Duration::from_millis(1000));
        let per_s = syncs as f64 / dur.as_secs_f64();
        // Backoff 100 ms doubling to 5 s: a handful of attempts, never a tight loop.
        let bound = 3 + (dur.as_secs_f64() * 1.5) as u64;
        let mut failure = None;
        if syncs > bound {
            failure = Some(format!(
                "{syncs} Sync calls in {:.0} s: no backoff (bound {bound})",
                dur.as_secs_f64()
            ));
        } else if syncs == 0 {
            failure = Some("control never called the hostile Felix".into());
        } else if not_ready * 10 < n * 7 {
            failure = Some(format!("control ready in {} of {n} samples", n - not_ready));
        }
        cases.push(Case {
            name: format!("{label} ({:.0} s)", dur.as_secs_f64()),
            start,
            fault_end,
            end: now_ms(),
            may_refuse: false,
            note: format!("{syncs} Sync calls ({per_s:.1}/s; control counted {recon} reconnects), not ready {not_ready}/{n} samples; ready again {back:.0} ms after a good Felix returned"),
            failure,
            corrupt_note: false,
        });
    }

    // Envoy drained and restarted on the same config (now through the byte-flipping proxy).
    let proxy = FlipProxy::start(&stack.run_dir().join("flip-proxy.sock"), &ctl);
    {
        let start = now_ms();
        let drained = Conn::tcp(stack.envoy.admin, None, Duration::from_secs(5))
            .and_then(|mut c| c.request("POST", "/drain_listeners?graceful", &[]))
            .map(|r| r.status)
            .unwrap_or(0);
        sleep(Duration::from_millis(500));
        let ctl_s = ctl.display().to_string();
        let proxy_s = proxy.path.display().to_string();
        edit_bootstrap(&mut stack, |t| {
            // The wasm filter reaches control through the cluster, the native module directly.
            t.replace(
                &format!("path: \"{ctl_s}\""),
                &format!("path: \"{proxy_s}\""),
            )
            .replace(&format!("\"unix:{ctl_s}\""), &format!("\"unix:{proxy_s}\""))
        });
        traffic.retarget(targets(&stack));
        let fault_end = now_ms();
        stack.wait_synced(NAME, WAIT).unwrap();
        sleep(Duration::from_millis(1500));
        cases.push(Case {
            name: "Envoy drained + restarted".into(),
            start,
            fault_end,
            end: now_ms(),
            may_refuse: true,
            note: format!("POST /drain_listeners?graceful -> {drained}; new Envoy (new ports) fetched the snapshot through the proxy"),
            failure: None,
            corrupt_note: false,
        });
    }

    // A snapshot corrupted on the wire: one flipped bit in each 200 body (quick: in its header).
    {
        let start = now_ms();
        let refusals = |s: &Stack| {
            wasm_counters(s)
                .get("wasmcustom.alp_snapshot_refusals_total")
                .copied()
                .unwrap_or(0)
        };
        let r0 = refusals(&stack);
        proxy.corrupt.store(true, Ordering::SeqCst);
        let mut flips = 0;
        for _ in 0..if quick() { 2 } else { 5 } {
            // Optional: the filter refuses the corrupted envelope and keeps its version (and
            // is not sent it again), or accepts one whose flipped byte still decodes.
            d.change(&stack, false, |m, _| felix.send(m));
            sleep(Duration::from_millis(800));
            flips = proxy.flipped.load(Ordering::SeqCst);
        }
        proxy.corrupt.store(false, Ordering::SeqCst);
        let r1 = refusals(&stack);
        let fault_end = now_ms();
        d.change(&stack, true, |m, _| felix.send(m));
        sleep(Duration::from_millis(1500));
        let native = artifacts::Artefact::from_env() == artifacts::Artefact::Native;
        cases.push(Case {
            name: if quick() { "snapshot corrupted on the wire (header)".into() } else { "snapshot corrupted on the wire (anywhere)".into() },
            start,
            fault_end,
            end: now_ms(),
            may_refuse: false,
            note: format!(
                "{flips} bodies with a flipped bit ({}); filter refusals {}; next clean change enforced",
                WHERE.lock().map(|w| w.join(", ")).unwrap_or_default(),
                if native { "(native: not in wasm stats)".to_string() } else { format!("{}", r1 - r0) }
            ),
            corrupt_note: true,
            failure: (flips == 0).then(|| "no body was corrupted".to_string()),
        });
    }

    let (records, _) = traffic.stop();
    let timeline = d.timeline.clone();
    judge("felix", &stack, &records, &timeline, cases, rows);
    felix.crash();
}

fn yaml_stack(rows: &mut Vec<Row>) {
    let dir = std::env::temp_dir().join(format!("alp-chaos-yaml-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    let inventory = dir.join("workloads.yaml");
    std::fs::write(&inventory, scenario::INVENTORY_YAML).unwrap();
    let mut d = Driver::new(PathBuf::new());
    let states = d.timeline.states.clone();
    let verified = scenario::verify_yaml_with_control(
        &artifacts::control().unwrap(),
        &dir,
        &states[..12],
        state_yaml,
    )
    .expect("the YAML states decide as the oracle says");
    std::fs::write(&policy, state_yaml(INITIAL)).unwrap();
    let t0 = now_ms();
    let stack = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new(
            NAME,
            Updates::Policy {
                paths: vec![policy.clone(), inventory.clone()],
                workload: format!("default/{NAME}"),
            },
        )],
        plugin_options: r#""decision_log":"all","decision_log_max_per_second":0"#.into(),
        ..StackOptions::default()
    })
    .expect("start the stack");
    d.control_socket = stack.workload(NAME).control_socket.clone();
    d.learn_version(&stack);
    d.timeline.published.push((t0, 0));
    let traffic = Traffic::start(
        targets(&stack),
        TrafficOptions {
            http_rate: 1200.0,
            tcp_rate: 100.0,
            ..TrafficOptions::default()
        },
    );
    let mut cases = vec![];
    sleep(Duration::from_secs(1));
    let write = |s: State| {
        let tmp = policy.with_extension("tmp");
        std::fs::write(&tmp, state_yaml(s)).unwrap();
        std::fs::rename(&tmp, &policy).unwrap();
    };
    // A good edit first: reloads work.
    {
        let start = now_ms();
        d.change(&stack, true, |_, s| write(s));
        sleep(Duration::from_millis(1000));
        cases.push(Case { name: "policy file: good edit".into(), start, fault_end: start, end: now_ms(), may_refuse: false, note: format!("reloaded; oracle checked against control check on {verified} (state, request) pairs"), failure: None, corrupt_note: false });
    }
    let hold = secs(2.0, 5.0);
    type Fault<'a> = Box<dyn Fn() + 'a>;
    let bad: Vec<(&str, Fault)> = vec![
        (
            "replaced with invalid YAML",
            Box::new(|| {
                std::fs::write(&policy, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nspec: [unclosed\n  selector: {\n").unwrap()
            }),
        ),
        (
            "truncated",
            Box::new(|| {
                let y = state_yaml(INITIAL);
                let cut = y.find("prefix: /allowed").unwrap() + 4;
                std::fs::write(&policy, &y[..cut]).unwrap()
            }),
        ),
        (
            "deleted",
            Box::new(|| std::fs::remove_file(&policy).unwrap()),
        ),
        (
            "made unreadable (chmod 000)",
            Box::new(|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o000)).unwrap()
            }),
        ),
    ];
    for (label, fault) in bad {
        let start = now_ms();
        let before = d.version;
        fault();
        sleep(hold);
        let after =
            control_metric(&d.control_socket, "alp_control_snapshot_version").unwrap_or(0.0) as u64;
        let fault_end = now_ms();
        {
            use std::os::unix::fs::PermissionsExt;
            if policy.exists() {
                let _ = std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644));
            }
        }
        let t = Instant::now();
        d.change(&stack, true, |_, s| write(s));
        let took = t.elapsed();
        sleep(Duration::from_millis(1000));
        let root = unsafe { libc::geteuid() } == 0;
        let mut note = format!(
            "version {} during the fault; a good file {:.0} ms later was loaded",
            if after == before {
                "unchanged (last good policy kept)"
            } else {
                "CHANGED"
            },
            took.as_secs_f64() * 1000.0
        );
        if label.contains("chmod") && root {
            note.push_str("; as root the mode does not stop reads (the content was unchanged)");
        }
        cases.push(Case {
            name: format!("policy file {label}"),
            start,
            fault_end,
            end: now_ms(),
            may_refuse: false,
            note,
            failure: (after != before)
                .then(|| "control published a new version from a bad file".to_string()),
            corrupt_note: false,
        });
    }
    let (records, _) = traffic.stop();
    let timeline = d.timeline.clone();
    judge("yaml", &stack, &records, &timeline, cases, rows);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The crash switch under `policy` (FAIL_CLOSED or FAIL_RELOAD).
fn crash_stack(policy: &str, rows: &mut Vec<Row>) {
    let Some(wasm) = std::env::var_os("ALP_CHAOS_WASM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        panic!("ALP_CHAOS_WASM must name the module built with --features chaos (scripts/chaos.sh builds it)");
    };
    let mut d = Driver::new(PathBuf::new());
    let stack_opts = StackOptions {
        workloads: vec![WorkloadSpec::new(NAME, Updates::Messages(INITIAL.full_stream()))],
        filter: Filter::Module(wasm),
        plugin_options: r#""decision_log":"all","decision_log_max_per_second":0,"debug_abort_path":"/__alp_abort""#.into(),
        ..StackOptions::default()
    };
    let t0 = now_ms();
    let mut stack = Stack::start(stack_opts).expect("start the stack");
    if policy != "FAIL_CLOSED" {
        edit_bootstrap(&mut stack, |t| {
            t.replace(
                "failure_policy: FAIL_CLOSED",
                &format!("failure_policy: {policy}"),
            )
        });
        stack.wait_synced(NAME, WAIT).unwrap();
    }
    d.control_socket = stack.workload(NAME).control_socket.clone();
    d.learn_version(&stack);
    d.timeline.published.push((t0, 0));
    let traffic = Traffic::start(
        targets(&stack),
        TrafficOptions {
            http_rate: 1200.0,
            tcp_rate: 100.0,
            ..TrafficOptions::default()
        },
    );
    sleep(Duration::from_secs(1));
    let vm0 = wasm_counters(&stack);
    let start = now_ms();
    // Crash the VM of every worker: abort requests on fresh connections until both workers
    // have taken some.
    let mut aborts = 0;
    let per_worker0 = stack
        .envoy
        .worker_stats(&format!("inbound_{NAME}"), "downstream_cx_total", 2)
        .unwrap_or_default();
    for _ in 0..40 {
        let _ = Conn::tcp(stack.addr(NAME), None, Duration::from_secs(2))
            .and_then(|mut c| c.request("GET", "/__alp_abort", &[]));
        aborts += 1;
        let w = stack
            .envoy
            .worker_stats(&format!("inbound_{NAME}"), "downstream_cx_total", 2)
            .unwrap_or_default();
        if aborts >= 4
            && w.len() == 2
            && per_worker0.len() == 2
            && w[0] > per_worker0[0] + 2
            && w[1] > per_worker0[1] + 2
        {
            break;
        }
    }
    let crashed = now_ms();
    let observe = secs(4.0, 8.0);
    sleep(observe);
    let vm1 = wasm_counters(&stack);
    let stat = |m: &std::collections::BTreeMap<String, u64>, k: &str| {
        m.iter()
            .filter(|(n, _)| n.ends_with(k))
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    let (fault_end, note) = if policy == "FAIL_CLOSED" {
        // Refused until Envoy restarts.
        let t = now_ms();
        stack.restart_envoy().unwrap();
        traffic.retarget(targets(&stack));
        stack.wait_synced(NAME, WAIT).unwrap();
        (
            t,
            format!(
                "{aborts} abort requests; refused for the {:.0} s observed, then Envoy restarted",
                observe.as_secs_f64()
            ),
        )
    } else {
        (crashed, format!(
            "{aborts} abort requests; Envoy reloaded VMs itself (vm_reload {} -> {}, vm_reload_success {} -> {})",
            stat(&vm0, ".vm_reload"), stat(&vm1, ".vm_reload"), stat(&vm0, ".vm_reload_success"), stat(&vm1, ".vm_reload_success")
        ))
    };
    sleep(Duration::from_millis(2000));
    let cases = vec![Case {
        name: format!("VM crash, {policy}"),
        start,
        fault_end,
        end: now_ms(),
        may_refuse: true,
        note,
        failure: None,
        corrupt_note: false,
    }];
    let (records, _) = traffic.stop();
    let timeline = d.timeline.clone();
    judge("crash", &stack, &records, &timeline, cases, rows);
}

/// The released module refuses the crash switch's key.
fn released_refuses_key() -> (bool, String) {
    let r = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new(
            NAME,
            Updates::Messages(INITIAL.full_stream()),
        )],
        plugin_options: r#""debug_abort_path":"/__alp_abort""#.into(),
        wait_synced: false,
        ready_timeout: Duration::from_secs(8),
        ..StackOptions::default()
    });
    match r {
        Err(e) => {
            let text = format!("{e:#}");
            let named = text.contains("debug_abort_path");
            let line = text
                .lines()
                .find(|l| l.contains("debug_abort_path"))
                .unwrap_or("")
                .trim();
            let line: String = line
                .chars()
                .rev()
                .take(160)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            (
                named,
                format!("Envoy did not start with it; the log names the key: {named}: ...{line}"),
            )
        }
        Ok(stack) => {
            sleep(Duration::from_secs(2));
            let o = alp_e2e::http::get_once(stack.addr(NAME), None, "/allowed/x");
            let log = std::fs::read_to_string(&stack.envoy.proc.log).unwrap_or_default();
            let said = log.contains("debug_abort_path");
            let served = o.as_ref().is_ok_and(|r| r.status == 200);
            let abort = alp_e2e::http::get_once(stack.addr(NAME), None, "/__alp_abort")
                .map(|r| r.summary());
            (
                !served && said,
                format!(
                    "released module: /allowed/x -> {}, /__alp_abort -> {}; Envoy log names the key: {said}",
                    o.map(|r| r.summary()).unwrap_or_else(|e| format!("{e:#}")),
                    abort.unwrap_or_else(|e| format!("{e:#}"))
                ),
            )
        }
    }
}

#[test]
#[ignore = "fault injection: scripts/chaos.sh"]
fn chaos() {
    let artefact = artifacts::Artefact::from_env();
    let mut rows = vec![];
    let began = Instant::now();
    felix_stack(&mut rows);
    yaml_stack(&mut rows);
    let mut extra = vec![];
    let mut ok = true;
    if artefact == artifacts::Artefact::Wasm {
        crash_stack("FAIL_CLOSED", &mut rows);
        crash_stack("FAIL_RELOAD", &mut rows);
        let (refused, what) = released_refuses_key();
        ok &= refused;
        extra.push(format!(
            "crash switch in the released module: {} ({what})",
            if refused { "refused" } else { "NOT REFUSED" }
        ));
    } else {
        extra.push("native: no failure_policy and no crash switch in the native module (filter/native is not built with one); crash cases skipped".into());
    }
    let mut table_rows = vec![];
    let (mut total, mut wrong_total, mut security_total) = (0, 0, 0);
    for r in &rows {
        let s = &r.summary;
        let refused_allowed = s.refused_allowed();
        let case_ok = s.security == 0
            && s.stale == 0
            && (r.case.may_refuse || refused_allowed == 0)
            && r.case.failure.is_none();
        ok &= case_ok;
        total += s.checked;
        security_total += s.security;
        wrong_total += s.security
            + s.stale
            + if r.case.may_refuse {
                0
            } else {
                refused_allowed
            };
        table_rows.push(vec![
            r.stack.to_string(),
            r.case.name.clone(),
            s.checked.to_string(),
            s.security.to_string(),
            format!(
                "{refused_allowed}{}",
                if r.case.may_refuse { " (expected)" } else { "" }
            ),
            s.stale.to_string(),
            r.recover_ms.map_or("-".into(), |m| format!("{m:.0} ms")),
            if case_ok {
                "ok".into()
            } else {
                format!("FAIL {}", r.case.failure.clone().unwrap_or_default())
            },
            r.case.note.clone(),
        ]);
    }
    let mut report = table(
        &[
            "stack",
            "case",
            "checked",
            "allowed-but-denied",
            "denied/failed-but-allowed",
            "stale",
            "recovered",
            "result",
            "what happened",
        ],
        &table_rows,
    );
    for r in &rows {
        for e in r.summary.examples.iter().take(3) {
            if !r.case.may_refuse || e.starts_with("Security") {
                report.push_str(&format!("\n  {}: {e}", r.case.name));
            }
        }
    }
    for e in &extra {
        report.push_str(&format!("\n{e}"));
    }
    report.push_str(&format!(
        "\nwindow W = {WINDOW_MS:.0} ms; recovery: from the end of the fault to the last refused request allowed by policy; {:.0} s in all",
        began.elapsed().as_secs_f64()
    ));
    report.push_str(&format!(
        "\nchaos: {} cases, {total} requests checked, {wrong_total} wrong decisions ({security_total} allowed-but-denied), {}",
        rows.len(),
        if ok { "all passed" } else { "FAILED" }
    ));
    write_report("ALP_CHAOS_REPORT", &report);
    assert!(ok, "a chaos case failed (see the table)");
}
