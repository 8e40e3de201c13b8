//! The wire of an admin API, written once for the registry and the security server: what an
//! operation looks like on HTTP ([`Endpoint`]: method, path, where its input travels, its
//! [`Reply`]), the generic axum handler ([`route`], [`handle`]), the generic client call
//! ([`Client::call`]) and the checks every operation table must pass (`checks`, with the
//! `testing` feature).
//!
//! What an operation does, which error kinds a server answers with and how the CLI prints an
//! answer stay in each binary's crate.
//!
//! # Why one long file
//! The wire description of an operation, the handler that reads it and the client that writes
//! it are the two ends of one contract; kept together, a change to one shows in the other. The
//! checks of an operation table (feature `testing`) follow them.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use http::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{ClientError, HttpClient};

/// One admin operation as it travels: its request (`Self`), where it lives in the admin API and
/// what it answers. What it does is the binary's own trait over this one.
pub trait Endpoint: fmt::Debug + Send + Sized + 'static {
    /// The method of its endpoint.
    const METHOD: Method;
    /// Its path, with one `{name}` (or `{*name}`) placeholder per identifier of
    /// [`Endpoint::Path`], in order (the syntax of axum's routes).
    const PATH: &'static str;
    /// The status of a successful answer, unless its [`Reply`] chooses one ([`Added`], `()`).
    const STATUS: StatusCode = StatusCode::OK;
    /// Where [`Endpoint::Body`] travels.
    const INPUT: Input = Input::None;
    /// The identifiers in the path: `()`, one identifier, or a pair.
    type Path: PathParams;
    /// The rest of the request: a JSON body, a query string, or `()` for none.
    type Body: Serialize + DeserializeOwned + Send + 'static;
    /// The answer, with its status and body.
    type Response: Reply;

    /// The request from what the admin API received.
    fn from_wire(path: Self::Path, body: Self::Body) -> Self;
    /// The request as the admin API receives it.
    fn to_wire(&self) -> (Self::Path, Self::Body);
}

/// An operation without identifiers in its path whose request is itself: a unit struct (no
/// input; it reads from `null`) or a query. Its method, path, status, input and answer say all,
/// and its [`Endpoint`] follows from them.
pub trait PlainEndpoint:
    Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static
{
    /// [`Endpoint::METHOD`].
    const METHOD: Method;
    /// [`Endpoint::PATH`].
    const PATH: &'static str;
    /// [`Endpoint::STATUS`].
    const STATUS: StatusCode = StatusCode::OK;
    /// [`Endpoint::INPUT`]: `None` or `Query`.
    const INPUT: Input = Input::None;
    /// [`Endpoint::Response`].
    type Response: Reply;
}

impl<T: PlainEndpoint> Endpoint for T {
    const METHOD: Method = <T as PlainEndpoint>::METHOD;
    const PATH: &'static str = <T as PlainEndpoint>::PATH;
    const STATUS: StatusCode = <T as PlainEndpoint>::STATUS;
    const INPUT: Input = <T as PlainEndpoint>::INPUT;
    type Path = ();
    type Body = T;
    type Response = <T as PlainEndpoint>::Response;

    fn from_wire((): (), request: T) -> Self {
        request
    }
    fn to_wire(&self) -> ((), T) {
        ((), self.clone())
    }
}

/// Where an operation's [`Endpoint::Body`] travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// No input besides the path; `Body` is `()` and a sent body is ignored.
    None,
    /// A JSON body (`Content-Type: application/json`).
    Json,
    /// The query string.
    Query,
}

/// An identifier in the path that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The route has fewer placeholders than the operation has identifiers.
    #[error("the route lacks a {0} placeholder")]
    Missing(&'static str),
    /// What failed (`member id`) and why.
    #[error("{what}: {message}")]
    Invalid { what: &'static str, message: String },
}

/// The identifiers of a path, parsed from its percent-decoded segments.
pub trait PathParams: Sized + Send + 'static {
    const COUNT: usize;
    /// `raw` holds [`PathParams::COUNT`] segments, in the order of the placeholders.
    fn parse(raw: &[String]) -> Result<Self, PathError>;
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

fn segment<T: PathSegment>(raw: Option<&String>) -> Result<T, PathError> {
    let raw = raw.ok_or(PathError::Missing(T::WHAT))?;
    T::parse_segment(raw).map_err(|message| PathError::Invalid {
        what: T::WHAT,
        message,
    })
}

impl PathParams for () {
    const COUNT: usize = 0;
    fn parse(_: &[String]) -> Result<Self, PathError> {
        Ok(())
    }
    fn segments(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<A: PathSegment> PathParams for A {
    const COUNT: usize = 1;
    fn parse(raw: &[String]) -> Result<Self, PathError> {
        segment(raw.first())
    }
    fn segments(&self) -> Vec<String> {
        vec![self.to_segment()]
    }
}

impl<A: PathSegment, B: PathSegment> PathParams for (A, B) {
    const COUNT: usize = 2;
    fn parse(raw: &[String]) -> Result<Self, PathError> {
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
    globalconf::MemberId => "member id",
    globalconf::SubsystemId => "subsystem id",
    globalconf::GlobalGroupId => "group id",
    globalconf::SecurityServerId => "server id",
    globalconf::InstanceId => "instance id",
}

impl PathSegment for certs::KeyId {
    const WHAT: &'static str = "key id";
    fn parse_segment(raw: &str) -> Result<Self, String> {
        certs::KeyId::parse(raw).map_err(|e| e.to_string())
    }
    fn to_segment(&self) -> String {
        self.to_string()
    }
}

impl PathSegment for globalconf::ServiceId {
    const WHAT: &'static str = "service id";
    /// A `{*id}` route also takes an identifier whose `/` were sent unencoded.
    fn parse_segment(raw: &str) -> Result<Self, String> {
        raw.trim_start_matches('/')
            .parse()
            .map_err(|e| format!("{e}"))
    }
    fn to_segment(&self) -> String {
        self.to_string()
    }
}

/// An operation's answer: its status and body on the server, read back from them by the client.
pub trait Reply: Sized + Send + 'static {
    /// The answer as the admin API sends it; `status` is the operation's [`Endpoint::STATUS`].
    fn render(self, status: StatusCode) -> Response;
    /// The answer from a success status and its body.
    fn from_answer(status: StatusCode, body: &[u8]) -> Result<Self, String>;
    /// The JSON body (`null` when there is none).
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
}

/// A reply that is a JSON body with the operation's status: implement this (no items) for an
/// answer type to make it a [`Reply`].
pub trait JsonReply: Serialize + DeserializeOwned + Send + 'static {}

fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.is_empty() { &b"null"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| format!("cannot decode the answer: {e}"))
}

impl<T: JsonReply> Reply for T {
    fn render(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
    fn from_answer(_: StatusCode, body: &[u8]) -> Result<Self, String> {
        from_json(body)
    }
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> JsonReply for Vec<T> {}

/// 204 No Content.
impl Reply for () {
    fn render(self, _: StatusCode) -> Response {
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
    fn render(self, _: StatusCode) -> Response {
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
    fn render(self, _: StatusCode) -> Response {
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

/// One row of an admin API's table.
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
    pub fn of<Op: Endpoint>() -> Self {
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

/// A binary's list of admin operations, bound by its own operation trait (`AdminOp: Endpoint`):
/// makes the visitor trait `OpVisitor` (`visit::<Op>()` once per operation), `for_each_op`
/// (with the given doc), `table()` (an [`OpInfo`] per operation, in order) and
/// `impl OpVisitor for Vec<OpInfo>`.
#[macro_export]
macro_rules! admin_ops {
    ($(#[$doc:meta])* $op_trait:ident: $($op:ty),+ $(,)?) => {
        /// Something done once per operation type (see [`for_each_op`]).
        pub trait OpVisitor {
            fn visit<Op: $op_trait>(&mut self);
        }

        $(#[$doc])*
        pub fn for_each_op(visitor: &mut impl OpVisitor) {
            $(visitor.visit::<$op>();)+
        }

        /// Every admin operation, in the order of [`for_each_op`].
        pub fn table() -> Vec<$crate::admin::OpInfo> {
            let mut table = Vec::new();
            for_each_op(&mut table);
            table
        }

        impl OpVisitor for Vec<$crate::admin::OpInfo> {
            fn visit<Op: $op_trait>(&mut self) {
                self.push($crate::admin::OpInfo::of::<Op>());
            }
        }
    };
}

/// The tests of a table made by [`admin_ops!`], inside a test module that sees `table`,
/// `for_each_op`, `OpVisitor` and the operation trait: `ops` operations, all paths below
/// `prefix`, and the test of their wire shapes named `shapes`
/// ([`checks::own_method_and_path`], [`checks::placeholders_match_the_path_identifiers`],
/// [`checks::wire_shape`]).
#[cfg(feature = "testing")]
#[macro_export]
macro_rules! admin_op_table_tests {
    ($op_trait:ident, ops: $count:expr, prefix: $prefix:expr, shapes: $shapes:ident) => {
        #[test]
        fn every_op_has_its_own_method_and_path() {
            let table = table();
            assert_eq!(table.len(), $count);
            $crate::admin::checks::own_method_and_path(&table, $prefix);
        }

        #[test]
        fn placeholders_match_the_path_identifiers() {
            $crate::admin::checks::placeholders_match_the_path_identifiers(&table());
        }

        #[test]
        fn $shapes() {
            struct Check;
            impl OpVisitor for Check {
                fn visit<Op: $op_trait>(&mut self) {
                    $crate::admin::checks::wire_shape::<Op>();
                }
            }
            for_each_op(&mut Check);
        }
    };
}

/// `router` with the route of `Op` served by `handler` (which calls [`handle`]).
pub fn route<Op, S, H, T>(router: Router<S>, handler: H) -> Router<S>
where
    Op: Endpoint,
    S: Clone + Send + Sync + 'static,
    H: Handler<T, S>,
    T: 'static,
{
    let Ok(filter) = MethodFilter::try_from(Op::METHOD) else {
        tracing::error!(method = %Op::METHOD, path = Op::PATH, "no route for this method");
        return router;
    };
    router.route(Op::PATH, on(filter, handler))
}

/// A request the generic handler could not read; each server says how it refuses it.
#[derive(Debug)]
pub enum Refusal {
    /// An identifier in the path.
    Path(PathError),
    /// The query string, with axum's own answer.
    Query(QueryRejection),
    /// The JSON body: axum's text of what is wrong.
    Json(String),
    /// An operation without input whose body type is not `()` (`checks::wire_shape` prevents it).
    NoInput(String),
}

/// The handler of every operation: reads the request of `Op` (path identifiers first, then the
/// query or the JSON body), runs `apply`, and answers with the [`Reply`] or the error. A path
/// the extractor cannot read gets axum's own answer; everything else unreadable goes to `refuse`.
pub async fn handle<Op, E, Fut>(
    request: Request,
    refuse: fn(Refusal) -> Response,
    apply: impl FnOnce(Op) -> Fut,
) -> Response
where
    Op: Endpoint,
    E: IntoResponse,
    Fut: Future<Output = Result<Op::Response, E>>,
{
    let op = match read::<Op>(request, refuse).await {
        Ok(op) => op,
        Err(refusal) => return refusal,
    };
    match apply(op).await {
        Ok(answer) => answer.render(Op::STATUS),
        Err(e) => e.into_response(),
    }
}

async fn read<Op: Endpoint>(
    request: Request,
    refuse: fn(Refusal) -> Response,
) -> Result<Op, Response> {
    let (mut parts, body) = request.into_parts();
    let raw = if <Op::Path as PathParams>::COUNT == 0 {
        Vec::new()
    } else {
        let Path(raw) = Path::<Vec<String>>::from_request_parts(&mut parts, &())
            .await
            .map_err(IntoResponse::into_response)?;
        raw
    };
    let path = Op::Path::parse(&raw).map_err(|e| refuse(Refusal::Path(e)))?;
    let body = match Op::INPUT {
        Input::None => serde_json::from_value(serde_json::Value::Null).map_err(|e| {
            refuse(Refusal::NoInput(format!(
                "{} takes no input: {e}",
                Op::PATH
            )))
        })?,
        Input::Query => {
            let Query(query) = Query::<Op::Body>::from_request_parts(&mut parts, &())
                .await
                .map_err(|r| refuse(Refusal::Query(r)))?;
            query
        }
        Input::Json => {
            let Json(body) = Json::<Op::Body>::from_request(Request::from_parts(parts, body), &())
                .await
                .map_err(|r| refuse(Refusal::Json(r.body_text())))?;
            body
        }
    };
    Ok(Op::from_wire(path, body))
}

/// Why an admin call failed; `B` is the server's error body.
#[derive(Debug)]
pub enum CallError<B> {
    Transport(ClientError),
    /// The server refused with its error body.
    Refused {
        status: StatusCode,
        body: B,
    },
    /// An answer that is no admin API answer.
    Unexpected {
        status: StatusCode,
        message: String,
    },
}

/// A server's error body, and how a failed call reads with it (each CLI has its own words).
pub trait ErrorAnswer: DeserializeOwned + fmt::Debug {
    /// A refusal with this body.
    fn refused(&self, status: StatusCode) -> String;
    /// An answer that is no admin API answer.
    fn unexpected(status: StatusCode, message: &str) -> String;
}

impl<B> CallError<B> {
    /// The status of a refusal, if the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Refused { status, .. } | CallError::Unexpected { status, .. } => {
                Some(*status)
            }
            CallError::Transport(_) => None,
        }
    }
}

impl<B> From<ClientError> for CallError<B> {
    fn from(e: ClientError) -> Self {
        CallError::Transport(e)
    }
}

impl<B: ErrorAnswer> fmt::Display for CallError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "{e}"),
            CallError::Refused { status, body } => f.write_str(&body.refused(*status)),
            CallError::Unexpected { status, message } => {
                f.write_str(&B::unexpected(*status, message))
            }
        }
    }
}

impl<B: ErrorAnswer> std::error::Error for CallError<B> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

/// An admin API client: base URL (up to where the operations' paths begin) plus bearer token.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: HttpClient,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `base` like `http://127.0.0.1:8090`, or `http://127.0.0.1:41002/admin/v1`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http: HttpClient::plain(),
        }
    }

    /// Waits this long for an answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.http = self.http.with_timeout(timeout);
        self
    }

    /// Sends one operation and reads its answer, or the error body `B` of a refusal.
    pub async fn call<Op: Endpoint, B: ErrorAnswer>(
        &self,
        op: &Op,
    ) -> Result<Op::Response, CallError<B>> {
        let (path, input) = op.to_wire();
        let mut url = format!("{}{}", self.base, fill_path(Op::PATH, &path.segments()));
        let body = match Op::INPUT {
            Input::None => None,
            Input::Query => {
                url += &query_string(&input).map_err(encoding)?;
                None
            }
            Input::Json => Some(serde_json::to_vec(&input).map_err(encoding)?),
        };
        let response = self
            .http
            .send(
                Op::METHOD,
                &url,
                Some(&self.token),
                body.map(|b| ("application/json", b.into())),
            )
            .await
            .map_err(CallError::Transport)?;
        let status = response.status;
        if !status.is_success() {
            return Err(match response.json::<B>() {
                Ok(body) => CallError::Refused { status, body },
                Err(_) => CallError::Unexpected {
                    status,
                    message: response.text(),
                },
            });
        }
        Op::Response::from_answer(status, &response.body)
            .map_err(|message| CallError::Unexpected { status, message })
    }
}

fn encoding<B>(e: serde_json::Error) -> CallError<B> {
    CallError::Transport(ClientError::Request(format!("cannot encode request: {e}")))
}

/// Percent-encodes an identifier as one URL path segment (RFC 3986 unreserved characters stay,
/// so an identifier's `/` becomes `%2F` and its `?` becomes `%3F`).
pub fn path_segment(id: &str) -> String {
    globalconf::id::encode_text(id)
}

/// `template` (`/members/{id}/keys`) with its placeholders replaced, in order, by the
/// percent-encoded `segments`.
pub fn fill_path(template: &str, segments: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut segments = segments.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        if let Some(segment) = segments.next() {
            out.push_str(&path_segment(segment));
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// `?name=value&...` for the non-null fields of a query type (empty if there are none).
pub fn query_string<T: Serialize>(query: &T) -> Result<String, serde_json::Error> {
    let serde_json::Value::Object(fields) = serde_json::to_value(query)? else {
        return Ok(String::new());
    };
    let pairs: Vec<String> = fields
        .iter()
        .filter_map(|(name, value)| {
            let value = match value {
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(format!("{}={}", path_segment(name), path_segment(&value)))
        })
        .collect();
    Ok(if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    })
}

/// The checks every admin API's table must pass, for the binaries' tests (they panic).
#[cfg(feature = "testing")]
pub mod checks {
    use std::collections::HashSet;

    use axum::Router;
    use axum::body::Body;
    use http::{Method, StatusCode, header};
    use tower::ServiceExt as _;

    use super::{Endpoint, Input, OpInfo, Reply};

    /// Sends `body` as JSON with the bearer `token` to `app`; the status and the answer's text.
    pub async fn send(
        app: &Router,
        token: &str,
        method: &Method,
        uri: &str,
        body: &'static str,
    ) -> (u16, String) {
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a valid request");
        let response = app.clone().oneshot(request).await.expect("an answer");
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("an answer body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends a request to the route of `op` (below `prefix`, every placeholder filled with `x`)
    /// and checks that its own handler, not the fallback, answered: the status and the text.
    pub async fn routed(
        app: &Router,
        token: &str,
        prefix: &str,
        body: &'static str,
        op: &OpInfo,
    ) -> (u16, String) {
        let mut path = String::new();
        let mut rest = op.path;
        while let Some(open) = rest.find('{') {
            path.push_str(&rest[..open]);
            path.push('x');
            rest = rest[open..].split_once('}').map_or("", |(_, r)| r);
        }
        path.push_str(rest);
        let (status, body) = send(app, token, &op.method, &format!("{prefix}{path}"), body).await;
        assert!(
            status != 405 && !body.contains("no such endpoint"),
            "{} {} is not routed: {status} {body}",
            op.method,
            op.path
        );
        (status, body)
    }

    /// Every operation has its own method and path, below `prefix`, and its own name.
    pub fn own_method_and_path(table: &[OpInfo], prefix: &str) {
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        for op in table {
            assert!(
                seen.insert((op.method.clone(), op.path)),
                "{} {} is listed twice",
                op.method,
                op.path
            );
            assert!(names.insert(op.name), "{} is listed twice", op.name);
            assert!(op.path.starts_with(prefix), "{}", op.name);
        }
    }

    /// A path has one placeholder per identifier of the operation.
    pub fn placeholders_match_the_path_identifiers(table: &[OpInfo]) {
        for op in table {
            let placeholders = op.path.matches('{').count();
            assert_eq!(placeholders, op.path_params, "{}", op.name);
            assert_eq!(op.path.matches('}').count(), placeholders, "{}", op.name);
        }
    }

    /// An operation without input takes a unit body, one answering `204` has no answer, and
    /// JSON bodies are POSTed.
    pub fn wire_shape<Op: Endpoint>() {
        let name = std::any::type_name::<Op>();
        if Op::INPUT == Input::None {
            assert!(
                serde_json::from_value::<Op::Body>(serde_json::Value::Null).is_ok(),
                "{name} has no input but a body type"
            );
        }
        if Op::STATUS == StatusCode::NO_CONTENT {
            assert!(
                Op::Response::from_answer(StatusCode::NO_CONTENT, b"").is_ok(),
                "{name} answers 204 but has a response type"
            );
        }
        if Op::INPUT == Input::Json {
            assert!(Op::METHOD == Method::POST, "{name}: JSON bodies are POSTed");
        }
    }

    /// The leaf commands of a CLI (`["member", "add"]`), to check each admin command names an
    /// operation.
    pub fn command_leaves(cmd: &clap::Command) -> Vec<Vec<String>> {
        fn leaves(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
            if cmd.get_subcommands().next().is_none() {
                out.push(prefix);
                return;
            }
            for sub in cmd.get_subcommands() {
                let mut path = prefix.clone();
                path.push(sub.get_name().to_owned());
                leaves(sub, path, out);
            }
        }
        let mut out = Vec::new();
        leaves(cmd, Vec::new(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_answers_201_only_when_new() {
        let new = Added {
            new: true,
            value: vec![1],
        };
        assert_eq!(new.render(StatusCode::OK).status(), StatusCode::CREATED);
        let old = Added {
            new: false,
            value: vec![1],
        };
        assert_eq!(old.render(StatusCode::OK).status(), StatusCode::OK);
        let read = Added::<Vec<u8>>::from_answer(StatusCode::OK, b"[1]").unwrap();
        assert_eq!((read.new, read.value), (false, vec![1]));
        assert!(
            Added::<Vec<u8>>::from_answer(StatusCode::CREATED, b"[1]")
                .unwrap()
                .new
        );
    }

    #[test]
    fn json_replies_carry_the_operation_status() {
        let created = vec![1u8].render(StatusCode::CREATED);
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(().render(StatusCode::OK).status(), StatusCode::NO_CONTENT);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            fill_path("/x/{id}", &["JP/GOV/a?b c".to_owned()]),
            "/x/JP%2FGOV%2Fa%3Fb%20c"
        );
        assert_eq!(fill_path("/status", &[]), "/status");
        assert_eq!(path_segment("JP/GOV/a?b c"), "JP%2FGOV%2Fa%3Fb%20c");
    }
}
