//! How each hosted subsystem's information systems must connect to the client proxy
//! ([`crate::client_auth`]).

use globalconf::ClientId;
use http::Method;
use serde::{Deserialize, Serialize};

use super::{Added, AdminOp, Endpoint, Input, PlainEndpoint};
use crate::admin::{Admin, AdminError, on_serverconf};
use crate::client_auth::ClientAuth;

/// `GET /v1/client-auth`: every subsystem's rule (the others have the default).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListClientAuth;

impl PlainEndpoint for ListClientAuth {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/client-auth";
    type Response = Vec<ClientAuth>;
}

impl AdminOp for ListClientAuth {
    async fn apply(self, admin: &Admin) -> Result<Vec<ClientAuth>, AdminError> {
        Ok(admin.serverconf.snapshot().client_auth.clone())
    }
    fn text(&self, rules: &Vec<ClientAuth>) -> String {
        if rules.is_empty() {
            return "no rules: hosted subsystems use the default (plain HTTP on a server of one \
                    member, a registered client certificate on a server of several)\n"
                .into();
        }
        rules.iter().map(|r| describe(r) + "\n").collect()
    }
}

/// `POST /v1/client-auth` with a [`ClientAuth`]: sets the subsystem's rule, replacing any
/// (201 when it had none, else 200).
#[derive(Debug, Clone)]
pub struct SetClientAuth(pub ClientAuth);

impl Endpoint for SetClientAuth {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/client-auth";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = ClientAuth;
    type Response = Added<ClientAuth>;

    fn from_wire((): (), rule: ClientAuth) -> Self {
        Self(rule)
    }
    fn to_wire(&self) -> ((), ClientAuth) {
        ((), self.0.clone())
    }
}

impl AdminOp for SetClientAuth {
    async fn apply(self, admin: &Admin) -> Result<Added<ClientAuth>, AdminError> {
        let stored = self.0.clone();
        let new = on_serverconf(admin, move |c| c.set_client_auth(stored)).await?;
        Ok(Added { new, value: self.0 })
    }
    fn text(&self, added: &Added<ClientAuth>) -> String {
        let verb = if added.new {
            "set"
        } else {
            "unchanged or replaced"
        };
        format!("{verb}: {}\n", describe(&self.0))
    }
}

/// `POST /v1/client-auth/remove` `{"subsystem": ...}`: removes the subsystem's rule, so it has
/// the default again (204; 404 if it had none).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveClientAuth {
    pub subsystem: ClientId,
}

impl Endpoint for RemoveClientAuth {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/client-auth/remove";
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
}

impl AdminOp for RemoveClientAuth {
    async fn apply(self, admin: &Admin) -> Result<(), AdminError> {
        if !on_serverconf(admin, move |c| c.remove_client_auth(&self.subsystem)).await? {
            return Err(AdminError::NotFound("no rule for that subsystem".into()));
        }
        Ok(())
    }
    fn text(&self, (): &()) -> String {
        format!(
            "removed the rule for {}: it has the default again\n",
            self.subsystem
        )
    }
}

fn describe(r: &ClientAuth) -> String {
    let mut line = format!("{}  {}", r.subsystem, r.connection);
    for c in &r.certs {
        line.push_str(&format!("  {c}"));
    }
    line
}
