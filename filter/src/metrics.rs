//! The filter's Envoy stats, named for Prometheus: one family per quantity, counters ending in
//! `_total`, and what varies (decision, reason, tier, policy, ...) as labels. Envoy shows them in
//! `/stats` with the prefix `wasmcustom.` and in `/stats/prometheus` without it.
//!
//! Labels travel inside the stat name the way Istio's own stats carry theirs: each as
//! `label=.=value;.;` before the family name ([`stat_name`]), e.g.
//! `alp_decision=.=denied;.;alp_reason=.=policy_denied;.;alp_requests_total`. An Envoy tag
//! extractor with the regex `(label=\.=(.*?);\.;)` cuts each one out into a tag: Istio
//! generates exactly that for every name listed in `extraStatTags` (mesh config, or the pod
//! annotation `sidecar.istio.io/extraStatTags`), and `envoy/bootstrap.yaml` lists the same
//! regexes. [`LABELS`] are the label names to list.
//!
//! | family | type | labels | what |
//! |---|---|---|---|
//! | `alp_requests_total` | counter | `alp_decision` (`allowed`, `denied`, `would_deny`), `alp_reason` | HTTP requests decided; `would_deny`: denied but let through by a dry run (`enforce: false`). Reasons: `allow`, `policy_denied`, `invalid_peer_identity`, `not_in_sync`, `no_endpoint`, `inconsistent_store`, `bad_request_path`, `attributes_unavailable` (D11) |
//! | `alp_connections_total` | counter | the same | connections decided (network filter) |
//! | `alp_policy_requests_total`, `alp_policy_connections_total` | counter | `alp_tier`, `alp_policy`, `alp_action` (`allow`, `deny`) | decisions by the policy that made them |
//! | `alp_staged_requests_total`, `alp_staged_connections_total` | counter | `alp_staged` (`would_allow`, `would_deny`, `other_denial`) | `staged: true`: decided otherwise by the staged policies: allowing what is denied now, denying what is allowed now, or denying for another reason; their sum is every difference |
//! | `alp_staged_policy_requests_total`, `alp_staged_policy_connections_total` | counter | `alp_tier`, `alp_policy`, `alp_action` | those differing staged decisions by the policy that made them |
//! | `alp_noncanonical_paths_total` | counter | `alp_outcome` (`rewritten`, `rejected`) | non-canonical request paths rewritten to their canonical form / refused (`non_canonical_path: reject`), D10 |
//! | `alp_connections_held_total` | counter | | TLS connections whose upstream bytes arrived before the handshake let them be decided, and were held |
//! | `alp_snapshot_version` | gauge | | the policy version in force |
//! | `alp_snapshot_age_seconds` | gauge | | seconds since that version was received from control |
//! | `alp_snapshot_reloads_total`, `alp_snapshot_refusals_total` | counter | | versions installed / refused (with both filters on one `vm_id`, each counts its own install) |
//! | `alp_dry_run` | gauge | | 1 when `enforce: false` |
//! | `alp_decision_log_suppressed_total` | counter | | decision lines dropped by `decision_log_max_per_second` |
//!
//! Tier and policy values come from the snapshot, never from a request: a policy is `name` or
//! `namespace/name`; decisions of a tier's default action use policy `_default`, profiles use
//! tier `_profiles` (and policy `_default` when no profile decided). Characters other than
//! letters, digits, `_`, `-` (and `.`, `/` in policy names) become `_`. At most
//! [`MAX_POLICY_SERIES`] per-policy series are defined per VM; the rest count under tier and
//! policy `_other`.
//!
//! Nothing here calls the host on the request path: requests add to cells in the VM, and the
//! root context's tick ([`Metrics::flush`]) defines what it needs and adds the counts to Envoy.

use crate::cache::{Events, SnapshotCache};
use crate::host::Stats;
use alp_engine::decision::Origin;
use alp_engine::{CompiledPolicy, Decision, Engine, ProgramNames, Verdict};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Distinct per-policy series (enforced and staged together) one VM defines at most.
pub const MAX_POLICY_SERIES: usize = 1000;
/// Per-version tables kept for flushing after a version change (older ones are dropped).
const MAX_RETIRED: usize = 8;

const STAGED_WOULD_ALLOW: usize = 0;
const STAGED_WOULD_DENY: usize = 1;
const STAGED_OTHER_DENIAL: usize = 2;
const RELOADS: usize = 3;
const REFUSALS: usize = 4;
const LOG_SUPPRESSED: usize = 5;
const PATH_REWRITTEN: usize = 6;
const PATH_REJECTED: usize = 7;
const UPSTREAM_HELD: usize = 8;
const FIXED: usize = 9;

/// The label names the stats carry (for `extraStatTags` and the bootstrap's tag extractors).
pub const LABELS: [&str; 7] = [
    "alp_decision",
    "alp_reason",
    "alp_tier",
    "alp_policy",
    "alp_action",
    "alp_staged",
    "alp_outcome",
];

/// An Envoy stat name for `family` with `labels`, in Istio's encoding (see the module docs).
pub fn stat_name(family: &str, labels: &[(&str, &str)]) -> String {
    let mut name = String::with_capacity(family.len() + labels.len() * 32);
    for (label, value) in labels {
        name.push_str(label);
        name.push_str("=.=");
        name.push_str(value);
        name.push_str(";.;");
    }
    name.push_str(family);
    name
}

/// What one filter instance decides: HTTP requests or connections. Each has its own families
/// (the same scheme); a slot a subject never counts has no stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Subject {
    #[default]
    Request,
    Connection,
}

impl Subject {
    /// The decision log's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Request => "http",
            Subject::Connection => "connection",
        }
    }

    /// `alp_requests_total` or `alp_connections_total`.
    fn decisions(self) -> &'static str {
        match self {
            Subject::Request => "alp_requests_total",
            Subject::Connection => "alp_connections_total",
        }
    }

    fn staged(self) -> &'static str {
        match self {
            Subject::Request => "alp_staged_requests_total",
            Subject::Connection => "alp_staged_connections_total",
        }
    }

    /// The family and label of each fixed slot (`None`: not counted for this subject).
    fn fixed(self) -> [Option<FixedStat>; FIXED] {
        let staged = |value| Some((self.staged(), Some(("alp_staged", value))));
        let plain = |family| Some((family, None));
        let path = |value| match self {
            Subject::Request => {
                Some(("alp_noncanonical_paths_total", Some(("alp_outcome", value))))
            }
            Subject::Connection => None,
        };
        [
            staged("would_allow"),
            staged("would_deny"),
            staged("other_denial"),
            plain("alp_snapshot_reloads_total"),
            plain("alp_snapshot_refusals_total"),
            plain("alp_decision_log_suppressed_total"),
            path("rewritten"),
            path("rejected"),
            match self {
                Subject::Request => None,
                Subject::Connection => plain("alp_connections_held_total"),
            },
        ]
    }
}

/// A fixed slot's family and its one label, if any.
type FixedStat = (&'static str, Option<(&'static str, &'static str)>);

/// What happened to a non-canonical request path (D10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOutcome {
    Rewritten,
    Rejected,
}
const REASONS: usize = Verdict::ALL.len();

/// Which program of an engine a table counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Enforced,
    Staged,
}

impl Program {
    fn of(self, engine: &Engine) -> Option<&CompiledPolicy> {
        match self {
            Program::Enforced => engine.policy(),
            Program::Staged => engine.staged_policy(),
        }
    }

    fn family(self, subject: Subject) -> &'static str {
        match (subject, self) {
            (Subject::Request, Program::Enforced) => "alp_policy_requests_total",
            (Subject::Request, Program::Staged) => "alp_staged_policy_requests_total",
            (Subject::Connection, Program::Enforced) => "alp_policy_connections_total",
            (Subject::Connection, Program::Staged) => "alp_staged_policy_connections_total",
        }
    }
}

/// Decision counts per policy of one compiled version: slot `2 * s + (0 allow | 1 deny)`. It
/// keeps the program's names, not the program, so a replaced version's program is freed at once.
#[derive(Debug)]
struct PolicyTable {
    /// `None`: an engine without a program (not in sync), which counts nothing per policy.
    names: Option<Arc<ProgramNames>>,
    program: Program,
    counts: Vec<u64>,
    /// Envoy metric ids per count, filled on first flush (`None`: not defined yet).
    ids: Vec<Option<u32>>,
    /// The counts that are not zero, so a flush visits only those (at 10 000 rules a table has
    /// thousands of counts).
    dirty: Vec<usize>,
}

impl PolicyTable {
    fn new(engine: &Engine, program: Program) -> Self {
        let names = program.of(engine).map(|p| Arc::clone(p.names()));
        let n = names.as_deref().map_or(0, slots) * 2;
        PolicyTable {
            names,
            program,
            counts: vec![0; n],
            ids: vec![None; n],
            dirty: Vec::new(),
        }
    }

    fn add(&mut self, decision: &Decision) {
        let Some(names) = self.names.as_deref() else {
            return;
        };
        let Some(i) = slot(names, decision.origin)
            .map(|s| s * 2 + usize::from(!decision.verdict.is_allowed()))
        else {
            return;
        };
        if let Some(count) = self.counts.get_mut(i) {
            if *count == 0 {
                self.dirty.push(i);
            }
            *count += 1;
        }
    }
}

/// Slots of a program: its policies, its tiers' default actions, its profiles, "no profile".
fn slots(p: &ProgramNames) -> usize {
    p.policy_count() + p.tier_count() + p.profile_count() + 1
}

fn slot(p: &ProgramNames, origin: Origin) -> Option<usize> {
    let (policies, tiers, profiles) = (p.policy_count(), p.tier_count(), p.profile_count());
    match origin {
        Origin::Precheck => None,
        Origin::PolicyRule { policy, .. } | Origin::MissingPolicy { policy, .. } => {
            Some(policy as usize)
        }
        Origin::TierDefault { tier } => Some(policies + tier as usize),
        Origin::ProfileRule { profile, .. } => Some(policies + tiers + profile as usize),
        Origin::NoProfiles | Origin::ProfilesExhausted => Some(policies + tiers + profiles),
    }
}

/// `(tier, policy)` of a slot, sanitised for a stat name.
fn slot_names(p: &ProgramNames, s: usize) -> (String, String) {
    let (policies, tiers, profiles) = (p.policy_count(), p.tier_count(), p.profile_count());
    let tier = |t: u32| {
        p.tier_name(t)
            .map_or_else(|| "_unknown".into(), |n| segment(n, false))
    };
    if s < policies {
        let index = u32::try_from(s).unwrap_or(u32::MAX);
        let name = p.policy_id(index).map_or_else(
            || "_unknown".into(),
            |id| segment(&id.qualified_name().to_string(), true),
        );
        let tier = p.policy_tier(index).map_or_else(|| "_unknown".into(), tier);
        (tier, name)
    } else if s < policies + tiers {
        (
            tier(u32::try_from(s - policies).unwrap_or(u32::MAX)),
            "_default".into(),
        )
    } else if s < policies + tiers + profiles {
        let name = p
            .profile_name(u32::try_from(s - policies - tiers).unwrap_or(u32::MAX))
            .map_or_else(|| "_unknown".into(), |n| segment(n, true));
        ("_profiles".into(), name)
    } else {
        ("_profiles".into(), "_default".into())
    }
}

/// Longest name segment taken from the snapshot.
const MAX_SEGMENT: usize = 200;

/// A stat name segment: `[A-Za-z0-9_-]` (plus `.` and `/` for policy names), others `_`.
pub fn segment(text: &str, policy: bool) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_SEGMENT)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            '.' | '/' if policy => c,
            _ => '_',
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The snapshot's side of a flush: events since the last one, the version in force and when it
/// was received.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotStatus {
    pub events: Events,
    pub version: Option<u64>,
    pub received_ms: Option<u64>,
}

/// The VM's counters and gauges: counted where decisions are made, added to Envoy's stats by
/// [`Metrics::flush`] (the wasm root context's tick; the native module's configuration tick on
/// Envoy's main thread, for every worker's metrics), so they are `Sync`: atomics, and one lock
/// for the per-policy tables (taken once per decision, by one worker and the tick at most).
#[derive(Debug, Default)]
pub struct Metrics {
    enabled: bool,
    subject: Subject,
    fixed: [Option<u32>; FIXED],
    fixed_pending: [AtomicU64; FIXED],
    reasons: [Option<u32>; REASONS],
    reasons_pending: [AtomicU64; REASONS],
    version_gauge: Option<u32>,
    age_gauge: Option<u32>,
    tables: Mutex<Tables>,
}

/// The per-policy counts and the series defined for them.
#[derive(Debug, Default)]
struct Tables {
    enforced: Option<PolicyTable>,
    staged: Option<PolicyTable>,
    /// Tables of versions no longer in force, still to flush.
    retired: Vec<PolicyTable>,
    /// Per-policy series defined so far: name -> id.
    series: HashMap<String, u32>,
}

impl Metrics {
    /// Defines the fixed metrics of `subject` (at configuration time). `dry_run` sets
    /// `alp_dry_run`, and makes denials count as `would_deny`.
    pub fn define(host: &dyn Stats, dry_run: bool, subject: Subject) -> Self {
        let mut fixed = [None; FIXED];
        for (id, name) in fixed.iter_mut().zip(subject.fixed()) {
            *id = name.and_then(|(family, label)| host.define_counter(family, label.as_slice()));
        }
        let mut reasons = [None; REASONS];
        for (id, verdict) in reasons.iter_mut().zip(Verdict::ALL) {
            let decision = match (verdict.is_allowed(), dry_run) {
                (true, _) => "allowed",
                (false, false) => "denied",
                (false, true) => "would_deny",
            };
            *id = host.define_counter(
                subject.decisions(),
                &[("alp_decision", decision), ("alp_reason", verdict.reason())],
            );
        }
        if let Some(id) = host.define_gauge("alp_dry_run") {
            host.set_gauge(id, u64::from(dry_run));
        }
        Metrics {
            enabled: true,
            subject,
            fixed,
            reasons,
            version_gauge: host.define_gauge("alp_snapshot_version"),
            age_gauge: host.define_gauge("alp_snapshot_age_seconds"),
            ..Default::default()
        }
    }

    /// The same metric ids with nothing counted yet. The native module defines its metrics once
    /// per filter configuration (Envoy allows it only then) and gives each worker thread a copy.
    pub fn with_same_ids(&self) -> Metrics {
        Metrics {
            enabled: self.enabled,
            subject: self.subject,
            fixed: self.fixed,
            reasons: self.reasons,
            version_gauge: self.version_gauge,
            age_gauge: self.age_gauge,
            ..Default::default()
        }
    }

    /// No metrics at all (`metrics: false`).
    pub fn disabled() -> Self {
        Metrics::default()
    }

    /// Decision lines the rate limit dropped (root context tick).
    pub fn count_suppressed_lines(&self, n: u64) {
        self.add_fixed(LOG_SUPPRESSED, n);
    }

    /// A non-canonical request path, rewritten or refused. No host call.
    pub fn count_path(&self, outcome: PathOutcome) {
        if self.enabled {
            self.bump(match outcome {
                PathOutcome::Rewritten => PATH_REWRITTEN,
                PathOutcome::Rejected => PATH_REJECTED,
            });
        }
    }

    /// A connection whose upstream bytes arrived before it could be decided (held). No host
    /// call.
    pub fn count_upstream_held(&self) {
        if self.enabled {
            self.bump(UPSTREAM_HELD);
        }
    }

    fn bump(&self, i: usize) {
        self.add_fixed(i, 1);
    }

    fn add_fixed(&self, i: usize, n: u64) {
        if let (Some(c), true) = (self.fixed_pending.get(i), n > 0) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while counting leaves counts, not broken invariants: go on with them.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one request or connection: its decision (a denial as `denied`, or `would_deny`
    /// in a dry run), and the staged rehearsal's decision if there is one. No host call.
    pub fn count(&self, engine: &Arc<Engine>, decision: &Decision, staged: Option<&Decision>) {
        if !self.enabled {
            return;
        }
        if let Some(c) = Verdict::ALL
            .iter()
            .position(|v| *v == decision.verdict)
            .and_then(|i| self.reasons_pending.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let mut tables = self.tables();
        let Tables {
            enforced,
            staged: staged_table,
            retired,
            ..
        } = &mut *tables;
        add(enforced, retired, engine, Program::Enforced, decision);
        if let Some(s) = staged.filter(|s| s.verdict != decision.verdict) {
            self.bump(if s.verdict.is_allowed() {
                STAGED_WOULD_ALLOW
            } else if decision.verdict.is_allowed() {
                STAGED_WOULD_DENY
            } else {
                STAGED_OTHER_DENIAL
            });
            add(staged_table, retired, engine, Program::Staged, s);
        }
    }

    /// Adds the counts since the last flush to Envoy's stats and sets the gauges (root context
    /// tick). `cache` is the VM's snapshot cache, when it is not busy.
    pub fn flush(&self, host: &dyn Stats, cache: Option<&mut SnapshotCache>) {
        let status = cache.map(|cache| SnapshotStatus {
            events: cache.take_events(),
            version: cache.version(),
            received_ms: cache.received_ms(),
        });
        self.flush_with(host, status);
    }

    /// [`flush`](Self::flush) with the snapshot's status from wherever the program comes from
    /// (the native module's follower).
    pub fn flush_with(&self, host: &dyn Stats, status: Option<SnapshotStatus>) {
        if !self.enabled {
            return;
        }
        if let Some(status) = status {
            let events = status.events;
            self.add_fixed(RELOADS, events.reloads);
            self.add_fixed(REFUSALS, events.refusals);
            if let (Some(id), Some(version)) = (self.version_gauge, status.version) {
                host.set_gauge(id, version);
            }
            if let (Some(id), Some(at)) = (self.age_gauge, status.received_ms) {
                host.set_gauge(id, host.now_ms().saturating_sub(at) / 1000);
            }
        }
        for (ids, pending) in [
            (&self.fixed[..], &self.fixed_pending[..]),
            (&self.reasons[..], &self.reasons_pending[..]),
        ] {
            for (id, pending) in ids.iter().zip(pending) {
                let n = pending.swap(0, Ordering::Relaxed);
                if let (Some(id), true) = (id, n > 0) {
                    host.increment_counter(*id, n);
                }
            }
        }
        let mut tables = self.tables();
        let Tables {
            enforced,
            staged,
            retired,
            series,
        } = &mut *tables;
        for mut table in std::mem::take(retired) {
            flush_table(host, self.subject, series, &mut table);
        }
        for table in [enforced, staged].into_iter().flatten() {
            flush_table(host, self.subject, series, table);
        }
    }
}

/// Counts `decision` in `table`, which is replaced (and the old one kept in `retired` for its
/// last flush) when the engine is a new version: its first decision makes its table.
fn add(
    table: &mut Option<PolicyTable>,
    retired: &mut Vec<PolicyTable>,
    engine: &Arc<Engine>,
    program: Program,
    decision: &Decision,
) {
    let names = program.of(engine).map(|p| p.names());
    if !table.as_ref().is_some_and(|t| match (&t.names, names) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }) {
        let old = table.replace(PolicyTable::new(engine, program));
        if let Some(old) = old.filter(|_| retired.len() < MAX_RETIRED) {
            retired.push(old);
        }
    }
    if let Some(t) = table.as_mut() {
        t.add(decision);
    }
}

fn flush_table(
    host: &dyn Stats,
    subject: Subject,
    series: &mut HashMap<String, u32>,
    table: &mut PolicyTable,
) {
    let Some(names) = table.names.clone() else {
        return;
    };
    let family = table.program.family(subject);
    for i in std::mem::take(&mut table.dirty) {
        let (Some(count), Some(id)) = (table.counts.get_mut(i), table.ids.get_mut(i)) else {
            continue;
        };
        let n = std::mem::take(count);
        if n == 0 {
            continue;
        }
        if id.is_none() {
            let (tier, name) = slot_names(&names, i / 2);
            let verdict = if i % 2 == 0 { "allow" } else { "deny" };
            *id = series_id(host, series, family, &tier, &name, verdict);
        }
        if let Some(id) = id {
            host.increment_counter(*id, n);
        }
    }
}

/// The id of the series of `family` for (`tier`, `policy`, `action`), or of the `_other`
/// series once [`MAX_POLICY_SERIES`] are defined.
fn series_id(
    host: &dyn Stats,
    series: &mut HashMap<String, u32>,
    family: &str,
    tier: &str,
    policy: &str,
    action: &str,
) -> Option<u32> {
    let labels = |tier, policy| {
        [
            ("alp_tier", tier),
            ("alp_policy", policy),
            ("alp_action", action),
        ]
    };
    let key = stat_name(family, &labels(tier, policy));
    if let Some(id) = series.get(&key) {
        return Some(*id);
    }
    let (key, labels) = if series.len() < MAX_POLICY_SERIES {
        (key, labels(tier, policy))
    } else {
        let other = labels("_other", "_other");
        (stat_name(family, &other), other)
    };
    if let Some(id) = series.get(&key) {
        return Some(*id);
    }
    let id = host.define_counter(family, &labels)?;
    series.insert(key, id);
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use alp_engine::decision::Cause;
    use alp_engine::snapshot::{Endpoint, Policy, PolicyId, Profile, Rule, Snapshot, Tier};

    fn pid(name: &str, namespace: &str, kind: &str) -> PolicyId {
        PolicyId {
            name: name.into(),
            namespace: namespace.into(),
            kind: kind.into(),
        }
    }

    /// Tier `default`: `allow-db` (ns `prod`), `deny.all`; tier `security`: none; profile.
    fn engine() -> Arc<Engine> {
        let a = pid("allow-db", "prod", "NetworkPolicy");
        let b = pid("deny.all", "", "GlobalNetworkPolicy");
        let rules = |action: &str| {
            vec![Rule {
                action: action.into(),
                ..Default::default()
            }]
        };
        let snapshot = Snapshot {
            endpoint: Some(Endpoint {
                tiers: vec![Tier {
                    name: "default".into(),
                    ingress_policies: vec![a.clone(), b.clone()],
                    default_action: "Deny".into(),
                }],
                profile_ids: vec!["kns.prod".into()],
            }),
            policies: vec![
                Policy {
                    id: a,
                    namespace: "prod".into(),
                    inbound_rules: rules("allow"),
                },
                Policy {
                    id: b,
                    namespace: String::new(),
                    inbound_rules: rules("deny"),
                },
            ],
            profiles: vec![Profile {
                name: "kns.prod".into(),
                inbound_rules: rules("allow"),
            }],
            ..Default::default()
        };
        Arc::new(Engine::from_snapshot(7, &snapshot))
    }

    fn decision(verdict: Verdict, origin: Origin) -> Decision {
        Decision {
            verdict,
            origin,
            cause: Cause::RuleAction,
        }
    }

    #[test]
    fn per_policy_names_come_from_the_snapshot() {
        let host = FakeHost::new();
        let m = Metrics::define(&host, false, Subject::Request);
        let e = engine();
        let rule = |policy| Origin::PolicyRule {
            tier: 0,
            policy,
            rule: 0,
        };
        m.count(&e, &decision(Verdict::Allow, rule(0)), None);
        m.count(&e, &decision(Verdict::PolicyDenied, rule(1)), None);
        m.count(&e, &decision(Verdict::PolicyDenied, rule(1)), None);
        m.count(
            &e,
            &decision(Verdict::PolicyDenied, Origin::TierDefault { tier: 0 }),
            None,
        );
        m.count(
            &e,
            &decision(
                Verdict::Allow,
                Origin::ProfileRule {
                    profile: 0,
                    rule: 0,
                },
            ),
            None,
        );
        m.count(
            &e,
            &decision(Verdict::PolicyDenied, Origin::ProfilesExhausted),
            None,
        );
        m.count(&e, &Decision::precheck(Verdict::InvalidPeerIdentity), None);
        let policy_series = |host: &FakeHost| host.counters_with("alp_tier=");
        assert_eq!(policy_series(&host), vec![]);
        let calls = host.metric_calls.get();
        m.flush(&host, None);
        assert!(host.metric_calls.get() > calls);
        let series = |tier: &str, policy: &str, action: &str, n: u64| {
            let labels = [
                ("alp_tier", tier),
                ("alp_policy", policy),
                ("alp_action", action),
            ];
            (stat_name("alp_policy_requests_total", &labels), n)
        };
        let mut expected = vec![
            series("_profiles", "_default", "deny", 1),
            series("_profiles", "kns.prod", "allow", 1),
            series("default", "_default", "deny", 1),
            series("default", "deny.all", "deny", 2),
            series("default", "prod/allow-db", "allow", 1),
        ];
        expected.sort();
        assert_eq!(policy_series(&host), expected);
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "allowed")]),
            2
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "denied")]),
            5
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_reason", "policy_denied")]),
            4
        );
        assert_eq!(
            host.metric(
                "alp_requests_total",
                &[("alp_reason", "invalid_peer_identity")]
            ),
            1
        );
        // Flushed once: a second flush adds nothing.
        m.flush(&host, None);
        assert_eq!(
            host.metric(
                "alp_policy_requests_total",
                &[
                    ("alp_tier", "default"),
                    ("alp_policy", "deny.all"),
                    ("alp_action", "deny")
                ]
            ),
            2
        );
    }

    #[test]
    fn a_new_version_keeps_the_old_counts() {
        let host = FakeHost::new();
        let m = Metrics::define(&host, false, Subject::Request);
        let (v1, v2) = (engine(), engine());
        let origin = Origin::PolicyRule {
            tier: 0,
            policy: 1,
            rule: 0,
        };
        m.count(&v1, &decision(Verdict::PolicyDenied, origin), None);
        m.count(&v2, &decision(Verdict::PolicyDenied, origin), None);
        m.flush(&host, None);
        assert_eq!(
            host.metric(
                "alp_policy_requests_total",
                &[
                    ("alp_tier", "default"),
                    ("alp_policy", "deny.all"),
                    ("alp_action", "deny")
                ]
            ),
            2
        );
    }

    #[test]
    fn series_are_capped() {
        let host = FakeHost::new();
        let mut series = HashMap::new();
        let mut id = |tier: &str, policy: &str| {
            series_id(
                &host,
                &mut series,
                "alp_policy_requests_total",
                tier,
                policy,
                "allow",
            )
        };
        for i in 0..MAX_POLICY_SERIES + 5 {
            id("t", &format!("p{i}"));
        }
        let other = id("t", "new");
        assert_eq!(other, id("_other", "_other"));
        assert!(id("t", "p3").is_some());
        let defined = host
            .counters
            .borrow()
            .iter()
            .filter(|(n, _)| n.ends_with(";.;alp_policy_requests_total"))
            .count();
        assert_eq!(defined, MAX_POLICY_SERIES + 1, "the cap plus `_other`");
    }

    #[test]
    fn segments_are_sanitised() {
        assert_eq!(segment("default", false), "default");
        assert_eq!(segment("a.b c:d", false), "a_b_c_d");
        assert_eq!(segment("ns/a.b c", true), "ns/a.b_c");
        assert_eq!(segment("", true), "_");
        assert_eq!(segment(&"x".repeat(500), true).len(), MAX_SEGMENT);
    }

    #[test]
    fn disabled_counts_nothing() {
        let host = FakeHost::new();
        let m = Metrics::disabled();
        m.count(&engine(), &Decision::precheck(Verdict::NotInSync), None);
        m.flush(&host, None);
        assert_eq!(host.metric_calls.get(), 0);
    }
}
