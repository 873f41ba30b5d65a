//! The server end to end, in process: a real listener (Unix socket and TCP), the updates-file
//! source, and plain HTTP/1.1 requests.

use super::start;
use crate::listen::Listen;
use crate::source::updates_file::UpdatesFile;
use alp_engine::envelope;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn get(address: &str, path: &str, headers: &[(&str, String)]) -> Reply {
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: alp-control\r\nconnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut raw = Vec::new();
    if let Some(socket) = address.strip_prefix("unix:") {
        let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        s.read_to_end(&mut raw).await.unwrap();
    } else {
        let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        s.read_to_end(&mut raw).await.unwrap();
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn poll_headers(have: u64, wait_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-alp-have-version", have.to_string()),
        ("x-alp-wait-ms", wait_ms.to_string()),
    ]
}

/// A replayable stream: one endpoint whose only profile is `profile`, then inSync.
fn updates(profile: &str) -> String {
    format!(
        "{}\n{}\n",
        r#"{"workloadEndpointUpdate":{"id":{"orchestratorId":"k8s","workloadId":"default/pod","endpointId":"eth0"},"endpoint":{"profileIds":["PROFILE"]}}}"#
            .replace("PROFILE", profile),
        r#"{"inSync":{}}"#
    )
}

fn profile_of(body: &[u8]) -> (u64, String) {
    let (version, snapshot) = envelope::decode(body).unwrap();
    (version, snapshot.endpoint.unwrap().profile_ids.join(","))
}

async fn wait_ready(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(address, "/readyz", &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn source(path: &Path) -> Box<UpdatesFile> {
    Box::new(UpdatesFile::new(
        path.to_path_buf(),
        Duration::from_millis(50),
    ))
}

#[tokio::test]
async fn long_poll_over_a_unix_socket_follows_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("updates.jsonl");
    let socket = dir.path().join("control.sock");
    std::fs::write(&file, updates("kns.a")).unwrap();
    let running = start(&Listen::Unix(socket.clone()), source(&file))
        .await
        .unwrap();
    let address = running.address.clone();
    assert_eq!(address, format!("unix:{}", socket.display()));
    wait_ready(&address).await;

    // Behind: the snapshot at once.
    let r = get(&address, "/v1/snapshot", &poll_headers(0, 20_000)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    let (v1, profile) = profile_of(&r.body);
    assert_eq!(profile, "kns.a");
    assert_eq!(r.headers["x-alp-version"], v1.to_string());
    let ready = get(&address, "/readyz", &[]).await;
    assert_eq!(
        String::from_utf8(ready.body).unwrap(),
        format!("ready: version {v1}\n")
    );

    // Up to date: 204 after the wait.
    let started = Instant::now();
    let r = get(&address, "/v1/snapshot", &poll_headers(v1, 300)).await;
    assert_eq!(r.status, 204);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A change arrives within the poll.
    let poll = tokio::spawn({
        let address = address.clone();
        async move { get(&address, "/v1/snapshot", &poll_headers(v1, 10_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let changed = Instant::now();
    std::fs::write(&file, updates("kns.bb")).unwrap();
    let r = poll.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "{:?}",
        changed.elapsed()
    );
    let (v2, profile) = profile_of(&r.body);
    assert_eq!(profile, "kns.bb");
    assert!(v2 > v1);

    // Rewriting the same content keeps the version; a broken file keeps the last good one.
    std::fs::write(&file, updates("kns.bb")).unwrap();
    assert_eq!(
        get(&address, "/v1/snapshot", &poll_headers(v2, 400))
            .await
            .status,
        204
    );
    std::fs::write(&file, "{\"inSync\": 5}\n").unwrap();
    assert_eq!(
        get(&address, "/v1/snapshot", &poll_headers(v2, 400))
            .await
            .status,
        204
    );
    assert_eq!(get(&address, "/readyz", &[]).await.status, 200);
    let r = get(&address, "/v1/snapshot", &poll_headers(0, 0)).await;
    assert_eq!(profile_of(&r.body), (v2, "kns.bb".to_string()));

    // A bad header is a client error.
    let r = get(
        &address,
        "/v1/snapshot",
        &[("x-alp-have-version", "latest".to_string())],
    )
    .await;
    assert_eq!(r.status, 400);

    // Shutdown ends pending polls and removes the socket.
    let pending = tokio::spawn({
        let address = address.clone();
        async move { get(&address, "/v1/snapshot", &poll_headers(v2, 60_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.shutdown.send_replace(true);
    let stopped = Instant::now();
    assert_eq!(pending.await.unwrap().status, 204);
    tokio::time::timeout(Duration::from_secs(5), running.finished())
        .await
        .unwrap()
        .unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(!socket.exists());
}

#[tokio::test]
async fn tcp_before_in_sync_is_healthy_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("updates.json");
    // No inSync yet.
    std::fs::write(&file, "[]").unwrap();
    let running = start(&"127.0.0.1:0".parse().unwrap(), source(&file))
        .await
        .unwrap();
    let address = running.address.clone();
    assert!(address.starts_with("127.0.0.1:") && !address.ends_with(":0"));
    assert_eq!(get(&address, "/healthz", &[]).await.status, 200);
    assert_eq!(get(&address, "/readyz", &[]).await.status, 503);
    assert_eq!(
        get(&address, "/v1/snapshot", &poll_headers(0, 200))
            .await
            .status,
        204
    );
    assert_eq!(get(&address, "/nope", &[]).await.status, 404);
    // The array form, once in sync.
    std::fs::write(&file, r#"[{"inSync":{}}]"#).unwrap();
    wait_ready(&address).await;
    let r = get(&address, "/v1/snapshot", &[]).await;
    assert_eq!(r.status, 200);
    let (_, snapshot) = envelope::decode(&r.body).unwrap();
    assert_eq!(snapshot.endpoint, None);
    running.shutdown.send_replace(true);
    running.finished().await.unwrap();
}

#[tokio::test]
async fn a_missing_file_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("later.jsonl");
    let running = start(&"127.0.0.1:0".parse().unwrap(), source(&file))
        .await
        .unwrap();
    let address = running.address.clone();
    assert_eq!(get(&address, "/readyz", &[]).await.status, 503);
    std::fs::write(&file, updates("kns.late")).unwrap();
    wait_ready(&address).await;
    running.shutdown.send_replace(true);
    running.finished().await.unwrap();
}

/// `--metrics-listen`: a second, TCP server with `/metrics` (Prometheus text, counters named
/// `..._total`) and `/healthz` only; the snapshot stays on `--listen`.
#[tokio::test]
async fn metrics_listener_serves_metrics_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("updates.jsonl");
    let socket = dir.path().join("control.sock");
    std::fs::write(&file, updates("kns.m")).unwrap();
    let running = super::start_with(
        &Listen::Unix(socket.clone()),
        Some(&"127.0.0.1:0".parse().unwrap()),
        source(&file),
    )
    .await
    .unwrap();
    let address = running.address.clone();
    let metrics = running.metrics_address.clone().expect("metrics address");
    assert!(
        metrics.starts_with("127.0.0.1:") && !metrics.ends_with(":0"),
        "{metrics}"
    );
    wait_ready(&address).await;

    let r = get(&metrics, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("\nalp_control_in_sync 1\n"), "{text}");
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    assert!(counters.len() >= 2, "{text}");
    for c in &counters {
        assert!(c.ends_with("_total"), "counter {c} does not end in _total");
    }
    // Every sample belongs to a declared family (no stray lines Prometheus would reject).
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        assert!(
            text.contains(&format!("# TYPE {name} "))
                || ["_bucket", "_sum", "_count"].iter().any(|s| name
                    .strip_suffix(s)
                    .is_some_and(|f| text.contains(&format!("# TYPE {f} histogram")))),
            "{line}"
        );
    }
    assert_eq!(get(&metrics, "/healthz", &[]).await.status, 200);
    // Nothing else: not the policy, not readiness.
    assert_eq!(
        get(&metrics, "/v1/snapshot", &poll_headers(0, 0))
            .await
            .status,
        404
    );
    assert_eq!(get(&metrics, "/readyz", &[]).await.status, 404);
    let mut s = tokio::net::TcpStream::connect(&metrics).await.unwrap();
    s.write_all(
        b"POST /metrics HTTP/1.1\r\nhost: c\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    // The main listener is unchanged.
    let r = get(&address, "/v1/snapshot", &poll_headers(0, 0)).await;
    assert_eq!(profile_of(&r.body).1, "kns.m");
    assert_eq!(get(&address, "/metrics", &[]).await.status, 200);

    running.shutdown.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), running.finished())
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(&metrics).await.is_err());
}

/// A metrics address that cannot be bound fails the start, naming it.
#[tokio::test]
async fn a_metrics_address_in_use_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("updates.jsonl");
    std::fs::write(&file, updates("kns.x")).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = super::start_with(
        &Listen::Unix(dir.path().join("c.sock")),
        Some(&addr.parse().unwrap()),
        source(&file),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains(&addr), "{err:#}");
}

#[test]
fn an_empty_metrics_address_is_off() {
    use super::OptionalListen;
    assert_eq!("".parse(), Ok(OptionalListen(None)));
    assert_eq!(" ".parse(), Ok(OptionalListen(None)));
    assert_eq!(
        "127.0.0.1:9402".parse(),
        Ok(OptionalListen(Some(Listen::Tcp("127.0.0.1:9402".into()))))
    );
    assert!("9402".parse::<OptionalListen>().is_err());
}
