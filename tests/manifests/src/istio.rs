//! The Envoy configuration Istio produces for an enforced pod's inbound traffic, from our Istio
//! resources, as a static bootstrap a real Envoy can validate and run.
//!
//! What is reproduced, and how Istio does it:
//! * two inbound filter chains like those of Istio's `virtualInbound` listener under STRICT
//!   mTLS, each TLS requiring a client certificate from the mesh CA (SPIFFE URI SAN):
//!   - an HTTP port ([`HTTP_PORT`]): an HTTP connection manager with Istio's inbound settings
//!     (`use_remote_address: false`, client cert details forwarded, path normalisation as
//!     `meshConfig.pathNormalization` asks, mapped to the connection manager's settings as
//!     istiod maps it: [`path_normalization`]) and a router; the application is a direct
//!     response;
//!   - a TCP port ([`TCP_PORT`], a Service port of protocol `tcp`): `tcp_proxy` to the cluster
//!     `inbound|5432||` (Istio's defaults: IMMEDIATE upstream connection), whose endpoint is the
//!     pod's TCP application (a Unix socket here).
//!
//!   Istio puts both chains in one listener and tells them apart by the original destination
//!   port (iptables redirect, `original_dst`); here each chain is a listener of its own
//!   ([`INBOUND_LISTENER`], [`TCP_LISTENER`]) on a port of its own, which changes nothing in
//!   the chains. Istio's own proxy extensions (metadata exchange, stats) are not in upstream
//!   Envoy and are left out;
//! * EnvoyFilter patches, applied after the WasmPlugins as istiod applies them: CLUSTER ADD
//!   (SIDECAR_OUTBOUND), NETWORK_FILTER MERGE (proto merge: fields set in the patch replace,
//!   lists append) and INSERT_BEFORE on the inbound filters of a name (the HTTP connection
//!   manager, `tcp_proxy`), in every inbound chain that has one, HTTP_FILTER INSERT_BEFORE the
//!   router, EXTENSION_CONFIG ADD. Any other patch, or a match on anything but the context and
//!   the filter's name, is an error here, so a new kind of patch needs its emulation first; so
//!   is a patch that matches no filter;
//! * a WasmPlugin becomes the wasm filter istiod generates: `name` and plugin name
//!   `<namespace>.<name>`, `pluginConfig` as a JSON StringValue, runtime V8, the failure policy
//!   mapped from `failStrategy`, the module as a remote data source, no `vm_id` (istiod sets
//!   none; the CRD has no field for it). `type: HTTP` (mode SERVER, phase AUTHZ): before the
//!   router. `type: NETWORK`: in every inbound chain its `match` selects (mode, ports; no ports
//!   is every port), before `tcp_proxy` on a TCP chain and before the HTTP connection manager
//!   on an HTTP chain, as istiod does;
//! * istio-agent's part: it downloads the module, checks its sha256 and hands Envoy a local
//!   file. Here the "downloaded" module is `dist/calico-alp.wasm` and the checksum in the
//!   resource must be its sha256 (https:// URLs), or the agent would refuse it. A module the
//!   agent refuses is replaced by a deny-all RBAC filter ([`EcdsMode::Refused`]), which the
//!   filter's `config_discovery` must accept;
//! * extension config discovery: Envoy gets the configuration from istiod (`ads`); here either
//!   inline, or (`EcdsMode::File`) from a file through the same `config_discovery` stanza with a
//!   path config source;
//! * the optional native module (`envoyfilter-native.yaml`): its dynamic module filters are
//!   inserted as they are; only the pod paths in them (the module's `local.filename`, and the
//!   `control_address` of the filter configuration) are mapped through the pod's [`PathMap`],
//!   as the Unix socket paths of clusters are ([`map_native_paths`]).

use crate::inject::PathMap;
use crate::yaml::Doc;
use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER: &str = "envoy.filters.http.router";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
/// The HTTP wasm filter's configuration type.
pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The network wasm filter's configuration type.
pub const NETWORK_WASM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
/// What istio-agent puts in place of an HTTP wasm filter whose module it cannot fetch or verify.
pub const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// ... and of a network wasm filter.
pub const NETWORK_RBAC_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
/// The native module's HTTP filter configuration type (Envoy dynamic modules).
pub const NATIVE_HTTP_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
/// ... and its network filter's.
pub const NATIVE_NETWORK_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3.DynamicModuleNetworkFilter";
/// The listener of the HTTP chain (Istio's inbound listener name).
pub const INBOUND_LISTENER: &str = "virtualInbound";
/// The listener of the TCP chain.
pub const TCP_LISTENER: &str = "virtualInbound-tcp";
/// The HTTP chain's port (what a WasmPlugin's `match.ports` is compared with).
pub const HTTP_PORT: u64 = 8080;
/// The TCP chain's port: wasmplugin-tcp.yaml's example port.
pub const TCP_PORT: u64 = 5432;

/// What the pod provides: where its paths are, the module istio-agent fetched, the workload's
/// certificate.
pub struct Pod {
    pub paths: PathMap,
    pub wasm: PathBuf,
    pub wasm_sha256: String,
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub trust_domain: String,
    /// The application's answer on the HTTP port (direct response body).
    pub app: String,
    /// The application on the TCP port: the Unix socket the inbound cluster points at.
    pub tcp_app: PathBuf,
    /// `meshConfig.pathNormalization.normalization` (empty: Istio's default, BASE).
    pub path_normalization: String,
}

/// The connection manager settings istiod gives every sidecar for a
/// `meshConfig.pathNormalization.normalization` (`normalize_path`, `merge_slashes`,
/// `path_with_escaped_slashes_action`); unset and `DEFAULT` are `BASE`.
pub fn path_normalization(mode: &str) -> Result<(bool, bool, &'static str)> {
    Ok(match mode {
        "NONE" => (false, false, "KEEP_UNCHANGED"),
        "" | "DEFAULT" | "BASE" => (true, false, "KEEP_UNCHANGED"),
        "MERGE_SLASHES" => (true, true, "KEEP_UNCHANGED"),
        "DECODE_AND_MERGE_SLASHES" => (true, true, "UNESCAPE_AND_FORWARD"),
        other => bail!("unknown meshConfig.pathNormalization.normalization {other:?}"),
    })
}

/// How an extension config discovered over ECDS reaches Envoy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcdsMode {
    /// The configuration replaces `config_discovery` in the filter.
    Inline,
    /// `config_discovery` stays, its source a file written next to `run_dir`.
    File,
    /// As `File`, with what istio-agent sends when it cannot fetch or verify the module: a
    /// deny-all RBAC filter of the same name (WasmPlugin filters, inline here, become it too).
    Refused,
}

/// One inbound filter chain: its port, its listener, its network filters.
struct Chain {
    port: u64,
    listener: &'static str,
    filters: Vec<Value>,
}

/// The bootstrap for `resources` (EnvoyFilters and WasmPlugins; the WasmPlugins first, then the
/// EnvoyFilters, each kind in order).
pub fn bootstrap(resources: &[&Doc], pod: &Pod, run_dir: &Path, ecds: EcdsMode) -> Result<Value> {
    let mut chains = vec![
        Chain {
            port: HTTP_PORT,
            listener: INBOUND_LISTENER,
            filters: vec![inbound_hcm(pod)?],
        },
        Chain {
            port: TCP_PORT,
            listener: TCP_LISTENER,
            filters: vec![inbound_tcp_proxy()],
        },
    ];
    let mut clusters: Vec<Value> = vec![inbound_tcp_cluster(pod)];
    let mut extension_configs: BTreeMap<String, Value> = BTreeMap::new();

    for doc in resources {
        match doc.gvk() {
            Some(("networking.istio.io/v1alpha3", "EnvoyFilter")) => {}
            Some(("extensions.istio.io/v1alpha1", "WasmPlugin")) => {
                apply_wasm_plugin(doc, pod, ecds, &mut chains)?
            }
            _ => bail!(
                "{}: {} is not an EnvoyFilter or WasmPlugin",
                doc.at(),
                doc.id()
            ),
        }
    }
    for doc in resources {
        if doc.gvk().map(|(_, k)| k) == Some("EnvoyFilter") {
            apply_envoy_filter(doc, pod, &mut chains, &mut clusters, &mut extension_configs)?;
        }
    }

    // Extension configs referenced by name (ECDS): network filters, and the HTTP filters of
    // every connection manager. Dynamic module filters: the pod paths they name.
    let mut files = 0;
    for chain in &mut chains {
        for f in &mut chain.filters {
            map_native_paths(f, &pod.paths)?;
            if f["name"] == HCM {
                for h in f["typed_config"]["http_filters"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    map_native_paths(h, &pod.paths)?;
                }
            }
            discover(f, &extension_configs, pod, run_dir, ecds, &mut files)?;
            if f["name"] == HCM {
                let http = f["typed_config"]["http_filters"]
                    .as_array_mut()
                    .context("no http_filters")?;
                for h in http {
                    discover(h, &extension_configs, pod, run_dir, ecds, &mut files)?;
                }
            }
        }
    }

    let listeners: Vec<Value> = chains
        .into_iter()
        .map(|c| {
            let alpn = if c.port == HTTP_PORT {
                json!(["h2", "http/1.1"])
            } else {
                json!([])
            };
            json!({
                "name": c.listener,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
                }],
                "filter_chains": [{
                    "name": format!("0.0.0.0_{}", c.port),
                    "filter_chain_match": {"transport_protocol": "tls"},
                    "transport_socket": mtls_transport_socket(pod, alpn),
                    "filters": c.filters
                }]
            })
        })
        .collect();
    Ok(json!({
        // As Istio names a sidecar (xDS subscriptions, the ECDS file one included, need a node).
        "node": {"id": "sidecar~127.0.10.2~summary.yaobank~yaobank.svc.cluster.local", "cluster": "summary.yaobank"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    }))
}

/// STRICT mTLS: the workload's certificate, a client certificate of the mesh required.
fn mtls_transport_socket(pod: &Pod, alpn: Value) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "alpn_protocols": alpn,
                "tls_certificates": [{
                    "certificate_chain": {"filename": pod.server_cert.display().to_string()},
                    "private_key": {"filename": pod.server_key.display().to_string()}
                }],
                "validation_context": {
                    "trusted_ca": {"filename": pod.ca_file.display().to_string()},
                    "match_typed_subject_alt_names": [{
                        "san_type": "URI",
                        "matcher": {"prefix": format!("spiffe://{}/", pod.trust_domain)}
                    }]
                }
            }
        }
    })
}

/// The configuration of a filter that names an extension config (`config_discovery`), from
/// the EXTENSION_CONFIGs, through istio-agent, delivered as `ecds` says. Other filters are left
/// alone.
fn discover(
    f: &mut Value,
    extension_configs: &BTreeMap<String, Value>,
    pod: &Pod,
    run_dir: &Path,
    ecds: EcdsMode,
    files: &mut usize,
) -> Result<()> {
    let Some(discovery) = f.get("config_discovery").cloned() else {
        return Ok(());
    };
    let name = f["name"].as_str().unwrap_or("").to_string();
    let mut typed = extension_configs.get(&name).cloned().ok_or_else(|| {
        anyhow!(
            "filter {name} uses config_discovery, but no EXTENSION_CONFIG named {name} was added"
        )
    })?;
    let type_urls: Vec<&str> = discovery["type_urls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let type_url = typed["@type"].as_str().unwrap_or("").to_string();
    if !type_urls.contains(&type_url.as_str()) {
        bail!("extension config {name} is a {type_url}, which filter {name}'s type_urls do not accept");
    }
    let fallback = agent_deny_all(&typed)?;
    let fallback_type = fallback["@type"].as_str().unwrap_or("");
    if !type_urls.contains(&fallback_type) {
        bail!(
            "filter {name}'s type_urls {type_urls:?} do not accept {fallback_type}, the deny-all \
             filter istio-agent installs when it cannot fetch or verify the module: Envoy would \
             refuse it and the listener would never get the filter's configuration"
        );
    }
    if ecds == EcdsMode::Refused {
        typed = fallback;
    } else {
        agent_localize(&mut typed, pod).with_context(|| format!("extension config {name}"))?;
    }
    if ecds == EcdsMode::Inline {
        *f = json!({"name": name, "typed_config": typed});
        return Ok(());
    }
    let file = run_dir.join(format!("ecds-{files}.json"));
    *files += 1;
    let response = json!({
        "version_info": "1",
        "type_url": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": name,
            "typed_config": typed,
        }],
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&response)?)?;
    let mut d = discovery;
    let timeout = d["config_source"]["initial_fetch_timeout"].clone();
    d["config_source"] = json!({"path_config_source": {"path": file.display().to_string()}});
    if !timeout.is_null() {
        d["config_source"]["initial_fetch_timeout"] = timeout;
    }
    f["config_discovery"] = d;
    Ok(())
}

/// Istio's inbound HTTP connection manager for one port (the settings that matter here).
fn inbound_hcm(pod: &Pod) -> Result<Value> {
    let (normalize, merge, escaped) = path_normalization(&pod.path_normalization)?;
    Ok(json!({
        "name": HCM,
        "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": "inbound_0.0.0.0_8080",
            "use_remote_address": false,
            "forward_client_cert_details": "APPEND_FORWARD",
            "set_current_client_cert_details": {"subject": true, "uri": true, "dns": true},
            "normalize_path": normalize,
            "merge_slashes": merge,
            "path_with_escaped_slashes_action": escaped,
            "route_config": {
                "name": "inbound|8080||",
                "virtual_hosts": [{
                    "name": "inbound|http|8080",
                    "domains": ["*"],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": format!("{}\n", pod.app)}}
                    }]
                }]
            },
            "http_filters": [{
                "name": ROUTER,
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
            }]
        }
    }))
}

/// Istio's inbound `tcp_proxy` for a TCP Service port (the settings that matter here: the
/// inbound cluster; upstream_connect_mode unset, so IMMEDIATE).
fn inbound_tcp_proxy() -> Value {
    json!({
        "name": TCP_PROXY,
        "typed_config": {
            "@type": TCP_PROXY_TYPE,
            "stat_prefix": format!("inbound|{TCP_PORT}||"),
            "cluster": format!("inbound|{TCP_PORT}||")
        }
    })
}

/// The inbound cluster of the TCP port: the application (a Unix socket standing for
/// 127.0.0.1:5432 in the pod).
fn inbound_tcp_cluster(pod: &Pod) -> Value {
    let name = format!("inbound|{TCP_PORT}||");
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "pipe": {"path": pod.tcp_app.display().to_string()}
            }}}]}]
        }
    })
}

fn context(patch: &Value) -> &str {
    patch["match"]["context"].as_str().unwrap_or("ANY")
}

fn apply_envoy_filter(
    doc: &Doc,
    pod: &Pod,
    chains: &mut [Chain],
    clusters: &mut Vec<Value>,
    extension_configs: &mut BTreeMap<String, Value>,
) -> Result<()> {
    let patches = doc.value["spec"]["configPatches"]
        .as_array()
        .with_context(|| format!("{}: {} has no configPatches", doc.at(), doc.id()))?;
    for (i, p) in patches.iter().enumerate() {
        let at = || format!("{}: {} configPatches[{i}]", doc.at(), doc.id());
        let apply_to = p["applyTo"].as_str().unwrap_or("");
        let op = p["patch"]["operation"].as_str().unwrap_or("");
        let value = &p["patch"]["value"];
        match (apply_to, op) {
            ("CLUSTER", "ADD") => {
                // Istio adds ADD-ed clusters only while building SIDECAR_OUTBOUND (or gateway)
                // clusters; ANY counts as that too.
                if !matches!(context(p), "SIDECAR_OUTBOUND" | "ANY") {
                    bail!(
                        "{}: a CLUSTER ADD in context {} is never added to a sidecar",
                        at(),
                        context(p)
                    );
                }
                let mut cluster = value.clone();
                map_pipe_paths(&mut cluster, &pod.paths);
                clusters.push(cluster);
            }
            ("NETWORK_FILTER", "MERGE") => {
                let name = inbound_network_filter_match(p).with_context(at)?;
                let mut n = 0;
                for f in chains.iter_mut().flat_map(|c| c.filters.iter_mut()) {
                    if f["name"] != name {
                        continue;
                    }
                    if value["typed_config"]["@type"] != f["typed_config"]["@type"] {
                        bail!("{}: MERGE with a different typed_config type", at());
                    }
                    merge(f, value);
                    n += 1;
                }
                if n == 0 {
                    bail!("{}: MERGE matches no inbound filter {name}", at());
                }
            }
            ("NETWORK_FILTER", "INSERT_BEFORE") => {
                let name = inbound_network_filter_match(p).with_context(at)?;
                let mut n = 0;
                for c in chains.iter_mut() {
                    if let Some(at) = c.filters.iter().position(|f| f["name"] == name) {
                        c.filters.insert(at, value.clone());
                        n += 1;
                    }
                }
                if n == 0 {
                    bail!("{}: INSERT_BEFORE matches no inbound filter {name}", at());
                }
            }
            ("HTTP_FILTER", "INSERT_BEFORE") => {
                if inbound_filter_match(p).with_context(at)? != HCM {
                    bail!("{}: an HTTP_FILTER patch matches {HCM}", at());
                }
                let sub =
                    p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"].as_str();
                if sub != Some(ROUTER) {
                    bail!(
                        "{}: only INSERT_BEFORE {ROUTER} is emulated (got {sub:?})",
                        at()
                    );
                }
                for hcm in hcms(chains) {
                    insert_before_router(hcm, value.clone())?;
                }
            }
            ("EXTENSION_CONFIG", "ADD") => {
                let name = value["name"]
                    .as_str()
                    .with_context(|| format!("{}: no name", at()))?;
                extension_configs.insert(name.to_string(), value["typed_config"].clone());
            }
            _ => bail!(
                "{}: {apply_to} {op} is not emulated by tests/manifests/src/istio.rs",
                at()
            ),
        }
    }
    Ok(())
}

/// The connection managers of the chains.
fn hcms(chains: &mut [Chain]) -> impl Iterator<Item = &mut Value> {
    chains
        .iter_mut()
        .flat_map(|c| c.filters.iter_mut())
        .filter(|f| f["name"] == HCM)
}

/// The filter name a SIDECAR_INBOUND listener patch matches. Anything else in the match (a
/// port, a listener or chain name, SNI...) is not emulated, hence an error.
fn inbound_filter_match(p: &Value) -> Result<String> {
    if context(p) != "SIDECAR_INBOUND" {
        bail!(
            "expected context SIDECAR_INBOUND (inbound sidecar only), got {}",
            context(p)
        );
    }
    let only = |v: &Value, keys: &[&str], what: &str| -> Result<()> {
        for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
            if !keys.contains(&k.as_str()) {
                bail!("{what}.{k} is not emulated by tests/manifests/src/istio.rs");
            }
        }
        Ok(())
    };
    let m = &p["match"];
    only(m, &["context", "listener"], "match")?;
    only(&m["listener"], &["filterChain"], "match.listener")?;
    only(
        &m["listener"]["filterChain"],
        &["filter"],
        "match.listener.filterChain",
    )?;
    let filter = &m["listener"]["filterChain"]["filter"];
    only(
        filter,
        &["name", "subFilter"],
        "match.listener.filterChain.filter",
    )?;
    match filter["name"].as_str() {
        Some(name @ (HCM | TCP_PROXY)) => Ok(name.to_string()),
        other => bail!("expected a match on filter {HCM} or {TCP_PROXY}, got {other:?}"),
    }
}

/// As [`inbound_filter_match`], for a NETWORK_FILTER patch (no sub-filter).
fn inbound_network_filter_match(p: &Value) -> Result<String> {
    if !p["match"]["listener"]["filterChain"]["filter"]["subFilter"].is_null() {
        bail!("a NETWORK_FILTER patch with a subFilter match");
    }
    inbound_filter_match(p)
}

fn insert_before_router(hcm: &mut Value, filter: Value) -> Result<()> {
    let filters = hcm["typed_config"]["http_filters"]
        .as_array_mut()
        .context("no http_filters")?;
    let at = filters
        .iter()
        .position(|f| f["name"] == ROUTER)
        .context("no router")?;
    filters.insert(at, filter);
    Ok(())
}

/// Protobuf merge of JSON: objects merge field by field, lists append, other values replace.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p)) => t.extend(p.iter().cloned()),
        (t, p) => *t = p.clone(),
    }
}

fn map_pipe_paths(v: &mut Value, paths: &PathMap) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(pipe)) = o.get_mut("pipe") {
                if let Some(Value::String(p)) = pipe.get_mut("path") {
                    *p = paths.map(p);
                }
            }
            for child in o.values_mut() {
                map_pipe_paths(child, paths);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| map_pipe_paths(c, paths)),
        _ => {}
    }
}

/// A dynamic module filter (the native module) as the pod's Envoy sees it, with its pod paths
/// mapped: the module file (`dynamic_module_config.module.local.filename`; a module given by
/// `name` is looked up in `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` and left alone) and the
/// `control_address` (`unix:PATH`) of its JSON `filter_config`. Other filters are left alone.
pub fn map_native_paths(f: &mut Value, paths: &PathMap) -> Result<()> {
    let t = &mut f["typed_config"];
    if t["@type"] != NATIVE_HTTP_TYPE && t["@type"] != NATIVE_NETWORK_TYPE {
        return Ok(());
    }
    if let Some(Value::String(file)) = t.pointer_mut("/dynamic_module_config/module/local/filename")
    {
        *file = paths.map(file);
    }
    let Some(cfg) = t["filter_config"]["value"].as_str() else {
        bail!("a dynamic module filter without a JSON filter_config (StringValue)");
    };
    let mut cfg: Value = serde_json::from_str(cfg).context("the filter_config JSON")?;
    let Some(addr) = cfg["control_address"].as_str() else {
        bail!("the native filter_config has no control_address");
    };
    cfg["control_address"] = json!(paths.map(addr));
    t["filter_config"]["value"] = json!(serde_json::to_string(&cfg)?);
    Ok(())
}

/// The JSON `filter_config` of a dynamic module filter (the native module's configuration).
pub fn native_configuration(typed_config: &Value) -> Option<Value> {
    let s = typed_config["filter_config"]["value"].as_str()?;
    serde_json::from_str(s).ok()
}

/// Whether a WasmPlugin's `match` selects an inbound chain on `port`, as istiod decides it: no
/// match at all selects everything; otherwise one entry whose mode includes the server side
/// (SERVER, CLIENT_AND_SERVER, UNDEFINED or none) and whose ports are empty or list `port`.
pub fn wasm_plugin_selects(spec: &Value, port: u64) -> bool {
    let matches = spec["match"].as_array().cloned().unwrap_or_default();
    matches.is_empty()
        || matches.iter().any(|m| {
            let mode = m["mode"].as_str().unwrap_or("UNDEFINED");
            let ports: Vec<u64> = m["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["number"].as_u64())
                .collect();
            matches!(mode, "SERVER" | "CLIENT_AND_SERVER" | "UNDEFINED")
                && (ports.is_empty() || ports.contains(&port))
        })
}

/// Puts the filter istiod generates for a WasmPlugin where istiod puts it (after istio-agent).
fn apply_wasm_plugin(doc: &Doc, pod: &Pod, ecds: EcdsMode, chains: &mut [Chain]) -> Result<()> {
    let spec = &doc.value["spec"];
    let mut filter = wasm_plugin_filter(doc)?;
    if ecds == EcdsMode::Refused {
        filter["typed_config"] = agent_deny_all(&filter["typed_config"])?;
    } else {
        agent_localize(&mut filter["typed_config"], pod)
            .with_context(|| format!("{}: {}", doc.at(), doc.id()))?;
    }
    if spec["type"] == "NETWORK" {
        for c in chains
            .iter_mut()
            .filter(|c| wasm_plugin_selects(spec, c.port))
        {
            let at = c
                .filters
                .iter()
                .position(|f| f["name"] == TCP_PROXY || f["name"] == HCM)
                .context("a chain without tcp_proxy or connection manager")?;
            c.filters.insert(at, filter.clone());
        }
    } else {
        for hcm in hcms(chains) {
            insert_before_router(hcm, filter.clone())?;
        }
    }
    Ok(())
}

/// The wasm filter istiod generates for a WasmPlugin (before istio-agent's download): HTTP, or
/// network for `type: NETWORK`.
pub fn wasm_plugin_filter(doc: &Doc) -> Result<Value> {
    let spec = &doc.value["spec"];
    let at = || format!("{}: {}", doc.at(), doc.id());
    let type_url = match spec["type"].as_str() {
        None | Some("HTTP") | Some("UNSPECIFIED_PLUGIN_TYPE") => {
            // The HTTP filter goes into every connection manager: inbound only, all ports.
            let modes: Vec<&str> = spec["match"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["mode"].as_str())
                .collect();
            if modes != ["SERVER"] || !wasm_plugin_selects(spec, HTTP_PORT) {
                bail!(
                    "{}: expected exactly one match, mode SERVER (inbound only) on every port, \
                     got {modes:?}",
                    at()
                );
            }
            WASM_TYPE
        }
        Some("NETWORK") => NETWORK_WASM_TYPE,
        Some(other) => bail!("{}: unknown plugin type {other}", at()),
    };
    if spec["phase"] != "AUTHZ" {
        bail!("{}: expected phase AUTHZ", at());
    }
    let failure_policy = match spec["failStrategy"].as_str() {
        Some("FAIL_CLOSE") | None => "FAIL_CLOSED",
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        Some(other) => bail!("{}: unknown failStrategy {other}", at()),
    };
    let name = format!("{}.{}", doc.namespace().unwrap_or("default"), doc.name());
    let mut config = json!({
        "name": name,
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"remote": {
                "http_uri": {"uri": spec["url"], "cluster": "istio-agent-fetches-it", "timeout": "30s"},
                "sha256": spec["sha256"]
            }},
            "environment_variables": {"key_values": env_vars(&spec["vmConfig"])}
        },
        "failure_policy": failure_policy
    });
    if let Some(root_id) = spec["pluginName"].as_str() {
        config["root_id"] = json!(root_id);
    }
    if let Some(cfg) = spec["pluginConfig"].as_object().filter(|c| !c.is_empty()) {
        config["configuration"] = json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": serde_json::to_string(cfg)?
        });
    }
    Ok(json!({"name": name, "typed_config": {"@type": type_url, "config": config}}))
}

fn env_vars(vm_config: &Value) -> Value {
    let mut out = Map::new();
    for e in vm_config["env"].as_array().into_iter().flatten() {
        if let (Some(n), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            out.insert(n.to_string(), json!(v));
        }
    }
    Value::Object(out)
}

fn require_wasm(wasm_typed_config: &Value) -> Result<()> {
    let t = &wasm_typed_config["@type"];
    if t != WASM_TYPE && t != NETWORK_WASM_TYPE {
        bail!("not a wasm filter configuration (HTTP or network): {t}");
    }
    Ok(())
}

/// istio-agent: a remote module is downloaded, its sha256 checked, and replaced by a local file.
pub fn agent_localize(wasm_typed_config: &mut Value, pod: &Pod) -> Result<()> {
    require_wasm(wasm_typed_config)?;
    let code = &mut wasm_typed_config["config"]["vm_config"]["code"];
    let Some(remote) = code.get("remote").cloned() else {
        bail!("the module is not remote: istio-agent would not fetch it");
    };
    let uri = remote["http_uri"]["uri"].as_str().unwrap_or("");
    let sha = remote["sha256"].as_str().unwrap_or("");
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        bail!("module URL {uri:?}: these checks fetch https:// modules (dist/calico-alp.wasm)");
    }
    if sha != pod.wasm_sha256 {
        bail!(
            "module {uri} checksum {sha:?} is not dist/calico-alp.wasm's {}: istio-agent would \
             refuse the module (FAIL_CLOSE: deny everything)",
            pod.wasm_sha256
        );
    }
    *code = json!({"local": {"filename": pod.wasm.display().to_string()}});
    Ok(())
}

/// What istio-agent sends instead of a wasm filter whose module it cannot fetch or verify, with
/// `failure_policy` FAIL_CLOSED (its createHTTPDefaultFilter / createNetworkDefaultFilter): an
/// RBAC filter with empty rules, which denies every request or connection.
pub fn agent_deny_all(wasm_typed_config: &Value) -> Result<Value> {
    require_wasm(wasm_typed_config)?;
    if wasm_typed_config["config"]["failure_policy"] == "FAIL_OPEN" {
        bail!("failure_policy FAIL_OPEN: istio-agent would install an allow-all filter");
    }
    Ok(if wasm_typed_config["@type"] == WASM_TYPE {
        json!({"@type": HTTP_RBAC_TYPE, "rules": {}, "rules_stat_prefix": "wasm-default-deny"})
    } else {
        json!({"@type": NETWORK_RBAC_TYPE, "rules": {}, "stat_prefix": "wasm-default-deny"})
    })
}

/// The plugin configuration JSON inside a wasm filter configuration.
pub fn plugin_configuration(wasm_typed_config: &Value) -> Option<Value> {
    let s = wasm_typed_config["config"]["configuration"]["value"].as_str()?;
    serde_json::from_str(s).ok()
}

/// The fields of Istio's `ProxyConfig` (`meshConfig.defaultConfig`, and a pod's
/// `proxy.istio.io/config` annotation), by their JSON names (istio/api
/// mesh/v1alpha1/proxy.proto). The mesh configuration has no CRD schema to validate against:
/// what these manifests set there is checked against this list, so a misspelt field (which
/// istiod would ignore) is an error.
pub const PROXY_CONFIG_FIELDS: &[&str] = &[
    "configPath",
    "binaryPath",
    "serviceCluster",
    "tracingServiceName",
    "drainDuration",
    "parentShutdownDuration",
    "discoveryAddress",
    "discoveryRefreshDelay",
    "zipkinAddress",
    "statsdUdpAddress",
    "envoyMetricsServiceAddress",
    "proxyAdminPort",
    "availabilityZone",
    "controlPlaneAuthPolicy",
    "customConfigFile",
    "statNameLength",
    "concurrency",
    "proxyBootstrapTemplatePath",
    "interceptionMode",
    "tracing",
    "sds",
    "envoyAccessLogService",
    "envoyMetricsService",
    "proxyMetadata",
    "runtimeValues",
    "statusPort",
    "extraStatTags",
    "gatewayTopology",
    "terminationDrainDuration",
    "meshId",
    "readinessProbe",
    "proxyStatsMatcher",
    "holdApplicationUntilProxyStarts",
    "caCertificatesPem",
    "image",
    "privateKeyProvider",
];

/// The fields of `ProxyConfig.ProxyStatsMatcher`.
pub const PROXY_STATS_MATCHER_FIELDS: &[&str] =
    &["inclusionPrefixes", "inclusionSuffixes", "inclusionRegexps"];

/// The pod annotations istio-agent reads for a sidecar's stats (istio/api annotation): extra
/// tags (added to `extraStatTags`), and inclusion prefixes, suffixes and regexps (each one
/// *replacing* the `proxyStatsMatcher` list of its kind).
pub const EXTRA_STAT_TAGS_ANNOTATION: &str = "sidecar.istio.io/extraStatTags";
pub const INCLUSION_PREFIXES_ANNOTATION: &str = "sidecar.istio.io/statsInclusionPrefixes";
pub const INCLUSION_SUFFIXES_ANNOTATION: &str = "sidecar.istio.io/statsInclusionSuffixes";
pub const INCLUSION_REGEXPS_ANNOTATION: &str = "sidecar.istio.io/statsInclusionRegexps";

/// The stats istio-agent always includes, whatever the configuration (its
/// `requiredEnvoyStatsMatcherInclusion*`): prefixes (readiness checks; `wasm` is a plain string
/// prefix, so it also covers `wasmcustom.`), suffixes (RBAC), regexps (route stats).
pub const REQUIRED_INCLUSION_PREFIXES: &[&str] = &[
    "cluster_manager",
    "listener_manager",
    "server",
    "cluster.xds-grpc",
    "wasm",
];
pub const REQUIRED_INCLUSION_SUFFIXES: &[&str] = &[
    "rbac.allowed",
    "rbac.denied",
    "shadow_allowed",
    "shadow_denied",
];
pub const REQUIRED_INCLUSION_REGEXPS: &[&str] = &[r"vhost\..*\.route\..*"];

/// The tag extractor Istio generates for a name listed in `extraStatTags`: it cuts
/// `NAME=.=VALUE;.;` out of a stat name and makes VALUE the tag NAME.
pub fn extra_stat_tag(name: &str) -> Value {
    json!({"regex": format!(r"({name}=\.=(.*?);\.;)"), "tag_name": name})
}

/// The tags of a list option: the ProxyConfig's, unless the annotation is set (then its
/// comma-separated list instead), then the required ones (istio-agent's `parseOption`).
fn inclusion_option(
    annotation: Option<&String>,
    proxy_config: &Value,
    required: &[&str],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = match annotation.filter(|a| !a.is_empty()) {
        Some(a) => a.split(',').map(str::to_string).collect(),
        None => proxy_config
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().map(str::to_string).context("not a string"))
            .collect::<Result<_>>()?,
    };
    if out.iter().any(|p| p.contains("{pod_ip}")) {
        bail!("{{pod_ip}} patterns are not emulated here");
    }
    out.extend(required.iter().map(|r| r.to_string()));
    Ok(out)
}

/// The `stats_config` istio-agent writes into a sidecar's Envoy bootstrap for the ProxyConfig
/// `proxy_config` (`meshConfig.defaultConfig`) and the pod's `annotations` (istio/istio
/// pkg/bootstrap/config.go `getStatsOptions`, tools/packaging/common/envoy_bootstrap.json):
/// * `stats_tags`: Istio's own tags, not Envoy's defaults (`use_all_default_tags: false`), with
///   [`extra_stat_tag`] for each name of `extraStatTags` and of the annotation
///   `sidecar.istio.io/extraStatTags` (both, without duplicates) after `mongo_prefix`;
/// * `stats_matcher`: an inclusion list, `reporter=` (Istio's standard metrics), then the
///   prefixes, suffixes and regexps of `proxyStatsMatcher` (each replaced by its annotation when
///   that is set) each followed by the required ones, then `component` and `istio`. Envoy keeps
///   only the stats it matches, the filter's included.
pub fn stats_config(proxy_config: &Value, annotations: &BTreeMap<String, String>) -> Result<Value> {
    let mut extra: Vec<String> = vec![];
    let configured = proxy_config["extraStatTags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().context("extraStatTags: not a string"))
        .collect::<Result<Vec<_>>>()?;
    let annotated = annotations
        .get(EXTRA_STAT_TAGS_ANNOTATION)
        .map(|a| a.split(',').collect::<Vec<_>>())
        .unwrap_or_default();
    for tag in configured.into_iter().chain(annotated) {
        if !tag.is_empty() && !extra.iter().any(|t| t == tag) {
            extra.push(tag.to_string());
        }
    }
    let tag = |name: &str, regex: &str| json!({"tag_name": name, "regex": regex});
    let mut tags = vec![
        tag(
            "cluster_name",
            r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
        ),
        tag("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
        tag("response_code", r"_rq(_(\d{3}))$"),
        tag("response_code_class", r"_rq(_(\dxx))$"),
        tag(
            "http_conn_manager_listener_prefix",
            r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        ),
        tag(
            "http_conn_manager_prefix",
            r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        ),
        tag(
            "listener_address",
            r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        ),
        tag(
            "mongo_prefix",
            r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$",
        ),
    ];
    tags.extend(extra.iter().map(|t| extra_stat_tag(t)));
    tags.extend([
        tag("cache", r"(cache\.(.+?)\.)"),
        tag("component", r"(component\.(.+?)\.)"),
        tag("tag", r"(tag\.(.+?);\.)"),
        tag("wasm_filter", r"(wasm_filter\.(.+?)\.)"),
        tag("authz_enforce_result", r"rbac(\.(allowed|denied))"),
        tag("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
        tag("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
    ]);

    let matcher = &proxy_config["proxyStatsMatcher"];
    let prefixes = inclusion_option(
        annotations.get(INCLUSION_PREFIXES_ANNOTATION),
        &matcher["inclusionPrefixes"],
        REQUIRED_INCLUSION_PREFIXES,
    )?;
    let suffixes = inclusion_option(
        annotations.get(INCLUSION_SUFFIXES_ANNOTATION),
        &matcher["inclusionSuffixes"],
        REQUIRED_INCLUSION_SUFFIXES,
    )?;
    let regexps = inclusion_option(
        annotations.get(INCLUSION_REGEXPS_ANNOTATION),
        &matcher["inclusionRegexps"],
        REQUIRED_INCLUSION_REGEXPS,
    )?;
    let mut patterns = vec![json!({"prefix": "reporter="})];
    patterns.extend(prefixes.iter().map(|p| json!({"prefix": p})));
    patterns.extend(suffixes.iter().map(|s| json!({"suffix": s})));
    patterns.extend(regexps.iter().map(|r| json!({"safe_regex": {"regex": r}})));
    patterns.extend([json!({"prefix": "component"}), json!({"prefix": "istio"})]);
    Ok(json!({
        "use_all_default_tags": false,
        "stats_tags": tags,
        "stats_matcher": {"inclusion_list": {"patterns": patterns}}
    }))
}
