//! Resident transparency: suppression rules that hide or delay a client's accesses.

use http::Method;
use serde::{Deserialize, Serialize};

use super::{Added, AdminOp, Endpoint, Input, PlainEndpoint};
use crate::admin::{Admin, AdminError, on_serverconf};
use crate::usage::{SuppressedClient, Suppression};

/// `GET /v1/suppressions`: every suppression rule (resident transparency).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListSuppressions;

impl PlainEndpoint for ListSuppressions {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/suppressions";
    type Response = Vec<Suppression>;
}

impl AdminOp for ListSuppressions {
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

impl Endpoint for AddSuppression {
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
}

impl AdminOp for AddSuppression {
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

impl Endpoint for RemoveSuppression {
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
}

impl AdminOp for RemoveSuppression {
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

fn describe_suppression(r: &Suppression) -> String {
    let what = match r.delay_secs {
        None => "hidden".to_owned(),
        Some(d) => format!("delayed {d} s ({:.1} days)", d as f64 / 86_400.0),
    };
    format!("{}  {what}  reason: {}", r.client, r.reason)
}
