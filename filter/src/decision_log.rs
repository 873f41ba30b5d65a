//! Decision logs: one JSON object per logged decision, written to Envoy's log at `info` (so
//! whatever collects Envoy's log collects them). Envoy prefixes its own fields; the object is
//! the rest of the line, from `{"event":"alp.decision"`:
//!
//! ```json
//! {"event":"alp.decision","ts":"2026-12-01T14:35:12.345Z","kind":"http",
//!  "request_id":"3f0c…","decision":"deny","status":403,"reason":"policy_denied",
//!  "tier":"default","policy":{"name":"database","kind":"GlobalNetworkPolicy"},"rule":0,
//!  "rule_id":"…","detail":"a deny rule matched","enforced":true,"blocked":true,"version":17,
//!  "source":{"principal":"spiffe://cluster.local/ns/default/sa/customer","address":"10.0.0.1","port":40000},
//!  "destination":{"principal":"…","address":"10.0.0.2","port":8080},
//!  "method":"GET","path":"/admin"}
//! ```
//!
//! * `decision`, `status`, `reason`, `tier`, `policy`, `profile`, `rule`, `rule_id`, `detail`:
//!   as `control check` prints them. `status` is the reply the policy calls for; `blocked` says
//!   whether it was sent (false in a dry run, `enforced: false`).
//! * `staged` (with `staged: true`): the staged rehearsal's decision, same fields, plus
//!   `differs` (its verdict is not the enforced one).
//! * Request values: the peer principal and addresses (from the connection, not headers),
//!   `method`, and `path` without its query string or fragment (which may carry secrets),
//!   JSON-escaped and cut to [`MAX_PATH`] bytes (`path_truncated`). No other header value, and
//!   no body, is ever read.
//! * `ts`: when it was decided (UTC, milliseconds); `request_id`: the request's `x-request-id`
//!   (Envoy sets one on every request it receives), cut to [`MAX_REQUEST_ID`] bytes; both read
//!   only when a line is written.
//! * `kind`: `http` for a request (HTTP filter), `connection` for a connection (network
//!   filter); a connection's line has no `method`, `path` or path fields, and `status` is null
//!   (a denied connection is closed without a reply).
//! * `path_rewritten: true` (D10): the request path was not canonical; `forwarded_path` is the
//!   canonical path it was decided on and forwarded with (`path` stays what the client sent).

use crate::attributes::{Connection, HttpAttributes};
use crate::config::DecisionLog;
use crate::metrics::Subject;
use crate::timestamp::rfc3339_ms;
use alp_engine::{Decision, Engine, Explanation, StagedExplanation};
use serde::Serialize;
use std::cell::Cell;
use std::net::IpAddr;

/// Longest path logged, in bytes.
pub const MAX_PATH: usize = 512;
/// Longest request id logged, in bytes.
pub const MAX_REQUEST_ID: usize = 128;
/// Longest method logged, in bytes.
pub const MAX_METHOD: usize = 32;
/// What every decision line's JSON starts with.
pub const EVENT: &str = "alp.decision";

/// Which decisions to log, the sampler and the rate limit.
#[derive(Debug)]
pub struct DecisionLogger {
    mode: DecisionLog,
    sample: f64,
    /// xorshift64 state (never 0).
    rng: Cell<u64>,
    /// Lines per second (0: no limit).
    max_per_second: u64,
    /// Token bucket, in thousandths of a line; holds at most one second's worth.
    tokens: Cell<u64>,
    /// Lines dropped by the limit since [`DecisionLogger::tick`] last took them.
    suppressed: Cell<u64>,
}

impl Default for DecisionLogger {
    fn default() -> Self {
        DecisionLogger::new(DecisionLog::Deny, 1.0, 1000, 1)
    }
}

impl DecisionLogger {
    pub fn new(mode: DecisionLog, sample: f64, max_per_second: u32, seed: u64) -> Self {
        let max_per_second = u64::from(max_per_second);
        DecisionLogger {
            mode,
            sample,
            rng: Cell::new(seed | 1),
            max_per_second,
            tokens: Cell::new(max_per_second * 1000),
            suppressed: Cell::new(0),
        }
    }

    /// Root context tick, `elapsed_ms` after the previous one: refills the rate limit; returns
    /// the lines it dropped since the last tick.
    pub fn tick(&self, elapsed_ms: u64) -> u64 {
        let cap = self.max_per_second * 1000;
        let refill = self.max_per_second.saturating_mul(elapsed_ms);
        self.tokens
            .set(self.tokens.get().saturating_add(refill).min(cap));
        self.suppressed.take()
    }

    /// Whether this decision is logged: selected by the mode (refused or would-be refused
    /// requests, or a staged difference, for `deny`), then sampled.
    pub fn wants(&self, allowed: bool, staged_differs: bool) -> bool {
        let selected = match self.mode {
            DecisionLog::Off => false,
            DecisionLog::Deny => !allowed || staged_differs,
            DecisionLog::All => true,
        };
        selected && self.sampled() && self.within_rate()
    }

    fn within_rate(&self) -> bool {
        if self.max_per_second == 0 {
            return true;
        }
        match self.tokens.get().checked_sub(1000) {
            Some(left) => {
                self.tokens.set(left);
                true
            }
            None => {
                self.suppressed.set(self.suppressed.get() + 1);
                false
            }
        }
    }

    fn sampled(&self) -> bool {
        if self.sample >= 1.0 {
            return true;
        }
        if self.sample <= 0.0 {
            return false;
        }
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        // The top 53 bits as a uniform value in [0, 1).
        ((x >> 11) as f64) / ((1u64 << 53) as f64) < self.sample
    }
}

#[derive(Serialize)]
struct Line<'a> {
    event: &'static str,
    /// When the decision was made (UTC, RFC 3339 with milliseconds).
    ts: String,
    kind: &'static str,
    /// The request's `x-request-id` (Envoy's request id), read only when a line is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(flatten)]
    decision: Explanation,
    enforced: bool,
    blocked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Side<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<Side<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    path_truncated: bool,
    /// D10: the canonical path the request was decided on and forwarded with, when `path` (as
    /// received) was not canonical; without query, cut like `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    forwarded_path: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    path_rewritten: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    staged: Option<StagedExplanation>,
}

#[derive(Serialize)]
struct Side<'a> {
    /// `""` for a plaintext peer.
    principal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<IpAddr>,
    port: u16,
}

/// One logged request or connection.
pub struct Entry<'a> {
    pub subject: Subject,
    /// The host's clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
    pub request_id: Option<&'a str>,
    pub engine: &'a Engine,
    pub decision: &'a Decision,
    pub staged: Option<&'a Decision>,
    pub enforced: bool,
    pub blocked: bool,
    pub connection: Option<&'a Connection>,
    pub http: Option<&'a HttpAttributes>,
}

/// The JSON line for `entry`.
pub fn line(entry: &Entry<'_>) -> String {
    let source = entry.connection.map(|c| Side {
        principal: &c.source_principal,
        address: c.source.map(|(ip, _)| ip),
        port: c.source.map_or(0, |(_, port)| port),
    });
    let destination = entry.connection.map(|c| Side {
        principal: &c.destination_principal,
        address: c.destination.map(|(ip, _)| ip),
        port: c.destination.map_or(0, |(_, port)| port),
    });
    let (path, path_truncated) = match entry.http {
        Some(h) => {
            let (p, cut) = loggable_path(h.received_path());
            (Some(p), cut)
        }
        None => (None, false),
    };
    let forwarded_path = entry
        .http
        .filter(|h| h.original_path.is_some())
        .map(|h| loggable_path(&h.path).0);
    let mut decision = entry.engine.explain(entry.decision);
    if entry.subject == Subject::Connection {
        // A denied connection is closed: there is no reply status.
        decision.status = None;
    }
    let line = Line {
        event: EVENT,
        ts: rfc3339_ms(entry.now_ms),
        kind: entry.subject.as_str(),
        request_id: entry.request_id.map(|id| truncate(id, MAX_REQUEST_ID)),
        decision,
        enforced: entry.enforced,
        blocked: entry.blocked,
        version: entry.engine.version(),
        source,
        destination,
        method: entry.http.map(|h| truncate(&h.method, MAX_METHOD)),
        path,
        path_truncated,
        path_rewritten: forwarded_path.is_some(),
        forwarded_path,
        staged: entry
            .staged
            .map(|s| entry.engine.explain_staged_against(s, entry.decision)),
    };
    serde_json::to_string(&line).unwrap_or_else(|e| {
        format!("{{\"event\":\"{EVENT}\",\"error\":\"cannot encode the decision: {e}\"}}")
    })
}

/// The path without query string or fragment, cut to [`MAX_PATH`] bytes; whether it was cut.
pub fn loggable_path(path: &str) -> (&str, bool) {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let path = path.get(..end).unwrap_or(path);
    let cut = truncate(path, MAX_PATH);
    (cut, cut.len() < path.len())
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_select_decisions() {
        let off = DecisionLogger::new(DecisionLog::Off, 1.0, 0, 1);
        let deny = DecisionLogger::new(DecisionLog::Deny, 1.0, 0, 1);
        let all = DecisionLogger::new(DecisionLog::All, 1.0, 0, 1);
        assert!(!off.wants(false, true));
        assert!(deny.wants(false, false) && !deny.wants(true, false) && deny.wants(true, true));
        assert!(all.wants(true, false));
    }

    #[test]
    fn sampling_keeps_about_the_rate() {
        let none = DecisionLogger::new(DecisionLog::All, 0.0, 0, 7);
        assert!((0..1000).all(|_| !none.wants(true, false)));
        let quarter = DecisionLogger::new(DecisionLog::All, 0.25, 0, 7);
        let n = (0..10_000).filter(|_| quarter.wants(true, false)).count();
        assert!((2_000..3_000).contains(&n), "{n} of 10000");
    }

    #[test]
    fn the_rate_limit_bounds_lines_per_second() {
        let log = DecisionLogger::new(DecisionLog::All, 1.0, 10, 1);
        let logged = (0..25).filter(|_| log.wants(true, false)).count();
        assert_eq!(logged, 10, "a second's worth at once");
        assert_eq!(log.tick(100), 15, "the dropped lines are reported");
        assert_eq!(
            (0..5).filter(|_| log.wants(true, false)).count(),
            1,
            "100 ms refills one"
        );
        assert_eq!(log.tick(10_000), 4);
        assert_eq!(
            (0..50).filter(|_| log.wants(true, false)).count(),
            10,
            "never more than a second's worth"
        );
        let unlimited = DecisionLogger::new(DecisionLog::All, 1.0, 0, 1);
        assert!((0..10_000).all(|_| unlimited.wants(true, false)));
        assert_eq!(unlimited.tick(100), 0);
    }

    #[test]
    fn paths_lose_query_and_are_capped() {
        assert_eq!(loggable_path("/a/b?token=secret#x"), ("/a/b", false));
        assert_eq!(loggable_path("/a#frag"), ("/a", false));
        let long = format!("/{}", "é".repeat(400));
        let (p, cut) = loggable_path(&long);
        assert!(cut && p.len() <= MAX_PATH && long.starts_with(p));
        assert_eq!(truncate("GET", MAX_METHOD), "GET");
    }
}
