//! The security server's admin operations, each described once. An operation is a request type
//! with an [`Endpoint`] impl, where it lives in the admin API (method, path, where its input
//! travels), its answer (a [`Reply`], which knows its status and body), and an [`AdminOp`]
//! impl: what it does ([`AdminOp::apply`], over [`Admin`]) and how the CLI shows the answer as
//! text. From it come
//! the route and handler ([`Admin::router`]), [`super::AdminClient::call`] and the CLI's
//! printing. [`for_each_op`] lists them all.
//!
//! - `status`: [`Status`], [`RefreshGlobalconf`], [`Audit`], [`ExportEvidence`].
//! - `services`: [`ListServices`], [`AddService`], [`RemoveService`].
//! - `access`: [`ListAccess`], [`GrantAccess`], [`RevokeAccess`].
//! - `suppressions`: [`ListSuppressions`], [`AddSuppression`], [`RemoveSuppression`].
//!
//! `/health` and `/metrics` are no operations: they need no token and answer monitors, not
//! operators.

mod access;
mod services;
mod status;
mod suppressions;

use std::future::Future;

use serde::Serialize;

use super::{Admin, AdminError};

pub use runtime::admin::{
    Added, Endpoint, Input, JsonReply, OpInfo, PathError, PathParams, Reply, UnitEndpoint,
};

pub use access::{GrantAccess, ListAccess, RevokeAccess};
pub use services::{AddService, ListServices, RemoveService};
pub use status::{
    Audit, ExportEvidence, GlobalconfStatus, Refresh, RefreshGlobalconf, ServerStatus, Status,
};
pub use suppressions::{AddSuppression, ListSuppressions, RemoveSuppression};

/// Calls `visitor` once for every admin operation. This list is the admin API: its routes are
/// registered from it, and the tests check the CLI against it.
pub fn for_each_op(visitor: &mut impl OpVisitor) {
    visitor.visit::<Status>();
    visitor.visit::<RefreshGlobalconf>();
    visitor.visit::<ListServices>();
    visitor.visit::<AddService>();
    visitor.visit::<RemoveService>();
    visitor.visit::<ListAccess>();
    visitor.visit::<GrantAccess>();
    visitor.visit::<RevokeAccess>();
    visitor.visit::<ListSuppressions>();
    visitor.visit::<AddSuppression>();
    visitor.visit::<RemoveSuppression>();
    visitor.visit::<Audit>();
    visitor.visit::<ExportEvidence>();
}

/// Something done once per operation type (see [`for_each_op`]).
pub trait OpVisitor {
    fn visit<Op: AdminOp>(&mut self);
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

/// A JSON answer as the CLI prints it whatever `--json` says (`status`, `refresh-globalconf`).
fn pretty<T: Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(text) => text + "\n",
        Err(e) => format!("cannot show the answer: {e}\n"),
    }
}

/// Every admin operation, in the order of [`for_each_op`].
pub fn table() -> Vec<OpInfo> {
    let mut table = Vec::new();
    for_each_op(&mut table);
    table
}

impl OpVisitor for Vec<OpInfo> {
    fn visit<Op: AdminOp>(&mut self) {
        self.push(OpInfo::of::<Op>());
    }
}

#[cfg(test)]
mod tests {
    use globalconf::ServiceId;
    use runtime::admin::checks;

    use super::*;

    #[test]
    fn every_op_has_its_own_method_and_path() {
        let table = table();
        assert_eq!(table.len(), 13);
        checks::own_method_and_path(&table, "/v1/");
    }

    #[test]
    fn placeholders_match_the_path_identifiers() {
        checks::placeholders_match_the_path_identifiers(&table());
    }

    #[test]
    fn ops_without_input_take_a_unit_body_and_json_is_posted() {
        struct Check;
        impl OpVisitor for Check {
            fn visit<Op: AdminOp>(&mut self) {
                checks::wire_shape::<Op>();
            }
        }
        for_each_op(&mut Check);
    }

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
