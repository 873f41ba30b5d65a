//! Every YAML file the project ships parses, and every Istio and Calico resource in them (and in
//! the docs' YAML blocks) validates against the CRD schemas of ../shared/schemas/.

use alp_manifests::schema::Schemas;
use alp_manifests::yaml::{self, Doc};
use alp_manifests::{rel, root, shared};
use std::collections::BTreeMap;
use std::path::Path;

fn schemas() -> Schemas {
    let s = Schemas::load(&shared().unwrap().join("schemas")).unwrap();
    assert!(s.len() >= 20, "only {} CRD versions loaded", s.len());
    s
}

fn validate_all(schemas: &Schemas, docs: &[Doc]) -> (usize, BTreeMap<String, usize>) {
    let mut validated = 0;
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors = vec![];
    for d in docs {
        let Some((api, kind)) = d.gvk() else { continue };
        match schemas.validate(d) {
            Ok(true) => validated += 1,
            Ok(false) => *skipped.entry(format!("{api} {kind}")).or_default() += 1,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    (validated, skipped)
}

#[test]
fn every_yaml_file_parses_and_every_istio_and_calico_resource_validates() {
    let schemas = schemas();
    let docs = yaml::project_docs().unwrap();
    let (validated, skipped) = validate_all(&schemas, &docs);
    eprintln!(
        "manifests: {} YAML documents, {validated} Istio/Calico resources validated against their CRD schemas; \
         no schema here for: {skipped:?}",
        docs.len()
    );
    // What the how-to applies must be among them.
    let kinds: Vec<String> = docs
        .iter()
        .filter(|d| schemas.covers(d.gvk().map_or("", |g| g.0)))
        .map(|d| format!("{} {}", d.gvk().unwrap().1, d.name()))
        .collect();
    for want in [
        "WasmPlugin calico-alp",
        "WasmPlugin calico-alp-tcp",
        "EnvoyFilter calico-alp-control",
        "EnvoyFilter calico-alp-wasm",
        "EnvoyFilter calico-alp-tcp-connect",
        "PeerAuthentication default",
        "FelixConfiguration default",
        "NetworkPolicy summary",
        "Gateway yaobank",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "no {want} validated; have {kinds:?}"
        );
    }
    // Every kind without a schema is one we know has none in ../shared/schemas.
    for k in skipped.keys() {
        assert!(
            k.starts_with("v1 ")
                || k.starts_with("apps/v1 ")
                || k.starts_with("storage.k8s.io/v1 ")
                || k.starts_with("install.istio.io/"),
            "{k}: a resource of a group the schemas do not cover; add its schema or check it otherwise"
        );
    }
}

#[test]
fn the_shared_examples_and_references_validate_too() {
    // The same validator on third-party manifests (Calico's tutorial and ext_authz resources):
    // it must accept what real installations accept. Names and namespaces are not checked
    // (those files rely on kubectl's default namespace).
    let schemas = schemas();
    let dir = shared().unwrap();
    let mut n = 0;
    for sub in ["examples/yaobank", "reference/calico-alp"] {
        for f in alp_manifests::files_under(&dir.join(sub), &[".yaml"]).unwrap() {
            for mut d in yaml::resources(&f).unwrap() {
                let (api, _) = d.gvk().unwrap();
                if !schemas.covers(api) {
                    continue;
                }
                if d.namespace().is_none() && !d.id().contains("Global") {
                    d.value["metadata"]["namespace"] = "default".into();
                }
                schemas.validate(&d).unwrap();
                n += 1;
            }
        }
    }
    assert!(n >= 6, "only {n} shared resources validated");
}

fn doc(text: &str) -> Doc {
    yaml::parse_docs(text, Path::new("inline.yaml"), 1)
        .unwrap()
        .remove(0)
}

#[test]
fn the_validator_refuses_what_the_api_server_would() {
    let schemas = schemas();
    let wasm = std::fs::read_to_string(root().join("envoy/istio/wasmplugin.yaml")).unwrap();
    assert!(schemas.validate(&doc(&wasm)).unwrap());
    let cases = [
        (
            "failStrategy: FAIL_CLOSE",
            "failStratgey: FAIL_CLOSE",
            "failStratgey",
        ),
        ("phase: AUTHZ", "phase: AUTHORIZATION", "AUTHORIZATION"),
        ("- mode: SERVER", "- mode: INBOUND", "INBOUND"),
        (
            "sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"",
            "sha256: \"abc\"",
            "sha256",
        ),
        ("  namespace: istio-system\n", "", "namespace"),
        ("name: calico-alp\n", "name: Calico_ALP\n", "DNS-1123"),
    ];
    for (from, to, expect) in cases {
        assert!(wasm.contains(from), "{from}");
        let bad = wasm.replacen(from, to, 1);
        let err = schemas
            .validate(&doc(&bad))
            .expect_err(&format!("{to:?} must not validate"))
            .to_string();
        assert!(err.contains(expect), "{to:?}: {err}");
    }
    // The network WasmPlugin: its type and port selectors are checked too.
    let tcp = std::fs::read_to_string(root().join("envoy/istio/wasmplugin-tcp.yaml")).unwrap();
    let tcp_docs = yaml::parse_docs(&tcp, Path::new("wasmplugin-tcp.yaml"), 1).unwrap();
    assert_eq!(tcp_docs.len(), 2);
    for d in &tcp_docs {
        assert!(schemas.validate(d).unwrap(), "{}", d.id());
    }
    for (from, to, expect) in [
        ("\n  type: NETWORK\n", "\n  type: TCP\n", "TCP"),
        ("ports: [{number: 5432}]", "ports: [{number: 0}]", "minimum"),
        ("ports: [{number: 5432}]", "ports: [{port: 5432}]", "port"),
    ] {
        assert!(tcp.contains(from), "{from}");
        let bad = tcp.replacen(from, to, 1);
        let docs = yaml::parse_docs(&bad, Path::new("wasmplugin-tcp.yaml"), 1).unwrap();
        let errs: Vec<String> = docs
            .iter()
            .filter_map(|d| schemas.validate(d).err().map(|e| e.to_string()))
            .collect();
        assert!(errs.iter().any(|e| e.contains(expect)), "{to:?}: {errs:?}");
    }
    // (An EnvoyFilter's patch value is free-form for the API server: istiod reads it against
    // Envoy's API. Envoy checks it: tests/istio.rs, envoy_validates_what_istio_would_configure.)
    // Unknown fields inside Calico rules too; and a typo in a cluster-scoped Calico kind.
    let policy =
        std::fs::read_to_string(root().join("envoy/kubernetes/yaobank/20-policy.yaml")).unwrap();
    let bad = policy.replacen("serviceAccounts:", "serviceAcounts:", 1);
    let errs: Vec<String> = yaml::parse_docs(&bad, Path::new("p.yaml"), 1)
        .unwrap()
        .iter()
        .filter_map(|d| schemas.validate(d).err().map(|e| e.to_string()))
        .collect();
    assert!(
        errs.iter().any(|e| e.contains("serviceAcounts")),
        "{errs:?}"
    );
    let felix = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {policySyncPrefix: /x}\n";
    assert!(schemas.validate(&doc(felix)).is_err());
    // An Istio resource of a version the schemas do not serve.
    let old = wasm.replace(
        "extensions.istio.io/v1alpha1",
        "extensions.istio.io/v1beta7",
    );
    assert!(schemas
        .validate(&doc(&old))
        .unwrap_err()
        .to_string()
        .contains("no schema"));
}

#[test]
fn markdown_yaml_blocks_are_found() {
    // The docs' YAML blocks are part of project_docs(); make sure the extraction works.
    let blocks = yaml::markdown_blocks(&root().join("docs/istio.md")).unwrap();
    assert!(
        blocks.iter().any(|b| b.lang == "sh"),
        "docs/istio.md has shell blocks"
    );
    for b in &blocks {
        assert!(b.line > 1, "{}:{}", rel(&b.file), b.line);
    }
}
