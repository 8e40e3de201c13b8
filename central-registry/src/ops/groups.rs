//! Global groups of subsystems: list, add, remove, and their members.

use std::collections::BTreeSet;

use globalconf::{GlobalGroupId, SubsystemId};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, Input, PlainEndpoint, audit, not_found};
use crate::error::RegistryError;
use crate::ops::views::GroupView;
use crate::state::GroupRecord;
use crate::store::Change;

/// `GET /admin/v1/groups`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListGroups;

impl PlainEndpoint for ListGroups {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/groups";
    type Response = Vec<GroupView>;
}

impl AdminOp for ListGroups {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<GroupView>, RegistryError> {
        Ok(core
            .state
            .groups
            .iter()
            .map(|(id, g)| group_view(id, g))
            .collect())
    }
    fn text(&self, groups: &Vec<GroupView>) -> String {
        groups.iter().map(group_text).collect()
    }
}

/// `POST /admin/v1/groups` `{"id", "description"?}` (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddGroup {
    pub id: GlobalGroupId,
    #[serde(default)]
    pub description: String,
}

impl Endpoint for AddGroup {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/groups";
    const STATUS: StatusCode = StatusCode::CREATED;
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Self;
    type Response = GroupView;

    fn from_wire((): (), body: Self) -> Self {
        body
    }
    fn to_wire(&self) -> ((), Self) {
        ((), self.clone())
    }
}

impl AdminOp for AddGroup {
    fn apply(self, core: &mut Core, now: i64) -> Result<GroupView, RegistryError> {
        let id = self.id;
        core.own_instance(&format!("group {id}"), id.instance())?;
        if core.state.groups.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "group {id} already exists"
            )));
        }
        let record = GroupRecord {
            description: self.description.trim().to_owned(),
            members: BTreeSet::new(),
        };
        core.execute(
            vec![Change::PutGroup(id.clone(), record.clone())],
            audit(
                "group.add",
                json!({"id": id, "description": record.description}),
            ),
            false,
            now,
        )?;
        Ok(group_view(&id, &record))
    }
    fn text(&self, group: &GroupView) -> String {
        group_text(group)
    }
}

/// `DELETE /admin/v1/groups/{id}` (204).
#[derive(Debug, Clone)]
pub struct RemoveGroup {
    pub id: GlobalGroupId,
}

impl Endpoint for RemoveGroup {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/groups/{id}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    type Path = GlobalGroupId;
    type Body = ();
    type Response = ();

    fn from_wire(id: GlobalGroupId, (): ()) -> Self {
        Self { id }
    }
    fn to_wire(&self) -> (GlobalGroupId, ()) {
        (self.id.clone(), ())
    }
}

impl AdminOp for RemoveGroup {
    fn apply(self, core: &mut Core, now: i64) -> Result<(), RegistryError> {
        let id = self.id;
        if !core.state.groups.contains_key(&id) {
            return Err(not_found(format!("group {id}")));
        }
        core.execute(
            vec![Change::DeleteGroup(id.clone())],
            audit("group.remove", json!({"id": id})),
            false,
            now,
        )
    }
    fn text(&self, (): &()) -> String {
        format!("removed group {}\n", self.id)
    }
}

/// `PUT /admin/v1/groups/{id}/members/{subsystem}`: adding a member that is already there
/// changes nothing.
#[derive(Debug, Clone)]
pub struct AddGroupMember {
    pub group: GlobalGroupId,
    pub subsystem: SubsystemId,
}

impl Endpoint for AddGroupMember {
    const METHOD: Method = Method::PUT;
    const PATH: &'static str = "/groups/{id}/members/{subsystem}";
    type Path = (GlobalGroupId, SubsystemId);
    type Body = ();
    type Response = GroupView;

    fn from_wire((group, subsystem): Self::Path, (): ()) -> Self {
        Self { group, subsystem }
    }
    fn to_wire(&self) -> (Self::Path, ()) {
        ((self.group.clone(), self.subsystem.clone()), ())
    }
}

impl AdminOp for AddGroupMember {
    fn apply(self, core: &mut Core, now: i64) -> Result<GroupView, RegistryError> {
        core.set_group_member(&self.group, &self.subsystem, true, now)
    }
    fn text(&self, group: &GroupView) -> String {
        group_text(group)
    }
}

/// `DELETE /admin/v1/groups/{id}/members/{subsystem}`
#[derive(Debug, Clone)]
pub struct RemoveGroupMember {
    pub group: GlobalGroupId,
    pub subsystem: SubsystemId,
}

impl Endpoint for RemoveGroupMember {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/groups/{id}/members/{subsystem}";
    type Path = (GlobalGroupId, SubsystemId);
    type Body = ();
    type Response = GroupView;

    fn from_wire((group, subsystem): Self::Path, (): ()) -> Self {
        Self { group, subsystem }
    }
    fn to_wire(&self) -> (Self::Path, ()) {
        ((self.group.clone(), self.subsystem.clone()), ())
    }
}

impl AdminOp for RemoveGroupMember {
    fn apply(self, core: &mut Core, now: i64) -> Result<GroupView, RegistryError> {
        core.set_group_member(&self.group, &self.subsystem, false, now)
    }
    fn text(&self, group: &GroupView) -> String {
        group_text(group)
    }
}

impl Core {
    fn set_group_member(
        &mut self,
        group: &GlobalGroupId,
        subsystem: &SubsystemId,
        member: bool,
        now: i64,
    ) -> Result<GroupView, RegistryError> {
        let mut record = self
            .state
            .groups
            .get(group)
            .cloned()
            .ok_or_else(|| not_found(format!("group {group}")))?;
        if member {
            if !self.state.subsystems.contains_key(subsystem) {
                return Err(not_found(format!("subsystem {subsystem}")));
            }
            if !record.members.insert(subsystem.clone()) {
                return Ok(group_view(group, &record));
            }
        } else if !record.members.remove(subsystem) {
            return Err(RegistryError::NotFound(format!(
                "subsystem {subsystem} is not a member of group {group}"
            )));
        }
        let action = if member {
            "group.add-member"
        } else {
            "group.remove-member"
        };
        self.execute(
            vec![Change::PutGroup(group.clone(), record.clone())],
            audit(action, json!({"group": group, "subsystem": subsystem})),
            false,
            now,
        )?;
        Ok(group_view(group, &record))
    }
}

fn group_view(id: &GlobalGroupId, g: &GroupRecord) -> GroupView {
    GroupView {
        id: id.clone(),
        description: g.description.clone(),
        members: g.members.iter().cloned().collect(),
    }
}

fn group_text(g: &GroupView) -> String {
    let mut s = format!("{}  {:?}\n", g.id, g.description);
    for m in &g.members {
        s += &format!("  member {m}\n");
    }
    s
}
