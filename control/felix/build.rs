//! Generates the Policy Sync wire types from `proto/felixbackend.proto`.
//!
//! `protox` parses the proto in pure Rust (no `protoc` on the build machine), `prost-build`
//! emits the message types and `pbjson-build` their serde implementations in the protobuf JSON
//! mapping. Unknown JSON fields are skipped (`ignore_unknown_fields`), matching what protobuf
//! decoding does with unknown wire fields. Maps are `BTreeMap` so iteration order is stable.
//!
//! With the `grpc` feature, `tonic-prost-build` also emits the `PolicySync` service: the client
//! (`policy_sync_client`, used by control) and the server (`policy_sync_server`, used by the test
//! Felix), into the same `felix.rs`.

use prost::Message;

const PROTO_DIR: &str = "proto";
const PROTO_FILE: &str = "proto/felixbackend.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_FILE}");

    let fds = protox::compile([PROTO_FILE], [PROTO_DIR])?;
    let encoded = fds.encode_to_vec();

    let mut config = prost_build::Config::new();
    config.btree_map(["."]);
    #[cfg(feature = "grpc")]
    config.service_generator(
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .build_transport(false)
            .service_generator(),
    );
    config.compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .btree_map(["."])
        .ignore_unknown_fields()
        .build(&[".felix"])?;

    Ok(())
}
