//! The Envoy configuration Istio produces for an enforced pod's inbound traffic, from our Istio
//! resources, as a static bootstrap a real Envoy can validate and run.
//!
//! What is reproduced, and how Istio does it:
//! * an inbound listener like Istio's `virtualInbound` filter chain for an HTTP port under STRICT
//!   mTLS: TLS requiring a client certificate from the mesh CA (SPIFFE URI SAN), an HTTP
//!   connection manager with Istio's inbound settings (`use_remote_address: false`, client cert
//!   details forwarded, path normalisation as `meshConfig.pathNormalization` asks, mapped to
//!   the connection manager's settings as istiod maps it: [`path_normalization`]) and a
//!   router; the application is a direct response. Istio's own proxy extensions (metadata
//!   exchange, stats) are not in upstream Envoy and are left out;
//! * EnvoyFilter patches: CLUSTER ADD (SIDECAR_OUTBOUND), NETWORK_FILTER MERGE on the inbound
//!   HTTP connection manager (proto merge: fields set in the patch replace, lists append),
//!   HTTP_FILTER INSERT_BEFORE the router, EXTENSION_CONFIG ADD. Any other patch is an error
//!   here, so a new kind of patch needs its emulation first;
//! * a WasmPlugin (mode SERVER, phase AUTHZ) becomes the HTTP wasm filter istiod generates:
//!   `name` and plugin name `<namespace>.<name>`, `pluginConfig` as a JSON StringValue, runtime
//!   V8, the failure policy mapped from `failStrategy`, the module as a remote data source, no
//!   `vm_id` (istiod sets none; the CRD has no field for it);
//! * istio-agent's part: it downloads the module, checks its sha256 and hands Envoy a local
//!   file. Here the "downloaded" module is `dist/calico-alp.wasm` and the checksum in the
//!   resource must be its sha256 (https:// URLs), or the agent would refuse it;
//! * extension config discovery: Envoy gets the configuration from istiod (`ads`); here either
//!   inline, or (`EcdsMode::File`) from a file through the same `config_discovery` stanza with a
//!   path config source.

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
pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const INBOUND_LISTENER: &str = "virtualInbound";

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
    /// The application's answer (direct response body).
    pub app: String,
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
    /// `config_discovery` stays, its source a file written next to `run_dir` (validate only).
    File,
}

/// The bootstrap for `resources` (EnvoyFilters and WasmPlugins, applied in order).
pub fn bootstrap(resources: &[&Doc], pod: &Pod, run_dir: &Path, ecds: EcdsMode) -> Result<Value> {
    let mut hcm = inbound_hcm(pod)?;
    let mut clusters: Vec<Value> = vec![];
    let mut extension_configs: BTreeMap<String, Value> = BTreeMap::new();

    for doc in resources {
        match doc.gvk() {
            Some(("networking.istio.io/v1alpha3", "EnvoyFilter")) => {
                apply_envoy_filter(doc, pod, &mut hcm, &mut clusters, &mut extension_configs)?
            }
            Some(("extensions.istio.io/v1alpha1", "WasmPlugin")) => {
                let filter = wasm_plugin_filter(doc, pod)?;
                insert_before_router(&mut hcm, filter)?;
            }
            _ => bail!(
                "{}: {} is not an EnvoyFilter or WasmPlugin",
                doc.at(),
                doc.id()
            ),
        }
    }

    // Extension configs referenced by name (ECDS).
    let filters = hcm["typed_config"]["http_filters"]
        .as_array_mut()
        .context("no http_filters")?;
    for (i, f) in filters.iter_mut().enumerate() {
        let Some(discovery) = f.get("config_discovery").cloned() else {
            continue;
        };
        let name = f["name"].as_str().unwrap_or("").to_string();
        let mut typed = extension_configs
            .get(&name)
            .cloned()
            .ok_or_else(|| anyhow!("HTTP filter {name} uses config_discovery, but no EXTENSION_CONFIG named {name} was added"))?;
        let type_url = typed["@type"].as_str().unwrap_or("").to_string();
        if !discovery["type_urls"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t == &Value::String(type_url.clone()))
        {
            bail!("extension config {name} is a {type_url}, which filter {name}'s type_urls do not accept");
        }
        agent_localize(&mut typed, pod).with_context(|| format!("extension config {name}"))?;
        match ecds {
            EcdsMode::Inline => {
                *f = json!({"name": name, "typed_config": typed});
            }
            EcdsMode::File => {
                let file = run_dir.join(format!("ecds-{i}.json"));
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
                let mut d = discovery.clone();
                let timeout = d["config_source"]["initial_fetch_timeout"].clone();
                d["config_source"] =
                    json!({"path_config_source": {"path": file.display().to_string()}});
                if !timeout.is_null() {
                    d["config_source"]["initial_fetch_timeout"] = timeout;
                }
                f["config_discovery"] = d;
            }
        }
    }

    let listener = json!({
        "name": INBOUND_LISTENER,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
        }],
        "filter_chains": [{
            "name": "0.0.0.0_8080",
            "filter_chain_match": {"transport_protocol": "tls"},
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "common_tls_context": {
                        "alpn_protocols": ["h2", "http/1.1"],
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
            },
            "filters": [hcm]
        }]
    });
    Ok(json!({
        // As Istio names a sidecar (xDS subscriptions, the ECDS file one included, need a node).
        "node": {"id": "sidecar~127.0.10.2~summary.yaobank~yaobank.svc.cluster.local", "cluster": "summary.yaobank"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener], "clusters": clusters}
    }))
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

fn context(patch: &Value) -> &str {
    patch["match"]["context"].as_str().unwrap_or("ANY")
}

fn apply_envoy_filter(
    doc: &Doc,
    pod: &Pod,
    hcm: &mut Value,
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
                require_inbound_hcm_match(p).with_context(at)?;
                if value["typed_config"]["@type"] != hcm["typed_config"]["@type"] {
                    bail!("{}: MERGE with a different typed_config type", at());
                }
                merge(hcm, value);
            }
            ("HTTP_FILTER", "INSERT_BEFORE") => {
                require_inbound_hcm_match(p).with_context(at)?;
                let sub =
                    p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"].as_str();
                if sub != Some(ROUTER) {
                    bail!(
                        "{}: only INSERT_BEFORE {ROUTER} is emulated (got {sub:?})",
                        at()
                    );
                }
                insert_before_router(hcm, value.clone())?;
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

fn require_inbound_hcm_match(p: &Value) -> Result<()> {
    if context(p) != "SIDECAR_INBOUND" {
        bail!(
            "expected context SIDECAR_INBOUND (inbound sidecar only), got {}",
            context(p)
        );
    }
    let name = p["match"]["listener"]["filterChain"]["filter"]["name"].as_str();
    if name != Some(HCM) {
        bail!("expected a match on filter {HCM}, got {name:?}");
    }
    Ok(())
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

/// The HTTP wasm filter istiod generates for a WasmPlugin (before istio-agent's download).
pub fn wasm_plugin_filter(doc: &Doc, pod: &Pod) -> Result<Value> {
    let spec = &doc.value["spec"];
    let at = || format!("{}: {}", doc.at(), doc.id());
    if spec["type"].as_str().is_some_and(|t| t != "HTTP") {
        bail!("{}: only HTTP plugins are emulated", at());
    }
    let modes: Vec<&str> = spec["match"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["mode"].as_str())
        .collect();
    if modes != ["SERVER"] {
        bail!(
            "{}: expected exactly one match, mode SERVER (inbound only), got {modes:?}",
            at()
        );
    }
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
    let mut typed = json!({"@type": WASM_TYPE, "config": config});
    agent_localize(&mut typed, pod).with_context(at)?;
    Ok(json!({"name": name, "typed_config": typed}))
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

/// istio-agent: a remote module is downloaded, its sha256 checked, and replaced by a local file.
pub fn agent_localize(wasm_typed_config: &mut Value, pod: &Pod) -> Result<()> {
    if wasm_typed_config["@type"] != WASM_TYPE {
        bail!("not an HTTP wasm filter configuration");
    }
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

/// The plugin configuration JSON inside a wasm filter configuration.
pub fn plugin_configuration(wasm_typed_config: &Value) -> Option<Value> {
    let s = wasm_typed_config["config"]["configuration"]["value"].as_str()?;
    serde_json::from_str(s).ok()
}
