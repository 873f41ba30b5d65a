//! YAML files and the YAML blocks of Markdown files, as JSON values.

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One YAML document.
#[derive(Clone, Debug)]
pub struct Doc {
    pub file: PathBuf,
    /// 1-based line of the document's first line in `file`.
    pub line: usize,
    pub value: Value,
}

impl Doc {
    /// `file:line`, relative to the workspace root.
    pub fn at(&self) -> String {
        format!("{}:{}", crate::rel(&self.file), self.line)
    }

    /// `apiVersion` and `kind`, when the document is a Kubernetes-style resource.
    pub fn gvk(&self) -> Option<(&str, &str)> {
        Some((
            self.value.get("apiVersion")?.as_str()?,
            self.value.get("kind")?.as_str()?,
        ))
    }

    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    /// `Kind namespace/name` for messages.
    pub fn id(&self) -> String {
        let kind = self.gvk().map_or("?", |(_, k)| k);
        match self.namespace() {
            Some(ns) => format!("{kind} {ns}/{}", self.name()),
            None => format!("{kind} {}", self.name()),
        }
    }
}

/// Parses multi-document YAML `text` (from `file`, starting at `first_line`). Empty documents
/// (a lone `---`, comments only) are dropped.
pub fn parse_docs(text: &str, file: &Path, first_line: usize) -> Result<Vec<Doc>> {
    use serde::Deserialize as _;
    let starts = doc_start_lines(text);
    let mut out = vec![];
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let line = first_line + starts.get(i).copied().unwrap_or(0);
        let value = Value::deserialize(de).map_err(|e| {
            anyhow!(
                "{}:{}: YAML does not parse: {e}",
                crate::rel(file),
                first_line + e.location().map_or(0, |l| l.line().saturating_sub(1))
            )
        })?;
        if !value.is_null() {
            out.push(Doc {
                file: file.to_path_buf(),
                line,
                value,
            });
        }
    }
    Ok(out)
}

/// 0-based line offsets of each document's start (after a `---` separator).
fn doc_start_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let mut content_before = false;
    for (i, l) in text.lines().enumerate() {
        if l == "---" || l.starts_with("--- ") {
            if !content_before {
                // Only comments above the first separator: no document there.
                starts.clear();
            }
            content_before = true;
            starts.push(i + 1);
        } else if !content_before && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            content_before = true;
        }
    }
    starts
}

pub fn load_file(path: &Path) -> Result<Vec<Doc>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_docs(&text, path, 1)
}

/// A fenced code block of a Markdown file.
#[derive(Clone, Debug)]
pub struct Block {
    pub file: PathBuf,
    /// 1-based line of the block's first content line.
    pub line: usize,
    pub lang: String,
    pub text: String,
}

/// The fenced code blocks (```lang ... ```) of a Markdown file.
pub fn markdown_blocks(path: &Path) -> Result<Vec<Block>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = vec![];
    let mut open: Option<(usize, String, String)> = None;
    for (i, l) in text.lines().enumerate() {
        let trimmed = l.trim_start();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((i + 2, info.trim().to_string(), String::new()));
                }
            }
            Some((line, lang, body)) => {
                if trimmed.starts_with("```") {
                    out.push(Block {
                        file: path.to_path_buf(),
                        line: *line,
                        lang: std::mem::take(lang),
                        text: std::mem::take(body),
                    });
                    open = None;
                } else {
                    body.push_str(l);
                    body.push('\n');
                }
            }
        }
    }
    if let Some((line, _, _)) = open {
        bail!("{}:{}: code block never closed", crate::rel(path), line - 1);
    }
    Ok(out)
}

/// The YAML documents of the ```yaml blocks of a Markdown file.
pub fn markdown_yaml(path: &Path) -> Result<Vec<Doc>> {
    let mut out = vec![];
    for b in markdown_blocks(path)? {
        if b.lang == "yaml" || b.lang == "yml" {
            out.extend(parse_docs(&b.text, path, b.line)?);
        }
    }
    Ok(out)
}

/// YAML templates that are not YAML until rendered, and where their rendering is checked.
pub const TEMPLATES: &[(&str, &str)] = &[(
    "envoy/bootstrap.yaml",
    "the harness's Envoy bootstrap template ({{NAME}} placeholders, #>> blocks): rendered for \
     every user and given to `envoy --mode validate` by tests/tests/config.rs",
)];

/// Every YAML document the project ships for users: `envoy/**/*.yaml|yml` and the YAML blocks of
/// `docs/**/*.md`, `envoy/**/*.md` and `README.md` ([`TEMPLATES`] excepted). Errors list every
/// file that does not parse.
pub fn project_docs() -> Result<Vec<Doc>> {
    let root = crate::root();
    let mut docs = vec![];
    let mut errors = vec![];
    for f in crate::files_under(&root.join("envoy"), &[".yaml", ".yml"])? {
        if TEMPLATES.iter().any(|(t, _)| root.join(t) == f) {
            continue;
        }
        match load_file(&f) {
            Ok(d) => docs.extend(d),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let mut md = crate::files_under(&root.join("docs"), &[".md"])?;
    md.extend(crate::files_under(&root.join("envoy"), &[".md"])?);
    md.push(root.join("README.md"));
    for f in md {
        match markdown_yaml(&f) {
            Ok(d) => docs.extend(d),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(docs)
}

/// The resources (documents with apiVersion and kind) of one file.
pub fn resources(path: &Path) -> Result<Vec<Doc>> {
    Ok(load_file(path)?
        .into_iter()
        .filter(|d| d.gvk().is_some())
        .collect())
}

/// The single resource of `kind` named `name` in `path`.
pub fn resource(path: &Path, kind: &str, name: &str) -> Result<Doc> {
    let mut found: Vec<Doc> = resources(path)?
        .into_iter()
        .filter(|d| d.gvk().is_some_and(|(_, k)| k == kind) && d.name() == name)
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!(
            "{}: expected one {kind} {name}, found {n}",
            crate::rel(path)
        ),
    }
}
