//! The inputs of `envoy/docker-compose.yaml`, rendered from the same template as the harness.
//!
//! Inside the containers: `/etc/alp` holds `envoy.yaml`, `certs/` and `calico-alp.wasm`;
//! `/run/alp` is a volume shared by Envoy and the controls for the unix sockets.

use crate::certs::{self, Ca};
use crate::envoy::{BootstrapParams, PathMode, WorkloadParams};
use crate::stack::YAOBANK;
use anyhow::Result;
use std::path::Path;

/// Inbound (HTTP) port of the first YAO bank workload; the others follow (local-stack uses the
/// same defaults).
pub const BASE_PORT: u16 = 15443;

/// How far above its inbound (HTTP) port a workload's raw TCP listener is.
pub const TCP_PORT_OFFSET: u16 = 10;

/// Raw TCP listener port of the first YAO bank workload; the others follow.
pub const TCP_BASE_PORT: u16 = BASE_PORT + TCP_PORT_OFFSET;

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

/// Writes `out/envoy.yaml` (container paths) and `out/certs/` (CA, server and client
/// certificates for the three service accounts).
pub fn prepare(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let ca = Ca::create(&out.join("certs"))?;
    for w in YAOBANK {
        ca.issue(&format!("server-{w}"), w, true)?;
        ca.issue(&format!("client-{w}"), w, false)?;
    }
    let yaml = compose_params(Path::new("/etc/alp"), Path::new("/run/alp")).render()?;
    std::fs::write(out.join("envoy.yaml"), yaml)?;
    Ok(())
}
