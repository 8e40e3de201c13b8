//! A whole xroad-rs federation on loopback, in one process: what `cargo run --bin sandbox`
//! starts, and the harness the integration tests build on.
//!
//! # Layout
//! - [`spec`]: what the federation is made of (the default demo: a ministry, two municipalities,
//!   the municipality's services and who may call them, and a shared server for two villages).
//! - [`shared`]: 共同利用方式: a server hosting several members' subsystems, each system with a
//!   client certificate of its own, checked at start to be refused as another's.
//! - [`federation`]: starting it through the real enrolment path, registering services and
//!   grants, stopping it, `federation.json`.
//! - [`federate`]: two running instances federated with each other (`--federated`).
//! - [`demo`]: the demo provider information system (synthetic resident records and tax
//!   certificates of Chiyoda City, and an echo service).
#![forbid(unsafe_code)]

pub mod demo;
pub mod federate;
pub mod federation;
pub mod shared;
pub mod spec;

pub use demo::DemoApi;
pub use federation::{
    Description, FederatedDescription, Federation, Ports, Restart, SandboxError, SandboxServer,
    ServiceDescription, prepare_dir,
};
pub use spec::{Backend, FederationSpec, MemberSpec, SampleExchange, ServerSpec, ServiceSpec};
