//! The xroad-rs security server (DESIGN §3–5, §8): an organisation's gateway to the others.
//! The X-Road protocol itself (parsing, signing, verifying, access decisions, error codes) is
//! the `exchange` crate; this crate is the server around it: listeners, connections, storage.
//!
//! # Layout
//! The way of one request: [`proxy::client`] → [`peer`] → [`proxy::peer_service`] →
//! [`proxy::server`] → [`proxy::backend`], each message written by [`log`] on the way.
//! A module uses only those listed above it.
//! - [`config`]: the TOML configuration file.
//! - [`keys`]: the member signing keys this server holds.
//! - [`spool`]: message bodies of any size in bounded memory: kept in memory when small, else in
//!   encrypted, unnamed spool files.
//! - [`identity`]: keys and certificate on disk; `init` and enrolment with the registry.
//! - [`error`]: how an X-Road error is rendered in HTTP.
//! - [`client_auth`]: how each hosted subsystem's information systems must connect.
//! - [`peer`]: connections to peer servers over pinned mutual TLS; one `Exchange` on the wire.
//! - [`confclient`]: holds the verified global configuration; polls registries, then peers.
//! - [`federation`]: the federated instances this server talks to, each one's configuration
//!   held by a [`confclient`] of its own; their servers' pins.
//! - [`renewal`]: renews the TLS certificate before it expires, without a restart.
//! - [`rotation`]: makes a new member signing key and asks the registry to list it.
//! - [`metrics`]: Prometheus metrics (prometheus-client).
//! - [`opmon`]: operational data of every exchange, kept for days and queried by time range.
//! - [`log`]: the message log's records, checkpoints, witnessing and evidence export.
//! - [`usage`]: resident transparency: `findUsage`, `usageEvidence`, suppression rules.
//! - [`serverconf`]: the services this server provides and the access rights (redb).
//! - [`declared`]: the same declared in one file that every node of a cluster loads.
//! - [`proxy`]: the client proxy, the server proxy and its gRPC service, the backend calls.
//! - [`backup`]: a backup of the running server (databases copied table by table), and its
//!   restore into an empty data directory.
//! - [`admin`]: the admin API and the health endpoint; its operations ([`admin::ops`]), each
//!   described once, and the typed [`admin::AdminClient`] the CLI uses.
//! - [`server`]: assembles and runs all of the above.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backup;
pub mod client_auth;
pub mod confclient;
pub mod config;
pub mod declared;
pub mod error;
pub mod federation;
pub mod identity;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod opmon;
pub mod peer;
pub mod proxy;
pub mod renewal;
pub mod rotation;
pub mod server;
pub mod serverconf;
pub mod spool;
pub mod usage;

pub use config::Config;
pub use server::{Listeners, RunningServer, start};
