//! The results: the JSON model, the markdown tables with ratios to the baselines of the same run,
//! and the targets. The traffic variants' tables are in `report/traffic.rs`, the memory table in
//! `report/memory.rs`, the perf profile's (`--profile`) in `report/profile.rs`, propagation's
//! (`--propagation`) in `report/propagation.rs`. Fields added
//! since the first results default when absent, so older JSON (`bench/results/before.json`)
//! still renders.

mod memory;
mod profile;
mod propagation;
mod traffic;

pub use memory::{one_line as memory_line, MemoryMeta, MemoryRow};
pub use profile::{one_line as profile_line, DsoShare, Profile};
pub use propagation::{one_line as propagation_line, PropagationRow};
pub use traffic::{best_variants_of_rounds, one_line as traffic_line, TrafficMeta, VariantRow};

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Rule count the wasm filter's targets are judged at.
pub const TARGET_RULES: usize = 1000;
/// The native module's targets: throughput at least this times native RBAC's at one rule, and
/// this times no filter's at every rule count; Envoy's RSS at [`NATIVE_RSS_RULES`] rules at most
/// no filter's + [`NATIVE_RSS_EXTRA_MB`], whatever the worker count.
pub const NATIVE_X_RBAC: f64 = 1.0;
pub const NATIVE_X_NONE: f64 = 0.95;
pub const NATIVE_RSS_RULES: usize = 10_000;
pub const NATIVE_RSS_EXTRA_MB: f64 = 25.0;
/// A window during which other processes used more of Envoy's CPU than this is flagged.
pub const FOREIGN_CPU_FLAG_PCT: f64 = 5.0;

/// JSON has no NaN: serde_json writes it as `null`; read `null` back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// `wrk` or `alp-bench` (the bench's own generator).
    pub generator: String,
    pub requests: u64,
    pub non_2xx: u64,
    pub errors: u64,
    /// Open loop: scheduled requests never sent (the configuration could not keep the rate).
    pub unsent: u64,
    pub seconds: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub rps: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub p50_us: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub p99_us: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub p999_us: f64,
    /// Envoy's CPU time (all threads) per request.
    #[serde(deserialize_with = "f64_or_nan")]
    pub envoy_cpu_us_per_req: f64,
    /// ext_authz: the authz server's CPU time per request.
    pub authz_cpu_us_per_req: Option<f64>,
    /// How busy Envoy's CPU was, and how much of it went to other processes.
    pub cpu0_busy_pct: f64,
    pub cpu0_foreign_pct: f64,
    /// Share of the load generator's CPU used by other processes.
    #[serde(default)]
    pub cpu1_foreign_pct: f64,
}

impl Measurement {
    /// CPU per request of the whole authorization path (Envoy, plus the authz server).
    pub fn total_cpu_us(&self) -> f64 {
        self.envoy_cpu_us_per_req + self.authz_cpu_us_per_req.unwrap_or(0.0)
    }

    /// The larger share of either CPU that other processes used during the window.
    pub fn foreign_pct(&self) -> f64 {
        self.cpu0_foreign_pct.max(self.cpu1_foreign_pct)
    }

    pub fn disturbed(&self) -> bool {
        self.foreign_pct() > FOREIGN_CPU_FLAG_PCT
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub config: String,
    pub label: String,
    /// `None` for configurations without a policy (no filter, no-op wasm).
    pub rules: Option<usize>,
    pub transport: String,
    /// Closed loop, maximum throughput.
    pub closed: Measurement,
    /// Open loop at the fixed rate.
    pub open: Measurement,
    pub envoy_rss_kb: u64,
    pub envoy_rss_peak_kb: u64,
    pub authz_rss_kb: Option<u64>,
    /// `--profile`: where Envoy's CPU went in an extra window (plaintext rows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

impl Row {
    /// The open-loop rate is beyond what this configuration can do (its closed-loop maximum is
    /// within 10% of it, or requests were left unsent): its open-loop latencies measure a queue.
    pub fn open_saturated(&self, rate: f64) -> bool {
        self.open.unsent > 0 || self.closed.rps < rate * 1.1
    }
}

/// The throughput of long connections through a TCP listener, over one window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Throughput {
    /// Long-lived connections, and the bytes of each write.
    pub streams: usize,
    pub chunk_bytes: usize,
    /// Bytes echoed back to the client in the window.
    pub bytes: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Echoed bytes per second, in MB (10^6 bytes).
    #[serde(deserialize_with = "f64_or_nan")]
    pub mb_per_s: f64,
    /// Envoy's CPU time per MB echoed.
    #[serde(deserialize_with = "f64_or_nan")]
    pub envoy_cpu_us_per_mb: f64,
    /// ext_authz: the authz server's CPU time per MB (it is not on the data path).
    pub authz_cpu_us_per_mb: Option<f64>,
    pub cpu0_busy_pct: f64,
    pub cpu0_foreign_pct: f64,
    pub cpu1_foreign_pct: f64,
}

impl Throughput {
    pub fn foreign_pct(&self) -> f64 {
        self.cpu0_foreign_pct.max(self.cpu1_foreign_pct)
    }

    pub fn disturbed(&self) -> bool {
        self.foreign_pct() > FOREIGN_CPU_FLAG_PCT
    }
}

/// One configuration (and rule count) on one transport of the raw TCP listeners.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TcpRow {
    pub config: String,
    pub label: String,
    pub rules: Option<usize>,
    pub transport: String,
    /// The connection-rate loop: here `requests` are connections (each a short exchange), `rps`
    /// connections per second, the latencies run from connect to the echo, and the CPU figures
    /// are per connection.
    pub connect: Measurement,
    /// Long connections; `None` when not measured.
    pub stream: Option<Throughput>,
    /// mTLS: the listener's TLS handshakes over the setup's windows (Envoy's `ssl.handshake`)
    /// and how many of them resumed a session (`ssl.session_reused`).
    #[serde(default)]
    pub tls_sessions: Option<(u64, u64)>,
    pub envoy_rss_kb: u64,
    pub envoy_rss_peak_kb: u64,
    pub authz_rss_kb: Option<u64>,
}

impl TcpRow {
    pub fn disturbed(&self) -> bool {
        self.connect.disturbed() || self.stream.as_ref().is_some_and(Throughput::disturbed)
    }

    fn mb_per_s(&self) -> Option<f64> {
        self.stream.as_ref().map(|s| s.mb_per_s)
    }
}

/// The TCP windows' settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TcpMeta {
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Concurrent workers of the connection-rate loop.
    pub workers: usize,
    pub streams: usize,
    pub chunk_bytes: usize,
    pub message_bytes: usize,
    /// mTLS clients resume TLS sessions when they hold a ticket (false: a full handshake per
    /// connection).
    pub resumption: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub date_utc: String,
    pub git: String,
    pub envoy: String,
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    #[serde(default = "one")]
    pub rounds: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub open_rate: f64,
    pub pinned: bool,
    pub wasm_bytes: u64,
    pub wasm_fnv64: String,
    /// The native module's size and hash, when it was measured.
    #[serde(default)]
    pub native_bytes: Option<u64>,
    #[serde(default)]
    pub native_fnv64: Option<String>,
    pub load_before: f64,
    pub load_after: f64,
    pub seconds: f64,
    pub note: String,
    pub notes: Vec<String>,
    /// Set when TCP was measured.
    #[serde(default)]
    pub tcp: Option<TcpMeta>,
    /// Set when traffic variants were measured.
    #[serde(default)]
    pub traffic: Option<TrafficMeta>,
    /// Set when memory-only Envoys were measured (`--concurrency` other than 1 alone).
    #[serde(default)]
    pub memory: Option<MemoryMeta>,
}

fn one() -> usize {
    1
}

/// One row per cell from several rounds: the closed loop of the round with the highest
/// throughput, the open loop of the round with the lowest p99 (memory from the former).
pub fn best_of_rounds(rows: Vec<Row>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for r in rows {
        match out
            .iter_mut()
            .find(|o| o.config == r.config && o.rules == r.rules && o.transport == r.transport)
        {
            None => out.push(r),
            Some(o) => {
                if o.profile.is_none() {
                    o.profile = r.profile.clone();
                }
                if r.open.p99_us < o.open.p99_us || o.open.p99_us.is_nan() {
                    o.open = r.open.clone();
                }
                if r.closed.rps > o.closed.rps {
                    o.closed = r.closed;
                    o.envoy_rss_kb = r.envoy_rss_kb;
                    o.envoy_rss_peak_kb = r.envoy_rss_peak_kb;
                    o.authz_rss_kb = r.authz_rss_kb;
                }
            }
        }
    }
    out
}

/// [`best_of_rounds`] for TCP rows: the highest connection rate, the highest throughput.
pub fn best_tcp_of_rounds(rows: Vec<TcpRow>) -> Vec<TcpRow> {
    let mut out: Vec<TcpRow> = Vec::new();
    for r in rows {
        match out
            .iter_mut()
            .find(|o| o.config == r.config && o.rules == r.rules && o.transport == r.transport)
        {
            None => out.push(r),
            Some(o) => {
                let better = match (r.mb_per_s(), o.mb_per_s()) {
                    (Some(a), Some(b)) => a > b,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if better {
                    o.stream = r.stream.clone();
                }
                if r.connect.rps > o.connect.rps {
                    o.connect = r.connect;
                    o.envoy_rss_kb = r.envoy_rss_kb;
                    o.envoy_rss_peak_kb = r.envoy_rss_peak_kb;
                    o.authz_rss_kb = r.authz_rss_kb;
                }
            }
        }
    }
    out
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetCheck {
    pub transport: String,
    pub target: String,
    pub measured: String,
    #[serde(deserialize_with = "f64_or_nan")]
    pub value: f64,
    pub limit: f64,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub meta: Meta,
    pub rows: Vec<Row>,
    pub targets: Vec<TargetCheck>,
    /// The raw TCP listeners' rows (empty when TCP was not measured).
    #[serde(default)]
    pub tcp_rows: Vec<TcpRow>,
    /// The HTTP cells with other traffic than the default (closed loop only).
    #[serde(default)]
    pub variants: Vec<VariantRow>,
    /// The memory-only Envoys' rows.
    #[serde(default)]
    pub memory: Vec<MemoryRow>,
    /// `--propagation`: policy change to enforcement on every worker.
    #[serde(default)]
    pub propagation: Vec<PropagationRow>,
}

impl RunReport {
    pub fn new(
        meta: Meta,
        rows: Vec<Row>,
        tcp_rows: Vec<TcpRow>,
        variants: Vec<VariantRow>,
        memory: Vec<MemoryRow>,
    ) -> Self {
        let mut run = RunReport {
            meta,
            rows,
            targets: vec![],
            tcp_rows,
            variants,
            memory,
            propagation: vec![],
        };
        run.targets = targets(&run);
        run
    }

    /// With propagation's rows (and the targets judged again).
    pub fn with_propagation(mut self, rows: Vec<PropagationRow>) -> Self {
        self.propagation = rows;
        self.targets = targets(&self);
        self
    }

    pub fn find(&self, config: &str, rules: Option<usize>, transport: &str) -> Option<&Row> {
        find_row(&self.rows, config, rules, transport)
    }

    pub fn transports(&self) -> Vec<String> {
        transports_of(&self.rows)
    }

    pub fn rule_counts(&self) -> Vec<usize> {
        rule_counts_of(&self.rows)
    }

    pub fn find_tcp(&self, config: &str, rules: Option<usize>, transport: &str) -> Option<&TcpRow> {
        find_row(&self.tcp_rows, config, rules, transport)
    }

    pub fn tcp_transports(&self) -> Vec<String> {
        transports_of(&self.tcp_rows)
    }

    pub fn tcp_rule_counts(&self) -> Vec<usize> {
        rule_counts_of(&self.tcp_rows)
    }
}

/// What a result row (HTTP or TCP) is keyed by.
trait Keyed {
    fn config(&self) -> &str;
    fn transport(&self) -> &str;
    fn rules(&self) -> Option<usize>;
}

impl Keyed for Row {
    fn config(&self) -> &str {
        &self.config
    }
    fn transport(&self) -> &str {
        &self.transport
    }
    fn rules(&self) -> Option<usize> {
        self.rules
    }
}

impl Keyed for VariantRow {
    fn config(&self) -> &str {
        &self.config
    }
    fn transport(&self) -> &str {
        &self.transport
    }
    fn rules(&self) -> Option<usize> {
        self.rules
    }
}

impl Keyed for TcpRow {
    fn config(&self) -> &str {
        &self.config
    }
    fn transport(&self) -> &str {
        &self.transport
    }
    fn rules(&self) -> Option<usize> {
        self.rules
    }
}

/// The row of `config` on `transport` at `rules` (a configuration without a policy matches any
/// rule count).
fn find_row<'a, R: Keyed>(
    rows: &'a [R],
    config: &str,
    rules: Option<usize>,
    transport: &str,
) -> Option<&'a R> {
    rows.iter().find(|r| {
        r.config() == config
            && r.transport() == transport
            && (r.rules().is_none() || r.rules() == rules)
    })
}

/// The transports of `rows`, in first-seen order.
fn transports_of<R: Keyed>(rows: &[R]) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    for r in rows {
        if !t.iter().any(|x| x == r.transport()) {
            t.push(r.transport().to_string());
        }
    }
    t
}

/// The rule counts of `rows`, sorted, each once.
fn rule_counts_of<R: Keyed>(rows: &[R]) -> Vec<usize> {
    let mut v: Vec<usize> = rows.iter().filter_map(Keyed::rules).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A row's memory cell: Envoy's RSS in MB, `+` the authz server's when there is one.
fn rss_mb(envoy_kb: u64, authz_kb: Option<u64>) -> String {
    let mb = |kb: u64| kb as f64 / 1024.0;
    match authz_kb {
        Some(a) => format!("{:.1} + {:.1}", mb(envoy_kb), mb(a)),
        None => format!("{:.1}", mb(envoy_kb)),
    }
}

fn targets(run: &RunReport) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    let n = Some(TARGET_RULES);
    for t in run.transports() {
        let alp = run.find("alp", n, &t);
        let rbac = run.find("rbac", n, &t);
        let authz = run.find("ext_authz", n, &t);
        let none = run.find("none", None, &t);
        let ratio = |other: Option<&Row>| match (alp, other) {
            (Some(a), Some(o)) => Some(a.closed.rps / o.closed.rps),
            _ => None,
        };
        let check =
            |target: &str, measured: String, value: Option<f64>, limit: f64, at_least: bool| {
                TargetCheck {
                    transport: t.clone(),
                    target: target.into(),
                    measured,
                    value: value.unwrap_or(f64::NAN),
                    limit,
                    met: value.map(|v| if at_least { v >= limit } else { v <= limit }),
                }
            };
        let r = ratio(rbac);
        out.push(check(
            "throughput >= 0.80 x native RBAC",
            match (alp, rbac, r) {
                (Some(a), Some(b), Some(r)) => format!(
                    "{r:.2} x ({:.0} vs {:.0} req/s)",
                    a.closed.rps, b.closed.rps
                ),
                _ => "not measured".into(),
            },
            r,
            0.80,
            true,
        ));
        let r = ratio(authz);
        out.push(check(
            "throughput >= 2.5 x ext_authz",
            match (alp, authz, r) {
                (Some(a), Some(b), Some(r)) => format!(
                    "{r:.2} x ({:.0} vs {:.0} req/s)",
                    a.closed.rps, b.closed.rps
                ),
                _ => "not measured".into(),
            },
            r,
            2.5,
            true,
        ));
        let added = match (alp, none) {
            (Some(a), Some(z)) => Some(a.open.p99_us - z.open.p99_us),
            _ => None,
        };
        out.push(check(
            &format!(
                "added p99 over no filter <= 100 µs (open loop, {:.0}/s)",
                run.meta.open_rate
            ),
            match (alp, none, added) {
                (Some(a), Some(z), Some(d)) => format!(
                    "{d:+.0} µs ({:.0} vs {:.0} µs)",
                    a.open.p99_us, z.open.p99_us
                ),
                _ => "not measured".into(),
            },
            added,
            100.0,
            false,
        ));
    }
    native_targets(run, &mut out);
    out
}

fn check(
    transport: &str,
    target: String,
    measured: String,
    value: Option<f64>,
    limit: f64,
    at_least: bool,
) -> TargetCheck {
    TargetCheck {
        transport: transport.into(),
        target,
        measured,
        value: value.unwrap_or(f64::NAN),
        limit,
        met: value.map(|v| if at_least { v >= limit } else { v <= limit }),
    }
}

/// The native module's targets (when it was measured): throughput against RBAC at one rule and
/// against no filter at every rule count, per transport; Envoy's RSS at 10 000 rules against no
/// filter's at every worker count; propagation from control's publication to every worker.
fn native_targets(run: &RunReport, out: &mut Vec<TargetCheck>) {
    let measured = run.rows.iter().any(|r| r.config == "native")
        || run.memory.iter().any(|r| r.config == "native")
        || run.propagation.iter().any(|r| r.config == "native");
    if !measured {
        return;
    }
    for t in run.transports() {
        let native = run.find("native", Some(1), &t);
        let rbac = run.find("rbac", Some(1), &t);
        let r = match (native, rbac) {
            (Some(a), Some(b)) => Some(a.closed.rps / b.closed.rps),
            _ => None,
        };
        out.push(check(
            &t,
            format!("native module: throughput >= {NATIVE_X_RBAC:.2} x native RBAC at 1 rule"),
            match (native, rbac, r) {
                (Some(a), Some(b), Some(r)) => format!(
                    "{r:.2} x ({:.0} vs {:.0} req/s)",
                    a.closed.rps, b.closed.rps
                ),
                _ => "not measured".into(),
            },
            r,
            NATIVE_X_RBAC,
            true,
        ));
        let none = run.find("none", None, &t);
        let ratios: Vec<(usize, f64)> = match none {
            Some(z) => run
                .rows
                .iter()
                .filter(|r| r.config == "native" && r.transport == t)
                .filter_map(|r| Some((r.rules?, r.closed.rps / z.closed.rps)))
                .collect(),
            None => vec![],
        };
        let worst = ratios.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
        out.push(check(
            &t,
            format!(
                "native module: throughput >= {NATIVE_X_NONE:.2} x no filter at every rule count"
            ),
            match worst {
                Some((n, w)) => format!(
                    "min {w:.2} x at {} ({})",
                    rules_text(Some(n)),
                    ratios
                        .iter()
                        .map(|(n, r)| format!("{}: {r:.2}", rules_text(Some(*n))))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "not measured".into(),
            },
            worst.map(|w| w.1),
            NATIVE_X_NONE,
            true,
        ));
    }
    // RSS: the memory-only Envoys at each worker count, else the throughput Envoys (1 worker).
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut over: Vec<(u32, f64)> = Vec::new();
    let mut counts: Vec<u32> = run.memory.iter().map(|r| r.concurrency).collect();
    counts.sort_unstable();
    counts.dedup();
    for &c in &counts {
        let at = |config: &str, rules: Option<usize>| {
            run.memory
                .iter()
                .find(|r| r.config == config && r.rules == rules && r.concurrency == c)
        };
        if let (Some(a), Some(z)) = (at("native", Some(NATIVE_RSS_RULES)), at("none", None)) {
            over.push((c, mb(a.envoy_rss_kb) - mb(z.envoy_rss_kb)));
        }
    }
    if counts.is_empty() {
        let max_rss = |config: &str, rules: Option<usize>| {
            run.rows
                .iter()
                .filter(|r| r.config == config && r.rules == rules)
                .map(|r| r.envoy_rss_kb)
                .max()
        };
        if let (Some(a), Some(z)) = (
            max_rss("native", Some(NATIVE_RSS_RULES)),
            max_rss("none", None),
        ) {
            over.push((1, mb(a) - mb(z)));
        }
    }
    let worst = over.iter().map(|o| o.1).max_by(f64::total_cmp);
    out.push(check(
        "–",
        format!(
            "native module: Envoy RSS at {} rules <= no filter + {NATIVE_RSS_EXTRA_MB:.0} MB, every worker count",
            rules_text(Some(NATIVE_RSS_RULES))
        ),
        if over.is_empty() {
            "not measured".into()
        } else {
            over.iter()
                .map(|(c, d)| format!("{d:+.1} MB ({c} worker{})", if *c == 1 { "" } else { "s" }))
                .collect::<Vec<_>>()
                .join(", ")
        },
        worst,
        NATIVE_RSS_EXTRA_MB,
        false,
    ));
    let p99s: Vec<(usize, f64)> = run
        .propagation
        .iter()
        .filter(|r| r.config == "native")
        .map(|r| (r.rules, propagation::summary(&r.after_publication_ms())[1]))
        .collect();
    let worst = p99s.iter().map(|p| p.1).max_by(f64::total_cmp);
    out.push(check(
        "plaintext",
        format!(
            "native module: propagation p99, control's publication to every worker, <= {:.0} ms",
            propagation::TARGET_P99_MS
        ),
        if p99s.is_empty() {
            "not measured".into()
        } else {
            p99s.iter()
                .map(|(n, p)| format!("{p:.1} ms at {} rules", rules_text(Some(*n))))
                .collect::<Vec<_>>()
                .join(", ")
        },
        worst,
        propagation::TARGET_P99_MS,
        false,
    ));
}

fn transport_title(t: &str) -> &str {
    match t {
        "plaintext" => "Plaintext",
        "mtls" => "mTLS (client certificate with a SPIFFE identity)",
        other => other,
    }
}

fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", v);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn us(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

/// A CPU cell: µs per request, ext_authz as `total (Envoy + server)`.
fn cpu_text(m: &Measurement) -> String {
    match m.authz_cpu_us_per_req {
        Some(a) => format!(
            "{:.1} ({:.1} + {a:.1})",
            m.total_cpu_us(),
            m.envoy_cpu_us_per_req
        ),
        None => format!("{:.1}", m.envoy_cpu_us_per_req),
    }
}

fn rules_text(r: Option<usize>) -> String {
    r.map_or("–".into(), |n| thousands(n as f64))
}

/// One progress line for a row.
pub fn one_line(r: &Row) -> String {
    format!(
        "{:<30} {:>6} rules {:<9} {:>8.0} req/s  p50 {:>6} p99 {:>6} p99.9 {:>6} µs | open {:.0}/s p50 {} p99 {} p99.9 {} µs | {:.1} µs CPU/req{}",
        r.label,
        rules_text(r.rules),
        r.transport,
        r.closed.rps,
        us(r.closed.p50_us),
        us(r.closed.p99_us),
        us(r.closed.p999_us),
        r.open.rps,
        us(r.open.p50_us),
        us(r.open.p99_us),
        us(r.open.p999_us),
        r.closed.total_cpu_us(),
        if r.closed.disturbed() || r.open.disturbed() { "  [other work on CPU 0]" } else { "" }
    )
}

/// One progress line for a TCP row.
pub fn tcp_one_line(r: &TcpRow) -> String {
    let stream = match &r.stream {
        Some(t) => format!(
            "{:.0} MB/s ({} x {} KiB) {:.0} µs CPU/MB",
            t.mb_per_s,
            t.streams,
            t.chunk_bytes / 1024,
            t.envoy_cpu_us_per_mb + t.authz_cpu_us_per_mb.unwrap_or(0.0)
        ),
        None => "throughput not measured".into(),
    };
    let tls = match r.tls_sessions {
        Some((h, reused)) => format!(" ({h} TLS handshakes, {reused} resumed)"),
        None => String::new(),
    };
    format!(
        "{:<30} {:>6} rules tcp {:<9} {:>8.0} conn/s  p50 {:>6} p99 {:>6} p99.9 {:>6} µs  {:.1} µs CPU/conn (CPU 0 {:.0}% busy){tls} | {stream}{}",
        r.label,
        rules_text(r.rules),
        r.transport,
        r.connect.rps,
        us(r.connect.p50_us),
        us(r.connect.p99_us),
        us(r.connect.p999_us),
        r.connect.total_cpu_us(),
        r.connect.cpu0_busy_pct,
        if r.disturbed() { "  [other work on CPU 0 or 1]" } else { "" }
    )
}

/// Below this share of Envoy's CPU busy, the connection-rate loop was limited by the load
/// generator (TLS handshakes on its side), not by Envoy.
pub const ENVOY_BOUND_PCT: f64 = 90.0;

fn ratio_text(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() && b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn tcp_transport_title(t: &str) -> &str {
    match t {
        "plaintext" => "TCP, plaintext",
        "mtls" => "TCP, mTLS (client certificate with a SPIFFE identity)",
        other => other,
    }
}

/// The raw TCP part of the markdown report.
fn tcp_markdown(run: &RunReport, s: &mut String) {
    let Some(t) = &run.meta.tcp else {
        return;
    };
    if run.tcp_rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Raw TCP: network filters before tcp_proxy\n");
    let _ = writeln!(
        s,
        "Two listeners in an Envoy of their own per setup (plaintext; mTLS requiring the client certificate), each running the \
         configuration's network filter (`envoy.filters.network.rbac`, the no-op module and ours as `envoy.filters.network.wasm`, \
         our native module as `envoy.filters.network.dynamic_modules`, `envoy.filters.network.ext_authz`) before `tcp_proxy` to Envoy's echo filter on a unix-socket listener of the same Envoy \
         (so Envoy's CPU includes the upstream's accept and echo, the same in every row). The policy is the HTTP one's L4 form \
         (the same rules without HTTP clauses, for other ports but the last, which allows the connection). \
         **Connection rate**: {} concurrent workers in a closed loop, each connection one {}-byte request echoed back, then closed{}; \
         latency from connect to the echo; CPU per connection. **Throughput**: {} long connections writing {} KiB chunks \
         and reading them echoed back, MB (10^6 bytes) echoed per second. {:.1} s windows after {:.1} s warm-up.\n",
        t.workers,
        t.message_bytes,
        if t.resumption {
            " (mTLS: TLS sessions resumed when the client holds a ticket)"
        } else {
            " (mTLS: a full handshake each)"
        },
        t.streams,
        t.chunk_bytes / 1024,
        t.duration_s,
        t.warmup_s,
    );
    let counts = run.tcp_rule_counts();
    for (config, title) in [
        ("alp", "Ours against the others"),
        (
            "native",
            "The native module against the others (× wasm: against calico-alp wasm)",
        ),
    ] {
        if !run.tcp_rows.iter().any(|r| r.config == config) {
            continue;
        }
        // The native module's table adds the ratios to the wasm filter.
        let others: &[&str] = if config == "native" {
            &["none", "rbac", "alp", "ext_authz"]
        } else {
            &["none", "rbac", "ext_authz"]
        };
        let name = |c: &str| match c {
            "none" => "no filter",
            "rbac" => "RBAC",
            "alp" => "wasm",
            _ => "ext_authz",
        };
        let _ = writeln!(s, "{title} (same run):\n");
        let mut head = String::from("| transport | rules |");
        for (i, c) in others.iter().enumerate() {
            let _ = write!(
                head,
                " {}× {} |",
                if i == 0 { "conn/s " } else { "" },
                name(c)
            );
        }
        for (i, c) in others.iter().enumerate() {
            let _ = write!(
                head,
                " {}× {} |",
                if i == 0 { "MB/s " } else { "" },
                name(c)
            );
        }
        let _ = writeln!(s, "{head}\n|---|---:|{}", "---:|".repeat(2 * others.len()));
        for tr in run.tcp_transports() {
            for &n in &counts {
                let Some(a) = run.find_tcp(config, Some(n), &tr) else {
                    continue;
                };
                let rate = |c: &str| run.find_tcp(c, Some(n), &tr).map(|r| r.connect.rps);
                let mb = |c: &str| run.find_tcp(c, Some(n), &tr).and_then(TcpRow::mb_per_s);
                let mut cells = String::new();
                for c in others {
                    let _ = write!(cells, " {} |", ratio_text(Some(a.connect.rps), rate(c)));
                }
                for c in others {
                    let _ = write!(cells, " {} |", ratio_text(a.mb_per_s(), mb(c)));
                }
                let _ = writeln!(s, "| {tr} | {} |{cells}", rules_text(Some(n)));
            }
        }
        let _ = writeln!(s);
    }
    let mut client_bound = false;
    for tr in run.tcp_transports() {
        let _ = writeln!(s, "### {}\n", tcp_transport_title(&tr));
        let _ = writeln!(
            s,
            "| configuration | rules | conn/s | × no filter | × RBAC | × ext_authz | p50 / p99 / p99.9 µs | CPU µs/conn | MB/s | × no filter | CPU µs/MB | RSS MB |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let none = run.find_tcp("none", None, &tr);
        for r in run.tcp_rows.iter().filter(|r| r.transport == tr) {
            let at = |c: &str| r.rules.and_then(|n| run.find_tcp(c, Some(n), &tr));
            let rate = Some(r.connect.rps);
            let cpu = cpu_text(&r.connect);
            let (mb, mb_none, cpu_mb) = match &r.stream {
                Some(t) => (
                    format!("{:.0}", t.mb_per_s),
                    ratio_text(Some(t.mb_per_s), none.and_then(TcpRow::mb_per_s)),
                    format!(
                        "{:.0}",
                        t.envoy_cpu_us_per_mb + t.authz_cpu_us_per_mb.unwrap_or(0.0)
                    ),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            let rss = rss_mb(r.envoy_rss_kb, r.authz_rss_kb);
            let bound = r.connect.cpu0_busy_pct < ENVOY_BOUND_PCT;
            client_bound |= bound;
            let flag = format!(
                "{}{}",
                if r.disturbed() { " †" } else { "" },
                if bound { " ‡" } else { "" }
            );
            let _ = writeln!(
                s,
                "| {}{flag} | {} | {} | {} | {} | {} | {} / {} / {} | {cpu} | {mb} | {mb_none} | {cpu_mb} | {rss} |",
                r.label,
                rules_text(r.rules),
                thousands(r.connect.rps),
                ratio_text(rate, none.map(|n| n.connect.rps)),
                ratio_text(rate, at("rbac").map(|b| b.connect.rps)),
                ratio_text(rate, at("ext_authz").map(|b| b.connect.rps)),
                us(r.connect.p50_us),
                us(r.connect.p99_us),
                us(r.connect.p999_us),
            );
        }
        let _ = writeln!(s);
        let (handshakes, resumed) = run
            .tcp_rows
            .iter()
            .filter(|r| r.transport == tr)
            .filter_map(|r| r.tls_sessions)
            .fold((0, 0), |(h, u), (a, b)| (h + a, u + b));
        if handshakes > 0 {
            let _ = writeln!(
                s,
                "TLS handshakes on the mTLS listeners (Envoy's `ssl.handshake`, all setups of this table): {}, of which {} resumed a session.\n",
                thousands(handshakes as f64),
                thousands(resumed as f64)
            );
        }
    }
    if client_bound {
        let _ = writeln!(
            s,
            "‡ Envoy's CPU was less than {ENVOY_BOUND_PCT:.0}% busy during the connection-rate window: the load generator (its side of the TLS handshakes) was the limit, so the rate understates what Envoy can do; its CPU per connection still holds.\n"
        );
    }
    let flagged: Vec<String> = run
        .tcp_rows
        .iter()
        .filter(|r| r.disturbed())
        .map(|r| {
            format!(
                "{} {} tcp {} (connection rate {:.0}% / {:.0}%{})",
                r.label,
                rules_text(r.rules),
                r.transport,
                r.connect.cpu0_foreign_pct,
                r.connect.cpu1_foreign_pct,
                r.stream.as_ref().map_or(String::new(), |t| format!(
                    ", throughput {:.0}% / {:.0}%",
                    t.cpu0_foreign_pct, t.cpu1_foreign_pct
                ))
            )
        })
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            s,
            "† Other processes used more than {FOREIGN_CPU_FLAG_PCT:.0}% of CPU 0 or CPU 1 during a window, even after retries: {}.\n",
            flagged.join("; ")
        );
    }
}

/// The targets' heading: the wasm filter's are judged at [`TARGET_RULES`], the native module's
/// at the rule counts they name.
fn targets_heading(run: &RunReport) -> String {
    let mut h = format!("Targets at {} rules", thousands(TARGET_RULES as f64));
    if run
        .targets
        .iter()
        .any(|t| t.target.starts_with("native module:"))
    {
        h.push_str(" (the native module's: as each says)");
    }
    h
}

pub fn targets_text(run: &RunReport) -> String {
    let mut s = format!("{} (same run):\n", targets_heading(run));
    for t in &run.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let _ = writeln!(
            s,
            "  {:<9} {:<55} {:<40} {verdict}",
            t.transport, t.target, t.measured
        );
    }
    s
}

/// The header's mention of the native module, when it was measured.
fn native_module_text(m: &Meta) -> String {
    match (m.native_bytes, &m.native_fnv64) {
        (Some(b), Some(h)) => format!(", native module {b} bytes (fnv64 {h})"),
        _ => String::new(),
    }
}

/// The native module against every other configuration, with the default traffic, where the
/// report compares the wasm filter to the baselines: throughput ratios (× wasm: against
/// calico-alp wasm at the same rule count), CPU and memory beside the wasm filter's.
fn native_markdown(run: &RunReport, s: &mut String) {
    if !run.rows.iter().any(|r| r.config == "native") {
        return;
    }
    let _ = writeln!(
        s,
        "## The native module against the others
"
    );
    let _ = writeln!(
        s,
        "calico-alp as a native Envoy dynamic module (`libcalico_alp.so`, the same engine and filter logic, polling the same `control serve` itself) against the rows above: closed-loop throughput ratios (× wasm: against calico-alp wasm at the same rule count), its CPU per request and Envoy's RSS beside the wasm filter's, the open loop's p99 beside no filter's.\n"
    );
    let _ = writeln!(
        s,
        "| transport | rules | req/s | × no filter | × RBAC | × no-op | × wasm | × ext_authz | CPU µs/req | wasm's CPU µs/req | open p99 µs | no filter's open p99 µs | RSS MB | wasm's RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let rate = run.meta.open_rate;
    let open_p99 = |r: &Row| {
        if r.open_saturated(rate) {
            "saturated".to_string()
        } else {
            us(r.open.p99_us)
        }
    };
    for t in run.transports() {
        for r in run
            .rows
            .iter()
            .filter(|r| r.config == "native" && r.transport == t)
        {
            let at = |c: &str| run.find(c, r.rules, &t);
            let rps = Some(r.closed.rps);
            let x = |c: &str| ratio_text(rps, at(c).map(|o| o.closed.rps));
            let wasm = at("alp");
            let none = at("none");
            let _ = writeln!(
                s,
                "| {t} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                rules_text(r.rules),
                thousands(r.closed.rps),
                x("none"),
                x("rbac"),
                x("noop"),
                x("alp"),
                x("ext_authz"),
                cpu_text(&r.closed),
                wasm.map_or("–".into(), |w| cpu_text(&w.closed)),
                open_p99(r),
                none.map_or("–".into(), open_p99),
                rss_mb(r.envoy_rss_kb, None),
                wasm.map_or("–".into(), |w| rss_mb(w.envoy_rss_kb, None)),
            );
        }
    }
    let _ = writeln!(s);
}

/// The markdown report.
pub fn markdown(run: &RunReport) -> String {
    let m = &run.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# calico-alp benchmark results\n");
    let _ = writeln!(
        s,
        "{} · commit {} · {} · {} ({} cores, Linux {}){}\n",
        m.date_utc,
        m.git,
        m.envoy,
        m.cpu_model,
        m.cores,
        m.kernel,
        if m.note.is_empty() {
            String::new()
        } else {
            format!(" · {}", m.note)
        }
    );
    if run.rows.is_empty() {
        let _ = writeln!(
            s,
            "Envoy `--concurrency 1`{}; raw TCP only. \
             Filter module {} bytes (fnv64 {}){}. Load average {:.2} before, {:.2} after; {:.0} s in all.\n",
            if m.pinned { " pinned to CPU 0, load generator on CPU 1" } else { "" },
            m.wasm_bytes,
            m.wasm_fnv64,
            native_module_text(m),
            m.load_before,
            m.load_after,
            m.seconds
        );
    } else {
        let _ = writeln!(
            s,
            "Envoy `--concurrency 1`{}, direct response, `GET /orders/42` allowed by the policy's last rule. \
             Closed loop: {} connections, {:.0} s after {:.0} s warm-up (wrk for plaintext, the bench's generator for mTLS). \
             {}\
             Open loop: {:.0} requests/s on a fixed schedule, latency from the scheduled send time. \
             CPU: Envoy's (ext_authz: plus the authz server's, on the same CPU) per request in the closed loop. \
             RSS: Envoy's resident memory with its one worker (ext_authz: + the server's). \
             Ratios are closed-loop throughput against the baselines of this run. \
             Filter module {} bytes (fnv64 {}){}. Load average {:.2} before, {:.2} after; {:.0} s in all.\n",
            if m.pinned { " pinned to CPU 0, load generator on CPU 1" } else { "" },
            m.connections,
            m.duration_s,
            m.warmup_s,
            if m.rounds > 1 {
                format!("Best of {} interleaved rounds per cell (highest throughput; lowest open-loop p99). ", m.rounds)
            } else {
                String::new()
            },
            m.open_rate,
            m.wasm_bytes,
            m.wasm_fnv64,
            native_module_text(m),
            m.load_before,
            m.load_after,
            m.seconds
        );
    }
    if !run.targets.is_empty() {
        let _ = writeln!(s, "## {}\n", targets_heading(run));
        let _ = writeln!(
            s,
            "| transport | target | measured | met |\n|---|---|---|---|"
        );
    }
    for t in &run.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {met} |",
            t.transport, t.target, t.measured
        );
    }
    if !run.targets.is_empty() {
        let _ = writeln!(s);
    }
    for t in run.transports() {
        let _ = writeln!(s, "## {}\n", transport_title(&t));
        let _ = writeln!(
            s,
            "| configuration | rules | req/s | × no filter | × RBAC | p50 / p99 / p99.9 µs (closed) | p50 / p99 / p99.9 µs (open, {:.0}/s) | CPU µs/req | RSS MB |",
            m.open_rate
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let none = run.find("none", None, &t);
        for r in run.rows.iter().filter(|r| r.transport == t) {
            let x_none = none.map_or("–".into(), |n| {
                format!("{:.2}", r.closed.rps / n.closed.rps)
            });
            let x_rbac = match r.rules.and_then(|n| run.find("rbac", Some(n), &t)) {
                Some(b) => format!("{:.2}", r.closed.rps / b.closed.rps),
                None => "–".into(),
            };
            let cpu = cpu_text(&r.closed);
            let rss = rss_mb(r.envoy_rss_kb, r.authz_rss_kb);
            let open = if r.open_saturated(m.open_rate) {
                format!("saturated (max {:.0}/s)", r.closed.rps)
            } else {
                format!(
                    "{} / {} / {}",
                    us(r.open.p50_us),
                    us(r.open.p99_us),
                    us(r.open.p999_us)
                )
            };
            let flag = if r.closed.disturbed() || r.open.disturbed() {
                " †"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "| {}{flag} | {} | {} | {x_none} | {x_rbac} | {} / {} / {} | {open} | {cpu} | {rss} |",
                r.label,
                rules_text(r.rules),
                thousands(r.closed.rps),
                us(r.closed.p50_us),
                us(r.closed.p99_us),
                us(r.closed.p999_us),
            );
        }
        let _ = writeln!(s);
    }
    let flagged: Vec<String> = run
        .rows
        .iter()
        .filter(|r| r.closed.disturbed() || r.open.disturbed())
        .map(|r| {
            format!(
                "{} {} {} (closed loop {:.0}% / {:.0}%, open loop {:.0}% / {:.0}%)",
                r.label,
                rules_text(r.rules),
                r.transport,
                r.closed.cpu0_foreign_pct,
                r.closed.cpu1_foreign_pct,
                r.open.cpu0_foreign_pct,
                r.open.cpu1_foreign_pct
            )
        })
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            s,
            "† Other processes used more than {FOREIGN_CPU_FLAG_PCT:.0}% of Envoy's CPU or of the load generator's (CPU 0 / CPU 1) during the window, even after retries: {}.\n",
            flagged.join("; ")
        );
    }
    native_markdown(run, &mut s);
    profile::markdown(run, &mut s);
    traffic::markdown(run, &mut s);
    memory::markdown(run, &mut s);
    propagation::markdown(run, &mut s);
    tcp_markdown(run, &mut s);
    for n in &m.notes {
        let _ = writeln!(s, "{n}\n");
    }
    let _ = writeln!(
        s,
        "Produced by `bench/run.sh` (`alp-bench run`); plot: `latest.png` beside this file."
    );
    s
}

/// Results to render in the tests.
#[cfg(test)]
pub(crate) mod sample {
    use super::*;

    pub fn measurement(rps: f64, cpu_us: f64) -> Measurement {
        Measurement {
            generator: "test".into(),
            requests: (rps * 4.0) as u64,
            non_2xx: 0,
            errors: 0,
            unsent: 0,
            seconds: 4.0,
            rps,
            p50_us: 300.0,
            p99_us: 600.0,
            p999_us: 900.0,
            envoy_cpu_us_per_req: cpu_us,
            authz_cpu_us_per_req: None,
            cpu0_busy_pct: 99.0,
            cpu0_foreign_pct: 0.0,
            cpu1_foreign_pct: 0.0,
        }
    }

    pub fn meta() -> Meta {
        Meta {
            date_utc: "2026-01-01T00:00:00Z".into(),
            git: "abc".into(),
            envoy: "Envoy 1.40.0".into(),
            cpu_model: "test".into(),
            cores: 2,
            kernel: "6".into(),
            rounds: 1,
            duration_s: 4.0,
            warmup_s: 1.0,
            connections: 16,
            open_rate: 5000.0,
            pinned: true,
            wasm_bytes: 1,
            wasm_fnv64: "0".into(),
            native_bytes: None,
            native_fnv64: None,
            load_before: 0.0,
            load_after: 0.0,
            seconds: 1.0,
            note: String::new(),
            notes: vec![],
            tcp: None,
            traffic: None,
            memory: None,
        }
    }

    /// (config key, label, rules) of a run at `rules`.
    pub fn setups(rules: usize) -> Vec<(&'static str, &'static str, Option<usize>)> {
        vec![
            ("none", "no filter", None),
            ("noop", "no-op wasm", None),
            ("rbac", "native RBAC", Some(rules)),
            ("alp", "calico-alp wasm", Some(rules)),
            ("ext_authz", "ext_authz (gRPC, unix socket)", Some(rules)),
        ]
    }

    /// Default rows: throughput `rps[i]` and CPU `cpu[i]` per setup of [`setups`].
    pub fn rows(rules: usize, transport: &str, rps: [f64; 5], cpu: [f64; 5]) -> Vec<Row> {
        setups(rules)
            .into_iter()
            .enumerate()
            .map(|(i, (config, label, rules))| Row {
                config: config.into(),
                label: label.into(),
                rules,
                transport: transport.into(),
                closed: measurement(rps[i], cpu[i]),
                open: measurement(5000.0, cpu[i]),
                envoy_rss_kb: 40 * 1024 + i as u64 * 1024,
                envoy_rss_peak_kb: 50 * 1024,
                authz_rss_kb: (config == "ext_authz").then_some(10 * 1024),
                profile: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_results_still_render() {
        // Written before the traffic variants and the memory table existed.
        let run: RunReport = serde_json::from_str(include_str!("../results/before.json")).unwrap();
        assert!(run.variants.is_empty() && run.memory.is_empty());
        assert!(run.meta.traffic.is_none() && run.meta.memory.is_none());
        let md = markdown(&run);
        assert!(md.contains("| configuration | rules | req/s | × no filter | × RBAC |"));
        assert!(!md.contains("## Traffic"));
        // The memory table from the throughput Envoys alone.
        assert!(md.contains("## Memory"));
        assert!(md.contains("| configuration | rules | after the windows (1 worker) |\n"));
        // Whatever the last run wrote parses too.
        let latest: RunReport =
            serde_json::from_str(include_str!("../results/latest.json")).unwrap();
        assert!(markdown(&latest).contains("## Memory"));
    }

    #[test]
    fn the_default_tables_keep_their_format() {
        let run = RunReport::new(
            sample::meta(),
            sample::rows(1000, "plaintext", [50e3, 45e3, 40e3, 42e3, 10e3], [20.0; 5]),
            vec![],
            vec![],
            vec![],
        );
        let md = markdown(&run);
        assert!(md.contains(
            "| configuration | rules | req/s | × no filter | × RBAC | p50 / p99 / p99.9 µs (closed) | p50 / p99 / p99.9 µs (open, 5000/s) | CPU µs/req | RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n| no filter | – | 50 000 | 1.00 | – |"
        ));
        assert!(md.contains("| calico-alp wasm | 1 000 | 42 000 | 0.84 | 1.05 |"));
    }
}
