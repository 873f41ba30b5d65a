//! Rendering `envoy/bootstrap.yaml`, validating it, and running Envoy.

use crate::artifacts;
use crate::http::{self, Response};
use crate::process::{wait_for, Proc};
use crate::template::{render, Scope};
use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How `:path` reaches the filter: what Envoy's HTTP connection manager does to it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathMode {
    /// The bootstrap's default (Istio's `DECODE_AND_MERGE_SLASHES`): `normalize_path`,
    /// `merge_slashes`, `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`: dot segments
    /// resolved, slashes merged, %2F/%5C unescaped before the filter and the upstream alike.
    EnvoyNormalises,
    /// Istio's default, `BASE`: `normalize_path` only (RFC 3986 dot segments, `\` read as `/`),
    /// no slash merging, escaped slashes kept (`KEEP_UNCHANGED`), as istiod configures every
    /// sidecar's connection managers unless `meshConfig.pathNormalization` says otherwise.
    IstioBase,
    /// No normalisation at all (local-stack `--raw-paths`, Istio `NONE`): the filter sees the
    /// client's path as sent, and its own normalisation and rewriting are all there is.
    Raw,
}

impl PathMode {
    /// (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`).
    pub fn hcm_settings(self) -> (bool, bool, &'static str) {
        match self {
            PathMode::EnvoyNormalises => (true, true, "UNESCAPE_AND_FORWARD"),
            PathMode::IstioBase => (true, false, "KEEP_UNCHANGED"),
            PathMode::Raw => (false, false, "KEEP_UNCHANGED"),
        }
    }
}

/// One protected workload in the rendered bootstrap.
#[derive(Clone, Debug)]
pub struct WorkloadParams {
    pub name: String,
    pub listen_address: String,
    pub listen_port: u16,
    /// The raw TCP listener `tcp_<name>` (network filter -> tcp_proxy), on `listen_address`.
    pub tcp_port: u16,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub control_socket: PathBuf,
}

/// Everything the template needs.
#[derive(Clone, Debug)]
pub struct BootstrapParams {
    pub admin_address: String,
    pub admin_port: u16,
    pub wasm_file: PathBuf,
    pub ca_file: PathBuf,
    pub trust_domain: String,
    pub access_log: PathBuf,
    pub path_mode: PathMode,
    pub run_dir: PathBuf,
    pub workloads: Vec<WorkloadParams>,
    /// Include the wasm filter (false only for the benchmark's baseline).
    pub wasm_filter: bool,
    /// The native module (`libcalico_alp.so`) in place of the wasm filter.
    pub native_module: Option<PathBuf>,
    /// The inbound route answers itself instead of proxying to the backend (benchmark).
    pub direct_response: bool,
    /// Envoy serves each workload's backend sockets itself (HTTP: a direct response echoing the
    /// path; TCP: the echo filter); false: something else listens there (the harness's
    /// `backend::EchoBackend` and `tcp_backend::TcpBackend`).
    pub envoy_backend: bool,
    /// Extra members of every filter's plugin configuration JSON object, e.g.
    /// `"enforce":false,"decision_log":"all"` (empty: the filter's defaults).
    pub plugin_options: String,
}

impl BootstrapParams {
    pub fn scope(&self) -> Scope {
        let (normalize, merge, escaped) = self.path_mode.hcm_settings();
        let mut scope = Scope::new()
            .var("ADMIN_ADDRESS", &self.admin_address)
            .var("ADMIN_PORT", self.admin_port)
            .var("WASM_FILE", self.wasm_file.display())
            .var(
                "NATIVE_MODULE",
                self.native_module
                    .as_deref()
                    .unwrap_or(Path::new("/nonexistent/libcalico_alp.so"))
                    .display(),
            )
            .var(
                "DECISION_STATE",
                match self.native_module {
                    Some(_) => "calico.alp_decision",
                    None => "wasm.alp_decision",
                },
            )
            .var("CA_FILE", self.ca_file.display())
            .var("TRUST_DOMAIN", &self.trust_domain)
            .var("ACCESS_LOG", self.access_log.display())
            .var("NORMALIZE_PATH", normalize)
            .var("MERGE_SLASHES", merge)
            .var("ESCAPED_SLASHES", escaped)
            .var("RUN_DIR", self.run_dir.display())
            .var("PLUGIN_OPTIONS", plugin_options(&self.plugin_options));
        scope.lists.insert("workload".into(), vec![]);
        let flag = |on: bool| if on { vec![Scope::new()] } else { vec![] };
        scope.lists.insert(
            "wasm_filter".into(),
            flag(self.wasm_filter && self.native_module.is_none()),
        );
        scope
            .lists
            .insert("native_filter".into(), flag(self.native_module.is_some()));
        scope
            .lists
            .insert("upstream_route".into(), flag(!self.direct_response));
        scope
            .lists
            .insert("direct_route".into(), flag(self.direct_response));
        scope
            .lists
            .insert("envoy_backend".into(), flag(self.envoy_backend));
        for w in &self.workloads {
            scope = scope.item(
                "workload",
                Scope::new()
                    .var("NAME", &w.name)
                    .var("LISTEN_ADDRESS", &w.listen_address)
                    .var("LISTEN_PORT", w.listen_port)
                    .var("TCP_PORT", w.tcp_port)
                    .var("SERVER_CERT", w.server_cert.display())
                    .var("SERVER_KEY", w.server_key.display())
                    .var("CONTROL_SOCKET", w.control_socket.display()),
            );
        }
        scope
    }

    /// The bootstrap YAML for these parameters.
    pub fn render(&self) -> Result<String> {
        let template_path = artifacts::bootstrap_template();
        let template = std::fs::read_to_string(&template_path)
            .with_context(|| format!("reading {}", template_path.display()))?;
        render(&template, &self.scope())
            .with_context(|| format!("rendering {}", template_path.display()))
    }
}

/// `,<members>` for the template's plugin configuration (inside a YAML single-quoted string,
/// so `'` is doubled); empty stays empty.
fn plugin_options(members: &str) -> String {
    let members = members.trim().trim_start_matches(',');
    if members.is_empty() {
        String::new()
    } else {
        format!(",{}", members.replace('\'', "''"))
    }
}

/// `envoy --mode validate -c CONFIG`: Ok, or the error with Envoy's output.
pub fn validate(envoy: &Path, config: &Path) -> Result<()> {
    let out = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(config)
        .output()
        .with_context(|| format!("running {} --mode validate", envoy.display()))?;
    if !out.status.success() {
        bail!(
            "envoy --mode validate -c {} failed ({}):\n{}{}",
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A running Envoy and its admin interface.
pub struct Envoy {
    pub proc: Proc,
    pub admin: SocketAddr,
    /// Listener name -> bound address, read from the admin interface once ready.
    pub listeners: BTreeMap<String, SocketAddr>,
}

impl Envoy {
    /// Starts Envoy on `config` (detached; `--use-dynamic-base-id` so instances never share
    /// hot-restart shared memory) and waits until its admin says LIVE.
    /// `wrapper` is a command Envoy runs under (e.g. `taskset -c 0`), usually empty.
    pub fn start(
        envoy: &Path,
        wrapper: &[String],
        config: &Path,
        run_dir: &Path,
        concurrency: u32,
        ready_timeout: Duration,
    ) -> Result<Self> {
        let admin_file = run_dir.join("envoy-admin-address");
        let _ = std::fs::remove_file(&admin_file);
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(envoy);
                c
            }
            None => Command::new(envoy),
        };
        cmd.arg("-c")
            .arg(config)
            .args(["--concurrency", &concurrency.to_string()])
            .arg("--use-dynamic-base-id")
            .arg("--base-id-path")
            .arg(run_dir.join("envoy-base-id"))
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(["--file-flush-interval-msec", "200", "-l", "info"]);
        let mut proc = Proc::spawn("envoy", cmd, &run_dir.join("envoy.log"))?;
        let admin = wait_for(ready_timeout, Duration::from_millis(50), || {
            if proc.exited().is_some() {
                return Some(None);
            }
            let text = std::fs::read_to_string(&admin_file).ok()?;
            text.trim().parse::<SocketAddr>().ok().map(Some)
        })
        .flatten();
        let Some(admin) = admin else {
            bail!(
                "Envoy did not start (no admin address after {ready_timeout:?}); log {}:\n{}",
                proc.log.display(),
                proc.log_tail(40)
            );
        };
        let live = wait_for(ready_timeout, Duration::from_millis(50), || {
            if proc.exited().is_some() {
                return Some(false);
            }
            http::get_once(admin, None, "/ready")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| true)
        });
        if live != Some(true) {
            bail!(
                "Envoy did not become ready in {ready_timeout:?}; log {}:\n{}",
                proc.log.display(),
                proc.log_tail(40)
            );
        }
        let mut envoy = Envoy {
            proc,
            admin,
            listeners: BTreeMap::new(),
        };
        envoy.listeners = envoy.read_listeners()?;
        Ok(envoy)
    }

    /// GET on the admin interface.
    pub fn admin_get(&self, path: &str) -> Result<Response> {
        http::get_once(self.admin, None, path)
    }

    fn read_listeners(&self) -> Result<BTreeMap<String, SocketAddr>> {
        let resp = self.admin_get("/listeners?format=json")?;
        let v: serde_json::Value = serde_json::from_str(&resp.body).context("admin /listeners")?;
        let mut out = BTreeMap::new();
        for l in v["listener_statuses"].as_array().into_iter().flatten() {
            let sa = &l["local_address"]["socket_address"];
            if let (Some(name), Some(addr), Some(port)) = (
                l["name"].as_str(),
                sa["address"].as_str(),
                sa["port_value"].as_u64(),
            ) {
                out.insert(name.to_string(), format!("{addr}:{port}").parse()?);
            }
        }
        Ok(out)
    }

    /// The counter or gauge `name` from /stats (None if absent).
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let resp = self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))?;
        Ok(resp
            .body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok()))
    }

    /// Per-worker active connection gauges of listener `listener` (its stat_prefix, which the
    /// bootstrap sets to its name; index = worker).
    pub fn worker_connections(&self, listener: &str, concurrency: u32) -> Result<Vec<u64>> {
        self.worker_stats(listener, "downstream_cx_active", concurrency)
    }

    /// Per-worker values of listener `listener`'s stat `stat` (`downstream_cx_total`, ...;
    /// index = worker, 0 when absent).
    pub fn worker_stats(&self, listener: &str, stat: &str, concurrency: u32) -> Result<Vec<u64>> {
        (0..concurrency)
            .map(|w| {
                self.stat(&format!("listener.{listener}.worker_{w}.{stat}"))
                    .map(|v| v.unwrap_or(0))
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| anyhow!("reading worker stats: {e}"))
    }
}
