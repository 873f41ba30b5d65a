//! What `envoy/istio/render.sh` writes: one directory per install variant (a *set*) that
//! `kubectl apply -k` and `kubectl apply -f` take as it is, and the install inputs apart.
//!
//! ```text
//! <out>/install/      istio-operator.yaml, istiod-values.yaml, felix-policy-sync.yaml
//! <out>/wasmplugin/   Kustomization + the WasmPlugin variant and the shared resources
//! <out>/envoyfilter/  Kustomization + the EnvoyFilter variant and the shared resources
//! <out>/README.md
//! ```
//!
//! Neither kubectl nor kustomize is needed here: the two ways kubectl reads a directory are
//! emulated.
//! * `kubectl apply -f DIR` ([`apply_f_files`]): the regular files directly in DIR whose name
//!   ends in `.json`, `.yaml` or `.yml` (kubectl's `FileExtensions`; no recursion without `-R`),
//!   every document of which must be an object with `apiVersion` and `kind`; a
//!   `kustomization.yaml` there is read as one and refused ("Object 'Kind' is missing"). That
//!   is why the sets name theirs `Kustomization`, which kustomize also reads and `-f` skips.
//! * `kubectl apply -k DIR` ([`kustomize_files`]): the one kustomization file of DIR
//!   (`kustomization.yaml`, `kustomization.yml` or `Kustomization`; two are an error, as in
//!   kustomize), of which only `apiVersion`, `kind` and `resources` are understood (any other
//!   field is an error here, so a new feature needs its emulation first). Each resource is a
//!   file in or below DIR (kustomize's default load restrictor) or a directory with its own
//!   kustomization, read the same way (cycles refused); remote resources are refused. Two
//!   resources with one apiVersion, kind, namespace and name are an error, as in kustomize.

use crate::yaml::Doc;
use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The WasmPlugin variant's directory.
pub const WASMPLUGIN_SET: &str = "wasmplugin";
/// The EnvoyFilter variant's directory.
pub const ENVOYFILTER_SET: &str = "envoyfilter";
/// The directories `kubectl apply` takes, one per variant of the wasm filter (the default).
pub const SETS: [&str; 2] = [WASMPLUGIN_SET, ENVOYFILTER_SET];
/// The optional native module's set, written only with `render.sh --native-image`.
pub const NATIVE_SET: &str = "native";
/// Its install overlays, written into [`INSTALL_DIR`] with it.
pub const NATIVE_INSTALL_INPUTS: [&str; 2] = ["native-operator.yaml", "native-values.yaml"];
/// The committed manifests only the native render writes (`native/` and its install overlays).
pub const NATIVE_FILES: [&str; 3] = [
    "envoyfilter-native.yaml",
    "native-operator.yaml",
    "native-values.yaml",
];
/// The install inputs' directory (never applied).
pub const INSTALL_DIR: &str = "install";
/// The install inputs: IstioOperator (`istioctl install -f`), Helm values (`helm install -f`),
/// the FelixConfiguration merge patch (`kubectl patch --patch-file`).
pub const INSTALL_INPUTS: [&str; 3] = [
    "istio-operator.yaml",
    "istiod-values.yaml",
    "felix-policy-sync.yaml",
];
/// The file names kustomize reads as a directory's kustomization (`konfig`).
pub const KUSTOMIZATION_NAMES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];
/// The name the sets use: one kustomize reads and `kubectl apply -f` skips.
pub const SET_KUSTOMIZATION: &str = "Kustomization";
/// The extensions of the files `kubectl apply -f DIR` reads.
pub const KUBECTL_EXTENSIONS: [&str; 3] = [".json", ".yaml", ".yml"];

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        out.push(e?.path());
    }
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// The files `kubectl apply -f DIR` reads, in its (lexical) order.
pub fn apply_f_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && KUBECTL_EXTENSIONS.iter().any(|e| file_name(p).ends_with(e)))
        .collect())
}

/// The resources of `files`, every document of which must be one (apiVersion and kind).
fn resources_of(files: &[PathBuf]) -> Result<Vec<Doc>> {
    let mut out = vec![];
    for f in files {
        let docs = crate::yaml::load_file(f)?;
        if docs.is_empty() {
            bail!("{}: no resource in it", crate::rel(f));
        }
        for d in docs {
            let Some((api, kind)) = d.gvk() else {
                bail!(
                    "{}: a document without apiVersion and kind, which kubectl refuses",
                    d.at()
                );
            };
            // What kustomize reads is no API resource: the API server has no such kind.
            if api.starts_with("kustomize.config.k8s.io/") {
                bail!(
                    "{}: {kind} {api} is kustomize's, which the API server refuses (no matches \
                     for kind {kind})",
                    d.at()
                );
            }
            out.push(d);
        }
    }
    Ok(out)
}

/// What `kubectl apply -f DIR` applies.
pub fn apply_f(dir: &Path) -> Result<Vec<Doc>> {
    let files = apply_f_files(dir)?;
    if files.is_empty() {
        bail!("{}: no manifest for kubectl apply -f", crate::rel(dir));
    }
    let docs = resources_of(&files)?;
    unique_ids(&docs)?;
    Ok(docs)
}

/// The kustomization file of `dir`, if it has one; an error if it has several.
pub fn kustomization_file(dir: &Path) -> Result<Option<PathBuf>> {
    let found: Vec<PathBuf> = KUSTOMIZATION_NAMES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => bail!(
            "{}: more than one kustomization file ({}), which kustomize refuses",
            crate::rel(dir),
            many.iter()
                .map(|p| file_name(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `resources` entries of `dir`'s kustomization, as written.
pub fn kustomization_resources(dir: &Path) -> Result<Vec<String>> {
    let file = kustomization_file(dir)?
        .ok_or_else(|| anyhow!("{}: no kustomization file", crate::rel(dir)))?;
    let docs = crate::yaml::load_file(&file)?;
    let [doc] = docs.as_slice() else {
        bail!("{}: expected one YAML document", crate::rel(&file));
    };
    let obj = doc
        .value
        .as_object()
        .ok_or_else(|| anyhow!("{}: not a mapping", doc.at()))?;
    for (k, v) in obj {
        match k.as_str() {
            "apiVersion" if v == "kustomize.config.k8s.io/v1beta1" => {}
            "kind" if v == "Kustomization" => {}
            "resources" => {}
            _ => bail!(
                "{}: {k}: {v} is not emulated here (apiVersion kustomize.config.k8s.io/v1beta1, \
                 kind Kustomization and resources only)",
                doc.at()
            ),
        }
    }
    for k in ["apiVersion", "kind"] {
        if !obj.contains_key(k) {
            bail!("{}: no {k}", doc.at());
        }
    }
    obj.get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{}: no resources list", doc.at()))?
        .iter()
        .map(|r| {
            r.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{}: resource {r} is not a string", doc.at()))
        })
        .collect()
}

/// The resource files `kubectl apply -k DIR` reads, in the order kustomize accumulates them.
pub fn kustomize_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![];
    accumulate(dir, &mut stack, &mut out)?;
    Ok(out)
}

fn accumulate(dir: &Path, stack: &mut Vec<PathBuf>, out: &mut Vec<PathBuf>) -> Result<()> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("{}", dir.display()))?;
    if stack.contains(&root) {
        bail!("{}: a kustomization cycle", crate::rel(dir));
    }
    stack.push(root.clone());
    for entry in kustomization_resources(dir)? {
        if entry.contains("://") || entry.starts_with("github.com/") || entry.starts_with("git@") {
            bail!(
                "{}: remote resource {entry} is not emulated here",
                crate::rel(dir)
            );
        }
        let p = root.join(&entry);
        let real = p
            .canonicalize()
            .map_err(|_| anyhow!("{}: resource {entry} does not exist", crate::rel(dir)))?;
        if real.is_dir() {
            if kustomization_file(&real)?.is_none() {
                bail!(
                    "{}: resource {entry} is a directory without a kustomization of its own",
                    crate::rel(dir)
                );
            }
            accumulate(&real, stack, out)?;
        } else {
            if !real.starts_with(&root) {
                bail!(
                    "{}: resource {entry} is outside the kustomization's directory, which \
                     kustomize's load restrictor refuses",
                    crate::rel(dir)
                );
            }
            if out.contains(&real) {
                bail!("{}: resource {entry} listed twice", crate::rel(dir));
            }
            out.push(real);
        }
    }
    stack.pop();
    Ok(())
}

/// What `kubectl apply -k DIR` applies.
pub fn kustomize_build(dir: &Path) -> Result<Vec<Doc>> {
    let docs = resources_of(&kustomize_files(dir)?)?;
    unique_ids(&docs)?;
    Ok(docs)
}

/// `apiVersion kind namespace/name`: what kustomize and the API server tell resources apart by.
pub fn resource_id(d: &Doc) -> String {
    let (api, kind) = d.gvk().unwrap_or(("?", "?"));
    format!("{api} {kind} {}/{}", d.namespace().unwrap_or(""), d.name())
}

fn unique_ids(docs: &[Doc]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for d in docs {
        if !seen.insert(resource_id(d)) {
            bail!("{}: {} a second time", d.at(), resource_id(d));
        }
    }
    Ok(())
}

/// Which ways of installing the filter `docs` hold: `wasmplugin` for a WasmPlugin of the
/// module, `envoyfilter` for an EnvoyFilter that carries a wasm filter (an EXTENSION_CONFIG or
/// a filter patch whose configuration is a wasm filter), `native` for one that carries the
/// native module (a dynamic module filter). A set must hold exactly one.
pub fn filter_variants(docs: &[Doc]) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for d in docs {
        match d.gvk() {
            Some((_, "WasmPlugin")) => {
                out.insert(WASMPLUGIN_SET);
            }
            Some((_, "EnvoyFilter")) => {
                let wasm = d.value["spec"]["configPatches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| {
                        let t = &p["patch"]["value"]["typed_config"]["@type"];
                        t == crate::istio::WASM_TYPE || t == crate::istio::NETWORK_WASM_TYPE
                    });
                if wasm {
                    out.insert(ENVOYFILTER_SET);
                }
                let native = d.value["spec"]["configPatches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| {
                        let t = &p["patch"]["value"]["typed_config"]["@type"];
                        t == crate::istio::NATIVE_HTTP_TYPE
                            || t == crate::istio::NATIVE_NETWORK_TYPE
                    });
                if native {
                    out.insert(NATIVE_SET);
                }
            }
            _ => {}
        }
    }
    out
}

/// The one resource of `kind` named `name` among `docs`.
pub fn pick(docs: &[Doc], kind: &str, name: &str) -> Result<Doc> {
    let found: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.gvk().is_some_and(|(_, k)| k == kind) && d.name() == name)
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        other => bail!("expected one {kind} {name}, found {}", other.len()),
    }
}
