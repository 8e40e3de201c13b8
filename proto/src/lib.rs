//! Protobuf messages and gRPC services of xroad-rs.
//!
//! # Layout
//! - `proto/xroad/v1/xroad.proto`: the source of truth for the wire contract.
//! - `src/gen/xroad.v1.rs`: code generated from it with `protox` + `tonic-prost-build`, checked
//!   in so that building needs no `protoc`. `tests/generated.rs` fails when it is stale;
//!   regenerate with `UPDATE_GENERATED=1 cargo test -p proto --test generated`.
//! - feature `grpc`: the `Peer` service's tonic client and server (`peer_client`,
//!   `peer_server`). Without it the crate is the messages alone, on prost only, which is what
//!   the protocol core (`exchange`) builds on.
#![forbid(unsafe_code)]

/// Version 1 of the xroad-rs wire contract (`package xroad.v1`).
pub mod v1 {
    #![allow(clippy::all, missing_debug_implementations, missing_docs)]
    include!("gen/xroad.v1.rs");
}

pub use prost::Message;
