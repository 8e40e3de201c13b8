//! The registry's operations as an in-process handle ([`RegistryAdmin`]); the JSON views they
//! return are [`crate::ops::views`]'s. [`RegistryAdmin::run`] is what the admin HTTP API calls for every operation, and the
//! public enrolment endpoint calls [`RegistryAdmin::submit_enrollment`], so the sandbox and tests
//! that drive the handle exercise the same code as operators do.

use std::sync::Arc;

use certs::{KeyId, PublicKey};
use globalconf::{GlobalGroupId, InstanceId, MemberId, SecurityServerId, SubsystemId};

use crate::error::RegistryError;
pub use crate::ops::views::{
    EnrollmentStatusView, EnrollmentView, GroupView, IssuedToken, KeyView, MemberView, ServerView,
    StatusView, SubsystemView,
};
use crate::ops::{self, AdminOp, Core};
use crate::shared::Shared;
use crate::store::{AuditEntry, Publication};

/// In-process handle on a running (or just opened) [`crate::Registry`]. Cheap to clone. Every
/// method runs on tokio's blocking pool (each change is an fsync'd transaction), so a tokio
/// runtime is needed.
#[derive(Debug, Clone)]
pub struct RegistryAdmin {
    shared: Arc<Shared>,
}

impl RegistryAdmin {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Core, i64) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.with_core(op))
            .await
            .map_err(|e| RegistryError::Internal(format!("registry task failed: {e}")))?
    }

    /// The configuration currently served (serial, times and the signed envelope bytes).
    pub fn publication(&self) -> Arc<Publication> {
        self.shared.publication.borrow().clone()
    }

    /// Announces every new publication.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Publication>> {
        self.shared.publication.subscribe()
    }

    pub fn anchor(&self) -> &globalconf::Anchor {
        &self.shared.anchor
    }

    /// Runs one admin operation (see [`crate::ops`]): what the admin API does for its request.
    pub async fn run<Op: AdminOp>(&self, op: Op) -> Result<Op::Response, RegistryError> {
        self.call(move |core, now| op.apply(core, now)).await
    }

    // Shorthands for `run`, for the sandbox and tests.

    pub async fn status(&self) -> Result<StatusView, RegistryError> {
        self.run(ops::Status).await
    }

    /// Signs and publishes a new serial now, even without changes.
    pub async fn publish(&self) -> Result<StatusView, RegistryError> {
        self.run(ops::Publish).await
    }

    /// The newest `limit` audit entries, oldest first.
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        self.run(ops::Audit { limit: Some(limit) }).await
    }

    pub async fn list_members(&self) -> Result<Vec<MemberView>, RegistryError> {
        self.run(ops::ListMembers).await
    }

    pub async fn add_member(
        &self,
        id: MemberId,
        name: impl Into<String>,
    ) -> Result<MemberView, RegistryError> {
        let name = name.into();
        self.run(ops::AddMember { id, name }).await
    }

    /// Sets a subsystem's name per language, as residents read it.
    pub async fn set_subsystem_profile(
        &self,
        id: SubsystemId,
        profile: ops::SubsystemProfile,
    ) -> Result<SubsystemView, RegistryError> {
        self.run(ops::SetSubsystemProfile { id, profile }).await
    }

    /// Sets what residents read about a member: names per language, privacy contact.
    pub async fn set_member_profile(
        &self,
        id: MemberId,
        profile: ops::Profile,
    ) -> Result<MemberView, RegistryError> {
        self.run(ops::SetMemberProfile { id, profile }).await
    }

    /// Removes a member together with its subsystems, signing keys and security servers.
    pub async fn remove_member(&self, id: MemberId) -> Result<(), RegistryError> {
        self.run(ops::RemoveMember { id }).await
    }

    pub async fn list_subsystems(&self) -> Result<Vec<SubsystemView>, RegistryError> {
        self.run(ops::ListSubsystems).await
    }

    /// Adds a subsystem of an existing member; an empty name defaults to the subsystem code.
    pub async fn add_subsystem(
        &self,
        id: SubsystemId,
        name: impl Into<String>,
    ) -> Result<SubsystemView, RegistryError> {
        let name = name.into();
        self.run(ops::AddSubsystem { id, name }).await
    }

    /// Federates with the instance of `anchor` (its anchor file's text).
    pub async fn add_federation(
        &self,
        anchor: String,
    ) -> Result<ops::FederationAdded, RegistryError> {
        self.run(ops::AddFederation { anchor }).await
    }

    /// Ends the federation with `instance`.
    pub async fn remove_federation(&self, instance: InstanceId) -> Result<(), RegistryError> {
        self.run(ops::RemoveFederation { instance }).await
    }

    pub async fn federations(&self) -> Result<Vec<ops::FederationView>, RegistryError> {
        self.run(ops::ListFederations).await
    }

    pub async fn remove_subsystem(&self, id: SubsystemId) -> Result<(), RegistryError> {
        self.run(ops::RemoveSubsystem { id }).await
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupView>, RegistryError> {
        self.run(ops::ListGroups).await
    }

    pub async fn add_group(
        &self,
        id: GlobalGroupId,
        description: impl Into<String>,
    ) -> Result<GroupView, RegistryError> {
        let description = description.into();
        self.run(ops::AddGroup { id, description }).await
    }

    pub async fn remove_group(&self, id: GlobalGroupId) -> Result<(), RegistryError> {
        self.run(ops::RemoveGroup { id }).await
    }

    pub async fn add_group_member(
        &self,
        group: GlobalGroupId,
        subsystem: SubsystemId,
    ) -> Result<GroupView, RegistryError> {
        self.run(ops::AddGroupMember { group, subsystem }).await
    }

    pub async fn remove_group_member(
        &self,
        group: GlobalGroupId,
        subsystem: SubsystemId,
    ) -> Result<GroupView, RegistryError> {
        self.run(ops::RemoveGroupMember { group, subsystem }).await
    }

    pub async fn list_enrollments(&self) -> Result<Vec<EnrollmentView>, RegistryError> {
        self.run(ops::ListEnrollments).await
    }

    pub async fn enrollment(&self, id: SecurityServerId) -> Result<EnrollmentView, RegistryError> {
        self.run(ops::GetEnrollment { server_id: id }).await
    }

    /// What `POST /v1/enrollments` (the public endpoint) does with a
    /// `SignedEnrollmentRequest`'s bytes.
    pub async fn submit_enrollment(
        &self,
        body: Vec<u8>,
    ) -> Result<EnrollmentStatusView, RegistryError> {
        self.call(move |core, now| core.submit_enrollment(&body, now))
            .await
    }

    /// What `POST /v1/renewals` (the public endpoint) does with a `SignedRenewalRequest`'s bytes.
    pub async fn submit_renewal(&self, body: Vec<u8>) -> Result<ops::RenewalView, RegistryError> {
        self.call(move |core, now| core.submit_renewal(&body, now))
            .await
    }

    /// What `POST /v1/key-requests` (the public endpoint) does with a `SignedKeyRequest`'s bytes.
    pub async fn submit_key_request(
        &self,
        body: Vec<u8>,
    ) -> Result<ops::KeyRequestAnswer, RegistryError> {
        self.call(move |core, now| core.submit_key_request(&body, now))
            .await
    }

    pub async fn approve_enrollment(
        &self,
        id: SecurityServerId,
    ) -> Result<EnrollmentView, RegistryError> {
        self.run(ops::ApproveEnrollment { server_id: id }).await
    }

    pub async fn reject_enrollment(
        &self,
        id: SecurityServerId,
    ) -> Result<EnrollmentView, RegistryError> {
        self.run(ops::RejectEnrollment { server_id: id }).await
    }

    /// Issues a one-time token that lets `server_id` enrol without waiting for approval.
    pub async fn issue_token(
        &self,
        server_id: SecurityServerId,
    ) -> Result<IssuedToken, RegistryError> {
        self.run(ops::IssueToken { server_id }).await
    }

    pub async fn list_servers(&self) -> Result<Vec<ServerView>, RegistryError> {
        self.run(ops::ListServers).await
    }

    pub async fn remove_server(&self, id: SecurityServerId) -> Result<(), RegistryError> {
        self.run(ops::RemoveServer { id }).await
    }

    pub async fn add_hosted_subsystem(
        &self,
        server: SecurityServerId,
        subsystem: SubsystemId,
    ) -> Result<ServerView, RegistryError> {
        self.run(ops::AddHostedSubsystem { server, subsystem })
            .await
    }

    pub async fn remove_hosted_subsystem(
        &self,
        server: SecurityServerId,
        subsystem: SubsystemId,
    ) -> Result<ServerView, RegistryError> {
        self.run(ops::RemoveHostedSubsystem { server, subsystem })
            .await
    }

    pub async fn list_keys(&self, member: MemberId) -> Result<Vec<KeyView>, RegistryError> {
        self.run(ops::ListKeys { member }).await
    }

    /// Lists another signing key for a member, valid from `valid_from` (default: now).
    pub async fn add_key(
        &self,
        member: MemberId,
        public_key: PublicKey,
        valid_from: Option<i64>,
    ) -> Result<KeyView, RegistryError> {
        let key = ops::NewKey {
            public_key,
            valid_from,
        };
        self.run(ops::AddKey { member, key }).await
    }

    /// Ends a key's validity at `at` (default: now).
    pub async fn retire_key(
        &self,
        member: MemberId,
        key_id: KeyId,
        at: Option<i64>,
    ) -> Result<KeyView, RegistryError> {
        let retirement = ops::Retirement { at };
        self.run(ops::RetireKey {
            member,
            key_id,
            retirement,
        })
        .await
    }

    pub async fn remove_key(&self, member: MemberId, key_id: KeyId) -> Result<(), RegistryError> {
        self.run(ops::RemoveKey { member, key_id }).await
    }
}
