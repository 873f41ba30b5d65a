//! Generates the subset of Envoy's external authorization API that `control ext-authz` serves
//! (`proto/envoy/...`, `proto/google/rpc/status.proto`): message types with `prost-build`, the
//! `Authorization` service (server, and a client for the tests) with `tonic-prost-build`, as
//! `control/felix/build.rs` does for Policy Sync. `protox` parses the protos in pure Rust (no
//! `protoc` on the build machine). One include file nests the packages as modules.

const PROTO_DIR: &str = "proto";
const PROTO_FILE: &str = "proto/envoy/service/auth/v3/external_auth.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");

    let fds = protox::compile([PROTO_FILE], [PROTO_DIR])?;
    let mut config = prost_build::Config::new();
    config.include_file("ext_authz_proto.rs");
    config.service_generator(
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .build_transport(false)
            .service_generator(),
    );
    config.compile_fds(fds)?;
    Ok(())
}
