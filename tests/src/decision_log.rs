//! The filter's decision-log lines (`{"event":"alp.decision",...}`, logged at info through
//! Envoy's log), parsed, with the Envoy thread that wrote each.

use crate::stack::Stack;
use serde_json::Value;
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&stack.envoy.proc.log).unwrap_or_default();
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
