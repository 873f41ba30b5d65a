//! Propagation (`--propagation N`): how long a policy change takes to be enforced on every Envoy
//! worker, for our filter as wasm (`alp`) and as the native module (`native`).
//!
//! An Envoy of its own per artefact and rule count, `--concurrency 2` (not pinned), `control
//! serve` following its updates file with `--watch-interval-ms 10` (the smallest). Keep-alive
//! probe connections are opened until every worker holds some (Envoy's per-worker
//! `downstream_cx_active` tells). Then, N times: after a varied pause (so changes land at
//! different points of control's watch cycle), the updates file is replaced (written beside,
//! renamed over) by the same policy with the allowing rule's action flipped (allow -> deny ->
//! allow ...), and, from the rename:
//!
//! * **enforced**: `GET /orders/42` is sent round-robin on the probe connections until each has
//!   answered the new decision once (200 or 403; anything else fails the run): the time of the
//!   last connection to see it. Afterwards every connection must answer it again (no flapping);
//! * **published**: a long poll of control's relay endpoint (`/v1/snapshot` with the version
//!   held), in a thread of its own, answers when control publishes the new version: the time of
//!   its first response byte. It includes control's file watch (0-10 ms) and its rebuild.
//!
//! "Publication to every worker" (enforced − published) is what the filter's artefact decides:
//! the module's fetch, decode, compile and hand-over to the workers.

use crate::config::Config;
use crate::report::PropagationRow;
use crate::{http_targets, policy, start_http_setup, wait_allowed, Ctx, Servers};
use alp_e2e::envoy::Envoy;
use alp_e2e::http::Conn;
use alp_engine::relay_contract::{HAVE_VERSION_HEADER, SNAPSHOT_PATH, VERSION_HEADER, WAIT_HEADER};
use anyhow::{bail, Context as _, Result};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Envoy's workers during the measurement.
pub const WORKERS: u32 = 2;
/// control's `--watch-interval-ms` during the measurement (its smallest).
pub const WATCH_INTERVAL_MS: u64 = 10;
/// Probe connections: at least this many, and more until every worker holds some.
const MIN_CONNECTIONS: usize = 6;
const MAX_CONNECTIONS: usize = 64;
/// A flip not enforced (or published) within this fails the run.
const WITHIN: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The observer's long-poll wait (it polls again when nothing came).
const OBSERVER_WAIT_MS: u64 = 5_000;

/// The updates file of the policy at `rules` rules whose allowing rule (the last) allows, or
/// denies.
fn updates_text(rules: usize, ports: &[u16], allow: bool) -> Result<String> {
    let mut snap = policy::bench_snapshot(rules, ports);
    if !allow {
        let last = snap
            .policies
            .last_mut()
            .and_then(|p| p.inbound_rules.last_mut())
            .context("the policy has no rule")?;
        last.action = "deny".into();
    }
    let jsonl: String = policy::to_dataplane(&snap)?
        .iter()
        .map(|m| format!("{m}\n"))
        .collect();
    policy::check_round_trip(&jsonl, &snap)?;
    Ok(jsonl)
}

/// Measures `flips` policy changes for `config` (alp or native) at `rules` rules.
pub fn measure(ctx: &Ctx, config: Config, rules: usize, flips: usize) -> Result<PropagationRow> {
    if !config.uses_control() {
        bail!("propagation is measured for the configurations control feeds (alp, native)");
    }
    let dir = ctx.run_dir.join(format!("propagation-{config}-{rules}"));
    let control_args = [
        "--watch-interval-ms".to_string(),
        WATCH_INTERVAL_MS.to_string(),
    ];
    let (Servers { control, .. }, envoy) =
        start_http_setup(ctx, config, Some(rules), &dir, &[], WORKERS, &control_args)?;
    let control = control.context("control did not start")?;
    let (plain, _) = http_targets(ctx);
    wait_allowed(ctx, &envoy, &plain)?;
    let ports = [ctx.paths.plain_port, ctx.paths.mtls_port];
    let texts = [
        updates_text(rules, &ports, false)?,
        updates_text(rules, &ports, true)?,
    ];
    let updates = dir.join("updates.jsonl");
    if std::fs::read_to_string(&updates)? != texts[1] {
        bail!("the propagation's allowing policy is not the one control started with");
    }
    let mut conns = connections_on_every_worker(&envoy, plain.addr, &ctx.args.request_path)?;
    let per_worker = envoy.worker_connections("plaintext", WORKERS)?;
    let observer = Observer::start(&control.socket)?;

    let path = &ctx.args.request_path;
    let mut enforced_ms = Vec::with_capacity(flips);
    let mut published_ms = Vec::with_capacity(flips);
    let mut reopened = 0;
    let mut allow = true;
    let fresh = dir.join("updates.jsonl.next");
    for flip in 0..flips {
        allow = !allow;
        let want = if allow { 200 } else { 403 };
        std::thread::sleep(alp_e2e::probe::stagger(flip));
        std::fs::write(&fresh, &texts[usize::from(allow)])?;
        let start = Instant::now();
        std::fs::rename(&fresh, &updates)?;
        let last = await_decision(&mut conns, plain.addr, path, want, start, &mut reopened)
            .with_context(|| {
                format!(
                    "{} at {rules} rules, flip {}: control log {}",
                    config.label(),
                    flip + 1,
                    control.proc.log.display()
                )
            })?;
        let published = observer.next_after(start)?;
        enforced_ms.push(last.as_secs_f64() * 1e3);
        published_ms.push(published.as_secs_f64() * 1e3);
        // Enforced: every connection keeps answering the new decision.
        for c in conns.iter_mut() {
            reopen_if_closed(c, plain.addr, &mut reopened)?;
            let status = c.request("GET", path, &[])?.status;
            if status != want {
                bail!(
                    "{} at {rules} rules, flip {}: a connection answered {status} after the change was seen everywhere (want {want})",
                    config.label(),
                    flip + 1
                );
            }
        }
    }
    observer.stop();
    let per_worker_after = envoy.worker_connections("plaintext", WORKERS)?;
    if per_worker_after.contains(&0) {
        bail!(
            "{} at {rules} rules: probe connections per worker {per_worker_after:?} at the end (a worker lost its connections)",
            config.label()
        );
    }
    drop(conns);
    drop(envoy);
    drop(control);
    Ok(PropagationRow {
        config: config.key().into(),
        label: config.label().into(),
        rules,
        concurrency: WORKERS,
        watch_interval_ms: WATCH_INTERVAL_MS,
        connections_per_worker: per_worker,
        reopened,
        enforced_ms,
        published_ms,
    })
}

/// Keep-alive connections to `addr`, each having answered `GET path` with 200, until there are
/// at least [`MIN_CONNECTIONS`] and every worker holds some.
fn connections_on_every_worker(envoy: &Envoy, addr: SocketAddr, path: &str) -> Result<Vec<Conn>> {
    let mut conns = Vec::new();
    while conns.len() < MAX_CONNECTIONS {
        let mut c = Conn::tcp(addr, None, IO_TIMEOUT)?;
        let status = c.request("GET", path, &[])?.status;
        if status != 200 {
            bail!("GET {path} answered {status} before the first change (want 200)");
        }
        conns.push(c);
        if conns.len() >= MIN_CONNECTIONS {
            let per_worker = envoy.worker_connections("plaintext", WORKERS)?;
            if per_worker.iter().all(|&n| n > 0) {
                return Ok(conns);
            }
        }
    }
    bail!("{MAX_CONNECTIONS} connections did not reach every one of Envoy's {WORKERS} workers")
}

fn reopen_if_closed(c: &mut Conn, addr: SocketAddr, reopened: &mut usize) -> Result<()> {
    if c.is_closed() {
        *c = Conn::tcp(addr, None, IO_TIMEOUT)?;
        *reopened += 1;
    }
    Ok(())
}

/// Sends `GET path` round-robin on the connections until each has answered `want` once; the
/// time after `start` of the last to do so.
fn await_decision(
    conns: &mut [Conn],
    addr: SocketAddr,
    path: &str,
    want: u16,
    start: Instant,
    reopened: &mut usize,
) -> Result<Duration> {
    let mut seen: Vec<Option<Duration>> = vec![None; conns.len()];
    while seen.iter().any(Option::is_none) {
        if start.elapsed() > WITHIN {
            bail!(
                "not every connection answered {want} within {WITHIN:?} ({} of {} did)",
                seen.iter().flatten().count(),
                seen.len()
            );
        }
        for (c, s) in conns.iter_mut().zip(seen.iter_mut()) {
            if s.is_some() {
                continue;
            }
            reopen_if_closed(c, addr, reopened)?;
            let r = c.request("GET", path, &[])?;
            if r.status != 200 && r.status != 403 {
                bail!("a probe got {} (want 200 or 403)", r.summary());
            }
            if r.status == want {
                *s = Some(start.elapsed());
            }
        }
    }
    Ok(seen.into_iter().flatten().max().unwrap_or_default())
}

/// A thread long-polling control's relay endpoint, reporting when each new version is
/// published (the first byte of the answer).
struct Observer {
    rx: mpsc::Receiver<Result<(Instant, u64), String>>,
    stop: Arc<AtomicBool>,
}

impl Observer {
    /// Starts the thread and waits for the version control serves now.
    fn start(socket: &Path) -> Result<Observer> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let socket: PathBuf = socket.to_path_buf();
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("propagation-observer".into())
            .spawn(move || {
                let mut have = 0;
                while !flag.load(Ordering::Relaxed) {
                    match poll(&socket, have, OBSERVER_WAIT_MS) {
                        Ok(None) => {}
                        Ok(Some((at, version))) => {
                            have = version;
                            if tx.send(Ok((at, version))).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            if !flag.load(Ordering::Relaxed) {
                                let _ = tx.send(Err(format!("{e:#}")));
                            }
                            return;
                        }
                    }
                }
            })?;
        let observer = Observer { rx, stop };
        match observer.rx.recv_timeout(WITHIN) {
            Ok(Ok(_)) => Ok(observer),
            Ok(Err(e)) => bail!("polling control's {SNAPSHOT_PATH}: {e}"),
            Err(_) => bail!("control's {SNAPSHOT_PATH} did not answer within {WITHIN:?}"),
        }
    }

    /// How long after `start` control published the next version.
    fn next_after(&self, start: Instant) -> Result<Duration> {
        loop {
            match self.rx.recv_timeout(WITHIN) {
                Ok(Ok((at, _))) if at >= start => return Ok(at - start),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("polling control's {SNAPSHOT_PATH}: {e}"),
                Err(_) => bail!("control published no new version within {WITHIN:?}"),
            }
        }
    }

    /// Lets the thread end after its current poll (or when control stops).
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One long poll: `Some((when the answer began, its version))` for a 200, `None` for a 204.
fn poll(socket: &Path, have: u64, wait_ms: u64) -> Result<Option<(Instant, u64)>> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_millis(wait_ms) + IO_TIMEOUT))?;
    write!(
        s,
        "GET {SNAPSHOT_PATH} HTTP/1.1\r\nhost: alp-control\r\n{HAVE_VERSION_HEADER}: {have}\r\n{WAIT_HEADER}: {wait_ms}\r\nconnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut at = None;
    let end = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("control closed the connection in the response head");
        }
        at.get_or_insert_with(Instant::now);
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let at = at.unwrap_or_else(Instant::now);
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line in {text:?}"))?;
    // The rest of the body, so control is not cut off mid-write.
    while s.read(&mut buf)? > 0 {}
    match status {
        204 => Ok(None),
        200 => {
            let version = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case(VERSION_HEADER))
                .and_then(|(_, v)| v.trim().parse().ok())
                .with_context(|| format!("no {VERSION_HEADER} in a 200: {text:?}"))?;
            Ok(Some((at, version)))
        }
        other => bail!("{SNAPSHOT_PATH} answered {other}: {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flipped_policy_differs_only_in_the_allowing_rule() {
        let ports = [8080, 8443];
        let allow = updates_text(10, &ports, true).unwrap();
        let deny = updates_text(10, &ports, false).unwrap();
        assert_ne!(allow, deny);
        assert_eq!(allow.lines().count(), deny.lines().count());
        let differing: Vec<_> = allow
            .lines()
            .zip(deny.lines())
            .filter(|(a, d)| a != d)
            .collect();
        assert_eq!(differing.len(), 1, "{differing:?}");
    }
}
