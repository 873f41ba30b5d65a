//! Calico v3 resource YAML as a policy source: the same decisions without Kubernetes or Felix.
//!
//! * [`model`]: the types (the YAML resources, the [`PolicySet`] they load into, [`Problem`])
//!   and the defaults Calico applies.
//! * [`values`]: parsers of protocols, ports, nets and `NAMESPACE/NAME`.
//! * [`load`]: files or directories of multi-document YAML into a [`PolicySet`], with every
//!   [`Problem`] (file, line, resource, field, what is wrong), checked by `validate`.
//! * [`compile`](mod@compile): for one workload of the inventory, the `ToDataplane` messages
//!   Felix would send, ending in `inSync`; feed them to `alp_felix::SyncState::replay` or
//!   `alp_felix::engine_from_updates`.
//!
//! Accepted documents: `projectcalico.org/v3` `GlobalNetworkPolicy`, `NetworkPolicy`,
//! `StagedGlobalNetworkPolicy`, `StagedNetworkPolicy`, `Tier`, `WorkloadEndpoint` (the
//! inventory of workloads); Kubernetes `v1` `Namespace` and `ServiceAccount` (labels). Other
//! kinds (Deployments, Services, ...) are skipped and listed in [`PolicySet::skipped`].

pub mod compile;
mod document;
pub mod load;
pub mod model;
mod validate;
pub mod values;

pub use compile::{compile, workload_names, CompileError};
pub use load::{load_path, load_paths, load_texts};
pub use model::{PolicySet, Problem};
pub use values::{parse_workload, BadWorkload};

use alp_felix::ToDataplane;
use std::path::PathBuf;

/// Why [`updates_for`] gave no messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdatesError {
    #[error(transparent)]
    Workload(#[from] BadWorkload),
    /// Every problem of the YAML, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<Problem>),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// Loads `paths` and compiles the messages for `workload` (`NAMESPACE/NAME`).
pub fn updates_for(paths: &[PathBuf], workload: &str) -> Result<Vec<ToDataplane>, UpdatesError> {
    let (ns, name) = parse_workload(workload)?;
    let set = load_paths(paths).map_err(UpdatesError::Problems)?;
    Ok(compile(&set, &ns, &name)?)
}

#[cfg(test)]
mod tests;
