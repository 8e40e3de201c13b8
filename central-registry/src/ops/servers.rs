//! Approved security servers: list, remove, and the subsystems each hosts.

use globalconf::{SecurityServerId, SubsystemId};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, PlainEndpoint, audit, not_found};
use crate::error::RegistryError;
use crate::ops::views::ServerView;
use crate::state::ServerRecord;
use crate::store::Change;

/// `GET /admin/v1/servers`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListServers;

impl PlainEndpoint for ListServers {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/servers";
    type Response = Vec<ServerView>;
}

impl AdminOp for ListServers {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<ServerView>, RegistryError> {
        Ok(core
            .state
            .servers
            .iter()
            .map(|(id, s)| server_view(id, s))
            .collect())
    }
    fn text(&self, servers: &Vec<ServerView>) -> String {
        servers.iter().map(server_text).collect()
    }
}

/// `DELETE /admin/v1/servers/{id}`: the server leaves the configuration (with its hosting list)
/// at the next serial, and may enrol again afterwards (204).
#[derive(Debug, Clone)]
pub struct RemoveServer {
    pub id: SecurityServerId,
}

impl Endpoint for RemoveServer {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/servers/{id}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    type Path = SecurityServerId;
    type Body = ();
    type Response = ();

    fn from_wire(id: SecurityServerId, (): ()) -> Self {
        Self { id }
    }
    fn to_wire(&self) -> (SecurityServerId, ()) {
        (self.id.clone(), ())
    }
}

impl AdminOp for RemoveServer {
    fn apply(self, core: &mut Core, now: i64) -> Result<(), RegistryError> {
        let id = self.id;
        if !core.state.servers.contains_key(&id) {
            return Err(not_found(format!("security server {id}")));
        }
        let mut changes = vec![Change::DeleteServer(id.clone())];
        if core.enrollments.contains_key(&id) {
            changes.push(Change::DeleteEnrollment(id.clone()));
        }
        core.execute(
            changes,
            audit("server.remove", json!({"id": id})),
            false,
            now,
        )
    }
    fn text(&self, (): &()) -> String {
        format!("removed security server {}\n", self.id)
    }
}

/// `PUT /admin/v1/servers/{id}/subsystems/{subsystem}`: the server hosts the subsystem; adding
/// one it already hosts changes nothing.
#[derive(Debug, Clone)]
pub struct AddHostedSubsystem {
    pub server: SecurityServerId,
    pub subsystem: SubsystemId,
}

impl Endpoint for AddHostedSubsystem {
    const METHOD: Method = Method::PUT;
    const PATH: &'static str = "/servers/{id}/subsystems/{subsystem}";
    type Path = (SecurityServerId, SubsystemId);
    type Body = ();
    type Response = ServerView;

    fn from_wire((server, subsystem): Self::Path, (): ()) -> Self {
        Self { server, subsystem }
    }
    fn to_wire(&self) -> (Self::Path, ()) {
        ((self.server.clone(), self.subsystem.clone()), ())
    }
}

impl AdminOp for AddHostedSubsystem {
    fn apply(self, core: &mut Core, now: i64) -> Result<ServerView, RegistryError> {
        core.set_hosted_subsystem(&self.server, &self.subsystem, true, now)
    }
    fn text(&self, server: &ServerView) -> String {
        server_text(server)
    }
}

/// `DELETE /admin/v1/servers/{id}/subsystems/{subsystem}`
#[derive(Debug, Clone)]
pub struct RemoveHostedSubsystem {
    pub server: SecurityServerId,
    pub subsystem: SubsystemId,
}

impl Endpoint for RemoveHostedSubsystem {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/servers/{id}/subsystems/{subsystem}";
    type Path = (SecurityServerId, SubsystemId);
    type Body = ();
    type Response = ServerView;

    fn from_wire((server, subsystem): Self::Path, (): ()) -> Self {
        Self { server, subsystem }
    }
    fn to_wire(&self) -> (Self::Path, ()) {
        ((self.server.clone(), self.subsystem.clone()), ())
    }
}

impl AdminOp for RemoveHostedSubsystem {
    fn apply(self, core: &mut Core, now: i64) -> Result<ServerView, RegistryError> {
        core.set_hosted_subsystem(&self.server, &self.subsystem, false, now)
    }
    fn text(&self, server: &ServerView) -> String {
        server_text(server)
    }
}

impl Core {
    fn set_hosted_subsystem(
        &mut self,
        server: &SecurityServerId,
        subsystem: &SubsystemId,
        hosted: bool,
        now: i64,
    ) -> Result<ServerView, RegistryError> {
        let mut record = self
            .state
            .servers
            .get(server)
            .cloned()
            .ok_or_else(|| not_found(format!("security server {server}")))?;
        if hosted {
            if !self.state.subsystems.contains_key(subsystem) {
                return Err(not_found(format!("subsystem {subsystem}")));
            }
            if !record.hosted.insert(subsystem.clone()) {
                return Ok(server_view(server, &record));
            }
        } else if !record.hosted.remove(subsystem) {
            return Err(RegistryError::NotFound(format!(
                "security server {server} does not host {subsystem}"
            )));
        }
        let action = if hosted {
            "server.add-subsystem"
        } else {
            "server.remove-subsystem"
        };
        self.execute(
            vec![Change::PutServer(server.clone(), record.clone())],
            audit(action, json!({"server": server, "subsystem": subsystem})),
            false,
            now,
        )?;
        Ok(server_view(server, &record))
    }
}

fn server_view(id: &SecurityServerId, s: &ServerRecord) -> ServerView {
    ServerView {
        id: id.clone(),
        addresses: s.addresses.clone(),
        tls_cert_sha256: hex::encode(s.tls_cert_sha256()),
        hosted_subsystems: s.hosted.iter().cloned().collect(),
    }
}

fn server_text(s: &ServerView) -> String {
    let mut text = format!("{}  {}\n", s.id, s.addresses.join(", "));
    text += &format!("  tls sha256 {}\n", s.tls_cert_sha256);
    for h in &s.hosted_subsystems {
        text += &format!("  hosts     {h}\n");
    }
    text
}
