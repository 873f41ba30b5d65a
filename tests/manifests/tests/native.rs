//! The optional native module (`libcalico_alp.so`, an Envoy dynamic module) in Istio:
//! `envoy/istio/envoyfilter-native.yaml`, the `calico-alp-native` injection template
//! (`native-operator.yaml`, `native-values.yaml`), `images/native/Dockerfile` and
//! `render.sh --native-image`.
//!
//! * what render.sh writes for it: `native/` only when asked, a set `kubectl apply -k` and `-f`
//!   take whole, of valid resources, holding the shared files byte for byte and no wasm filter;
//!   the overlays in `install/` with the proxy image filled in;
//! * the template renders to a pod overlay of valid containers that gives istio-proxy the proxy
//!   image, `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` naming the directory the Dockerfile copies the
//!   module to, which is where the EnvoyFilter loads it from, and the label the EnvoyFilter
//!   selects (so a proxy without the module never gets the filter); the two install overlays
//!   agree, and keep the wasm default's injection;
//! * a real Envoy 1.40, configured as Istio would configure the pod from the rendered
//!   `native/` set (patches applied by tests/manifests/src/istio.rs), with the real module
//!   loaded from its absolute path and, in a second run, by name from the search path, and the
//!   injected control following a test Felix: YAO bank requests get 200 and `403 denied by
//!   policy`, TCP connections pass or are closed without a byte, the stats are Envoy's
//!   `dynamicmodulescustom` families;
//! * fail closed: with the module file missing (or not a module, or named without a search
//!   path) Envoy refuses the configuration: `--mode validate` fails, and Envoy exits instead of
//!   serving.

use alp_e2e::certs::Ca;
use alp_e2e::client::{send, Request, Transport};
use alp_e2e::envoy::{validate, Envoy};
use alp_e2e::process::{wait_for, Proc};
use alp_e2e::stack::{yaobank_ip, RunDir};
use alp_e2e::tcp_backend::TcpBackend;
use alp_e2e::tcp_client::{self, TcpTransport};
use alp_e2e::{artifacts, tls};
use alp_manifests::inject::{self, PathMap, CONTAINER};
use alp_manifests::istio::{self, EcdsMode, Pod};
use alp_manifests::rendered::{self, INSTALL_DIR, NATIVE_SET, SET_KUSTOMIZATION, WASMPLUGIN_SET};
use alp_manifests::schema::Schemas;
use alp_manifests::yaml::{self, Doc};
use alp_manifests::{bundled_wasm, dockerfile, felix::TestFelix, render_istio_with, root, shared};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SOCKET_DIR: &str = "/var/run/calico-alp";
const FELIX_DIR: &str = "/var/run/felix";
/// The native template's name in `sidecarInjectorWebhook.templates`.
const NATIVE_TEMPLATE: &str = "calico-alp-native";
/// The label it sets, which the native EnvoyFilter selects.
const NATIVE_LABEL: (&str, &str) = ("calico-alp/module", "native");
const SEARCH_PATH_VAR: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";
const PROXY_IMAGE: &str = "registry.example.com/calico-alp/proxyv2-native:1.30.0-v1";
const GREETING: &[u8] = b"220 summary-tcp ready\r\n";

fn istio_file(name: &str) -> PathBuf {
    root().join("envoy/istio").join(name)
}

fn strings(v: &Value) -> Vec<String> {
    inject::strings(v)
}

/// render.sh for an oci:// module (no dist/calico-alp.wasm needed), plus `extra`.
fn render(out: &Path, extra: &[&str]) -> anyhow::Result<String> {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut args = vec![
        "--wasm-url",
        "oci://registry.example.com/calico-alp/filter:v1",
        "--oci-digest",
        &digest,
        "--control-image",
        "registry.example.com/calico-alp/control:v1",
    ];
    args.extend_from_slice(extra);
    render_istio_with(out, &args)
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The one document of a YAML file.
fn one_doc(path: &Path) -> Doc {
    let docs = yaml::load_file(path).unwrap();
    assert_eq!(docs.len(), 1, "{}", path.display());
    docs[0].clone()
}

/// The values of an install overlay: `spec.values` of an IstioOperator, or the Helm values.
fn overlay_values(path: &Path) -> Value {
    let d = one_doc(path);
    if d.gvk().map(|(_, k)| k) == Some("IstioOperator") {
        d.value["spec"]["values"].clone()
    } else {
        d.value
    }
}

/// The mesh configuration of an install overlay.
fn overlay_mesh(path: &Path) -> Value {
    let d = one_doc(path);
    if d.gvk().map(|(_, k)| k) == Some("IstioOperator") {
        d.value["spec"]["meshConfig"].clone()
    } else {
        d.value["meshConfig"].clone()
    }
}

/// The native template of an install overlay, rendered as istiod renders it, as a pod overlay.
fn native_overlay(path: &Path) -> Value {
    let text = overlay_values(path)["sidecarInjectorWebhook"]["templates"][NATIVE_TEMPLATE]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no template {NATIVE_TEMPLATE}", path.display()))
        .to_string();
    let text = inject::render(&text, 1337, 1337).unwrap();
    let docs = yaml::parse_docs(&text, path, 1).unwrap();
    assert_eq!(docs.len(), 1);
    docs[0].value.clone()
}

/// The module path the EnvoyFilter's filters load (both the same).
fn envoyfilter_module_path(ef: &Doc) -> String {
    let mut paths = BTreeSet::new();
    for p in ef.value["spec"]["configPatches"].as_array().unwrap() {
        let t = &p["patch"]["value"]["typed_config"];
        if t["@type"] == istio::NATIVE_HTTP_TYPE || t["@type"] == istio::NATIVE_NETWORK_TYPE {
            let f = t
                .pointer("/dynamic_module_config/module/local/filename")
                .and_then(Value::as_str)
                .expect("module.local.filename");
            paths.insert(f.to_string());
        }
    }
    assert_eq!(
        paths.len(),
        1,
        "one module path for both filters: {paths:?}"
    );
    paths.into_iter().next().unwrap()
}

/// A Kubernetes container of a pod overlay is well formed: a DNS label name, string fields
/// where strings go, env entries of a name and a value, volume mounts of a name and an
/// absolute path (what the API server's validation would check of what the template sets).
fn check_container(c: &Value) {
    let name = c["name"].as_str().expect("container name");
    assert!(alp_manifests::schema::is_dns_label(name), "{name}");
    let allowed = ["name", "image", "env", "volumeMounts"];
    for k in c.as_object().unwrap().keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{name}: the template sets {k}"
        );
    }
    if let Some(image) = c.get("image") {
        assert!(image.is_string(), "{name}: image");
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "value"].into(), "{name}: env {e}");
        assert!(e["name"].is_string() && e["value"].is_string(), "{e}");
    }
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        assert!(m["name"].is_string(), "{m}");
        assert!(
            m["mountPath"].as_str().is_some_and(|p| p.starts_with('/')),
            "{m}"
        );
    }
}

#[test]
fn render_writes_the_native_set_only_when_asked_and_it_validates_whole() {
    let schemas = Schemas::load(&shared().unwrap().join("schemas")).unwrap();
    let dir = RunDir::create("alp-native-render").unwrap();
    // Without --native-image: no trace of it.
    let plain = dir.path.join("plain");
    render(&plain, &[]).unwrap();
    assert!(!plain.join(NATIVE_SET).exists());
    for f in rendered::NATIVE_INSTALL_INPUTS {
        assert!(!plain.join(INSTALL_DIR).join(f).exists(), "{f}");
    }
    // A bad image reference is refused, and writes nothing.
    let bad = dir.path.join("bad");
    assert!(render(&bad, &["--native-image", "not an image"]).is_err());
    assert!(render(&bad, &["--native-image"]).is_err());
    assert!(!bad.exists());

    let out = dir.path.join("istio");
    let printed = render(
        &out,
        &[
            "--native-image",
            PROXY_IMAGE,
            "--trust-domain",
            "prod.example.com",
        ],
    )
    .unwrap();
    let set = out.join(NATIVE_SET);
    assert_eq!(
        names(&set),
        [
            SET_KUSTOMIZATION,
            "control-cluster.yaml",
            "envoyfilter-native.yaml",
            "peer-authentication.yaml"
        ]
        .map(str::to_string)
        .into()
    );
    // kubectl apply -k and -f take the same resources.
    let k_docs = rendered::kustomize_build(&set).unwrap();
    let f_docs = rendered::apply_f(&set).unwrap();
    let ids = |d: &[Doc]| d.iter().map(rendered::resource_id).collect::<BTreeSet<_>>();
    assert_eq!(ids(&k_docs), ids(&f_docs));
    for d in &k_docs {
        assert!(schemas.validate(d).unwrap(), "{}: no schema", d.id());
    }
    // The native module only: no wasm filter, no WasmPlugin.
    assert_eq!(
        rendered::filter_variants(&k_docs),
        [NATIVE_SET].into(),
        "the native set holds the native filter and nothing of the wasm ways"
    );
    // The shared files, byte for byte those of the wasm sets.
    for f in ["control-cluster.yaml", "peer-authentication.yaml"] {
        assert_eq!(
            std::fs::read(set.join(f)).unwrap(),
            std::fs::read(out.join(WASMPLUGIN_SET).join(f)).unwrap(),
            "{f}"
        );
    }
    // The trust domains asked for, in both filters.
    let ef = rendered::pick(&k_docs, "EnvoyFilter", "calico-alp-native").unwrap();
    let mut configs = 0;
    for p in ef.value["spec"]["configPatches"].as_array().unwrap() {
        if let Some(cfg) = istio::native_configuration(&p["patch"]["value"]["typed_config"]) {
            assert_eq!(cfg["trust_domains"], json!(["prod.example.com"]));
            configs += 1;
        }
    }
    assert_eq!(configs, 2);
    // The install overlays, rendered with the image, beside the install inputs.
    for f in rendered::NATIVE_INSTALL_INPUTS {
        let p = out.join(INSTALL_DIR).join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains(".invalid"), "{f}: a placeholder left");
        let c = &native_overlay(&p)["spec"]["initContainers"][0];
        assert_eq!(c["image"], PROXY_IMAGE, "{f}");
        // (No CRD schema covers IstioOperator: the operator and Helm overlays are compared
        // with each other and checked field by field instead, below and in the next test.)
        for d in yaml::load_file(&p).unwrap() {
            if d.gvk().is_some() {
                schemas
                    .validate(&d)
                    .unwrap_or_else(|e| panic!("{f}: {e:#}"));
            }
        }
    }
    assert!(rendered::kustomization_file(&out.join(INSTALL_DIR))
        .unwrap()
        .is_none());
    // What it prints and the README: the commands, native instead of the wasm sets.
    let shown = out.display().to_string();
    for want in [
        format!("kubectl apply -k {shown}/{NATIVE_SET}"),
        format!(
            "istioctl install -y -f {shown}/install/istio-operator.yaml -f {shown}/install/native-operator.yaml"
        ),
        format!(
            "helm install istiod istio/istiod -n istio-system --wait -f {shown}/install/istiod-values.yaml -f {shown}/install/native-values.yaml"
        ),
    ] {
        assert!(printed.contains(&want), "render.sh does not print {want:?}:\n{printed}");
    }
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("`kubectl apply -k native`"), "{readme}");
    assert!(readme.contains(PROXY_IMAGE), "{readme}");
}

#[test]
fn the_native_template_and_envoyfilter_agree_on_image_path_and_label() {
    let operator = istio_file("native-operator.yaml");
    let helm = istio_file("native-values.yaml");
    // The two overlays agree, as istio-operator.yaml and istiod-values.yaml do.
    assert_eq!(overlay_mesh(&operator), overlay_mesh(&helm));
    let values = inject::values(&operator).unwrap();
    assert_eq!(values, inject::values(&helm).unwrap());
    // Only the injector: the template, and the default templates with the wasm default's
    // injection (the base template and control) kept and the native one after it.
    assert_eq!(
        values.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["sidecarInjectorWebhook"]
    );
    let base = inject::values(&istio_file("istio-operator.yaml")).unwrap();
    let mut defaults = strings(&base["sidecarInjectorWebhook"]["defaultTemplates"]);
    defaults.push(NATIVE_TEMPLATE.to_string());
    assert_eq!(
        strings(&values["sidecarInjectorWebhook"]["defaultTemplates"]),
        defaults
    );
    assert!(base["sidecarInjectorWebhook"]["templates"][NATIVE_TEMPLATE].is_null());
    // The mesh settings: ProxyConfig fields only; the inclusion list adds the dynamic module
    // metrics namespace to the base one (a list replaces the base's, so it repeats it).
    let mesh = overlay_mesh(&operator);
    for k in mesh["defaultConfig"].as_object().unwrap().keys() {
        assert!(istio::PROXY_CONFIG_FIELDS.contains(&k.as_str()), "{k}");
    }
    let base_mesh = inject::mesh_config(&istio_file("istio-operator.yaml")).unwrap();
    let mut prefixes =
        strings(&base_mesh["defaultConfig"]["proxyStatsMatcher"]["inclusionPrefixes"]);
    prefixes.push("dynamicmodulescustom.".to_string());
    assert_eq!(
        strings(&mesh["defaultConfig"]["proxyStatsMatcher"]["inclusionPrefixes"]),
        prefixes
    );

    // The rendered template: a pod overlay of valid objects, only istio-proxy changed.
    let overlay = native_overlay(&operator);
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&overlay), ["metadata", "spec"]);
    assert_eq!(keys(&overlay["metadata"]), ["labels"]);
    assert_eq!(keys(&overlay["spec"]), ["initContainers"]);
    let labels = &overlay["metadata"]["labels"];
    assert_eq!(labels, &json!({NATIVE_LABEL.0: NATIVE_LABEL.1}));
    let containers = overlay["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(
        containers.len(),
        1,
        "istio-proxy only: no init container to order"
    );
    let proxy = &containers[0];
    check_container(proxy);
    assert_eq!(proxy["name"], "istio-proxy");
    assert_eq!(
        proxy["image"],
        "registry.invalid/calico-alp/proxyv2-native:dev"
    );
    let search_path = proxy["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == SEARCH_PATH_VAR)
        .and_then(|e| e["value"].as_str())
        .expect("ENVOY_DYNAMIC_MODULES_SEARCH_PATH");
    // The base template's istio-proxy keeps its own settings (strategic merge by name): the
    // native one sets no volume mount and nothing the base template sets.
    let base_overlay = inject::overlay(&istio_file("istio-operator.yaml")).unwrap();
    let base_proxy = inject::container(&base_overlay, "istio-proxy").unwrap();
    for k in keys(proxy) {
        assert!(
            k == "name" || base_proxy.get(&k).is_none(),
            "{k} set by both templates"
        );
    }
    assert!(inject::container(&base_overlay, CONTAINER).is_some());

    // The EnvoyFilter: selects the native label with the enforce label, and loads the module
    // from the search path's directory, where the Dockerfile copies it.
    let ef = yaml::resource(
        &istio_file("envoyfilter-native.yaml"),
        "EnvoyFilter",
        "calico-alp-native",
    )
    .unwrap();
    let selector = &ef.value["spec"]["workloadSelector"]["labels"];
    assert_eq!(
        selector,
        &json!({inject::LABEL.0: inject::LABEL.1, NATIVE_LABEL.0: NATIVE_LABEL.1})
    );
    let module = envoyfilter_module_path(&ef);
    assert_eq!(module, format!("{search_path}/libcalico_alp.so"));
    let ins = dockerfile::parse(&root().join("images/native/Dockerfile")).unwrap();
    let keywords: Vec<&str> = ins.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(keywords, ["ARG", "FROM", "COPY"]);
    assert_eq!(
        ins[0].args, "ISTIO_PROXY_IMAGE",
        "no default proxy image: name yours"
    );
    assert_eq!(ins[1].args, "${ISTIO_PROXY_IMAGE}");
    let (from, sources, dest) = dockerfile::copy_parts(&ins[2]).unwrap();
    assert_eq!(
        (from, sources, dest),
        (None, vec!["libcalico_alp.so".to_string()], module)
    );
    assert!(
        ins[2].words().contains(&"--chmod=0444"),
        "istio-proxy (1337) must read the module"
    );
    let text = std::fs::read_to_string(root().join("images/native/Dockerfile")).unwrap();
    assert!(text.contains("-f images/native/Dockerfile") && text.contains(" --push dist\n"));
    let module = artifacts::native_module().expect("dist/libcalico_alp.so (./native-bundle.sh)");
    assert_eq!(
        module,
        root()
            .join("dist/libcalico_alp.so")
            .canonicalize()
            .unwrap_or(module.clone())
    );

    // The control socket the filter polls is the one the control container serves.
    let control = inject::container(&base_overlay, CONTAINER).unwrap();
    let listen = {
        let cmd = strings(&control["command"]);
        let i = cmd.iter().position(|a| a == "--listen").unwrap();
        cmd[i + 1].clone()
    };
    for p in ef.value["spec"]["configPatches"].as_array().unwrap() {
        if let Some(cfg) = istio::native_configuration(&p["patch"]["value"]["typed_config"]) {
            assert_eq!(cfg["control_address"], json!(listen));
            // The module takes the wasm filter's configuration keys, and the HTTP and network
            // filters the same configuration (the module knows which filter it is).
            assert!(cfg.get("filter").is_none() && cfg.get("control_cluster").is_none());
            let rest = serde_json::to_string(&without(&cfg, "control_address")).unwrap();
            alp_filter::config::Config::parse(Some(rest.as_bytes()))
                .unwrap_or_else(|e| panic!("{cfg}: {e}"));
        }
    }
}

/// `v` (an object) without key `k`.
fn without(v: &Value, k: &str) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove(k);
    v
}

/// A pod's stand-ins under `dir`: the mounted directories, the module directory of the proxy
/// image (`/var/lib/calico-alp`, with a copy of dist/libcalico_alp.so as the Dockerfile puts
/// it), the mesh CA and summary's certificate.
struct PodEnv {
    pod: Pod,
    ca: Ca,
    module_dir: PathBuf,
    felix_dir: PathBuf,
}

fn pod_env(dir: &Path, module_dir_pod: &str) -> PodEnv {
    let ca = Ca::create(&dir.join("certs")).unwrap();
    let server = ca.issue("server-summary", "summary", true).unwrap();
    let socket_dir = dir.join("pod/var/run/calico-alp");
    let felix_dir = dir.join("pod/var/run/felix");
    let module_dir = dir.join("pod/var/lib/calico-alp");
    std::fs::create_dir_all(&socket_dir).unwrap();
    std::fs::create_dir_all(felix_dir.join("nodeagent")).unwrap();
    std::fs::create_dir_all(&module_dir).unwrap();
    let module = artifacts::native_module().expect("dist/libcalico_alp.so (./native-bundle.sh)");
    std::fs::copy(&module, module_dir.join("libcalico_alp.so")).unwrap();
    // The Pod's wasm fields are unused by the native set; any module stands in.
    let (wasm, wasm_sha256) = bundled_wasm().unwrap_or_else(|_| (module.clone(), String::new()));
    PodEnv {
        pod: Pod {
            paths: PathMap(vec![
                (SOCKET_DIR.to_string(), socket_dir),
                (FELIX_DIR.to_string(), felix_dir.clone()),
                (module_dir_pod.to_string(), module_dir.clone()),
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
        module_dir,
        felix_dir,
    }
}

/// The rendered native set as `kubectl apply -k` applies it, less its PeerAuthentication.
fn native_filters(r: &Path) -> Vec<Doc> {
    rendered::kustomize_build(&r.join(NATIVE_SET))
        .unwrap()
        .into_iter()
        .filter(|d| d.gvk().is_none_or(|(_, k)| k != "PeerAuthentication"))
        .collect()
}

/// The native EnvoyFilter with its module named (`dynamic_module_config.name: calico_alp` in
/// place of `module`), looked up in `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`, instead of given by
/// path.
fn by_name(docs: &[Doc]) -> Vec<Doc> {
    let mut out = docs.to_vec();
    for d in &mut out {
        for p in d.value["spec"]["configPatches"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            // (get: indexing a serde_json object mutably would add the keys it looks for)
            let Some(t) = p.pointer_mut("/patch/value/typed_config") else {
                continue;
            };
            if t["@type"] == istio::NATIVE_HTTP_TYPE || t["@type"] == istio::NATIVE_NETWORK_TYPE {
                let c = t["dynamic_module_config"].as_object_mut().unwrap();
                c.remove("module");
                c.insert("name".into(), json!("calico_alp"));
            }
        }
    }
    out
}

/// The pod's search path (the template's variable, the pod path mapped), as `env` arguments
/// for Envoy.
fn search_path_env(env: &PodEnv) -> Vec<String> {
    let overlay = native_overlay(&istio_file("native-operator.yaml"));
    let proxy = &overlay["spec"]["initContainers"][0];
    let value = proxy["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == SEARCH_PATH_VAR)
        .and_then(|e| e["value"].as_str())
        .unwrap();
    let mapped = env.pod.paths.map(value);
    assert_eq!(Path::new(&mapped), env.module_dir);
    vec!["env".to_string(), format!("{SEARCH_PATH_VAR}={mapped}")]
}

fn write_config(config: &Value, dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(format!("envoy-{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    file
}

fn start_envoy(
    config: &Value,
    dir: &Path,
    name: &str,
    wrapper: &[String],
) -> anyhow::Result<Envoy> {
    let envoy = artifacts::envoy().expect("envoy is required for this test");
    let file = write_config(config, dir, name);
    let run = dir.join(format!("envoy-{name}"));
    std::fs::create_dir_all(&run).unwrap();
    Envoy::start(&envoy, wrapper, &file, &run, 2, Duration::from_secs(30))
}

fn mtls(env: &PodEnv, sa: &str) -> Transport {
    Transport::Tls {
        ca: env.ca.cert_file.clone(),
        client: Some(env.ca.issue(&format!("client-{sa}"), sa, false).unwrap()),
    }
}

fn tcp_mtls(env: &PodEnv, sa: &str) -> TcpTransport {
    let cert = env
        .ca
        .issue(&format!("tcp-client-{sa}"), sa, false)
        .unwrap();
    TcpTransport::Tls(tls::client_config(&env.ca.cert_file, &cert).unwrap())
}

/// The control container of the rendered template, started with its command (pod paths
/// mapped), ready by its readiness probe.
fn start_control(r: &Path, env: &PodEnv, dir: &Path) -> Proc {
    let binary = artifacts::control().expect("the control binary is required");
    let overlay = inject::overlay(&r.join(INSTALL_DIR).join("istio-operator.yaml")).unwrap();
    let c = inject::container(&overlay, CONTAINER).unwrap();
    let cmd = env
        .pod
        .paths
        .command(&strings(&c["command"]), &binary)
        .unwrap();
    let proc = Proc::spawn("control", cmd, &dir.join("control.log")).unwrap();
    let readiness = strings(&c["readinessProbe"]["exec"]["command"]);
    let ready = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        env.pod
            .paths
            .command(&readiness, &binary)
            .unwrap()
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    assert!(
        ready.is_some(),
        "control never ready:\n{}",
        proc.log_tail(30)
    );
    proc
}

fn decide_yaobank(envoy: &Envoy, env: &PodEnv, how: &str) {
    let http = envoy.listeners[istio::INBOUND_LISTENER];
    let customer = Request::get("/")
        .from_ip(yaobank_ip("customer"))
        .transport(mtls(env, "customer"));
    // Until the module has its first snapshot: 503 policy not synchronised.
    let o = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        send(http, &customer)
            .ok()
            .filter(|o| o.status() != Some(503))
    })
    .unwrap_or_else(|| panic!("{how}: no decision within 20 s"));
    assert_eq!(o.summary(), "200 summary: ok", "{how}: customer -> summary");
    let database = Request::get("/")
        .from_ip(yaobank_ip("database"))
        .transport(mtls(env, "database"));
    let o = send(http, &database).unwrap();
    assert_eq!(
        o.summary(),
        "403 denied by policy",
        "{how}: database -> summary"
    );

    // The TCP port: customer's connection passes (greeting and echo), database's is closed
    // without a byte.
    let tcp = envoy.listeners[istio::TCP_LISTENER];
    let want = [GREETING, b"ping from customer".as_slice()].concat();
    let t = tcp_mtls(env, "customer");
    let from: IpAddr = yaobank_ip("customer");
    let passed = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        tcp_client::dial(tcp, Some(from), &t, GREETING.len(), b"ping from customer")
            .ok()
            .filter(|o| o.passed(&want))
    });
    assert!(
        passed.is_some(),
        "{how}: customer's TCP connection never passed"
    );
    let o = tcp_client::dial(
        tcp,
        Some(yaobank_ip("database")),
        &tcp_mtls(env, "database"),
        GREETING.len(),
        b"ping from database",
    )
    .unwrap();
    assert!(
        o.closed_silently(),
        "{how}: database over TCP: {}",
        o.summary()
    );

    // The module's stats: Envoy's dynamic module families, HTTP ones with real labels.
    let stats = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        let body = envoy.admin_get("/stats/prometheus").ok()?.body;
        body.lines()
            .any(|l| {
                l.starts_with("envoy_dynamicmodulescustom_alp_requests_total{")
                    && l.contains("alp_decision=\"denied\"")
                    && l.contains("alp_reason=\"policy_denied\"")
            })
            .then_some(body)
    });
    assert!(
        stats.is_some(),
        "{how}: no envoy_dynamicmodulescustom_alp_requests_total{{alp_decision=\"denied\"}}"
    );
}

/// The rendered native set in a real Envoy with the real module and the injected control:
/// from the module's absolute path (as shipped), then by name from the template's search path.
#[test]
fn the_native_envoyfilter_decides_yaobank_in_envoy_from_its_path_and_the_search_path() {
    artifacts::envoy().expect("envoy is required for this test");
    artifacts::control().expect("the control binary is required for this test");
    artifacts::require_curl().expect("curl is required for this test");
    let dir = RunDir::create("alp-native-istio").unwrap();
    let r = dir.path.join("rendered");
    render(&r, &["--native-image", PROXY_IMAGE]).unwrap();
    let docs = native_filters(&r);
    let ef = rendered::pick(&docs, "EnvoyFilter", "calico-alp-native").unwrap();
    let module_path = envoyfilter_module_path(&ef);
    let module_dir_pod = Path::new(&module_path)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let env = pod_env(&dir.path, &module_dir_pod);
    let summary = std::fs::read_to_string(artifacts::yaobank_updates("summary")).unwrap();
    let _felix = TestFelix::start(&env.felix_dir.join("nodeagent/socket"), &summary).unwrap();
    let mut control = start_control(&r, &env, &dir.path);
    let _backend = TcpBackend::start(&env.pod.tcp_app, GREETING).unwrap();

    let refs: Vec<&Doc> = docs.iter().collect();
    let config = istio::bootstrap(&refs, &env.pod, &dir.path, EcdsMode::Inline).unwrap();
    // Where the patches put the module: before the router, before tcp_proxy (after the MERGE
    // of tcp_proxy), its file the pod's module, mapped.
    let listeners = &config["static_resources"]["listeners"];
    let hcm = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
    let http_names: Vec<&str> = hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        http_names,
        ["envoy.filters.http.dynamic_modules", istio::ROUTER]
    );
    let tcp_chain = listeners[1]["filter_chains"][0]["filters"]
        .as_array()
        .unwrap();
    assert_eq!(
        tcp_chain[0]["name"],
        "envoy.filters.network.dynamic_modules"
    );
    assert_eq!(tcp_chain[1]["name"], istio::TCP_PROXY);
    assert_eq!(
        tcp_chain[1]["typed_config"]["upstream_connect_mode"],
        "ON_DOWNSTREAM_TLS_HANDSHAKE"
    );
    assert_eq!(
        tcp_chain[0]["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"],
        json!(env
            .module_dir
            .join("libcalico_alp.so")
            .display()
            .to_string())
    );
    validate(
        &artifacts::envoy().unwrap(),
        &write_config(&config, &dir.path, "validate"),
    )
    .unwrap();
    {
        let envoy = start_envoy(&config, &dir.path, "path", &[]).unwrap();
        decide_yaobank(&envoy, &env, "absolute path");
    }

    // By name, from ENVOY_DYNAMIC_MODULES_SEARCH_PATH as the template sets it.
    let named = by_name(&docs);
    let refs: Vec<&Doc> = named.iter().collect();
    let config = istio::bootstrap(&refs, &env.pod, &dir.path, EcdsMode::Inline).unwrap();
    let envoy = start_envoy(&config, &dir.path, "search-path", &search_path_env(&env)).unwrap();
    decide_yaobank(&envoy, &env, "search path");
    drop(envoy);
    control.stop(Duration::from_secs(5));
}

/// What a refusal case is: its name, how it spoils the pod's module, the resources, Envoy's
/// `env` wrapper.
type RefusalCase<'a> = (&'a str, Box<dyn Fn() + 'a>, Vec<Doc>, Vec<String>);

/// Fail closed: a module Envoy cannot load (missing, not a module, named without a search
/// path) makes it refuse the configuration: `--mode validate` fails, and Envoy started with it
/// exits rather than serve the inbound listener without the filter.
#[test]
fn envoy_refuses_the_native_envoyfilter_when_the_module_cannot_load() {
    let envoy_bin = artifacts::envoy().expect("envoy is required for this test");
    let dir = RunDir::create("alp-native-missing").unwrap();
    let r = dir.path.join("rendered");
    render(&r, &["--native-image", PROXY_IMAGE]).unwrap();
    let docs = native_filters(&r);
    let refs: Vec<&Doc> = docs.iter().collect();
    let env = pod_env(&dir.path, "/var/lib/calico-alp");
    // As shipped, with the module in place: accepted.
    let good = istio::bootstrap(&refs, &env.pod, &dir.path, EcdsMode::Inline).unwrap();
    validate(&envoy_bin, &write_config(&good, &dir.path, "good")).unwrap();

    let module = env.module_dir.join("libcalico_alp.so");
    let cases: [RefusalCase; 3] = [
        (
            "missing",
            Box::new(|| std::fs::remove_file(&module).unwrap()),
            docs.clone(),
            vec![],
        ),
        (
            "not a module",
            Box::new(|| std::fs::write(&module, b"not an ELF file\n").unwrap()),
            docs.clone(),
            vec![],
        ),
        (
            "by name, no search path",
            Box::new(|| {
                std::fs::copy(artifacts::native_module().unwrap(), &module).unwrap();
            }),
            by_name(&docs),
            // Nor the library path cargo gives tests (it holds target/debug/libcalico_alp.so).
            vec![
                "env".into(),
                format!("--unset={SEARCH_PATH_VAR}"),
                "--unset=LD_LIBRARY_PATH".into(),
            ],
        ),
    ];
    for (i, (what, prepare, docs, wrapper)) in cases.into_iter().enumerate() {
        prepare();
        let refs: Vec<&Doc> = docs.iter().collect();
        let config = istio::bootstrap(&refs, &env.pod, &dir.path, EcdsMode::Inline).unwrap();
        let file = write_config(&config, &dir.path, &format!("refused-{i}"));
        if wrapper.is_empty() {
            let err = validate(&envoy_bin, &file).expect_err(what);
            let msg = format!("{err:#}");
            assert!(
                msg.contains("libcalico_alp") || msg.contains("dynamic module"),
                "{what}: {msg}"
            );
        }
        let started = start_envoy(&config, &dir.path, &format!("refused-{i}"), &wrapper);
        assert!(
            started.is_err(),
            "{what}: Envoy served with a module it cannot load"
        );
    }
}
