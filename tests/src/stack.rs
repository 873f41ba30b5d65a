//! A whole local stack: certificates, one Envoy protecting N workloads, one `control serve` per
//! workload. Everything lives in a fresh run directory and is stopped when the `Stack` drops.

use crate::artifacts;
use crate::backend::EchoBackend;
use crate::certs::{self, Ca, CertFiles};
use crate::client::{self, Outcome, Request, Transport};
use crate::control::{self, Control};
use crate::envoy::{BootstrapParams, Envoy, PathMode, WorkloadParams};
use crate::process::wait_for;
use crate::tcp_backend::TcpBackend;
use crate::tcp_client::TcpTransport;
use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a workload's control gets its Felix messages.
#[derive(Clone, Debug)]
pub enum Updates {
    /// Use this file where it is (edits take effect: local-stack `--updates FILE`).
    File(PathBuf),
    /// Copy this file into the run directory (so a test may rewrite its copy).
    CopyOf(PathBuf),
    /// Write these messages into the run directory.
    Messages(Vec<Value>),
    /// No file: control follows the Policy Sync API on this Unix socket (`--felix-socket`),
    /// served by a test Felix (`felix-sim`) the test runs. `wait_synced` does not wait for it.
    FelixSocket(PathBuf),
    /// Calico v3 YAML files or directories, compiled by control for `workload` (NS/NAME).
    Policy {
        paths: Vec<PathBuf>,
        workload: String,
    },
}

/// One workload to protect.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub name: String,
    pub updates: Updates,
    /// Start its control (false: the filter has nowhere to fetch from).
    pub start_control: bool,
    /// Inbound listener port (0: any free port).
    pub port: u16,
    /// Raw TCP listener port (0: any free port).
    pub tcp_port: u16,
    /// What the harness's TCP backend sends first on each connection (`StackOptions::
    /// echo_backend`; empty: nothing, the client speaks first).
    pub tcp_greeting: Vec<u8>,
}

impl WorkloadSpec {
    pub fn new(name: &str, updates: Updates) -> Self {
        WorkloadSpec {
            name: name.into(),
            updates,
            start_control: true,
            port: 0,
            tcp_port: 0,
            tcp_greeting: vec![],
        }
    }

    /// The harness's TCP backend of this workload speaks first: it sends `greeting` on every
    /// connection it accepts (a server-first protocol such as MySQL or SMTP).
    pub fn server_first(mut self, greeting: &str) -> Self {
        self.tcp_greeting = greeting.as_bytes().to_vec();
        self
    }
}

/// Which HTTP filter protects the inbound listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// The Calico application layer policy module: the artefact `$ALP_ARTEFACT` names
    /// (`artifacts::wasm()`, or the native module `artifacts::native_module()`).
    Alp,
    /// Another proxy-wasm module at this path (the benchmark's no-op filter).
    Module(PathBuf),
    /// No wasm filter at all (the benchmark's baseline).
    Off,
}

/// Stack options; `Default` is what the tests use.
#[derive(Clone, Debug)]
pub struct StackOptions {
    pub workloads: Vec<WorkloadSpec>,
    pub concurrency: u32,
    pub path_mode: PathMode,
    pub listen_address: String,
    /// Wait until every workload with an in-sync control has its first snapshot in Envoy.
    pub wait_synced: bool,
    pub ready_timeout: Duration,
    /// Extra arguments for every `control serve`.
    pub control_args: Vec<String>,
    pub filter: Filter,
    /// Which artefact `Filter::Alp` is: the wasm module or the native module (default:
    /// `$ALP_ARTEFACT`, see `artifacts::Artefact`).
    pub artefact: artifacts::Artefact,
    /// A command Envoy runs under (e.g. `taskset -c 0`).
    pub envoy_wrapper: Vec<String>,
    /// Envoy's access log (default: `access.log` in the run directory).
    pub access_log: Option<PathBuf>,
    /// Inbound listeners answer themselves instead of proxying to their backend (benchmark).
    pub direct_response: bool,
    /// Extra members of the filter's plugin configuration (`BootstrapParams::plugin_options`).
    pub plugin_options: String,
    /// Each workload's upstreams are the harness's, which record what they received: HTTP an
    /// `EchoBackend`, raw TCP a `TcpBackend` (greeting `WorkloadSpec::tcp_greeting`), instead of
    /// Envoy's own direct-response and echo listeners.
    pub echo_backend: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            workloads: vec![],
            concurrency: 2,
            path_mode: PathMode::EnvoyNormalises,
            listen_address: "127.0.0.1".into(),
            wait_synced: true,
            ready_timeout: Duration::from_secs(90),
            // control's defaults, as a user runs it.
            control_args: vec![],
            filter: Filter::Alp,
            artefact: artifacts::Artefact::from_env(),
            envoy_wrapper: vec![],
            access_log: None,
            direct_response: false,
            plugin_options: String::new(),
            echo_backend: false,
        }
    }
}

/// A protected workload of a running stack.
pub struct Workload {
    pub name: String,
    pub addr: SocketAddr,
    /// The raw TCP listener `tcp_<name>`.
    pub tcp_addr: SocketAddr,
    /// The updates file (the Felix socket for `Updates::FelixSocket`).
    pub updates: PathBuf,
    /// What its control is started with.
    pub source: control::Source,
    pub control_socket: PathBuf,
    pub server_cert: CertFiles,
}

/// A fresh directory under the system temp dir, removed on drop unless a panic is unwinding or
/// `ALP_E2E_KEEP` is set (then its path is printed, for the logs in it).
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(prefix: &str) -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("ALP_E2E_KEEP").is_some() {
            eprintln!(
                "kept run directory (logs, configs, certificates): {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The running stack. Field order is drop order: Envoy stops first, then the controls, then the
/// run directory goes.
pub struct Stack {
    pub envoy: Envoy,
    controls: BTreeMap<String, Control>,
    backends: BTreeMap<String, EchoBackend>,
    tcp_backends: BTreeMap<String, TcpBackend>,
    pub workloads: Vec<Workload>,
    pub ca: Ca,
    identities: Mutex<BTreeMap<String, CertFiles>>,
    pub concurrency: u32,
    control_binary: PathBuf,
    envoy_binary: PathBuf,
    envoy_wrapper: Vec<String>,
    ready_timeout: Duration,
    control_args: Vec<String>,
    pub config_file: PathBuf,
    /// Envoy's access log (`StackOptions::access_log`, or `access.log` in the run directory).
    pub access_log: PathBuf,
    pub dir: RunDir,
}

impl Stack {
    /// Creates certificates, renders the bootstrap, starts the controls and Envoy, and (by
    /// default) waits until each in-sync workload enforces its first snapshot.
    pub fn start(opts: StackOptions) -> Result<Stack> {
        let envoy_bin = artifacts::envoy()?;
        let native = opts.filter == Filter::Alp && opts.artefact == artifacts::Artefact::Native;
        let native_module = if native {
            Some(artifacts::native_module()?)
        } else {
            None
        };
        let wasm = match &opts.filter {
            Filter::Alp if native => PathBuf::from("/nonexistent/no-filter.wasm"),
            Filter::Alp => artifacts::wasm()?,
            Filter::Module(p) => p.clone(),
            Filter::Off => PathBuf::from("/nonexistent/no-filter.wasm"),
        };
        let control_binary = artifacts::control()?;
        artifacts::require_curl()?;
        if opts.workloads.is_empty() {
            bail!("a stack needs at least one workload");
        }
        let dir = RunDir::create("alp-e2e")?;
        let run = dir.path.clone();
        let ca = Ca::create(&run.join("certs"))?;
        let access_log = opts
            .access_log
            .clone()
            .unwrap_or_else(|| run.join("access.log"));

        let mut params = BootstrapParams {
            admin_address: "127.0.0.1".into(),
            admin_port: 0,
            wasm_file: wasm,
            ca_file: ca.cert_file.clone(),
            trust_domain: certs::TRUST_DOMAIN.into(),
            access_log: access_log.clone(),
            path_mode: opts.path_mode,
            run_dir: run.clone(),
            workloads: vec![],
            wasm_filter: opts.filter != Filter::Off,
            native_module,
            direct_response: opts.direct_response,
            envoy_backend: !opts.echo_backend,
            plugin_options: opts.plugin_options.clone(),
        };
        let mut pending = vec![];
        for spec in &opts.workloads {
            let server_cert = ca.issue(&format!("server-{}", spec.name), &spec.name, true)?;
            let updates = match &spec.updates {
                Updates::File(p) => {
                    let p = std::fs::canonicalize(p)
                        .with_context(|| format!("updates file {}", p.display()))?;
                    p
                }
                Updates::CopyOf(src) => {
                    let dst = run.join(format!("updates-{}.jsonl", spec.name));
                    std::fs::copy(src, &dst)
                        .with_context(|| format!("copying {}", src.display()))?;
                    dst
                }
                Updates::Messages(msgs) => {
                    let dst = run.join(format!("updates-{}.jsonl", spec.name));
                    crate::policy::write_atomic(&dst, msgs)?;
                    dst
                }
                Updates::FelixSocket(p) => p.clone(),
                Updates::Policy { paths, .. } => paths.first().cloned().unwrap_or_default(),
            };
            let source = match &spec.updates {
                Updates::FelixSocket(_) => control::Source::FelixSocket(updates.clone()),
                Updates::Policy { paths, workload } => control::Source::Policy {
                    paths: paths.clone(),
                    workload: workload.clone(),
                },
                _ => control::Source::Updates(updates.clone()),
            };
            let control_socket = run.join(format!("control-{}.sock", spec.name));
            params.workloads.push(WorkloadParams {
                name: spec.name.clone(),
                listen_address: opts.listen_address.clone(),
                listen_port: spec.port,
                tcp_port: spec.tcp_port,
                server_cert: server_cert.cert.clone(),
                server_key: server_cert.key.clone(),
                control_socket: control_socket.clone(),
            });
            pending.push((spec.clone(), updates, source, control_socket, server_cert));
        }
        let config_file = run.join("envoy.yaml");
        std::fs::write(&config_file, params.render()?)?;

        let mut controls = BTreeMap::new();
        for (spec, _, source, socket, _) in &pending {
            if spec.start_control {
                let log = run.join(format!("control-{}.log", spec.name));
                let c = Control::start(
                    &control_binary,
                    &spec.name,
                    source,
                    socket,
                    &opts.control_args,
                    &log,
                    opts.ready_timeout,
                )?;
                controls.insert(spec.name.clone(), c);
            }
        }
        let (mut backends, mut tcp_backends) = (BTreeMap::new(), BTreeMap::new());
        if opts.echo_backend {
            for spec in &opts.workloads {
                // The sockets the bootstrap's clusters backend_<name> and backend_tcp_<name>
                // point at.
                let socket = run.join(format!("backend-{}.sock", spec.name));
                backends.insert(spec.name.clone(), EchoBackend::start(&socket)?);
                let socket = run.join(format!("backend-tcp-{}.sock", spec.name));
                let tcp = TcpBackend::start(&socket, &spec.tcp_greeting)?;
                tcp_backends.insert(spec.name.clone(), tcp);
            }
        }
        let envoy = Envoy::start(
            &envoy_bin,
            &opts.envoy_wrapper,
            &config_file,
            &run,
            opts.concurrency,
            opts.ready_timeout,
        )?;
        let mut workloads = vec![];
        for (spec, updates, source, control_socket, server_cert) in pending {
            let (addr, tcp_addr) = workload_addrs(&envoy, &spec.name)?;
            workloads.push(Workload {
                name: spec.name,
                addr,
                tcp_addr,
                updates,
                source,
                control_socket,
                server_cert,
            });
        }
        let stack = Stack {
            envoy,
            controls,
            backends,
            tcp_backends,
            workloads,
            ca,
            identities: Mutex::new(BTreeMap::new()),
            concurrency: opts.concurrency,
            control_binary,
            envoy_binary: envoy_bin,
            envoy_wrapper: opts.envoy_wrapper.clone(),
            ready_timeout: opts.ready_timeout,
            control_args: opts.control_args.clone(),
            config_file,
            access_log,
            dir,
        };
        if opts.wait_synced {
            for w in &stack.workloads {
                let in_sync = match &w.source {
                    // The YAML source is in sync from its first good load.
                    control::Source::Policy { .. } => true,
                    control::Source::FelixSocket(_) => false,
                    control::Source::Updates(p) => std::fs::read_to_string(p)
                        .map(|t| t.contains("inSync") || t.contains("in_sync"))
                        .unwrap_or(false),
                };
                if stack.controls.contains_key(&w.name) && in_sync {
                    stack.wait_synced(&w.name, opts.ready_timeout)?;
                }
            }
        }
        Ok(stack)
    }

    pub fn workload(&self, name: &str) -> &Workload {
        self.workloads
            .iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("no workload {name} in this stack"))
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.workload(name).addr
    }

    /// Workload `name`'s raw TCP listener (`tcp_<name>`: network filter, tcp_proxy).
    pub fn tcp_addr(&self, name: &str) -> SocketAddr {
        self.workload(name).tcp_addr
    }

    /// Workload `name`'s TCP backend (`StackOptions::echo_backend`).
    pub fn tcp_backend(&self, name: &str) -> &TcpBackend {
        self.tcp_backends.get(name).unwrap_or_else(|| {
            panic!("workload {name} has no TCP backend (StackOptions::echo_backend)")
        })
    }

    /// Workload `name`'s echo backend (`StackOptions::echo_backend`).
    pub fn backend(&self, name: &str) -> &EchoBackend {
        self.backends.get(name).unwrap_or_else(|| {
            panic!("workload {name} has no echo backend (StackOptions::echo_backend)")
        })
    }

    /// The client certificate of service account `sa` (issued on first use).
    pub fn identity(&self, sa: &str) -> Result<CertFiles> {
        let mut ids = self
            .identities
            .lock()
            .map_err(|_| anyhow!("identity cache poisoned"))?;
        if let Some(c) = ids.get(sa) {
            return Ok(c.clone());
        }
        let c = self.ca.issue(&format!("client-{sa}"), sa, false)?;
        ids.insert(sa.to_string(), c.clone());
        Ok(c)
    }

    /// mTLS as service account `sa`.
    pub fn mtls(&self, sa: &str) -> Result<Transport> {
        Ok(Transport::Tls {
            ca: self.ca.cert_file.clone(),
            client: Some(self.identity(sa)?),
        })
    }

    /// TLS with an arbitrary client certificate.
    pub fn tls_with(&self, client: Option<CertFiles>) -> Transport {
        Transport::Tls {
            ca: self.ca.cert_file.clone(),
            client,
        }
    }

    /// Raw TCP over mTLS as service account `sa` (for `tcp_client`).
    pub fn tcp_mtls(&self, sa: &str) -> Result<TcpTransport> {
        self.tcp_tls_with(&self.identity(sa)?)
    }

    /// Raw TCP over TLS presenting an arbitrary client certificate.
    pub fn tcp_tls_with(&self, client: &CertFiles) -> Result<TcpTransport> {
        Ok(TcpTransport::Tls(crate::tls::client_config(
            &self.ca.cert_file,
            client,
        )?))
    }

    /// Sends `req` to workload `name`'s listener.
    pub fn send(&self, name: &str, req: &Request) -> Result<Outcome> {
        client::send(self.addr(name), req)
    }

    /// Waits until workload `name` no longer answers `503 policy not synchronised`.
    pub fn wait_synced(&self, name: &str, timeout: Duration) -> Result<()> {
        let addr = self.addr(name);
        let mut last = String::new();
        let ok = wait_for(
            timeout,
            Duration::from_millis(50),
            || match crate::http::get_once(addr, None, "/") {
                Ok(r) if r.status == 503 && r.body.trim() == "policy not synchronised" => {
                    last = r.summary();
                    None
                }
                Ok(_) => Some(()),
                Err(e) => {
                    last = format!("{e:#}");
                    None
                }
            },
        );
        if ok.is_none() {
            bail!(
                "{name} did not enforce a snapshot within {timeout:?} (last: {last}); {}",
                self.diagnostics(name)
            );
        }
        Ok(())
    }

    /// Logs worth reading when something went wrong with workload `name`.
    pub fn diagnostics(&self, name: &str) -> String {
        let control = self
            .controls
            .get(name)
            .map(|c| c.proc.log_tail(15))
            .unwrap_or_else(|| "(not running)".into());
        format!(
            "run dir {}\n--- control-{name} log ---\n{control}\n--- envoy log ---\n{}",
            self.dir.path.display(),
            self.envoy.proc.log_tail(25)
        )
    }

    /// Kills workload `name`'s control with SIGKILL (a crash, not a shutdown).
    pub fn kill_control(&mut self, name: &str) {
        if let Some(mut c) = self.controls.remove(name) {
            c.proc.kill_now();
        }
    }

    /// (Re)starts workload `name`'s control on the same socket and updates file.
    pub fn start_control(&mut self, name: &str, timeout: Duration) -> Result<()> {
        self.kill_control(name);
        let (source, socket) = {
            let w = self.workload(name);
            (w.source.clone(), w.control_socket.clone())
        };
        let log = self.dir.path.join(format!("control-{name}.log"));
        let c = Control::start(
            &self.control_binary,
            name,
            &source,
            &socket,
            &self.control_args,
            &log,
            timeout,
        )?;
        self.controls.insert(name.to_string(), c);
        Ok(())
    }

    /// The control of workload `name`, if running.
    pub fn control(&mut self, name: &str) -> Option<&mut Control> {
        self.controls.get_mut(name)
    }

    /// Rewrites workload `name`'s updates file atomically.
    pub fn write_updates(&self, name: &str, msgs: &[Value]) -> Result<()> {
        crate::policy::write_atomic(&self.workload(name).updates, msgs)
    }

    /// Sends requests until `pred` holds for the outcome or `timeout` passes; the last outcome.
    pub fn eventually(
        &self,
        name: &str,
        req: &Request,
        timeout: Duration,
        pred: impl Fn(&Outcome) -> bool,
    ) -> Result<Outcome> {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.send(name, req)?;
            if pred(&o) || Instant::now() >= deadline {
                return Ok(o);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Envoy and starts a new one on the same config (shared data starts empty; the
    /// controls keep running). Listener addresses are read again.
    pub fn restart_envoy(&mut self) -> Result<()> {
        self.envoy.proc.stop(Duration::from_secs(5));
        let envoy = Envoy::start(
            &self.envoy_binary,
            &self.envoy_wrapper,
            &self.config_file,
            &self.dir.path,
            self.concurrency,
            self.ready_timeout,
        )?;
        for w in &mut self.workloads {
            (w.addr, w.tcp_addr) = workload_addrs(&envoy, &w.name)?;
        }
        self.envoy = envoy;
        Ok(())
    }

    pub fn run_dir(&self) -> &Path {
        &self.dir.path
    }
}

/// The bound addresses of workload `name`'s listeners: (`inbound_<name>`, `tcp_<name>`).
fn workload_addrs(envoy: &Envoy, name: &str) -> Result<(SocketAddr, SocketAddr)> {
    let addr = |listener: String| {
        envoy
            .listeners
            .get(&listener)
            .copied()
            .ok_or_else(|| anyhow!("Envoy has no listener {listener}"))
    };
    Ok((
        addr(format!("inbound_{name}"))?,
        addr(format!("tcp_{name}"))?,
    ))
}

/// The loopback "pod IP" of each YAO bank workload (the source IPs its clients bind to; the
/// policy's IP sets hold them).
pub fn yaobank_ip(workload: &str) -> IpAddr {
    match workload {
        "customer" => [127, 0, 10, 1].into(),
        "summary" => [127, 0, 10, 2].into(),
        "database" => [127, 0, 10, 3].into(),
        _ => [127, 0, 0, 1].into(),
    }
}

/// The YAO bank workloads, in the tutorial's order.
pub const YAOBANK: [&str; 3] = ["customer", "summary", "database"];

/// Stack options for the YAO bank from the project's own Calico policy YAML
/// (`envoy/yaobank/policy.yaml`) and workload inventory (`envoy/yaobank/workloads.yaml`),
/// compiled by control for each workload (`--policy ... --workload default/NAME`): what
/// `./local-stack.sh` runs.
pub fn yaobank_yaml_options() -> StackOptions {
    yaobank_policy_options(&artifacts::yaobank_policy())
}

/// The same with the tutorial's own Calico YAML (`../shared/examples/yaobank`) instead of the
/// project's policy, for the tests that compare the two; `None` when it is not beside the
/// project.
pub fn yaobank_tutorial_options() -> Option<StackOptions> {
    Some(yaobank_policy_options(&artifacts::yaobank_tutorial()?))
}

/// The YAO bank's three workloads, each with a control compiling `policy` (a file or directory)
/// and the project's inventory.
fn yaobank_policy_options(policy: &Path) -> StackOptions {
    let inventory = artifacts::yaobank_inventory();
    StackOptions {
        workloads: YAOBANK
            .iter()
            .map(|w| {
                let updates = Updates::Policy {
                    paths: vec![policy.to_path_buf(), inventory.clone()],
                    workload: format!("default/{w}"),
                };
                WorkloadSpec::new(w, updates)
            })
            .collect(),
        ..StackOptions::default()
    }
}

/// Stack options for the YAO bank: three workloads with `envoy/yaobank/*.jsonl` (Felix's updates
/// for the tutorial, written by hand), copied so a test may change them.
pub fn yaobank_options() -> StackOptions {
    StackOptions {
        workloads: YAOBANK
            .iter()
            .map(|w| WorkloadSpec::new(w, Updates::CopyOf(artifacts::yaobank_updates(w))))
            .collect(),
        ..StackOptions::default()
    }
}
