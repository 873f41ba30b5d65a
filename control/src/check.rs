//! `control check`: decide requests offline against a policy source and explain each decision.

use alp_engine::{Engine, RequestSpec};
use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, ValueEnum};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["updates", "policy"])))]
pub struct CheckArgs {
    /// Felix `ToDataplane` messages in protobuf JSON mapping: JSON Lines or one JSON array.
    #[arg(long, value_name = "FILE")]
    updates: Option<PathBuf>,
    /// Calico v3 resource YAML (a file or a directory; repeatable), compiled for `--workload`
    /// into the messages Felix would send.
    #[arg(long, value_name = "PATH", requires = "workload")]
    policy: Vec<PathBuf>,
    /// With `--policy`: the workload the requests go to, NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "policy")]
    workload: Option<String>,
    /// One request object, or JSON Lines of requests; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
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
        std::io::stdin().read_to_string(&mut text).context("reading requests from standard input")?;
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
            anyhow::anyhow!("{name}:{}: not a valid request: field `{}`: {}", n + 1, e.path(), e.inner())
        })?;
        requests.push(request);
    }
    if requests.is_empty() {
        bail!("{name}: no request found");
    }
    Ok(requests)
}

pub fn load_engine(updates: &Path) -> Result<Engine> {
    let text = std::fs::read_to_string(updates).with_context(|| format!("{}: cannot read", updates.display()))?;
    let messages = alp_felix::updates::parse_updates(&text).with_context(|| format!("{}", updates.display()))?;
    Ok(alp_felix::engine_from_updates(&messages))
}

/// The engine Felix's messages for `workload` build from Calico YAML.
pub fn load_policy_engine(paths: &[PathBuf], workload: &str) -> Result<Engine> {
    let messages = alp_calico::updates_for(paths, workload).map_err(anyhow::Error::msg)?;
    Ok(alp_felix::engine_from_updates(&messages))
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    let engine = match (&args.updates, &args.workload) {
        (Some(updates), _) => load_engine(updates)?,
        (None, Some(workload)) => load_policy_engine(&args.policy, workload)?,
        (None, None) => bail!("give --updates FILE or --policy PATH --workload NAMESPACE/NAME"),
    };
    let name = args.request.display().to_string();
    let requests = parse_requests(&name, &read_input(&args.request)?)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for spec in &requests {
        let decision = engine.decide(&spec.request());
        let explanation = engine.explain(&decision);
        match args.format {
            Format::Json => writeln!(out, "{}", serde_json::to_string(&explanation)?)?,
            Format::Text => writeln!(out, "{}", explanation.to_text())?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
