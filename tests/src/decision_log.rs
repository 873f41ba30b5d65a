//! What the filter reports of each decision besides its stats: the decision-log lines
//! (`{"event":"alp.decision",...}`, logged at info through Envoy's log), parsed, with the Envoy
//! thread that wrote each; and the access log's lines, whose `alp="..."` field is the filter
//! state `wasm.alp_decision` the filter writes for every decision
//! (`%FILTER_STATE(wasm.alp_decision:PLAIN)%` in envoy/bootstrap.yaml).

use crate::stack::Stack;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// One decision line and the Envoy thread that logged it: a worker's thread id for a request or
/// connection it decided (Envoy's log prefix is `[time][thread id][level][logger]`).
#[derive(Clone, Debug)]
pub struct Logged {
    pub thread: String,
    pub decision: Value,
}

/// Every decision line in Envoy's log so far, once `done` holds for them (bounded wait of 10 s:
/// Envoy writes its log asynchronously); the lines as they are then. A line that is not JSON
/// panics.
pub fn decision_lines(stack: &Stack, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let values = |l: &[Logged]| l.iter().map(|d| d.decision.clone()).collect::<Vec<_>>();
    let logged = logged_decisions(stack, |l| done(&values(l)));
    values(&logged)
}

/// As [`decision_lines`], with the thread of each line.
pub fn logged_decisions(stack: &Stack, done: impl Fn(&[Logged]) -> bool) -> Vec<Logged> {
    logged_decisions_in(&stack.envoy.proc.log, done)
}

/// As [`logged_decisions`], for the Envoy log `log` (any Envoy's, not only a stack's).
pub fn logged_decisions_in(log: &Path, done: impl Fn(&[Logged]) -> bool) -> Vec<Logged> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Logged> = log.lines().filter_map(parse).collect();
        if done(&lines) || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn parse(line: &str) -> Option<Logged> {
    let json = &line[line.find("{\"event\":\"alp.decision\"")?..];
    let decision = serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    let thread = line.split('[').nth(2)?.split(']').next()?.to_string();
    Some(Logged { thread, decision })
}

/// Every line of the stack's access log, once `done` holds for them (bounded wait of 10 s:
/// Envoy flushes the file every 200 ms, a TCP connection's line when the connection closes);
/// the lines as they are then.
pub fn access_log_lines(stack: &Stack, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    access_log_lines_in(&stack.access_log, done)
}

/// As [`access_log_lines`], for the access log file `path`.
pub fn access_log_lines_in(path: &Path, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if done(&lines) || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `alp="..."` field of an access log line: the filter's decision (`deny reason=... tier=...
/// policy=... rule=...`); `None` without one.
pub fn access_log_decision(line: &str) -> Option<&str> {
    let rest = &line[line.find(" alp=\"")? + 6..];
    rest.find('"').map(|end| &rest[..end])
}

/// A field `name=value` of an access log line (`id=`, `peer=`), up to the next space.
pub fn access_log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// Milliseconds since the Unix epoch of a decision line's `ts` (`2026-12-01T14:35:12.345Z`: RFC
/// 3339, UTC, milliseconds); `None` for anything else.
pub fn ts_unix_ms(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ts[r].parse::<u64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, min, s, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil).
    let (y, m) = (y as i64 - i64::from(m <= 2), m as i64);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_access_log_fields() {
        assert_eq!(ts_unix_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            ts_unix_ms("2000-03-01T00:00:00.001Z"),
            Some(951_868_800_001)
        );
        assert_eq!(
            ts_unix_ms("2026-12-01T14:35:12.345Z"),
            Some(1_796_135_712_345)
        );
        assert_eq!(ts_unix_ms("2026-12-01T14:35:12Z"), None);
        assert_eq!(ts_unix_ms("2026-12-01 14:35:12.345Z"), None);
        assert_eq!(ts_unix_ms("2026-12-01T14:35:12.345+01:00"), None);
        let line = "[t] inbound_app 127.0.0.1:4 peer=spiffe://x \"GET /a\" 403 - id=abc-1 alp=\"deny reason=policy_denied tier=default\"";
        assert_eq!(
            access_log_decision(line),
            Some("deny reason=policy_denied tier=default")
        );
        assert_eq!(access_log_field(line, "id"), Some("abc-1"));
        assert_eq!(access_log_field(line, "peer"), Some("spiffe://x"));
        assert_eq!(access_log_decision("no decision"), None);
    }
}
