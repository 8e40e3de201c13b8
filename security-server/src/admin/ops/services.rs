//! The services this server provides for its hosted subsystems.

use globalconf::ServiceId;
use http::Method;
use serde::{Deserialize, Serialize};

use super::{Added, AdminOp, Endpoint, Input, PlainEndpoint};
use crate::admin::{Admin, AdminError, on_serverconf};
use crate::serverconf::ServiceEntry;

/// `GET /v1/services`: every service, in identifier order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ListServices;

impl PlainEndpoint for ListServices {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/services";
    type Response = Vec<ServiceEntry>;
}

impl AdminOp for ListServices {
    async fn apply(self, admin: &Admin) -> Result<Vec<ServiceEntry>, AdminError> {
        Ok(admin
            .serverconf
            .snapshot()
            .services
            .values()
            .cloned()
            .collect())
    }
    fn text(&self, services: &Vec<ServiceEntry>) -> String {
        if services.is_empty() {
            return "no services\n".into();
        }
        services
            .iter()
            .map(|s| describe_service(s) + "\n")
            .collect()
    }
}

/// `POST /v1/services` with a [`ServiceEntry`]: adds a service or replaces the one with its
/// identifier (201 when new, else 200).
#[derive(Debug, Clone)]
pub struct AddService(pub ServiceEntry);

impl Endpoint for AddService {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/v1/services";
    const INPUT: Input = Input::Json;
    type Path = ();
    type Body = ServiceEntry;
    type Response = Added<ServiceEntry>;

    fn from_wire((): (), entry: ServiceEntry) -> Self {
        Self(entry)
    }
    fn to_wire(&self) -> ((), ServiceEntry) {
        ((), self.0.clone())
    }
}

impl AdminOp for AddService {
    async fn apply(self, admin: &Admin) -> Result<Added<ServiceEntry>, AdminError> {
        let stored = self.0.clone();
        let new = on_serverconf(admin, move |c| c.add_service(stored)).await?;
        Ok(Added { new, value: self.0 })
    }
    fn text(&self, added: &Added<ServiceEntry>) -> String {
        let verb = if added.new { "added" } else { "replaced" };
        format!("{verb} service {}\n", describe_service(&self.0))
    }
}

/// `DELETE /v1/services/{id}`: removes a service and its grants (204; 404 if there was none).
#[derive(Debug, Clone)]
pub struct RemoveService {
    pub id: ServiceId,
}

impl Endpoint for RemoveService {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/v1/services/{*id}";
    type Path = ServiceId;
    type Body = ();
    type Response = ();

    fn from_wire(id: ServiceId, (): ()) -> Self {
        Self { id }
    }
    fn to_wire(&self) -> (ServiceId, ()) {
        (self.id.clone(), ())
    }
}

impl AdminOp for RemoveService {
    async fn apply(self, admin: &Admin) -> Result<(), AdminError> {
        let id = self.id.clone();
        if !on_serverconf(admin, move |c| c.remove_service(&id)).await? {
            return Err(AdminError::NotFound(format!("no service {}", self.id)));
        }
        Ok(())
    }
    fn text(&self, (): &()) -> String {
        format!("removed service {} and its grants\n", self.id)
    }
}

fn describe_service(s: &ServiceEntry) -> String {
    let openapi = s
        .openapi
        .as_ref()
        .map(|doc| format!("  openapi {} bytes", doc.len()))
        .unwrap_or_default();
    format!("{}  {}  timeout {} s{openapi}", s.id, s.url, s.timeout_secs)
}
