//! The trust contract of an xroad-rs instance, shared by the central registry, the security
//! servers and offline verifiers. No network I/O.
//!
//! # Layout
//! - [`id`]: X-Road identifiers (member, subsystem, service, security server, global group)
//!   and one part's percent-encoding for URLs.
//! - [`anchor`]: the instance anchor file: instance id, registry URLs, signing keys, CA.
//! - [`conf`]: the validated, indexed view of a global configuration.
//! - [`signed`]: signing and verifying the configuration envelope; [`signed::VerifiedConf`] is
//!   the proof that a configuration was checked.
//! - `testing` (feature `testing`): `testing::ConfBuilder`, the tests' one way to make a
//!   configuration by hand.
#![forbid(unsafe_code)]

pub mod anchor;
pub mod conf;
pub mod id;
pub mod signed;
#[cfg(feature = "testing")]
pub mod testing;

pub use anchor::{Anchor, AnchorError};
pub use conf::{
    FederatedInstance, GlobalConf, GroupInfo, MemberInfo, MemberKey, Parameters, ServerInfo,
};
pub use id::{
    ClientId, GlobalGroupId, IdError, InstanceId, MemberId, SecurityServerId, ServiceId,
    SubsystemId,
};
pub use signed::{ConfError, Succession, VerifiedConf};
