//! The YAO bank scenario of Calico's application layer policy tutorial, as requests and the
//! outcomes its policy (`envoy/yaobank/policy.yaml`) implies. Shared by `local-stack` (which
//! prints it), the tests and the compose demo's client script (`compose::demo_script`).

use crate::client::{Outcome, Request};
use crate::stack::{yaobank_ip, Stack};
use anyhow::Result;
use std::net::IpAddr;

/// Who sends a request.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A pod of service account `sa`, from its pod IP, over mTLS with its SPIFFE certificate.
    Pod(&'static str),
    /// Something outside the mesh: plaintext from 127.0.0.1.
    Outsider,
    /// An outsider that claims an identity in headers: plaintext from 127.0.0.1 with a forged
    /// `x-forwarded-client-cert` and `x-forwarded-for` naming pod `sa`.
    Spoofer(&'static str),
}

impl Caller {
    /// Which client makes the request: the pod of service account `sa`, or `outsider` (a
    /// client outside the mesh, for `Outsider` and `Spoofer`).
    pub fn key(&self) -> &'static str {
        match self {
            Caller::Pod(sa) => sa,
            Caller::Outsider | Caller::Spoofer(_) => "outsider",
        }
    }

    pub fn label(&self) -> String {
        match self {
            Caller::Pod(sa) => sa.to_string(),
            Caller::Outsider => "outsider (plaintext)".into(),
            Caller::Spoofer(sa) => format!("outsider claiming {sa} in XFCC/XFF"),
        }
    }
}

/// One request of the demonstration and its expected status and body.
#[derive(Clone, Debug)]
pub struct Case {
    pub caller: Caller,
    pub to: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub expect_status: u16,
    pub expect_body: &'static str,
    pub why: &'static str,
}

const fn case(
    caller: Caller,
    to: &'static str,
    method: &'static str,
    expect_status: u16,
    expect_body: &'static str,
    why: &'static str,
) -> Case {
    Case {
        caller,
        to,
        method,
        path: "/",
        expect_status,
        expect_body,
        why,
    }
}

/// The scenario.
pub fn yaobank_cases() -> Vec<Case> {
    use Caller::*;
    vec![
        case(
            Outsider,
            "customer",
            "GET",
            200,
            "customer: ok",
            "customer allows GET from anyone",
        ),
        case(
            Outsider,
            "customer",
            "POST",
            403,
            "denied by policy",
            "customer allows only GET",
        ),
        case(
            Pod("summary"),
            "customer",
            "GET",
            200,
            "customer: ok",
            "GET from any identity",
        ),
        case(
            Pod("customer"),
            "summary",
            "GET",
            200,
            "summary: ok",
            "summary allows service account customer",
        ),
        case(
            Pod("database"),
            "summary",
            "GET",
            403,
            "denied by policy",
            "database is not customer",
        ),
        case(
            Outsider,
            "summary",
            "GET",
            403,
            "denied by policy",
            "not from a customer pod",
        ),
        case(
            Pod("summary"),
            "database",
            "GET",
            200,
            "database: ok",
            "database allows service account summary",
        ),
        case(
            Pod("summary"),
            "database",
            "POST",
            200,
            "database: ok",
            "any method from summary",
        ),
        case(
            Pod("customer"),
            "database",
            "GET",
            403,
            "denied by policy",
            "customer may not skip summary",
        ),
        case(
            Outsider,
            "database",
            "GET",
            403,
            "denied by policy",
            "not from a summary pod",
        ),
        case(
            Spoofer("summary"),
            "database",
            "GET",
            403,
            "denied by policy",
            "identity and source come from the connection, not headers",
        ),
    ]
}

impl Case {
    /// The request as the harness sends it.
    pub fn request(&self, stack: &Stack) -> Result<Request> {
        let mut req = Request::get(self.path).method(self.method);
        for (name, value) in self.headers(yaobank_ip) {
            req = req.header(&name, &value);
        }
        Ok(match &self.caller {
            Caller::Pod(sa) => req.from_ip(yaobank_ip(sa)).transport(stack.mtls(sa)?),
            Caller::Outsider | Caller::Spoofer(_) => req.from_ip(IpAddr::from([127, 0, 0, 1])),
        })
    }

    /// The headers the caller adds (a spoofer's forged identity and source, `pod_ip` giving the
    /// address of the pod it claims to be).
    pub fn headers(&self, pod_ip: impl Fn(&str) -> IpAddr) -> Vec<(String, String)> {
        match &self.caller {
            Caller::Spoofer(sa) => vec![
                (
                    "x-forwarded-client-cert".into(),
                    format!(
                        "By={};URI={}",
                        crate::certs::spiffe_id(self.to),
                        crate::certs::spiffe_id(sa)
                    ),
                ),
                ("x-forwarded-for".into(), pod_ip(sa).to_string()),
            ],
            Caller::Pod(_) | Caller::Outsider => vec![],
        }
    }

    pub fn check(&self, outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Response(r) if r.status == self.expect_status && r.body.trim() == self.expect_body)
    }

    /// `customer -> database GET /: 403 denied by policy (expected: customer may not skip summary)`
    pub fn describe(&self, outcome: &Outcome) -> String {
        let verdict = if self.check(outcome) {
            format!("(expected: {})", self.why)
        } else {
            format!(
                "UNEXPECTED, wanted {} {}",
                self.expect_status, self.expect_body
            )
        };
        format!(
            "{} -> {} {} {}: {} {verdict}",
            self.caller.label(),
            self.to,
            self.method,
            self.path,
            outcome.summary()
        )
    }
}

/// Runs every case; returns each with its outcome and whether it was as expected.
pub fn run_yaobank(
    stack: &Stack,
    mut on_result: impl FnMut(&Case, &Outcome, bool),
) -> Result<usize> {
    let mut unexpected = 0;
    for case in yaobank_cases() {
        let outcome = stack.send(case.to, &case.request(stack)?)?;
        let ok = case.check(&outcome);
        if !ok {
            unexpected += 1;
        }
        on_result(&case, &outcome, ok);
    }
    Ok(unexpected)
}
