//! Keys, certificates and TLS settings for xroad-rs (DESIGN.md §3, Trust).
//!
//! Nothing here does I/O except the file functions in [`keyfile`] and the
//! load/save methods of [`CertificateAuthority`], which call them.
//!
//! # Layout
//! - [`error`]: the crate's one error type, grouped by kind.
//! - [`clock`]: injected time ([`Clock`], [`SystemClock`], [`ManualClock`]).
//! - [`signing`]: Ed25519 keys, key ids and domain-separated signatures.
//! - [`keyfile`]: atomic file writes; secret files with mode 0600 and a permission check on read.
//! - [`pem`]: certificate PEM encoding and SHA-256 fingerprints.
//! - [`pkcs11`]: keys inside a hardware security module ([`pkcs11::Token`]).
//! - [`ca`]: the instance certificate authority that issues security-server TLS certificates.
//! - [`tls`]: rustls configurations: CA-trusting HTTPS and mutual TLS with certificate pinning.

#![forbid(unsafe_code)]
// Tests unwrap freely; the library build (also checked by clippy) may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod ca;
pub mod clock;
pub mod error;
pub mod keyfile;
pub mod pem;
pub mod pkcs11;
pub mod signing;
pub mod tls;

pub use ca::CertificateAuthority;
pub use ca::issued_by;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use keyfile::{
    load_secret_key, read_secret_file, save_secret_key, write_file_atomic, write_secret_file,
};
pub use pem::{CertificateInfo, cert_sha256, cert_to_pem, certificate_info, certs_from_pem};
pub use signing::{Domain, KeyId, PublicKey, SigningKey};
pub use tls::{
    CaRoots, LiveIdentity, PinPolicy, PinSet, TlsIdentity, client_config_trusting,
    client_config_trusting_at, information_system_server_config, pinned_client_config,
    pinned_server_config, server_config,
};

/// A buffer that is wiped when dropped; secret bytes leave this crate in one.
pub use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
