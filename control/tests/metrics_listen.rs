//! `control serve --metrics-listen ADDR` (env `ALP_METRICS_LISTEN`): the real binary serves
//! Prometheus's scrape over TCP while the filters' snapshot stays on its Unix socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, Server, UPDATES};

/// `GET path` over TCP: status line and body, or None while nobody answers.
fn get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: prometheus\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_are_scraped_over_tcp_from_the_env_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = dir.path().join("updates.jsonl");
    std::fs::write(&updates, UPDATES).expect("write updates");
    let socket = dir.path().join("control.sock");
    let metrics = format!("127.0.0.1:{}", free_port());
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_control"))
            .args(["serve", "--updates"])
            .arg(&updates)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .env("ALP_METRICS_LISTEN", &metrics)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("control serve starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Some((status, body)) = get(&metrics, "/metrics") {
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            if value(&body, "alp_control_in_sync") == Some(1.0) {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "no in-sync scrape on {metrics}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        value(&body, "alp_control_snapshot_version").unwrap_or(0.0) > 0.0,
        "{body}"
    );
    assert!(
        value(&body, "alp_control_updates_applied_total").is_some(),
        "{body}"
    );
    assert!(
        body.contains("# TYPE alp_control_felix_reconnects_total counter"),
        "{body}"
    );
    assert_eq!(
        get(&metrics, "/healthz").map(|r| r.0).as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    assert_eq!(
        get(&metrics, "/v1/snapshot").map(|r| r.0).as_deref(),
        Some("HTTP/1.1 404 Not Found")
    );
    // The filters' listener is where it was.
    assert!(socket.exists());
}

#[test]
fn a_bad_metrics_address_is_refused_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_control"))
        .args([
            "serve",
            "--updates",
            "/nonexistent",
            "--metrics-listen",
            "9402",
        ])
        .output()
        .expect("control runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics-listen") && err.contains("9402"),
        "{err}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_control"))
        .args(["serve", "--help"])
        .output()
        .expect("control runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--metrics-listen") && help.contains("ALP_METRICS_LISTEN"),
        "{help}"
    );
}
