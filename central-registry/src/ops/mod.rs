//! The registry's admin operations, each described once. An operation is a request type with an
//! [`AdminOp`] impl in the module of its domain; that impl says where it lives in the admin API
//! (method, path, success status, where its input travels), how it changes the registry
//! ([`AdminOp::apply`], over [`Core`]), and how the CLI shows its answer as text. From it come
//! the admin API route and handler (`admin_api`), [`crate::AdminClient::call`],
//! [`crate::RegistryAdmin::run`], and the CLI's printing. [`for_each_op`] lists them all.
//!
//! Nothing here is async: the operations run under the registry's lock on a blocking thread.
//!
//! - `machine`: [`Core`], the state and its database; `execute` commits one operation's changes.
//! - `status`: the served configuration: [`Status`], [`Publish`], [`Audit`].
//! - `members`: [`ListMembers`], [`AddMember`], [`RemoveMember`] (with all the member owns).
//! - `subsystems`: [`ListSubsystems`], [`AddSubsystem`], [`RemoveSubsystem`].
//! - `groups`: global groups and their members.
//! - `servers`: approved security servers and the subsystems they host.
//! - `keys`: member signing keys: list, add, retire, remove.
//! - `enrollment`: enrolment requests (submitted on the public endpoint), decisions, tokens.
//! - [`views`]: the JSON views the operations answer with.

mod enrollment;
mod groups;
mod keys;
mod machine;
mod members;
mod servers;
mod status;
mod subsystems;
pub mod views;

use std::fmt;

use certs::KeyId;
use globalconf::{GlobalGroupId, MemberId, SecurityServerId, SubsystemId};
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::RegistryError;

pub use enrollment::{
    ApproveEnrollment, GetEnrollment, IssueToken, ListEnrollments, RejectEnrollment,
};
pub use groups::{AddGroup, AddGroupMember, ListGroups, RemoveGroup, RemoveGroupMember};
pub use keys::{AddKey, ListKeys, NewKey, RemoveKey, RetireKey, Retirement};
pub use machine::Core;
pub(crate) use machine::{audit, not_found};
pub use members::{AddMember, ListMembers, RemoveMember};
pub use servers::{AddHostedSubsystem, ListServers, RemoveHostedSubsystem, RemoveServer};
pub use status::{Audit, Publish, Status};
pub use subsystems::{AddSubsystem, ListSubsystems, RemoveSubsystem};

/// Calls `visitor` once for every admin operation. This list is the admin API: its routes are
/// registered from it, and the tests check the CLI against it.
pub fn for_each_op(visitor: &mut impl OpVisitor) {
    visitor.visit::<Status>();
    visitor.visit::<Publish>();
    visitor.visit::<Audit>();
    visitor.visit::<ListMembers>();
    visitor.visit::<AddMember>();
    visitor.visit::<RemoveMember>();
    visitor.visit::<ListKeys>();
    visitor.visit::<AddKey>();
    visitor.visit::<RetireKey>();
    visitor.visit::<RemoveKey>();
    visitor.visit::<ListSubsystems>();
    visitor.visit::<AddSubsystem>();
    visitor.visit::<RemoveSubsystem>();
    visitor.visit::<ListGroups>();
    visitor.visit::<AddGroup>();
    visitor.visit::<RemoveGroup>();
    visitor.visit::<AddGroupMember>();
    visitor.visit::<RemoveGroupMember>();
    visitor.visit::<ListEnrollments>();
    visitor.visit::<GetEnrollment>();
    visitor.visit::<ApproveEnrollment>();
    visitor.visit::<RejectEnrollment>();
    visitor.visit::<IssueToken>();
    visitor.visit::<ListServers>();
    visitor.visit::<RemoveServer>();
    visitor.visit::<AddHostedSubsystem>();
    visitor.visit::<RemoveHostedSubsystem>();
}

/// Something done once per operation type (see [`for_each_op`]).
pub trait OpVisitor {
    fn visit<Op: AdminOp>(&mut self);
}

/// One admin operation: its request (`Self`), where it lives in the admin API, what it does,
/// and how its answer reads as text.
pub trait AdminOp: fmt::Debug + Send + Sized + 'static {
    /// The method of its endpoint.
    const METHOD: Method;
    /// Its path below `/admin/v1`, with one `{name}` placeholder per identifier of
    /// [`AdminOp::Path`], in order (the syntax of axum's routes).
    const PATH: &'static str;
    /// The status of a successful answer. A `204 No Content` answer has no body.
    const STATUS: StatusCode = StatusCode::OK;
    /// Where [`AdminOp::Body`] travels.
    const INPUT: Input = Input::None;
    /// The identifiers in the path: `()`, one identifier, or a pair.
    type Path: PathParams;
    /// The rest of the request: a JSON body, a query string, or `()` for none.
    type Body: Serialize + DeserializeOwned + Send + 'static;
    /// The JSON answer; `()` when the status is `204 No Content`.
    type Response: Serialize + DeserializeOwned + Send + 'static;

    /// The request from what the admin API received.
    fn from_wire(path: Self::Path, body: Self::Body) -> Self;
    /// The request as the admin API receives it.
    fn to_wire(&self) -> (Self::Path, Self::Body);
    /// Runs the operation at `now` (Unix seconds); changes go through `Core::execute`, one transaction.
    fn apply(self, core: &mut Core, now: i64) -> Result<Self::Response, RegistryError>;
    /// The answer as the CLI prints it without `--json` (on stdout, lines ending in `\n`).
    fn text(&self, response: &Self::Response) -> String;
    /// A note the CLI prints on stderr after the text (not with `--json`).
    fn notice(&self, _response: &Self::Response) -> Option<String> {
        None
    }
}

/// Where an operation's [`AdminOp::Body`] travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// No input besides the path; `Body` is `()` and a sent body is ignored.
    None,
    /// A JSON body (`Content-Type: application/json`).
    Json,
    /// The query string.
    Query,
}

/// The identifiers of a path, parsed from its percent-decoded segments.
pub trait PathParams: Sized + Send + 'static {
    const COUNT: usize;
    /// `raw` holds [`PathParams::COUNT`] segments, in the order of the placeholders.
    fn parse(raw: &[String]) -> Result<Self, RegistryError>;
    /// The segments to put in the placeholders, not yet percent-encoded.
    fn segments(&self) -> Vec<String>;
}

/// An identifier that can stand in one path segment.
pub trait PathSegment: Sized + Send + 'static {
    /// What a parse error calls it (`member id: ...`).
    const WHAT: &'static str;
    fn parse_segment(raw: &str) -> Result<Self, String>;
    fn to_segment(&self) -> String;
}

fn segment<T: PathSegment>(raw: Option<&String>) -> Result<T, RegistryError> {
    let raw = raw.ok_or_else(|| {
        RegistryError::Internal(format!("the route lacks a {} placeholder", T::WHAT))
    })?;
    T::parse_segment(raw).map_err(|e| RegistryError::BadRequest(format!("{}: {e}", T::WHAT)))
}

impl PathParams for () {
    const COUNT: usize = 0;
    fn parse(_: &[String]) -> Result<Self, RegistryError> {
        Ok(())
    }
    fn segments(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<A: PathSegment> PathParams for A {
    const COUNT: usize = 1;
    fn parse(raw: &[String]) -> Result<Self, RegistryError> {
        segment(raw.first())
    }
    fn segments(&self) -> Vec<String> {
        vec![self.to_segment()]
    }
}

impl<A: PathSegment, B: PathSegment> PathParams for (A, B) {
    const COUNT: usize = 2;
    fn parse(raw: &[String]) -> Result<Self, RegistryError> {
        Ok((segment(raw.first())?, segment(raw.get(1))?))
    }
    fn segments(&self) -> Vec<String> {
        vec![self.0.to_segment(), self.1.to_segment()]
    }
}

macro_rules! path_segment_from_str {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl PathSegment for $ty {
            const WHAT: &'static str = $what;
            fn parse_segment(raw: &str) -> Result<Self, String> {
                raw.parse().map_err(|e| format!("{e}"))
            }
            fn to_segment(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

path_segment_from_str! {
    MemberId => "member id",
    SubsystemId => "subsystem id",
    GlobalGroupId => "group id",
    SecurityServerId => "server id",
}

impl PathSegment for KeyId {
    const WHAT: &'static str = "key id";
    fn parse_segment(raw: &str) -> Result<Self, String> {
        KeyId::parse(raw).map_err(|e| e.to_string())
    }
    fn to_segment(&self) -> String {
        self.to_string()
    }
}

/// One row of the admin API's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpInfo {
    /// The request type's name (`AddMember`).
    pub name: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub status: StatusCode,
    pub input: Input,
    pub path_params: usize,
}

impl OpInfo {
    pub fn of<Op: AdminOp>() -> Self {
        let full = std::any::type_name::<Op>();
        Self {
            name: full.rsplit("::").next().unwrap_or(full),
            method: Op::METHOD,
            path: Op::PATH,
            status: Op::STATUS,
            input: Op::INPUT,
            path_params: <Op::Path as PathParams>::COUNT,
        }
    }
}

/// Every admin operation, in the order of [`for_each_op`].
pub fn table() -> Vec<OpInfo> {
    struct Collect(Vec<OpInfo>);
    impl OpVisitor for Collect {
        fn visit<Op: AdminOp>(&mut self) {
            self.0.push(OpInfo::of::<Op>());
        }
    }
    let mut collect = Collect(Vec::new());
    for_each_op(&mut collect);
    collect.0
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_op_has_its_own_method_and_path() {
        let table = table();
        assert_eq!(table.len(), 27);
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        for op in &table {
            assert!(
                seen.insert((op.method.clone(), op.path)),
                "{} {} is listed twice",
                op.method,
                op.path
            );
            assert!(names.insert(op.name), "{} is listed twice", op.name);
            assert!(op.path.starts_with('/'), "{}", op.name);
        }
    }

    #[test]
    fn placeholders_match_the_path_identifiers() {
        for op in table() {
            let placeholders = op.path.matches('{').count();
            assert_eq!(placeholders, op.path_params, "{}", op.name);
            assert_eq!(op.path.matches('}').count(), placeholders, "{}", op.name);
        }
    }

    #[test]
    fn ops_without_input_take_a_unit_body_and_204_has_no_answer() {
        struct Check;
        impl OpVisitor for Check {
            fn visit<Op: AdminOp>(&mut self) {
                let name = std::any::type_name::<Op>();
                if Op::INPUT == Input::None {
                    assert!(
                        serde_json::from_value::<Op::Body>(serde_json::Value::Null).is_ok(),
                        "{name} has no input but a body type"
                    );
                }
                if Op::STATUS == StatusCode::NO_CONTENT {
                    assert!(
                        serde_json::from_value::<Op::Response>(serde_json::Value::Null).is_ok(),
                        "{name} answers 204 but has a response type"
                    );
                }
                if Op::INPUT == Input::Json {
                    assert!(Op::METHOD == Method::POST, "{name}: JSON bodies are POSTed");
                }
            }
        }
        for_each_op(&mut Check);
    }

    #[test]
    fn path_identifiers_name_what_failed_to_parse() {
        let e = <(MemberId, KeyId)>::parse(&["JP/GOV/x".into(), "zz".into()]).unwrap_err();
        assert!(e.to_string().starts_with("key id: "), "{e}");
        let e = <SubsystemId as PathParams>::parse(&["JP/GOV".into()]).unwrap_err();
        assert!(e.to_string().starts_with("subsystem id: "), "{e}");
        assert!(matches!(e, RegistryError::BadRequest(_)));
    }
}
