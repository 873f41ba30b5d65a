//! Requests as a workload makes them: `curl` with an optional client certificate (mTLS) or in
//! plaintext, from a chosen 127.x source address, with the request target sent exactly as given
//! (`--path-as-is`, so `..`, `//` and percent escapes reach Envoy untouched).

use crate::certs::CertFiles;
use crate::http::Response;
use anyhow::{anyhow, Context as _, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

/// How the client talks to the listener.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Plain HTTP: the filter sees no peer certificate (principal "").
    Plaintext,
    /// TLS verifying the server against `ca`, presenting `client` if given.
    Tls {
        ca: PathBuf,
        client: Option<CertFiles>,
    },
}

/// One request to send.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub source: Option<IpAddr>,
    pub transport: Transport,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Request {
            method: "GET".into(),
            path: path.into(),
            headers: vec![],
            source: None,
            transport: Transport::Plaintext,
        }
    }
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn from_ip(mut self, ip: IpAddr) -> Self {
        self.source = Some(ip);
        self
    }
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }
}

/// The result of `send`: a response, or the client's error (TLS refused, connection reset...).
#[derive(Clone, Debug)]
pub enum Outcome {
    Response(Response),
    Failed(String),
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Response(r) => Some(r.status),
            Outcome::Failed(_) => None,
        }
    }
    pub fn response(&self) -> Result<&Response> {
        match self {
            Outcome::Response(r) => Ok(r),
            Outcome::Failed(e) => Err(anyhow!("request failed: {e}")),
        }
    }
    /// `403 denied by policy`, `200 summary: ok`, or `failed: <curl error>`.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Response(r) => r.summary(),
            Outcome::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// Sends `req` to the listener at `addr` with curl.
pub fn send(addr: SocketAddr, req: &Request) -> Result<Outcome> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-i",
        "--path-as-is",
        "--max-time",
        "15",
        "--connect-timeout",
        "10",
        "-X",
        &req.method,
    ]);
    if req.method == "HEAD" {
        cmd.arg("-I");
    }
    for (n, v) in &req.headers {
        cmd.arg("-H").arg(format!("{n}: {v}"));
    }
    if let Some(ip) = req.source {
        cmd.arg("--interface").arg(ip.to_string());
    }
    let url = match &req.transport {
        Transport::Plaintext => format!("http://{}{}", addr, req.path),
        Transport::Tls { ca, client } => {
            cmd.arg("--cacert").arg(ca);
            if let Some(c) = client {
                cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
            }
            // The server certificate names `localhost`; pin it to the listener's address.
            cmd.arg("--resolve")
                .arg(format!("localhost:{}:{}", addr.port(), addr.ip()));
            format!("https://localhost:{}{}", addr.port(), req.path)
        }
    };
    cmd.arg(url);
    let out = cmd
        .output()
        .context("running curl (is it installed? apt-get install -y curl)")?;
    if !out.status.success() {
        return Ok(Outcome::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    parse_curl_output(&out.stdout).map(Outcome::Response)
}

fn parse_curl_output(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    // With -i, every response head (including 100 Continue) precedes the body; take the last.
    let mut rest: &str = &text;
    let mut resp = Response::default();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or("");
        resp.status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("curl printed no status line: {text:?}"))?;
        resp.version = status_line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        resp.headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        rest = body;
        if !(100..200).contains(&resp.status) || !rest.starts_with("HTTP/") {
            break;
        }
    }
    resp.body = rest.to_string();
    Ok(resp)
}
