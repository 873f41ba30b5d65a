//! What `envoy/istio/render.sh` writes is what a user applies (issue 15, item 2): one directory
//! per install variant that `kubectl apply -k` and `kubectl apply -f` take as it is, the
//! install inputs apart.
//!
//! * each set (`wasmplugin/`, `envoyfilter/`) as a whole: its `Kustomization` lists exactly
//!   the manifests `kubectl apply -f` reads there (no file missing, none extra, nothing else in
//!   the directory), both ways give the same resources, and every document of every file is an
//!   Istio resource that validates against its CRD schema;
//! * the two ways of installing the filter never meet: a set holds WasmPlugins of the module or
//!   an EnvoyFilter carrying the wasm filters, never both, and the one its name says; each has
//!   what both need (the control cluster, strict mTLS), byte for byte the same;
//! * the install inputs (IstioOperator, Helm values, the FelixConfiguration patch) are in
//!   `install/` and in no set, and `install/` is no kustomization;
//! * the commands render.sh prints and its README name exactly these directories and files;
//! * `--no-tcp` leaves the network WasmPlugin out of the set; a render replaces its output
//!   directory as a whole (no file of an earlier render survives to be applied) and refuses a
//!   directory it did not write;
//! * kubectl and kustomize are emulated ([`alp_manifests::rendered`]): the emulation refuses
//!   what they refuse. Where `kubectl` is installed, `kubectl kustomize` (no cluster needed)
//!   must build the same resources from each set, and agree with the emulation on the
//!   crafted cases.

use alp_e2e::stack::RunDir;
use alp_manifests::rendered::{
    self, ENVOYFILTER_SET, INSTALL_DIR, INSTALL_INPUTS, SETS, SET_KUSTOMIZATION, WASMPLUGIN_SET,
};
use alp_manifests::schema::Schemas;
use alp_manifests::yaml::{self, Doc};
use alp_manifests::{render_istio_with, root, shared};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGE: &str = "example.com/calico-alp/control:test";

/// An oci:// render needs no dist/calico-alp.wasm: the checksum is the digest given.
fn oci_args() -> Vec<String> {
    [
        "--wasm-url",
        "oci://registry.example.com/calico-alp/filter:v1",
        "--oci-digest",
        &format!("sha256:{}", "ab".repeat(32)),
        "--control-image",
        IMAGE,
    ]
    .map(str::to_string)
    .to_vec()
}

fn render(out: &Path, extra: &[&str]) -> String {
    let mut args = oci_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    render_istio_with(out, &args).unwrap()
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn file_names(files: &[PathBuf]) -> BTreeSet<String> {
    files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The committed manifests a render without `--native-image` places (the optional native
/// module's are checked by tests/manifests/tests/native.rs).
fn committed_yaml() -> BTreeSet<String> {
    let mut out =
        file_names(&alp_manifests::files_under(&root().join("envoy/istio"), &[".yaml"]).unwrap());
    for f in rendered::NATIVE_FILES {
        assert!(
            out.remove(f),
            "envoy/istio/{f} is gone: update rendered::NATIVE_FILES"
        );
    }
    out
}

/// The documents' values, in an order that does not depend on the files'.
fn by_id(docs: &[Doc]) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = docs
        .iter()
        .map(|d| (rendered::resource_id(d), d.value.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `kubectl kustomize DIR` (no cluster involved): None when kubectl is not installed.
fn kubectl_kustomize(dir: &Path) -> Option<Result<Vec<Value>, String>> {
    let out = match Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .env("KUBECONFIG", dir.join("no-kubeconfig"))
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running kubectl: {e}"),
    };
    if !out.status.success() {
        return Some(Err(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = yaml::parse_docs(&text, Path::new("kubectl-kustomize-output"), 1).unwrap();
    Some(Ok(docs.into_iter().map(|d| d.value).collect()))
}

fn sorted_values(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

#[test]
fn each_rendered_set_is_what_kubectl_applies_and_validates_as_a_whole() {
    let schemas = Schemas::load(&shared().unwrap().join("schemas")).unwrap();
    let dir = RunDir::create("alp-render-sets").unwrap();
    let out = dir.path.join("istio");
    let printed = render(&out, &[]);

    assert_eq!(
        names(&out),
        ["README.md", INSTALL_DIR, ENVOYFILTER_SET, WASMPLUGIN_SET]
            .map(str::to_string)
            .into(),
        "what render.sh writes"
    );
    let committed = committed_yaml();
    let install_inputs: BTreeSet<String> = INSTALL_INPUTS.map(str::to_string).into();
    let mut placed: BTreeSet<String> = install_inputs.clone();
    let mut kubectl_checked = false;
    let mut shared_files: Option<BTreeSet<String>> = None;

    for set in SETS {
        let d = out.join(set);
        // The kustomization: the one kustomize reads, and not a .yaml file kubectl apply -f
        // would read as a manifest.
        assert_eq!(
            rendered::kustomization_file(&d).unwrap(),
            Some(d.join(SET_KUSTOMIZATION)),
            "{set}"
        );
        let k_files = rendered::kustomize_files(&d).unwrap();
        let f_files = rendered::apply_f_files(&d).unwrap();
        // -k and -f read the same files, which are everything in the directory but the
        // kustomization: no missing file, no extra one, no subdirectory.
        assert_eq!(
            file_names(&k_files),
            file_names(&f_files),
            "{set}: -k and -f"
        );
        for f in &k_files {
            assert_eq!(f.parent().unwrap(), d.canonicalize().unwrap(), "{set}");
        }
        let mut expected = file_names(&f_files);
        expected.insert(SET_KUSTOMIZATION.to_string());
        assert_eq!(names(&d), expected, "{set}: files beside the manifests");
        assert_eq!(
            rendered::kustomization_resources(&d).unwrap().len(),
            k_files.len(),
            "{set}: a resource listed twice"
        );

        let k_docs = rendered::kustomize_build(&d).unwrap();
        let f_docs = rendered::apply_f(&d).unwrap();
        assert_eq!(
            by_id(&k_docs),
            by_id(&f_docs),
            "{set}: -k and -f apply the same"
        );

        // Every document of every file validates; no kind the schemas do not cover (the
        // IstioOperator has none: it would be skipped, so it must not be here at all).
        let mut errors = vec![];
        for doc in &k_docs {
            match schemas.validate(doc) {
                Ok(true) => {}
                Ok(false) => {
                    errors.push(format!("{}: {}: no schema covers it", doc.at(), doc.id()))
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        assert!(errors.is_empty(), "{set}:\n{}", errors.join("\n"));

        // One way of installing the filter per set, the one it is named after.
        assert_eq!(
            rendered::filter_variants(&k_docs),
            BTreeSet::from([set]),
            "{set}: WasmPlugin and EnvoyFilter variants of the filter in one set"
        );
        let ids: BTreeSet<String> = k_docs
            .iter()
            .map(|d| format!("{} {}", d.gvk().unwrap().1, d.name()))
            .collect();
        let mut want: BTreeSet<String> = [
            "EnvoyFilter calico-alp-control",
            "PeerAuthentication default",
        ]
        .map(str::to_string)
        .into();
        if set == WASMPLUGIN_SET {
            want.extend(
                [
                    "WasmPlugin calico-alp",
                    "WasmPlugin calico-alp-tcp",
                    "EnvoyFilter calico-alp-tcp-connect",
                ]
                .map(str::to_string),
            );
        } else {
            want.insert("EnvoyFilter calico-alp-wasm".to_string());
        }
        assert_eq!(ids, want, "{set}");
        let mtls = rendered::pick(&k_docs, "PeerAuthentication", "default").unwrap();
        assert_eq!(mtls.value["spec"]["mtls"]["mode"], "STRICT");

        // No install input in a set: not as a file, not as a document.
        let present = file_names(&f_files);
        assert!(
            present.is_disjoint(&install_inputs),
            "{set}: install inputs {:?}",
            present.intersection(&install_inputs).collect::<Vec<_>>()
        );
        for input in INSTALL_INPUTS {
            for doc in yaml::load_file(&out.join(INSTALL_DIR).join(input)).unwrap() {
                assert!(
                    !k_docs.iter().any(|d| d.value == doc.value),
                    "{set}: holds {input}'s {}",
                    doc.id()
                );
            }
        }
        for doc in &k_docs {
            let kind = doc.gvk().unwrap().1;
            assert!(
                !matches!(kind, "IstioOperator" | "FelixConfiguration"),
                "{set}: {}",
                doc.id()
            );
        }

        // What both sets hold is the same files, byte for byte.
        let shared_here: BTreeSet<String> = present
            .iter()
            .filter(|f| {
                out.join(ENVOYFILTER_SET).join(f).is_file()
                    && out.join(WASMPLUGIN_SET).join(f).is_file()
            })
            .cloned()
            .collect();
        for f in &shared_here {
            assert_eq!(
                std::fs::read(out.join(WASMPLUGIN_SET).join(f)).unwrap(),
                std::fs::read(out.join(ENVOYFILTER_SET).join(f)).unwrap(),
                "{f} differs between the sets"
            );
        }
        if let Some(s) = &shared_files {
            assert_eq!(s, &shared_here);
        }
        shared_files = Some(shared_here);
        placed.extend(present);

        // kubectl's own kustomize, where there is one.
        if let Some(built) = kubectl_kustomize(&d) {
            let built = built.unwrap_or_else(|e| panic!("kubectl kustomize {set}: {e}"));
            assert_eq!(
                sorted_values(built),
                sorted_values(k_docs.iter().map(|d| d.value.clone()).collect()),
                "{set}: kubectl kustomize builds other resources than the emulation"
            );
            kubectl_checked = true;
        }
    }
    assert_eq!(
        shared_files.unwrap(),
        ["control-cluster.yaml", "peer-authentication.yaml"]
            .map(str::to_string)
            .into(),
        "what both sets need"
    );
    // Every committed manifest is somewhere, and nothing else is.
    assert_eq!(
        placed, committed,
        "the committed manifests and the rendered ones"
    );

    // The install inputs: exactly those, rendered, and no kustomization (kubectl apply -k
    // refuses the directory).
    let install = out.join(INSTALL_DIR);
    assert_eq!(names(&install), install_inputs);
    assert_eq!(rendered::kustomization_file(&install).unwrap(), None);
    assert!(rendered::kustomize_files(&install).is_err());
    for input in INSTALL_INPUTS {
        let text = std::fs::read_to_string(install.join(input)).unwrap();
        assert!(!text.contains(".invalid"), "{input}: a placeholder left");
    }
    if let Some(built) = kubectl_kustomize(&install) {
        assert!(built.is_err(), "kubectl kustomize takes install/");
    }

    // What it prints: each directory, and the exact commands, with paths that exist.
    let shown = out.display().to_string();
    for cmd in [
        format!("kubectl apply -k {shown}/{WASMPLUGIN_SET}"),
        format!("kubectl apply -k {shown}/{ENVOYFILTER_SET}"),
        format!("istioctl install -y -f {shown}/{INSTALL_DIR}/istio-operator.yaml"),
        format!(
            "helm install istiod istio/istiod -n istio-system --wait -f {shown}/{INSTALL_DIR}/istiod-values.yaml"
        ),
        format!(
            "kubectl patch felixconfiguration default --type merge --patch-file {shown}/{INSTALL_DIR}/felix-policy-sync.yaml"
        ),
    ] {
        assert!(printed.contains(&cmd), "render.sh does not print {cmd:?}:\n{printed}");
    }
    for line in printed.lines() {
        // The commands (not the listing's note that install inputs are never applied).
        if line.contains("kubectl apply -") {
            assert!(!line.contains(INSTALL_DIR), "{line}");
            assert!(
                !(line.contains(WASMPLUGIN_SET)
                    && line.contains(ENVOYFILTER_SET)
                    && !line.contains("instead")),
                "{line}"
            );
        }
    }
    // The README beside them says the same, relative to itself.
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for want in [
        "`istioctl install -y -f install/istio-operator.yaml`",
        "`helm install istiod istio/istiod -n istio-system --wait -f install/istiod-values.yaml`",
        "never `kubectl apply` them",
        "`kubectl apply -k wasmplugin`",
        "`kubectl apply -f wasmplugin/`",
        "`kubectl apply -k envoyfilter`",
        "never both",
    ] {
        assert!(readme.contains(want), "README.md lacks {want:?}:\n{readme}");
    }
    if !kubectl_checked {
        eprintln!(
            "render_sets: kubectl not installed; the kustomize emulation alone checked the sets"
        );
    }
}

#[test]
fn render_options_shape_the_sets_and_the_output_is_replaced_whole() {
    let dir = RunDir::create("alp-render-options").unwrap();
    let out = dir.path.join("istio");
    render(&out, &[]);
    assert!(out
        .join(WASMPLUGIN_SET)
        .join("wasmplugin-tcp.yaml")
        .is_file());

    // --no-tcp: the same directory rendered again without the network WasmPlugin; nothing of
    // the first render is left to be applied with it.
    let printed = render(&out, &["--no-tcp"]);
    assert!(printed.contains("TCP ports none"), "{printed}");
    let set = out.join(WASMPLUGIN_SET);
    assert!(
        !set.join("wasmplugin-tcp.yaml").exists(),
        "a stale file of the first render"
    );
    let docs = rendered::kustomize_build(&set).unwrap();
    assert_eq!(by_id(&docs), by_id(&rendered::apply_f(&set).unwrap()));
    let kinds: Vec<String> = docs.iter().map(|d| d.id()).collect();
    assert_eq!(
        kinds,
        [
            "EnvoyFilter istio-system/calico-alp-control",
            "PeerAuthentication istio-system/default",
            "WasmPlugin istio-system/calico-alp",
        ],
        "--no-tcp"
    );
    // The EnvoyFilter variant has no port list: unchanged.
    assert!(rendered::pick(
        &rendered::kustomize_build(&out.join(ENVOYFILTER_SET)).unwrap(),
        "EnvoyFilter",
        "calico-alp-wasm"
    )
    .is_ok());

    // An output of the render.sh before sets (every file in one directory) is replaced whole.
    let flat = dir.path.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for f in committed_yaml() {
        std::fs::write(flat.join(&f), "# an earlier render\n").unwrap();
    }
    render(&flat, &[]);
    assert_eq!(
        names(&flat),
        ["README.md", INSTALL_DIR, ENVOYFILTER_SET, WASMPLUGIN_SET]
            .map(str::to_string)
            .into()
    );

    // A directory render.sh did not write is refused and left as it was.
    let foreign = dir.path.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let mut args = oci_args();
    args.push("--out".into());
    let o = Command::new("bash")
        .arg(root().join("envoy/istio/render.sh"))
        .args(&args)
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("notes.txt"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(names(&foreign), BTreeSet::from(["notes.txt".to_string()]));
    // ... and no staging directory is left beside it.
    assert!(
        names(&dir.path).iter().all(|n| !n.contains(".render.")),
        "{:?}",
        names(&dir.path)
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns}\ndata: {k: v}\n";
const CM2: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ns}\ndata: {k: v}\n";
const K_HEAD: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";

#[test]
fn the_emulated_kubectl_refuses_what_kubectl_refuses() {
    let dir = RunDir::create("alp-kustomize-emulation").unwrap();
    let case = |name: &str, files: &[(&str, &str)]| -> PathBuf {
        let d = dir.path.join(name);
        for (f, t) in files {
            write(&d, f, t);
        }
        d
    };
    let k = |resources: &str| format!("{K_HEAD}resources: {resources}\n");

    // Accepted: a set as render.sh writes it, and a common directory two overlays reference.
    let ok = case(
        "ok",
        &[
            ("Kustomization", &k("[a.yaml, b.yaml]")),
            ("a.yaml", CM),
            ("b.yaml", CM2),
        ],
    );
    assert_eq!(rendered::kustomize_build(&ok).unwrap().len(), 2);
    assert_eq!(rendered::apply_f(&ok).unwrap().len(), 2);
    let common = case(
        "tree",
        &[
            ("common/kustomization.yaml", &k("[a.yaml]")),
            ("common/a.yaml", CM),
            ("overlay/kustomization.yaml", &k("[../common, b.yaml]")),
            ("overlay/b.yaml", CM2),
        ],
    );
    let overlay = common.join("overlay");
    assert_eq!(rendered::kustomize_build(&overlay).unwrap().len(), 2);

    // Refused.
    // Refused: (what, directory, the emulation's message, whether kustomize refuses it too).
    let bad: Vec<(&str, PathBuf, &str, bool)> = vec![
        (
            "missing resource",
            case(
                "missing",
                &[("Kustomization", &k("[a.yaml, gone.yaml]")), ("a.yaml", CM)],
            ),
            "does not exist",
            true,
        ),
        (
            "directory without its own kustomization",
            case(
                "nokust",
                &[("Kustomization", &k("[sub]")), ("sub/a.yaml", CM)],
            ),
            "without a kustomization",
            true,
        ),
        (
            "two kustomization files",
            case(
                "two",
                &[
                    ("Kustomization", &k("[a.yaml]")),
                    ("kustomization.yaml", &k("[a.yaml]")),
                    ("a.yaml", CM),
                ],
            ),
            "more than one",
            true,
        ),
        (
            "a file outside the root",
            case("outside/in", &[("Kustomization", &k("[../a.yaml]"))]),
            "outside",
            true,
        ),
        (
            "the same resource twice",
            case(
                "dup",
                &[
                    ("Kustomization", &k("[a.yaml, again.yaml]")),
                    ("a.yaml", CM),
                    ("again.yaml", CM),
                ],
            ),
            "a second time",
            true,
        ),
        (
            "a cycle",
            case(
                "cycle",
                &[
                    ("x/kustomization.yaml", &k("[../y]")),
                    ("y/kustomization.yaml", &k("[../x]")),
                ],
            )
            .join("x"),
            "cycle",
            true,
        ),
        // kustomize would set the namespace; the emulation does not know how, so refuses.
        (
            "a field not emulated",
            case(
                "field",
                &[
                    (
                        "Kustomization",
                        &format!("{}namespace: other\n", k("[a.yaml]")),
                    ),
                    ("a.yaml", CM),
                ],
            ),
            "not emulated",
            false,
        ),
    ];
    write(&dir.path.join("outside"), "a.yaml", CM);
    for (what, d, expect, kustomize_refuses) in &bad {
        let err = rendered::kustomize_build(d).expect_err(what);
        assert!(format!("{err:#}").contains(expect), "{what}: {err:#}");
        if let Some(built) = kubectl_kustomize(d) {
            assert_eq!(
                built.is_err(),
                *kustomize_refuses,
                "{what}: kubectl kustomize {built:?}"
            );
        }
    }
    for d in [&ok, &overlay] {
        if let Some(built) = kubectl_kustomize(d) {
            let built = built.unwrap_or_else(|e| panic!("kubectl kustomize {}: {e}", d.display()));
            assert_eq!(
                sorted_values(built),
                sorted_values(
                    rendered::kustomize_build(d)
                        .unwrap()
                        .into_iter()
                        .map(|d| d.value)
                        .collect()
                )
            );
        }
    }

    // kubectl apply -f DIR: a kustomization.yaml there is read as a manifest and refused; a
    // `Kustomization`, a README.md are not read; nor are subdirectories.
    let f = case(
        "apply-f",
        &[("kustomization.yaml", &k("[a.yaml]")), ("a.yaml", CM)],
    );
    let err = rendered::apply_f(&f).unwrap_err();
    assert!(
        format!("{err:#}").contains("no matches for kind"),
        "{err:#}"
    );
    let f = case(
        "apply-f-bare",
        &[
            ("kustomization.yaml", "resources: [a.yaml]\n"),
            ("a.yaml", CM),
        ],
    );
    let err = rendered::apply_f(&f).unwrap_err();
    assert!(
        format!("{err:#}").contains("without apiVersion and kind"),
        "{err:#}"
    );
    let f = case(
        "apply-f-ok",
        &[
            ("Kustomization", &k("[a.yaml]")),
            ("a.yaml", CM),
            ("README.md", "# x\n"),
            ("sub/b.yaml", CM2),
        ],
    );
    assert_eq!(
        file_names(&rendered::apply_f_files(&f).unwrap()),
        BTreeSet::from(["a.yaml".to_string()])
    );
    // Helm values (no apiVersion, no kind) are no manifest either.
    let v = case("values", &[("values.yaml", "pilot: {env: {A: b}}\n")]);
    assert!(rendered::apply_f(&v).is_err());
}
