//! The YAO bank scenario at L4: raw TCP connections to each workload's `tcp_W` listener (Envoy's
//! echo backend behind it), decided by the network filter on the same policy as the HTTP
//! requests of `demo.rs`. A connection has no method or path, so only rules without an HTTP
//! clause can match it (D4): database and summary admit the pods of one service account
//! (identity and address), while customer's only rule allows HTTP GET, so no raw connection
//! reaches customer at all.

use crate::demo::Caller;
use crate::stack::{yaobank_ip, Stack};
use crate::tcp_client::{self, TcpOutcome, TcpTransport};
use anyhow::{bail, Result};
use std::net::IpAddr;

/// One connection of the demonstration and whether it must pass.
#[derive(Clone, Debug)]
pub struct TcpCase {
    /// `Pod(sa)` (mTLS from its pod IP) or `Outsider` (plaintext from 127.0.0.1).
    pub caller: Caller,
    pub to: &'static str,
    pub passes: bool,
    pub why: &'static str,
}

/// The scenario.
pub fn yaobank_tcp_cases() -> Vec<TcpCase> {
    use Caller::*;
    let case = |caller, to, passes, why| TcpCase {
        caller,
        to,
        passes,
        why,
    };
    vec![
        case(
            Pod("summary"),
            "database",
            true,
            "database allows service account summary; the rule has no HTTP clause",
        ),
        case(
            Pod("customer"),
            "database",
            false,
            "customer may not skip summary, at L4 either",
        ),
        case(Outsider, "database", false, "not from a summary pod"),
        case(
            Pod("customer"),
            "summary",
            true,
            "summary allows service account customer",
        ),
        case(
            Pod("summary"),
            "customer",
            false,
            "customer's only rule allows HTTP GET, which never matches a connection",
        ),
    ]
}

impl TcpCase {
    fn source(&self) -> IpAddr {
        match &self.caller {
            Caller::Pod(sa) => yaobank_ip(sa),
            _ => IpAddr::from([127, 0, 0, 1]),
        }
    }

    fn transport(&self, stack: &Stack) -> Result<TcpTransport> {
        match &self.caller {
            Caller::Pod(sa) => stack.tcp_mtls(sa),
            Caller::Outsider => Ok(TcpTransport::Plaintext),
            Caller::Spoofer(_) => bail!("a spoofer forges HTTP headers; raw TCP has none"),
        }
    }

    /// What the client sends (the echo backend sends it back).
    pub fn payload(&self) -> String {
        format!("hello from {}\n", self.caller.label())
    }

    /// Connects, sends the payload and reads the echo.
    pub fn run(&self, stack: &Stack) -> Result<TcpOutcome> {
        let transport = self.transport(stack)?;
        let payload = self.payload();
        tcp_client::dial(
            stack.tcp_addr(self.to),
            Some(self.source()),
            &transport,
            0,
            payload.as_bytes(),
        )
    }

    pub fn check(&self, outcome: &TcpOutcome) -> bool {
        if self.passes {
            outcome.passed(self.payload().as_bytes())
        } else {
            outcome.closed_silently()
        }
    }

    /// `customer -> database raw TCP: closed, not a byte received (expected: ...)`
    pub fn describe(&self, outcome: &TcpOutcome) -> String {
        let seen = if outcome.passed(self.payload().as_bytes()) {
            format!("passed, echoed {} bytes", outcome.received.len())
        } else if outcome.closed_silently() {
            "closed, not a byte received".to_string()
        } else {
            outcome.summary()
        };
        let verdict = if self.check(outcome) {
            format!("(expected: {})", self.why)
        } else {
            let want = if self.passes { "passed" } else { "closed" };
            format!("UNEXPECTED, wanted {want}")
        };
        format!(
            "{} -> {} raw TCP: {seen} {verdict}",
            self.caller.label(),
            self.to
        )
    }
}

/// Runs every case; returns how many were not as expected.
pub fn run_yaobank_tcp(
    stack: &Stack,
    mut on_result: impl FnMut(&TcpCase, &TcpOutcome, bool),
) -> Result<usize> {
    let mut unexpected = 0;
    for case in yaobank_tcp_cases() {
        let outcome = case.run(stack)?;
        let ok = case.check(&outcome);
        if !ok {
            unexpected += 1;
        }
        on_result(&case, &outcome, ok);
    }
    Ok(unexpected)
}
