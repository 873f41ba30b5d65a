//! The filter's decision-log lines (`"decision_log":"all"`), read fast: a soak writes millions,
//! so the few fields needed are cut out of each line without a JSON parse.

use crate::decision_log::ts_unix_ms;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// One decision line.
#[derive(Clone, Debug)]
pub struct Line {
    /// Envoy's thread id (one per worker).
    pub thread: u32,
    pub ts_ms: u64,
    pub version: u64,
    pub allowed: bool,
    pub http: bool,
    pub source_port: u16,
}

/// The lines of an Envoy log: HTTP lines by request id, connection lines by source port (in log
/// order), and every line in log order.
#[derive(Default)]
pub struct Decisions {
    pub by_request_id: HashMap<String, Line>,
    pub by_port: HashMap<u16, Vec<Line>>,
    pub all: Vec<Line>,
    /// Lines that looked like decision lines but lacked a field.
    pub unparsed: u64,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    if let Some(r) = rest.strip_prefix('"') {
        r.find('"').map(|e| &r[..e])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

fn parse(text: &str) -> Option<(String, Line)> {
    let at = text.find("{\"event\":\"alp.decision\"")?;
    let json = &text[at..];
    let thread = text.split('[').nth(2)?.split(']').next()?.parse().ok()?;
    let ts_ms = ts_unix_ms(field(json, "\"ts\":")?)?;
    let version = field(json, "\"version\":")?.parse().ok()?;
    let allowed = field(json, "\"decision\":")? == "allow";
    let http = field(json, "\"kind\":")? == "http";
    let source = &json[json.find("\"source\":")?..];
    let source_port = field(source, "\"port\":")?.parse().ok()?;
    let id = if http {
        field(json, "\"request_id\":")
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    Some((
        id,
        Line {
            thread,
            ts_ms,
            version,
            allowed,
            http,
            source_port,
        },
    ))
}

/// Reads every decision line of `log`.
pub fn read(log: &Path) -> Decisions {
    let mut d = Decisions::default();
    let Ok(f) = std::fs::File::open(log) else {
        return d;
    };
    for line in BufReader::with_capacity(1 << 20, f).lines() {
        let Ok(line) = line else { continue };
        if !line.contains("\"alp.decision\"") {
            continue;
        }
        match parse(&line) {
            Some((id, l)) => {
                if l.http {
                    if !id.is_empty() {
                        d.by_request_id.insert(id, l.clone());
                    }
                } else {
                    d.by_port.entry(l.source_port).or_default().push(l.clone());
                }
                d.all.push(l);
            }
            None => d.unparsed += 1,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_the_fields_out() {
        let l = r#"[2026-12-01 14:35:12.345][12345][info][wasm] [source/extensions/common/wasm/context.cc:1] wasm log calico_alp_app calico-alp-app: {"event":"alp.decision","ts":"2026-12-01T14:35:12.345Z","kind":"http","request_id":"r1-7","decision":"deny","status":403,"reason":"policy_denied","version":17953,"source":{"principal":"","address":"127.0.0.1","port":35822},"destination":{"address":"127.0.0.1","port":1}}"#;
        let (id, line) = super::parse(l).unwrap();
        assert_eq!(id, "r1-7");
        assert_eq!(
            (
                line.thread,
                line.version,
                line.allowed,
                line.http,
                line.source_port
            ),
            (12345, 17953, false, true, 35822)
        );
        assert_eq!(line.ts_ms, 1_796_135_712_345);
    }
}
