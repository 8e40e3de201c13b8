//! The security server's admin operations, each described once. An operation is a request type
//! with an [`AdminOp`] impl: where it lives in the admin API (method, path, where its input
//! travels), its answer (a [`Reply`], which knows its status and body), what it does
//! ([`AdminOp::apply`], over [`Admin`]) and how the CLI shows the answer as text. From it come
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

use std::fmt;
use std::future::Future;

use axum::Json;
use axum::response::{IntoResponse, Response};
use globalconf::ServiceId;
use http::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Admin, AdminError};

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

/// One admin operation: its request (`Self`), where it lives in the admin API, what it does,
/// and how its answer reads as text.
pub trait AdminOp: fmt::Debug + Send + Sized + 'static {
    /// The method of its endpoint.
    const METHOD: Method;
    /// Its path, with one `{name}` (or `{*name}`) placeholder per identifier of
    /// [`AdminOp::Path`] (the syntax of axum's routes).
    const PATH: &'static str;
    /// Where [`AdminOp::Body`] travels.
    const INPUT: Input = Input::None;
    /// The identifiers in the path: `()` or one.
    type Path: PathParams;
    /// The rest of the request: a JSON body, a query string, or `()` for none.
    type Body: Serialize + DeserializeOwned + Send + 'static;
    /// The answer, with its status.
    type Response: Reply;

    /// The request from what the admin API received.
    fn from_wire(path: Self::Path, body: Self::Body) -> Self;
    /// The request as the admin API receives it.
    fn to_wire(&self) -> (Self::Path, Self::Body);
    /// Runs the operation on the server.
    fn apply(
        self,
        admin: &Admin,
    ) -> impl Future<Output = Result<Self::Response, AdminError>> + Send;
    /// The answer as the CLI prints it without `--json` (on stdout, lines ending in `\n`).
    fn text(&self, response: &Self::Response) -> String;
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
    fn parse(raw: &[String]) -> Result<Self, AdminError>;
    /// The segments to put in the placeholders, not yet percent-encoded.
    fn segments(&self) -> Vec<String>;
}

impl PathParams for () {
    const COUNT: usize = 0;
    fn parse(_: &[String]) -> Result<Self, AdminError> {
        Ok(())
    }
    fn segments(&self) -> Vec<String> {
        Vec::new()
    }
}

impl PathParams for ServiceId {
    const COUNT: usize = 1;
    /// The route's `{*id}` also takes an identifier whose `/` were sent unencoded.
    fn parse(raw: &[String]) -> Result<Self, AdminError> {
        raw.first()
            .map(String::as_str)
            .unwrap_or_default()
            .trim_start_matches('/')
            .parse()
            .map_err(|e| AdminError::BadRequest(format!("service id: {e}")))
    }
    fn segments(&self) -> Vec<String> {
        vec![self.to_string()]
    }
}

/// An operation's answer: its status and body on the server, read back from them by the client.
pub trait Reply: Sized + Send + 'static {
    /// The answer as the admin API sends it.
    fn into_response(self) -> Response;
    /// The answer from a success status and its body.
    fn from_answer(status: StatusCode, body: &[u8]) -> Result<Self, String>;
    /// What the CLI prints with `--json`: the JSON body (`null` when there is none).
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
}

fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("cannot decode the answer: {e}"))
}

/// 200 with a JSON list.
impl<T: Serialize + DeserializeOwned + Send + 'static> Reply for Vec<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
    fn from_answer(_: StatusCode, body: &[u8]) -> Result<Self, String> {
        from_json(body)
    }
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// 204 No Content.
impl Reply for () {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
    fn from_answer(_: StatusCode, _: &[u8]) -> Result<Self, String> {
        Ok(())
    }
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(serde_json::Value::Null)
    }
}

/// Something added, or already there: 201 Created when `new`, else 200, with the thing as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added<T> {
    pub new: bool,
    pub value: T,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Reply for Added<T> {
    fn into_response(self) -> Response {
        let status = if self.new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (status, Json(self.value)).into_response()
    }
    fn from_answer(status: StatusCode, body: &[u8]) -> Result<Self, String> {
        Ok(Self {
            new: status == StatusCode::CREATED,
            value: from_json(body)?,
        })
    }
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(&self.value)
    }
}

/// 200 `application/x-protobuf` (docs/evidence.md).
impl Reply for proto::v1::EvidenceBundle {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&self),
        )
            .into_response()
    }
    fn from_answer(_: StatusCode, body: &[u8]) -> Result<Self, String> {
        prost::Message::decode(body).map_err(|e| format!("cannot decode the bundle: {e}"))
    }
    /// A bundle is written to a file, never printed: this is only its size.
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(serde_json::json!({"records": self.records.len()}))
    }
}

/// 200 with a JSON object.
macro_rules! json_reply {
    ($($ty:ty),* $(,)?) => {$(
        impl Reply for $ty {
            fn into_response(self) -> Response {
                Json(self).into_response()
            }
            fn from_answer(_: StatusCode, body: &[u8]) -> Result<Self, String> {
                from_json(body)
            }
            fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
                serde_json::to_value(self)
            }
        }
    )*};
}

json_reply!(ServerStatus, Refresh);

/// A JSON answer as the CLI prints it whatever `--json` says (`status`, `refresh-globalconf`).
fn pretty<T: Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(text) => text + "\n",
        Err(e) => format!("cannot show the answer: {e}\n"),
    }
}

/// One row of the admin API's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpInfo {
    /// The request type's name (`AddService`).
    pub name: &'static str,
    pub method: Method,
    pub path: &'static str,
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
        assert_eq!(table.len(), 13);
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
            assert!(op.path.starts_with("/v1/"), "{}", op.name);
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
    fn ops_without_input_take_a_unit_body_and_json_is_posted() {
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
                if Op::INPUT == Input::Json {
                    assert!(Op::METHOD == Method::POST, "{name}: JSON bodies are POSTed");
                }
            }
        }
        for_each_op(&mut Check);
    }

    #[test]
    fn added_answers_201_only_when_new() {
        let new = Added {
            new: true,
            value: vec![1],
        };
        assert_eq!(new.into_response().status(), StatusCode::CREATED);
        let old = Added {
            new: false,
            value: vec![1],
        };
        assert_eq!(old.into_response().status(), StatusCode::OK);
        let read = Added::<Vec<u8>>::from_answer(StatusCode::OK, b"[1]").unwrap();
        assert_eq!((read.new, read.value), (false, vec![1]));
        assert!(
            Added::<Vec<u8>>::from_answer(StatusCode::CREATED, b"[1]")
                .unwrap()
                .new
        );
    }

    #[test]
    fn service_ids_in_the_path_name_what_failed() {
        let e = <ServiceId as PathParams>::parse(&["JP/MUN/not-a-service".into()]).unwrap_err();
        assert!(matches!(e, AdminError::BadRequest(ref m) if m.starts_with("service id: ")));
        let id = <ServiceId as PathParams>::parse(&["/JP/MUN/131016/records/r".into()]).unwrap();
        assert_eq!(id.to_string(), "JP/MUN/131016/records/r");
    }
}
