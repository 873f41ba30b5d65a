//! The inputs of `envoy/docker-compose.yaml`, rendered from the same template and the same
//! YAO bank material as the harness.
//!
//! Inside the containers: `/etc/alp` holds `envoy.yaml`, `certs/` and `calico-alp.wasm`, the
//! controls' `yaobank/policy.yaml` and `compose/workloads.yaml`, the clients' `demo.sh`;
//! `/run/alp` is a volume shared by Envoy and the controls for the unix sockets.
//!
//! The clients are containers with fixed addresses on the compose network (`SUBNET`), one per
//! YAO bank service account plus an outsider, so Envoy sees them as the policy expects: the
//! controls compile `envoy/yaobank/policy.yaml` with an inventory that lists the workloads at
//! those addresses (`compose_inventory`, the local stack's `envoy/yaobank/workloads.yaml` with
//! each loopback "pod IP" replaced by the container's address), and each client runs its share
//! of the local stack's demonstration (`demo_script`, written from `demo::yaobank_cases` and
//! `demo_tcp::yaobank_tcp_cases`), printing the same lines as `./local-stack.sh`.

use crate::artifacts;
use crate::certs::{self, Ca};
use crate::demo::yaobank_cases;
use crate::demo_tcp::yaobank_tcp_cases;
use crate::envoy::{BootstrapParams, PathMode, WorkloadParams};
use crate::stack::{yaobank_ip, YAOBANK};
use anyhow::{bail, Context as _, Result};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Inbound (HTTP) port of the first YAO bank workload; the others follow (local-stack uses the
/// same defaults).
pub const BASE_PORT: u16 = 15443;

/// How far above its inbound (HTTP) port a workload's raw TCP listener is.
pub const TCP_PORT_OFFSET: u16 = 10;

/// Raw TCP listener port of the first YAO bank workload; the others follow.
pub const TCP_BASE_PORT: u16 = BASE_PORT + TCP_PORT_OFFSET;

/// The compose network `yaobank` (envoy/docker-compose.yaml): every container that has an
/// address on it has a fixed one below `IP_RANGE`, the part Docker may hand out itself.
pub const SUBNET: &str = "10.210.10.0/24";

/// Where Docker allocates addresses of its own on `SUBNET` (none of the fixed ones).
pub const IP_RANGE: &str = "10.210.10.128/25";

/// Envoy's address on the compose network.
pub const ENVOY_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 210, 10, 2);

/// The compose demo's clients (services `client-<key>`): the pods of the three YAO bank
/// service accounts, then a client outside the mesh.
pub const CLIENTS: [&str; 4] = ["customer", "summary", "database", "outsider"];

/// The fixed address of client `key` (`Caller::key`) on the compose network: a YAO bank pod's
/// address, as `compose_inventory` lists it, or (`outsider`, anything else) one that no
/// workload has.
pub fn client_address(key: &str) -> Ipv4Addr {
    match key {
        "customer" => Ipv4Addr::new(10, 210, 10, 11),
        "summary" => Ipv4Addr::new(10, 210, 10, 12),
        "database" => Ipv4Addr::new(10, 210, 10, 13),
        _ => Ipv4Addr::new(10, 210, 10, 50),
    }
}

/// Bootstrap parameters for the compose topology, with `etc` and `run` standing for the
/// containers' `/etc/alp` and `/run/alp`.
pub fn compose_params(etc: &Path, run: &Path) -> BootstrapParams {
    BootstrapParams {
        admin_address: "127.0.0.1".into(),
        admin_port: 9901,
        wasm_file: etc.join("calico-alp.wasm"),
        ca_file: etc.join("certs/ca.pem"),
        trust_domain: certs::TRUST_DOMAIN.into(),
        access_log: "/dev/stdout".into(),
        path_mode: PathMode::EnvoyNormalises,
        run_dir: run.to_path_buf(),
        wasm_filter: true,
        native_module: None,
        direct_response: false,
        envoy_backend: true,
        plugin_options: String::new(),
        workloads: YAOBANK
            .iter()
            .zip(BASE_PORT..)
            .zip(TCP_BASE_PORT..)
            .map(|((w, port), tcp_port)| WorkloadParams {
                name: w.to_string(),
                listen_address: "0.0.0.0".into(),
                listen_port: port,
                tcp_port,
                server_cert: etc.join(format!("certs/server-{w}.pem")),
                server_key: etc.join(format!("certs/server-{w}.key")),
                control_socket: run.join(format!("control-{w}.sock")),
            })
            .collect(),
    }
}

/// Writes `out/envoy.yaml` (container paths), `out/certs/` (CA, server and client certificates
/// for the three service accounts), `out/workloads.yaml` (`compose_inventory`) and `out/demo.sh`
/// (`demo_script`).
pub fn prepare(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let ca = Ca::create(&out.join("certs"))?;
    for w in YAOBANK {
        ca.issue(&format!("server-{w}"), w, true)?;
        ca.issue(&format!("client-{w}"), w, false)?;
    }
    let yaml = compose_params(Path::new("/etc/alp"), Path::new("/run/alp")).render()?;
    std::fs::write(out.join("envoy.yaml"), yaml)?;
    std::fs::write(out.join("workloads.yaml"), compose_inventory()?)?;
    let script = out.join("demo.sh");
    std::fs::write(&script, demo_script())?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The inventory the compose controls compile the policy with: `envoy/yaobank/workloads.yaml`
/// with each workload's loopback "pod IP" (`yaobank_ip`) replaced by its client container's
/// address (`client_address`). Fails if the inventory does not list each address exactly once.
pub fn compose_inventory() -> Result<String> {
    let file = artifacts::yaobank_inventory();
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    // The resources without the file's own comments, which describe the loopback addresses.
    let start = text
        .find("apiVersion:")
        .with_context(|| format!("{} holds no resource", file.display()))?;
    let mut body = text[start..].to_string();
    for w in YAOBANK {
        let (local, compose) = (
            format!("\"{}/32\"", yaobank_ip(w)),
            format!("\"{}/32\"", client_address(w)),
        );
        if body.matches(&local).count() != 1 {
            bail!(
                "{} must list {local} (workload {w}) exactly once",
                file.display()
            );
        }
        body = body.replace(&local, &compose);
    }
    Ok(format!(
        "# Written by `local-stack prepare-compose` from envoy/yaobank/workloads.yaml: the YAO bank's\n\
         # workloads at the addresses of their client containers on the compose network {SUBNET}\n\
         # (envoy/docker-compose.yaml), for the controls of the compose demo.\n{body}"
    ))
}

/// Single-quotes `s` for the shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The compose clients' script: `demo.sh CALLER` makes the requests and raw TCP connections of
/// the local stack's demonstration that client `CALLER` (`CLIENTS`) makes, and prints each with
/// its outcome as `local-stack` does. Plain `sh` with `curl` and `openssl`; the environment
/// (`ENVOY`, `CERTS`, `BIND`, `PORT_<W>`, `TCP_PORT_<W>`) lets the tests run it against the
/// local stack.
pub fn demo_script() -> String {
    let mut s = String::from(DEMO_SCRIPT_HEAD);
    let port_fn = |name: &str, env: &str, base: u16| {
        let mut f = format!("{name}() {{\n  case $1 in\n");
        for (w, port) in YAOBANK.iter().zip(base..) {
            let var = format!("{env}{}", w.to_ascii_uppercase());
            let _ = writeln!(f, "    {w}) echo \"${{{var}:-{port}}}\" ;;");
        }
        f.push_str("  esac\n}\n");
        f
    };
    s.push_str(&port_fn("http_port", "PORT_", BASE_PORT));
    s.push_str(&port_fn("tcp_port", "TCP_PORT_", TCP_BASE_PORT));
    s.push_str(DEMO_SCRIPT_BODY);
    s.push_str("\n# The HTTP requests (tests/src/demo.rs).\n");
    let pod_ip = |sa: &str| IpAddr::V4(client_address(sa));
    for case in yaobank_cases() {
        let mut args: Vec<String> = vec![
            case.caller.label(),
            case.to.into(),
            case.method.into(),
            case.path.into(),
            case.expect_status.to_string(),
            case.expect_body.into(),
            case.why.into(),
        ];
        args.extend(
            case.headers(pod_ip)
                .into_iter()
                .map(|(name, value)| format!("{name}: {value}")),
        );
        let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
        let _ = writeln!(s, "http {} {}", case.caller.key(), args.join(" "));
    }
    s.push_str("\n# The raw TCP connections (tests/src/demo_tcp.rs).\n");
    for case in yaobank_tcp_cases() {
        let passes = if case.passes { "pass" } else { "close" };
        let _ = writeln!(
            s,
            "tcp {} {} {} {passes} {}",
            case.caller.key(),
            sh_quote(&case.caller.label()),
            case.to,
            sh_quote(case.why)
        );
    }
    s.push_str(DEMO_SCRIPT_TAIL);
    s
}

const DEMO_SCRIPT_HEAD: &str = r#"#!/bin/sh
# The YAO bank demonstration of ./local-stack.sh for the client containers of
# envoy/docker-compose.yaml: the HTTP requests and raw TCP connections that one client makes,
# each printed with its outcome as local-stack prints it. Written by `local-stack
# prepare-compose` from the local stack's own cases; run it again rather than editing it.
#
#   sh demo.sh CALLER   CALLER: customer, summary or database (that service account's pod, over
#                       mTLS with its certificate) or outsider (plaintext, no identity)
#
# Environment, defaults for the containers: ENVOY (the listeners' host, envoy), CERTS (ca.pem
# and client-CALLER.pem/.key, /etc/alp/certs), BIND (a source address to bind; a container has
# its own), PORT_<WORKLOAD> and TCP_PORT_<WORKLOAD> (the listeners' ports). Needs curl and
# openssl. Exit status 1 if an outcome was unexpected, 2 if Envoy never got ready.
set -u
caller=${1:?usage: demo.sh customer|summary|database|outsider}
envoy=${ENVOY:-envoy}
certs=${CERTS:-/etc/alp/certs}
bind=${BIND:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
total=0
unexpected=0

"#;

const DEMO_SCRIPT_BODY: &str = r#"
# Wait until each workload enforces its policy: a plaintext GET gets an answer that is not 503
# (its control has not synchronised yet, or the listener is not up).
for w in customer summary database; do
  tries=0
  until code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$envoy:$(http_port "$w")/") &&
        [ "$code" != 000 ] && [ "$code" != 503 ]; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
      echo "demo.sh: $w ($envoy:$(http_port "$w")) does not enforce a policy (last answer: $code)" >&2
      exit 2
    fi
    sleep 0.5
  done
done
echo "YAO bank demonstration from $caller${bind:+ ($bind)}:"

# verdict GOT WANT WHY WANTED: sets $v to the line's verdict and counts it.
verdict() {
  total=$((total + 1))
  if [ "$1" = "$2" ]; then
    v="(expected: $3)"
  else
    unexpected=$((unexpected + 1))
    v="UNEXPECTED, wanted $4"
  fi
}

# http CALLER LABEL TO METHOD PATH STATUS BODY WHY [HEADER...]
http() {
  [ "$1" = "$caller" ] || return 0
  key=$1 label=$2 to=$3 method=$4 path=$5 want="$6 $7" why=$8
  shift 8
  port=$(http_port "$to")
  n=$#
  while [ "$n" -gt 0 ]; do
    set -- "$@" -H "$1"
    shift
    n=$((n - 1))
  done
  if [ -n "$bind" ]; then set -- "$@" --interface "$bind"; fi
  if [ "$key" = outsider ]; then
    url="http://$envoy:$port$path"
  else
    set -- "$@" --cacert "$certs/ca.pem" --cert "$certs/client-$key.pem" \
      --key "$certs/client-$key.key" --connect-to "localhost:$port:$envoy:$port"
    url="https://localhost:$port$path"
  fi
  if curl -sS --path-as-is --max-time 15 --connect-timeout 10 -X "$method" -o "$tmp/body" \
      -w '%{http_code}' "$@" "$url" >"$tmp/code" 2>"$tmp/err"; then
    seen="$(cat "$tmp/code") $(cat "$tmp/body")"
  else
    seen="failed: $(cat "$tmp/err")"
  fi
  verdict "$seen" "$want" "$why" "$want"
  echo "  $label -> $to $method $path: $seen $v"
}

# tcp CALLER LABEL TO pass|close WHY: sends a line and reads what comes back (the backend echoes).
tcp() {
  [ "$1" = "$caller" ] || return 0
  key=$1 label=$2 to=$3 want=$4 why=$5
  port=$(tcp_port "$to")
  if [ "$key" = outsider ]; then
    set -- curl -sS --max-time 3
    if [ -n "$bind" ]; then set -- "$@" --interface "$bind"; fi
    set -- "$@" "telnet://$envoy:$port"
  else
    set -- timeout 10 openssl s_client -quiet -no_ign_eof -connect "$envoy:$port" \
      -servername localhost -CAfile "$certs/ca.pem" -cert "$certs/client-$key.pem" \
      -key "$certs/client-$key.key"
    if [ -n "$bind" ]; then set -- "$@" -bind "$bind:0"; fi
  fi
  { echo "hello from $label"; sleep 1; } | "$@" >"$tmp/got" 2>"$tmp/err"
  rc=$?
  echo "hello from $label" >"$tmp/sent"
  bytes=$(wc -c <"$tmp/got" | tr -d ' ')
  if [ "$(cat "$tmp/got"; echo x)" = "$(cat "$tmp/sent"; echo x)" ]; then
    seen="passed, echoed $bytes bytes"
    got=pass
  # Timed out (still open, nothing came back): curl 28, timeout 124 (GNU) or 143 (busybox).
  elif [ "$bytes" = 0 ] && [ "$rc" != 28 ] && [ "$rc" != 124 ] && [ "$rc" != 143 ]; then
    seen="closed, not a byte received"
    got=close
  else
    seen="received $bytes bytes (exit status $rc): $(head -c 200 "$tmp/got") $(head -c 200 "$tmp/err")"
    got=other
  fi
  if [ "$want" = pass ]; then wanted=passed; else wanted=closed; fi
  verdict "$got" "$want" "$why" "$wanted"
  echo "  $label -> $to raw TCP: $seen $v"
}
"#;

const DEMO_SCRIPT_TAIL: &str = r#"
echo "$caller: $((total - unexpected)) of $total outcomes as expected."
[ "$unexpected" = 0 ]
"#;
