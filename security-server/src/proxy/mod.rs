//! The two proxies of DESIGN §5 and what they call.
//!
//! - [`client`]: the client proxy, where the organisation's information systems call with
//!   X-Road's REST protocol; signs, logs and forwards to a server hosting the provider.
//! - [`health`]: the order the client proxy tries a provider's servers in.
//! - [`server`]: the server proxy: checks a peer's exchange, calls the provider's system or
//!   answers a metaservice, signs and logs the answer.
//! - [`peer_service`]: the server proxy's gRPC service for peer servers.
//! - [`backend`]: the calls to the provider's information system.

pub mod backend;
pub mod client;
pub mod health;
pub mod peer_service;
pub mod server;

pub use client::{ClientProxy, ClientProxySettings};
pub use peer_service::PeerService;
pub use server::ServerProxy;
