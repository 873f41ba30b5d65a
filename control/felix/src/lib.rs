//! Felix Policy Sync for application-layer policy: the wire model, the store Felix's messages
//! build, and the snapshot the filter evaluates.
//!
//! * [`wire`]: the Policy Sync messages (prost types with protobuf-JSON serde), generated from
//!   `proto/felixbackend.proto`, a subset of Calico's `felixbackend.proto`. With the `grpc`
//!   feature (native builds only) also the tonic `PolicySync` client
//!   (`wire::felix::policy_sync_client`, control's Felix source) and server
//!   (`wire::felix::policy_sync_server`, the test Felix).
//! * [`json`]: one message from protobuf JSON (`null` as default, errors with field paths).
//! * [`updates`]: a document of `ToDataplane` messages (JSON array or JSON Lines).
//! * [`store`]: the store those messages build (semantics.md section 2).
//! * [`sync`]: pending and current stores across `in_sync` and reconnects, and the replay of
//!   a list of messages as one stream ([`SyncState::replay`]).
//! * [`to_snapshot`]: [`Store::snapshot`] -> [`alp_engine::snapshot::Snapshot`].

pub mod json;
pub mod store;
pub mod sync;
pub mod to_snapshot;
pub mod updates;
pub mod wire;

pub use store::{Applied, Malformed, Store};
pub use sync::{engine_from_updates, engine_from_updates_with, Replayed, SyncApplied, SyncState};
pub use updates::{parse_updates, UpdatesError};
pub use wire::felix::ToDataplane;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod testutil;
#[cfg(test)]
mod wire_tests;
