//! The traffic variants' part of the results: their rows (closed loop only) and tables, against
//! the baselines of the same variant and against the same configuration's default traffic.

use super::{
    cpu_text, ratio_text, rules_text, thousands, transport_title, us, Measurement, RunReport,
    ENVOY_BOUND_PCT, FOREIGN_CPU_FLAG_PCT,
};
use crate::variant::{HttpVersion, Variant};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One configuration (and rule count) on one transport with one traffic variant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantRow {
    pub config: String,
    pub label: String,
    pub rules: Option<usize>,
    pub transport: String,
    pub variant: Variant,
    /// Closed loop, maximum throughput.
    pub closed: Measurement,
}

impl VariantRow {
    /// Envoy's CPU was not saturated: the load generator (its TLS handshakes, say) was the limit.
    pub fn client_bound(&self) -> bool {
        self.closed.cpu0_busy_pct < ENVOY_BOUND_PCT
    }
}

/// How the variants were run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrafficMeta {
    /// In the order run (the default cell not among them).
    pub variants: Vec<Variant>,
    /// The rule counts the configurations with a policy ran them at (`None`: every count).
    pub rules: Option<Vec<usize>>,
    /// Every combination of the listed values, rather than one dimension at a time.
    pub cross: bool,
    /// HTTP/2: streams in flight per connection.
    pub h2_streams: usize,
    /// The realistic header set: fields, and their bytes on an HTTP/1.1 request.
    pub realistic_headers: usize,
    pub realistic_header_bytes: usize,
}

/// Cells of several rounds: the round with the highest throughput per cell.
pub fn best_variants_of_rounds(rows: Vec<VariantRow>) -> Vec<VariantRow> {
    let mut out: Vec<VariantRow> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|o| {
            o.variant == r.variant
                && o.config == r.config
                && o.rules == r.rules
                && o.transport == r.transport
        }) {
            None => out.push(r),
            Some(o) => {
                if r.closed.rps > o.closed.rps {
                    *o = r;
                }
            }
        }
    }
    out
}

impl RunReport {
    /// The row of `config` with `variant` (the default: the main tables' row) on `transport` at
    /// `rules` (a configuration without a policy matches any count): its closed loop.
    pub fn find_closed(
        &self,
        variant: Variant,
        config: &str,
        rules: Option<usize>,
        transport: &str,
    ) -> Option<&Measurement> {
        if variant.is_default() {
            return self.find(config, rules, transport).map(|r| &r.closed);
        }
        self.variants
            .iter()
            .find(|r| {
                r.variant == variant
                    && r.config == config
                    && r.transport == transport
                    && (r.rules.is_none() || r.rules == rules)
            })
            .map(|r| &r.closed)
    }

    /// The variants of the rows, in first-seen order.
    fn variants_run(&self) -> Vec<Variant> {
        let mut v: Vec<Variant> = Vec::new();
        for r in &self.variants {
            if !v.contains(&r.variant) {
                v.push(r.variant);
            }
        }
        v
    }
}

fn variant_heading(run: &RunReport, v: Variant) -> String {
    let mut s = v.title();
    if let Some(t) = &run.meta.traffic {
        if v.headers != Default::default() {
            let _ = write!(
                s,
                " ({} fields, {} bytes)",
                t.realistic_headers,
                thousands(t.realistic_header_bytes as f64)
            );
        }
        if v.http == HttpVersion::Http2 {
            let _ = write!(
                s,
                " ({} connections × {} stream{} in flight)",
                run.meta.connections,
                t.h2_streams,
                if t.h2_streams == 1 { "" } else { "s" }
            );
        }
    }
    s
}

/// The variants' part of the markdown report.
pub fn markdown(run: &RunReport, s: &mut String) {
    if run.variants.is_empty() {
        return;
    }
    let variants = run.variants_run();
    let counts = super::rule_counts_of(&run.variants);
    let (cross, streams) = run
        .meta
        .traffic
        .as_ref()
        .map_or((false, 1), |t| (t.cross, t.h2_streams));
    let _ = writeln!(
        s,
        "## Traffic: header sets, HTTP/2, a connection per request\n"
    );
    let _ = writeln!(
        s,
        "The default traffic of the tables above is minimal headers (`GET` and `Host`), HTTP/1.1, keep-alive. Each variant below changes {}, \
         in the same Envoy right after the default cells, closed loop only ({} connections, {} s after {} s warm-up), at rule counts {} \
         (configurations without a policy: always). \
         **Realistic headers**: a browser or gRPC client's fields after an edge proxy (user agent, accept, cookie, bearer token, request id, \
         W3C and B3 tracing, forwarding; fixed values in `bench/src/headers.rs`). \
         **HTTP/2**: the bench's generator ({streams} stream{} in flight per connection); plaintext h2c with prior knowledge, mTLS ALPN `h2`. \
         **A connection per request**: `connection: close`, a new TCP connection (mTLS: a full handshake, no session resumption) per request; \
         the client closes after the response (wrk reconnects; its latency starts at the write, the bench's generator's at the connect). \
         Generators: wrk for plaintext HTTP/1.1, the bench's otherwise (both send the same bytes). \
         Ratios: throughput against the baselines with the same traffic; \"× default\": against the same configuration with the default traffic, \
         and \"+ CPU\" the CPU µs per request it adds.\n",
        if cross {
            "one or more dimensions (every combination listed)"
        } else {
            "one dimension"
        },
        run.meta.connections,
        run.meta.duration_s,
        run.meta.warmup_s,
        counts
            .iter()
            .map(|&n| thousands(n as f64))
            .collect::<Vec<_>>()
            .join(" and "),
        if streams == 1 { "" } else { "s" },
    );
    summary(run, &variants, &counts, s);
    let mut client_bound = false;
    for &v in &variants {
        for t in run.transports_of_variant(v) {
            let _ = writeln!(
                s,
                "### {}: {}\n",
                variant_heading(run, v),
                transport_title(&t)
            );
            let base = v.baseline_title();
            let _ = writeln!(
                s,
                "| configuration | rules | req/s | × no filter | × RBAC | × no-op | × ext_authz | × default ({base}) | p50 / p99 / p99.9 µs | CPU µs/req | + CPU µs/req |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for r in run
                .variants
                .iter()
                .filter(|r| r.variant == v && r.transport == t)
            {
                let rps = Some(r.closed.rps);
                let at = |c: &str| run.find_closed(v, c, r.rules, &t).map(|m| m.rps);
                let at_rules = |c: &str| r.rules.and_then(|_| at(c));
                let default = run.find_closed(Variant::DEFAULT, &r.config, r.rules, &t);
                let added = default.map_or("–".into(), |d| {
                    format!("{:+.1}", r.closed.total_cpu_us() - d.total_cpu_us())
                });
                let bound = r.client_bound();
                client_bound |= bound;
                let flag = format!(
                    "{}{}",
                    if r.closed.disturbed() { " †" } else { "" },
                    if bound { " ‡" } else { "" }
                );
                let _ = writeln!(
                    s,
                    "| {}{flag} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {added} |",
                    r.label,
                    rules_text(r.rules),
                    thousands(r.closed.rps),
                    ratio_text(rps, at("none")),
                    ratio_text(rps, at_rules("rbac")),
                    ratio_text(rps, at("noop")),
                    ratio_text(rps, at_rules("ext_authz")),
                    ratio_text(rps, default.map(|d| d.rps)),
                    us(r.closed.p50_us),
                    us(r.closed.p99_us),
                    us(r.closed.p999_us),
                    cpu_text(&r.closed),
                );
            }
            let _ = writeln!(s);
        }
    }
    if client_bound {
        let _ = writeln!(
            s,
            "‡ Envoy's CPU was less than {ENVOY_BOUND_PCT:.0}% busy during the window: the load generator (e.g. its side of the TLS handshakes) was the limit, so the throughput understates what Envoy can do; its CPU per request still holds.\n"
        );
    }
    let flagged: Vec<String> = run
        .variants
        .iter()
        .filter(|r| r.closed.disturbed())
        .map(|r| {
            format!(
                "{} {} {} {} ({:.0}% / {:.0}%)",
                r.label,
                rules_text(r.rules),
                r.transport,
                r.variant.short(),
                r.closed.cpu0_foreign_pct,
                r.closed.cpu1_foreign_pct
            )
        })
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            s,
            "† Other processes used more than {FOREIGN_CPU_FLAG_PCT:.0}% of CPU 0 or CPU 1 during the window, even after retries: {}.\n",
            flagged.join("; ")
        );
    }
}

/// Ours against the others for the default traffic and every variant, at the variants' rule
/// counts; then the native module's, with its ratio to the wasm filter.
fn summary(run: &RunReport, variants: &[Variant], counts: &[usize], s: &mut String) {
    summary_of(run, "alp", variants, counts, s);
    summary_of(run, "native", variants, counts, s);
}

fn summary_of(
    run: &RunReport,
    config: &str,
    variants: &[Variant],
    counts: &[usize],
    s: &mut String,
) {
    if !run.variants.iter().any(|r| r.config == config) {
        return;
    }
    let native = config == "native";
    if native {
        let _ = writeln!(
            s,
            "### The native module against the others, by traffic (× wasm: against calico-alp wasm)\n"
        );
        let _ = writeln!(
            s,
            "| traffic | transport | rules | req/s | × no filter | × RBAC | × no-op | × wasm | × ext_authz | CPU µs/req | wasm's CPU µs/req | no filter's CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
    } else {
        let _ = writeln!(s, "### Ours against the others, by traffic\n");
        let _ = writeln!(
            s,
            "| traffic | transport | rules | req/s | × no filter | × RBAC | × no-op | × ext_authz | CPU µs/req | no filter's CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
    }
    let all: Vec<Variant> = std::iter::once(Variant::DEFAULT)
        .chain(variants.iter().copied())
        .collect();
    for &v in &all {
        for t in run.transports() {
            for &n in counts {
                let at = |c: &str| run.find_closed(v, c, Some(n), &t);
                let Some(a) = at(config) else {
                    continue;
                };
                let rps = Some(a.rps);
                let wasm = if native {
                    format!(" {} |", ratio_text(rps, at("alp").map(|m| m.rps)))
                } else {
                    String::new()
                };
                let wasm_cpu = if native {
                    format!(" {} |", at("alp").map_or("–".into(), cpu_text))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "| {} | {t} | {} | {} | {} | {} | {} |{wasm} {} | {} |{wasm_cpu} {} |",
                    v.title(),
                    rules_text(Some(n)),
                    thousands(a.rps),
                    ratio_text(rps, at("none").map(|m| m.rps)),
                    ratio_text(rps, at("rbac").map(|m| m.rps)),
                    ratio_text(rps, at("noop").map(|m| m.rps)),
                    ratio_text(rps, at("ext_authz").map(|m| m.rps)),
                    cpu_text(a),
                    at("none").map_or("–".into(), cpu_text),
                );
            }
        }
    }
    let _ = writeln!(s);
}

impl RunReport {
    /// The transports a variant ran on, in the main tables' order.
    fn transports_of_variant(&self, v: Variant) -> Vec<String> {
        let mut out = self.transports();
        for r in self.variants.iter().filter(|r| r.variant == v) {
            if !out.contains(&r.transport) {
                out.push(r.transport.clone());
            }
        }
        out.retain(|t| {
            self.variants
                .iter()
                .any(|r| r.variant == v && &r.transport == t)
        });
        out
    }
}

/// One progress line for a variant row.
pub fn one_line(r: &VariantRow) -> String {
    format!(
        "{:<30} {:>6} rules {:<9} {:<16} {:>8.0} req/s  p50 {:>6} p99 {:>6} p99.9 {:>6} µs | {:.1} µs CPU/req (CPU 0 {:.0}% busy){}",
        r.label,
        rules_text(r.rules),
        r.transport,
        r.variant.short(),
        r.closed.rps,
        us(r.closed.p50_us),
        us(r.closed.p99_us),
        us(r.closed.p999_us),
        r.closed.total_cpu_us(),
        r.closed.cpu0_busy_pct,
        if r.closed.disturbed() { "  [other work on CPU 0 or 1]" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderSet;
    use crate::report::sample;
    use crate::variant::ConnMode;

    fn variant_rows(v: Variant, transport: &str, rps: [f64; 5], cpu: [f64; 5]) -> Vec<VariantRow> {
        sample::setups(1)
            .into_iter()
            .enumerate()
            .map(|(i, (config, label, rules))| VariantRow {
                config: config.into(),
                label: label.into(),
                rules,
                transport: transport.into(),
                variant: v,
                closed: sample::measurement(rps[i], cpu[i]),
            })
            .collect()
    }

    fn run() -> RunReport {
        let realistic = Variant {
            headers: HeaderSet::Realistic,
            ..Variant::DEFAULT
        };
        let close = Variant {
            connection: ConnMode::Close,
            ..Variant::DEFAULT
        };
        let mut meta = sample::meta();
        meta.traffic = Some(TrafficMeta {
            variants: vec![realistic, close],
            rules: Some(vec![1]),
            cross: false,
            h2_streams: 1,
            realistic_headers: 16,
            realistic_header_bytes: 1151,
        });
        // none, noop, rbac, alp, ext_authz
        let rows = sample::rows(1, "plaintext", [50e3, 45e3, 40e3, 42e3, 10e3], [20.0; 5]);
        let mut variants = variant_rows(
            realistic,
            "plaintext",
            [40e3, 36e3, 32e3, 30e3, 8e3],
            [25.0, 27.0, 30.0, 32.0, 100.0],
        );
        let mut c = variant_rows(close, "plaintext", [10e3, 9e3, 8e3, 8e3, 5e3], [90.0; 5]);
        c[3].closed.cpu0_busy_pct = 70.0;
        variants.extend(c);
        RunReport::new(meta, rows, vec![], variants, vec![])
    }

    #[test]
    fn each_variant_gets_a_table_with_ratios() {
        let md = crate::report::markdown(&run());
        assert!(md.contains("## Traffic: header sets, HTTP/2, a connection per request"));
        assert!(md.contains("### realistic headers (16 fields, 1 151 bytes): Plaintext\n"));
        assert!(md.contains("| configuration | rules | req/s | × no filter | × RBAC | × no-op | × ext_authz | × default (minimal headers) | p50 / p99 / p99.9 µs | CPU µs/req | + CPU µs/req |"));
        // ours: 30k against none 40k, RBAC 32k, no-op 36k, ext_authz 8k, its default 42k; CPU 32 vs 20.
        assert!(
            md.contains("| calico-alp wasm | 1 | 30 000 | 0.75 | 0.94 | 0.83 | 3.75 | 0.71 | 300 / 600 / 900 | 32.0 | +12.0 |"),
            "{md}"
        );
        // Rows without a policy have no RBAC or ext_authz ratio.
        assert!(md.contains("| no filter | – | 40 000 | 1.00 | – | 1.11 | – | 0.80 |"));
        assert!(md.contains("### a connection per request: Plaintext\n"));
        assert!(md.contains("× default (keep-alive)"));
        // Envoy not saturated: flagged.
        assert!(md.contains("| calico-alp wasm ‡ | 1 | 8 000 |"));
        assert!(md.contains("‡ Envoy's CPU was less than 90% busy"));
    }

    #[test]
    fn the_summary_compares_ours_for_every_traffic() {
        let md = crate::report::markdown(&run());
        assert!(md.contains("### Ours against the others, by traffic"));
        assert!(md.contains(
            "| minimal headers, HTTP/1.1, keep-alive | plaintext | 1 | 42 000 | 0.84 | 1.05 | 0.93 | 4.20 | 20.0 | 20.0 |"
        ), "{md}");
        assert!(md.contains(
            "| realistic headers | plaintext | 1 | 30 000 | 0.75 | 0.94 | 0.83 | 3.75 | 32.0 | 25.0 |"
        ));
        assert!(md.contains("| a connection per request | plaintext | 1 | 8 000 | 0.80 | 1.00 | 0.89 | 1.60 | 90.0 | 90.0 |"));
    }

    #[test]
    fn rows_round_trip_through_json() {
        let run = run();
        let text = serde_json::to_string(&run).unwrap();
        let back: RunReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back.variants.len(), run.variants.len());
        assert_eq!(back.variants[0].variant, run.variants[0].variant);
        assert_eq!(
            crate::report::markdown(&back),
            crate::report::markdown(&run)
        );
    }

    #[test]
    fn best_of_rounds_keeps_the_fastest() {
        let mut rows = run().variants;
        let mut again = rows.clone();
        again[0].closed.rps = 1.0;
        again[1].closed.rps = 1e9;
        rows.extend(again);
        let best = best_variants_of_rounds(rows);
        assert_eq!(best.len(), 10);
        assert_eq!(best[0].closed.rps, 40e3);
        assert_eq!(best[1].closed.rps, 1e9);
    }
}
