//! Validation of Istio and Calico resources against their CRD schemas (`../shared/schemas/`).
//!
//! A CRD's `openAPIV3Schema` is OpenAPI's dialect of JSON Schema; it is turned into a JSON
//! Schema (draft 4) validator with the meaning the Kubernetes API server gives it:
//! * `nullable: true` admits `null`;
//! * an object schema with `properties` and neither `additionalProperties` nor
//!   `x-kubernetes-preserve-unknown-fields: true` admits no other field. The API server would
//!   prune such fields silently, or refuse them with `kubectl apply`'s strict field validation;
//!   either way a misspelt field (`failStratgey`) would not do what the manifest says, so here it
//!   is an error;
//! * the root also admits `apiVersion`, `kind` and `metadata`.
//!
//! Not evaluated: `x-kubernetes-validations` (CEL rules) and `format`s; the tests check the CEL
//! rules that matter for our resources themselves (WasmPlugin URL scheme and selector).

use crate::yaml::Doc;
use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The served versions of every CRD found, by (group, version, kind).
pub struct Schemas {
    by_gvk: BTreeMap<(String, String, String), Entry>,
    /// Groups the schemas cover (a resource of such a group without a schema is an error).
    groups: Vec<String>,
}

struct Entry {
    validator: jsonschema::Validator,
    namespaced: bool,
    source: String,
}

impl Schemas {
    /// Loads every `*.yaml` of `dir` (multi-document CRD files).
    pub fn load(dir: &Path) -> Result<Schemas> {
        let mut by_gvk = BTreeMap::new();
        let mut groups = vec![];
        let files = crate::files_under(dir, &[".yaml", ".yml"])?;
        if files.is_empty() {
            bail!("no CRD schema files in {}", dir.display());
        }
        for f in files {
            for doc in crate::yaml::load_file(&f)? {
                if doc.gvk().map(|(_, k)| k) != Some("CustomResourceDefinition") {
                    continue;
                }
                let spec = &doc.value["spec"];
                let group = spec["group"].as_str().context("CRD without spec.group")?;
                let kind = spec["names"]["kind"]
                    .as_str()
                    .context("CRD without spec.names.kind")?;
                let namespaced = spec["scope"].as_str() == Some("Namespaced");
                for v in spec["versions"].as_array().into_iter().flatten() {
                    if v["served"] != Value::Bool(true) {
                        continue;
                    }
                    let version = v["name"].as_str().context("CRD version without name")?;
                    let schema = v.pointer("/schema/openAPIV3Schema").with_context(|| {
                        format!("{}: {kind} {version} has no openAPIV3Schema", doc.at())
                    })?;
                    let validator = compile(schema).with_context(|| {
                        format!(
                            "{}: compiling the schema of {group}/{version} {kind}",
                            doc.at()
                        )
                    })?;
                    by_gvk.insert(
                        (group.to_string(), version.to_string(), kind.to_string()),
                        Entry {
                            validator,
                            namespaced,
                            source: doc.at(),
                        },
                    );
                }
                if !groups.iter().any(|g| g == group) {
                    groups.push(group.to_string());
                }
            }
        }
        Ok(Schemas { by_gvk, groups })
    }

    /// How many (group, version, kind) schemas were loaded.
    pub fn len(&self) -> usize {
        self.by_gvk.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_gvk.is_empty()
    }

    pub fn has(&self, api_version: &str, kind: &str) -> bool {
        let (g, v) = split_api_version(api_version);
        self.by_gvk
            .contains_key(&(g.to_string(), v.to_string(), kind.to_string()))
    }

    /// Whether the schemas cover the group of `api_version` (Istio's and Calico's groups).
    pub fn covers(&self, api_version: &str) -> bool {
        let (g, _) = split_api_version(api_version);
        self.groups.iter().any(|x| x == g)
    }

    /// Validates one resource: Ok(true) when validated, Ok(false) when its group is not covered
    /// (core Kubernetes kinds, IstioOperator), Err with every problem otherwise.
    pub fn validate(&self, doc: &Doc) -> Result<bool> {
        let (api_version, kind) = doc
            .gvk()
            .ok_or_else(|| anyhow!("{}: not a resource (no apiVersion/kind)", doc.at()))?;
        if !self.covers(api_version) {
            return Ok(false);
        }
        let (g, v) = split_api_version(api_version);
        let Some(entry) = self
            .by_gvk
            .get(&(g.to_string(), v.to_string(), kind.to_string()))
        else {
            let served: Vec<String> = self
                .by_gvk
                .keys()
                .filter(|(gg, _, k)| gg == g && k == kind)
                .map(|(gg, vv, _)| format!("{gg}/{vv}"))
                .collect();
            bail!(
                "{}: {} has no schema for {api_version} {kind} (served: {})",
                doc.at(),
                doc.id(),
                if served.is_empty() {
                    "none".to_string()
                } else {
                    served.join(", ")
                }
            );
        };
        let mut problems: Vec<String> = entry
            .validator
            .iter_errors(&doc.value)
            .map(|e| format!("{}: {e}", pointer_or_root(&e.instance_path().to_string())))
            .collect();
        problems.extend(metadata_problems(doc, entry.namespaced));
        if !problems.is_empty() {
            bail!(
                "{}: {} does not validate against {} ({}):\n  {}",
                doc.at(),
                doc.id(),
                api_version,
                entry.source,
                problems.join("\n  ")
            );
        }
        Ok(true)
    }
}

fn pointer_or_root(p: &str) -> String {
    if p.is_empty() {
        "(root)".to_string()
    } else {
        p.to_string()
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// Name and namespace as the API server requires them: a DNS-1123 subdomain name, and a
/// namespace on namespaced kinds (ours always name theirs) and none on cluster-scoped ones.
fn metadata_problems(doc: &Doc, namespaced: bool) -> Vec<String> {
    let mut out = vec![];
    let name = doc.name();
    if !is_dns_subdomain(name) {
        out.push(format!(
            "/metadata/name: {name:?} is not a DNS-1123 subdomain"
        ));
    }
    match (namespaced, doc.namespace()) {
        (true, None) => out.push("/metadata/namespace: missing on a namespaced kind".into()),
        (true, Some(ns)) if !is_dns_label(ns) => out.push(format!(
            "/metadata/namespace: {ns:?} is not a DNS-1123 label"
        )),
        (false, Some(ns)) => out.push(format!(
            "/metadata/namespace: {ns:?} on a cluster-scoped kind"
        )),
        _ => {}
    }
    out
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A strict draft-4 validator for a CRD's openAPIV3Schema.
pub fn compile(openapi: &Value) -> Result<jsonschema::Validator> {
    let mut schema = openapi.clone();
    strictify(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        let props = obj
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(props) = props.as_object_mut() {
            props
                .entry("apiVersion")
                .or_insert_with(|| json!({"type": "string"}));
            props
                .entry("kind")
                .or_insert_with(|| json!({"type": "string"}));
            props
                .entry("metadata")
                .or_insert_with(|| json!({"type": "object"}));
        }
        obj.entry("type").or_insert_with(|| json!("object"));
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        // Kubernetes evaluates `pattern` with Go's RE2 (inline flags such as `(?i)` included);
        // the `regex` crate has the same syntax, where ECMA-262 engines refuse some of it.
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .map_err(|e| anyhow!("{e}"))
}

/// Applies the API server's reading of OpenAPI to a schema, recursively (see the module docs).
pub fn strictify(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.remove("nullable") == Some(Value::Bool(true)) {
        if let Some(Value::String(t)) = obj.get("type").cloned() {
            obj.insert("type".into(), json!([t, "null"]));
        }
    }
    if let Some(Value::String(p)) = obj.get_mut("pattern") {
        *p = case_insensitive_ascii(p);
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !preserve {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(children)) = obj.get_mut(key) {
            for child in children.values_mut() {
                strictify(child);
            }
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = obj.get_mut(key) {
            strictify(child);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(children)) = obj.get_mut(key) {
            for child in children {
                strictify(child);
            }
        }
    }
}

/// Go's RE2 patterns may start with the inline flag `(?i)` (Calico's enum-like fields do), which
/// ECMA-262 lacks (and the schema of schemas checks patterns as ECMA-262). The same language
/// without the flag: every ASCII letter outside a character class or escape becomes `[xX]`.
pub fn case_insensitive_ascii(pattern: &str) -> String {
    let (prefix, body) = match pattern.strip_prefix("^(?i)") {
        Some(b) => ("^", b),
        None => match pattern.strip_prefix("(?i)") {
            Some(b) => ("", b),
            None => return pattern.to_string(),
        },
    };
    let mut out = String::from(prefix);
    let mut chars = body.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            c if c.is_ascii_alphabetic() && !in_class => {
                out.push('[');
                out.push(c.to_ascii_lowercase());
                out.push(c.to_ascii_uppercase());
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_case_flag() {
        assert_eq!(
            case_insensitive_ascii("^(?i)(Off|On)?$"),
            "^([oO][fF][fF]|[oO][nN])?$"
        );
        assert_eq!(case_insensitive_ascii("^[a-z]+$"), "^[a-z]+$");
        assert_eq!(case_insensitive_ascii("(?i)a\\d[b]"), "[aA]\\d[b]");
    }
}
