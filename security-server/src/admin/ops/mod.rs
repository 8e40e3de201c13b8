//! The security server's admin operations, each described once. An operation is a request type
//! with an [`Endpoint`] impl, where it lives in the admin API (method, path, where its input
//! travels), its answer (a [`Reply`], which knows its status and body), and an [`AdminOp`]
//! impl: what it does ([`AdminOp::apply`], over [`Admin`]) and how the CLI shows the answer as
//! text. From it come
//! the route and handler ([`Admin::router`]), [`super::AdminClient::call`] and the CLI's
//! printing. [`for_each_op`] lists them all.
//!
//! - `status`: [`Status`], [`RefreshGlobalconf`], [`RenewTls`], [`Audit`], [`ExportEvidence`].
//! - `services`: [`ListServices`], [`AddService`], [`RemoveService`].
//! - `access`: [`ListAccess`], [`GrantAccess`], [`RevokeAccess`].
//! - `suppressions`: [`ListSuppressions`], [`AddSuppression`], [`RemoveSuppression`].
//! - `client_auth`: [`ListClientAuth`], [`SetClientAuth`], [`RemoveClientAuth`].
//! - `keys`: [`ListKeys`], [`RotateKey`].
//! - `backup`: [`CreateBackup`].
//! - `operational`: [`QueryOperational`], the operational data of the exchanges.
//!
//! `/health` and `/metrics` are no operations: they need no token and answer monitors, not
//! operators.

mod access;
mod backup;
mod client_auth;
mod keys;
mod operational;
mod services;
mod status;
mod suppressions;

use std::future::Future;

use super::{Admin, AdminError};

pub use runtime::admin::{
    Added, Endpoint, Input, JsonReply, OpInfo, PathError, PathParams, PlainEndpoint, Reply,
};

pub use access::{GrantAccess, ListAccess, RevokeAccess};
pub use backup::CreateBackup;
pub use client_auth::{ListClientAuth, RemoveClientAuth, SetClientAuth};
pub use keys::{ListKeys, RotateKey};
pub use operational::QueryOperational;
pub use services::{AddService, ListServices, RemoveService};
pub use status::{
    Audit, ExportEvidence, GlobalconfStatus, Refresh, RefreshGlobalconf, RenewTls, ServerStatus,
    Status,
};
pub use suppressions::{AddSuppression, ListSuppressions, RemoveSuppression};

runtime::admin_ops! {
    /// Calls `visitor` once for every admin operation. This list is the admin API: its routes are
    /// registered from it, and the tests check the CLI against it.
    AdminOp:
    Status,
    RefreshGlobalconf,
    RenewTls,
    ListServices,
    AddService,
    RemoveService,
    ListAccess,
    GrantAccess,
    RevokeAccess,
    ListSuppressions,
    AddSuppression,
    RemoveSuppression,
    ListClientAuth,
    SetClientAuth,
    RemoveClientAuth,
    ListKeys,
    RotateKey,
    Audit,
    ExportEvidence,
    CreateBackup,
    QueryOperational,
}

/// One admin operation: its request (`Self`) and where it lives in the admin API (its
/// [`Endpoint`]: method, path, input, answer with its status), what it does, and how its answer
/// reads as text.
pub trait AdminOp: Endpoint {
    /// Runs the operation on the server.
    fn apply(
        self,
        admin: &Admin,
    ) -> impl Future<Output = Result<Self::Response, AdminError>> + Send;
    /// The answer as the CLI prints it without `--json` (on stdout, lines ending in `\n`).
    fn text(&self, response: &Self::Response) -> String;
}

impl From<PathError> for AdminError {
    fn from(e: PathError) -> Self {
        AdminError::BadRequest(e.to_string())
    }
}

impl JsonReply for ServerStatus {}
impl JsonReply for Refresh {}
impl JsonReply for crate::renewal::TlsStatus {}
impl JsonReply for crate::rotation::Rotation {}

#[cfg(test)]
mod tests {
    use globalconf::ServiceId;

    use super::*;

    runtime::admin_op_table_tests!(AdminOp, ops: 21, prefix: "/v1/", shapes: ops_without_input_take_a_unit_body_and_json_is_posted);

    #[test]
    fn service_ids_in_the_path_name_what_failed() {
        let e = AdminError::from(
            <ServiceId as PathParams>::parse(&["JP/MUN/not-a-service".into()]).unwrap_err(),
        );
        assert!(matches!(e, AdminError::BadRequest(ref m) if m.starts_with("service id: ")));
        let id = <ServiceId as PathParams>::parse(&["/JP/MUN/131016/records/r".into()]).unwrap();
        assert_eq!(id.to_string(), "JP/MUN/131016/records/r");
    }
}
