//! `control check`: decide requests offline against a policy source and explain each decision.
//!
//! `--dry-run` reports what the filter does with `enforce: false` (the decision is unchanged;
//! `"enforced": false` and `"would_block"` say that nothing is refused); `--staged` adds the
//! decision the staged policies would make if they were enforced (`"staged"`, with
//! `"differs"`), as the filter's `staged: true` does.
//!
//! Paths (D10): a non-canonical HTTP request path is decided as the filter's default mode
//! (`non_canonical_path: rewrite`) decides it, on the canonical path the filter forwards; each
//! HTTP answer says `"rewritten"`, and `"canonical_path"` (that forwarded path) when the request
//! path is non-canonical. `--non-canonical-path reject` decides as `non_canonical_path: reject`
//! (400 `bad_request_path`). `--trust-domain` is the filter's `trust_domains` (D12).

use crate::decide::{self, Decided, EngineArgs};
use crate::source::args::{Selected, SourceArgs};
use alp_engine::path::NonCanonicalPath;
use alp_engine::{Engine, Explanation, Options, RequestSpec, StagedExplanation};
use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, ValueEnum};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `check` reads the file sources once: its own wording of their flags, and no Felix socket
/// or watch interval.
#[derive(Args)]
#[command(
    mut_group("source", |_| ArgGroup::new("source").required(true).args(["updates", "policy"])),
    mut_arg("updates", |a| a.help("Felix `ToDataplane` messages in protobuf JSON mapping: JSON Lines or one JSON array")),
    mut_arg("policy", |a| a.help("Calico v3 resource YAML (a file or a directory; repeatable), compiled for `--workload` into the messages Felix would send")),
    mut_arg("workload", |a| a.help("With `--policy`: the workload the requests go to, NAMESPACE/NAME")),
    mut_arg("felix_socket", |a| a.hide(true)),
    mut_arg("watch_interval_ms", |a| a.hide(true)),
)]
pub struct CheckArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// One request object, or JSON Lines of requests; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Explain as the filter's dry run (`enforce: false`) does: nothing is refused; each answer
    /// says `"enforced": false` and whether the policy `"would_block"` the request.
    #[arg(long)]
    dry_run: bool,
    /// Also decide as if every staged policy were enforced, and add that explanation
    /// (`"staged"`, with `"differs"` when its verdict is not the enforced one).
    #[arg(long)]
    staged: bool,
    /// What the filter does with a non-canonical request path (`non_canonical_path`): `rewrite`
    /// decides on the canonical path it forwards, `reject` answers 400 (bad_request_path).
    #[arg(long, value_name = "rewrite|reject", default_value = "rewrite")]
    non_canonical_path: NonCanonicalPath,
    #[command(flatten)]
    engine: EngineArgs,
}

/// One answer: the explanation, and what `--dry-run` and `--staged` add.
#[derive(serde::Serialize)]
struct Checked {
    #[serde(flatten)]
    decision: Explanation,
    /// HTTP requests: whether the filter rewrites `:path` (to `canonical_path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    rewritten: Option<bool>,
    /// A non-canonical HTTP request path: the canonical path (with the query) the filter
    /// forwards in its default mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    canonical_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enforced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would_block: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    staged: Option<StagedExplanation>,
}

impl Checked {
    fn new(engine: &Engine, decided: &Decided, http: bool, dry_run: bool) -> Self {
        let decision = &decided.decision;
        let mut explanation = engine.explain(decision);
        let mut staged = decided
            .staged
            .as_ref()
            .map(|s| engine.explain_staged_against(s, decision));
        if decided.rejected_path() {
            let detail =
                "the request path is not canonical and non-canonical paths are refused".to_string();
            if let Some(s) = &mut staged {
                s.decision.detail.clone_from(&detail);
            }
            explanation.detail = detail;
        }
        Checked {
            decision: explanation,
            rewritten: http.then(|| decided.non_canonical.as_ref().is_some_and(|n| n.rewritten)),
            canonical_path: decided.non_canonical.as_ref().map(|n| n.forwarded.clone()),
            enforced: dry_run.then_some(false),
            would_block: dry_run.then_some(!decision.verdict.is_allowed()),
            staged,
        }
    }

    fn to_text(&self) -> String {
        let mut out = self.decision.to_text();
        match (self.rewritten, &self.canonical_path) {
            (Some(true), Some(path)) => out.push_str(&format!(" [path rewritten to {path}]")),
            (_, Some(path)) => {
                out.push_str(&format!(" [non-canonical path refused; canonical: {path}]"))
            }
            _ => {}
        }
        if let Some(block) = self.would_block {
            out.push_str(if block {
                " [dry run: would block]"
            } else {
                " [dry run: would not block]"
            });
        }
        if let Some(s) = &self.staged {
            out.push_str(if s.differs {
                " | staged (DIFFERS): "
            } else {
                " | staged: "
            });
            out.push_str(&s.decision.to_text());
        }
        out
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One JSON object per request.
    Json,
    /// One line per request, for a person.
    Text,
}

fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading requests from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// A request document: one JSON object (possibly spread over lines), or JSON Lines.
pub fn parse_requests(name: &str, text: &str) -> Result<Vec<RequestSpec>> {
    if let Ok(one) = serde_json::from_str::<RequestSpec>(text) {
        return Ok(vec![one]);
    }
    let mut requests = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut de = serde_json::Deserializer::from_str(line);
        let request = serde_path_to_error::deserialize::<_, RequestSpec>(&mut de).map_err(|e| {
            anyhow::anyhow!(
                "{name}:{}: not a valid request: field `{}`: {}",
                n + 1,
                e.path(),
                e.inner()
            )
        })?;
        requests.push(request);
    }
    if requests.is_empty() {
        bail!("{name}: no request found");
    }
    Ok(requests)
}

pub fn load_engine(updates: &Path, options: &Options) -> Result<Engine> {
    let text = std::fs::read_to_string(updates)
        .with_context(|| format!("{}: cannot read", updates.display()))?;
    let messages = alp_felix::updates::parse_updates(&text)
        .with_context(|| format!("{}", updates.display()))?;
    Ok(alp_felix::engine_from_updates_with(&messages, options))
}

/// The engine Felix's messages for `workload` build from Calico YAML.
pub fn load_policy_engine(paths: &[PathBuf], workload: &str, options: &Options) -> Result<Engine> {
    let messages = alp_calico::updates_for(paths, workload)?;
    Ok(alp_felix::engine_from_updates_with(&messages, options))
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    let options = args.engine.options(args.staged);
    let selected = args.source.selected()?;
    let stdin = Path::new("-");
    if args.request == stdin
        && matches!(selected, Selected::Policy(paths, _) if paths.iter().any(|p| p == stdin))
    {
        bail!("standard input can hold the policy or the requests, not both: give --request FILE");
    }
    let engine = match selected {
        Selected::Updates(updates) => load_engine(updates, &options)?,
        Selected::Policy(paths, workload) => load_policy_engine(paths, workload, &options)?,
        Selected::Felix(_) => bail!(
            "check reads files: give --updates FILE or --policy PATH --workload NAMESPACE/NAME"
        ),
    };
    let name = args.request.display().to_string();
    let requests = parse_requests(&name, &read_input(&args.request)?)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for spec in &requests {
        let request = spec.request();
        let decided = decide::decide(&engine, &request, args.non_canonical_path);
        let checked = Checked::new(&engine, &decided, request.http.is_some(), args.dry_run);
        match args.format {
            Format::Json => writeln!(out, "{}", serde_json::to_string(&checked)?)?,
            Format::Text => writeln!(out, "{}", checked.to_text())?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
