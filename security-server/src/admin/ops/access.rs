//! Access rights to the services: deny by default.

use exchange::access::Grant;
use http::Method;
use serde::{Deserialize, Serialize};

use super::{Added, AdminOp, Endpoint, Input, PlainEndpoint};
use crate::admin::{Admin, AdminError, on_serverconf};

/// `GET /v1/access`: every grant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListAccess;

impl PlainEndpoint for ListAccess {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/access";
    type Response = Vec<Grant>;
}

impl AdminOp for ListAccess {
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

impl Endpoint for GrantAccess {
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
}

impl AdminOp for GrantAccess {
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

impl Endpoint for RevokeAccess {
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
}

impl AdminOp for RevokeAccess {
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

fn describe_grant(g: &Grant) -> String {
    format!(
        "{}  to {}  {} {}",
        g.service,
        g.subject,
        g.method.as_ref().map_or("any method", |m| m.as_str()),
        g.path.as_deref().unwrap_or("(whole service)")
    )
}
