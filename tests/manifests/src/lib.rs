//! alp-manifests: the CI checks of what a Calico + Istio user applies (issue 6).
//!
//! The artefacts live in `envoy/istio/` (Istio resources, injection template, `render.sh`),
//! `envoy/kubernetes/` (the YAO bank tutorial), `images/` (control and wasm images) and `docs/`.
//! Nothing here talks to a cluster: each check gives an artefact to the real thing that would
//! consume it, or the closest real thing this machine has.
//!
//! * [`yaml`]: every YAML file (and every ```yaml block of the docs) parses; documents with an
//!   `apiVersion` and `kind` are collected as resources.
//! * [`schema`]: Istio and Calico resources validate against the CRD schemas in
//!   `../shared/schemas/` (the `openAPIV3Schema` of the served version matching `apiVersion`,
//!   made strict the way `kubectl apply`'s server-side field validation is: unknown fields are
//!   errors).
//! * [`inject`]: the `calico-alp` injection template, rendered as istiod would for its two
//!   variables, and the control container it adds.
//! * [`istio`]: the Envoy configuration Istio builds from the WasmPlugins or the EnvoyFilters
//!   for an HTTP port and a TCP port, reproduced as a static bootstrap (patch semantics
//!   emulated: cluster ADD, network filter MERGE and INSERT_BEFORE on the connection manager or
//!   `tcp_proxy`, HTTP filter INSERT_BEFORE, extension config, WasmPlugins placed by type and
//!   port, istio-agent's module download with its checksum check or its deny-all fallback),
//!   which the tests give to `envoy --mode validate` and then run.
//! * [`felix`]: a test Felix (the `felix-sim` crate) on the Policy Sync socket path the CSI
//!   driver would provide.
//! * [`dockerfile`]: the instructions of the Dockerfiles, to check what they copy and run.
//! * [`rendered`]: what `envoy/istio/render.sh` writes (one directory per install variant, the
//!   install inputs apart), read as `kubectl apply -f` and `kubectl apply -k` read it.

pub mod dockerfile;
pub mod felix;
pub mod inject;
pub mod istio;
pub mod rendered;
pub mod schema;
pub mod yaml;

use anyhow::{bail, Context as _, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
pub fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `../shared` next to the workspace (CI has it there too).
pub fn shared() -> Result<PathBuf> {
    let dir = root().join("../shared");
    if !dir.join("schemas").is_dir() {
        bail!(
            "{} is missing: these checks read the CRD schemas from ../shared/schemas/ \
             (the shared material must sit next to the repository, as in CI)",
            dir.join("schemas").display()
        );
    }
    Ok(dir)
}

/// The bundled filter module and its recorded checksum: `dist/calico-alp.wasm` as
/// `./wasm-bundle.sh` writes it (test.sh runs it before the tests).
pub fn bundled_wasm() -> Result<(PathBuf, String)> {
    let wasm = root().join("dist/calico-alp.wasm");
    let sum = root().join("dist/calico-alp.wasm.sha256");
    if !wasm.is_file() || !sum.is_file() {
        bail!(
            "{} (and .sha256) missing: run ./wasm-bundle.sh first (test.sh does)",
            wasm.display()
        );
    }
    let recorded = std::fs::read_to_string(&sum)?
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let actual = sha256_file(&wasm)?;
    if recorded != actual {
        bail!(
            "{} says {recorded} but the module's sha256 is {actual}: run ./wasm-bundle.sh again",
            sum.display()
        );
    }
    Ok((wasm, actual))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(sha256_hex(&bytes))
}

/// Every file under `dir` (recursively) whose name ends with one of `exts`, sorted; skips
/// generated directories (`envoy/compose/`).
pub fn files_under(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "compose") {
                    continue;
                }
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| exts.iter().any(|e| n.ends_with(e)))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path` relative to the workspace root, for messages.
pub fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Renders the Istio manifests with `envoy/istio/render.sh` into `out` for an https:// module
/// URL (the checksum then comes from dist/) and `image`; returns what it printed.
pub fn render_istio(out: &Path, url: &str, image: &str) -> Result<String> {
    render_istio_with(out, &["--wasm-url", url, "--control-image", image])
}

/// `envoy/istio/render.sh ARGS --out OUT`; returns what it printed (an error with its output
/// when it fails).
pub fn render_istio_with(out: &Path, args: &[&str]) -> Result<String> {
    let status = std::process::Command::new("bash")
        .arg(root().join("envoy/istio/render.sh"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .context("running envoy/istio/render.sh")?;
    if !status.status.success() {
        bail!(
            "render.sh failed ({}):\n{}{}",
            status.status,
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&status.stdout).into_owned())
}
