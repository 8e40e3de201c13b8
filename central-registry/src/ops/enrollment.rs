//! Enrolment of security servers: the requests they submit (public endpoint), the operator's
//! decisions, and one-time tokens that approve a request on arrival.

use std::collections::BTreeSet;

use globalconf::SecurityServerId;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, Input, PlainEndpoint, audit, not_found};
use crate::datadir::TLS_VALIDITY;
use crate::enrollment::{
    EnrollmentRecord, EnrollmentStatus, TokenRecord, VerifiedEnrollment, token_hash,
    verify_enrollment,
};
use crate::error::RegistryError;
use crate::ops::views::{EnrollmentStatusView, EnrollmentView, IssuedToken};
use crate::state::{KeyRecord, ServerRecord};
use crate::store::Change;

/// `GET /admin/v1/enrollments`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListEnrollments;

impl PlainEndpoint for ListEnrollments {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/enrollments";
    type Response = Vec<EnrollmentView>;
}

impl AdminOp for ListEnrollments {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<EnrollmentView>, RegistryError> {
        Ok(core.enrollments.values().map(enrollment_view).collect())
    }
    fn text(&self, enrollments: &Vec<EnrollmentView>) -> String {
        enrollments.iter().map(enrollment_text).collect()
    }
}

/// `GET /admin/v1/enrollments/{server_id}`
#[derive(Debug, Clone)]
pub struct GetEnrollment {
    pub server_id: SecurityServerId,
}

impl Endpoint for GetEnrollment {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/enrollments/{id}";
    type Path = SecurityServerId;
    type Body = ();
    type Response = EnrollmentView;

    fn from_wire(server_id: SecurityServerId, (): ()) -> Self {
        Self { server_id }
    }
    fn to_wire(&self) -> (SecurityServerId, ()) {
        (self.server_id.clone(), ())
    }
}

impl AdminOp for GetEnrollment {
    fn apply(self, core: &mut Core, _now: i64) -> Result<EnrollmentView, RegistryError> {
        core.enrollments
            .get(&self.server_id)
            .map(enrollment_view)
            .ok_or_else(|| {
                RegistryError::NotFound(format!("no enrolment request for {}", self.server_id))
            })
    }
    fn text(&self, e: &EnrollmentView) -> String {
        enrollment_text(e) + e.certificate_pem.as_deref().unwrap_or("")
    }
}

/// `POST /admin/v1/enrollments/{server_id}/approve`: the CA certifies the server's TLS key; the
/// server and (if new) its member signing key enter the configuration.
#[derive(Debug, Clone)]
pub struct ApproveEnrollment {
    pub server_id: SecurityServerId,
}

impl Endpoint for ApproveEnrollment {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/enrollments/{id}/approve";
    type Path = SecurityServerId;
    type Body = ();
    type Response = EnrollmentView;

    fn from_wire(server_id: SecurityServerId, (): ()) -> Self {
        Self { server_id }
    }
    fn to_wire(&self) -> (SecurityServerId, ()) {
        (self.server_id.clone(), ())
    }
}

impl AdminOp for ApproveEnrollment {
    fn apply(self, core: &mut Core, now: i64) -> Result<EnrollmentView, RegistryError> {
        let id = &self.server_id;
        let record = core.pending(id)?;
        // Verified when it was submitted; verifying again is what yields the proof value.
        let (request, _) = verify_enrollment(&record.signed_request, &core.instance)
            .map_err(|e| RegistryError::Internal(format!("stored enrolment request: {e}")))?;
        if !core.state.members.contains_key(id.owner()) {
            return Err(not_found(format!("member {}", id.owner())));
        }
        let (changes, record) = core.approval(&request, record, now)?;
        core.execute(
            changes,
            audit(
                "enrollment.approve",
                json!({"server_id": id, "by": "operator", "addresses": record.addresses}),
            ),
            false,
            now,
        )?;
        Ok(enrollment_view(&record))
    }
    fn text(&self, e: &EnrollmentView) -> String {
        enrollment_text(e)
    }
}

/// `POST /admin/v1/enrollments/{server_id}/reject`: nothing is added.
#[derive(Debug, Clone)]
pub struct RejectEnrollment {
    pub server_id: SecurityServerId,
}

impl Endpoint for RejectEnrollment {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/enrollments/{id}/reject";
    type Path = SecurityServerId;
    type Body = ();
    type Response = EnrollmentView;

    fn from_wire(server_id: SecurityServerId, (): ()) -> Self {
        Self { server_id }
    }
    fn to_wire(&self) -> (SecurityServerId, ()) {
        (self.server_id.clone(), ())
    }
}

impl AdminOp for RejectEnrollment {
    fn apply(self, core: &mut Core, now: i64) -> Result<EnrollmentView, RegistryError> {
        let id = &self.server_id;
        let mut record = core.pending(id)?;
        record.status = EnrollmentStatus::Rejected;
        record.decided_at = Some(now);
        core.execute(
            vec![Change::PutEnrollment(record.clone())],
            audit("enrollment.reject", json!({"server_id": id})),
            false,
            now,
        )?;
        Ok(enrollment_view(&record))
    }
    fn text(&self, e: &EnrollmentView) -> String {
        enrollment_text(e)
    }
}

/// `POST /admin/v1/tokens` `{"server_id"}`: a one-time token that lets that server enrol without
/// waiting for approval (201; the only time the token is shown).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub server_id: SecurityServerId,
}

impl Endpoint for IssueToken {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/tokens";
    const STATUS: StatusCode = StatusCode::CREATED;
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Self;
    type Response = IssuedToken;

    fn from_wire((): (), body: Self) -> Self {
        body
    }
    fn to_wire(&self) -> ((), Self) {
        ((), self.clone())
    }
}

impl AdminOp for IssueToken {
    fn apply(self, core: &mut Core, now: i64) -> Result<IssuedToken, RegistryError> {
        let server_id = self.server_id;
        core.own_instance(&format!("server {server_id}"), server_id.owner().instance())?;
        if !core.state.members.contains_key(server_id.owner()) {
            return Err(not_found(format!("member {}", server_id.owner())));
        }
        if core.state.servers.contains_key(&server_id) {
            return Err(RegistryError::Conflict(format!(
                "security server {server_id} is already approved; remove it first to re-enrol"
            )));
        }
        let token = crate::util::random_hex(32).map_err(certs::Error::from)?;
        let expires_at = now.saturating_add(core.token_validity);
        let record = TokenRecord {
            server_id: server_id.clone(),
            issued_at: now,
            expires_at,
            used_at: None,
        };
        core.execute(
            vec![Change::PutToken(token_hash(&token), record)],
            audit(
                "token.issue",
                json!({"server_id": server_id, "expires_at": expires_at}),
            ),
            false,
            now,
        )?;
        Ok(IssuedToken {
            server_id,
            token,
            expires_at,
        })
    }
    fn text(&self, t: &IssuedToken) -> String {
        format!("{}\n", t.token)
    }
    fn notice(&self, t: &IssuedToken) -> Option<String> {
        Some(format!(
            "one-time enrolment token for {}, valid until {}; hand it to that server's operator",
            t.server_id,
            runtime::time::rfc3339(t.expires_at)
        ))
    }
}

impl Core {
    /// A security server's enrolment request (the POSTed `SignedEnrollmentRequest` bytes, on
    /// the public endpoint). With a valid token it is approved at once; without one it waits
    /// for the operator.
    pub(crate) fn submit_enrollment(
        &mut self,
        body: &[u8],
        now: i64,
    ) -> Result<EnrollmentStatusView, RegistryError> {
        let (request, token) = verify_enrollment(body, &self.instance)?;
        request.check_fresh(now)?;
        let id = request.server_id().clone();
        if !self.state.members.contains_key(id.owner()) {
            return Err(not_found(format!("member {}", id.owner())));
        }
        if self.state.servers.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "security server {id} is already approved; the operator must remove it before it can enrol again"
            )));
        }
        let pending = EnrollmentRecord {
            server_id: id.clone(),
            status: EnrollmentStatus::Pending,
            addresses: request.addresses().to_vec(),
            member_key_id: request.member_key().key_id(),
            submitted_at: now,
            decided_at: None,
            signed_request: request.envelope().to_vec(),
            certificate_der: None,
        };
        let record = if token.is_empty() {
            self.execute(
                vec![Change::PutEnrollment(pending.clone())],
                audit(
                    "enrollment.submit",
                    json!({"server_id": id, "addresses": pending.addresses}),
                ),
                false,
                now,
            )?;
            pending
        } else {
            let hash = token_hash(&token);
            let mut token_record = match self.tokens.get(&hash) {
                None => Err("token is unknown"),
                Some(t) => t.refusal(&id, now).map_or(Ok(t.clone()), Err),
            }
            .map_err(|reason| {
                tracing::warn!(server_id = %id, reason, "enrolment token refused");
                RegistryError::InvalidToken(format!(
                    "the enrolment token is not valid for {id} (unknown, used, expired or issued for another server)"
                ))
            })?;
            token_record.used_at = Some(now);
            let (mut changes, record) = self.approval(&request, pending, now)?;
            changes.push(Change::PutToken(hash, token_record));
            self.execute(
                changes,
                audit(
                    "enrollment.approve",
                    json!({"server_id": id, "by": "token", "addresses": record.addresses}),
                ),
                false,
                now,
            )?;
            record
        };
        Ok(EnrollmentStatusView::from_record(&record))
    }

    fn pending(&self, id: &SecurityServerId) -> Result<EnrollmentRecord, RegistryError> {
        let record = self
            .enrollments
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(format!("no enrolment request for {id}")))?;
        if record.status != EnrollmentStatus::Pending {
            return Err(RegistryError::Conflict(format!(
                "the enrolment request of {id} is {}, not pending",
                record.status.as_str()
            )));
        }
        Ok(record)
    }

    /// The changes that approve a verified request: the CA certifies the server's TLS key, the
    /// server and (if new) the member signing key enter the configuration.
    fn approval(
        &self,
        request: &VerifiedEnrollment,
        mut record: EnrollmentRecord,
        now: i64,
    ) -> Result<(Vec<Change>, EnrollmentRecord), RegistryError> {
        let id = request.server_id();
        let owner = id.owner();
        if self.state.servers.contains_key(id) {
            return Err(RegistryError::Conflict(format!(
                "security server {id} is already approved"
            )));
        }
        let mut changes = Vec::new();
        let key_id = request.member_key().key_id();
        match self.state.key_owner(&key_id) {
            Some(m) if m != owner => {
                return Err(RegistryError::Conflict(format!(
                    "member signing key {key_id} is already listed for member {m}"
                )));
            }
            Some(_) => {}
            None => changes.push(Change::PutKey(
                owner.clone(),
                key_id,
                KeyRecord {
                    public_key: *request.member_key(),
                    valid_from: now,
                    valid_until: None,
                },
            )),
        }
        let certificate = self
            .cas
            .issuing
            .issue(
                &id.to_string(),
                request.tls_public_key_der(),
                &request.hosts(),
                TLS_VALIDITY,
                &*self.clock,
            )
            .map_err(|e| {
                RegistryError::BadRequest(format!("cannot certify the server's TLS key: {e}"))
            })?;
        changes.push(Change::PutServer(
            id.clone(),
            ServerRecord::new(
                request.addresses().to_vec(),
                certificate.clone(),
                BTreeSet::new(),
            ),
        ));
        record.status = EnrollmentStatus::Approved;
        record.decided_at = Some(now);
        record.certificate_der = Some(certificate);
        changes.push(Change::PutEnrollment(record.clone()));
        Ok((changes, record))
    }
}

fn enrollment_view(r: &EnrollmentRecord) -> EnrollmentView {
    EnrollmentView {
        server_id: r.server_id.clone(),
        status: r.status,
        addresses: r.addresses.clone(),
        member_key_id: r.member_key_id.clone(),
        submitted_at: r.submitted_at,
        decided_at: r.decided_at,
        certificate_pem: r.certificate_der.as_deref().map(certs::cert_to_pem),
    }
}

fn enrollment_text(e: &EnrollmentView) -> String {
    format!(
        "{}  {}  {}  member key {}  submitted {}\n",
        e.server_id,
        e.status.as_str(),
        e.addresses.join(", "),
        e.member_key_id,
        e.submitted_at
    )
}
