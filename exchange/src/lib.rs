//! The X-Road protocol core of xroad-rs: recognising what an information system sends, signing
//! and verifying the messages between security servers, the access decision, the replay window,
//! the metaservices' rules and the error codes. It does no I/O and knows no HTTP server, gRPC
//! or database (as rustls does not take care of network I/O): everything here is a function of
//! its arguments, tested without sockets. `tests/layering.rs` keeps tokio, hyper, axum, tonic
//! and redb out of its dependency tree.
//!
//! # Layout
//! Each module uses only those above it.
//! - [`error`]: the X-Road error codes, one enum per origin, and [`XRoadError`].
//! - [`body`]: [`HashedBody`], a body with its SHA-256, hashed once.
//! - [`uri`]: the path and query after a service identifier: dot segments, escapes, parameters.
//! - [`openapi`]: OpenAPI 3 descriptions: their operations, and as `getOpenAPI` serves them.
//! - [`metaservice`]: the metaservices' codes and [`MetaCall::parse`], used by both proxies.
//! - [`rest`]: the X-Road REST protocol of the client proxy: parsing calls, header rules.
//! - [`replay`]: the replay window of message ids per client.
//! - [`message`]: signed request and response headers; [`VerifiedRequest`], [`VerifiedResponse`].
//! - [`access`]: access rights, deny by default; [`Authorized`], the proof of the decision.
#![forbid(unsafe_code)]

pub mod access;
pub mod body;
pub mod error;
pub mod message;
pub mod metaservice;
pub mod openapi;
pub mod replay;
pub mod rest;
pub mod uri;

#[cfg(test)]
mod test_support;

pub use access::{AccessRights, Authorized, Grant};
pub use body::HashedBody;
pub use error::{
    ClientCode, ClientProxyCode, Code, ErrorFormat, Origin, ServerProxyCode, XRoadError,
};
pub use message::{VerifiedRequest, VerifiedResponse};
pub use metaservice::MetaCall;
