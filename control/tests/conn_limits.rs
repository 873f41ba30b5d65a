//! `control serve --header-read-timeout` and `--max-connections`, on the real binary: a client
//! that never finishes its request headers is disconnected while a long-poll whose headers
//! arrived is held its full wait, and connections beyond the cap are closed at once while the
//! open ones keep being served.
//!
//! Only lower bounds on durations are asserted (a timer never fires early); the upper bounds are
//! generous deadlines, so a loaded machine slows these tests down without failing them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, Server, PATIENCE, UPDATES};

/// Starts `control serve` on a TCP port with `flags`, logging to `log`; returns once it answers.
fn serve(dir: &Path, flags: &[&str], log: &Path) -> (Server, String) {
    let updates = dir.join("updates.jsonl");
    std::fs::write(&updates, UPDATES).expect("write updates");
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_control"))
            .args(["serve", "--updates"])
            .arg(&updates)
            .args(["--listen", &addr])
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("control serve starts"),
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(mut c) = Conn::open(&addr) {
            if c.get("/healthz", &[]).is_some_and(|r| r.status == 200) {
                return (server, addr);
            }
        }
        assert!(
            Instant::now() < deadline,
            "control serve never answered on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Response {
    status: u16,
    version: Option<u64>,
    body: String,
}

/// A kept-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> Option<Conn> {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(PATIENCE)).ok()?;
        let reader = BufReader::new(stream.try_clone().ok()?);
        Some(Conn { stream, reader })
    }

    /// `GET path` with `headers`; its response, or None when the connection is closed.
    fn get(&mut self, path: &str, headers: &[(&str, String)]) -> Option<Response> {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: control\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).ok()?;
        self.response()
    }

    fn response(&mut self) -> Option<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status = line.split(' ').nth(1)?.parse().ok()?;
        let (mut length, mut version) = (0, None);
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header).ok()?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "x-alp-version" => version = value.trim().parse().ok(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).ok()?;
        Some(Response {
            status,
            version,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Waits for the server to close the connection; whether it did (rather than the wait
    /// running out), and any bytes it sent first.
    fn closed_by_server(&mut self) -> (bool, Vec<u8>) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => (true, rest),
            Err(e) => (
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ),
                rest,
            ),
        }
    }
}

/// The version of the snapshot served now.
fn current_version(addr: &str) -> u64 {
    let mut c = Conn::open(addr).expect("connect");
    let r = c
        .get("/v1/snapshot", &[("x-alp-wait-ms", "0".into())])
        .expect("a snapshot");
    assert_eq!(r.status, 200);
    r.version.expect("x-alp-version")
}

#[test]
fn unfinished_headers_are_cut_but_a_long_poll_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("control.log");
    let timeout = Duration::from_secs(1);
    let (_server, addr) = serve(dir.path(), &["--header-read-timeout", "1s"], &log);
    let version = current_version(&addr);

    // Half a header block, and nothing more.
    let started = Instant::now();
    let mut slow = Conn::open(&addr).expect("connect");
    slow.stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: control\r\nx-slow: ")
        .expect("write half a request");
    // A long-poll for a version newer than the current one: held for its whole wait.
    let wait = Duration::from_secs(4);
    let mut poll = Conn::open(&addr).expect("connect");
    let poll_started = Instant::now();
    poll.stream
        .write_all(
            format!(
                "GET /v1/snapshot HTTP/1.1\r\nhost: control\r\nx-alp-have-version: {version}\r\nx-alp-wait-ms: {}\r\n\r\n",
                wait.as_millis()
            )
            .as_bytes(),
        )
        .expect("write the long-poll");

    let (closed, sent) = slow.closed_by_server();
    assert!(
        closed,
        "the half-sent request was not closed within {PATIENCE:?}"
    );
    assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
    assert!(
        started.elapsed() >= timeout,
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );

    let r = poll.response().expect("the long-poll answers");
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        poll_started.elapsed() >= wait - Duration::from_millis(100),
        "the long-poll was answered after {:?}, before its wait",
        poll_started.elapsed()
    );
    // Same connection, next request: still served.
    let r = poll
        .get("/metrics", &[])
        .expect("metrics on the same connection");
    assert_eq!(r.status, 200);
    let timeouts = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("alp_control_header_timeouts_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("alp_control_header_timeouts_total");
    assert!(timeouts >= 1, "{}", r.body);
}

#[test]
fn connections_beyond_the_cap_are_closed_and_the_others_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("control.log");
    let cap = 3;
    let (server, addr) = serve(
        dir.path(),
        &["--max-connections", "3", "--header-read-timeout", "60s"],
        &log,
    );
    let version = current_version(&addr);

    // Fill every slot with a connection that has been served (so it holds its slot); a slot
    // still held by the probes above closing is retried.
    let deadline = Instant::now() + PATIENCE;
    let mut open = Vec::new();
    while open.len() < cap {
        let mut c = Conn::open(&addr).expect("connect");
        if c.get("/healthz", &[]).is_some_and(|r| r.status == 200) {
            open.push(c);
        } else {
            assert!(
                Instant::now() < deadline,
                "could not open {cap} connections"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // One more: accepted by the kernel, closed by control at once.
    for _ in 0..2 {
        let mut extra = Conn::open(&addr).expect("connect");
        assert!(
            extra.get("/healthz", &[]).is_none(),
            "a connection beyond --max-connections was served"
        );
        let (closed, _) = extra.closed_by_server();
        assert!(closed, "a connection beyond the cap was left open");
    }

    // The open ones keep working: a request, and a long-poll held its wait.
    let r = open[0]
        .get("/metrics", &[])
        .expect("served after the refusals");
    assert_eq!(r.status, 200);
    let refused = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("alp_control_connections_refused_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("alp_control_connections_refused_total");
    assert!(refused >= 2, "{}", r.body);
    let r = open[1]
        .get(
            "/v1/snapshot",
            &[
                ("x-alp-have-version", version.to_string()),
                ("x-alp-wait-ms", "1000".into()),
            ],
        )
        .expect("long-poll answered");
    assert_eq!(r.status, 204);

    // A slot freed is taken again.
    drop(open.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut c = Conn::open(&addr).expect("connect");
        if c.get("/healthz", &[]).is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        std::thread::sleep(Duration::from_millis(50));
    }

    drop(server);
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.contains("connection refused: 3 connections already open (--max-connections)"),
        "{log}"
    );
}
