//! `control validate`: check Calico v3 YAML without serving (exit 0: valid, 1: problems).

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ValidateArgs {
    /// Calico v3 resource YAML: files or directories (searched for *.yaml / *.yml).
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
    /// Also compile for this workload (NAMESPACE/NAME), as `check` and `serve` would.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    workload: Option<String>,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    match alp_calico::load_paths(&args.paths) {
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            eprintln!("control: {} problem(s)", problems.len());
            ExitCode::from(1)
        }
        Ok(set) => {
            for skipped in &set.skipped {
                println!("skipped (not a policy resource): {skipped}");
            }
            if let Some(workload) = &args.workload {
                let compiled = alp_calico::parse_workload(workload)
                    .map_err(alp_calico::UpdatesError::from)
                    .and_then(|(ns, name)| Ok(alp_calico::compile(&set, &ns, &name)?));
                if let Err(e) = compiled {
                    println!("{e}");
                    return ExitCode::from(1);
                }
            }
            println!(
                "ok: {} policies, {} tiers, {} workloads ({})",
                set.policies.len(),
                set.tiers.len(),
                set.workloads.len(),
                alp_calico::workload_names(&set).join(", ")
            );
            ExitCode::SUCCESS
        }
    }
}
