//! Where Envoy's CPU goes (`--profile`): `perf` samples of the Envoy process during one extra
//! closed-loop window per configuration, by DSO, as shares and as µs per request.

use super::{rules_text, Measurement, RunReport, FOREIGN_CPU_FLAG_PCT};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One DSO's share of the samples (every `[JIT] tid N` merged into `[JIT]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DsoShare {
    pub dso: String,
    /// Percent of the samples.
    pub pct: f64,
    pub samples: u64,
}

/// The profile of one setup (plaintext, default traffic).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    /// The file name of the Envoy binary, as perf names its DSO.
    pub binary: String,
    /// Sampling frequency (Hz) and the seconds perf sampled, inside the window.
    pub frequency_hz: u32,
    pub sampled_s: f64,
    pub samples: u64,
    /// By share, largest first.
    pub dsos: Vec<DsoShare>,
    /// The profiled window (wrk, closed loop): its throughput and Envoy's CPU per request,
    /// perf's sampling included.
    pub window: Measurement,
}

/// What the table groups the DSOs into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// V8's generated code: the wasm module, V8's entry/exit stubs.
    Jit,
    /// The Envoy binary: HTTP processing, the proxy-wasm host calls, V8's runtime.
    Envoy,
    Kernel,
    Libc,
    Vdso,
    Other,
}

impl Bucket {
    pub fn of(dso: &str, binary: &str) -> Bucket {
        if dso == "[JIT]" {
            Bucket::Jit
        } else if dso == binary {
            Bucket::Envoy
        } else if dso.starts_with("[kernel") {
            Bucket::Kernel
        } else if dso.starts_with("libc.so") || dso.starts_with("libc-") {
            Bucket::Libc
        } else if dso == "[vdso]" {
            Bucket::Vdso
        } else {
            Bucket::Other
        }
    }
}

/// The table's columns: their buckets and headings.
const COLUMNS: [(&[Bucket], &str); 5] = [
    (&[Bucket::Jit], "[JIT]"),
    (&[Bucket::Envoy], "envoy"),
    (&[Bucket::Kernel], "kernel"),
    (&[Bucket::Libc], "libc"),
    (&[Bucket::Vdso, Bucket::Other], "other"),
];

impl Profile {
    /// Percent of the samples in `buckets`.
    pub fn pct(&self, buckets: &[Bucket]) -> f64 {
        self.dsos
            .iter()
            .filter(|d| buckets.contains(&Bucket::of(&d.dso, &self.binary)))
            .fold(0.0, |sum, d| sum + d.pct)
    }

    /// Envoy's CPU per request in `buckets`, in µs.
    pub fn us_per_req(&self, buckets: &[Bucket]) -> f64 {
        self.pct(buckets) / 100.0 * self.window.envoy_cpu_us_per_req
    }
}

/// One progress line for a profile.
pub fn one_line(label: &str, rules: Option<usize>, p: &Profile) -> String {
    let parts: Vec<String> = COLUMNS
        .iter()
        .map(|(b, name)| format!("{name} {:.1}%", p.pct(b)))
        .collect();
    format!(
        "{label:<30} {:>6} rules perf      {:>8.0} req/s  {:.1} µs CPU/req, {} samples: {}",
        rules_text(rules),
        p.window.rps,
        p.window.envoy_cpu_us_per_req,
        p.samples,
        parts.join(", ")
    )
}

/// The profile table of the markdown report, when there are profiles.
pub fn markdown(run: &RunReport, s: &mut String) {
    let rows: Vec<_> = run
        .rows
        .iter()
        .filter_map(|r| r.profile.as_ref().map(|p| (r, p)))
        .collect();
    let Some((_, first)) = rows.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "## Where Envoy's CPU goes (perf, plaintext, minimal headers, HTTP/1.1, keep-alive)\n"
    );
    let _ = writeln!(
        s,
        "After each setup's windows, one more closed-loop wrk window ({} connections, {:.0} s) while `perf record -F {}` \
         sampled the Envoy process for {:.1} s inside it; shares of the samples by DSO (`perf report --sort dso`), and µs per request = \
         share × Envoy's CPU per request over that window (ext_authz: Envoy's side only), which includes perf's own cost: \
         \"without perf\" is the setup's closed-loop window above, for comparison. The Envoy binary is stripped and V8 writes no perf map, so there are no function names: \
         **[JIT]** is the code V8 generated (the wasm module, V8's entry/exit stubs), **envoy** the binary (HTTP codec and filter \
         chain, the proxy-wasm host calls, V8's runtime and compiler), **kernel** syscalls and loopback TCP, **libc** memcpy, \
         malloc and the like, **other** vdso, ld.so and other libraries.\n",
        run.meta.connections,
        first.window.seconds,
        first.frequency_hz,
        first.sampled_s,
    );
    let mut head = String::from("| configuration | rules | CPU µs/req | without perf |");
    for (_, name) in COLUMNS {
        let _ = write!(head, " {name} µs/req (%) |");
    }
    let _ = writeln!(
        s,
        "{head} samples |\n|---|---:|---:|---:|{}---:|",
        "---:|".repeat(COLUMNS.len())
    );
    let order = ["none", "rbac", "noop", "alp", "native", "ext_authz"];
    let rank = |c: &str| order.iter().position(|o| *o == c).unwrap_or(order.len());
    let mut sorted = rows.clone();
    sorted.sort_by_key(|(r, _)| rank(&r.config));
    for (r, p) in &sorted {
        let mut cells = String::new();
        for (b, _) in COLUMNS {
            let _ = write!(cells, " {:.2} ({:.1}%) |", p.us_per_req(b), p.pct(b));
        }
        let flag = if p.window.disturbed() { " †" } else { "" };
        let _ = writeln!(
            s,
            "| {}{flag} | {} | {:.1} | {:.1} |{cells} {} |",
            r.label,
            rules_text(r.rules),
            p.window.envoy_cpu_us_per_req,
            r.closed.envoy_cpu_us_per_req,
            p.samples
        );
    }
    let _ = writeln!(s);
    let find = |c: &str| sorted.iter().find(|(r, _)| r.config == c).map(|(_, p)| *p);
    if let (Some(alp), Some(noop)) = (find("alp"), find("noop")) {
        let parts: Vec<String> = COLUMNS
            .iter()
            .map(|(b, name)| format!("{name} {:+.2}", alp.us_per_req(b) - noop.us_per_req(b)))
            .collect();
        let _ = writeln!(
            s,
            "alp − no-op (what our filter adds beyond any wasm filter), µs/req: CPU {:+.2}; {}.\n",
            alp.window.envoy_cpu_us_per_req - noop.window.envoy_cpu_us_per_req,
            parts.join("; ")
        );
    }
    // The native module has no wasm floor: what it adds is over no filter; and against the wasm
    // filter, what running natively saves.
    for (base, what) in [
        ("none", "what the native module adds over no filter"),
        ("alp", "native against wasm"),
    ] {
        if let (Some(native), Some(b)) = (find("native"), find(base)) {
            let parts: Vec<String> = COLUMNS
                .iter()
                .map(|(k, name)| format!("{name} {:+.2}", native.us_per_req(k) - b.us_per_req(k)))
                .collect();
            let _ = writeln!(
                s,
                "native − {} ({what}), µs/req: CPU {:+.2}; {}.\n",
                if base == "none" { "no filter" } else { "wasm" },
                native.window.envoy_cpu_us_per_req - b.window.envoy_cpu_us_per_req,
                parts.join("; ")
            );
        }
    }
    if sorted.iter().any(|(_, p)| p.window.disturbed()) {
        let _ = writeln!(
            s,
            "† Other processes used more than {FOREIGN_CPU_FLAG_PCT:.0}% of CPU 0 or CPU 1 during the profiled window.\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    fn profile(cpu_us: f64, shares: &[(&str, f64)]) -> Profile {
        Profile {
            binary: "envoy".into(),
            frequency_hz: 4999,
            sampled_s: 3.5,
            samples: 17_000,
            dsos: shares
                .iter()
                .map(|&(dso, pct)| DsoShare {
                    dso: dso.into(),
                    pct,
                    samples: (pct * 170.0) as u64,
                })
                .collect(),
            window: sample::measurement(40e3, cpu_us),
        }
    }

    #[test]
    fn dsos_fall_into_buckets() {
        assert_eq!(Bucket::of("[JIT]", "envoy"), Bucket::Jit);
        assert_eq!(Bucket::of("envoy", "envoy"), Bucket::Envoy);
        assert_eq!(Bucket::of("[kernel.kallsyms]", "envoy"), Bucket::Kernel);
        assert_eq!(Bucket::of("libc.so.6", "envoy"), Bucket::Libc);
        assert_eq!(Bucket::of("[vdso]", "envoy"), Bucket::Vdso);
        assert_eq!(Bucket::of("ld-linux-x86-64.so.2", "envoy"), Bucket::Other);
    }

    #[test]
    fn the_table_gives_each_bucket_in_us_per_request_and_alp_minus_noop() {
        let mut rows = sample::rows(1, "plaintext", [50e3; 5], [20.0; 5]);
        let base = [
            ("envoy", 50.0),
            ("[kernel.kallsyms]", 40.0),
            ("libc.so.6", 10.0),
        ];
        rows[0].profile = Some(profile(20.0, &base));
        rows[1].profile = Some(profile(
            25.0,
            &[
                ("envoy", 48.0),
                ("[JIT]", 4.0),
                ("[kernel.kallsyms]", 40.0),
                ("libc.so.6", 8.0),
            ],
        ));
        rows[3].profile = Some(profile(
            30.0,
            &[
                ("envoy", 45.0),
                ("[JIT]", 20.0),
                ("[kernel.kallsyms]", 25.0),
                ("libc.so.6", 8.0),
                ("[vdso]", 1.0),
                ("ld-linux-x86-64.so.2", 1.0),
            ],
        ));
        let run = RunReport::new(sample::meta(), rows, vec![], vec![], vec![]);
        let md = crate::report::markdown(&run);
        assert!(md.contains("## Where Envoy's CPU goes (perf, plaintext, minimal headers, HTTP/1.1, keep-alive)\n"), "{md}");
        assert!(md.contains("| configuration | rules | CPU µs/req | without perf | [JIT] µs/req (%) | envoy µs/req (%) | kernel µs/req (%) | libc µs/req (%) | other µs/req (%) | samples |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| no filter | – | 20.0 | 20.0 | 0.00 (0.0%) | 10.00 (50.0%) | 8.00 (40.0%) | 2.00 (10.0%) | 0.00 (0.0%) | 17000 |\n| no-op wasm | – | 25.0 | 20.0 | 1.00 (4.0%) |"), "{md}");
        assert!(md.contains("| calico-alp wasm | 1 | 30.0 | 20.0 | 6.00 (20.0%) | 13.50 (45.0%) | 7.50 (25.0%) | 2.40 (8.0%) | 0.60 (2.0%) | 17000 |\n"), "{md}");
        assert!(md.contains("alp − no-op (what our filter adds beyond any wasm filter), µs/req: CPU +5.00; [JIT] +5.00; envoy +1.50; kernel -2.50; libc +0.40; other +0.60.\n"), "{md}");
    }

    #[test]
    fn no_table_without_profiles() {
        let rows = sample::rows(1, "plaintext", [50e3; 5], [20.0; 5]);
        let run = RunReport::new(sample::meta(), rows, vec![], vec![], vec![]);
        assert!(!crate::report::markdown(&run).contains("Where Envoy's CPU goes"));
    }
}
