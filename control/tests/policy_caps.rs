//! `control serve --policy` with `--max-yaml-depth` / `--max-policy-bytes`: an edit over a cap
//! is refused before parsing, with a message naming the file, the cap and the setting, and the
//! last good policy stays served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, Server, PATIENCE};

const POLICY: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: app == 'a'\n  ingress:\n    - action: Allow\n";
const WORKLOAD: &str = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: a\n  namespace: default\n  labels: {app: a}\nspec:\n  ipNetworks: [10.0.0.1/32]\n";

/// The version of the snapshot served now, if any.
fn version(addr: &str) -> Option<u64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(PATIENCE)).ok()?;
    write!(
        s,
        "GET /v1/snapshot HTTP/1.1\r\nhost: control\r\nx-alp-wait-ms: 0\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw);
    raw.lines()
        .find_map(|l| l.strip_prefix("x-alp-version: "))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_edit_over_a_cap_is_refused_and_the_last_good_policy_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("write policy");
    std::fs::write(dir.path().join("workload.yaml"), WORKLOAD).expect("write workload");
    let log = dir.path().join("control.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_control"))
            .args(["serve", "--workload", "default/a", "--policy"])
            .arg(dir.path())
            .args(["--listen", &addr, "--max-yaml-depth", "16"])
            .env("ALP_MAX_POLICY_BYTES", "1000000")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("control serve starts"),
    );
    let mut good = None;
    wait_until("a first snapshot", || {
        good = version(&addr);
        good.is_some()
    });
    let logged = |needle: &str| std::fs::read_to_string(&log).is_ok_and(|l| l.contains(needle));

    // 100 000 levels of flow sequences: refused by the pre-scan, not parsed.
    let n = 100_000;
    std::fs::write(&policy, format!("{}{}\n", "[".repeat(n), "]".repeat(n))).expect("write");
    let expected = format!(
        "policy.yaml:1: nesting depth {} exceeds the limit of 16 (raise it with --max-yaml-depth / ALP_MAX_YAML_DEPTH); not parsed",
        n + 1
    );
    wait_until("the depth refusal logged", || logged(&expected));
    wait_until("the last good snapshot kept logged", || {
        logged("keeping the last good snapshot")
    });
    assert_eq!(version(&addr), good, "the last good policy stays served");

    // Over the size cap.
    std::fs::write(&policy, format!("{POLICY}{}", "#\n".repeat(600_000))).expect("write");
    wait_until("the size refusal logged", || {
        logged("policy.yaml:0: size 1200") && logged("exceeds the limit of 1000000 bytes (raise it with --max-policy-bytes / ALP_MAX_POLICY_BYTES); not parsed")
    });
    assert_eq!(version(&addr), good, "the last good policy stays served");

    // A good edit is taken again.
    std::fs::write(&policy, POLICY.replace("Allow", "Deny")).expect("write");
    wait_until("a new snapshot", || {
        version(&addr).is_some_and(|v| Some(v) != good)
    });
    drop(server);
}
