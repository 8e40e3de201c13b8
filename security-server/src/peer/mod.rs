//! Transport between security servers (DESIGN §5.2): gRPC over mutual TLS, each side pinning
//! the other's certificate against the current global configuration.
//!
//! - [`pool`]: the client side's connections, one HTTP/2 channel per peer address, and the
//!   server side's TLS pinning.
//! - [`wire`]: one `Exchange` call: bodies streamed in parts, errors in gRPC statuses, the
//!   answer-then-confirm contract.
//!
//! The server side's gRPC service is the server proxy's ([`crate::proxy::peer_service`]).

pub mod pool;
pub mod wire;

pub use pool::{ConnectFailed, PeerError, PeerPool, is_connect_failure, server_tls};
pub use wire::{
    AnswerThenConfirm, Confirmation, Part, call_exchange, error_to_status, outgoing, read_body,
    status_to_error,
};
