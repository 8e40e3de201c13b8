//! The xroad-rs security server (DESIGN §3–5, §8): an organisation's gateway to the others.
//!
//! # Layout
//! - [`config`]: the TOML configuration file.
//! - [`identity`]: keys and certificate on disk; `init` and enrolment with the registry.
//! - [`confclient`]: holds the verified global configuration; polls registries, then peers.
//! - [`peer`]: gRPC between security servers over mutual TLS pinned to the configuration.
//! - [`clientproxy`]: the X-Road REST endpoint for the organisation's information systems.
//! - [`rest`]: the X-Road REST protocol: recognising calls, header rules, X-Road headers (no I/O).
//! - [`message`]: signing and verifying request and response headers between servers (no I/O).
//! - [`access`]: access rights, deny by default: grants to subsystems and global groups (no I/O).
//! - [`replay`]: the replay cache of X-Road-Ids per client within a time window (no I/O).
//! - [`admin`]: the admin API and the health endpoint.
//! - [`error`]: X-Road error types and how each maps to HTTP.
//! - [`serverconf`]: the services this server provides and the access rights (redb).
//! - [`usage`]: resident transparency: `findUsage`, `usageEvidence`, suppression rules.
//! - [`server`]: assembles and runs all of the above.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod backend;
pub mod clientproxy;
pub mod confclient;
pub mod config;
pub mod error;
pub mod identity;
pub mod keys;
pub mod message;
pub mod messagelog;
pub mod metrics;
pub mod peer;
pub mod replay;
pub mod rest;
pub mod server;
pub mod serverconf;
pub mod serverproxy;
pub mod usage;

pub use config::Config;
pub use error::XRoadError;
pub use server::{Listeners, RunningServer, start};
