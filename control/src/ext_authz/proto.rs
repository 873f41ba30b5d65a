//! The generated subset of Envoy's external authorization API (see `control/build.rs` and
//! `control/proto/`): `envoy::service::auth::v3` (the `Authorization` service, its server and
//! client), `envoy::config::core::v3`, `envoy::r#type::v3`, `google::rpc`.
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/ext_authz_proto.rs"));
