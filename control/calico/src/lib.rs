//! Calico v3 resource YAML as a policy source: the same decisions without Kubernetes or Felix.
//!
//! * [`load`]: files or directories of multi-document YAML into a [`PolicySet`], with every
//!   [`Problem`] (file, line, resource, field, what is wrong).
//! * [`compile`](mod@compile): for one workload of the inventory, the `ToDataplane` messages
//!   Felix would send, ending in `inSync`; feed them to `alp_felix::SyncState` or
//!   `alp_felix::engine_from_updates`.
//!
//! Accepted documents: `projectcalico.org/v3` `GlobalNetworkPolicy`, `NetworkPolicy`,
//! `StagedGlobalNetworkPolicy`, `StagedNetworkPolicy`, `Tier`, `WorkloadEndpoint` (the
//! inventory of workloads); Kubernetes `v1` `Namespace` and `ServiceAccount` (labels). Other
//! kinds (Deployments, Services, ...) are skipped and listed in [`PolicySet::skipped`].

pub mod compile;
pub mod load;
pub mod model;
mod validate;

pub use compile::{compile, workload_names};
pub use load::{load_path, load_paths, load_texts, PolicySet, Problem};

use alp_felix::ToDataplane;
use std::path::PathBuf;

/// `NAMESPACE/NAME` -> (namespace, name).
pub fn parse_workload(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("workload {text:?} must be NAMESPACE/NAME")),
    }
}

/// Loads `paths` and compiles the messages for `workload` (`NAMESPACE/NAME`). The error lists
/// every problem, one per line.
pub fn updates_for(paths: &[PathBuf], workload: &str) -> Result<Vec<ToDataplane>, String> {
    let (ns, name) = parse_workload(workload)?;
    let set = load_paths(paths).map_err(|problems| {
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    })?;
    compile(&set, &ns, &name)
}

#[cfg(test)]
mod tests;
