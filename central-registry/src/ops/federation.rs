//! Federation agreements (DESIGN §3): the other instances this one is federated with, each
//! with the anchor its operator handed over. The registry publishes them in its configuration;
//! security servers then fetch and verify each one's configuration under that anchor.

use globalconf::{Anchor, InstanceId};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, Endpoint, Input, JsonReply, PlainEndpoint, audit, not_found};
use crate::error::RegistryError;
use crate::state::FederationRecord;
use crate::store::Change;

/// A federated instance as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationView {
    pub instance: InstanceId,
    /// SHA-256 of the anchor's canonical form: what the two operators compare out of band.
    pub fingerprint: String,
    pub registry_urls: Vec<String>,
    pub added_at: i64,
}

/// What [`AddFederation`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationAdded {
    #[serde(flatten)]
    pub federation: FederationView,
    /// Whether it replaced another anchor of the same instance.
    pub replaced: bool,
    /// Whether the registry held this very anchor already (nothing changed).
    pub unchanged: bool,
}

impl JsonReply for FederationView {}
impl JsonReply for FederationAdded {}

fn view(instance: &InstanceId, record: &FederationRecord) -> Result<FederationView, RegistryError> {
    let anchor = Anchor::parse(&record.anchor).map_err(|e| {
        RegistryError::Internal(format!("the stored anchor of {instance} is unusable: {e}"))
    })?;
    Ok(FederationView {
        instance: instance.clone(),
        fingerprint: fingerprint(&anchor)?,
        registry_urls: anchor.registry_urls().to_vec(),
        added_at: record.added_at,
    })
}

fn fingerprint(anchor: &Anchor) -> Result<String, RegistryError> {
    anchor
        .fingerprint()
        .map_err(|e| RegistryError::Internal(e.to_string()))
}

fn view_text(v: &FederationView) -> String {
    format!(
        "{}  fingerprint {}  registries {}\n",
        v.instance,
        v.fingerprint,
        v.registry_urls.join(", ")
    )
}

/// `GET /admin/v1/federations`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListFederations;

impl PlainEndpoint for ListFederations {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/federations";
    type Response = Vec<FederationView>;
}

impl AdminOp for ListFederations {
    fn apply(self, core: &mut Core, _now: i64) -> Result<Vec<FederationView>, RegistryError> {
        core.state
            .federated
            .iter()
            .map(|(id, r)| view(id, r))
            .collect()
    }
    fn text(&self, list: &Vec<FederationView>) -> String {
        if list.is_empty() {
            return "not federated with any instance\n".to_owned();
        }
        list.iter().map(view_text).collect()
    }
}

/// `POST /admin/v1/federations` `{"anchor": "…the other instance's anchor file…"}` (201):
/// federates with the anchor's instance, or replaces the anchor held for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFederation {
    pub anchor: String,
}

impl Endpoint for AddFederation {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/federations";
    const STATUS: StatusCode = StatusCode::CREATED;
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = Self;
    type Response = FederationAdded;

    fn from_wire((): (), body: Self) -> Self {
        body
    }
    fn to_wire(&self) -> ((), Self) {
        ((), self.clone())
    }
}

impl AdminOp for AddFederation {
    fn apply(self, core: &mut Core, now: i64) -> Result<FederationAdded, RegistryError> {
        let anchor = Anchor::parse(&self.anchor)
            .map_err(|e| RegistryError::BadRequest(format!("not a usable anchor: {e}")))?;
        let instance = anchor.instance().clone();
        if instance == core.instance {
            return Err(RegistryError::BadRequest(format!(
                "the anchor is of instance {instance}, which this registry serves: an instance \
                 is not federated with itself"
            )));
        }
        let canonical = anchor
            .to_toml()
            .map_err(|e| RegistryError::BadRequest(e.to_string()))?;
        let previous = core.state.federated.get(&instance).cloned();
        if let Some(p) = &previous
            && p.anchor == canonical
        {
            return Ok(FederationAdded {
                federation: view(&instance, p)?,
                replaced: false,
                unchanged: true,
            });
        }
        let record = FederationRecord {
            anchor: canonical,
            added_at: now,
        };
        let fingerprint = fingerprint(&anchor)?;
        core.execute(
            vec![Change::PutFederation(instance.clone(), record.clone())],
            audit(
                "federation.add",
                json!({
                    "instance": instance,
                    "fingerprint": fingerprint,
                    "replaced": previous.is_some(),
                }),
            ),
            false,
            now,
        )?;
        Ok(FederationAdded {
            federation: view(&instance, &record)?,
            replaced: previous.is_some(),
            unchanged: false,
        })
    }
    fn text(&self, a: &FederationAdded) -> String {
        let what = if a.unchanged {
            "already federated with"
        } else if a.replaced {
            "replaced the anchor of"
        } else {
            "federated with"
        };
        format!(
            "{what} instance {}\nanchor fingerprint: {}\nregistries: {}\n",
            a.federation.instance,
            a.federation.fingerprint,
            a.federation.registry_urls.join(", ")
        )
    }
    fn notice(&self, a: &FederationAdded) -> Option<String> {
        Some(format!(
            "Compare the fingerprint with the one {}'s operator reads from \
             `central-registry federation fingerprint`, over a channel you trust, before relying \
             on it; `federation remove {}` ends the federation.",
            a.federation.instance, a.federation.instance
        ))
    }
}

/// `DELETE /admin/v1/federations/{instance}` (204): ends the federation; servers stop
/// exchanging with the instance at the next configuration.
#[derive(Debug, Clone)]
pub struct RemoveFederation {
    pub instance: InstanceId,
}

impl Endpoint for RemoveFederation {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/federations/{instance}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    type Path = InstanceId;
    type Body = ();
    type Response = ();

    fn from_wire(instance: InstanceId, (): ()) -> Self {
        Self { instance }
    }
    fn to_wire(&self) -> (InstanceId, ()) {
        (self.instance.clone(), ())
    }
}

impl AdminOp for RemoveFederation {
    fn apply(self, core: &mut Core, now: i64) -> Result<(), RegistryError> {
        let instance = self.instance;
        if !core.state.federated.contains_key(&instance) {
            return Err(not_found(format!("a federation with instance {instance}")));
        }
        core.execute(
            vec![Change::DeleteFederation(instance.clone())],
            audit("federation.remove", json!({ "instance": instance })),
            false,
            now,
        )
    }
    fn text(&self, (): &()) -> String {
        format!(
            "ended the federation with instance {}: servers stop exchanging with it at the next configuration\n",
            self.instance
        )
    }
}
