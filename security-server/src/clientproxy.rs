//! The client proxy: where an organisation's information systems call, with X-Road's REST
//! protocol (DESIGN §5.1).
//!
//! Every request first needs a usable global configuration: a server whose configuration is
//! missing or expired refuses with `Server.ClientProxy.OutdatedGlobalConf`, as X-Road does.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::confclient::ConfClient;
use crate::error::XRoadError;

#[derive(Debug, Clone)]
pub struct ClientProxy {
    conf: Arc<ConfClient>,
}

impl ClientProxy {
    pub fn new(conf: Arc<ConfClient>) -> Self {
        Self { conf }
    }

    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

async fn handle(State(proxy): State<ClientProxy>, request: Request) -> Response {
    let message_id = request
        .headers()
        .get("x-road-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let result = proxy
        .conf
        .valid_now()
        .map_err(XRoadError::outdated_globalconf);
    let error = match result {
        Err(e) => e,
        Ok(_conf) => XRoadError::client_proxy(
            "ServiceFailed",
            "message exchange is not available on this server yet",
        ),
    };
    match message_id {
        Some(id) => error.with_id(id).into_response(),
        None => error.into_response(),
    }
}
