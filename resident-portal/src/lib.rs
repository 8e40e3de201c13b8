//! The resident transparency portal (DESIGN §7): an ordinary X-Road client application that asks
//! every provider, through its own security server, which accesses to a resident's data it has
//! recorded, and shows them as one timeline in a web page — who, when, what data, why — with the
//! evidence of each access for download. A provider that does not answer is shown as
//! unavailable, never silently left out.
//!
//! # Layout
//! - [`config`]: the TOML configuration file; defaults and validation.
//! - [`login`]: pluggable resident login (development form with sessions; trusted header).
//! - [`seal`]: sealed cookies (ChaCha20-Poly1305 under the session key).
//! - [`oidc`]: the OpenID Connect login (authorization code flow with PKCE, sealed sessions).
//! - [`usage`]: access records, `listClients`/`findUsage` answers, X-Road errors, paging and the
//!   merged timeline (no I/O).
//! - [`gateway`]: the X-Road REST calls to the portal's security server (I/O).
//! - [`page`]: the HTML pages in Japanese and English (no I/O).
//! - [`web`]: routes, sessions and languages per request, status codes.
#![forbid(unsafe_code)]

pub mod config;
pub mod gateway;
pub mod login;
pub mod oidc;
pub mod page;
pub mod seal;
pub mod usage;
pub mod web;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::{Config, ConfigError, IdentifierRule, LoginConfig, LoginKind};
pub use gateway::Gateway;
pub use login::{Login, ResidentId};
pub use usage::{SourceState, SourceStatus, Timeline};
pub use web::router;

/// Serves the portal on `listener` until `shutdown` resolves. An invalid `config` is an
/// `InvalidInput` error before anything is served.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limits = config.connections.serve_options();
    let router =
        router(config).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    runtime::serve_http_with(listener, None, router, shutdown, limits).await
}
