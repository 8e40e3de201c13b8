//! The central registry of an xroad-rs instance (DESIGN §4): it admits members, approves
//! security servers, and publishes the signed global configuration. It is never on the message
//! path: if it is down, exchanges go on.
//!
//! # Layout
//! - [`config`]: the TOML configuration file (`RegistryConfig`), defaults and validation.
//! - [`error`]: `RegistryError`, its kinds, and the HTTP status and JSON body each kind maps to.
//! - [`state`]: the pure in-memory `RegistryState` and `build_configuration` (no I/O).
//! - [`enrollment`]: recognising and verifying enrolment requests; request and token records (no I/O).
//! - [`store`]: the redb database; every change, its audit entry and the new publication in one transaction.
//! - [`datadir`]: the files of the data directory; `init` and replica identities.
//! - `registry`: [`Registry`]: open, operate under one lock, republish, serve both listeners.
//! - [`admin`]: [`RegistryAdmin`], the in-process handle, and the JSON views it returns.
//! - `http`: the public HTTPS endpoints (configuration, anchor, CA, enrolment, health).
//! - `admin_api`: the bearer-token admin HTTP API over [`RegistryAdmin`].
//! - [`client`]: [`AdminClient`], the typed admin API client the CLI uses.
//! - [`replica`]: [`Replica`], the read-only replica that polls, verifies and serves.
//! - `util`: hex, base64 for serde, percent-encoding, constant-time comparison.
#![forbid(unsafe_code)]

pub mod admin;
mod admin_api;
pub mod client;
pub mod config;
pub mod datadir;
pub mod enrollment;
pub mod error;
mod http;
mod registry;
pub mod replica;
pub mod state;
pub mod store;
mod util;

pub use admin::{
    EnrollmentStatusView, EnrollmentView, GroupView, IssuedToken, KeyView, MemberView,
    RegistryAdmin, ServerView, StatusView, SubsystemView,
};
pub use admin_api::{AddGroup, AddKey, AddMember, AddSubsystem, IssueToken, RetireKey};
pub use client::{AdminClient, AdminClientError, admin_url};
pub use config::{ConfigError, ParametersConfig, RegistryConfig};
pub use datadir::{
    DataDir, InitSummary, ReplicaIdentityFiles, init_data_dir, issue_replica_identity,
};
pub use enrollment::{EnrollmentStatus, VerifiedEnrollment, verify_enrollment};
pub use error::{ErrorBody, ErrorKind, RegistryError};
pub use http::{MAX_ENROLLMENT_BODY, SERIAL_HEADER};
pub use registry::Registry;
pub use replica::{OfferError, Replica, ReplicaConfig, ReplicaHandle};
pub use state::{
    GroupRecord, KeyRecord, MemberRecord, PublicationSettings, RegistryState, ServerRecord,
    SubsystemRecord, build_configuration,
};
pub use store::{AuditEntry, Publication};
