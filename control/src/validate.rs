//! `control validate`: check Calico v3 YAML as Calico would, without serving (exit 0: valid,
//! 1: problems). `-o json` prints one JSON object per problem (and per note) instead of lines.

use alp_calico::Problem;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ValidateArgs {
    /// Calico v3 resource YAML: files or directories (searched for *.yaml / *.yml); `-` reads
    /// standard input.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
    /// Also compile for this workload (NAMESPACE/NAME), as `check` and `serve` would.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    workload: Option<String>,
    /// `text`: one line per problem (`FILE:LINE: Kind ns/name: field: what`); `json`: one
    /// JSON object per problem, `{"level","file","line","resource","field","message"}`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// One problem (`level: "error"`) or note (`"note"`: valid Calico this project treats
/// differently) as `-o json` prints it.
#[derive(serde::Serialize)]
struct JsonProblem<'a> {
    level: &'a str,
    file: Option<&'a str>,
    line: Option<usize>,
    resource: Option<&'a str>,
    field: Option<&'a str>,
    message: &'a str,
}

impl<'a> JsonProblem<'a> {
    fn new(level: &'a str, p: &'a Problem) -> Self {
        JsonProblem {
            level,
            file: Some(&p.file),
            line: (p.line > 0).then_some(p.line),
            resource: p.resource.as_deref(),
            field: p.field.as_deref(),
            message: &p.message,
        }
    }
}

fn print(output: Output, level: &str, p: &Problem) {
    match output {
        Output::Text if level == "note" => println!("note: {p}"),
        Output::Text => println!("{p}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string(&JsonProblem::new(level, p)).unwrap_or_default()
        ),
    }
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    let (set, problems) = alp_calico::load_all(&args.paths, None);
    for note in &set.notes {
        print(args.output, "note", note);
    }
    if !problems.is_empty() {
        for p in &problems {
            print(args.output, "error", p);
        }
        eprintln!("control: {} problem(s)", problems.len());
        return ExitCode::from(1);
    }
    if args.output == Output::Text {
        for skipped in &set.skipped {
            println!("skipped (not a policy resource): {skipped}");
        }
    }
    if let Some(workload) = &args.workload {
        let compiled = alp_calico::parse_workload(workload)
            .map_err(alp_calico::UpdatesError::from)
            .and_then(|(ns, name)| Ok(alp_calico::compile(&set, &ns, &name)?));
        if let Err(e) = compiled {
            let message = e.to_string();
            match args.output {
                Output::Text => println!("{message}"),
                Output::Json => {
                    let p = JsonProblem {
                        level: "error",
                        file: None,
                        line: None,
                        resource: None,
                        field: None,
                        message: &message,
                    };
                    println!("{}", serde_json::to_string(&p).unwrap_or_default());
                }
            }
            return ExitCode::from(1);
        }
    }
    let summary = format!(
        "ok: {} policies, {} tiers, {} workloads ({})",
        set.policies.len(),
        set.tiers.len(),
        set.workloads.len(),
        alp_calico::workload_names(&set).join(", ")
    );
    match args.output {
        Output::Text => println!("{summary}"),
        Output::Json => eprintln!("control: {summary}"),
    }
    ExitCode::SUCCESS
}
