#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Regenerates the protobuf code into a temporary directory and fails when the checked-in copy
//! differs. Run with `UPDATE_GENERATED=1` to write the fresh copy instead.

use std::path::Path;

#[test]
fn generated_code_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["xroad/v1/xroad.proto"], [root.join("proto")])
        .expect("the .proto files compile");
    let out = tempfile::tempdir().expect("temporary directory");
    tonic_prost_build::configure()
        .build_transport(false)
        // Maps encode in key order: signed messages come out the same every time.
        .btree_map(".")
        // The gRPC client and server need tonic; the messages alone (the wire contract the
        // protocol core signs and verifies) need only prost.
        .client_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .server_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("code generation");
    let fresh = std::fs::read_to_string(out.path().join("xroad.v1.rs")).expect("generated file");
    let checked_in_path = root.join("src/gen/xroad.v1.rs");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&checked_in_path, &fresh).expect("write generated code");
        return;
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "proto/src/gen/xroad.v1.rs is stale: run `UPDATE_GENERATED=1 cargo test -p proto --test generated`"
    );
}
