//! Generated Policy Sync types. Binary: [`prost::Message`]. JSON: serde in the protobuf
//! JSON mapping, best through [`crate::json`], which also accepts `null` as default.

#[allow(clippy::all, missing_docs)]
pub mod felix {
    include!(concat!(env!("OUT_DIR"), "/felix.rs"));
    include!(concat!(env!("OUT_DIR"), "/felix.serde.rs"));
}
