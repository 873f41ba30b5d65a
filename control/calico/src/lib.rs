//! Calico v3 resource YAML as a policy source: the same decisions without Kubernetes or Felix.
//!
//! * [`model`]: the types (the resources, the [`PolicySet`] they load into, [`Problem`])
//!   and the defaults Calico applies.
//! * `decode`: YAML into the resources, strictly as calicoctl decodes it.
//! * `validate`: Calico's verdict on each resource (its validator, CRD schemas and CEL rules).
//! * [`values`]: parsers of networks and `NAMESPACE/NAME`.
//! * [`load`]: files, directories or standard input of multi-document YAML (single resources,
//!   `List`s) into a [`PolicySet`], with every [`Problem`] (file, line, resource, field, what is
//!   wrong).
//! * [`limits`]: the caps checked before parsing (`--max-policy-bytes`, `--max-yaml-depth`).
//! * [`compile`](mod@compile): for one workload of the inventory, the `ToDataplane` messages
//!   Felix would send, ending in `inSync`; feed them to `alp_felix::SyncState::replay` or
//!   `alp_felix::engine_from_updates`.
//!
//! Accepted documents: `projectcalico.org/v3` `GlobalNetworkPolicy`, `NetworkPolicy`,
//! `StagedGlobalNetworkPolicy`, `StagedNetworkPolicy`, `Tier`, `WorkloadEndpoint` (the
//! inventory of workloads) and their lists; Kubernetes `v1` `Namespace` and `ServiceAccount`
//! (labels), `Service` and `discovery.k8s.io/v1` `EndpointSlice` (service matches), and their
//! lists; `v1` `List`. Other kinds (Deployments, ...) are skipped and listed in
//! [`PolicySet::skipped`].

pub mod compile;
mod decode;
mod document;
mod k8s;
pub mod limits;
pub mod load;
pub mod locate;
pub mod model;
mod validate;
pub mod values;

pub use compile::{compile, workload_names, CompileError};
pub use load::{load_all, load_path, load_paths, load_paths_with, load_texts, load_texts_all};
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

/// Loads `paths` (`-` is standard input) and compiles the messages for `workload`
/// (`NAMESPACE/NAME`).
pub fn updates_for(paths: &[PathBuf], workload: &str) -> Result<Vec<ToDataplane>, UpdatesError> {
    updates_for_with(paths, None, workload)
}

/// [`updates_for`] with standard input already read (see [`load_paths_with`]).
pub fn updates_for_with(
    paths: &[PathBuf],
    stdin: Option<&str>,
    workload: &str,
) -> Result<Vec<ToDataplane>, UpdatesError> {
    let (ns, name) = parse_workload(workload)?;
    let set = load_paths_with(paths, stdin).map_err(UpdatesError::Problems)?;
    Ok(compile(&set, &ns, &name)?)
}

#[cfg(test)]
mod tests;
