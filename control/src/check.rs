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
//!
//! A request may carry an `"id"` (a string or a number), which its answer echoes, so that an
//! answer in JSON Lines can be joined back to its request. `--fail-on-deny` makes the exit status
//! say whether every request was allowed (exit 3 when one was not), for CI jobs.

use crate::decide::{self, Decided, EngineArgs};
use crate::source::args::{Selected, SourceArgs};
use alp_engine::path::NonCanonicalPath;
use alp_engine::{Engine, Explanation, Options, RequestSpec, StagedExplanation};
use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, ValueEnum};
use serde_json::Value;
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
    /// One request object, or JSON Lines of requests; `-` reads standard input. A request's
    /// optional `"id"` (a string or a number) is echoed in its answer.
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    /// `json`: one JSON object per request (JSON Lines); `text`: one line per request.
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        default_value_t = Format::Json
    )]
    output: Format,
    /// Exit 3 when any request is not allowed (denied, or refused for any other reason), after
    /// printing every answer; 0 when all are allowed. Only the enforced decision counts: not the
    /// `--staged` one, and with `--dry-run` the decision the filter would make if it enforced.
    #[arg(long)]
    fail_on_deny: bool,
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

/// Exit status of `check --fail-on-deny` when a request was not allowed.
pub const EXIT_NOT_ALLOWED: u8 = 3;

/// One answer: the request's id, the explanation, and what `--dry-run` and `--staged` add.
#[derive(serde::Serialize)]
struct Checked {
    /// The request's `"id"`, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Value>,
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
    fn new(
        engine: &Engine,
        id: Option<Value>,
        decided: &Decided,
        http: bool,
        dry_run: bool,
    ) -> Self {
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
            id,
            decision: explanation,
            rewritten: http.then(|| decided.non_canonical.as_ref().is_some_and(|n| n.rewritten)),
            canonical_path: decided.non_canonical.as_ref().map(|n| n.forwarded.clone()),
            enforced: dry_run.then_some(false),
            would_block: dry_run.then_some(!decision.verdict.is_allowed()),
            staged,
        }
    }

    fn to_text(&self) -> String {
        let mut out = self.id.as_ref().map(id_text).unwrap_or_default();
        out.push_str(&self.decision.to_text());
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

/// `id=ID ` before a text answer: a string as it is unless it has spaces, quotes or control
/// characters (then JSON-quoted), a number as JSON writes it.
fn id_text(id: &Value) -> String {
    match id {
        Value::String(s)
            if !s.is_empty()
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"') =>
        {
            format!("id={s} ")
        }
        other => format!("id={other} "),
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

/// One request of the input: what the engine decides on, and the caller's `"id"`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRequest {
    /// A string or a number, echoed in the answer; `None` when absent (or `null`).
    pub id: Option<Value>,
    pub spec: RequestSpec,
}

/// Why one request object is not valid: the field (a JSON path, `.` for the whole object) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InvalidRequest {
    field: String,
    message: String,
}

/// What kind of JSON value `v` is, for messages (the value itself may be long).
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One request object: `"id"` taken out, the rest read as the engine's [`RequestSpec`].
fn request_from_value(value: Value) -> Result<CheckRequest, InvalidRequest> {
    let Value::Object(mut fields) = value else {
        return Err(InvalidRequest {
            field: ".".to_string(),
            message: format!("a request is a JSON object, not {}", json_kind(&value)),
        });
    };
    let id = match fields.remove("id") {
        None | Some(Value::Null) => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
        Some(other) => {
            return Err(InvalidRequest {
                field: "id".to_string(),
                message: format!("must be a string or a number, not {}", json_kind(&other)),
            })
        }
    };
    let spec =
        serde_path_to_error::deserialize::<_, RequestSpec>(Value::Object(fields)).map_err(|e| {
            InvalidRequest {
                field: e.path().to_string(),
                message: e.inner().to_string(),
            }
        })?;
    Ok(CheckRequest { id, spec })
}

/// A request document: one JSON object (possibly spread over lines), or JSON Lines.
pub fn parse_requests(name: &str, text: &str) -> Result<Vec<CheckRequest>> {
    if let Ok(whole @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
        return request_from_value(whole).map(|r| vec![r]).map_err(|e| {
            anyhow::anyhow!(
                "{name}: not a valid request: field `{}`: {}",
                e.field,
                e.message
            )
        });
    }
    let mut requests = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |field: &str, message: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "{name}:{}: not a valid request: field `{field}`: {message}",
                n + 1
            )
        };
        let value = serde_json::from_str::<Value>(line).map_err(|e| invalid(".", &e))?;
        let request = request_from_value(value).map_err(|e| invalid(&e.field, &e.message))?;
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
    let mut all_allowed = true;
    for CheckRequest { id, spec } in requests {
        let request = spec.request();
        let decided = decide::decide(&engine, &request, args.non_canonical_path);
        all_allowed &= decided.decision.verdict.is_allowed();
        let checked = Checked::new(&engine, id, &decided, request.http.is_some(), args.dry_run);
        match args.output {
            Format::Json => writeln!(out, "{}", serde_json::to_string(&checked)?)?,
            Format::Text => writeln!(out, "{}", checked.to_text())?,
        }
    }
    out.flush().context("writing the answers")?;
    Ok(if args.fail_on_deny && !all_allowed {
        ExitCode::from(EXIT_NOT_ALLOWED)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_taken_out_and_echoed_as_given() {
        let r = parse_requests("r", r#"{"id":"a-1","http":{"method":"GET","path":"/"}}"#).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, Some(Value::from("a-1")));
        assert_eq!(r[0].spec.http.as_ref().unwrap().path.as_deref(), Some("/"));
        let r = parse_requests("r", "{\"id\":7}\n{}\n{\"id\":null}\n").unwrap();
        let ids: Vec<_> = r.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, [Some(Value::from(7)), None, None]);
        // Spread over lines: one object.
        let r =
            parse_requests("r", "{\n  \"id\": \"x\",\n  \"source\": {\"port\": 1}\n}\n").unwrap();
        assert_eq!((r.len(), r[0].spec.source.port), (1, Some(1)));
    }

    #[test]
    fn bad_requests_name_the_line_and_field() {
        let err = |text: &str| parse_requests("req.jsonl", text).unwrap_err().to_string();
        let e = err("{}\n{\"id\":[1]}\n");
        assert!(
            e.starts_with("req.jsonl:2:") && e.contains("field `id`"),
            "{e}"
        );
        let e = err("{\"id\":true,\"http\":null}");
        assert!(e.starts_with("req.jsonl: ") && e.contains("`id`"), "{e}");
        let e = err("{}\n{\"source\":{\"port\":\"x\"}}\n");
        assert!(
            e.starts_with("req.jsonl:2:") && e.contains("source.port"),
            "{e}"
        );
        let e = err("{}\n{\"sauce\":{}}\n");
        assert!(e.starts_with("req.jsonl:2:") && e.contains("sauce"), "{e}");
        let e = err("{}\n[1]\n");
        assert!(
            e.starts_with("req.jsonl:2:") && e.contains("JSON object"),
            "{e}"
        );
        let e = err("{}\n{not json\n");
        assert!(e.starts_with("req.jsonl:2:"), "{e}");
        assert!(err("\n \n").contains("no request found"));
    }

    #[test]
    fn text_ids_stay_one_word() {
        assert_eq!(id_text(&Value::from("r-1")), "id=r-1 ");
        assert_eq!(id_text(&Value::from(12)), "id=12 ");
        assert_eq!(id_text(&Value::from("two words")), "id=\"two words\" ");
        assert_eq!(id_text(&Value::from("")), "id=\"\" ");
    }
}
