//! What every xroad-rs binary needs around its own logic: one serving loop, one shutdown path,
//! logging set-up, small HTTP clients, and the wire of the admin APIs.
//!
//! # Layout
//! - [`shutdown`]: the shutdown signal every task listens to, and OS signal handling.
//! - [`serve`]: accept loop for an axum router over plain TCP or TLS, with a connection limit,
//!   the peer certificate in request extensions, and graceful drain with a deadline.
//! - `conns`: the connections of one serving loop: per-source limits, idle closing, eviction.
//! - [`backup`]: the backup file (an age-encrypted tar archive), writing and restoring it,
//!   and table copies of a running database.
//! - [`body`]: request bodies that must keep arriving (a gap and a minimum rate).
//! - [`client`]: HTTP(S) clients with timeouts and bounded bodies (registry polling, admin CLIs).
//! - [`admin`]: an admin operation on the wire ([`admin::Endpoint`]), its generic axum handler
//!   and client call, and the checks of an operation table.
//! - [`cli`]: what every binary's command line has: shell completions and man pages.
//! - [`health`]: the one `/health` answer of every binary.
//! - [`metrics`]: build information and process metrics for every binary's `/metrics`.
//! - [`logging`]: `tracing` subscriber set-up (text or JSON).
//! - [`time`]: Unix milliseconds as `jiff` timestamps and RFC 3339 UTC text.
//! - `testing` (feature `testing`): `eventually`, the tests' one way to wait for something
//!   instead of sleeping.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backup;
pub mod body;
pub mod cli;
pub mod client;
mod conns;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod serve;
pub mod shutdown;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

pub use client::{ClientError, HttpClient, Response, error_chain};
pub use logging::init_tracing;
pub use serve::{
    ConnectionLimits, PeerCertificate, ServeOptions, TlsConnection, serve_http, serve_http_with,
};
pub use shutdown::{Shutdown, ShutdownTrigger, signal};
