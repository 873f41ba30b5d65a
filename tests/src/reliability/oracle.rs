//! Every answer against the policy.
//!
//! The driver records when each change left the test Felix (`Timeline::published`, the state
//! index it moves to) and which snapshot version control published for it
//! (`Timeline::versions`). For a record sent at `s` and answered at `r`:
//!
//! * the states *in force* are those whose interval `[P_k, P_(k+1) + W]` meets `[s, r]`
//!   (`P_k`: when change `k` was published; `W`: the uncertainty window);
//! * if the decision log has its line (HTTP by `x-request-id`, TCP by source port and time), the
//!   line's version names the state it was decided with: the answer must be that state's
//!   (else **wrong**: the filter did not decide as the engine does on that snapshot), and that
//!   state must be one in force (else **stale**: a version older or newer than the window
//!   allows);
//! * without a line (or with a version the driver never saw), the answer must be one of the
//!   in-force states' answers; outside every window that is exactly one answer.
//!
//! An answer that lets through what every candidate state denies is a **security** violation;
//! one that refuses (403, 503, closed, failed) what every candidate allows is an
//! **availability** loss. A soak allows neither; a chaos case allows availability losses while
//! its fault lasts (and reports how long they went on: the time to recover).

use super::logscan::{Decisions, Line};
use super::scenario::{Class, State};
use super::traffic::{Answer, Record};
use std::collections::HashMap;

/// What the driver published, in order.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// (ms since the epoch the change left the test Felix, state index after it); index 0 is
    /// the first in-sync state.
    pub published: Vec<(f64, usize)>,
    /// Snapshot version -> state index.
    pub versions: HashMap<u64, usize>,
    /// The states, by index.
    pub states: Vec<State>,
    /// (ms, state index) of changes a filter may or may not enforce (sent while their snapshot
    /// was corrupted on the wire): possibly in force from their publication until the next
    /// change of `published` (plus the window), beside the state before them.
    pub optional: Vec<(f64, usize)>,
}

impl Timeline {
    /// The state indexes possibly in force during `[s, r]` with window `w`.
    pub fn candidates(&self, s: f64, r: f64, w: f64) -> Vec<usize> {
        let p = &self.published;
        // Last publication at or before s (the state in force when the request was sent).
        let first = p.partition_point(|(t, _)| *t <= s).saturating_sub(1);
        let mut out = vec![];
        // Earlier states still within their window.
        let mut i = first;
        loop {
            let end = p.get(i + 1).map_or(f64::INFINITY, |(t, _)| *t) + w;
            if end < s {
                break;
            }
            out.push(p[i].1);
            if i == 0 {
                break;
            }
            i -= 1;
        }
        // Later states published before the answer came back.
        for (t, k) in p.iter().skip(first + 1) {
            if *t > r {
                break;
            }
            out.push(*k);
        }
        for (t, k) in &self.optional {
            if *t > r {
                continue;
            }
            let until = p
                .iter()
                .find(|(pt, _)| *pt > *t)
                .map_or(f64::INFINITY, |(pt, _)| *pt)
                + w;
            if until >= s {
                out.push(*k);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether state `k` is one of `optional`.
    pub fn is_optional(&self, k: usize) -> bool {
        self.optional.iter().any(|(_, o)| *o == k)
    }
}

/// What one record came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right, decided with a logged version.
    Pinned,
    /// Right, no log line; exactly one answer was right.
    Exact,
    /// Right, no log line, inside a window where both answers were right.
    Ambiguous,
    /// Allowed what the policy denies.
    Security,
    /// Refused (403) what the policy allows.
    WrongDenial,
    /// Decided with a version outside the window (its answer was that version's).
    Stale,
    /// Another status, or no answer, for a request the policy allows.
    Unavailable,
    /// Another status, or no answer, for a request the policy denies (nothing got through).
    RefusedAnyway,
}

impl Verdict {
    /// A wrong decision: what a soak must never see.
    pub fn is_wrong(self) -> bool {
        matches!(
            self,
            Verdict::Security | Verdict::WrongDenial | Verdict::Stale
        )
    }
}

/// The tally of a set of records.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub checked: u64,
    pub http: u64,
    pub tcp: u64,
    pub pinned: u64,
    pub exact: u64,
    pub ambiguous: u64,
    /// Allowed although denied by policy.
    pub security: u64,
    /// Denied (403 / closed by policy) although allowed by policy.
    pub wrong_denial: u64,
    pub stale: u64,
    /// Failed or other status although allowed by policy.
    pub unavailable: u64,
    /// Failed or other status, denied by policy anyway.
    pub refused_anyway: u64,
    /// Log lines whose version the driver never mapped.
    pub unmapped_versions: u64,
    /// Right answers decided with a version of `Timeline::optional` (a corrupted envelope the
    /// filter accepted).
    pub optional_pinned: u64,
    /// Up to 20 examples of each wrong kind.
    pub examples: Vec<String>,
}

impl Summary {
    /// Wrong decisions: security + wrong denials + stale.
    pub fn wrong(&self) -> u64 {
        self.security + self.wrong_denial + self.stale
    }

    /// Requests allowed by policy that were refused one way or another.
    pub fn refused_allowed(&self) -> u64 {
        self.wrong_denial + self.unavailable
    }

    fn add(&mut self, v: Verdict, r: &Record, what: impl FnOnce() -> String) {
        self.checked += 1;
        if r.class == Class::Tcp {
            self.tcp += 1
        } else {
            self.http += 1
        }
        match v {
            Verdict::Pinned => self.pinned += 1,
            Verdict::Exact => self.exact += 1,
            Verdict::Ambiguous => self.ambiguous += 1,
            Verdict::Security => self.security += 1,
            Verdict::WrongDenial => self.wrong_denial += 1,
            Verdict::Stale => self.stale += 1,
            Verdict::Unavailable => self.unavailable += 1,
            Verdict::RefusedAnyway => self.refused_anyway += 1,
        }
        if (v.is_wrong() || v == Verdict::Unavailable) && self.examples.len() < 40 {
            self.examples.push(format!("{v:?}: {}", what()));
        }
    }
}

/// The decision line of `r`, if logged.
fn line_of<'a>(r: &Record, d: &'a Decisions) -> Option<&'a Line> {
    if r.class == Class::Tcp {
        let lo = r.sent_ms as u64 - 1;
        let hi = r.received_ms as u64 + 1;
        d.by_port
            .get(&(r.seq as u16))?
            .iter()
            .find(|l| l.ts_ms >= lo && l.ts_ms <= hi)
    } else {
        d.by_request_id.get(&r.request_id())
    }
}

/// Judges one record.
pub fn judge(
    r: &Record,
    t: &Timeline,
    d: &Decisions,
    window_ms: f64,
    unmapped: &mut u64,
) -> (Verdict, String) {
    let cands = t.candidates(r.sent_ms, r.received_ms, window_ms);
    let answers: Vec<bool> = cands.iter().map(|k| t.states[*k].allows(r.class)).collect();
    let may_allow = answers.contains(&true);
    let may_deny = answers.contains(&false);
    let line = line_of(r, d);
    let version_state = line.and_then(|l| {
        let k = t.versions.get(&l.version).copied();
        if k.is_none() {
            *unmapped += 1;
        }
        k
    });
    let what = format!(
        "{} {:?} sent {:.0} answered {:.0} ms later: {:?}; states in force {:?}; logged {:?}",
        r.class.path(),
        if r.class == Class::Tcp {
            format!("port {}", r.seq)
        } else {
            r.request_id()
        },
        r.sent_ms,
        r.received_ms - r.sent_ms,
        r.answer,
        cands,
        line.map(|l| (l.version, version_state, l.allowed)),
    );
    let v = match (r.answer, version_state) {
        (Answer::Allowed | Answer::Denied, Some(k)) => {
            let want = t.states[k].allows(r.class);
            let got = r.answer.is_allowed();
            if got != want {
                if got {
                    Verdict::Security
                } else {
                    Verdict::WrongDenial
                }
            } else if !cands.contains(&k) {
                if got && !may_allow {
                    Verdict::Security
                } else {
                    Verdict::Stale
                }
            } else {
                Verdict::Pinned
            }
        }
        (Answer::Allowed, None) => {
            if !may_allow {
                Verdict::Security
            } else if may_deny {
                Verdict::Ambiguous
            } else {
                Verdict::Exact
            }
        }
        (Answer::Denied, None) => {
            if !may_deny {
                Verdict::WrongDenial
            } else if may_allow {
                Verdict::Ambiguous
            } else {
                Verdict::Exact
            }
        }
        (Answer::Status(_) | Answer::Failed, _) => {
            if may_allow {
                Verdict::Unavailable
            } else {
                Verdict::RefusedAnyway
            }
        }
    };
    (v, what)
}

/// Judges every record with `sent_ms` in `[from, to)`.
pub fn summarise(
    records: &[Record],
    t: &Timeline,
    d: &Decisions,
    window_ms: f64,
    from: f64,
    to: f64,
) -> Summary {
    let mut s = Summary::default();
    let mut unmapped = 0;
    for r in records
        .iter()
        .filter(|r| r.sent_ms >= from && r.sent_ms < to)
    {
        let (v, what) = judge(r, t, d, window_ms, &mut unmapped);
        if v == Verdict::Pinned
            && line_of(r, d)
                .and_then(|l| t.versions.get(&l.version))
                .is_some_and(|k| t.is_optional(*k))
        {
            s.optional_pinned += 1;
        }
        s.add(v, r, || what);
    }
    s.unmapped_versions = unmapped;
    s
}

/// The last time (ms since the epoch) in `[from, to)` a request allowed by every candidate state
/// was not served: with `from` the end of a fault, `last - from` is the time to recover (0 when
/// nothing was refused after it).
pub fn last_refusal(
    records: &[Record],
    t: &Timeline,
    d: &Decisions,
    window_ms: f64,
    from: f64,
    to: f64,
) -> Option<f64> {
    let mut unmapped = 0;
    records
        .iter()
        .filter(|r| r.sent_ms >= from && r.sent_ms < to)
        .filter(|r| {
            let (v, _) = judge(r, t, d, window_ms, &mut unmapped);
            matches!(v, Verdict::Unavailable | Verdict::WrongDenial)
        })
        .map(|r| r.received_ms)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
}

/// The first such time (see [`last_refusal`]).
pub fn first_refusal(
    records: &[Record],
    t: &Timeline,
    d: &Decisions,
    window_ms: f64,
    from: f64,
    to: f64,
) -> Option<f64> {
    let mut unmapped = 0;
    records
        .iter()
        .filter(|r| r.sent_ms >= from && r.sent_ms < to)
        .find(|r| {
            let (v, _) = judge(r, t, d, window_ms, &mut unmapped);
            matches!(v, Verdict::Unavailable | Verdict::WrongDenial)
        })
        .map(|r| r.received_ms)
}

/// Propagation: for each published change after the first, and each Envoy worker thread that
/// logged decisions, ms from the publication to that worker's first decision with the change's
/// version. Also returns how many (change, worker) pairs never saw the version (superseded
/// before a request reached that worker).
pub fn propagation(t: &Timeline, d: &Decisions) -> (Vec<f64>, u64) {
    let mut first: HashMap<(u64, u32), u64> = HashMap::new();
    let mut threads = std::collections::BTreeSet::new();
    for l in &d.all {
        if !l.http {
            continue;
        }
        threads.insert(l.thread);
        first
            .entry((l.version, l.thread))
            .and_modify(|ts| *ts = (*ts).min(l.ts_ms))
            .or_insert(l.ts_ms);
    }
    let published: HashMap<usize, f64> = t.published.iter().map(|(p, k)| (*k, *p)).collect();
    let mut out = vec![];
    let mut missing = 0;
    for (v, k) in &t.versions {
        if *k == 0 {
            continue;
        }
        let Some(p) = published.get(k) else { continue };
        for th in &threads {
            match first.get(&(*v, *th)) {
                Some(ts) => out.push((*ts as f64 - p).max(0.0)),
                None => missing += 1,
            }
        }
    }
    (out, missing)
}
