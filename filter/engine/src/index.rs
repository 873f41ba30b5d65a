//! A candidate filter over the flattened program, so a request with many rules visits only the
//! steps that could match it. Two cheap request facts are indexed: the source service-account
//! name and the HTTP method (or its absence). Every step that is not a plain rule, and every rule
//! that fails closed when reached (missing IP set), is a candidate for every request, so the
//! filter never changes a decision, only skips rules that cannot match.

use crate::compile::{CompiledRule, Step};
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub(crate) struct CandidateIndex {
    /// Every step.
    all: Vec<u64>,
    /// Steps possible for a source with a service account not named by any rule.
    sa_other: Vec<u64>,
    sa_by_name: HashMap<String, Vec<u64>>,
    /// Steps possible for a connection-level check (no HTTP): no rule with an HTTP clause (D4).
    no_http: Vec<u64>,
    /// Steps possible for an HTTP method no rule names.
    method_other: Vec<u64>,
    method_by_name: HashMap<String, Vec<u64>>,
}

fn set(bits: &mut [u64], i: usize) {
    if let Some(w) = bits.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

impl CandidateIndex {
    pub(crate) fn build(steps: &[Step], rules: &[CompiledRule]) -> Self {
        let words = steps.len().div_ceil(64);
        let zero = vec![0u64; words];
        let mut all = zero.clone();
        let mut sa_other = zero.clone();
        let mut no_http = zero.clone();
        let mut method_other = zero.clone();
        let mut sa_named: HashMap<String, Vec<usize>> = HashMap::new();
        let mut method_named: HashMap<String, Vec<usize>> = HashMap::new();

        for (i, step) in steps.iter().enumerate() {
            set(&mut all, i);
            let rule = match step {
                Step::PolicyRule { rule, .. } | Step::ProfileRule { rule, .. } => rules.get(*rule as usize),
                _ => None,
            };
            let Some(rule) = rule.filter(|r| r.missing_ip_set.is_none()) else {
                set(&mut sa_other, i);
                set(&mut no_http, i);
                set(&mut method_other, i);
                continue;
            };
            match rule.src.service_account.as_ref().filter(|sa| !sa.names.is_empty()) {
                Some(sa) => sa.names.iter().for_each(|n| sa_named.entry(n.clone()).or_default().push(i)),
                None => set(&mut sa_other, i),
            }
            match &rule.http {
                None => {
                    set(&mut no_http, i);
                    set(&mut method_other, i);
                }
                Some(http) if http.methods.is_empty() => set(&mut method_other, i),
                Some(http) => http.methods.iter().for_each(|m| method_named.entry(m.clone()).or_default().push(i)),
            }
        }
        let with = |base: &Vec<u64>, extra: Vec<usize>| {
            let mut bits = base.clone();
            extra.into_iter().for_each(|i| set(&mut bits, i));
            bits
        };
        let sa_by_name = sa_named.into_iter().map(|(k, v)| (k, with(&sa_other, v))).collect();
        let method_by_name = method_named.into_iter().map(|(k, v)| (k, with(&method_other, v))).collect();
        CandidateIndex { all, sa_other, sa_by_name, no_http, method_other, method_by_name }
    }

    /// Steps that could apply to a request from service account `sa` (`""`: plaintext, which
    /// passes every service-account clause) with HTTP method `method` (`None`: no HTTP).
    pub(crate) fn candidates(&self, sa: &str, method: Option<&str>) -> Candidates<'_> {
        let by_sa = if sa.is_empty() { &self.all } else { self.sa_by_name.get(sa).unwrap_or(&self.sa_other) };
        let by_method = match method {
            None => &self.no_http,
            Some(m) => self.method_by_name.get(m).unwrap_or(&self.method_other),
        };
        Candidates { a: by_sa, b: by_method }
    }
}

impl CandidateIndex {
    /// Every step, unfiltered.
    #[cfg(test)]
    pub(crate) fn every_step(&self) -> Candidates<'_> {
        Candidates { a: &self.all, b: &self.all }
    }
}

/// The intersection of two step sets, walked in program order without allocating.
pub(crate) struct Candidates<'a> {
    a: &'a [u64],
    b: &'a [u64],
}

impl Candidates<'_> {
    /// The first candidate step at or after `from`.
    pub(crate) fn next_from(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
        while let (Some(a), Some(b)) = (self.a.get(w), self.b.get(w)) {
            let bits = a & b & mask;
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            mask = u64::MAX;
        }
        None
    }
}
