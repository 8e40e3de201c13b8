//! The central registry of an xroad-rs instance (DESIGN §4): it admits members, approves
//! security servers, and publishes the signed global configuration. It is never on the message
//! path: if it is down, exchanges go on.
//!
//! # Layout
//! - [`config`]: the TOML configuration file (`RegistryConfig`), defaults and validation.
//! - [`error`]: `RegistryError`, its kinds, and the HTTP status and JSON body each kind maps to.
//! - [`state`]: the pure in-memory `RegistryState` and `build_configuration` (no I/O).
//! - [`enrollment`]: recognising and verifying enrolment requests; request and token records (no I/O).
//! - [`requests`]: recognising certificate renewals and key requests of enrolled servers (no I/O).
//! - [`store`]: the redb database; every change, its audit entry and the new publication in one transaction.
//! - [`datadir`]: the files of the data directory; `init` and replica identities.
//! - [`backup`]: a backup of the running registry (the database copied table by table), and its
//!   restore into an empty data directory.
//! - [`ops`]: every admin operation once ([`ops::AdminOp`]), by domain, over [`ops::Core`] (no async),
//!   and the JSON views they answer with.
//! - `shared`: what the tasks and handlers share, the state machine behind one lock.
//! - `registry`: [`Registry`]: open, operate under one lock, republish, serve both listeners.
//! - [`admin`]: [`RegistryAdmin`], the in-process handle (`run` any op).
//! - `http`: the public HTTPS endpoints (configuration, anchor, CA, enrolment, health).
//! - `admin_api`: the bearer-token admin HTTP API: one route and one generic handler per op.
//! - `metrics`: `/metrics` beside it, without the token.
//! - [`client`]: [`AdminClient`], the admin API client the CLI uses (`call` any op).
//! - [`replica`]: [`Replica`], the read-only replica that polls, verifies and serves.
//! - `util`: random tokens, base64 for serde.
//!
//! # Adding an admin operation
//! Write it once, in the [`ops`] module of its domain (`ops/members.rs`, `ops/keys.rs`, ...):
//! a request struct, its [`ops::Endpoint`] impl (`METHOD`, `PATH` below `/admin/v1` with a
//! `{placeholder}` per identifier, success `STATUS`, and whether the rest of the request is a
//! JSON body or a query, `INPUT`, and the answer type; [`ops::PlainEndpoint`] when the request
//! has no identifiers and is itself), and its [`ops::AdminOp`] impl: `apply` (check the
//! request against [`ops::Core`]'s state, then `core.execute(changes, audit, ..)` in one
//! transaction), and `text` (the CLI's output without `--json`). Then list it in
//! [`ops::for_each_op`]. From that come the admin API route and its handler, the client call
//! ([`AdminClient::call`]), the in-process call ([`RegistryAdmin::run`]), the CLI's JSON and text
//! printing, and the table the tests check. The CLI's words for it (a clap variant in
//! `main.rs` and its line in `dispatch`) are the one other edit; a unit test there fails until
//! every operation has a command. Add a `docs/registry.md` row for the endpoint.
#![forbid(unsafe_code)]

pub mod admin;
mod admin_api;
pub mod backup;
pub mod client;
pub mod config;
pub mod datadir;
pub mod enrollment;
pub mod error;
mod http;
mod metrics;
pub mod ops;
mod registry;
pub mod replica;
pub mod requests;
mod shared;
pub mod state;
pub mod store;
mod util;

pub use admin::{
    EnrollmentStatusView, EnrollmentView, GroupView, IssuedToken, KeyView, MemberView,
    RegistryAdmin, ServerView, StatusView, SubsystemView,
};
pub use client::{AdminClient, AdminClientError, admin_url};
pub use config::{ConfigError, ParametersConfig, RegistryConfig};
pub use datadir::{
    DataDir, InitSummary, ReplicaIdentityFiles, init_data_dir, issue_replica_identity,
};
pub use enrollment::{EnrollmentStatus, VerifiedEnrollment, verify_enrollment};
pub use error::{ErrorBody, ErrorKind, RegistryError};
pub use http::{MAX_ENROLLMENT_BODY, SERIAL_HEADER};
pub use ops::{AddGroup, AddKey, AddMember, AddSubsystem, AdminOp, IssueToken, RetireKey};
pub use registry::Registry;
pub use replica::{OfferError, Replica, ReplicaConfig, ReplicaHandle};
pub use state::{
    GroupRecord, KeyRecord, MemberRecord, PublicationSettings, RegistryState, ServerRecord,
    SubsystemRecord, build_configuration,
};
pub use store::{AuditEntry, Publication};
