//! The filter's counters and gauges as the tests read them: from Envoy's admin `/stats` (flat
//! names) and `/stats/prometheus` (families and labels), a snapshot, the change since an earlier
//! one, and bounded waits for the filter's flush (on its 100 ms root tick).
//!
//! In `/stats` every stat of the filter is `wasmcustom.` and then its name, which carries its
//! Prometheus labels before the family, in Istio's encoding (filter/src/metrics.rs,
//! `stat_name`): `label=.=value;.;` per label, e.g.
//! `wasmcustom.alp_decision=.=denied;.;alp_reason=.=policy_denied;.;alp_requests_total`.
//! [`parse_name`] takes such a name apart into (family, labels); [`AlpStats::metric`] sums the
//! series of a family that carry the given labels, as a Prometheus query would.
//!
//! The native module's stats (`$ALP_ARTEFACT=native`) are Envoy's dynamic-module stats: in
//! `/stats/prometheus` each family carries [`NATIVE_PROMETHEUS_PREFIX`] before its name, with the
//! same labels. The tests read them from there and key them as the wasm filter's are, so every
//! check holds for both artefacts.
//!
//! These are test steps: they panic (with what went wrong) instead of returning errors.

use crate::envoy::Envoy;
use crate::stack::Stack;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The prefix Envoy gives the stats a wasm module defines.
pub const PREFIX: &str = "wasmcustom.";
/// The prefix of the native module's families in `/stats/prometheus` (Envoy's default
/// `metrics_namespace` for dynamic modules, `dynamicmodulescustom`).
pub const NATIVE_PROMETHEUS_PREFIX: &str = "envoy_dynamicmodulescustom_";

fn native() -> bool {
    crate::artifacts::Artefact::from_env() == crate::artifacts::Artefact::Native
}

/// Whether connections are counted per policy (`alp_policy_connections_total`,
/// `alp_staged_policy_connections_total`): not by the native module, whose network filter can
/// define only unlabeled counters, and only while Envoy creates its configuration, before any
/// policy is known.
pub fn connections_by_policy() -> bool {
    !native()
}

/// Every family the filter defines (filter/src/metrics.rs); a Prometheus family `alp_*` of
/// Envoy's not listed here is a mistake (a label left in a name, say). control's own metrics,
/// `alp_control_*`, are served by control, never by Envoy.
pub const FAMILIES: [&str; 16] = [
    "alp_requests_total",
    "alp_connections_total",
    "alp_policy_requests_total",
    "alp_policy_connections_total",
    "alp_staged_requests_total",
    "alp_staged_connections_total",
    "alp_staged_policy_requests_total",
    "alp_staged_policy_connections_total",
    "alp_noncanonical_paths_total",
    "alp_connections_held_total",
    "alp_snapshot_version",
    "alp_snapshot_age_seconds",
    "alp_snapshot_reloads_total",
    "alp_snapshot_refusals_total",
    "alp_dry_run",
    "alp_decision_log_suppressed_total",
];

/// The filter's gauges. Every VM sets them on its tick, and the VMs of several workloads share
/// the names, so `alp_snapshot_version` is whichever workload's VM set it last.
pub const GAUGES: [&str; 3] = [
    "alp_snapshot_version",
    "alp_snapshot_age_seconds",
    "alp_dry_run",
];

/// The label names the filter's stats carry: what `extraStatTags` must list, and what the
/// bootstrap's tag extractors cut out (filter/src/metrics.rs, `LABELS`).
pub const LABELS: [&str; 7] = [
    "alp_decision",
    "alp_reason",
    "alp_tier",
    "alp_policy",
    "alp_action",
    "alp_staged",
    "alp_outcome",
];

/// Labels as the tests give them: `&[("alp_decision", "denied")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// A stat's labels as its name has them: (label, value) in name order.
pub type NameLabels = Vec<(String, String)>;

/// One stat: its family, its labels and its value.
pub type Series = (String, NameLabels, u64);

/// A stat name (without [`PREFIX`]) taken apart: its family and its labels in name order.
/// `None` when a part before the family is not `label=.=value`.
pub fn parse_name(name: &str) -> Option<(String, NameLabels)> {
    let mut parts: Vec<&str> = name.split(";.;").collect();
    let family = parts.pop()?;
    if family.is_empty() || family.contains("=.=") {
        return None;
    }
    let labels = parts
        .into_iter()
        .map(|p| {
            let (l, v) = p.split_once("=.=")?;
            (!l.is_empty()).then(|| (l.to_string(), v.to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((family.to_string(), labels))
}

/// Whether the series `labels` has every label of `want` with its value.
fn carries(labels: &[(String, String)], want: Labels<'_>) -> bool {
    want.iter()
        .all(|(l, v)| labels.iter().any(|(k, x)| k == l && x == v))
}

/// Every `wasmcustom.*` stat at one moment, keyed by its name without [`PREFIX`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlpStats(pub BTreeMap<String, u64>);

impl AlpStats {
    /// Reads the stack's Envoy (a failed read panics).
    pub fn read(stack: &Stack) -> Self {
        Self::read_envoy(&stack.envoy)
    }

    /// Reads `/stats?filter=^wasmcustom\.` of `envoy` (a failed read panics); for the native
    /// module its families in `/stats/prometheus`, keyed by the names the wasm filter uses.
    pub fn read_envoy(envoy: &Envoy) -> Self {
        if native() {
            return AlpStats(
                read_prometheus(envoy)
                    .into_iter()
                    .map(|s| {
                        let labels: Vec<(&str, &str)> = s
                            .labels
                            .iter()
                            .map(|(l, v)| (l.as_str(), v.as_str()))
                            .collect();
                        let name = alp_filter_stat_name(&s.family, &labels);
                        (name, s.value as u64)
                    })
                    .collect(),
            );
        }
        let r = envoy
            .admin_get("/stats?filter=%5Ewasmcustom%5C.")
            .unwrap_or_else(|e| panic!("admin /stats: {e:#}"));
        AlpStats(
            r.body
                .lines()
                .filter_map(|l| l.split_once(": "))
                .filter_map(|(n, v)| {
                    let name = n.strip_prefix(PREFIX)?;
                    Some((name.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// Every stat as (family, labels, value); a name that does not parse panics.
    pub fn series(&self) -> Vec<Series> {
        self.0
            .iter()
            .map(|(name, v)| {
                let (family, labels) = parse_name(name)
                    .unwrap_or_else(|| panic!("{PREFIX}{name}: not a family with labels"));
                (family, labels, *v)
            })
            .collect()
    }

    /// The sum of the series of `family` that carry `labels` (every series of the family for
    /// `&[]`); 0 when there is none.
    pub fn metric(&self, family: &str, labels: Labels<'_>) -> u64 {
        self.series()
            .into_iter()
            .filter(|(f, l, _)| f == family && carries(l, labels))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether some series of `family` carries `labels`.
    pub fn has(&self, family: &str, labels: Labels<'_>) -> bool {
        self.series()
            .iter()
            .any(|(f, l, _)| f == family && carries(l, labels))
    }

    /// How much [`metric`](Self::metric) grew since `before`.
    pub fn delta(&self, before: &AlpStats, family: &str, labels: Labels<'_>) -> u64 {
        self.metric(family, labels)
            .saturating_sub(before.metric(family, labels))
    }

    /// The counters (the stats but the [`GAUGES`], which move by themselves).
    pub fn counters(&self) -> BTreeMap<&str, u64> {
        self.0
            .iter()
            .filter(|(k, _)| !GAUGES.iter().any(|g| k.ends_with(g)))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

/// Waits (up to 10 s) until the stats of `envoy` satisfy `done`; the last ones read either way.
pub fn wait_for_stats(
    envoy: &Envoy,
    done: impl Fn(&AlpStats) -> bool,
) -> Result<AlpStats, AlpStats> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = AlpStats::read_envoy(envoy);
        if done(&stats) {
            return Ok(stats);
        }
        if Instant::now() >= deadline {
            return Err(stats);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (up to 10 s) until the stats satisfy `done`; panics with them and the logs otherwise.
pub fn stats_until(stack: &Stack, what: &str, done: impl Fn(&AlpStats) -> bool) -> AlpStats {
    wait_for_stats(&stack.envoy, done).unwrap_or_else(|stats| {
        panic!(
            "{what}: the stats never got there: {:#?}\n{}",
            stats.0,
            stack.diagnostics(&stack.workloads[0].name)
        )
    })
}

/// The stats once a snapshot is in and every VM has flushed what it counted so far (two reads
/// three ticks apart agree): the baseline to measure a test's own decisions from.
pub fn settled(stack: &Stack) -> AlpStats {
    let mut last = stats_until(stack, "first snapshot", |s| {
        s.metric("alp_snapshot_version", &[]) > 0
    });
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = AlpStats::read(stack);
        if now.counters() == last.counters() {
            return now;
        }
        last = now;
    }
}

/// One series of Envoy's `/stats/prometheus`: `family{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct PromSeries {
    pub family: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The series of a Prometheus text exposition (comments skipped; a line that does not parse
/// panics).
pub fn parse_prometheus(text: &str) -> Vec<PromSeries> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_prom_line(l).unwrap_or_else(|| panic!("not a Prometheus series: {l}")))
        .collect()
}

fn parse_prom_line(line: &str) -> Option<PromSeries> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (family, mut rest) = match head.split_once('{') {
        Some((f, r)) => (f, r.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        // The value runs to the first unescaped quote.
        let mut v = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                (i, '"') => break i,
                (_, c) => v.push(c),
            }
        };
        labels.insert(name.trim_start_matches(',').to_string(), v);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(PromSeries {
        family: family.to_string(),
        labels,
        value,
    })
}

/// The `alp_*` series of `envoy`'s `/stats/prometheus` (a failed read panics); the native
/// module's without their [`NATIVE_PROMETHEUS_PREFIX`].
pub fn read_prometheus(envoy: &Envoy) -> Vec<PromSeries> {
    let r = envoy
        .admin_get("/stats/prometheus")
        .unwrap_or_else(|e| panic!("admin /stats/prometheus: {e:#}"));
    parse_prometheus(&r.body)
        .into_iter()
        .filter_map(|mut s| {
            if let Some(family) = s.family.strip_prefix(NATIVE_PROMETHEUS_PREFIX) {
                s.family = family.to_string();
            }
            s.family.starts_with("alp_").then_some(s)
        })
        .collect()
}

/// A stat name in the wasm filter's encoding (filter/src/metrics.rs, `stat_name`).
fn alp_filter_stat_name(family: &str, labels: &[(&str, &str)]) -> String {
    let mut name = String::new();
    for (l, v) in labels {
        name.push_str(&format!("{l}=.={v};.;"));
    }
    name.push_str(family);
    name
}

/// `/stats` and the `alp_*` series of `/stats/prometheus` of `envoy` at one moment: read until
/// the counters of two `/stats` reads around the Prometheus read agree (the filter flushes every
/// 100 ms).
pub fn read_both(envoy: &Envoy) -> (AlpStats, Vec<PromSeries>) {
    loop {
        let before = AlpStats::read_envoy(envoy);
        let prom = read_prometheus(envoy);
        let after = AlpStats::read_envoy(envoy);
        if before.counters() == after.counters() {
            return (after, prom);
        }
    }
}

/// The value of the series of `family` whose labels are exactly `labels`, if there is one.
pub fn prom_value(series: &[PromSeries], family: &str, labels: Labels<'_>) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(l, v)| (l.to_string(), v.to_string()))
        .collect();
    series
        .iter()
        .find(|s| s.family == family && s.labels == want)
        .map(|s| s.value)
}

/// Checks that `/stats/prometheus` shows every filter stat of `stats` as its family with exactly
/// its labels (so every label was cut out of the name by a tag extractor), a counter with the
/// same value (read both with [`read_both`]), and no other `alp_*` family. Returns what went
/// wrong, one line each.
pub fn prometheus_mismatches(stats: &AlpStats, prom: &[PromSeries]) -> Vec<String> {
    let mut wrong = vec![];
    for (family, labels, value) in stats.series() {
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(l, v)| (l.as_str(), v.as_str()))
            .collect();
        match prom_value(prom, &family, &l) {
            None => wrong.push(format!("no series {family}{labels:?} in /stats/prometheus")),
            Some(v) if !GAUGES.contains(&family.as_str()) && v != value as f64 => wrong.push(
                format!("{family}{labels:?}: {v} in Prometheus, {value} in /stats"),
            ),
            Some(_) => {}
        }
    }
    for s in prom {
        if !FAMILIES.contains(&s.family.as_str()) {
            wrong.push(format!(
                "Prometheus family {} is none of the filter's (a label left in the name?)",
                s.family
            ));
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prometheus_lines_parse() {
        assert_eq!(
            parse_name("alp_decision=.=denied;.;alp_reason=.=policy_denied;.;alp_requests_total"),
            Some((
                "alp_requests_total".into(),
                vec![
                    ("alp_decision".into(), "denied".into()),
                    ("alp_reason".into(), "policy_denied".into())
                ]
            ))
        );
        assert_eq!(
            parse_name("alp_dry_run"),
            Some(("alp_dry_run".into(), vec![]))
        );
        assert_eq!(
            parse_name("alp_tier=.=default;.;alp_policy=.=kns.default/x;.;alp_action=.=allow;.;alp_policy_requests_total")
                .map(|(_, l)| l[1].1.clone()),
            Some("kns.default/x".into())
        );
        assert_eq!(parse_name("alp_decision=denied;.;alp_requests_total"), None);
        assert_eq!(parse_name("alp_decision=.=denied;.;"), None);

        let prom = parse_prometheus(
            "# TYPE alp_requests_total counter\n\
             alp_requests_total{alp_decision=\"denied\",alp_reason=\"policy_denied\"} 3\n\
             alp_snapshot_version{} 1795306787524587\n\
             alp_dry_run 0\n\
             x{a=\"q\\\"uote,d\"} 1.5\n",
        );
        assert_eq!(
            prom_value(
                &prom,
                "alp_requests_total",
                &[("alp_reason", "policy_denied"), ("alp_decision", "denied")]
            ),
            Some(3.0)
        );
        assert_eq!(
            prom_value(&prom, "alp_requests_total", &[("alp_decision", "denied")]),
            None
        );
        assert_eq!(
            prom_value(&prom, "alp_snapshot_version", &[]),
            Some(1795306787524587.0)
        );
        assert_eq!(prom_value(&prom, "alp_dry_run", &[]), Some(0.0));
        assert_eq!(prom_value(&prom, "x", &[("a", "q\"uote,d")]), Some(1.5));

        let stats = AlpStats(
            [
                (
                    "alp_decision=.=denied;.;alp_reason=.=policy_denied;.;alp_requests_total",
                    3,
                ),
                (
                    "alp_decision=.=denied;.;alp_reason=.=not_in_sync;.;alp_requests_total",
                    2,
                ),
                (
                    "alp_decision=.=allowed;.;alp_reason=.=allow;.;alp_requests_total",
                    5,
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        assert_eq!(stats.metric("alp_requests_total", &[]), 10);
        assert_eq!(
            stats.metric("alp_requests_total", &[("alp_decision", "denied")]),
            5
        );
        assert_eq!(
            stats.metric(
                "alp_requests_total",
                &[("alp_decision", "denied"), ("alp_reason", "not_in_sync")]
            ),
            2
        );
        assert_eq!(stats.metric("alp_connections_total", &[]), 0);
    }
}
