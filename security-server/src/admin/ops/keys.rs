//! Member signing keys this server holds: the list, and rotation ([`crate::rotation`]).

use globalconf::MemberId;
use http::Method;
use serde::{Deserialize, Serialize};

use super::{AdminOp, Endpoint, Input, PlainEndpoint};
use crate::admin::{Admin, AdminError};
use crate::rotation::{HeldKey, KeyRotation, Rotation};

fn rotation(admin: &Admin) -> Result<&KeyRotation, AdminError> {
    admin
        .rotation
        .as_deref()
        .ok_or_else(|| AdminError::NotFound("this server does not manage keys".into()))
}

/// `GET /v1/keys`: every member signing key this server holds, and what the configuration says
/// of it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListKeys;

impl PlainEndpoint for ListKeys {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/keys";
    type Response = Vec<HeldKey>;
}

impl AdminOp for ListKeys {
    async fn apply(self, admin: &Admin) -> Result<Vec<HeldKey>, AdminError> {
        Ok(rotation(admin)?.held())
    }
    fn text(&self, keys: &Vec<HeldKey>) -> String {
        keys.iter()
            .map(|k| {
                let state = match (k.listed, k.in_use) {
                    (_, true) => "in use".to_owned(),
                    (false, false) => "not listed (waits for approval)".to_owned(),
                    (true, false) => format!(
                        "listed, valid from {}{}",
                        runtime::time::rfc3339(k.valid_from.unwrap_or_default()),
                        k.valid_until
                            .map(|u| format!(" until {}", runtime::time::rfc3339(u)))
                            .unwrap_or_default()
                    ),
                };
                let place = if k.in_module { "  (in the module)" } else { "" };
                format!(
                    "{}  {}  {state}{place}\n    public key {}\n",
                    k.member,
                    k.key_id,
                    k.public_key.to_base64()
                )
            })
            .collect()
    }
}

/// `POST /v1/keys/rotate` `{"member": ...}` (default: this server's owner): makes a new signing
/// key of the member and asks the registry to list it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    #[serde(default)]
    pub member: Option<MemberId>,
}

impl Endpoint for RotateKey {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/keys/rotate";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = RotateKey;
    type Response = Rotation;

    fn from_wire((): (), body: RotateKey) -> Self {
        body
    }
    fn to_wire(&self) -> ((), RotateKey) {
        ((), self.clone())
    }
}

impl AdminOp for RotateKey {
    async fn apply(self, admin: &Admin) -> Result<Rotation, AdminError> {
        let rotation = rotation(admin)?;
        let member = self
            .member
            .unwrap_or_else(|| rotation.server_id.owner().clone());
        rotation
            .rotate(&member)
            .await
            .map_err(|e| AdminError::RegistryFailed(e.to_string()))
    }
    fn text(&self, r: &Rotation) -> String {
        format!(
            "new signing key {} of {}: {}\n{}",
            r.key_id,
            r.member,
            r.status,
            if r.status == "pending" {
                format!(
                    "next: the registry operator runs `central-registry key approve {} {}`\n",
                    r.member, r.key_id
                )
            } else {
                String::new()
            }
        )
    }
}
