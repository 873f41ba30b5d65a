//! A candidate filter over the flattened program, so a request with many rules visits only the
//! steps that could match it. Four request facts are indexed: the source identity, the
//! destination port, the HTTP method (or its absence), and the first segment of the normalised
//! request path. Every step that is not a plain rule, and every rule that fails closed
//! when reached (missing IP set), is a candidate for every request, so the filter never changes a
//! decision, only skips rules that cannot match.
//!
//! The source identity `(namespace, service account)` decides a rule's service-account and
//! namespace clauses on its own (labels come from the store, never from the request), so the set
//! of rules an identity can match is computed on its first request and cached for the version.
//! Until an identity is cached (or when the cache is full) the service-account names index
//! stands in.
//!
//! A rule whose HTTP clause lists paths can only match a request whose normalised path has the
//! same first segment as one of them (exact paths are equal; segment-aware prefixes other than
//! `/` keep their first segment), so without a service-account identity (plaintext peers pass
//! every identity clause) a request still skips the rules written for other paths. Rules with a
//! `/` prefix, a glob or a template, or no paths at all, are candidates for every path; a
//! request whose path does not normalise visits every step (it must reach the first path rule
//! to be refused with 400).
//!
//! A rule that lists destination ports (and no named ports) can only match a request to one of
//! them: the port line is cut at every range's ends into intervals, each with the steps possible
//! for its ports, so connection-level checks without an identity (plaintext) skip the rules for
//! other ports too. Destination ports are checked before any HTTP clause, so skipping them never
//! skips a 400 for a bad path.
//!
//! The index knows the program only through what each step says of itself ([`StepKeys`], from
//! `Step::index_keys`), so it depends on no other module of the crate.

use crate::snapshot::PortRange;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Identities whose candidate sets are cached per compiled version.
const IDENTITY_CACHE_ENTRIES: usize = 1024;
/// Distinct first path segments indexed; a policy with more goes unindexed by path (bounding the
/// index to this many step sets).
const PATH_SEGMENTS: usize = 256;
/// Destination-port intervals indexed; a program with more goes unindexed by port.
const PORT_INTERVALS: usize = 256;

pub(crate) type StepSet = Arc<[u64]>;

/// What the index knows of one step of a program (`Step::index_keys`).
pub(crate) enum StepKeys<'a> {
    /// A candidate for every request: not a plain rule, or a rule that fails closed when reached.
    Always,
    Rule(RuleKeys<'a>),
}

/// The request facts that can rule a rule out.
pub(crate) struct RuleKeys<'a> {
    /// The source service-account names the rule lists; empty: any source.
    pub service_accounts: &'a [String],
    /// The destination ports the rule is limited to; `None`: any port.
    pub dst_ports: Option<&'a [PortRange]>,
    /// `None`: the rule has no HTTP clause.
    pub http: Option<HttpKeys<'a>>,
}

pub(crate) struct HttpKeys<'a> {
    /// Empty: any method.
    pub methods: &'a [String],
    /// The first segments of the normalised paths the rule can match; `None`: any path.
    pub path_segments: Option<Vec<&'a [u8]>>,
}

#[derive(Debug, Default)]
struct IdentityCache {
    entries: usize,
    by_namespace: HashMap<Box<str>, HashMap<Box<str>, StepSet>>,
}

#[derive(Debug, Default)]
pub(crate) struct CandidateIndex {
    /// Every step.
    all: StepSet,
    /// namespace -> service account -> candidate steps, filled on first use.
    identities: Mutex<IdentityCache>,
    /// Steps possible for a source with a service account not named by any rule.
    sa_other: Vec<u64>,
    sa_by_name: HashMap<String, Vec<u64>>,
    /// Destination-port interval starts, ascending: interval `k` is `port_starts[k]..` up to the
    /// next start; empty: no port index.
    port_starts: Vec<i32>,
    /// Parallel to `port_starts`: the steps possible for a port in that interval.
    port_by_interval: Vec<Vec<u64>>,
    /// Steps possible for a port outside every interval (rules for any port, other steps).
    port_other: Vec<u64>,
    /// Steps possible for a connection-level check (no HTTP): no rule with an HTTP clause (D4).
    no_http: Vec<u64>,
    /// Steps possible for an HTTP method no rule names.
    method_other: Vec<u64>,
    method_by_name: HashMap<String, Vec<u64>>,
    /// Steps possible for every request path.
    path_other: Vec<u64>,
    /// First segment of a normalised path -> the steps possible for it; empty: no path index.
    path_by_segment: HashMap<Box<[u8]>, Vec<u64>>,
}

fn set(bits: &mut [u64], i: usize) {
    if let Some(w) = bits.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

impl CandidateIndex {
    pub(crate) fn build(steps: &[StepKeys<'_>]) -> Self {
        let words = steps.len().div_ceil(64);
        let zero = vec![0u64; words];
        let mut all = zero.clone();
        let mut sa_other = zero.clone();
        let mut no_http = zero.clone();
        let mut method_other = zero.clone();
        let mut path_other = zero.clone();
        let mut port_other = zero.clone();
        let mut port_limited: Vec<(usize, &[PortRange])> = Vec::new();
        let mut sa_named: HashMap<String, Vec<usize>> = HashMap::new();
        let mut method_named: HashMap<String, Vec<usize>> = HashMap::new();
        let mut path_named: HashMap<Box<[u8]>, Vec<usize>> = HashMap::new();

        for (i, step) in steps.iter().enumerate() {
            set(&mut all, i);
            let StepKeys::Rule(rule) = step else {
                set(&mut port_other, i);
                set(&mut sa_other, i);
                set(&mut no_http, i);
                set(&mut method_other, i);
                set(&mut path_other, i);
                continue;
            };
            match rule.dst_ports {
                None => set(&mut port_other, i),
                Some(ranges) => port_limited.push((i, ranges)),
            }
            match rule.http.as_ref().and_then(|h| h.path_segments.as_ref()) {
                None => set(&mut path_other, i),
                Some(segments) => segments
                    .iter()
                    .for_each(|s| path_named.entry(Box::from(*s)).or_default().push(i)),
            }
            match rule.service_accounts {
                [] => set(&mut sa_other, i),
                names => names
                    .iter()
                    .for_each(|n| sa_named.entry(n.clone()).or_default().push(i)),
            }
            match &rule.http {
                None => {
                    set(&mut no_http, i);
                    set(&mut method_other, i);
                }
                Some(http) if http.methods.is_empty() => set(&mut method_other, i),
                Some(http) => http
                    .methods
                    .iter()
                    .for_each(|m| method_named.entry(m.clone()).or_default().push(i)),
            }
        }
        let with = |base: &Vec<u64>, extra: Vec<usize>| {
            let mut bits = base.clone();
            extra.into_iter().for_each(|i| set(&mut bits, i));
            bits
        };
        let sa_by_name = sa_named
            .into_iter()
            .map(|(k, v)| (k, with(&sa_other, v)))
            .collect();
        let method_by_name = method_named
            .into_iter()
            .map(|(k, v)| (k, with(&method_other, v)))
            .collect();
        let path_by_segment = if path_named.len() <= PATH_SEGMENTS {
            path_named
                .into_iter()
                .map(|(k, v)| (k, with(&path_other, v)))
                .collect()
        } else {
            path_other = all.clone();
            HashMap::new()
        };
        let (port_starts, port_by_interval) = port_intervals(&port_limited, &port_other);
        if port_starts.is_empty() {
            port_other = all.clone();
        }
        CandidateIndex {
            port_starts,
            port_by_interval,
            port_other,
            all: all.into(),
            identities: Mutex::new(IdentityCache::default()),
            sa_other,
            sa_by_name,
            no_http,
            method_other,
            method_by_name,
            path_other,
            path_by_segment,
        }
    }

    /// Whether the first path segment narrows the candidates (some rule lists paths).
    pub(crate) fn indexes_paths(&self) -> bool {
        !self.path_by_segment.is_empty()
    }

    /// The cached candidate set of a source identity, computing it with `passes(step)` (which
    /// says whether the step's identity clauses can hold) on first use.
    pub(crate) fn identity_steps(
        &self,
        namespace: &str,
        service_account: &str,
        passes: impl Fn(usize) -> bool,
    ) -> Option<StepSet> {
        let mut cache = self.identities.lock().ok()?;
        if let Some(bits) = cache
            .by_namespace
            .get(namespace)
            .and_then(|m| m.get(service_account))
        {
            return Some(bits.clone());
        }
        if cache.entries >= IDENTITY_CACHE_ENTRIES {
            return None;
        }
        let mut bits = vec![0u64; self.all.len()];
        for i in 0..self.all.len() * 64 {
            if self
                .all
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
                && passes(i)
            {
                set(&mut bits, i);
            }
        }
        let bits: StepSet = bits.into();
        cache.entries += 1;
        cache
            .by_namespace
            .entry(Box::from(namespace))
            .or_default()
            .insert(Box::from(service_account), bits.clone());
        Some(bits)
    }

    /// Steps that could apply to a request from service account `sa` (`""`: plaintext, which
    /// passes every service-account clause) to destination port `port`, with HTTP method
    /// `method` (`None`: no HTTP) and normalised path `path` (`None`: no HTTP, or a path that
    /// does not normalise: every step). `identity` is the source identity's cached set, when
    /// there is one.
    pub(crate) fn candidates(
        &self,
        sa: &str,
        identity: Option<StepSet>,
        port: u16,
        method: Option<&str>,
        path: Option<&[u8]>,
    ) -> Candidates<'_> {
        let port = i32::from(port);
        // The last interval starting at or before the port (none: below every range).
        let by_port: &[u64] = match self.port_starts.partition_point(|&start| start <= port) {
            0 => &self.port_other,
            k => self.port_by_interval.get(k - 1).unwrap_or(&self.port_other),
        };
        let by_sa = match identity {
            Some(bits) => Bits::Shared(bits),
            None if sa.is_empty() => Bits::Shared(self.all.clone()),
            None => Bits::Borrowed(self.sa_by_name.get(sa).unwrap_or(&self.sa_other)),
        };
        let by_method = match method {
            None => &self.no_http,
            Some(m) => self.method_by_name.get(m).unwrap_or(&self.method_other),
        };
        let by_path: &[u64] = match path {
            Some(p) if self.indexes_paths() => self
                .path_by_segment
                .get(first_segment(p))
                .unwrap_or(&self.path_other),
            _ => &self.all,
        };
        Candidates {
            a: by_sa,
            b: by_method,
            c: by_path,
            d: by_port,
        }
    }
}

/// The destination-port intervals of the rules limited to ports (`(step, ranges)`): every
/// range's first port and the port after its last start an interval; each interval's set is
/// `other` plus the rules whose ranges cover it. Empty when there are none or too many.
fn port_intervals(limited: &[(usize, &[PortRange])], other: &[u64]) -> (Vec<i32>, Vec<Vec<u64>>) {
    let mut starts: Vec<i32> = limited
        .iter()
        .flat_map(|(_, ranges)| ranges.iter())
        .flat_map(|r| [r.first, r.last.saturating_add(1)])
        .collect();
    starts.sort_unstable();
    starts.dedup();
    if starts.is_empty() || starts.len() > PORT_INTERVALS {
        return (Vec::new(), Vec::new());
    }
    let mut sets = vec![other.to_vec(); starts.len()];
    for (i, ranges) in limited {
        for r in ranges.iter().filter(|r| r.first <= r.last) {
            let from = starts.partition_point(|&s| s < r.first);
            let to = starts.partition_point(|&s| s <= r.last);
            for bits in sets.get_mut(from..to).into_iter().flatten() {
                set(bits, *i);
            }
        }
    }
    (starts, sets)
}

impl CandidateIndex {
    /// Every step, unfiltered.
    #[cfg(test)]
    pub(crate) fn every_step(&self) -> Candidates<'_> {
        Candidates {
            a: Bits::Shared(self.all.clone()),
            b: &self.all,
            c: &self.all,
            d: &self.all,
        }
    }
}

/// The first segment of a normalised path (`/a/b` -> `a`, `/` -> ``).
pub(crate) fn first_segment(path: &[u8]) -> &[u8] {
    let rest = path.strip_prefix(b"/").unwrap_or(path);
    rest.split(|&b| b == b'/').next().unwrap_or(rest)
}

/// The intersection of four step sets, walked in program order without allocating.
pub(crate) struct Candidates<'a> {
    a: Bits<'a>,
    b: &'a [u64],
    c: &'a [u64],
    d: &'a [u64],
}

enum Bits<'a> {
    Borrowed(&'a [u64]),
    Shared(StepSet),
}

impl Bits<'_> {
    fn words(&self) -> &[u64] {
        match self {
            Bits::Borrowed(b) => b,
            Bits::Shared(b) => b,
        }
    }
}

impl Candidates<'_> {
    /// The first candidate step at or after `from`.
    pub(crate) fn next_from(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
        let a_words = self.a.words();
        while let (Some(a), Some(b), Some(c), Some(d)) =
            (a_words.get(w), self.b.get(w), self.c.get(w), self.d.get(w))
        {
            let bits = a & b & c & d & mask;
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            mask = u64::MAX;
        }
        None
    }
}
