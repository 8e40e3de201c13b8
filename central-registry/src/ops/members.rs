//! Members (organisations): list, admit, remove with everything they own.

use std::collections::{BTreeSet, HashMap};

use globalconf::{MemberId, SecurityServerId, SubsystemId};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::keys::key_text;
use super::{AdminOp, Core, Endpoint, Input, PlainEndpoint, audit, checked_names, not_found};
use crate::error::RegistryError;
use crate::ops::views::{MemberView, SubsystemView};
use crate::state::MemberRecord;
use crate::store::Change;

/// `GET /admin/v1/members`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListMembers;

impl PlainEndpoint for ListMembers {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/members";
    type Response = Vec<MemberView>;
}

impl AdminOp for ListMembers {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<MemberView>, RegistryError> {
        let mut subs: HashMap<&MemberId, Vec<SubsystemView>> = HashMap::new();
        for (sid, s) in &core.state.subsystems {
            subs.entry(sid.member()).or_default().push(SubsystemView {
                id: sid.clone(),
                name: s.name.clone(),
            });
        }
        Ok(core
            .state
            .members
            .iter()
            .map(|(id, r)| core.member_view(id, r, subs.remove(id).unwrap_or_default()))
            .collect())
    }
    fn text(&self, members: &Vec<MemberView>) -> String {
        members.iter().map(member_text).collect()
    }
}

/// `POST /admin/v1/members` `{"id", "name"}`: admits a member of this instance (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub id: MemberId,
    pub name: String,
}

impl Endpoint for AddMember {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/members";
    const STATUS: StatusCode = StatusCode::CREATED;
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Self;
    type Response = MemberView;

    fn from_wire((): (), body: Self) -> Self {
        body
    }
    fn to_wire(&self) -> ((), Self) {
        ((), self.clone())
    }
}

impl AdminOp for AddMember {
    fn apply(self, core: &mut Core, now: i64) -> Result<MemberView, RegistryError> {
        let id = self.id;
        core.own_instance(&format!("member {id}"), id.instance())?;
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(RegistryError::BadRequest("a member needs a name".into()));
        }
        if core.state.members.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "member {id} already exists"
            )));
        }
        let record = MemberRecord {
            name: name.clone(),
            ..MemberRecord::default()
        };
        core.execute(
            vec![Change::PutMember(id.clone(), record.clone())],
            audit("member.add", json!({"id": id, "name": name})),
            false,
            now,
        )?;
        Ok(core.member_view(&id, &record, Vec::new()))
    }
    fn text(&self, member: &MemberView) -> String {
        member_text(member)
    }
}

/// `POST /admin/v1/members/{id}/profile` with a [`Profile`]: what residents read about the
/// member: its name per language and where to ask about its use of their data. Replaces the
/// earlier profile; published with the next configuration.
#[derive(Debug, Clone)]
pub struct SetMemberProfile {
    pub id: MemberId,
    pub profile: Profile,
}

/// The body of [`SetMemberProfile`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Language (`ja`, `en`: 2–3 lower-case letters) → name.
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, String>,
    /// `https://…` or `mailto:…`.
    #[serde(default)]
    pub privacy_contact: Option<String>,
}

impl Endpoint for SetMemberProfile {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/members/{id}/profile";
    const INPUT: Input = Input::Json;
    type Path = MemberId;
    type Body = Profile;
    type Response = MemberView;

    fn from_wire(id: MemberId, profile: Profile) -> Self {
        Self { id, profile }
    }
    fn to_wire(&self) -> (MemberId, Profile) {
        (self.id.clone(), self.profile.clone())
    }
}

impl AdminOp for SetMemberProfile {
    fn apply(self, core: &mut Core, now: i64) -> Result<MemberView, RegistryError> {
        let id = self.id;
        let mut record = core
            .state
            .members
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found(format!("member {id}")))?;
        let names = checked_names(self.profile.names)?;
        if let Some(c) = &self.profile.privacy_contact
            && !globalconf::conf::is_contact_url(c)
        {
            return Err(RegistryError::BadRequest(format!(
                "privacy contact {c:?} is not an https: or mailto: URL"
            )));
        }
        record.names = names;
        record.privacy_contact = self.profile.privacy_contact;
        core.execute(
            vec![Change::PutMember(id.clone(), record.clone())],
            audit(
                "member.profile",
                json!({"id": id, "names": record.names, "privacy_contact": record.privacy_contact}),
            ),
            false,
            now,
        )?;
        let subsystems = core
            .state
            .subsystems
            .iter()
            .filter(|(sid, _)| sid.member() == &id)
            .map(|(sid, s)| SubsystemView {
                id: sid.clone(),
                name: s.name.clone(),
            })
            .collect();
        Ok(core.member_view(&id, &record, subsystems))
    }
    fn text(&self, member: &MemberView) -> String {
        member_text(member)
    }
}

/// `DELETE /admin/v1/members/{id}`: removes a member with its subsystems, signing keys and
/// security servers (204).
#[derive(Debug, Clone)]
pub struct RemoveMember {
    pub id: MemberId,
}

impl Endpoint for RemoveMember {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/members/{id}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    type Path = MemberId;
    type Body = ();
    type Response = ();

    fn from_wire(id: MemberId, (): ()) -> Self {
        Self { id }
    }
    fn to_wire(&self) -> (MemberId, ()) {
        (self.id.clone(), ())
    }
}

impl AdminOp for RemoveMember {
    fn apply(self, core: &mut Core, now: i64) -> Result<(), RegistryError> {
        let id = &self.id;
        if !core.state.members.contains_key(id) {
            return Err(not_found(format!("member {id}")));
        }
        let subsystems: BTreeSet<SubsystemId> = core
            .state
            .subsystems_of(id)
            .map(|(sid, _)| sid.clone())
            .collect();
        let servers: BTreeSet<SecurityServerId> = core
            .state
            .servers
            .keys()
            .filter(|s| s.owner() == id)
            .cloned()
            .collect();
        let mut changes = core.detach_subsystems(&subsystems, &servers);
        for sid in &subsystems {
            changes.push(Change::DeleteSubsystem(sid.clone()));
        }
        for server in &servers {
            changes.push(Change::DeleteServer(server.clone()));
            if core.enrollments.contains_key(server) {
                changes.push(Change::DeleteEnrollment(server.clone()));
            }
        }
        for key_id in core
            .state
            .signing_keys
            .get(id)
            .into_iter()
            .flat_map(|k| k.keys())
        {
            changes.push(Change::DeleteKey(id.clone(), key_id.clone()));
        }
        changes.push(Change::DeleteMember(id.clone()));
        core.execute(
            changes,
            audit(
                "member.remove",
                json!({"id": id, "subsystems": subsystems, "servers": servers}),
            ),
            false,
            now,
        )
    }
    fn text(&self, (): &()) -> String {
        format!("removed member {}\n", self.id)
    }
}

impl Core {
    fn member_view(
        &self,
        id: &MemberId,
        record: &MemberRecord,
        subsystems: Vec<SubsystemView>,
    ) -> MemberView {
        MemberView {
            id: id.clone(),
            name: record.name.clone(),
            names: record.names.clone(),
            privacy_contact: record.privacy_contact.clone(),
            subsystems,
            signing_keys: self.key_views(id),
            servers: self
                .state
                .servers
                .keys()
                .filter(|s| s.owner() == id)
                .cloned()
                .collect(),
        }
    }
}

fn member_text(m: &MemberView) -> String {
    let mut s = format!("{}  {:?}\n", m.id, m.name);
    for (lang, name) in &m.names {
        s += &format!("  name:{lang}   {name:?}\n");
    }
    if let Some(contact) = &m.privacy_contact {
        s += &format!("  privacy contact  {contact}\n");
    }
    for sub in &m.subsystems {
        s += &format!("  subsystem {}  {:?}\n", sub.id, sub.name);
    }
    for k in &m.signing_keys {
        s += &key_text(k);
    }
    for server in &m.servers {
        s += &format!("  server    {server}\n");
    }
    s
}
