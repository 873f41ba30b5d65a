//! The `calico-alp` Istio injection template (`envoy/istio/istio-operator.yaml`,
//! `envoy/istio/istiod-values.yaml`).
//!
//! istiod renders it with Go's text/template for each pod and merges the result into the pod
//! (strategic merge, containers by name). The template uses exactly two template expressions,
//! istio-proxy's user and group; [`render`] substitutes them as istiod does by default and
//! refuses any other `{{ ... }}`, so a new expression cannot slip in untested.

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use std::path::Path;

/// The name of the template, in `sidecarInjectorWebhook.templates`.
pub const TEMPLATE: &str = "calico-alp";
/// The pod label the template sets; the WasmPlugin and EnvoyFilters select it.
pub const LABEL: (&str, &str) = ("calico-alp/enforce", "true");
/// The control container's name.
pub const CONTAINER: &str = "calico-alp-control";

/// The template text of the IstioOperator file (`spec.values`) or a Helm values file.
pub fn template_text(path: &Path) -> Result<String> {
    let docs = crate::yaml::load_file(path)?;
    let [doc] = docs.as_slice() else {
        bail!("{}: expected one YAML document", crate::rel(path));
    };
    let values = if doc.gvk().map(|(_, k)| k) == Some("IstioOperator") {
        &doc.value["spec"]["values"]
    } else {
        &doc.value
    };
    values["sidecarInjectorWebhook"]["templates"][TEMPLATE]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "{}: no sidecarInjectorWebhook.templates.{TEMPLATE}",
                crate::rel(path)
            )
        })
}

/// The values subtree of the IstioOperator file, or the Helm values file without its
/// `meshConfig` (which the IstioOperator holds beside its values: [`mesh_config`]).
pub fn values(path: &Path) -> Result<Value> {
    let docs = crate::yaml::load_file(path)?;
    let [doc] = docs.as_slice() else {
        bail!("{}: expected one YAML document", crate::rel(path));
    };
    Ok(if doc.gvk().map(|(_, k)| k) == Some("IstioOperator") {
        doc.value["spec"]["values"].clone()
    } else {
        let mut v = doc.value.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("meshConfig");
        }
        v
    })
}

/// The mesh configuration: `spec.meshConfig` of the IstioOperator file, `meshConfig` of a Helm
/// values file (null when absent).
pub fn mesh_config(path: &Path) -> Result<Value> {
    let docs = crate::yaml::load_file(path)?;
    let [doc] = docs.as_slice() else {
        bail!("{}: expected one YAML document", crate::rel(path));
    };
    Ok(if doc.gvk().map(|(_, k)| k) == Some("IstioOperator") {
        doc.value["spec"]["meshConfig"].clone()
    } else {
        doc.value["meshConfig"].clone()
    })
}

/// Renders the template as istiod does for a pod whose proxy runs as `uid`:`gid`.
pub fn render(template: &str, uid: u32, gid: u32) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow!("unterminated template expression"))?
            + start;
        let expr = rest[start + 2..end].trim();
        match expr {
            r#".ProxyUID | default "1337""# => out.push_str(&uid.to_string()),
            r#".ProxyGID | default "1337""# => out.push_str(&gid.to_string()),
            other => bail!(
                "template expression {{{{ {other} }}}} is not one the tests render: keep the \
                 template to .ProxyUID/.ProxyGID, or teach tests/manifests/src/inject.rs"
            ),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The rendered template as a pod overlay.
pub fn overlay(path: &Path) -> Result<Value> {
    let text = render(&template_text(path)?, 1337, 1337)?;
    let docs = crate::yaml::parse_docs(&text, path, 1)
        .with_context(|| format!("the rendered {TEMPLATE} template of {}", crate::rel(path)))?;
    let [doc] = docs.as_slice() else {
        bail!("the {TEMPLATE} template must render to one YAML document");
    };
    Ok(doc.value.clone())
}

/// A container of the overlay by name (init containers first: native sidecars live there).
pub fn container<'a>(overlay: &'a Value, name: &str) -> Option<&'a Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| overlay["spec"][k].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Maps the pod's paths to where a test put their stand-ins: `(pod path prefix, local dir)`.
pub struct PathMap(pub Vec<(String, std::path::PathBuf)>);

impl PathMap {
    pub fn map(&self, arg: &str) -> String {
        let (prefix, body) = match arg.strip_prefix("unix:") {
            Some(p) => ("unix:", p),
            None => ("", arg),
        };
        for (pod, local) in &self.0 {
            if let Some(tail) = body.strip_prefix(pod.as_str()) {
                if tail.is_empty() || tail.starts_with('/') {
                    return format!("{prefix}{}{tail}", local.display());
                }
            }
        }
        arg.to_string()
    }

    /// A container command with the binary replaced by `binary` (when it is `control`) and
    /// every pod path mapped.
    pub fn command(&self, cmd: &[String], binary: &Path) -> Result<std::process::Command> {
        let (program, args) = cmd.split_first().context("empty command")?;
        if Path::new(program).file_name().and_then(|n| n.to_str()) != Some("control") {
            bail!("the command runs {program}, not control");
        }
        let mut c = std::process::Command::new(binary);
        c.args(args.iter().map(|a| self.map(a)));
        Ok(c)
    }
}
