//! Reading files and directories of multi-document YAML into a [`PolicySet`], collecting every
//! [`Problem`] with its file, line, resource and field.
//!
//! A document is one resource, a list of them (`kind: List`, `GlobalNetworkPolicyList`, ...,
//! with `items`: what `calicoctl get -o yaml` and `kubectl get -o yaml` print), or a YAML
//! sequence of resources (which calicoctl also reads). Each Calico resource is decoded strictly
//! (`decode`), defaulted and checked as Calico checks it (`validate`).

use crate::decode::{self, Dec};
use crate::document::{split_documents, Document};
use crate::limits::{self, BYTES_SETTING, DEPTH_SETTING};
use crate::locate::{FieldPath, Locator};
use crate::model::{
    EndpointSlice, Origin, Policy, PolicyKind, PolicySet, Problem, SlicePort, Tier, Workload,
    DEFAULT_NAMESPACE,
};
use crate::validate;
use serde_norway::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The path that names standard input.
pub const STDIN: &str = "-";

/// Reads `path` (a file, or a directory searched recursively for `*.yaml` / `*.yml`).
/// Returns the set when there is no problem, else every problem found.
pub fn load_path(path: &Path) -> Result<PolicySet, Vec<Problem>> {
    load_paths(&[path.to_path_buf()])
}

/// [`load_path`] for several paths, read as one set; `-` reads standard input.
pub fn load_paths(paths: &[PathBuf]) -> Result<PolicySet, Vec<Problem>> {
    load_paths_with(paths, None)
}

/// [`load_paths`], with standard input's text already read (`stdin`) for the path `-`, as a
/// caller that reloads must do: standard input can be read once.
pub fn load_paths_with(paths: &[PathBuf], stdin: Option<&str>) -> Result<PolicySet, Vec<Problem>> {
    let (set, problems) = load_all(paths, stdin);
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// Everything [`load_paths_with`] finds: the set (what loaded) and every problem.
pub fn load_all(paths: &[PathBuf], stdin: Option<&str>) -> (PolicySet, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path == Path::new(STDIN) {
            files.push(path.clone());
            continue;
        }
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
    let max_bytes = limits::limits().max_bytes;
    let mut inputs = Vec::new();
    let mut read_stdin = None;
    for file in &files {
        if file == Path::new(STDIN) {
            let text = match (stdin, &read_stdin) {
                (Some(text), _) => text.to_string(),
                (None, Some(text)) => String::clone(text),
                (None, None) => {
                    let mut text = String::new();
                    let stdin = std::io::stdin().lock();
                    if let Err(e) = stdin
                        .take(cap_plus_one(max_bytes))
                        .read_to_string(&mut text)
                    {
                        problems.push(Problem::unreadable(file, &e));
                    }
                    read_stdin = Some(text.clone());
                    text
                }
            };
            inputs.push(("<stdin>".to_string(), text));
            continue;
        }
        match read_capped(file, max_bytes) {
            Ok(Ok(text)) => inputs.push((file.display().to_string(), text)),
            Ok(Err(size)) => problems.push(too_large(&file.display().to_string(), size, max_bytes)),
            Err(e) => problems.push(Problem::unreadable(file, &e)),
        }
    }
    let refs: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let (mut set, more) = load_texts_all(&refs);
    problems.extend(more);
    set.files = files;
    (set, problems)
}

fn cap_plus_one(max_bytes: usize) -> u64 {
    u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// A file's text, or its size when it is over `max_bytes` (then no more than that is read).
fn read_capped(path: &Path, max_bytes: usize) -> std::io::Result<Result<String, u64>> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > max_bytes as u64 {
        return Ok(Err(size));
    }
    let mut text = String::new();
    file.take(cap_plus_one(max_bytes))
        .read_to_string(&mut text)?;
    if text.len() > max_bytes {
        // It grew while being read.
        return Ok(Err(text.len() as u64));
    }
    Ok(Ok(text))
}

/// The problem of an input over `--max-policy-bytes`.
fn too_large(file: &str, size: u64, max_bytes: usize) -> Problem {
    Problem {
        file: file.to_string(),
        line: 0,
        resource: None,
        field: None,
        message: format!(
            "size {size} bytes exceeds the limit of {max_bytes} bytes (raise it with {BYTES_SETTING}); not parsed"
        ),
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
    let (set, problems) = load_texts_all(files);
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// [`load_texts`]: the set and every problem.
pub fn load_texts_all(files: &[(&str, &str)]) -> (PolicySet, Vec<Problem>) {
    let mut set = PolicySet::default();
    let mut problems = Vec::new();
    let caps = limits::limits();
    for (file, text) in files {
        if text.len() > caps.max_bytes {
            problems.push(too_large(file, text.len() as u64, caps.max_bytes));
            continue;
        }
        let docs = split_documents(text);
        let many = docs.len() > 1;
        for (index, doc) in docs.iter().enumerate() {
            // Measured before parsing: the parser's time grows faster than the nesting.
            let nesting = limits::nesting(doc.text, caps.max_depth);
            if let Some(line) = nesting.over_at {
                let which = if many {
                    format!("document {}: ", index + 1)
                } else {
                    String::new()
                };
                problems.push(Problem {
                    file: file.to_string(),
                    line: doc.start_line + line,
                    resource: None,
                    field: None,
                    message: format!(
                        "{which}nesting depth {} exceeds the limit of {} (raise it with {DEPTH_SETTING}); not parsed",
                        nesting.depth, caps.max_depth
                    ),
                });
                continue;
            }
            Loader {
                file,
                doc,
                locator: Locator::new(doc.text),
                set: &mut set,
                problems: &mut problems,
            }
            .document();
        }
    }
    validate::cross_check(&set, &mut problems);
    let notes = validate::cross_notes(&set);
    set.notes.extend(notes);
    (set, problems)
}

/// The list kinds and the kind of their items.
fn list_item_kind(api: &str, kind: &str) -> Option<Option<&'static str>> {
    Some(match (api, kind) {
        ("v1", "List") => None,
        ("projectcalico.org/v3", "GlobalNetworkPolicyList") => Some("GlobalNetworkPolicy"),
        ("projectcalico.org/v3", "NetworkPolicyList") => Some("NetworkPolicy"),
        ("projectcalico.org/v3", "StagedGlobalNetworkPolicyList") => {
            Some("StagedGlobalNetworkPolicy")
        }
        ("projectcalico.org/v3", "StagedNetworkPolicyList") => Some("StagedNetworkPolicy"),
        ("projectcalico.org/v3", "TierList") => Some("Tier"),
        ("projectcalico.org/v3", "WorkloadEndpointList") => Some("WorkloadEndpoint"),
        ("v1", "NamespaceList") => Some("Namespace"),
        ("v1", "ServiceAccountList") => Some("ServiceAccount"),
        ("v1", "ServiceList") => Some("Service"),
        ("discovery.k8s.io/v1", "EndpointSliceList") => Some("EndpointSlice"),
        _ => return None,
    })
}

/// A string field of a mapping read loosely (the header of a resource).
fn header(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

struct Loader<'a, 'd> {
    file: &'a str,
    doc: &'a Document<'d>,
    locator: Locator,
    set: &'a mut PolicySet,
    problems: &'a mut Vec<Problem>,
}

impl Loader<'_, '_> {
    /// The absolute line of `path` in the document.
    fn line(&self, path: &FieldPath) -> usize {
        self.locator
            .line(path)
            .map_or(self.doc.start_line, |l| self.doc.start_line + l)
    }

    fn problem(
        &mut self,
        path: &FieldPath,
        resource: Option<String>,
        field: Option<String>,
        message: String,
    ) {
        let line = self.line(path);
        self.problems.push(Problem {
            file: self.file.to_string(),
            line,
            resource,
            field,
            message,
        });
    }

    fn document(&mut self) {
        let mut value: Value = match serde_norway::from_str(self.doc.text) {
            Ok(v) => v,
            Err(e) => {
                let line = e
                    .location()
                    .map_or(self.doc.start_line, |l| self.doc.start_line + l.line() - 1);
                self.problems.push(Problem {
                    file: self.file.to_string(),
                    line,
                    resource: None,
                    field: None,
                    message: format!("not valid YAML: {}", strip_location(&e.to_string())),
                });
                return;
            }
        };
        if let Err(e) = value.apply_merge() {
            let message = format!("not valid YAML: {}", strip_location(&e.to_string()));
            return self.problem(&FieldPath::root(), None, None, message);
        }
        match &value {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.resource(item, &FieldPath::root().index(i), None);
                }
            }
            Value::Mapping(_) => {
                let (api, kind) = (header(&value, "apiVersion"), header(&value, "kind"));
                match list_item_kind(&api, &kind) {
                    Some(item_kind) => self.list(&value, &api, &kind, item_kind),
                    None => self.resource(&value, &FieldPath::root(), None),
                }
            }
            _ => self.problem(
                &FieldPath::root(),
                None,
                None,
                "a resource must be a mapping with apiVersion, kind, metadata and spec".into(),
            ),
        }
    }

    /// A list document: its items, each a resource (of `item_kind` unless it says).
    fn list(&mut self, value: &Value, api: &str, kind: &str, item_kind: Option<&'static str>) {
        let mut d = Dec::default();
        let root = FieldPath::root();
        let f = d.fields(value, &root, &["apiVersion", "kind", "metadata", "items"]);
        decode::list_metadata(&mut d, f.get("metadata"), &root.key("metadata"));
        let items = match f.get("items") {
            Some(Value::Sequence(items)) => items.clone(),
            Some(_) => {
                d.err(&root.key("items"), "must be a list");
                Vec::new()
            }
            None => Vec::new(),
        };
        for (path, message) in d.errors {
            self.problem(
                &path,
                Some(kind.to_string()),
                Some(path.to_string()),
                message,
            );
        }
        for (i, item) in items.iter().enumerate() {
            let at = root.key("items").index(i);
            let default = item_kind.map(|k| (api, k));
            if let Some((_, want)) = default {
                let got = header(item, "kind");
                if !got.is_empty() && got != want {
                    self.problem(
                        &at.key("kind"),
                        Some(format!("{got} {}", item_name(item))),
                        Some("kind".into()),
                        format!("a {kind} holds {want} resources"),
                    );
                    continue;
                }
            }
            self.resource(item, &at, default);
        }
    }

    /// One resource at `at` in the document; `default` gives its apiVersion and kind when the
    /// item of a typed list leaves them out.
    fn resource(&mut self, value: &Value, at: &FieldPath, default: Option<(&str, &'static str)>) {
        if !value.is_mapping() {
            return self.problem(
                at,
                None,
                None,
                "a resource must be a mapping with apiVersion, kind, metadata and spec".into(),
            );
        }
        let mut api = header(value, "apiVersion");
        let mut kind = header(value, "kind");
        if let Some((a, k)) = default {
            if api.is_empty() {
                api = a.to_string();
            }
            if kind.is_empty() {
                kind = k.to_string();
            }
        }
        let origin_line = self.line(at);
        let name = item_name(value);
        let ns = value
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let label = |ns: Option<&str>| match ns {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        let res = Res {
            value,
            at: at.clone(),
            origin: Origin {
                file: self.file.to_string(),
                line: origin_line,
            },
        };
        match (api.as_str(), kind.as_str()) {
            ("projectcalico.org/v3", k) if PolicyKind::from_kind(k).is_some() => {
                let Some(policy_kind) = PolicyKind::from_kind(k) else { return };
                let shown = if policy_kind.namespaced() {
                    label(Some(ns.as_deref().unwrap_or(DEFAULT_NAMESPACE)))
                } else {
                    label(ns.as_deref())
                };
                self.policy(&res, policy_kind, shown);
            }
            ("projectcalico.org/v3", "Tier") => self.tier(&res, label(ns.as_deref())),
            ("projectcalico.org/v3", "WorkloadEndpoint") => {
                let shown = label(Some(ns.as_deref().unwrap_or(DEFAULT_NAMESPACE)));
                self.workload(&res, shown)
            }
            (api @ ("projectcalico.org/v3" | "networking.k8s.io/v1"), other)
                if changes_decisions(api, other) =>
            {
                self.problem(
                    &at.key("kind"),
                    Some(label(ns.as_deref())),
                    Some("kind".into()),
                    format!("unsupported {api} kind {other:?}: it would change what Felix enforces, and this source does not compile it (accepted: projectcalico.org/v3 GlobalNetworkPolicy, NetworkPolicy, StagedGlobalNetworkPolicy, StagedNetworkPolicy, Tier, WorkloadEndpoint)"),
                )
            }
            ("v1", "Namespace" | "ServiceAccount" | "Service")
            | ("discovery.k8s.io/v1", "EndpointSlice") => {
                self.kubernetes(&res, &kind, label(ns.as_deref()))
            }
            (a, k) if a.is_empty() || k.is_empty() => self.problem(
                at,
                None,
                None,
                "apiVersion and kind are required".into(),
            ),
            (a, k) => self.set.skipped.push(format!(
                "{}:{} {a} {k} {name}",
                self.file, origin_line
            )),
        }
    }

    /// Decodes the header and metadata of a Calico resource strictly.
    fn calico_header<'v>(
        res: &Res<'v>,
        extra: &[&'static str],
        d: &mut Dec,
    ) -> (decode::Fields<'v>, crate::model::Metadata) {
        let mut names = vec!["apiVersion", "kind", "metadata", "spec"];
        names.extend_from_slice(extra);
        let f = d.fields(res.value, &FieldPath::root(), &names);
        let meta = decode::metadata(d, f.get("metadata"), &FieldPath::root().key("metadata"));
        (f, meta)
    }

    /// Reports decoding errors and findings of the resource at `res`; whether there were any.
    fn report(&mut self, res: &Res<'_>, shown: &str, found: Vec<(FieldPath, String)>) -> bool {
        let any = !found.is_empty();
        for (path, message) in found {
            let field = (!path.is_root()).then(|| path.to_string());
            self.problem(
                &path.under(&res.at),
                Some(shown.to_string()),
                field,
                message,
            );
        }
        any
    }

    fn notes(&mut self, res: &Res<'_>, shown: &str, found: Vec<(FieldPath, String)>) {
        for (path, message) in found {
            let line = self.line(&path.under(&res.at));
            self.set.notes.push(Problem {
                file: self.file.to_string(),
                line,
                resource: Some(shown.to_string()),
                field: (!path.is_root()).then(|| path.to_string()),
                message,
            });
        }
    }

    /// Whether the resource has a name; reports that it is required otherwise.
    fn named(&mut self, res: &Res<'_>, shown: &str, name: &str) -> bool {
        if !name.is_empty() {
            return true;
        }
        let field = FieldPath::root().key("metadata").key("name");
        self.report(res, shown, vec![(field, "is required".into())]);
        false
    }

    fn cluster_scoped(&mut self, res: &Res<'_>, shown: &str, kind: &str, namespace: &str) -> bool {
        if namespace.is_empty() {
            return true;
        }
        self.report(
            res,
            shown,
            vec![(
                FieldPath::root().key("metadata").key("namespace"),
                format!("namespace should not be specified for a non-namespaced resource. {kind} is not a namespaced resource"),
            )],
        );
        false
    }

    fn policy(&mut self, res: &Res<'_>, kind: PolicyKind, shown: String) {
        let mut d = Dec::default();
        let (f, meta) = Self::calico_header(res, &[], &mut d);
        let spec = decode::policy_spec(&mut d, kind, f.get("spec"), &FieldPath::root().key("spec"));
        if self.report(res, &shown, d.errors) {
            return;
        }
        if !self.named(res, &shown, &meta.name) {
            return;
        }
        let namespace = if kind.namespaced() {
            namespace_or_default(&meta.namespace)
        } else {
            if !self.cluster_scoped(res, &shown, kind.as_str(), &meta.namespace) {
                return;
            }
            String::new()
        };
        let policy = Policy {
            kind,
            name: meta.name.clone(),
            namespace,
            metadata: meta,
            spec,
            origin: res.origin.clone(),
        };
        let (mut found, mut notes) = (Vec::new(), Vec::new());
        validate::policy(&policy, &mut found, &mut notes);
        self.report(res, &shown, found);
        self.notes(res, &shown, notes);
        self.set.policies.push(policy);
    }

    fn tier(&mut self, res: &Res<'_>, shown: String) {
        let mut d = Dec::default();
        let (f, meta) = Self::calico_header(res, &["status"], &mut d);
        let spec = decode::tier_spec(&mut d, f.get("spec"), &FieldPath::root().key("spec"));
        decode::tier_status(&mut d, f.get("status"), &FieldPath::root().key("status"));
        if self.report(res, &shown, d.errors) {
            return;
        }
        if !self.named(res, &shown, &meta.name) {
            return;
        }
        if !self.cluster_scoped(res, &shown, "Tier", &meta.namespace) {
            return;
        }
        let tier = Tier {
            name: meta.name.clone(),
            spec,
        };
        let mut found = Vec::new();
        validate::tier(&mut found, &meta, &tier);
        self.report(res, &shown, found);
        self.set.tiers.insert(tier.name.clone(), tier);
    }

    fn workload(&mut self, res: &Res<'_>, shown: String) {
        let mut d = Dec::default();
        let (f, meta) = Self::calico_header(res, &[], &mut d);
        let spec = decode::workload_spec(&mut d, f.get("spec"), &FieldPath::root().key("spec"));
        if self.report(res, &shown, d.errors) {
            return;
        }
        if !self.named(res, &shown, &meta.name) {
            return;
        }
        let namespace = namespace_or_default(&meta.namespace);
        let name = Some(spec.pod.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| meta.name.clone());
        let workload = Workload {
            namespace,
            name,
            labels: meta.labels,
            spec,
            origin: res.origin.clone(),
        };
        let mut found = Vec::new();
        validate::workload(&mut found, &workload);
        self.report(res, &shown, found);
        self.set.workloads.push(workload);
    }

    /// Kubernetes resources this source reads a part of: labels of namespaces and service
    /// accounts, the endpoints of EndpointSlices, the names of Services. Other fields are
    /// not read (nor checked).
    fn kubernetes(&mut self, res: &Res<'_>, kind: &str, shown: String) {
        let mut d = Dec::default();
        let root = FieldPath::root();
        let meta = decode::metadata(&mut d, res.value.get("metadata"), &root.key("metadata"));
        if meta.name.is_empty() && d.errors.is_empty() {
            d.err(&root.key("metadata").key("name"), "is required");
        }
        let namespace = namespace_or_default(&meta.namespace);
        match kind {
            "Namespace" => {
                self.set
                    .namespaces
                    .insert(meta.name.clone(), meta.labels.clone());
            }
            "ServiceAccount" => {
                self.set
                    .service_accounts
                    .insert((namespace, meta.name.clone()), meta.labels.clone());
            }
            "Service" => self.set.services.push((namespace, meta.name.clone())),
            _ => {
                let slice = endpoint_slice(&mut d, res, namespace, &meta);
                self.set.endpoint_slices.push(slice);
            }
        }
        self.report(res, &shown, d.errors);
    }
}

/// An `EndpointSlice`'s endpoints and ports.
fn endpoint_slice(
    d: &mut Dec,
    res: &Res<'_>,
    namespace: String,
    meta: &crate::model::Metadata,
) -> EndpointSlice {
    let root = FieldPath::root();
    let mut addresses = Vec::new();
    if let Some(Value::Sequence(endpoints)) = res.value.get("endpoints") {
        for (i, ep) in endpoints.iter().enumerate() {
            match ep.get("addresses") {
                Some(Value::Sequence(list)) => {
                    for a in list {
                        match a.as_str() {
                            Some(a) => addresses.push(a.to_string()),
                            None => d.err(
                                &root.key("endpoints").index(i).key("addresses"),
                                "addresses must be strings",
                            ),
                        }
                    }
                }
                None | Some(Value::Null) => {}
                Some(_) => d.err(
                    &root.key("endpoints").index(i).key("addresses"),
                    "must be a list",
                ),
            }
        }
    }
    let mut ports = Vec::new();
    if let Some(Value::Sequence(list)) = res.value.get("ports") {
        for (i, p) in list.iter().enumerate() {
            let port = match p.get("port") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64().and_then(|n| u16::try_from(n).ok()) {
                    Some(n) => Some(n),
                    None => {
                        d.err(
                            &root.key("ports").index(i).key("port"),
                            "must be a port number",
                        );
                        None
                    }
                },
            };
            let protocol = p
                .get("protocol")
                .and_then(Value::as_str)
                .map(str::to_string);
            ports.push(SlicePort { port, protocol });
        }
    }
    let service = meta
        .labels
        .get("kubernetes.io/service-name")
        .cloned()
        .unwrap_or_default();
    EndpointSlice {
        namespace,
        name: meta.name.clone(),
        service,
        addresses,
        ports,
        origin: res.origin.clone(),
    }
}

/// Kinds this source does not compile and cannot skip: what they hold changes the decisions
/// (network sets and host endpoints are matched by rule selectors, profiles by endpoints, the
/// network policies are enforced). Other kinds (IP pools, BGP, Felix configuration, ...) are
/// skipped.
fn changes_decisions(api: &str, kind: &str) -> bool {
    let own = match api {
        "networking.k8s.io/v1" => kind == "NetworkPolicy",
        _ => matches!(
            kind,
            "HostEndpoint"
                | "GlobalNetworkSet"
                | "NetworkSet"
                | "Profile"
                | "StagedKubernetesNetworkPolicy"
                | "KubernetesNetworkPolicy"
        ),
    };
    own || kind
        .strip_suffix("List")
        .is_some_and(|k| changes_decisions(api, k))
}

/// One resource of a document: its value and where it is.
struct Res<'v> {
    value: &'v Value,
    at: FieldPath,
    origin: Origin,
}

/// `metadata.name` read loosely, for labels.
fn item_name(v: &Value) -> String {
    v.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| match n {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// serde_norway appends ` at line L column C`; the problem carries the absolute line itself.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// A resource's namespace, `default` when it names none (as Kubernetes does).
fn namespace_or_default(namespace: &str) -> String {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE.into()
    } else {
        namespace.to_string()
    }
}
