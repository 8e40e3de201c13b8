//! Calls from the provider's security server to the provider's information system: plain HTTP on
//! the organisation's network, a per-service timeout, bodies streamed (the answer read into the
//! [`Spool`], up to `exchange.max_body_bytes`), and no redirects followed.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyDataStream;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use exchange::message::VerifiedRequest;
use exchange::{Authorized, ServerProxyCode, XRoadError, rest};

use crate::serverconf::ServiceEntry;
use crate::spool::{MessageBody, ReadError, Room, Spool};

/// What the provider's information system answered.
#[derive(Debug)]
pub struct BackendResponse {
    pub status: StatusCode,
    /// Pass-through headers (filtered as the protocol requires).
    pub headers: Vec<(String, String)>,
    pub body: MessageBody,
}

/// A pooled HTTP client for provider information systems.
#[derive(Debug, Clone)]
pub struct Backend {
    client: Client<HttpConnector, axum::body::Body>,
    spool: Spool,
}

impl Backend {
    /// Answers are read into `spool`.
    pub fn new(spool: Spool) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self { client, spool }
    }

    /// The URL of one call: the service's base URL, then the request's path and query.
    pub fn url(entry: &ServiceEntry, request: &VerifiedRequest) -> String {
        let mut url = entry.url.trim_end_matches('/').to_owned();
        if request.path().is_empty() && entry.url.ends_with('/') {
            url.push('/');
        }
        url.push_str(request.path());
        if let Some(q) = request.query().filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    /// Calls the provider's information system with a request the access rights allow.
    pub async fn call(
        &self,
        entry: &ServiceEntry,
        authorized: Authorized<'_>,
        body: MessageBody,
    ) -> Result<BackendResponse, XRoadError> {
        let request = authorized.request();
        let failed = |msg: String| XRoadError::new(ServerProxyCode::ServiceFailed, msg);
        let url = Self::url(entry, request);
        let method = Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|_| failed("unsupported method".into()))?;
        let mut builder = Request::builder().method(method).uri(&url);
        let headers = builder
            .headers_mut()
            .ok_or_else(|| failed(format!("invalid service URL {url:?}")))?;
        authorized
            .provider_request_headers(headers)
            .map_err(|e| failed(format!("cannot pass header: {e}")))?;
        let outgoing = builder
            .body(body.into_http())
            .map_err(|e| failed(format!("invalid request to {url}: {e}")))?;

        let timeout = Duration::from_secs(entry.timeout_secs);
        let call = async {
            let response = self.client.request(outgoing).await.map_err(|e| {
                failed(format!(
                    "cannot reach the provider's information system for {}: {}",
                    entry.id,
                    runtime::error_chain(&e)
                ))
            })?;
            let (parts, incoming) = response.into_parts();
            // The length the body will have (not the header's: an answer to HEAD has none).
            let declared = hyper::body::Body::size_hint(&incoming).exact();
            let body = self
                .spool
                // The request's body may hold room in the budget: never wait for more.
                .read((declared, Room::OrSpool), BodyDataStream::new(incoming))
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge(max) => {
                        failed(format!("the provider's answer is larger than {max} bytes"))
                    }
                    ReadError::Broken(m) => failed(format!("the provider's answer broke off: {m}")),
                    ReadError::Storage(e) => {
                        tracing::error!(error = %e, "a response body could not be spooled");
                        XRoadError::new(
                            ServerProxyCode::InternalError,
                            "the response body could not be spooled to disk",
                        )
                    }
                })?;
            Ok::<_, XRoadError>((parts.status, parts.headers, body))
        };
        let (status, headers, body) =
            tokio::time::timeout(timeout, call).await.map_err(|_| {
                XRoadError::new(
                    ServerProxyCode::ServiceTimeout,
                    format!("the provider's information system did not answer within {timeout:?}"),
                )
            })??;
        Ok(BackendResponse {
            status,
            headers: rest::filter_headers(&headers).map_err(|e| failed(e.to_string()))?,
            body,
        })
    }
}
