//! Reading files and directories of multi-document YAML into a [`PolicySet`], collecting every
//! [`Problem`] with its file, line, resource and field.

use crate::document::{line_of, split_documents, Document};
use crate::model::{
    LabelsOnly, Metadata, Origin, Policy, PolicyKind, PolicySet, PolicySpec, Problem, Resource,
    Tier, TierSpec, Workload, WorkloadEndpointSpec, DEFAULT_NAMESPACE,
};
use crate::validate;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Reads `path` (a file, or a directory searched recursively for `*.yaml` / `*.yml`).
/// Returns the set when there is no problem, else every problem found.
pub fn load_path(path: &Path) -> Result<PolicySet, Vec<Problem>> {
    load_paths(&[path.to_path_buf()])
}

/// [`load_path`] for several paths, read as one set.
pub fn load_paths(paths: &[PathBuf]) -> Result<PolicySet, Vec<Problem>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let mut found = Vec::new();
        match collect_files(path, &mut found) {
            Ok(()) => {
                found.sort();
                files.extend(found);
            }
            Err(e) => problems.push(Problem::unreadable(path, &e)),
        }
    }
    files.dedup();
    let mut inputs = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => inputs.push((file.display().to_string(), text)),
            Err(e) => problems.push(Problem::unreadable(file, &e)),
        }
    }
    let refs: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    match load_texts(&refs) {
        Ok(mut set) if problems.is_empty() => {
            set.files = files;
            Ok(set)
        }
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Loads in-memory files `(name, text)`: the entry point of the tests.
pub fn load_texts(files: &[(&str, &str)]) -> Result<PolicySet, Vec<Problem>> {
    let mut set = PolicySet::default();
    let mut problems = Vec::new();
    for (file, text) in files {
        for doc in split_documents(text) {
            load_document(file, &doc, &mut set, &mut problems);
        }
    }
    validate::cross_check(&set, &mut problems);
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// What a document says it is.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
}

fn load_document(file: &str, doc: &Document<'_>, set: &mut PolicySet, problems: &mut Vec<Problem>) {
    let at = |line: usize| Origin {
        file: file.to_string(),
        line,
    };
    let value: serde_norway::Value = match serde_norway::from_str(doc.text) {
        Ok(v) => v,
        Err(e) => {
            let line = e
                .location()
                .map_or(doc.start_line, |l| doc.start_line + l.line() - 1);
            problems.push(Problem {
                file: file.into(),
                line,
                resource: None,
                field: None,
                message: format!("not valid YAML: {}", strip_location(&e.to_string())),
            });
            return;
        }
    };
    if !value.is_mapping() {
        problems.push(Problem {
            file: file.into(),
            line: doc.start_line,
            resource: None,
            field: None,
            message: "a resource must be a mapping with apiVersion, kind, metadata and spec".into(),
        });
        return;
    }
    let header: Header = serde_norway::from_value(value).unwrap_or_default();
    let kind = header.kind.as_str();
    let name = header.metadata.name.clone();
    let ns = header.metadata.namespace.clone().filter(|n| !n.is_empty());
    let shown = name.clone();
    let label = move |ns: Option<&str>| match ns {
        Some(ns) => format!("{kind} {ns}/{shown}"),
        None => format!("{kind} {shown}"),
    };
    let mut problem = |line: usize, ns: Option<&str>, field: Option<&str>, message: String| {
        problems.push(Problem {
            file: file.into(),
            line,
            resource: Some(label(ns)),
            field: field.map(str::to_string),
            message,
        })
    };
    match (header.api_version.as_str(), kind) {
        ("projectcalico.org/v3", _) => {}
        ("v1", "Namespace") | ("v1", "ServiceAccount") => {
            let parsed: LabelsOnly = match typed(doc) {
                Ok(p) => p,
                Err((line, field, msg)) => {
                    return problem(line, ns.as_deref(), field.as_deref(), msg)
                }
            };
            if name.is_empty() {
                return problem(
                    doc.start_line,
                    None,
                    Some("metadata.name"),
                    "is required".into(),
                );
            }
            if kind == "Namespace" {
                set.namespaces.insert(name, parsed.metadata.labels);
            } else {
                let ns = ns.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
                set.service_accounts
                    .insert((ns, name), parsed.metadata.labels);
            }
            return;
        }
        (api, _) => {
            if api.is_empty() || kind.is_empty() {
                return problem(
                    doc.start_line,
                    None,
                    None,
                    "apiVersion and kind are required".into(),
                );
            }
            set.skipped
                .push(format!("{file}:{} {api} {kind} {name}", doc.start_line));
            return;
        }
    }
    if name.is_empty() {
        return problem(
            doc.start_line,
            None,
            Some("metadata.name"),
            "is required".into(),
        );
    }
    if let Some(policy_kind) = PolicyKind::from_kind(kind) {
        let parsed: Resource<PolicySpec> = match typed(doc) {
            Ok(p) => p,
            Err((line, field, msg)) => return problem(line, ns.as_deref(), field.as_deref(), msg),
        };
        let namespace = if policy_kind.namespaced() {
            ns.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.into())
        } else {
            if ns.is_some() {
                return problem(
                    doc.start_line,
                    ns.as_deref(),
                    Some("metadata.namespace"),
                    format!("{kind} is not namespaced"),
                );
            }
            String::new()
        };
        let policy = Policy {
            kind: policy_kind,
            name,
            namespace,
            spec: parsed.spec,
            origin: at(doc.start_line),
        };
        for (line, field, msg) in validate::policy(&policy, doc) {
            let ns = (!policy.namespace.is_empty()).then_some(policy.namespace.as_str());
            problem(line, ns, Some(&field), msg);
        }
        set.policies.push(policy);
        return;
    }
    match kind {
        "Tier" => {
            let parsed: Resource<TierSpec> = match typed(doc) {
                Ok(p) => p,
                Err((line, field, msg)) => return problem(line, None, field.as_deref(), msg),
            };
            if let Some(a) = &parsed.spec.default_action {
                if a != "Deny" && a != "Pass" {
                    let line = line_of(doc, a);
                    problem(line, None, Some("spec.defaultAction"), format!("must be Deny or Pass, not {a:?}"));
                }
            }
            set.tiers.insert(name.clone(), Tier { name, spec: parsed.spec });
        }
        "WorkloadEndpoint" => {
            let parsed: Resource<WorkloadEndpointSpec> = match typed(doc) {
                Ok(p) => p,
                Err((line, field, msg)) => return problem(line, ns.as_deref(), field.as_deref(), msg),
            };
            let namespace = ns.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.into());
            let wname = parsed.spec.pod.clone().filter(|p| !p.is_empty()).unwrap_or(name);
            let workload = Workload {
                namespace,
                name: wname,
                labels: parsed.metadata.labels,
                spec: parsed.spec,
                origin: at(doc.start_line),
            };
            for (line, field, msg) in validate::workload(&workload, doc) {
                problem(line, ns.as_deref(), Some(&field), msg);
            }
            set.workloads.push(workload);
        }
        other => problem(
            doc.start_line,
            ns.as_deref(),
            Some("kind"),
            format!("unsupported projectcalico.org/v3 kind {other:?} (accepted: GlobalNetworkPolicy, NetworkPolicy, StagedGlobalNetworkPolicy, StagedNetworkPolicy, Tier, WorkloadEndpoint)"),
        ),
    }
}

/// Typed deserialisation of one document; an error gives (line, field path, message).
fn typed<T: DeserializeOwned>(doc: &Document<'_>) -> Result<T, (usize, Option<String>, String)> {
    let de = serde_norway::Deserializer::from_str(doc.text);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .location()
            .map_or(doc.start_line, |l| doc.start_line + l.line() - 1);
        let field = (path != "." && !path.is_empty()).then_some(path);
        let mut message = strip_location(&inner.to_string());
        // serde_norway starts with its own path (`spec.ingress[0]: ...`); the field says it.
        if let Some((head, rest)) = message.split_once(": ") {
            if !head.contains(' ') && (head.contains('.') || head.contains('[')) {
                message = rest.to_string();
            }
        }
        (line, field, message)
    })
}

/// serde_norway appends ` at line L column C`; the problem carries the absolute line itself.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
