//! Subsystems of members (the unit that calls and is called): list, add, remove.

use std::collections::BTreeSet;

use globalconf::{SecurityServerId, SubsystemId};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, Input, PlainEndpoint, audit, checked_names, not_found};
use crate::error::RegistryError;
use crate::ops::views::SubsystemView;
use crate::state::SubsystemRecord;
use crate::store::Change;

/// `POST /admin/v1/subsystems/{id}/profile` `{"names": {LANG: NAME}}`: the subsystem's name per
/// language, as residents read it (the portal names the accessing system by it). Replaces the
/// earlier names; published with the next configuration.
#[derive(Debug, Clone)]
pub struct SetSubsystemProfile {
    pub id: SubsystemId,
    pub profile: SubsystemProfile,
}

/// The body of [`SetSubsystemProfile`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsystemProfile {
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, String>,
}

impl Endpoint for SetSubsystemProfile {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/subsystems/{id}/profile";
    const INPUT: Input = Input::Json;
    type Path = SubsystemId;
    type Body = SubsystemProfile;
    type Response = SubsystemView;

    fn from_wire(id: SubsystemId, profile: SubsystemProfile) -> Self {
        Self { id, profile }
    }
    fn to_wire(&self) -> (SubsystemId, SubsystemProfile) {
        (self.id.clone(), self.profile.clone())
    }
}

impl AdminOp for SetSubsystemProfile {
    fn apply(self, core: &mut Core, now: i64) -> Result<SubsystemView, RegistryError> {
        let id = self.id;
        let mut record = core
            .state
            .subsystems
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found(format!("subsystem {id}")))?;
        let names = checked_names(self.profile.names)?;
        record.names = names;
        core.execute(
            vec![Change::PutSubsystem(id.clone(), record.clone())],
            audit(
                "subsystem.profile",
                json!({"id": id, "names": record.names}),
            ),
            false,
            now,
        )?;
        Ok(SubsystemView {
            id,
            name: record.name,
        })
    }
    fn text(&self, s: &SubsystemView) -> String {
        format!("subsystem {}  {:?}: names set\n", s.id, s.name)
    }
}

/// `GET /admin/v1/subsystems`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListSubsystems;

impl PlainEndpoint for ListSubsystems {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/subsystems";
    type Response = Vec<SubsystemView>;
}

impl AdminOp for ListSubsystems {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<SubsystemView>, RegistryError> {
        Ok(core
            .state
            .subsystems
            .iter()
            .map(|(id, s)| SubsystemView {
                id: id.clone(),
                name: s.name.clone(),
            })
            .collect())
    }
    fn text(&self, subsystems: &Vec<SubsystemView>) -> String {
        subsystems
            .iter()
            .map(|s| format!("{}  {:?}\n", s.id, s.name))
            .collect()
    }
}

/// `POST /admin/v1/subsystems` `{"id", "name"?}`: adds a subsystem of an existing member; an
/// empty name defaults to the subsystem code (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSubsystem {
    pub id: SubsystemId,
    #[serde(default)]
    pub name: String,
}

impl Endpoint for AddSubsystem {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/subsystems";
    const STATUS: StatusCode = StatusCode::CREATED;
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Self;
    type Response = SubsystemView;

    fn from_wire((): (), body: Self) -> Self {
        body
    }
    fn to_wire(&self) -> ((), Self) {
        ((), self.clone())
    }
}

impl AdminOp for AddSubsystem {
    fn apply(self, core: &mut Core, now: i64) -> Result<SubsystemView, RegistryError> {
        let id = self.id;
        if !core.state.members.contains_key(id.member()) {
            return Err(not_found(format!("member {}", id.member())));
        }
        if core.state.subsystems.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "subsystem {id} already exists"
            )));
        }
        let name = match self.name.trim() {
            "" => id.code().to_owned(),
            n => n.to_owned(),
        };
        core.execute(
            vec![Change::PutSubsystem(
                id.clone(),
                SubsystemRecord {
                    name: name.clone(),
                    ..SubsystemRecord::default()
                },
            )],
            audit("subsystem.add", json!({"id": id, "name": name})),
            false,
            now,
        )?;
        Ok(SubsystemView { id, name })
    }
    fn text(&self, s: &SubsystemView) -> String {
        format!("added subsystem {}  {:?}\n", s.id, s.name)
    }
}

/// `DELETE /admin/v1/subsystems/{id}`: removes a subsystem, and with it its hosting entries and
/// group memberships (204).
#[derive(Debug, Clone)]
pub struct RemoveSubsystem {
    pub id: SubsystemId,
}

impl Endpoint for RemoveSubsystem {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/subsystems/{id}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    type Path = SubsystemId;
    type Body = ();
    type Response = ();

    fn from_wire(id: SubsystemId, (): ()) -> Self {
        Self { id }
    }
    fn to_wire(&self) -> (SubsystemId, ()) {
        (self.id.clone(), ())
    }
}

impl AdminOp for RemoveSubsystem {
    fn apply(self, core: &mut Core, now: i64) -> Result<(), RegistryError> {
        let id = self.id;
        if !core.state.subsystems.contains_key(&id) {
            return Err(not_found(format!("subsystem {id}")));
        }
        let removed = BTreeSet::from([id.clone()]);
        let mut changes = core.detach_subsystems(&removed, &BTreeSet::new());
        changes.push(Change::DeleteSubsystem(id.clone()));
        core.execute(
            changes,
            audit("subsystem.remove", json!({"id": id})),
            false,
            now,
        )
    }
    fn text(&self, (): &()) -> String {
        format!("removed subsystem {}\n", self.id)
    }
}

impl Core {
    /// Changes that take `removed` subsystems out of server hosting lists and global groups
    /// (servers in `skip` are being deleted anyway).
    pub(super) fn detach_subsystems(
        &self,
        removed: &BTreeSet<SubsystemId>,
        skip: &BTreeSet<SecurityServerId>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for (id, server) in &self.state.servers {
            if !skip.contains(id) && server.hosted.iter().any(|s| removed.contains(s)) {
                let mut server = server.clone();
                server.hosted.retain(|s| !removed.contains(s));
                changes.push(Change::PutServer(id.clone(), server));
            }
        }
        for (id, group) in &self.state.groups {
            if group.members.iter().any(|s| removed.contains(s)) {
                let mut group = group.clone();
                group.members.retain(|s| !removed.contains(s));
                changes.push(Change::PutGroup(id.clone(), group));
            }
        }
        changes
    }
}
