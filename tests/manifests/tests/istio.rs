//! The Istio packaging (envoy/istio/) hangs together, and does what it says with real programs:
//!
//! * the injection template, the WasmPlugin, both EnvoyFilters and the filter's configuration
//!   agree on every name and path (label, cluster, sockets, volumes, probes);
//! * the Envoy configuration Istio would build from them (tests/manifests/src/istio.rs) passes
//!   `envoy --mode validate`, for the WasmPlugin and for the EnvoyFilter-only installation;
//! * end to end: the control container's injected command line, with the pod's paths mapped to a
//!   temporary directory, runs the real `control` against a test Felix on the Policy Sync socket
//!   path of the CSI volume; its injected probes answer; a real Envoy configured as Istio would
//!   configure the pod's inbound listener decides YAO bank requests (200, 403 denied by policy);
//! * the inbound MERGE patch is what keeps `source.address` the connection's: with it a forged
//!   x-forwarded-for changes nothing, without it (Istio's default) the forged address is
//!   believed.

use alp_e2e::certs::Ca;
use alp_e2e::client::{send, Request, Transport};
use alp_e2e::envoy::{validate, Envoy};
use alp_e2e::process::{wait_for, Proc};
use alp_e2e::stack::{yaobank_ip, RunDir};
use alp_e2e::{artifacts, policy};
use alp_manifests::inject::{self, PathMap, CONTAINER, LABEL};
use alp_manifests::istio::{self, EcdsMode, Pod};
use alp_manifests::yaml::{self, Doc};
use alp_manifests::{bundled_wasm, felix::TestFelix, render_istio, root};
use serde_json::{json, Value};
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
    let ext = wasm_filter.value["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .unwrap();
    assert_eq!(
        ext["patch"]["value"]["typed_config"]["config"]["vm_config"]["vm_id"],
        "calico-alp"
    );
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
    let plugin =
        yaml::resource(&istio_file("wasmplugin.yaml"), "WasmPlugin", "calico-alp").unwrap();
    assert!(plugin.value["spec"]["vmConfig"].get("vmId").is_none());
    let doc = std::fs::read_to_string(root().join("docs/istio.md")).unwrap();
    assert!(
        doc.contains("vm_id"),
        "docs/istio.md says what the WasmPlugin's empty vm_id means"
    );
    // The harness's bootstrap (local stack, compose, end-to-end tests): one per workload, as
    // each workload has its own snapshot (rendered and checked by tests/tests/config.rs).
    let template = std::fs::read_to_string(root().join("envoy/bootstrap.yaml")).unwrap();
    let vm_ids: Vec<&str> = template
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("vm_id:"))
        .collect();
    assert_eq!(vm_ids, ["vm_id: calico-alp-{{NAME}}"]);
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
    let plugin = yaml::resource(&out.join("wasmplugin.yaml"), "WasmPlugin", "calico-alp").unwrap();
    assert_eq!(plugin.value["spec"]["sha256"], sha.as_str());
    assert_eq!(
        plugin.value["spec"]["url"],
        "https://example.com/calico-alp/v1/calico-alp.wasm"
    );
    let overlay = inject::overlay(&out.join("istiod-values.yaml")).unwrap();
    assert_eq!(
        inject::container(&overlay, CONTAINER).unwrap()["image"],
        "example.com/calico-alp/control:v1"
    );
    for f in alp_manifests::files_under(&out, &[".yaml"]).unwrap() {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(".invalid") && !text.contains(&"0".repeat(64)),
            "{}",
            f.display()
        );
    }
    // Every committed manifest has its rendered counterpart.
    for f in alp_manifests::files_under(&root().join("envoy/istio"), &[".yaml"]).unwrap() {
        assert!(
            out.join(f.file_name().unwrap()).is_file(),
            "{} not rendered",
            f.display()
        );
    }
    // The trust domains: cluster.local unless given, in both configurations of the filter.
    let filter_configs = |dir: &Path| -> Vec<Value> {
        let plugin =
            yaml::resource(&dir.join("wasmplugin.yaml"), "WasmPlugin", "calico-alp").unwrap();
        let alt = yaml::resource(
            &dir.join("envoyfilter-wasm.yaml"),
            "EnvoyFilter",
            "calico-alp-wasm",
        )
        .unwrap();
        let ext = alt.value["spec"]["configPatches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["applyTo"] == "EXTENSION_CONFIG")
            .unwrap()
            .clone();
        vec![
            plugin.value["spec"]["pluginConfig"]["trust_domains"].clone(),
            istio::plugin_configuration(&ext["patch"]["value"]["typed_config"]).unwrap()
                ["trust_domains"]
                .clone(),
        ]
    };
    assert_eq!(
        filter_configs(&out),
        [json!(["cluster.local"]), json!(["cluster.local"])]
    );
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
            "--out",
        ])
        .arg(&custom)
        .status()
        .unwrap();
    assert!(status.success());
    let want = json!(["prod.example.com", "old_td"]);
    assert_eq!(filter_configs(&custom), [want.clone(), want]);

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
    let plugin = yaml::resource(&oci.join("wasmplugin.yaml"), "WasmPlugin", "calico-alp").unwrap();
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

fn load(dir: &Path, file: &str, kind: &str, name: &str) -> Doc {
    yaml::resource(&dir.join(file), kind, name).unwrap()
}

#[test]
fn envoy_validates_what_istio_would_configure() {
    let envoy = artifacts::envoy().expect("envoy is required for this test");
    let dir = RunDir::create("alp-istio-validate").unwrap();
    let env = pod_env(&dir.path);
    let r = rendered(&dir.path);
    let cluster = load(
        &r,
        "control-cluster.yaml",
        "EnvoyFilter",
        "calico-alp-control",
    );
    let plugin = load(&r, "wasmplugin.yaml", "WasmPlugin", "calico-alp");
    let alt = load(
        &r,
        "envoyfilter-wasm.yaml",
        "EnvoyFilter",
        "calico-alp-wasm",
    );
    // `--mode validate` checks a config_discovery stanza but does not load what it would
    // discover: the inline variant is the one that validates the discovered configuration.
    let variants: [(&str, Vec<&Doc>, EcdsMode); 3] = [
        ("wasmplugin", vec![&cluster, &plugin], EcdsMode::Inline),
        ("envoyfilter-inline", vec![&cluster, &alt], EcdsMode::Inline),
        ("envoyfilter-ecds", vec![&cluster, &alt], EcdsMode::File),
    ];
    for (name, docs, ecds) in variants {
        let config = istio::bootstrap(&docs, &env.pod, &dir.path, ecds).unwrap();
        let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
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
        let filters: Vec<&str> = hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            filters,
            ["istio-system.calico-alp", istio::ROUTER],
            "{name}"
        );
        let file = dir.path.join(format!("envoy-{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        validate(&envoy, &file).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    // The unrendered manifests would not get past istio-agent (placeholder checksum).
    let raw = yaml::resource(&istio_file("wasmplugin.yaml"), "WasmPlugin", "calico-alp").unwrap();
    let err =
        istio::bootstrap(&[&cluster, &raw], &env.pod, &dir.path, EcdsMode::Inline).unwrap_err();
    assert!(format!("{err:#}").contains("checksum"), "{err:#}");
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
        let overlay = inject::overlay(&rendered.join("istio-operator.yaml")).unwrap();
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

    let cluster = load(
        &r,
        "control-cluster.yaml",
        "EnvoyFilter",
        "calico-alp-control",
    );
    let docs_owned: Vec<Doc> = match variant {
        "wasmplugin" => vec![
            cluster,
            load(&r, "wasmplugin.yaml", "WasmPlugin", "calico-alp"),
        ],
        _ => vec![
            cluster,
            load(
                &r,
                "envoyfilter-wasm.yaml",
                "EnvoyFilter",
                "calico-alp-wasm",
            ),
        ],
    };
    let docs: Vec<&Doc> = docs_owned.iter().collect();
    // The EnvoyFilter installation keeps its config_discovery stanza: Envoy loads the filter's
    // configuration through extension config discovery (from a file instead of istiod).
    let ecds = if variant == "wasmplugin" {
        EcdsMode::Inline
    } else {
        EcdsMode::File
    };
    let config = istio::bootstrap(&docs, &env.pod, &dir.path, ecds).unwrap();
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

    let mut cluster = load(
        &r,
        "control-cluster.yaml",
        "EnvoyFilter",
        "calico-alp-control",
    );
    let plugin = load(&r, "wasmplugin.yaml", "WasmPlugin", "calico-alp");
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
