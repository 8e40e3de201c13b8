//! Small HTTP(S) clients with a timeout and a bounded response body: polling registries and
//! peers, and the admin command-line tools. (The message exchange has its own transport.)

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid request: {0}")]
    Request(String),
    #[error("cannot reach {url}: {message}")]
    Connect { url: String, message: String },
    #[error("no answer from {0} in time")]
    Timeout(String),
    #[error("answer from {url} is too large or broken: {message}")]
    Body { url: String, message: String },
}

/// A response: status, content type and the whole (bounded) body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, Clone)]
enum Inner {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// An HTTP client: plain (loopback admin APIs) or HTTPS with a given rustls configuration.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Inner,
    timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

    /// Plain HTTP only.
    pub fn plain() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Self::DEFAULT_TIMEOUT));
        Self {
            inner: Inner::Plain(Client::builder(TokioExecutor::new()).build(connector)),
            timeout: Self::DEFAULT_TIMEOUT,
            max_body: Self::DEFAULT_MAX_BODY,
        }
    }

    /// HTTPS only, trusting what `tls` trusts. ALPN is negotiated by the connector (h2, then
    /// http/1.1), so any protocols preset in `tls` are replaced.
    pub fn https(mut tls: rustls::ClientConfig) -> Self {
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Self::DEFAULT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Self {
            inner: Inner::Tls(Client::builder(TokioExecutor::new()).build(connector)),
            timeout: Self::DEFAULT_TIMEOUT,
            max_body: Self::DEFAULT_MAX_BODY,
        }
    }

    /// Whether it speaks HTTPS ([`HttpClient::https`]).
    pub fn is_https(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    pub async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Response, ClientError> {
        self.send(Method::GET, url, bearer, None).await
    }

    pub async fn delete(&self, url: &str, bearer: Option<&str>) -> Result<Response, ClientError> {
        self.send(Method::DELETE, url, bearer, None).await
    }

    pub async fn post(
        &self,
        url: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: Bytes,
    ) -> Result<Response, ClientError> {
        self.send(Method::POST, url, bearer, Some((content_type, body)))
            .await
    }

    pub async fn post_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        value: &serde_json::Value,
    ) -> Result<Response, ClientError> {
        let body = serde_json::to_vec(value).map_err(|e| ClientError::Request(e.to_string()))?;
        self.post(url, bearer, "application/json", body.into())
            .await
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        body: Option<(&str, Bytes)>,
    ) -> Result<Response, ClientError> {
        let token = bearer.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(t) = &token {
            headers.push(("authorization", t));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                headers.push(("content-type", content_type));
                bytes
            }
            None => Bytes::new(),
        };
        self.request(method, url, &headers, body).await
    }

    /// A request with arbitrary headers (names and values as given).
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let exchange = async {
            let response = match &self.inner {
                Inner::Plain(c) => c.request(request).await,
                Inner::Tls(c) => c.request(request).await,
            }
            .map_err(|e| ClientError::Connect {
                url: url.to_owned(),
                message: error_chain(&e),
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| ClientError::Body {
                    url: url.to_owned(),
                    message: e.to_string(),
                })?
                .to_bytes();
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok(Response {
                status: parts.status,
                content_type,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(url.to_owned()))?
    }
}

/// The whole `source()` chain in one line, joined by `: `, each cause said once: one whose text
/// the line already holds (a message that quotes its source) is left out. Hyper's top-level
/// errors say little on their own; the CLIs print their errors this way too.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cur = inner.source();
    }
    line
}
