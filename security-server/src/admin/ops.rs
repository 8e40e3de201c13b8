//! The security server's admin operations, each described once. An operation is a request type
//! with an [`AdminOp`] impl: where it lives in the admin API (method, path, where its input
//! travels), its answer (a [`Reply`], which knows its status and body), what it does
//! ([`AdminOp::apply`], over [`Admin`]) and how the CLI shows the answer as text. From it come
//! the route and handler ([`Admin::router`]), [`super::AdminClient::call`] and the CLI's
//! printing. [`for_each_op`] lists them all.
//!
//! `/health` and `/metrics` are no operations: they need no token and answer monitors, not
//! operators.

use std::fmt;
use std::future::Future;

use axum::Json;
use axum::response::{IntoResponse, Response};
use exchange::access::Grant;
use globalconf::ServiceId;
use http::{Method, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Admin, AdminError, on_serverconf};
use crate::log::EvidenceQuery;
use crate::serverconf::{AuditEntry, ServiceEntry};
use crate::usage::{SuppressedClient, Suppression};

/// How many audit records `GET /v1/audit` returns without `limit`, and at most.
const AUDIT_DEFAULT_LIMIT: usize = 100;
const AUDIT_MAX_LIMIT: usize = 10_000;

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

/// `GET /v1/status`
#[derive(Debug, Clone, Copy)]
pub struct Status;

/// What [`Status`] answers. Fields in name order, as the JSON has always had them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The global configuration held, if any.
    pub globalconf: Option<GlobalconfStatus>,
    pub grants: usize,
    pub services: usize,
}

/// The global configuration a server holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalconfStatus {
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub generated_at: i64,
    pub serial: u64,
    /// Whether it is valid now, so exchanges can use it.
    pub usable: bool,
}

impl AdminOp for Status {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/status";
    type Path = ();
    type Body = ();
    type Response = ServerStatus;

    fn from_wire((): (), (): ()) -> Self {
        Status
    }
    fn to_wire(&self) -> ((), ()) {
        ((), ())
    }
    async fn apply(self, admin: &Admin) -> Result<ServerStatus, AdminError> {
        let conf = admin.conf.current();
        let local = admin.serverconf.snapshot();
        Ok(ServerStatus {
            globalconf: conf.as_ref().map(|c| GlobalconfStatus {
                expires_at: c.conf().expires_at(),
                generated_at: c.conf().generated_at(),
                serial: c.serial(),
                usable: admin.conf.valid_now().is_ok(),
            }),
            grants: local.access.grants().len(),
            services: local.services.len(),
        })
    }
    fn text(&self, status: &ServerStatus) -> String {
        pretty(status)
    }
}

/// `POST /v1/globalconf/refresh`: fetches the global configuration now.
#[derive(Debug, Clone, Copy)]
pub struct RefreshGlobalconf;

/// What [`RefreshGlobalconf`] answers (fields in name order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    /// Whether the configuration is newer than the one held before.
    pub changed: bool,
    pub serial: u64,
    /// Where it came from (`Registry("https://...")` or `Peer(...)`).
    pub source: String,
}

impl AdminOp for RefreshGlobalconf {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/globalconf/refresh";
    type Path = ();
    type Body = ();
    type Response = Refresh;

    fn from_wire((): (), (): ()) -> Self {
        RefreshGlobalconf
    }
    fn to_wire(&self) -> ((), ()) {
        ((), ())
    }
    async fn apply(self, admin: &Admin) -> Result<Refresh, AdminError> {
        let r = admin
            .conf
            .refresh()
            .await
            .map_err(|e| AdminError::RefreshFailed(e.to_string()))?;
        Ok(Refresh {
            changed: r.succession == globalconf::Succession::Newer,
            serial: r.serial,
            source: format!("{:?}", r.source),
        })
    }
    fn text(&self, refresh: &Refresh) -> String {
        pretty(refresh)
    }
}

/// `GET /v1/services`: every service, in identifier order.
#[derive(Debug, Clone, Copy)]
pub struct ListServices;

impl AdminOp for ListServices {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/services";
    type Path = ();
    type Body = ();
    type Response = Vec<ServiceEntry>;

    fn from_wire((): (), (): ()) -> Self {
        ListServices
    }
    fn to_wire(&self) -> ((), ()) {
        ((), ())
    }
    async fn apply(self, admin: &Admin) -> Result<Vec<ServiceEntry>, AdminError> {
        Ok(admin
            .serverconf
            .snapshot()
            .services
            .values()
            .cloned()
            .collect())
    }
    fn text(&self, services: &Vec<ServiceEntry>) -> String {
        if services.is_empty() {
            return "no services\n".into();
        }
        services
            .iter()
            .map(|s| describe_service(s) + "\n")
            .collect()
    }
}

/// `POST /v1/services` with a [`ServiceEntry`]: adds a service or replaces the one with its
/// identifier (201 when new, else 200).
#[derive(Debug, Clone)]
pub struct AddService(pub ServiceEntry);

impl AdminOp for AddService {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/services";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = ServiceEntry;
    type Response = Added<ServiceEntry>;

    fn from_wire((): (), entry: ServiceEntry) -> Self {
        Self(entry)
    }
    fn to_wire(&self) -> ((), ServiceEntry) {
        ((), self.0.clone())
    }
    async fn apply(self, admin: &Admin) -> Result<Added<ServiceEntry>, AdminError> {
        let stored = self.0.clone();
        let new = on_serverconf(admin, move |c| c.add_service(stored)).await?;
        Ok(Added { new, value: self.0 })
    }
    fn text(&self, added: &Added<ServiceEntry>) -> String {
        let verb = if added.new { "added" } else { "replaced" };
        format!("{verb} service {}\n", describe_service(&self.0))
    }
}

/// `DELETE /v1/services/{id}`: removes a service and its grants (204; 404 if there was none).
#[derive(Debug, Clone)]
pub struct RemoveService {
    pub id: ServiceId,
}

impl AdminOp for RemoveService {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/v1/services/{*id}";
    type Path = ServiceId;
    type Body = ();
    type Response = ();

    fn from_wire(id: ServiceId, (): ()) -> Self {
        Self { id }
    }
    fn to_wire(&self) -> (ServiceId, ()) {
        (self.id.clone(), ())
    }
    async fn apply(self, admin: &Admin) -> Result<(), AdminError> {
        let id = self.id.clone();
        if !on_serverconf(admin, move |c| c.remove_service(&id)).await? {
            return Err(AdminError::NotFound(format!("no service {}", self.id)));
        }
        Ok(())
    }
    fn text(&self, (): &()) -> String {
        format!("removed service {} and its grants\n", self.id)
    }
}

/// `GET /v1/access`: every grant.
#[derive(Debug, Clone, Copy)]
pub struct ListAccess;

impl AdminOp for ListAccess {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/access";
    type Path = ();
    type Body = ();
    type Response = Vec<Grant>;

    fn from_wire((): (), (): ()) -> Self {
        ListAccess
    }
    fn to_wire(&self) -> ((), ()) {
        ((), ())
    }
    async fn apply(self, admin: &Admin) -> Result<Vec<Grant>, AdminError> {
        Ok(admin.serverconf.snapshot().access.grants().to_vec())
    }
    fn text(&self, grants: &Vec<Grant>) -> String {
        if grants.is_empty() {
            return "no grants: every call is denied\n".into();
        }
        grants.iter().map(|g| describe_grant(g) + "\n").collect()
    }
}

/// `POST /v1/access` with a [`Grant`]: 201 when new, 200 when it was already there.
#[derive(Debug, Clone)]
pub struct GrantAccess(pub Grant);

impl AdminOp for GrantAccess {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/access";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Grant;
    type Response = Added<Grant>;

    fn from_wire((): (), grant: Grant) -> Self {
        Self(grant)
    }
    fn to_wire(&self) -> ((), Grant) {
        ((), self.0.clone())
    }
    async fn apply(self, admin: &Admin) -> Result<Added<Grant>, AdminError> {
        let stored = self.0.clone();
        let new = on_serverconf(admin, move |c| c.grant(stored)).await?;
        Ok(Added { new, value: self.0 })
    }
    fn text(&self, added: &Added<Grant>) -> String {
        if added.new {
            format!("granted {}\n", describe_grant(&self.0))
        } else {
            format!("already granted: {}\n", describe_grant(&self.0))
        }
    }
}

/// `POST /v1/access/revoke` with the [`Grant`] as it was given: 204, or 404 if there was none.
#[derive(Debug, Clone)]
pub struct RevokeAccess(pub Grant);

impl AdminOp for RevokeAccess {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/access/revoke";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Grant;
    type Response = ();

    fn from_wire((): (), grant: Grant) -> Self {
        Self(grant)
    }
    fn to_wire(&self) -> ((), Grant) {
        ((), self.0.clone())
    }
    async fn apply(self, admin: &Admin) -> Result<(), AdminError> {
        if !on_serverconf(admin, move |c| c.revoke(&self.0)).await? {
            return Err(AdminError::NotFound("no such grant".into()));
        }
        Ok(())
    }
    fn text(&self, (): &()) -> String {
        format!("revoked {}\n", describe_grant(&self.0))
    }
}

/// `GET /v1/suppressions`: every suppression rule (resident transparency).
#[derive(Debug, Clone, Copy)]
pub struct ListSuppressions;

impl AdminOp for ListSuppressions {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/suppressions";
    type Path = ();
    type Body = ();
    type Response = Vec<Suppression>;

    fn from_wire((): (), (): ()) -> Self {
        ListSuppressions
    }
    fn to_wire(&self) -> ((), ()) {
        ((), ())
    }
    async fn apply(self, admin: &Admin) -> Result<Vec<Suppression>, AdminError> {
        Ok(admin.serverconf.snapshot().suppressions.clone())
    }
    fn text(&self, rules: &Vec<Suppression>) -> String {
        if rules.is_empty() {
            return "no suppression rules: residents see every access\n".into();
        }
        rules
            .iter()
            .map(|r| describe_suppression(r) + "\n")
            .collect()
    }
}

/// `POST /v1/suppressions` with a [`Suppression`]: adds a rule or replaces the one for the same
/// client (201 when new, else 200).
#[derive(Debug, Clone)]
pub struct AddSuppression(pub Suppression);

impl AdminOp for AddSuppression {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/suppressions";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Suppression;
    type Response = Added<Suppression>;

    fn from_wire((): (), rule: Suppression) -> Self {
        Self(rule)
    }
    fn to_wire(&self) -> ((), Suppression) {
        ((), self.0.clone())
    }
    async fn apply(self, admin: &Admin) -> Result<Added<Suppression>, AdminError> {
        let stored = self.0.clone();
        let new = on_serverconf(admin, move |c| c.suppress(stored)).await?;
        Ok(Added { new, value: self.0 })
    }
    fn text(&self, added: &Added<Suppression>) -> String {
        let verb = if added.new {
            "added"
        } else {
            "unchanged or replaced"
        };
        format!("{verb}: {}\n", describe_suppression(&self.0))
    }
}

/// `POST /v1/suppressions/remove` `{"client": ...}`: removes the client's rule (204; 404 if
/// there was none).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveSuppression {
    pub client: SuppressedClient,
}

impl AdminOp for RemoveSuppression {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/suppressions/remove";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Self;
    type Response = ();

    fn from_wire((): (), body: Self) -> Self {
        body
    }
    fn to_wire(&self) -> ((), Self) {
        ((), self.clone())
    }
    async fn apply(self, admin: &Admin) -> Result<(), AdminError> {
        if !on_serverconf(admin, move |c| c.unsuppress(&self.client)).await? {
            return Err(AdminError::NotFound(
                "no suppression rule for that client".into(),
            ));
        }
        Ok(())
    }
    fn text(&self, (): &()) -> String {
        format!("removed the rule for {}\n", self.client)
    }
}

/// `GET /v1/audit?limit=N`: the newest `limit` (default 100, at most 10 000) audit records,
/// oldest first.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub limit: Option<usize>,
}

impl AdminOp for Audit {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/audit";
    const INPUT: Input = Input::Query;
    type Path = ();
    type Body = Self;
    type Response = Vec<AuditEntry>;

    fn from_wire((): (), query: Self) -> Self {
        query
    }
    fn to_wire(&self) -> ((), Self) {
        ((), *self)
    }
    async fn apply(self, admin: &Admin) -> Result<Vec<AuditEntry>, AdminError> {
        let limit = self
            .limit
            .unwrap_or(AUDIT_DEFAULT_LIMIT)
            .min(AUDIT_MAX_LIMIT);
        on_serverconf(admin, move |c| c.audit(limit)).await
    }
    fn text(&self, entries: &Vec<AuditEntry>) -> String {
        if entries.is_empty() {
            return "no audit records\n".into();
        }
        entries
            .iter()
            .map(|e| format!("{:>6}  {}  {:<15} {}\n", e.seq, e.time, e.action, e.details))
            .collect()
    }
}

/// `POST /v1/evidence` with an [`EvidenceQuery`]: an evidence bundle (protobuf,
/// docs/evidence.md) for one X-Road-Id, a time range or a data subject. 503
/// `Admin.NotYetCheckpointed` while the records wait for their checkpoint: retry.
#[derive(Debug, Clone)]
pub struct ExportEvidence(pub EvidenceQuery);

impl AdminOp for ExportEvidence {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/evidence";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = EvidenceQuery;
    type Response = proto::v1::EvidenceBundle;

    fn from_wire((): (), query: EvidenceQuery) -> Self {
        Self(query)
    }
    fn to_wire(&self) -> ((), EvidenceQuery) {
        ((), self.0.clone())
    }
    async fn apply(self, admin: &Admin) -> Result<proto::v1::EvidenceBundle, AdminError> {
        use crate::log::ExportError;
        let source = admin
            .evidence
            .clone()
            .ok_or_else(|| AdminError::NotFound("this server has no message log".into()))?;
        tokio::task::spawn_blocking(move || {
            crate::log::export_evidence(
                &source.log,
                &source.server_id,
                &self.0,
                source.clock.as_ref(),
                |_, _| {},
            )
        })
        .await
        .map_err(|e| AdminError::Storage(format!("the export did not run to the end: {e}")))?
        .map_err(|e| match e {
            ExportError::BadQuery(why) => AdminError::BadRequest(why),
            ExportError::NothingFound => AdminError::NotFound(e.to_string()),
            e if e.is_retryable() => AdminError::NotYetCheckpointed(e.to_string()),
            e => AdminError::Storage(e.to_string()),
        })
    }
    fn text(&self, bundle: &proto::v1::EvidenceBundle) -> String {
        format!("{} records\n", bundle.records.len())
    }
}

fn describe_service(s: &ServiceEntry) -> String {
    let openapi = s
        .openapi
        .as_ref()
        .map(|doc| format!("  openapi {} bytes", doc.len()))
        .unwrap_or_default();
    format!("{}  {}  timeout {} s{openapi}", s.id, s.url, s.timeout_secs)
}

fn describe_suppression(r: &Suppression) -> String {
    let what = match r.delay_secs {
        None => "hidden".to_owned(),
        Some(d) => format!("delayed {d} s ({:.1} days)", d as f64 / 86_400.0),
    };
    format!("{}  {what}  reason: {}", r.client, r.reason)
}

fn describe_grant(g: &Grant) -> String {
    format!(
        "{}  to {}  {} {}",
        g.service,
        g.subject,
        g.method.as_ref().map_or("any method", |m| m.as_str()),
        g.path.as_deref().unwrap_or("(whole service)")
    )
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
