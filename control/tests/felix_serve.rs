//! `control serve --felix-socket` as a process against a test Felix (`felix-sim`, the real
//! `PolicySync` gRPC service on a Unix socket): readiness and the `control health` probes follow
//! the sync state, and a 100 k-member IP set with delta updates is handled (time and memory are
//! reported).

use alp_engine::envelope;
use alp_engine::Snapshot;
use felix_sim::felix::{IpSetDeltaUpdate, IpSetUpdate, ToDataplane};
use felix_sim::{FelixSim, Session};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn report(line: String) {
    // Straight to the stderr handle: `cargo test` does not capture it, so it shows in CI logs.
    let _ = writeln!(std::io::stderr().lock(), "felix_serve: {line}");
}

fn msg(text: &str) -> ToDataplane {
    alp_felix::json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `control serve --felix-socket felix --listen unix:control`, killed on drop.
struct Control {
    child: Child,
    listen: PathBuf,
    log: PathBuf,
}

impl Control {
    fn start(dir: &Path, felix: &Path) -> Control {
        let listen = dir.join("control.sock");
        let log = dir.join("control.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_control"))
            .arg("serve")
            .arg("--felix-socket")
            .arg(felix)
            .arg("--listen")
            .arg(format!("unix:{}", listen.display()))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("control starts");
        let c = Control { child, listen, log };
        c.wait_until("/healthz answers", || c.health("liveness"));
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `control health PROBE --listen unix:...`: true when it exits 0.
    fn health(&self, probe: &str) -> bool {
        let out = Command::new(env!("CARGO_BIN_EXE_control"))
            .args(["health", probe, "--listen"])
            .arg(format!("unix:{}", self.listen.display()))
            .output()
            .expect("control health runs");
        match out.status.code() {
            Some(0) => true,
            Some(1) => false,
            other => panic!(
                "control health {probe} exited {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {WAIT:?}; control log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /v1/snapshot` long-poll: the snapshot newer than `have`, if one comes within `wait`.
    fn poll(&self, have: u64, wait: Duration) -> Option<(u64, Snapshot)> {
        let mut s =
            std::os::unix::net::UnixStream::connect(&self.listen).expect("connect to control");
        s.set_read_timeout(Some(wait + Duration::from_secs(30)))
            .unwrap();
        write!(
            s,
            "GET /v1/snapshot HTTP/1.1\r\nhost: c\r\nconnection: close\r\nx-alp-have-version: {have}\r\nx-alp-wait-ms: {}\r\n\r\n",
            wait.as_millis()
        )
        .unwrap();
        let mut raw = vec![];
        s.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head");
        let head = String::from_utf8_lossy(&raw[..split]);
        match head.split(' ').nth(1) {
            Some("200") => Some(envelope::decode(&raw[split + 4..]).expect("envelope")),
            Some("204") => None,
            other => panic!("unexpected answer {other:?}: {head}"),
        }
    }

    /// Polls until a published snapshot satisfies `pred`; its version.
    fn snapshot_where(
        &self,
        what: &str,
        mut have: u64,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> (u64, Snapshot) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((version, snapshot)) = self.poll(have, Duration::from_secs(5)) {
                if pred(&snapshot) {
                    return (version, snapshot);
                }
                have = version;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot with {what} within {WAIT:?}; log:\n{}",
                self.log()
            );
        }
    }

    /// Resident and peak memory of the control process (kB), from /proc.
    fn memory_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn accept(rt: &tokio::runtime::Runtime, sim: &mut FelixSim) -> Session {
    rt.block_on(sim.accept_within(WAIT))
        .expect("control calls Sync")
}

fn send(rt: &tokio::runtime::Runtime, session: &Session, msgs: Vec<ToDataplane>) {
    rt.block_on(session.send_all(msgs))
        .expect("control reads the stream");
}

fn ns(name: &str) -> ToDataplane {
    msg(&format!(
        r#"{{"namespaceUpdate": {{"id": {{"name": "{name}"}}}}}}"#
    ))
}

fn names(s: &Snapshot) -> Vec<&str> {
    s.namespaces.iter().map(|n| n.name.as_str()).collect()
}

#[test]
fn readiness_and_health_probes_follow_the_felix_stream() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let felix = dir.path().join("felix.sock");

    // No control at all: both probes fail.
    let nobody = Command::new(env!("CARGO_BIN_EXE_control"))
        .args(["health", "readiness", "--listen"])
        .arg(format!("unix:{}", dir.path().join("none.sock").display()))
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));

    let mut sim = rt.block_on(FelixSim::start(&felix)).unwrap();
    let control = Control::start(dir.path(), &felix);
    let first = accept(&rt, &mut sim);
    send(&rt, &first, vec![ns("a")]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(control.health("liveness"));
    assert!(!control.health("readiness"), "not ready before inSync");
    assert!(
        control.poll(0, Duration::from_millis(200)).is_none(),
        "nothing published before inSync"
    );

    send(&rt, &first, vec![msg(r#"{"inSync": {}}"#)]);
    control.wait_until("ready after inSync", || control.health("readiness"));
    let (v1, s) = control.snapshot_where("namespace a", 0, |s| names(s) == ["a"]);

    // Felix dies: not ready, but the last in-sync snapshot is still served (D8).
    rt.block_on(sim.crash());
    control.wait_until("not ready once the stream is gone", || {
        !control.health("readiness")
    });
    assert!(control.health("liveness"));
    let (v, again) = control
        .poll(0, Duration::from_secs(1))
        .expect("still served");
    assert_eq!((v, names(&again)), (v1, names(&s)));

    // Felix is back; ready again once the new stream is in sync, with its state only.
    let mut sim = rt.block_on(FelixSim::start(&felix)).unwrap();
    let second = accept(&rt, &mut sim);
    send(&rt, &second, vec![ns("b")]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!control.health("readiness"));
    send(&rt, &second, vec![msg(r#"{"inSync": {}}"#)]);
    control.wait_until("ready after the new inSync", || control.health("readiness"));
    let (v2, _) = control.snapshot_where("namespace b only", v1, |s| names(s) == ["b"]);
    assert!(v2 > v1);
    let log = control.log();
    assert!(
        log.contains("in sync with Felix") && log.contains("reconnecting in"),
        "{log}"
    );
}

fn ip(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// A 100 k-member IP set: one `ipsetUpdate`, then delta updates while in sync.
#[test]
fn a_100k_member_ip_set_with_deltas() {
    const MEMBERS: u32 = 100_000;
    const DELTAS: u32 = 100;
    const PER_DELTA: u32 = 500;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let felix = dir.path().join("felix.sock");
    let mut sim = rt.block_on(FelixSim::start(&felix)).unwrap();
    let control = Control::start(dir.path(), &felix);
    let (rss_idle, _) = control.memory_kb();
    let session = accept(&rt, &mut sim);

    let endpoint = msg(
        r#"{"workloadEndpointUpdate": {"id": {"workloadId": "default/app"}, "endpoint": {"profileIds": ["p"]}}}"#,
    );
    let profile = msg(
        r#"{"activeProfileUpdate": {"id": {"name": "p"}, "profile": {"inboundRules": [{"action": "allow", "srcIpSetIds": ["big"]}]}}}"#,
    );
    let big = ToDataplane {
        sequence_number: 1,
        payload: Some(felix_sim::felix::to_dataplane::Payload::IpsetUpdate(
            IpSetUpdate {
                id: "big".into(),
                members: (0..MEMBERS).map(ip).collect(),
                r#type: 0,
            },
        )),
    };
    let started = Instant::now();
    send(
        &rt,
        &session,
        vec![endpoint, profile, big, msg(r#"{"inSync": {}}"#)],
    );
    let (v1, s) = control.snapshot_where("the full set", 0, |s| {
        s.ip_sets
            .first()
            .is_some_and(|set| set.members.len() == MEMBERS as usize)
    });
    let initial = started.elapsed();
    assert!(s.ip_sets[0].members.binary_search(&ip(MEMBERS - 1)).is_ok());
    let (rss_synced, _) = control.memory_kb();

    // Deltas: each adds PER_DELTA new members and removes PER_DELTA of the oldest.
    let deltas: Vec<ToDataplane> = (0..DELTAS)
        .map(|d| ToDataplane {
            sequence_number: 2 + u64::from(d),
            payload: Some(felix_sim::felix::to_dataplane::Payload::IpsetDeltaUpdate(
                IpSetDeltaUpdate {
                    id: "big".into(),
                    added_members: (0..PER_DELTA)
                        .map(|k| ip(MEMBERS + d * PER_DELTA + k))
                        .collect(),
                    removed_members: (0..PER_DELTA).map(|k| ip(d * PER_DELTA + k)).collect(),
                },
            )),
        })
        .collect();
    let started = Instant::now();
    send(&rt, &session, deltas);
    let last_added = ip(MEMBERS + DELTAS * PER_DELTA - 1);
    let last_removed = ip(DELTAS * PER_DELTA - 1);
    let (_, s) = control.snapshot_where("every delta", v1, |s| {
        let m = &s.ip_sets[0].members;
        m.binary_search(&last_added).is_ok() && m.binary_search(&last_removed).is_err()
    });
    let deltas_took = started.elapsed();
    assert_eq!(s.ip_sets[0].members.len(), MEMBERS as usize);
    assert!(s.ip_sets[0]
        .members
        .binary_search(&ip(DELTAS * PER_DELTA))
        .is_ok());
    let (rss_end, hwm) = control.memory_kb();
    let versions = control.log().matches("publishing snapshot").count();
    report(format!(
        "100k-member IP set ({} build of control): ipsetUpdate + inSync to published snapshot {:.0} ms; \
         {DELTAS} deltas of +{PER_DELTA}/-{PER_DELTA} to published snapshot {:.0} ms ({versions} versions published \
         in all); control RSS idle {} MB, in sync {} MB, after deltas {} MB, peak {} MB",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        initial.as_secs_f64() * 1000.0,
        deltas_took.as_secs_f64() * 1000.0,
        rss_idle / 1024,
        rss_synced / 1024,
        rss_end / 1024,
        hwm / 1024,
    ));
    // Bounded, generous on a shared machine with a debug build.
    assert!(initial < Duration::from_secs(30) && deltas_took < Duration::from_secs(30));
    assert!(hwm < 1024 * 1024, "control peaked at {hwm} kB");
}
