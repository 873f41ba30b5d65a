//! Raw TCP test cases against a workload's `tcp_W` listener and the harness's recording backend
//! (`StackOptions::echo_backend`), checked from both ends: an allowed connection gets the
//! backend's greeting and its own bytes back; a denied one is closed before a single byte
//! reaches the client, the backend never receives the client's bytes, and a plaintext one
//! (decided when it is accepted) never becomes an upstream connection at all.
//!
//! These are test steps: they panic (with what went wrong) instead of returning errors, or
//! return the failures of a whole table so that a test reports every one.

use crate::stack::Stack;
use crate::tcp_client::{self, TcpOutcome, TcpTransport};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long after the last case a leaked byte or upstream connection would have shown.
pub const GRACE: Duration = Duration::from_millis(150);
/// Connect and read timeout of every case.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a policy change may take to be enforced before a test gives up.
pub const ENFORCED_WITHIN: Duration = Duration::from_secs(20);

/// A distinct payload per connection, so the backend's record tells cases apart.
pub fn token(label: &str) -> Vec<u8> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("token-{n}-{}\n", label.replace(' ', "-")).into_bytes()
}

/// When the client sends its bytes.
#[derive(Clone, Copy, Debug)]
pub enum Speak {
    /// After the backend's greeting, as a client of a server-first protocol does (the greeting
    /// is then what the filter decides a TLS connection on).
    AfterGreeting,
    /// At once, without waiting: bytes travel both ways before anything is decided.
    AtOnce,
}

/// One connection: what it is, where it comes from, over what, and whether the policy lets it
/// through. `http_path`: send an HTTP/1.1 request for this path (carrying the token) instead of
/// the bare token.
#[derive(Clone)]
pub struct Case {
    pub label: String,
    pub from: IpAddr,
    pub transport: TcpTransport,
    pub allowed: bool,
    pub http_path: Option<&'static str>,
}

impl Case {
    /// `from`: an IP address literal (a bad one panics).
    pub fn new(label: &str, from: &str, transport: &TcpTransport, allowed: bool) -> Self {
        Case {
            label: label.into(),
            from: from
                .parse()
                .unwrap_or_else(|e| panic!("case {label:?}: source {from:?}: {e}")),
            transport: transport.clone(),
            allowed,
            http_path: None,
        }
    }

    pub fn http(mut self, path: &'static str) -> Self {
        self.http_path = Some(path);
        self
    }

    pub fn payload(&self) -> Vec<u8> {
        let token = token(&self.label);
        match self.http_path {
            None => token,
            Some(path) => {
                let t = String::from_utf8_lossy(&token).trim().to_string();
                format!("GET {path}?case={t} HTTP/1.1\r\nhost: alp.test\r\n\r\n").into_bytes()
            }
        }
    }
}

/// A table of (label, source, allowed) over one transport.
pub fn table(rows: &[(&str, &str, bool)], transport: &TcpTransport) -> Vec<Case> {
    rows.iter()
        .map(|(label, from, allowed)| Case::new(label, from, transport, *allowed))
        .collect()
}

/// One exchange on a fresh connection to workload `w`'s TCP listener.
pub fn dial(
    stack: &Stack,
    w: &str,
    from: IpAddr,
    transport: &TcpTransport,
    speak: Speak,
    payload: &[u8],
) -> TcpOutcome {
    let greeting = stack.tcp_backend(w).greeting().len();
    let mut conn = tcp_client::connect(stack.tcp_addr(w), Some(from), transport, TIMEOUT)
        .unwrap_or_else(|e| panic!("{w}: connecting from {from}: {e:#}"));
    match speak {
        Speak::AfterGreeting => conn.exchange(greeting, payload),
        Speak::AtOnce => conn.exchange_eager(greeting, payload),
    }
}

/// Runs `cases` against workload `w` and returns every failure (empty: all as expected).
/// Allowed: the greeting and the echo of the client's bytes arrive. Denied: closed without a
/// byte, and (checked once after all cases, `GRACE` later) the backend never received the
/// client's bytes; when every case is plaintext, the backend accepted exactly one connection
/// per allowed case, none for a denied one.
pub fn run_cases(stack: &Stack, w: &str, speak: Speak, cases: &[Case]) -> Vec<String> {
    let backend = stack.tcp_backend(w);
    let accepted_before = backend.accepted();
    let mut failures = vec![];
    let mut denied_payloads = vec![];
    for c in cases {
        let what = format!(
            "{w} {} {speak:?} from {}: {}",
            c.transport.label(),
            c.from,
            c.label
        );
        let payload = c.payload();
        let outcome = dial(stack, w, c.from, &c.transport, speak, &payload);
        if c.allowed {
            let want = [backend.greeting(), &payload].concat();
            if !outcome.passed(&want) {
                failures.push(format!("{what}: must pass, {}", outcome.summary()));
            } else if !backend.saw(&payload) {
                failures.push(format!("{what}: echoed, but not by the backend"));
            }
        } else {
            if !outcome.closed_silently() {
                failures.push(format!(
                    "{what}: must be closed without a byte, {}",
                    outcome.summary()
                ));
            }
            denied_payloads.push((what, payload));
        }
    }
    std::thread::sleep(GRACE);
    for (what, payload) in denied_payloads {
        if backend.saw(&payload) {
            failures.push(format!(
                "{what}: denied, but the backend received its bytes"
            ));
        }
    }
    if cases
        .iter()
        .all(|c| matches!(c.transport, TcpTransport::Plaintext))
    {
        let allowed = cases.iter().filter(|c| c.allowed).count();
        let accepted = backend.accepted() - accepted_before;
        if accepted != allowed {
            failures.push(format!(
                "{w} plaintext {speak:?}: the backend accepted {accepted} connections for {allowed} \
                 allowed ones (a denied plaintext connection must never reach tcp_proxy)"
            ));
        }
    }
    failures
}

/// Panics listing every failure (and workload `w`'s logs) unless there is none.
pub fn assert_no_failures(stack: &Stack, w: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} unexpected outcomes:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        stack.diagnostics(w)
    );
}

/// Rewrites workload `w`'s policy and waits until a plaintext probe from 127.0.0.1 is decided
/// `allowed` (bounded): each step of a test changes the decision, so a step is only checked once
/// its policy is enforced.
pub fn set_policy(stack: &Stack, w: &str, msgs: &[Value], allowed: bool) {
    stack.write_updates(w, msgs).unwrap();
    let deadline = Instant::now() + ENFORCED_WITHIN;
    loop {
        let payload = token("probe");
        let o = dial(
            stack,
            w,
            IpAddr::from([127, 0, 0, 1]),
            &TcpTransport::Plaintext,
            Speak::AtOnce,
            &payload,
        );
        let want = [stack.tcp_backend(w).greeting(), &payload].concat();
        if (allowed && o.passed(&want)) || (!allowed && o.closed_silently()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{w}: policy change not enforced (last probe {}); {}",
            o.summary(),
            stack.diagnostics(w)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
