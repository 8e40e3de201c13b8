//! The xroad-rs security server (DESIGN §3–5, §8): an organisation's gateway to the others.
//!
//! # Layout
//! - [`config`]: the TOML configuration file.
//! - [`identity`]: keys and certificate on disk; `init` and enrolment with the registry.
//! - [`confclient`]: holds the verified global configuration; polls registries, then peers.
//! - [`peer`]: gRPC between security servers over mutual TLS pinned to the configuration.
//! - [`clientproxy`]: the X-Road REST endpoint for the organisation's information systems.
//! - [`admin`]: the admin API and the health endpoint.
//! - [`error`]: X-Road error types and how each maps to HTTP.
//! - [`server`]: assembles and runs all of the above.
#![forbid(unsafe_code)]

pub mod admin;
pub mod clientproxy;
pub mod confclient;
pub mod config;
pub mod error;
pub mod identity;
pub mod peer;
pub mod server;

pub use config::Config;
pub use error::XRoadError;
pub use server::{Listeners, RunningServer, start};
