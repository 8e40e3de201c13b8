//! The registry's admin operations, each described once. An operation is a request type in the
//! module of its domain with two impls: its [`Endpoint`] (or [`PlainEndpoint`]) says where it
//! lives in the admin API (method, path, success status, where its input travels, its answer;
//! the wire itself is `runtime::admin`), and its [`AdminOp`] how it changes the registry
//! ([`AdminOp::apply`], over [`Core`]) and how the CLI shows its answer as text. From it come
//! the admin API route and handler (`admin_api`), [`crate::AdminClient::call`],
//! [`crate::RegistryAdmin::run`], and the CLI's printing. [`for_each_op`] lists them all.
//!
//! Nothing here is async: the operations run under the registry's lock on a blocking thread.
//!
//! - `machine`: [`Core`], the state and its database; `execute` commits one operation's changes.
//! - `status`: the served configuration: [`Status`], [`Publish`], [`Audit`].
//! - `signing_key`: the configuration-signing key and its rollover without a new anchor.
//! - `ca`: the instance CA and its rollover: show, rotate, withdraw.
//! - `members`: [`ListMembers`], [`AddMember`], [`SetMemberProfile`] (names per language and
//!   privacy contact, for residents), [`RemoveMember`] (with all the member owns).
//! - `subsystems`: [`ListSubsystems`], [`AddSubsystem`], [`RemoveSubsystem`].
//! - `groups`: global groups and their members.
//! - `servers`: approved security servers and the subsystems they host.
//! - `keys`: member signing keys: list, add, retire, remove.
//! - `key_requests`: keys servers ask to list (rotation; public endpoint), approval, rejection.
//! - `enrollment`: enrolment requests (submitted on the public endpoint), decisions, tokens.
//! - `federation`: the instances this one is federated with, and their anchors.
//! - `backup`: [`CreateBackup`], an encrypted backup of the running registry.
//! - `renewal`: renewed TLS certificates for enrolled servers (public endpoint, no operator).
//! - [`views`]: the JSON views the operations answer with.

mod backup;
mod ca;
mod enrollment;
mod federation;
mod groups;
mod key_requests;
mod keys;
mod machine;
mod members;
mod renewal;
mod servers;
mod signing_key;
mod status;
mod subsystems;
pub mod views;

use serde::Serialize;

use crate::error::RegistryError;

pub use runtime::admin::{
    Endpoint, Input, JsonReply, OpInfo, PathError, PathParams, PathSegment, PlainEndpoint,
};

pub use backup::CreateBackup;
pub use ca::{CaCertificate, CaView, RotateCa, ShowCa, WithdrawCa};
pub use enrollment::{
    ApproveEnrollment, GetEnrollment, IssueToken, ListEnrollments, RejectEnrollment,
};
pub use federation::{
    AddFederation, FederationAdded, FederationView, ListFederations, RemoveFederation,
};
pub use groups::{AddGroup, AddGroupMember, ListGroups, RemoveGroup, RemoveGroupMember};
pub use key_requests::{
    ApproveKeyRequest, KeyRequestAnswer, KeyRequestStatus, KeyRequestView, ListKeyRequests,
    RejectKeyRequest,
};
pub use keys::{AddKey, ListKeys, NewKey, RemoveKey, RetireKey, Retirement};
pub use machine::Core;
pub(crate) use machine::Served;
pub(crate) use machine::{audit, not_found};
pub use members::{AddMember, ListMembers, Profile, RemoveMember, SetMemberProfile};
pub use renewal::{RenewalStatus, RenewalView};
pub use servers::{AddHostedSubsystem, ListServers, RemoveHostedSubsystem, RemoveServer};
pub use signing_key::{RotateSigningKey, ShowSigningKey, SigningKeyView};
pub use status::{Audit, Publish, Status};
pub use subsystems::{
    AddSubsystem, ListSubsystems, RemoveSubsystem, SetSubsystemProfile, SubsystemProfile,
};

runtime::admin_ops! {
    /// Calls `visitor` once for every admin operation. This list is the admin API: its routes are
    /// registered from it, and the tests check the CLI against it.
    AdminOp:
    Status,
    Publish,
    Audit,
    ShowSigningKey,
    RotateSigningKey,
    ShowCa,
    RotateCa,
    WithdrawCa,
    ListMembers,
    AddMember,
    SetMemberProfile,
    RemoveMember,
    ListKeys,
    AddKey,
    RetireKey,
    RemoveKey,
    ListKeyRequests,
    ApproveKeyRequest,
    RejectKeyRequest,
    ListSubsystems,
    AddSubsystem,
    SetSubsystemProfile,
    RemoveSubsystem,
    ListGroups,
    AddGroup,
    RemoveGroup,
    AddGroupMember,
    RemoveGroupMember,
    ListEnrollments,
    GetEnrollment,
    ApproveEnrollment,
    RejectEnrollment,
    IssueToken,
    ListServers,
    RemoveServer,
    AddHostedSubsystem,
    RemoveHostedSubsystem,
    ListFederations,
    AddFederation,
    RemoveFederation,
    CreateBackup,
}

/// Names per language for residents (of a member or a subsystem), trimmed: each under a
/// language of 2–3 lower-case letters, none empty.
pub(crate) fn checked_names(
    names: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, RegistryError> {
    let mut checked = std::collections::BTreeMap::new();
    for (lang, name) in names {
        let name = name.trim().to_owned();
        if !globalconf::conf::is_language(&lang) || name.is_empty() {
            return Err(RegistryError::BadRequest(format!(
                "a name needs a language of 2–3 lower-case letters and text, not {lang:?} = {name:?}"
            )));
        }
        checked.insert(lang, name);
    }
    Ok(checked)
}

/// One admin operation: its request (`Self`) and where it lives in the admin API (its
/// [`Endpoint`]: method, path below `/admin/v1`, success status, input, answer), what it does,
/// and how its answer reads as text.
pub trait AdminOp: Endpoint<Response: Serialize> {
    /// Runs the operation at `now` (Unix seconds); changes go through `Core::execute`, one transaction.
    fn apply(self, core: &mut Core, now: i64) -> Result<Self::Response, RegistryError>;
    /// The answer as the CLI prints it without `--json` (on stdout, lines ending in `\n`).
    fn text(&self, response: &Self::Response) -> String;
    /// A note the CLI prints on stderr after the text (not with `--json`).
    fn notice(&self, _response: &Self::Response) -> Option<String> {
        None
    }
}

impl From<PathError> for RegistryError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::Missing(_) => RegistryError::Internal(e.to_string()),
            PathError::Invalid { .. } => RegistryError::BadRequest(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use certs::KeyId;
    use globalconf::{MemberId, SubsystemId};

    use super::*;

    runtime::admin_op_table_tests!(AdminOp, ops: 41, prefix: "/", shapes: ops_without_input_take_a_unit_body_and_204_has_no_answer);

    #[test]
    fn path_identifiers_name_what_failed_to_parse() {
        let e = RegistryError::from(
            <(MemberId, KeyId)>::parse(&["JP/GOV/x".into(), "zz".into()]).unwrap_err(),
        );
        assert!(e.to_string().starts_with("key id: "), "{e}");
        let e = RegistryError::from(
            <SubsystemId as PathParams>::parse(&["JP/GOV".into()]).unwrap_err(),
        );
        assert!(e.to_string().starts_with("subsystem id: "), "{e}");
        assert!(matches!(e, RegistryError::BadRequest(_)));
    }
}
