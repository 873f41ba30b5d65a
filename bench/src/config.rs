//! The configurations under test and the Envoy bootstrap of each (`bench/envoy.yaml`), for HTTP
//! requests (HTTP filters before the router) and raw TCP connections (network filters before
//! tcp_proxy).

use alp_e2e::template::{render, Scope};
use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// What protects the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Config {
    /// No authorization filter: the router alone.
    None,
    /// Envoy's native RBAC filter, the closest equivalent of the policy.
    Rbac,
    /// A proxy-wasm filter that continues every request (`bench/noop-filter`).
    Noop,
    /// Our filter (`dist/calico-alp.wasm`), fed by `control serve`.
    Alp,
    /// The same filter as a native Envoy dynamic module (`dist/libcalico_alp.so`), fed by the
    /// same `control serve`, which it polls itself over the unix socket (no Envoy cluster).
    Native,
    /// Envoy's ext_authz gRPC filter to `control ext-authz` over a unix socket.
    ExtAuthz,
}

impl Config {
    pub const ALL: [Config; 6] = [
        Config::None,
        Config::Rbac,
        Config::Noop,
        Config::Alp,
        Config::Native,
        Config::ExtAuthz,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::Rbac => "rbac",
            Config::Noop => "noop",
            Config::Alp => "alp",
            Config::Native => "native",
            Config::ExtAuthz => "ext_authz",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Config::None => "no filter",
            Config::Rbac => "native RBAC",
            Config::Noop => "no-op wasm",
            Config::Alp => "calico-alp wasm",
            Config::Native => "calico-alp native module",
            Config::ExtAuthz => "ext_authz (gRPC, unix socket)",
        }
    }

    /// Whether the configuration enforces the policy (and so depends on the rule count).
    pub fn has_policy(self) -> bool {
        matches!(
            self,
            Config::Rbac | Config::Alp | Config::Native | Config::ExtAuthz
        )
    }

    /// Whether `control serve` feeds it (our filter, either artefact).
    pub fn uses_control(self) -> bool {
        matches!(self, Config::Alp | Config::Native)
    }

    pub fn parse(s: &str) -> Result<Config, String> {
        Config::ALL
            .into_iter()
            .find(|c| c.key() == s || (s == "ext-authz" && *c == Config::ExtAuthz))
            .ok_or_else(|| {
                format!("unknown configuration {s:?} (none, rbac, noop, alp, native, ext_authz)")
            })
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// What is measured: HTTP requests (the listeners' HTTP connection manager) or raw TCP
/// connections (network filters before tcp_proxy to an echo listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Http,
    Tcp,
}

impl Layer {
    pub fn key(self) -> &'static str {
        match self {
            Layer::Http => "http",
            Layer::Tcp => "tcp",
        }
    }

    pub fn parse(s: &str) -> Result<Layer, String> {
        match s {
            "http" => Ok(Layer::Http),
            "tcp" => Ok(Layer::Tcp),
            _ => Err(format!("unknown layer {s:?} (http, tcp)")),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Where everything a bootstrap refers to is.
#[derive(Clone, Debug)]
pub struct Paths {
    pub plain_port: u16,
    pub mtls_port: u16,
    pub tcp_plain_port: u16,
    pub tcp_mtls_port: u16,
    /// The echo listener behind tcp_proxy.
    pub echo_socket: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub ca_file: PathBuf,
    pub alp_wasm: PathBuf,
    /// The native module (`Config::Native`), absolute.
    pub native_module: PathBuf,
    pub noop_wasm: PathBuf,
    pub control_socket: PathBuf,
    pub authz_socket: PathBuf,
}

fn wasm_filter(layer: Layer, name: &str, file: &Path, configuration: Option<&str>) -> Value {
    let mut config = json!({
        "name": name,
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": file.display().to_string()}}
        },
        "failure_policy": "FAIL_CLOSED"
    });
    if let Some(c) = configuration {
        config["configuration"] =
            json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": c});
    }
    let kind = match layer {
        Layer::Http => "http",
        Layer::Tcp => "network",
    };
    json!({"name": format!("envoy.filters.{kind}.wasm"), "typed_config": {
        "@type": format!("type.googleapis.com/envoy.extensions.filters.{kind}.wasm.v3.Wasm"),
        "config": config
    }})
}

/// The plugin configuration of our filter (both layers: the same control cluster and settings).
fn alp_configuration(layer: Layer) -> String {
    let filter = match layer {
        Layer::Http => "",
        Layer::Tcp => r#""filter":"network","#,
    };
    format!(
        r#"{{{filter}"control_cluster":"alp_control","control_authority":"alp-control","poll_timeout_ms":20000,"retry_interval_ms":500,"tick_ms":100}}"#
    )
}

/// The native module's filter (`envoy.filters.{http,network}.dynamic_modules`): the same
/// configuration on both layers (the filter kind comes from the Envoy filter type); it connects
/// to control's socket itself, so it needs no cluster.
fn native_filter(layer: Layer, paths: &Paths) -> Value {
    let (kind, message) = match layer {
        Layer::Http => ("http", "DynamicModuleFilter"),
        Layer::Tcp => ("network", "DynamicModuleNetworkFilter"),
    };
    let configuration = format!(
        r#"{{"control_address":"unix:{}","poll_timeout_ms":20000,"retry_interval_ms":500}}"#,
        paths.control_socket.display()
    );
    json!({"name": format!("envoy.filters.{kind}.dynamic_modules"), "typed_config": {
        "@type": format!("type.googleapis.com/envoy.extensions.filters.{kind}.dynamic_modules.v3.{message}"),
        "dynamic_module_config": {
            "module": {"local": {"filename": paths.native_module.display().to_string()}},
            "do_not_close": true
        },
        "filter_name": "calico_alp",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}
    }})
}

fn pipe_cluster(name: &str, socket: &Path, http2: bool) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket.display().to_string()}}}}]}]}
    });
    if http2 {
        c["typed_extension_protocol_options"] = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}
        }});
    }
    c
}

/// The HTTP filters of `config` (the router last) and the clusters they need.
pub fn filters_and_clusters(
    config: Config,
    paths: &Paths,
    rbac: &[Value],
) -> (Vec<Value>, Vec<Value>) {
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let (mut filters, clusters) = match config {
        Config::None => (vec![], vec![]),
        Config::Rbac => (rbac.to_vec(), vec![]),
        Config::Noop => (
            vec![wasm_filter(Layer::Http, "noop", &paths.noop_wasm, None)],
            vec![],
        ),
        Config::Alp => (
            vec![wasm_filter(
                Layer::Http,
                "calico_alp",
                &paths.alp_wasm,
                Some(&alp_configuration(Layer::Http)),
            )],
            vec![pipe_cluster("alp_control", &paths.control_socket, false)],
        ),
        Config::Native => (vec![native_filter(Layer::Http, paths)], vec![]),
        Config::ExtAuthz => (
            vec![
                json!({"name": "envoy.filters.http.ext_authz", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                    "transport_api_version": "V3",
                    "grpc_service": {"envoy_grpc": {"cluster_name": "ext_authz"}, "timeout": "1s"},
                    "failure_mode_allow": false,
                    "status_on_error": {"code": "ServiceUnavailable"}
                }}),
            ],
            vec![pipe_cluster("ext_authz", &paths.authz_socket, true)],
        ),
    };
    filters.push(router);
    (filters, clusters)
}

/// The network filters of `config` before tcp_proxy on each TCP listener (plaintext, mTLS:
/// tcp_proxy last), and the clusters they need (with the echo backend's). `rbac`: the network
/// RBAC filters ([`crate::policy::rbac_filters`] for [`Layer::Tcp`]).
pub fn network_filters_and_clusters(
    config: Config,
    paths: &Paths,
    rbac: &[Value],
) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let (filters, mut clusters) = match config {
        Config::None => (vec![], vec![]),
        Config::Rbac => (rbac.to_vec(), vec![]),
        Config::Noop => (
            vec![wasm_filter(
                Layer::Tcp,
                "noop",
                &paths.noop_wasm,
                Some(r#"{"filter":"network"}"#),
            )],
            vec![],
        ),
        Config::Alp => (
            vec![wasm_filter(
                Layer::Tcp,
                "calico_alp",
                &paths.alp_wasm,
                Some(&alp_configuration(Layer::Tcp)),
            )],
            vec![pipe_cluster("alp_control", &paths.control_socket, false)],
        ),
        Config::Native => (vec![native_filter(Layer::Tcp, paths)], vec![]),
        Config::ExtAuthz => (
            vec![
                json!({"name": "envoy.filters.network.ext_authz", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
                    "stat_prefix": "bench",
                    "transport_api_version": "V3",
                    "grpc_service": {"envoy_grpc": {"cluster_name": "ext_authz"}, "timeout": "1s"},
                    "failure_mode_allow": false
                }}),
            ],
            vec![pipe_cluster("ext_authz", &paths.authz_socket, true)],
        ),
    };
    clusters.push(pipe_cluster("echo", &paths.echo_socket, false));
    let tcp_proxy = |tls: bool| {
        let mut c = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "bench",
            "cluster": "echo"
        });
        if tls {
            // Upstream only after the handshake (what the network filter's TLS decision point
            // needs; Envoy then requires max_early_data_bytes), the same for every row.
            c["upstream_connect_mode"] = json!("ON_DOWNSTREAM_TLS_HANDSHAKE");
            c["max_early_data_bytes"] = json!(65536);
        }
        json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": c})
    };
    let mut plain = filters.clone();
    plain.push(tcp_proxy(false));
    let mut mtls = filters;
    mtls.push(tcp_proxy(true));
    (plain, mtls, clusters)
}

/// The bootstrap YAML for `config` on `layer`'s listeners. `rbac`: the RBAC filters of that layer.
pub fn bootstrap(
    template: &Path,
    layer: Layer,
    config: Config,
    paths: &Paths,
    rbac: &[Value],
) -> Result<String> {
    let text = std::fs::read_to_string(template)
        .with_context(|| format!("reading {}", template.display()))?;
    let (filters, tcp_plain, tcp_mtls, clusters) = match layer {
        Layer::Http => {
            let (f, c) = filters_and_clusters(config, paths, rbac);
            (f, vec![], vec![], c)
        }
        Layer::Tcp => {
            let (p, m, c) = network_filters_and_clusters(config, paths, rbac);
            (vec![], p, m, c)
        }
    };
    let mut scope = Scope::new()
        .var("PLAIN_PORT", paths.plain_port)
        .var("MTLS_PORT", paths.mtls_port)
        .var("TCP_PLAIN_PORT", paths.tcp_plain_port)
        .var("TCP_MTLS_PORT", paths.tcp_mtls_port)
        .var("ECHO_SOCKET", paths.echo_socket.display())
        .var("SERVER_CERT", paths.server_cert.display())
        .var("SERVER_KEY", paths.server_key.display())
        .var("CA_FILE", paths.ca_file.display())
        .var("TRUST_DOMAIN", crate::policy::TRUST_DOMAIN)
        .var("HTTP_FILTERS", Value::Array(filters))
        .var("TCP_PLAIN_FILTERS", Value::Array(tcp_plain))
        .var("TCP_MTLS_FILTERS", Value::Array(tcp_mtls))
        .var("CLUSTERS", Value::Array(clusters));
    // One block of listeners: a flag is a list of one empty item, or none.
    for l in [Layer::Http, Layer::Tcp] {
        let items = if l == layer {
            vec![Scope::new()]
        } else {
            vec![]
        };
        scope.lists.insert(l.key().to_string(), items);
    }
    render(&text, &scope).with_context(|| format!("rendering {}", template.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        let p = |s: &str| PathBuf::from(s);
        Paths {
            plain_port: 1,
            mtls_port: 2,
            tcp_plain_port: 3,
            tcp_mtls_port: 4,
            echo_socket: p("/r/echo.sock"),
            server_cert: p("/r/s.pem"),
            server_key: p("/r/s.key"),
            ca_file: p("/r/ca.pem"),
            alp_wasm: p("/d/calico-alp.wasm"),
            native_module: p("/d/libcalico_alp.so"),
            noop_wasm: p("/d/noop.wasm"),
            control_socket: p("/r/control.sock"),
            authz_socket: p("/r/authz.sock"),
        }
    }

    #[test]
    fn native_is_a_policy_configuration_fed_by_control() {
        assert_eq!(Config::parse("native"), Ok(Config::Native));
        assert!(Config::Native.has_policy() && Config::Native.uses_control());
        assert!(Config::ALL.contains(&Config::Native));
        assert_eq!(Config::Native.label(), "calico-alp native module");
    }

    #[test]
    fn the_native_module_runs_before_the_router_and_tcp_proxy_without_a_cluster() {
        let value = r#"{"control_address":"unix:/r/control.sock","poll_timeout_ms":20000,"retry_interval_ms":500}"#;
        let (filters, clusters) = filters_and_clusters(Config::Native, &paths(), &[]);
        assert!(clusters.is_empty());
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[1]["name"], "envoy.filters.http.router");
        assert_eq!(
            filters[0],
            json!({"name": "envoy.filters.http.dynamic_modules", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"module": {"local": {"filename": "/d/libcalico_alp.so"}}, "do_not_close": true},
                "filter_name": "calico_alp",
                "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
            }})
        );
        let (plain, mtls, clusters) = network_filters_and_clusters(Config::Native, &paths(), &[]);
        // Only the echo backend's cluster.
        assert_eq!(clusters.len(), 1);
        for chain in [&plain, &mtls] {
            assert_eq!(chain.len(), 2);
            assert_eq!(chain[0]["name"], "envoy.filters.network.dynamic_modules");
            assert_eq!(
                chain[0]["typed_config"]["@type"],
                "type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3.DynamicModuleNetworkFilter"
            );
            assert_eq!(chain[0]["typed_config"]["filter_config"]["value"], value);
            assert_eq!(chain[1]["name"], "envoy.filters.network.tcp_proxy");
        }
    }
}
