//! The Istio packaging (envoy/istio/) hangs together, and does what it says with real programs:
//!
//! * the injection template, the WasmPlugins, the EnvoyFilters and the filter's configuration
//!   agree on every name and path (label, cluster, sockets, volumes, probes); the network
//!   filter is the HTTP filter's module and configuration with `"filter":"network"`, on the TCP
//!   chains only, sharing the HTTP filter's VM;
//! * the Envoy configuration Istio would build from them (tests/manifests/src/istio.rs) passes
//!   `envoy --mode validate`, for the WasmPlugins and for the EnvoyFilter-only installation,
//!   with an HTTP port and a TCP port, each installation being the set render.sh writes for it
//!   (`wasmplugin/`, `envoyfilter/`) as `kubectl apply -k` applies it;
//! * end to end: the control container's injected command line, with the pod's paths mapped to a
//!   temporary directory, runs the real `control` against a test Felix on the Policy Sync socket
//!   path of the CSI volume; its injected probes answer; a real Envoy configured as Istio would
//!   configure the pod's inbound listener decides YAO bank requests (200, 403 denied by policy)
//!   and raw TCP connections to a server-first application (greeting delivered, or closed
//!   without a byte);
//! * the inbound MERGE patches do what they are there for: with the HTTP one a forged
//!   x-forwarded-for changes nothing, without it (Istio's default) the forged address is
//!   believed; without the tcp_proxy one a server-first protocol over mTLS stalls for an allowed
//!   client, and leaks nothing to a denied one;
//! * a NETWORK WasmPlugin must list its ports: on an HTTP port it decides HTTP as connections
//!   (an HTTP-only policy then closes every HTTP connection); a module istio-agent refuses is
//!   replaced by a deny-all filter Envoy accepts;
//! * the mesh's stats settings (`meshConfig.defaultConfig.extraStatTags`, `proxyStatsMatcher`)
//!   are ProxyConfig fields naming exactly the filter's labels, equivalent to the documented pod
//!   annotations; with the `stats_config` istio-agent builds from them
//!   ([`istio::stats_config`]) a real Envoy's `/stats/prometheus` shows the filter's families
//!   with their labels, the documented access log format prints each decision and request id,
//!   and the inclusion list is what keeps the stats.

use alp_e2e::certs::Ca;
use alp_e2e::client::{send, Request, Transport};
use alp_e2e::decision_log::{
    access_log_decision, access_log_field, access_log_lines_in, logged_decisions_in, ts_unix_ms,
};
use alp_e2e::envoy::{validate, Envoy};
use alp_e2e::filter_stats::{
    prom_value, prometheus_mismatches, read_both, read_prometheus, wait_for_stats, AlpStats,
};
use alp_e2e::process::{wait_for, Proc};
use alp_e2e::stack::{yaobank_ip, RunDir};
use alp_e2e::tcp_backend::TcpBackend;
use alp_e2e::tcp_client::{self, End, TcpOutcome, TcpTransport};
use alp_e2e::{artifacts, policy, tls};
use alp_filter::config::FilterKind;
use alp_manifests::inject::{self, PathMap, CONTAINER, LABEL};
use alp_manifests::istio::{self, EcdsMode, Pod};
use alp_manifests::rendered::{self, ENVOYFILTER_SET, INSTALL_DIR, WASMPLUGIN_SET};
use alp_manifests::yaml::{self, Doc};
use alp_manifests::{bundled_wasm, felix::TestFelix, render_istio, root};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SOCKET_DIR: &str = "/var/run/calico-alp";
const FELIX_DIR: &str = "/var/run/felix";

fn istio_file(name: &str) -> PathBuf {
    root().join("envoy/istio").join(name)
}

fn strings(v: &Value) -> Vec<String> {
    inject::strings(v)
}

/// The value of `--flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[test]
fn operator_and_helm_values_agree() {
    let operator = inject::values(&istio_file("istio-operator.yaml")).unwrap();
    let helm = inject::values(&istio_file("istiod-values.yaml")).unwrap();
    assert_eq!(
        operator, helm,
        "istio-operator.yaml spec.values and istiod-values.yaml differ"
    );
    assert_eq!(operator["pilot"]["env"]["ENABLE_NATIVE_SIDECARS"], "true");
    assert_eq!(
        operator["sidecarInjectorWebhook"]["defaultTemplates"],
        json!(["sidecar", inject::TEMPLATE])
    );
    // The mesh configuration too: sidecars decode escaped slashes and merge slashes before the
    // filter (docs/istio.md, "Path normalisation").
    let mesh = inject::mesh_config(&istio_file("istio-operator.yaml")).unwrap();
    assert_eq!(
        mesh,
        inject::mesh_config(&istio_file("istiod-values.yaml")).unwrap(),
        "istio-operator.yaml spec.meshConfig and istiod-values.yaml meshConfig differ"
    );
    assert_eq!(
        mesh["pathNormalization"]["normalization"],
        "DECODE_AND_MERGE_SLASHES"
    );
    assert_eq!(
        istio::path_normalization("DECODE_AND_MERGE_SLASHES").unwrap(),
        (true, true, "UNESCAPE_AND_FORWARD"),
        "as istiod maps it (and as envoy/bootstrap.yaml does by default)"
    );
    // The trust domain stays Istio's default, which the filter's trust_domains names.
    assert!(mesh["trustDomain"].is_null() || mesh["trustDomain"] == "cluster.local");
}

#[test]
fn names_and_paths_agree_across_the_packaging() {
    let overlay = inject::overlay(&istio_file("istio-operator.yaml")).unwrap();
    // The label the template sets is what every Istio resource selects.
    assert_eq!(overlay["metadata"]["labels"][LABEL.0], LABEL.1);
    let wasm_plugin =
        yaml::resource(&istio_file("wasmplugin.yaml"), "WasmPlugin", "calico-alp").unwrap();
    assert_eq!(
        wasm_plugin.value["spec"]["selector"]["matchLabels"],
        json!({LABEL.0: LABEL.1})
    );
    let cluster_filter = yaml::resource(
        &istio_file("control-cluster.yaml"),
        "EnvoyFilter",
        "calico-alp-control",
    )
    .unwrap();
    let wasm_filter = yaml::resource(
        &istio_file("envoyfilter-wasm.yaml"),
        "EnvoyFilter",
        "calico-alp-wasm",
    )
    .unwrap();
    for f in [&cluster_filter, &wasm_filter] {
        assert_eq!(
            f.value["spec"]["workloadSelector"]["labels"],
            json!({LABEL.0: LABEL.1}),
            "{}",
            f.id()
        );
        assert_eq!(
            f.namespace(),
            Some("istio-system"),
            "{}: root namespace, all namespaces",
            f.id()
        );
    }
    assert_eq!(wasm_plugin.namespace(), Some("istio-system"));

    // control: a native sidecar (init container, restartPolicy Always).
    let init: Vec<&str> = overlay["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        init.contains(&CONTAINER) && init.contains(&"istio-proxy"),
        "{init:?}"
    );
    assert!(
        overlay["spec"]["containers"].is_null(),
        "nothing in containers: native sidecars only"
    );
    let control = inject::container(&overlay, CONTAINER).unwrap();
    assert_eq!(control["restartPolicy"], "Always");
    let cmd = strings(&control["command"]);
    assert_eq!(cmd.get(1).map(String::as_str), Some("serve"), "{cmd:?}");
    let listen = flag(&cmd, "--listen").expect("--listen");
    let socket = listen
        .strip_prefix("unix:")
        .expect("a unix: listen address");
    let felix = flag(&cmd, "--felix-socket").expect("--felix-socket");
    assert_eq!(
        felix,
        format!("{FELIX_DIR}/nodeagent/socket"),
        "Calico's CSI socket path"
    );

    // Volumes: every mount names a volume of the template; the sockets' directories are mounts.
    let volumes: Vec<&Value> = overlay["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).copied();
    let mounts = |c: &Value| -> Vec<(String, String, bool)> {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["mountPath"].as_str().unwrap().to_string(),
                    m["readOnly"] == true,
                )
            })
            .collect()
    };
    let mount_of = |c: &Value, path: &str| {
        mounts(c)
            .into_iter()
            .find(|(_, p, _)| Path::new(path).starts_with(p))
    };
    let proxy = inject::container(&overlay, "istio-proxy").unwrap();
    for c in [control, proxy] {
        for (name, _, _) in mounts(c) {
            assert!(volume(&name).is_some(), "mount of undefined volume {name}");
        }
    }
    let (sock_vol, sock_dir, ro) =
        mount_of(control, socket).expect("control's socket is on a mount");
    assert!(!ro, "control creates its socket: writable mount");
    assert_eq!(sock_dir, SOCKET_DIR);
    assert!(
        volume(&sock_vol).unwrap()["emptyDir"].is_object(),
        "socket on an emptyDir"
    );
    let (proxy_vol, _, _) =
        mount_of(proxy, socket).expect("istio-proxy mounts control's socket directory");
    assert_eq!(
        proxy_vol, sock_vol,
        "istio-proxy and control share the socket's volume"
    );
    let (felix_vol, felix_dir, _) =
        mount_of(control, felix).expect("the Felix socket is on a mount");
    assert_eq!(felix_dir, FELIX_DIR);
    assert_eq!(
        volume(&felix_vol).unwrap()["csi"]["driver"],
        "csi.tigera.io"
    );

    // Probes: control health liveness|readiness on the same address.
    for (probe, which) in [
        ("livenessProbe", "liveness"),
        ("readinessProbe", "readiness"),
    ] {
        let p = strings(&control[probe]["exec"]["command"]);
        assert_eq!(p.first(), cmd.first(), "{probe} runs the same binary");
        assert_eq!(&p[1..3], ["health", which], "{probe}: {p:?}");
        assert_eq!(
            flag(&p, "--listen"),
            Some(listen),
            "{probe} probes where control listens"
        );
        assert!(
            control[probe]["timeoutSeconds"].as_u64().unwrap() >= 3,
            "control health waits up to 2 s"
        );
    }
    // Runs as istio-proxy's user, non-root, nothing extra; small requests.
    let sc = &control["securityContext"];
    assert_eq!(
        (sc["runAsUser"].as_u64(), sc["runAsGroup"].as_u64()),
        (Some(1337), Some(1337))
    );
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        control["resources"]["requests"],
        json!({"cpu": "10m", "memory": "32Mi"})
    );

    // The cluster the filter calls is control's socket.
    let patches = cluster_filter.value["spec"]["configPatches"]
        .as_array()
        .unwrap();
    let cluster = patches.iter().find(|p| p["applyTo"] == "CLUSTER").unwrap();
    let cluster_name = cluster["patch"]["value"]["name"].as_str().unwrap();
    let pipe = cluster["patch"]["value"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        ["endpoint"]["address"]["pipe"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(
        pipe, socket,
        "the cluster points at control's --listen socket"
    );

    // Both installations configure the filter identically, and the filter accepts it.
    let plugin_config = wasm_plugin.value["spec"]["pluginConfig"].clone();
    assert_eq!(plugin_config["control_cluster"], cluster_name);
    let ext = wasm_filter.value["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .unwrap();
    let typed = &ext["patch"]["value"]["typed_config"];
    assert_eq!(istio::plugin_configuration(typed).unwrap(), plugin_config);
    let text = serde_json::to_string(&plugin_config).unwrap();
    alp_filter::config::Config::parse(Some(text.as_bytes()))
        .unwrap_or_else(|e| panic!("the filter refuses pluginConfig {text}: {e}"));
    // Peers of another trust domain are refused (the mesh's: Istio's default cluster.local).
    assert_eq!(
        plugin_config["trust_domains"],
        json!([alp_e2e::certs::TRUST_DOMAIN])
    );
    let remote = &typed["config"]["vm_config"]["code"]["remote"];
    assert_eq!(remote["http_uri"]["uri"], wasm_plugin.value["spec"]["url"]);
    assert_eq!(remote["sha256"], wasm_plugin.value["spec"]["sha256"]);
    assert_eq!(typed["config"]["failure_policy"], "FAIL_CLOSED");
    assert_eq!(wasm_plugin.value["spec"]["failStrategy"], "FAIL_CLOSE");

    // The WasmPlugin's CEL rules (the schema check does not run them).
    let url = wasm_plugin.value["spec"]["url"].as_str().unwrap();
    assert!(
        ["https://", "oci://"].iter().any(|s| url.starts_with(s)),
        "{url}"
    );
    let s = &wasm_plugin.value["spec"];
    assert!(
        [&s["selector"], &s["targetRef"], &s["targetRefs"]]
            .iter()
            .filter(|v| !v.is_null())
            .count()
            <= 1,
        "only one of selector, targetRef, targetRefs"
    );
}

/// Where the filter's VM can be named, it has a distinctive vm_id: Envoy keeps shared data (the
/// policy snapshot) per vm_id, and an empty one is shared by every plugin that leaves it empty.
#[test]
fn every_filter_configuration_that_can_name_its_vm_does() {
    // The EnvoyFilter installation.
    let wasm_filter = yaml::resource(
        &istio_file("envoyfilter-wasm.yaml"),
        "EnvoyFilter",
        "calico-alp-wasm",
    )
    .unwrap();
    // Both filters, HTTP and network: one VM id, one snapshot for both.
    let vm_ids: Vec<&Value> = wasm_filter.value["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .map(|p| &p["patch"]["value"]["typed_config"]["config"]["vm_config"]["vm_id"])
        .collect();
    assert_eq!(vm_ids, [&json!("calico-alp"), &json!("calico-alp")]);
    // The WasmPlugin cannot: its vmConfig has env only (istiod sets no vm_id). If a later Istio
    // adds a field for it, this fails: set it in wasmplugin.yaml then.
    let crds = yaml::load_file(
        &alp_manifests::shared()
            .unwrap()
            .join("schemas/istio-crds.yaml"),
    )
    .unwrap();
    let crd = crds
        .iter()
        .find(|d| d.name() == "wasmplugins.extensions.istio.io")
        .expect("the WasmPlugin CRD");
    let mut versions = 0;
    for v in crd.value["spec"]["versions"].as_array().unwrap() {
        let vm = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["vmConfig"];
        let fields: Vec<&String> = vm["properties"].as_object().unwrap().keys().collect();
        assert_eq!(fields, ["env"], "WasmPlugin {} vmConfig", v["name"]);
        versions += 1;
    }
    assert!(versions > 0);
    for (file, name) in [
        ("wasmplugin.yaml", "calico-alp"),
        ("wasmplugin-tcp.yaml", "calico-alp-tcp"),
    ] {
        let plugin = yaml::resource(&istio_file(file), "WasmPlugin", name).unwrap();
        assert!(plugin.value["spec"]["vmConfig"].get("vmId").is_none());
    }
    let doc = std::fs::read_to_string(root().join("docs/istio.md")).unwrap();
    assert!(
        doc.contains("vm_id"),
        "docs/istio.md says what the WasmPlugin's empty vm_id means"
    );
    // The harness's bootstrap (local stack, compose, end-to-end tests): one per workload, as
    // each workload has its own snapshot, shared by its HTTP and network filters (rendered and
    // checked by tests/tests/config.rs).
    let template = std::fs::read_to_string(root().join("envoy/bootstrap.yaml")).unwrap();
    let vm_ids: Vec<&str> = template
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("vm_id:"))
        .collect();
    assert!(!vm_ids.is_empty());
    for id in vm_ids {
        assert_eq!(id, "vm_id: calico-alp-{{NAME}}");
    }
}

/// The network filter's resources: the HTTP filter's module, pods and failure handling, its
/// configuration with `"filter":"network"`, on TCP chains only, and the tcp_proxy setting it
/// relies on under mTLS, the same in both installations.
#[test]
fn the_network_filter_is_the_http_filter_deciding_connections() {
    let http = yaml::resource(&istio_file("wasmplugin.yaml"), "WasmPlugin", "calico-alp").unwrap();
    let tcp = yaml::resource(
        &istio_file("wasmplugin-tcp.yaml"),
        "WasmPlugin",
        "calico-alp-tcp",
    )
    .unwrap();
    let connect = yaml::resource(
        &istio_file("wasmplugin-tcp.yaml"),
        "EnvoyFilter",
        "calico-alp-tcp-connect",
    )
    .unwrap();
    let alt = yaml::resource(
        &istio_file("envoyfilter-wasm.yaml"),
        "EnvoyFilter",
        "calico-alp-wasm",
    )
    .unwrap();
    let (h, t) = (&http.value["spec"], &tcp.value["spec"]);
    for key in [
        "selector",
        "url",
        "sha256",
        "imagePullPolicy",
        "phase",
        "failStrategy",
    ] {
        assert_eq!(t[key], h[key], "WasmPlugin calico-alp-tcp {key}");
    }
    assert_eq!(
        (&h["type"], &t["type"]),
        (&json!("HTTP"), &json!("NETWORK"))
    );
    assert_eq!(tcp.namespace(), Some("istio-system"));
    assert!(t["targetRef"].is_null() && t["targetRefs"].is_null());
    assert_eq!(connect.namespace(), Some("istio-system"));
    assert_eq!(
        connect.value["spec"]["workloadSelector"]["labels"],
        json!({LABEL.0: LABEL.1})
    );

    // The configuration: the HTTP filter's, plus "filter":"network", which the filter accepts.
    let mut want = h["pluginConfig"].clone();
    want["filter"] = json!("network");
    assert_eq!(t["pluginConfig"], want);
    let parse = |v: &Value| {
        let text = serde_json::to_string(v).unwrap();
        alp_filter::config::Config::parse(Some(text.as_bytes()))
            .unwrap_or_else(|e| panic!("the filter refuses {text}: {e}"))
    };
    assert_eq!(parse(&want).filter, FilterKind::Network);
    assert_eq!(parse(&h["pluginConfig"]).filter, FilterKind::Http);

    // Inbound only, and only the listed ports: without ports istiod would put it in front of
    // every HTTP connection manager too (tests/manifests/src/istio.rs wasm_plugin_selects).
    let matches = t["match"].as_array().unwrap();
    assert!(!matches.is_empty());
    for m in matches {
        assert_eq!(m["mode"], "SERVER");
        assert!(
            m["ports"].as_array().is_some_and(|p| !p.is_empty()),
            "a NETWORK WasmPlugin match without ports selects the HTTP ports too: {m}"
        );
    }
    assert!(istio::wasm_plugin_selects(t, istio::TCP_PORT));
    assert!(!istio::wasm_plugin_selects(t, istio::HTTP_PORT));

    // The EnvoyFilter installation: the same module and VM for both filters, the network one
    // configured as the WasmPlugin, before every inbound tcp_proxy.
    let patches = alt.value["spec"]["configPatches"].as_array().unwrap();
    let ext = |ty: &str| {
        let p: Vec<&Value> = patches
            .iter()
            .filter(|p| p["applyTo"] == "EXTENSION_CONFIG")
            .map(|p| &p["patch"]["value"])
            .filter(|v| v["typed_config"]["@type"] == ty)
            .collect();
        assert_eq!(p.len(), 1, "one EXTENSION_CONFIG of type {ty}");
        p[0]
    };
    let (http_ext, net_ext) = (ext(istio::WASM_TYPE), ext(istio::NETWORK_WASM_TYPE));
    assert_eq!(
        net_ext["typed_config"]["config"]["vm_config"],
        http_ext["typed_config"]["config"]["vm_config"],
        "the same vm_id, runtime and module: one VM, one policy snapshot"
    );
    assert_eq!(
        net_ext["typed_config"]["config"]["failure_policy"],
        "FAIL_CLOSED"
    );
    assert_ne!(net_ext["name"], http_ext["name"]);
    assert_eq!(
        istio::plugin_configuration(&net_ext["typed_config"]).unwrap(),
        want
    );
    assert_eq!(
        istio::plugin_configuration(&http_ext["typed_config"]).unwrap(),
        h["pluginConfig"]
    );
    let on_tcp_proxy = |p: &&Value, op: &str| {
        p["applyTo"] == "NETWORK_FILTER"
            && p["patch"]["operation"] == op
            && p["match"]["context"] == "SIDECAR_INBOUND"
            && p["match"]["listener"]["filterChain"]["filter"]["name"] == istio::TCP_PROXY
    };
    let inserts: Vec<&Value> = patches
        .iter()
        .filter(|p| on_tcp_proxy(p, "INSERT_BEFORE"))
        .collect();
    assert_eq!(inserts.len(), 1);
    assert_eq!(inserts[0]["patch"]["value"]["name"], net_ext["name"]);
    assert_eq!(
        inserts[0]["patch"]["value"]["config_discovery"]["type_urls"],
        json!([istio::NETWORK_WASM_TYPE, istio::NETWORK_RBAC_TYPE])
    );

    // The tcp_proxy setting: the same patch in both installations, and the only patch of
    // calico-alp-tcp-connect. Envoy requires max_early_data_bytes with any mode but IMMEDIATE.
    let merge_of = |f: &Doc| -> Value {
        let m: Vec<&Value> = f.value["spec"]["configPatches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| on_tcp_proxy(p, "MERGE"))
            .collect();
        assert_eq!(m.len(), 1, "{}", f.id());
        m[0].clone()
    };
    assert_eq!(merge_of(&connect), merge_of(&alt));
    assert_eq!(
        connect.value["spec"]["configPatches"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let v = &merge_of(&connect)["patch"]["value"]["typed_config"];
    assert_eq!(v["@type"], istio::TCP_PROXY_TYPE);
    assert_eq!(v["upstream_connect_mode"], "ON_DOWNSTREAM_TLS_HANDSHAKE");
    assert_eq!(v["max_early_data_bytes"], 65536);
}

#[test]
fn the_template_renders_only_what_istiod_provides() {
    let t = inject::template_text(&istio_file("istio-operator.yaml")).unwrap();
    let r = inject::render(&t, 1000650000, 1000650000).unwrap();
    assert!(r.contains("runAsUser: 1000650000") && r.contains("runAsGroup: 1000650000"));
    assert!(inject::render("{{ .Values.global.hub }}", 1, 1).is_err());
}

#[test]
fn render_fills_every_placeholder_and_refuses_bad_input() {
    let (_, sha) = bundled_wasm().unwrap();
    let dir = RunDir::create("alp-render").unwrap();
    let out = dir.path.join("istio");
    render_istio(
        &out,
        "https://example.com/calico-alp/v1/calico-alp.wasm",
        "example.com/calico-alp/control:v1",
    )
    .unwrap();
    let plugin = load(&out, WASMPLUGIN_SET, "WasmPlugin", "calico-alp");
    assert_eq!(plugin.value["spec"]["sha256"], sha.as_str());
    assert_eq!(
        plugin.value["spec"]["url"],
        "https://example.com/calico-alp/v1/calico-alp.wasm"
    );
    for input in ["istio-operator.yaml", "istiod-values.yaml"] {
        let overlay = inject::overlay(&out.join(INSTALL_DIR).join(input)).unwrap();
        assert_eq!(
            inject::container(&overlay, CONTAINER).unwrap()["image"],
            "example.com/calico-alp/control:v1",
            "{input}"
        );
    }
    for f in alp_manifests::files_under(&out, &[".yaml"]).unwrap() {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(".invalid") && !text.contains(&"0".repeat(64)),
            "{}",
            f.display()
        );
    }
    // Every committed manifest has its rendered counterpart, among the install inputs or in
    // the sets (tests/render_sets.rs checks what goes where), but the optional native module's,
    // which only `--native-image` renders (tests/native.rs).
    for f in alp_manifests::files_under(&root().join("envoy/istio"), &[".yaml"]).unwrap() {
        let name = f.file_name().unwrap();
        if rendered::NATIVE_FILES.iter().any(|n| name == *n) {
            assert!(!out.join(INSTALL_DIR).join(name).exists());
            continue;
        }
        assert!(
            std::iter::once(INSTALL_DIR)
                .chain(rendered::SETS)
                .any(|d| out.join(d).join(name).is_file()),
            "{} not rendered",
            f.display()
        );
    }
    // The trust domains: cluster.local unless given, in every configuration of the filter (the
    // two WasmPlugins, the HTTP and network filters of the EnvoyFilter).
    let filter_configs = |dir: &Path| -> Vec<Value> {
        let mut out = vec![];
        for name in ["calico-alp", "calico-alp-tcp"] {
            let plugin = load(dir, WASMPLUGIN_SET, "WasmPlugin", name);
            out.push(plugin.value["spec"]["pluginConfig"]["trust_domains"].clone());
        }
        let alt = load(dir, ENVOYFILTER_SET, "EnvoyFilter", "calico-alp-wasm");
        for p in alt.value["spec"]["configPatches"].as_array().unwrap() {
            if p["applyTo"] == "EXTENSION_CONFIG" {
                let config = istio::plugin_configuration(&p["patch"]["value"]["typed_config"]);
                out.push(config.unwrap()["trust_domains"].clone());
            }
        }
        out
    };
    assert_eq!(filter_configs(&out), vec![json!(["cluster.local"]); 4]);
    // The network WasmPlugin's ports: the committed example unless given.
    let tcp_ports = |dir: &Path| -> Value {
        let p = load(dir, WASMPLUGIN_SET, "WasmPlugin", "calico-alp-tcp");
        p.value["spec"]["match"][0]["ports"].clone()
    };
    assert_eq!(tcp_ports(&out), json!([{"number": 5432}]));
    let custom = dir.path.join("custom-td");
    let status = std::process::Command::new("bash")
        .arg(istio_file("render.sh"))
        .args([
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a/b:c",
            "--trust-domain",
            "prod.example.com",
            "--trust-domain",
            "old_td",
            "--tcp-port",
            "3306",
            "--tcp-port",
            "27017",
            "--out",
        ])
        .arg(&custom)
        .status()
        .unwrap();
    assert!(status.success());
    let want = json!(["prod.example.com", "old_td"]);
    assert_eq!(filter_configs(&custom), vec![want; 4]);
    assert_eq!(
        tcp_ports(&custom),
        json!([{"number": 3306}, {"number": 27017}])
    );

    // OCI: the digest is the manifest's, given or pinned.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let oci = dir.path.join("oci");
    let status = std::process::Command::new("bash")
        .arg(istio_file("render.sh"))
        .args([
            "--wasm-url",
            &format!("oci://example.com/f@{digest}"),
            "--control-image",
            "a/b:c",
            "--out",
        ])
        .arg(&oci)
        .status()
        .unwrap();
    assert!(status.success());
    let plugin = load(&oci, WASMPLUGIN_SET, "WasmPlugin", "calico-alp");
    assert_eq!(plugin.value["spec"]["sha256"], "ab".repeat(32));
    for bad in [
        vec![
            "--wasm-url",
            "oci://example.com/f:v1",
            "--control-image",
            "a/b:c",
        ],
        vec![
            "--wasm-url",
            "ftp://example.com/f.wasm",
            "--control-image",
            "a/b:c",
        ],
        vec!["--wasm-url", "https://example.com/f.wasm"],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a b",
        ],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a/b:c",
            "--trust-domain",
            "Cluster.Local\"]",
        ],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a/b:c",
            "--tcp-port",
            "0",
        ],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a/b:c",
            "--tcp-port",
            "5432}]",
        ],
        // Contradictory, repeated or missing values.
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a/b:c",
            "--no-tcp",
            "--tcp-port",
            "5432",
        ],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a/b:c",
            "--tcp-port",
            "3306",
            "--tcp-port",
            "3306",
        ],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--wasm-url",
            "https://example.com/g.wasm",
            "--control-image",
            "a/b:c",
        ],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
        ],
        vec![
            "--wasm-url",
            "https://example.com/f.wasm",
            "--control-image",
            "a/b:c",
            "--no-such-option",
        ],
    ] {
        let out = std::process::Command::new("bash")
            .arg(istio_file("render.sh"))
            .args(&bad)
            .args(["--out"])
            .arg(dir.path.join("bad"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} must be refused");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("render: error"),
            "{bad:?}"
        );
        assert!(
            !dir.path.join("bad").exists(),
            "{bad:?}: refused, yet wrote"
        );
    }
}

/// A pod's worth of stand-ins under `dir`: the two mounted directories, the mesh CA and the
/// workload's certificate (summary), the module "downloaded" by istio-agent.
struct PodEnv {
    pod: Pod,
    ca: Ca,
    socket_dir: PathBuf,
    felix_dir: PathBuf,
}

fn pod_env(dir: &Path) -> PodEnv {
    let (wasm, wasm_sha256) = bundled_wasm().unwrap();
    let ca = Ca::create(&dir.join("certs")).unwrap();
    let server = ca.issue("server-summary", "summary", true).unwrap();
    let socket_dir = dir.join("pod/var/run/calico-alp");
    let felix_dir = dir.join("pod/var/run/felix");
    std::fs::create_dir_all(&socket_dir).unwrap();
    std::fs::create_dir_all(felix_dir.join("nodeagent")).unwrap();
    PodEnv {
        pod: Pod {
            paths: PathMap(vec![
                (SOCKET_DIR.to_string(), socket_dir.clone()),
                (FELIX_DIR.to_string(), felix_dir.clone()),
            ]),
            wasm,
            wasm_sha256,
            ca_file: ca.cert_file.clone(),
            server_cert: server.cert,
            server_key: server.key,
            trust_domain: alp_e2e::certs::TRUST_DOMAIN.to_string(),
            app: "summary: ok".to_string(),
            tcp_app: dir.join("pod/tcp-app.sock"),
            path_normalization: inject::mesh_config(&istio_file("istio-operator.yaml")).unwrap()
                ["pathNormalization"]["normalization"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        },
        ca,
        socket_dir,
        felix_dir,
    }
}

/// The rendered manifests (https:// module URL: checksum of dist/calico-alp.wasm).
fn rendered(dir: &Path) -> PathBuf {
    let out = dir.join("rendered");
    render_istio(
        &out,
        "https://modules.example.com/calico-alp.wasm",
        "example.com/calico-alp/control:test",
    )
    .unwrap();
    out
}

/// The resource `kind` `name` of the rendered set `set` (`r/<set>/`, as `kubectl apply -k`
/// reads it).
fn load(r: &Path, set: &str, kind: &str, name: &str) -> Doc {
    let docs = rendered::kustomize_build(&r.join(set)).unwrap();
    rendered::pick(&docs, kind, name).unwrap_or_else(|e| panic!("{set}: {e:#}"))
}

/// The rendered set `set` as `kubectl apply -k` applies it, less its PeerAuthentication (the
/// STRICT mutual TLS the bootstrap's inbound chains reproduce): the EnvoyFilters and
/// WasmPlugins Istio turns into the sidecar's configuration.
fn set_filters(r: &Path, set: &str) -> Vec<Doc> {
    let mut out = vec![];
    for d in rendered::kustomize_build(&r.join(set)).unwrap() {
        if d.gvk().is_some_and(|(_, k)| k == "PeerAuthentication") {
            assert_eq!(
                d.value["spec"]["mtls"]["mode"],
                "STRICT",
                "{set}: {}",
                d.id()
            );
        } else {
            out.push(d);
        }
    }
    out
}

#[test]
fn envoy_validates_what_istio_would_configure() {
    let envoy = artifacts::envoy().expect("envoy is required for this test");
    let dir = RunDir::create("alp-istio-validate").unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    let cluster = load(&r, WASMPLUGIN_SET, "EnvoyFilter", "calico-alp-control");
    let plugin = load(&r, WASMPLUGIN_SET, "WasmPlugin", "calico-alp");
    let tcp = load(&r, WASMPLUGIN_SET, "WasmPlugin", "calico-alp-tcp");
    let connect = load(&r, WASMPLUGIN_SET, "EnvoyFilter", "calico-alp-tcp-connect");
    let alt = load(&r, ENVOYFILTER_SET, "EnvoyFilter", "calico-alp-wasm");
    // Each installation is its rendered set as kubectl applies it (every file of the directory).
    let wasm_set = set_filters(&r, WASMPLUGIN_SET);
    let wasm_plugins: Vec<&Doc> = wasm_set.iter().collect();
    let ids = |docs: &[&Doc]| docs.iter().map(|d| d.id()).collect::<Vec<_>>();
    assert_eq!(
        ids(&wasm_plugins),
        ids(&[&cluster, &plugin, &tcp, &connect]),
        "the WasmPlugin set"
    );
    let envoyfilter_set = set_filters(&r, ENVOYFILTER_SET);
    let alt_set: Vec<&Doc> = envoyfilter_set.iter().collect();
    assert_eq!(ids(&alt_set), ids(&[&cluster, &alt]), "the EnvoyFilter set");
    // `--mode validate` checks a config_discovery stanza but does not load what it would
    // discover: the inline variant is the one that validates the discovered configuration.
    // "refused": what istio-agent sends when it cannot fetch or verify the module (deny-all
    // RBAC filters), which the EnvoyFilter's type_urls must accept.
    let variants: [(&str, Vec<&Doc>, EcdsMode); 5] = [
        ("wasmplugin", wasm_plugins.clone(), EcdsMode::Inline),
        ("wasmplugin-refused", wasm_plugins, EcdsMode::Refused),
        ("envoyfilter-inline", alt_set.clone(), EcdsMode::Inline),
        ("envoyfilter-ecds", alt_set.clone(), EcdsMode::File),
        ("envoyfilter-refused", alt_set, EcdsMode::Refused),
    ];
    let names = |filters: &Value| -> Vec<String> {
        filters
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut files = vec![];
    for (name, docs, ecds) in variants {
        let config = istio::bootstrap(&docs, &env.pod, &dir.path, ecds).unwrap();
        let listeners = &config["static_resources"]["listeners"];
        assert_eq!(listeners[0]["name"], istio::INBOUND_LISTENER);
        let http_chain = &listeners[0]["filter_chains"][0]["filters"];
        // No network filter in front of the HTTP connection manager: HTTP is decided per
        // request, by the HTTP filter only.
        assert_eq!(names(http_chain), [istio::HCM], "{name}: HTTP chain");
        let hcm = &http_chain[0]["typed_config"];
        assert_eq!(
            hcm["use_remote_address"], true,
            "{name}: the MERGE patch applied"
        );
        // meshConfig.pathNormalization DECODE_AND_MERGE_SLASHES, as istiod configures it.
        assert_eq!(
            (
                &hcm["normalize_path"],
                &hcm["merge_slashes"],
                &hcm["path_with_escaped_slashes_action"]
            ),
            (&json!(true), &json!(true), &json!("UNESCAPE_AND_FORWARD")),
            "{name}"
        );
        assert_eq!(
            names(&hcm["http_filters"]),
            ["istio-system.calico-alp", istio::ROUTER],
            "{name}"
        );
        // The TCP chain: the network filter, then tcp_proxy connecting after the handshake.
        assert_eq!(listeners[1]["name"], istio::TCP_LISTENER);
        let tcp_chain = &listeners[1]["filter_chains"][0]["filters"];
        assert_eq!(
            names(tcp_chain),
            ["istio-system.calico-alp-tcp", istio::TCP_PROXY],
            "{name}: TCP chain"
        );
        let tcp_proxy = &tcp_chain[1]["typed_config"];
        assert_eq!(
            (
                &tcp_proxy["upstream_connect_mode"],
                &tcp_proxy["max_early_data_bytes"]
            ),
            (&json!("ON_DOWNSTREAM_TLS_HANDSHAKE"), &json!(65536)),
            "{name}"
        );
        if ecds == EcdsMode::Inline {
            let net = &tcp_chain[0]["typed_config"];
            assert_eq!(net["@type"], istio::NETWORK_WASM_TYPE, "{name}");
            assert_eq!(
                istio::plugin_configuration(net).unwrap()["filter"],
                "network"
            );
        }
        let file = dir.path.join(format!("envoy-{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        files.push((name, file));
    }
    // The CRD schema does not look into patch values (istiod reads them against Envoy's API);
    // Envoy does: a misspelt tcp_proxy field is refused.
    let mut typo = connect.clone();
    let v = &mut typo.value["spec"]["configPatches"][0]["patch"]["value"]["typed_config"];
    let mode = v
        .as_object_mut()
        .unwrap()
        .remove("upstream_connect_mode")
        .unwrap();
    v["upstream_connnect_mode"] = mode;
    let config = istio::bootstrap(
        &[&cluster, &plugin, &tcp, &typo],
        &env.pod,
        &dir.path,
        EcdsMode::Inline,
    )
    .unwrap();
    let typo_file = dir.path.join("envoy-typo.json");
    std::fs::write(&typo_file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    // Envoy takes a second or so per configuration: all at once.
    std::thread::scope(|scope| {
        let envoy = &envoy;
        let typo = scope.spawn(|| validate(envoy, &typo_file));
        let checks: Vec<_> = files
            .iter()
            .map(|(name, file)| (name, scope.spawn(move || validate(envoy, file))))
            .collect();
        for (name, check) in checks {
            check
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        let err = typo.join().unwrap().unwrap_err();
        assert!(
            format!("{err:#}").contains("upstream_connnect_mode"),
            "{err:#}"
        );
    });
    // The HTTP filter alone (no TCP ports to enforce): Istio's TCP chain is left as it is.
    let config =
        istio::bootstrap(&[&cluster, &plugin], &env.pod, &dir.path, EcdsMode::Inline).unwrap();
    let tcp_chain = &config["static_resources"]["listeners"][1]["filter_chains"][0]["filters"];
    assert_eq!(names(tcp_chain), [istio::TCP_PROXY]);
    assert!(tcp_chain[0]["typed_config"]["upstream_connect_mode"].is_null());
    // The unrendered manifests would not get past istio-agent (placeholder checksum).
    for (file, name) in [
        ("wasmplugin.yaml", "calico-alp"),
        ("wasmplugin-tcp.yaml", "calico-alp-tcp"),
    ] {
        let raw = yaml::resource(&istio_file(file), "WasmPlugin", name).unwrap();
        let err =
            istio::bootstrap(&[&cluster, &raw], &env.pod, &dir.path, EcdsMode::Inline).unwrap_err();
        assert!(format!("{err:#}").contains("checksum"), "{err:#}");
    }
}

/// The control container of the rendered template, started as the kubelet would (its command,
/// pod paths mapped), and its probes.
struct InjectedControl {
    proc: Proc,
    liveness: Vec<String>,
    readiness: Vec<String>,
    paths: PathMap,
    binary: PathBuf,
}

impl InjectedControl {
    fn start(rendered: &Path, env: &PodEnv, dir: &Path) -> InjectedControl {
        let binary = artifacts::control().expect("the control binary is required");
        let overlay =
            inject::overlay(&rendered.join(INSTALL_DIR).join("istio-operator.yaml")).unwrap();
        let c = inject::container(&overlay, CONTAINER).unwrap();
        let paths = PathMap(env.pod.paths.0.clone());
        let cmd = paths.command(&strings(&c["command"]), &binary).unwrap();
        let proc = Proc::spawn("control", cmd, &dir.join("control.log")).unwrap();
        InjectedControl {
            proc,
            liveness: strings(&c["livenessProbe"]["exec"]["command"]),
            readiness: strings(&c["readinessProbe"]["exec"]["command"]),
            paths,
            binary,
        }
    }

    /// Runs a probe command as the kubelet would: exit status 0 means success.
    fn probe(&self, cmd: &[String]) -> bool {
        self.paths
            .command(cmd, &self.binary)
            .unwrap()
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn wait_ready(&mut self) {
        let ok = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
            self.probe(&self.readiness).then_some(())
        });
        assert!(
            ok.is_some(),
            "the injected readiness probe never passed; control log:\n{}",
            self.proc.log_tail(30)
        );
    }
}

fn start_envoy(config: &Value, dir: &Path, name: &str) -> Envoy {
    let envoy = artifacts::envoy().expect("envoy is required for this test");
    let file = dir.join(format!("envoy-{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let run = dir.join(format!("envoy-{name}"));
    std::fs::create_dir_all(&run).unwrap();
    Envoy::start(&envoy, &[], &file, &run, 2, Duration::from_secs(30)).unwrap()
}

fn mtls(env: &PodEnv, sa: &str) -> Transport {
    Transport::Tls {
        ca: env.ca.cert_file.clone(),
        client: Some(env.ca.issue(&format!("client-{sa}"), sa, false).unwrap()),
    }
}

/// Sends until the filter has its first snapshot (503 "policy not synchronised" before).
fn first_decision(envoy: &Envoy, req: &Request) -> alp_e2e::Outcome {
    let addr = envoy.listeners[istio::INBOUND_LISTENER];
    let mut last = None;
    let got = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        let o = send(addr, req).unwrap();
        let synced = o.status().is_some_and(|s| s != 503);
        last = Some(o.clone());
        synced.then_some(o)
    });
    got.unwrap_or_else(|| {
        panic!(
            "no decision within 20 s; last: {:?}",
            last.map(|o| o.summary())
        )
    })
}

/// What the pod's TCP application (a server-first protocol, as MySQL or SMTP) sends first.
const GREETING: &[u8] = b"220 summary-tcp ready\r\n";

/// A raw TCP client presenting service account `sa`'s certificate.
fn tcp_mtls(env: &PodEnv, sa: &str) -> TcpTransport {
    let cert = env
        .ca
        .issue(&format!("tcp-client-{sa}"), sa, false)
        .unwrap();
    TcpTransport::Tls(tls::client_config(&env.ca.cert_file, &cert).unwrap())
}

/// One server-first exchange on the TCP port: wait for the greeting, send `payload`, read its
/// echo.
fn tcp_exchange(envoy: &Envoy, from: IpAddr, t: &TcpTransport, payload: &[u8]) -> TcpOutcome {
    let addr = envoy.listeners[istio::TCP_LISTENER];
    tcp_client::dial(addr, Some(from), t, GREETING.len(), payload).unwrap()
}

/// Exchanges until one passes. Before the filter's first snapshot connections are closed, as
/// soon as they are accepted: the TLS handshake itself may fail then.
fn first_tcp_pass(envoy: &Envoy, from: IpAddr, t: &TcpTransport, payload: &[u8]) -> TcpOutcome {
    let addr = envoy.listeners[istio::TCP_LISTENER];
    let want = [GREETING, payload].concat();
    let mut last = String::new();
    let got =
        wait_for(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || match tcp_client::dial(addr, Some(from), t, GREETING.len(), payload) {
                Ok(o) if o.passed(&want) => Some(o),
                Ok(o) => {
                    last = o.summary();
                    None
                }
                Err(e) => {
                    last = format!("{e:#}");
                    None
                }
            },
        );
    got.unwrap_or_else(|| panic!("no TCP connection passed within 20 s; last: {last}"))
}

/// Waits until the filter's metric `family` with `labels` (flushed on its tick; summed over
/// its series) is at least `min`.
fn wait_metric(envoy: &Envoy, family: &str, labels: &[(&str, &str)], min: u64) -> AlpStats {
    wait_for_stats(envoy, |s| s.metric(family, labels) >= min)
        .unwrap_or_else(|s| panic!("{family}{labels:?} never reached {min}: {:#?}", s.0))
}

const DENIED: [(&str, &str); 1] = [("alp_decision", "denied")];
const ALLOWED: [(&str, &str); 1] = [("alp_decision", "allowed")];

fn yaobank_decisions(variant: &str) {
    require_tools();
    let dir = RunDir::create(&format!("alp-istio-{variant}")).unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    // Felix, as the CSI volume presents it in the pod.
    let summary = std::fs::read_to_string(artifacts::yaobank_updates("summary")).unwrap();
    let _felix = TestFelix::start(&env.felix_dir.join("nodeagent/socket"), &summary).unwrap();
    let mut control = InjectedControl::start(&r, &env, &dir.path);
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            control.probe(&control.liveness).then_some(())
        })
        .is_some(),
        "the injected liveness probe never passed"
    );
    control.wait_ready();
    assert!(env.socket_dir.join("control.sock").exists());

    // The rendered set of the variant, every file of it, as `kubectl apply -k` applies it.
    let docs_owned = set_filters(&r, variant);
    let docs: Vec<&Doc> = docs_owned.iter().collect();
    // The EnvoyFilter installation keeps its config_discovery stanza: Envoy loads the filter's
    // configuration through extension config discovery (from a file instead of istiod).
    let ecds = if variant == "wasmplugin" {
        EcdsMode::Inline
    } else {
        EcdsMode::File
    };
    let config = istio::bootstrap(&docs, &env.pod, &dir.path, ecds).unwrap();
    let backend = TcpBackend::start(&env.pod.tcp_app, GREETING).unwrap();
    let envoy = start_envoy(&config, &dir.path, variant);

    // customer -> summary: allowed (service account customer, from customer's address).
    let customer = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(&env, "customer"));
    let o = first_decision(&envoy, &customer);
    assert_eq!(
        o.summary(),
        "200 summary: ok",
        "{variant}: customer -> summary"
    );
    // database -> summary: refused by the policy.
    let database = Request::get("/")
        .from_ip(yaobank_ip("database"))
        .transport(mtls(&env, "database"));
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &database).unwrap();
    assert_eq!(
        o.summary(),
        "403 denied by policy",
        "{variant}: database -> summary"
    );
    // The shipped trust_domains: customer's certificate naming another trust domain first (a
    // second URI SAN of the mesh gets it past Envoy's SAN check) is refused.
    let two_sans = env
        .ca
        .issue_with_uris(
            "client-two-sans",
            &[
                "spiffe://evil.example/ns/default/sa/customer",
                &alp_e2e::certs::spiffe_id("customer"),
            ],
            false,
        )
        .unwrap();
    let foreign = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(Transport::Tls {
            ca: env.ca.cert_file.clone(),
            client: Some(two_sans),
        });
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &foreign).unwrap();
    assert_eq!(
        o.summary(),
        "403 invalid peer identity",
        "{variant}: a principal of another trust domain"
    );
    // Without a client certificate STRICT mTLS refuses the connection itself.
    let anonymous = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(Transport::Tls {
            ca: env.ca.cert_file.clone(),
            client: None,
        });
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &anonymous).unwrap();
    assert!(
        o.status().is_none(),
        "{variant}: no client certificate: {}",
        o.summary()
    );

    // The TCP port (server-first: the application greets, then echoes), decided per
    // connection by the network filter, from the same snapshot. customer: allowed, the
    // greeting and the echo pass.
    let customer_tcp = tcp_mtls(&env, "customer");
    let o = first_tcp_pass(
        &envoy,
        yaobank_ip("customer"),
        &customer_tcp,
        b"ping from customer",
    );
    assert!(backend.saw(b"ping from customer"), "{variant}");
    // database: closed without a byte of the greeting; nothing it sent reached the application.
    let o2 = tcp_exchange(
        &envoy,
        yaobank_ip("database"),
        &tcp_mtls(&env, "database"),
        b"ping from database",
    );
    assert!(
        o2.closed_silently(),
        "{variant}: database -> summary over TCP: {} (customer: {})",
        o2.summary(),
        o.summary()
    );
    assert!(!backend.saw(b"ping from database"), "{variant}");
    wait_metric(&envoy, "alp_connections_total", &DENIED, 1);
    wait_metric(&envoy, "alp_connections_total", &ALLOWED, 1);

    // control's probes follow it: stopped, both fail.
    control.proc.stop(Duration::from_secs(5));
    assert!(
        !control.probe(&control.liveness),
        "liveness passes with control stopped"
    );
    assert!(
        !control.probe(&control.readiness),
        "readiness passes with control stopped"
    );
    // The filter keeps deciding with the policy it has.
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &customer).unwrap();
    assert_eq!(
        o.summary(),
        "200 summary: ok",
        "{variant}: the last policy stays in force"
    );
    let want = [GREETING, b"again".as_slice()].concat();
    let o = tcp_exchange(&envoy, yaobank_ip("customer"), &customer_tcp, b"again");
    assert!(o.passed(&want), "{variant}: TCP too: {}", o.summary());
}

fn require_tools() {
    artifacts::envoy().expect("envoy is required for this test");
    artifacts::control().expect("the control binary is required for this test");
    artifacts::require_curl().expect("curl is required for this test");
}

#[test]
fn injected_control_and_wasmplugin_decide_yaobank_requests() {
    yaobank_decisions("wasmplugin");
}

#[test]
fn injected_control_and_envoyfilter_alternative_decide_yaobank_requests() {
    yaobank_decisions("envoyfilter");
}

#[test]
fn forged_x_forwarded_for_is_ignored_only_with_the_inbound_patch() {
    require_tools();
    let dir = RunDir::create("alp-istio-xff").unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    // A policy that trusts an address only: allow from 127.0.10.1/32 (customer's pod address).
    let updates = [
        policy::policy(
            "by-address",
            json!([{"action": "allow", "srcNet": ["127.0.10.1/32"], "ruleId": "by-address-0"}]),
        ),
        policy::endpoint("summary", "127.0.10.2", &["by-address"]),
    ]
    .into_iter()
    .chain(policy::default_profiles("summary"))
    .chain([policy::in_sync()])
    .map(|v| v.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    let _felix = TestFelix::start(&env.felix_dir.join("nodeagent/socket"), &updates).unwrap();
    let mut control = InjectedControl::start(&r, &env, &dir.path);
    control.wait_ready();

    let mut cluster = load(&r, WASMPLUGIN_SET, "EnvoyFilter", "calico-alp-control");
    let plugin = load(&r, WASMPLUGIN_SET, "WasmPlugin", "calico-alp");
    let forged = Request::get("/")
        .from_ip(yaobank_ip("database"))
        .header("x-forwarded-for", "127.0.10.1")
        .transport(mtls(&env, "database"));
    let honest = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(&env, "customer"));

    let config =
        istio::bootstrap(&[&cluster, &plugin], &env.pod, &dir.path, EcdsMode::Inline).unwrap();
    let envoy = start_envoy(&config, &dir.path, "patched");
    assert_eq!(first_decision(&envoy, &honest).summary(), "200 summary: ok");
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &forged).unwrap();
    assert_eq!(
        o.summary(),
        "403 denied by policy",
        "with the patch the forged address is ignored"
    );
    drop(envoy);

    // Istio's default inbound setting (the MERGE patch removed): the header decides the source.
    let patches = cluster.value["spec"]["configPatches"]
        .as_array_mut()
        .unwrap();
    patches.retain(|p| p["applyTo"] != "NETWORK_FILTER");
    let config =
        istio::bootstrap(&[&cluster, &plugin], &env.pod, &dir.path, EcdsMode::Inline).unwrap();
    let envoy = start_envoy(&config, &dir.path, "unpatched");
    assert_eq!(first_decision(&envoy, &honest).summary(), "200 summary: ok");
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &forged).unwrap();
    assert_eq!(
        o.summary(),
        "200 summary: ok",
        "without the patch a forged x-forwarded-for picks the source address (the reason for the patch)"
    );
}

/// Starts the injected control on a test Felix playing `updates`, ready.
fn control_on(r: &Path, env: &PodEnv, dir: &Path, updates: &str) -> (TestFelix, InjectedControl) {
    let felix = TestFelix::start(&env.felix_dir.join("nodeagent/socket"), updates).unwrap();
    let mut control = InjectedControl::start(r, env, dir);
    control.wait_ready();
    (felix, control)
}

/// A relay in front of `target` whose clients finish their TLS handshake `delay` late: it
/// passes each client's first bytes (the ClientHello) at once and the rest after `delay`, as a
/// distant or slow client would send them. So what the application sends as soon as it is
/// connected comes before the handshake completes, deterministically.
fn late_handshake_relay(target: std::net::SocketAddr, delay: Duration) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Option<Duration>) {
        let mut buf = [0u8; 16 * 1024];
        let mut first = true;
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            if std::mem::take(&mut first) {
                if let Some(d) = delay {
                    std::thread::sleep(d);
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(upstream) = TcpStream::connect(target) else {
                continue;
            };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || pipe(client, upstream, Some(delay)));
            std::thread::spawn(move || pipe(u2, c2, None));
        }
    });
    addr
}

/// Why calico-alp-tcp-connect exists. Without it (Istio's tcp_proxy connects upstream as soon
/// as a connection is accepted) a server-first application can greet before the TLS handshake
/// has given the filter the peer certificate (here always: the client's last handshake flight
/// comes late); the filter holds the greeting and the client, waiting for it, sends nothing: an
/// allowed client stalls until it speaks first, a refused one never gets a byte. With it,
/// tcp_proxy connects after the handshake and the greeting is what the filter decides on.
#[test]
fn server_first_over_mtls_needs_the_tcp_proxy_patch_and_never_leaks() {
    require_tools();
    let dir = RunDir::create("alp-istio-tcp-connect").unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    // By service account only (no address): the relay connects from 127.0.0.1.
    let by_name = policy::to_jsonl(&policy::single_policy(
        "summary",
        "127.0.10.2",
        vec![],
        json!([{"action": "allow", "srcServiceAccountMatch": {"names": ["customer"]}, "ruleId": "by-name-0"}]),
    ));
    let (_felix, _control) = control_on(&r, &env, &dir.path, &by_name);
    let backend = TcpBackend::start(&env.pod.tcp_app, GREETING).unwrap();
    let docs = [
        load(&r, WASMPLUGIN_SET, "EnvoyFilter", "calico-alp-control"),
        load(&r, WASMPLUGIN_SET, "WasmPlugin", "calico-alp"),
        load(&r, WASMPLUGIN_SET, "WasmPlugin", "calico-alp-tcp"),
        load(&r, WASMPLUGIN_SET, "EnvoyFilter", "calico-alp-tcp-connect"),
    ];
    let customer = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(&env, "customer"));
    for patched in [false, true] {
        let n = if patched { 4 } else { 3 };
        let docs: Vec<&Doc> = docs[..n].iter().collect();
        let config = istio::bootstrap(&docs, &env.pod, &dir.path, EcdsMode::Inline).unwrap();
        let label = if patched { "patched" } else { "unpatched" };
        let envoy = start_envoy(&config, &dir.path, label);
        // The policy is there (the HTTP filter, same VM, decides).
        assert_eq!(
            first_decision(&envoy, &customer).summary(),
            "200 summary: ok"
        );
        let relay = late_handshake_relay(
            envoy.listeners[istio::TCP_LISTENER],
            Duration::from_millis(300),
        );
        for (sa, allowed) in [("customer", true), ("database", false)] {
            let t = tcp_mtls(&env, sa);
            let at = format!("{label}, {sa}");
            let mut conn = tcp_client::connect(relay, None, &t, Duration::from_secs(1)).unwrap();
            let payload = format!("ping from {sa} {label}");
            let o = conn.exchange(GREETING.len(), payload.as_bytes());
            match (patched, allowed) {
                (true, true) => {
                    let want = [GREETING, payload.as_bytes()].concat();
                    assert!(o.passed(&want), "{at}: {}", o.summary());
                }
                (true, false) => assert!(o.closed_silently(), "{at}: {}", o.summary()),
                (false, _) => {
                    // Waiting for the greeting: nothing comes, the connection stays open.
                    assert!(
                        o.received.is_empty() && o.end == End::TimedOut,
                        "{at}: {}",
                        o.summary()
                    );
                    // Speaking first decides: the held greeting comes, or the connection closes.
                    let o = conn.exchange(0, payload.as_bytes());
                    if allowed {
                        assert!(
                            !o.received.is_empty()
                                && GREETING.starts_with(
                                    &o.received[..o.received.len().min(GREETING.len())]
                                ),
                            "{at}, speaking first: {}",
                            o.summary()
                        );
                    } else {
                        assert!(o.closed_silently(), "{at}, speaking first: {}", o.summary());
                    }
                }
            }
            assert_eq!(backend.saw(payload.as_bytes()), allowed, "{at}");
        }
    }
}

/// Rules with an HTTP clause never match a connection (D4). So, with a policy that allows GET
/// only: the TCP port closes every connection, HTTP sent to it included (it is decided as a
/// connection); the HTTP port serves GET, through the HTTP filter. Which is why the NETWORK
/// WasmPlugin lists its ports: without them istiod puts the network filter in front of the HTTP
/// port's connection manager as well, and every HTTP connection is closed before a request is
/// read.
#[test]
fn a_network_wasmplugin_must_not_select_http_ports() {
    require_tools();
    let dir = RunDir::create("alp-istio-tcp-ports").unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    let get_only = policy::to_jsonl(&policy::single_policy(
        "summary",
        "127.0.10.2",
        vec![],
        json!([{"action": "allow", "httpMatch": {"methods": ["GET"]}, "ruleId": "get-only-0"}]),
    ));
    let (_felix, _control) = control_on(&r, &env, &dir.path, &get_only);
    let backend = TcpBackend::start(&env.pod.tcp_app, GREETING).unwrap();
    let cluster = load(&r, WASMPLUGIN_SET, "EnvoyFilter", "calico-alp-control");
    let plugin = load(&r, WASMPLUGIN_SET, "WasmPlugin", "calico-alp");
    let mut tcp = load(&r, WASMPLUGIN_SET, "WasmPlugin", "calico-alp-tcp");
    let connect = load(&r, WASMPLUGIN_SET, "EnvoyFilter", "calico-alp-tcp-connect");
    let get = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(&env, "customer"));
    let post = Request::get("/")
        .method("POST")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(&env, "customer"));

    // As shipped (ports: 5432).
    let config = istio::bootstrap(
        &[&cluster, &plugin, &tcp, &connect],
        &env.pod,
        &dir.path,
        EcdsMode::Inline,
    )
    .unwrap();
    let envoy = start_envoy(&config, &dir.path, "ports");
    assert_eq!(first_decision(&envoy, &get).summary(), "200 summary: ok");
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &post).unwrap();
    assert_eq!(o.summary(), "403 denied by policy");
    let t = tcp_mtls(&env, "customer");
    let o = tcp_exchange(&envoy, yaobank_ip("customer"), &t, b"raw bytes");
    assert!(o.closed_silently(), "TCP, GET-only policy: {}", o.summary());
    let http_over_tcp = b"GET / HTTP/1.1\r\nhost: summary\r\n\r\n";
    let mut conn = tcp_client::connect(
        envoy.listeners[istio::TCP_LISTENER],
        Some(yaobank_ip("customer")),
        &t,
        Duration::from_secs(5),
    )
    .unwrap();
    let o = conn.exchange(0, http_over_tcp);
    assert!(
        o.closed_silently(),
        "HTTP over the TCP port: {}",
        o.summary()
    );
    assert!(!backend.saw(b"raw bytes") && !backend.saw(b"GET /"));
    wait_metric(&envoy, "alp_connections_total", &DENIED, 2);
    drop(envoy);

    // Without ports: the network filter is also in front of the HTTP connection manager.
    tcp.value["spec"]["match"] = json!([{"mode": "SERVER"}]);
    let config = istio::bootstrap(
        &[&cluster, &plugin, &tcp, &connect],
        &env.pod,
        &dir.path,
        EcdsMode::Inline,
    )
    .unwrap();
    let http_chain = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"];
    assert_eq!(http_chain[0]["name"], "istio-system.calico-alp-tcp");
    assert_eq!(http_chain[1]["name"], istio::HCM);
    let envoy = start_envoy(&config, &dir.path, "no-ports");
    // Wait until the policy is there: the TCP port's connections are then decided (closed by
    // the GET-only policy) rather than closed for want of a snapshot (at once, even before the
    // TLS handshake completes: hence no unwrap).
    let addr = envoy.listeners[istio::TCP_LISTENER];
    let denied = [("alp_decision", "denied"), ("alp_reason", "policy_denied")];
    let got = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        let _ = tcp_client::dial(addr, Some(yaobank_ip("customer")), &t, 0, b"x");
        Some(AlpStats::read_envoy(&envoy).metric("alp_connections_total", &denied))
            .filter(|n| *n > 0)
    });
    assert!(
        got.is_some(),
        "the network filter never decided with the policy"
    );
    // Once every dial above is counted, the HTTP request's connection is the next one.
    std::thread::sleep(Duration::from_millis(300));
    let before = AlpStats::read_envoy(&envoy).metric("alp_connections_total", &denied);
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &get).unwrap();
    assert!(
        o.status().is_none(),
        "GET on the HTTP port with the network filter in front: {}",
        o.summary()
    );
    wait_metric(&envoy, "alp_connections_total", &denied, before + 1);
}

/// A module istio-agent cannot fetch or verify (FAIL_CLOSE): it sends Envoy a deny-all RBAC
/// filter of the same name instead, which the EnvoyFilter's `type_urls` accept. Every HTTP
/// request is refused; every connection to the TCP port is closed at the client's first bytes,
/// none of which reaches the application. Envoy's RBAC network filter decides on downstream
/// data only, so a server-first application's greeting does reach the client then (as with
/// Istio's own TCP AuthorizationPolicy; docs/istio.md says so).
#[test]
fn a_module_istio_agent_refuses_is_a_deny_all_filter() {
    artifacts::envoy().expect("envoy is required for this test");
    let dir = RunDir::create("alp-istio-refused").unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    let docs = set_filters(&r, ENVOYFILTER_SET);
    let config = istio::bootstrap(
        &docs.iter().collect::<Vec<_>>(),
        &env.pod,
        &dir.path,
        EcdsMode::Refused,
    )
    .unwrap();
    let backend = TcpBackend::start(&env.pod.tcp_app, GREETING).unwrap();
    let envoy = start_envoy(&config, &dir.path, "refused");
    let get = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(&env, "customer"));
    let o = send(envoy.listeners[istio::INBOUND_LISTENER], &get).unwrap();
    assert_eq!(o.summary(), "403 RBAC: access denied");
    let t = tcp_mtls(&env, "customer");
    let o = tcp_exchange(&envoy, yaobank_ip("customer"), &t, b"ping server-first");
    assert!(
        o.received == GREETING && matches!(o.end, End::Closed(_)),
        "server-first: {}",
        o.summary()
    );
    let addr = envoy.listeners[istio::TCP_LISTENER];
    let o = tcp_client::dial(
        addr,
        Some(yaobank_ip("customer")),
        &t,
        0,
        b"ping client-first",
    )
    .unwrap();
    assert!(
        o.received.is_empty() || o.received == GREETING,
        "client-first: {}",
        o.summary()
    );
    assert!(
        matches!(o.end, End::Closed(_)),
        "client-first: {}",
        o.summary()
    );
    assert!(
        backend.received().iter().all(|r| r.is_empty()),
        "the application received {:?}",
        backend.received()
    );
}

/// The YAML documents of docs/istio.md's blocks.
fn istio_page_docs() -> Vec<Doc> {
    yaml::markdown_yaml(&root().join("docs/istio.md")).unwrap()
}

/// The pod annotations docs/istio.md gives as the per-pod alternative to the mesh's stats
/// settings (the block with `sidecar.istio.io/extraStatTags`).
fn documented_stats_annotations() -> BTreeMap<String, String> {
    let docs = istio_page_docs();
    let annotations = docs
        .iter()
        .map(|d| &d.value["spec"]["template"]["metadata"]["annotations"])
        .find(|a| a.get(istio::EXTRA_STAT_TAGS_ANNOTATION).is_some())
        .expect("docs/istio.md: a block with the sidecar.istio.io/extraStatTags annotation");
    annotations
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("annotation values are strings").into(),
            )
        })
        .collect()
}

/// The access log format docs/istio.md gives (`meshConfig.accessLogFormat`).
fn documented_access_log_format() -> String {
    istio_page_docs()
        .iter()
        .find_map(|d| {
            d.value["meshConfig"]["accessLogFormat"]
                .as_str()
                .map(str::to_string)
        })
        .expect("docs/istio.md: a block with meshConfig.accessLogFormat")
}

/// The mesh's `ProxyConfig` (`meshConfig.defaultConfig`) as shipped.
fn shipped_proxy_config() -> Value {
    inject::mesh_config(&istio_file("istio-operator.yaml")).unwrap()["defaultConfig"].clone()
}

#[test]
fn the_mesh_config_lists_the_filter_stats_labels() {
    let proxy = shipped_proxy_config();
    // Fields of Istio's ProxyConfig only (istiod ignores a misspelt one).
    let fields = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    for f in fields(&proxy) {
        assert!(
            istio::PROXY_CONFIG_FIELDS.contains(&f.as_str()),
            "meshConfig.defaultConfig.{f} is not a ProxyConfig field"
        );
    }
    for f in fields(&proxy["proxyStatsMatcher"]) {
        assert!(
            istio::PROXY_STATS_MATCHER_FIELDS.contains(&f.as_str()),
            "proxyStatsMatcher.{f} is not a ProxyStatsMatcher field"
        );
    }
    // extraStatTags is exactly the filter's label names (filter/src/metrics.rs), in its order.
    let tags = strings(&proxy["extraStatTags"]);
    assert_eq!(tags, alp_filter::metrics::LABELS, "extraStatTags");
    assert_eq!(alp_e2e::filter_stats::LABELS, alp_filter::metrics::LABELS);
    assert!(
        strings(&proxy["proxyStatsMatcher"]["inclusionPrefixes"]).contains(&"wasmcustom.".into()),
        "proxyStatsMatcher.inclusionPrefixes must keep wasmcustom."
    );

    let none = BTreeMap::new();
    let config = istio::stats_config(&proxy, &none).unwrap();
    // Istio's tags, then one extractor per listed label, exactly the bootstrap's (whose regexes
    // the e2e tests prove in Envoy): the same stats get the same labels with and without Istio.
    let stats_tags = config["stats_tags"].as_array().unwrap();
    let bootstrap = std::fs::read_to_string(root().join("envoy/bootstrap.yaml")).unwrap();
    for label in alp_filter::metrics::LABELS {
        let want = istio::extra_stat_tag(label);
        assert!(stats_tags.contains(&want), "no tag extractor for {label}");
        let line = format!(
            "  - tag_name: {label}\n    regex: '{}'\n",
            want["regex"].as_str().unwrap()
        );
        assert!(
            bootstrap.contains(&line),
            "envoy/bootstrap.yaml: no {line:?} (the extractor Istio generates)"
        );
    }
    assert_eq!(config["use_all_default_tags"], false);
    // The inclusion list keeps every stat name the filter defines.
    let prefixes: Vec<&str> = config["stats_matcher"]["inclusion_list"]["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["prefix"].as_str())
        .collect();
    let name = alp_filter::metrics::stat_name(
        "alp_requests_total",
        &[("alp_decision", "denied"), ("alp_reason", "policy_denied")],
    );
    for stat in [
        format!("wasmcustom.{name}"),
        "wasmcustom.alp_dry_run".into(),
    ] {
        assert!(
            prefixes.iter().any(|p| stat.starts_with(p)),
            "{stat} is kept by none of {prefixes:?}"
        );
    }

    // The documented pod annotations, on a pod of a mesh without the settings, give the same
    // stats configuration.
    let annotations = documented_stats_annotations();
    assert_eq!(
        istio::stats_config(&json!({}), &annotations).unwrap(),
        config,
        "the annotations of docs/istio.md ({annotations:?}) are not the mesh settings' equivalent"
    );
    // Both together: the tags are not listed twice.
    assert_eq!(
        istio::stats_config(&proxy, &annotations).unwrap()["stats_tags"],
        config["stats_tags"]
    );
    // An inclusion annotation replaces the mesh's list (docs/istio.md says to repeat the prefix).
    let own = BTreeMap::from([(
        istio::INCLUSION_PREFIXES_ANNOTATION.to_string(),
        "upstream_cx".to_string(),
    )]);
    let replaced = istio::stats_config(&proxy, &own).unwrap();
    assert!(!replaced["stats_matcher"]
        .to_string()
        .contains("\"wasmcustom.\""));
}

/// Adds the access log Istio sets up from `meshConfig.accessLogFile` and `accessLogFormat` to
/// every connection manager and `tcp_proxy` of `config`, writing to `path`.
fn add_access_logs(config: &mut Value, path: &Path, format: &str) {
    let log = json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(),
            "log_format": {"text_format_source": {"inline_string": format}}
        }
    }]);
    let listeners = config["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap();
    for chain in listeners
        .iter_mut()
        .flat_map(|l| l["filter_chains"].as_array_mut().unwrap().iter_mut())
    {
        for f in chain["filters"].as_array_mut().unwrap() {
            if f["name"] == istio::HCM || f["name"] == istio::TCP_PROXY {
                f["typed_config"]["access_log"] = log.clone();
            }
        }
    }
}

/// The bootstrap of the WasmPlugin installation with `stats_config`.
fn with_stats_config(r: &Path, env: &PodEnv, dir: &Path, stats_config: Value) -> Value {
    let docs = set_filters(r, WASMPLUGIN_SET);
    let mut config = istio::bootstrap(
        &docs.iter().collect::<Vec<_>>(),
        &env.pod,
        dir,
        EcdsMode::Inline,
    )
    .unwrap();
    config["stats_config"] = stats_config;
    config
}

/// A request id of this run's own.
fn request_id(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // Never 36 characters: Envoy takes an id of a UUID's length for a UUID and may rewrite its
    // 15th character (the trace reason it packs there).
    let id = format!("istio-{what}-{}-{nanos}", std::process::id());
    if id.len() == 36 {
        id + "-"
    } else {
        id
    }
}

/// What a sidecar shows of the filter with the shipped mesh settings: a real Envoy configured as
/// Istio configures the pod (WasmPlugins), with the `stats_config` istio-agent generates from
/// `meshConfig.defaultConfig` (Istio's own tags and inclusion list, plus ours) and the access
/// log format of docs/istio.md, decides YAO bank requests and connections; `/stats/prometheus`
/// then shows `alp_requests_total` and `alp_connections_total` with their labels (nothing left
/// in a name, Istio's own tags taking nothing), the access log each decision, the decision log
/// the caller's request id. And the inclusion list is what keeps the stats: with only the
/// shipped prefix they are there, with a list matching no `wasm*` name Envoy creates none.
#[test]
fn the_mesh_stats_settings_label_the_filter_stats_in_prometheus() {
    require_tools();
    let dir = RunDir::create("alp-istio-stats").unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    let summary = std::fs::read_to_string(artifacts::yaobank_updates("summary")).unwrap();
    let (_felix, _control) = control_on(&r, &env, &dir.path, &summary);
    let backend = TcpBackend::start(&env.pod.tcp_app, GREETING).unwrap();
    let proxy = shipped_proxy_config();

    let mut config = with_stats_config(
        &r,
        &env,
        &dir.path,
        istio::stats_config(&proxy, &BTreeMap::new()).unwrap(),
    );
    let access_log = dir.path.join("access.log");
    add_access_logs(&mut config, &access_log, &documented_access_log_format());
    let envoy = start_envoy(&config, &dir.path, "stats");

    let customer = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(&env, "customer"));
    assert_eq!(
        first_decision(&envoy, &customer).summary(),
        "200 summary: ok"
    );
    let (allowed_id, denied_id) = (request_id("allowed"), request_id("denied"));
    let inbound = envoy.listeners[istio::INBOUND_LISTENER];
    let o = send(
        inbound,
        &customer.clone().header("x-request-id", &allowed_id),
    )
    .unwrap();
    assert_eq!(o.summary(), "200 summary: ok");
    let database = Request::get("/")
        .from_ip(yaobank_ip("database"))
        .header("x-request-id", &denied_id)
        .transport(mtls(&env, "database"));
    assert_eq!(
        send(inbound, &database).unwrap().summary(),
        "403 denied by policy"
    );
    first_tcp_pass(
        &envoy,
        yaobank_ip("customer"),
        &tcp_mtls(&env, "customer"),
        b"ping",
    );
    let o = tcp_exchange(
        &envoy,
        yaobank_ip("database"),
        &tcp_mtls(&env, "database"),
        b"ping from database",
    );
    assert!(o.closed_silently(), "{}", o.summary());
    assert!(!backend.saw(b"ping from database"));

    let (requests, connections) = ("alp_requests_total", "alp_connections_total");
    let allow = [("alp_decision", "allowed"), ("alp_reason", "allow")];
    let deny = [("alp_decision", "denied"), ("alp_reason", "policy_denied")];
    wait_for_stats(&envoy, |s| {
        s.metric(requests, &allow) >= 2
            && s.metric(requests, &deny) >= 1
            && s.metric(connections, &allow) >= 1
            && s.metric(connections, &deny) >= 1
    })
    .unwrap_or_else(|s| panic!("the decisions were never counted: {:#?}", s.0));
    let (now, prom) = read_both(&envoy);
    let wrong = prometheus_mismatches(&now, &prom);
    assert!(wrong.is_empty(), "{wrong:#?}\n{prom:#?}");
    let by_policy = |tier, policy, action| {
        [
            ("alp_tier", tier),
            ("alp_policy", policy),
            ("alp_action", action),
        ]
    };
    for (family, labels, want) in [
        (requests, &allow[..], 2.0),
        (requests, &deny[..], 1.0),
        (connections, &allow[..], 1.0),
        (connections, &deny[..], 1.0),
        (
            "alp_policy_requests_total",
            &by_policy("default", "summary", "allow")[..],
            2.0,
        ),
        (
            "alp_policy_requests_total",
            &by_policy("default", "_default", "deny")[..],
            1.0,
        ),
        (
            "alp_policy_connections_total",
            &by_policy("default", "summary", "allow")[..],
            1.0,
        ),
        (
            "alp_policy_connections_total",
            &by_policy("default", "_default", "deny")[..],
            1.0,
        ),
    ] {
        assert_eq!(
            prom_value(&prom, family, labels),
            Some(want),
            "{family}{labels:?} in {prom:#?}"
        );
    }
    assert!(prom_value(&prom, "alp_snapshot_version", &[]).is_some_and(|v| v > 0.0));

    // The documented access log: the request's id and the filter's decision, for requests and
    // connections.
    let id_of = |l: &str| access_log_field(l, "id").map(str::to_string);
    let lines = access_log_lines_in(&access_log, |l| {
        l.iter().any(|l| id_of(l).as_deref() == Some(&*denied_id))
            && l.iter()
                .filter(|l| id_of(l).as_deref() == Some("-"))
                .count()
                >= 2
    });
    let line_of = |id: &str| {
        lines
            .iter()
            .find(|l| id_of(l).as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no access log line with id={id}: {lines:#?}"))
    };
    assert_eq!(
        access_log_decision(line_of(&allowed_id)),
        Some("allow reason=allow tier=default policy=summary kind=GlobalNetworkPolicy rule=0 rule_id=yaobank-summary-0"),
    );
    let denial = access_log_decision(line_of(&denied_id)).unwrap_or_default();
    assert!(
        denial.starts_with("deny reason=policy_denied tier=default"),
        "{denial}"
    );
    // Connections have no request id.
    let tcp_from = |who: &str| -> Vec<&str> {
        let from = format!(" {}:", yaobank_ip(who));
        lines
            .iter()
            .filter(|l| id_of(l).as_deref() == Some("-") && l.contains(&from))
            .filter_map(|l| access_log_decision(l))
            .collect()
    };
    assert!(
        tcp_from("customer")
            .iter()
            .any(|d| d.starts_with("allow reason=allow tier=default policy=summary")),
        "{lines:#?}"
    );
    assert!(
        tcp_from("database")
            .iter()
            .any(|d| d.starts_with("deny reason=policy_denied tier=default")),
        "{lines:#?}"
    );

    // The decision log: the denial with the id the caller sent (control-cluster.yaml's
    // preserve_external_request_id keeps it), and when.
    let logged = logged_decisions_in(&envoy.proc.log, |l| {
        l.iter()
            .any(|d| d.decision["request_id"] == denied_id.as_str())
            && l.iter().any(|d| d.decision["kind"] == "connection")
    });
    let line = logged
        .iter()
        .map(|d| &d.decision)
        .find(|d| d["request_id"] == denied_id.as_str())
        .unwrap_or_else(|| panic!("no decision line with request_id {denied_id}"));
    assert_eq!(
        (line["kind"].as_str(), line["reason"].as_str()),
        (Some("http"), Some("policy_denied"))
    );
    assert!(line["ts"].as_str().and_then(ts_unix_ms).is_some(), "{line}");
    drop(envoy);

    // The shipped inclusion prefix alone keeps the filter's stats (and not Envoy's others).
    let mut alone = istio::stats_config(&proxy, &BTreeMap::new()).unwrap();
    alone["stats_matcher"] = json!({"inclusion_list": {"patterns":
        strings(&proxy["proxyStatsMatcher"]["inclusionPrefixes"])
            .iter()
            .map(|p| json!({"prefix": p}))
            .collect::<Vec<_>>()}});
    let envoy = start_envoy(
        &with_stats_config(&r, &env, &dir.path, alone),
        &dir.path,
        "prefix",
    );
    assert_eq!(
        first_decision(&envoy, &customer).summary(),
        "200 summary: ok"
    );
    assert_eq!(
        send(envoy.listeners[istio::INBOUND_LISTENER], &database)
            .unwrap()
            .summary(),
        "403 denied by policy"
    );
    let stats = wait_metric(&envoy, requests, &deny, 1);
    assert!(stats.has("alp_snapshot_version", &[]));
    assert_eq!(
        envoy.stat("server.live").unwrap(),
        None,
        "the matcher keeps only wasmcustom."
    );
    drop(envoy);

    // A list that matches no `wasm*` name (istio-agent's without its own `wasm` prefix and
    // without ours): Envoy creates none of the filter's stats, though the filter decides.
    let mut none = istio::stats_config(&json!({}), &BTreeMap::new()).unwrap();
    let patterns = none["stats_matcher"]["inclusion_list"]["patterns"]
        .as_array_mut()
        .unwrap();
    patterns.retain(|p| p["prefix"] != "wasm");
    let envoy = start_envoy(
        &with_stats_config(&r, &env, &dir.path, none),
        &dir.path,
        "dropped",
    );
    assert_eq!(
        first_decision(&envoy, &customer).summary(),
        "200 summary: ok"
    );
    assert_eq!(
        send(envoy.listeners[istio::INBOUND_LISTENER], &database)
            .unwrap()
            .summary(),
        "403 denied by policy"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(AlpStats::read_envoy(&envoy), AlpStats::default());
    assert!(read_prometheus(&envoy).is_empty());
}
