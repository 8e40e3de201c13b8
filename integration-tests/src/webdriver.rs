//! A real headless Chromium for tests, driven through ChromeDriver's W3C WebDriver HTTP API
//! (<https://www.w3.org/TR/webdriver2/>) with our own HTTP client, so no WebDriver crate is needed.
//!
//! Each [`Browser`] owns one `chromedriver` process on a loopback port it picked itself, one
//! session, and a fresh profile directory: two browsers share no cookies or storage. Chromium and
//! ChromeDriver are the Debian packages at [`CHROMIUM`] and [`CHROMEDRIVER`]; when they are missing,
//! [`Browser::start`] runs `scripts/install-browser` once before giving up.
//!
//! ```no_run
//! # async fn demo() -> Result<(), integration_tests::webdriver::WebDriverError> {
//! use std::time::Duration;
//! use integration_tests::webdriver::Browser;
//!
//! let browser = Browser::start().await?;
//! browser.goto("http://127.0.0.1:8080/").await?;
//! browser.find("#name").await?.send_keys("山田").await?;
//! browser.find("button[type=submit]").await?.click().await?;
//! let greeting = browser.wait_for("#greeting", Duration::from_secs(10)).await?;
//! assert_eq!(greeting.text().await?, "Hello, 山田");
//! browser.close().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use runtime::{ClientError, HttpClient};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The Chromium the sessions run (Debian package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The WebDriver server (Debian package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Installs [`CHROMIUM`] and [`CHROMEDRIVER`] when they are missing.
const INSTALL_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/install-browser");

/// The W3C key under which a web element reference travels in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// What ChromeDriver prints on stdout once it listens; the port follows.
const STARTED: &str = "ChromeDriver was started successfully on port ";
/// How long ChromeDriver may take to print [`STARTED`].
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one WebDriver command may take (a navigation waits for the page to load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dropping an open [`Browser`] waits for Chromium to quit.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// Chromium's command line. Headless without a sandbox (tests may run as root in a container),
/// and without any background networking: on a machine with no way out, Chromium's own
/// connections (QUIC, component updates, sync, ...) are refused and get in the way.
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Why the browser could not do what a test asked.
#[derive(Debug)]
pub enum WebDriverError {
    /// Chromium or ChromeDriver is missing and `scripts/install-browser` could not install it.
    BrowserMissing(String),
    /// ChromeDriver did not start, or did not say on which port it listens.
    DriverStart(String),
    /// The HTTP exchange with ChromeDriver failed.
    Http(ClientError),
    /// ChromeDriver answered something that is not a WebDriver response.
    Protocol(String),
    /// A WebDriver error response (`{"value":{"error":…,"message":…}}`) to `command`, e.g.
    /// `no such element`.
    Command {
        command: String,
        error: String,
        message: String,
    },
    /// Nothing matched `css` within `waited` ([`Browser::wait_for`]).
    Timeout { css: String, waited: Duration },
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BrowserMissing(m) => write!(f, "no browser to test with: {m}"),
            Self::DriverStart(m) => write!(f, "chromedriver did not start: {m}"),
            Self::Http(e) => write!(f, "talking to chromedriver: {e}"),
            Self::Protocol(m) => write!(f, "unexpected answer from chromedriver: {m}"),
            Self::Command {
                command,
                error,
                message,
            } => write!(f, "{command}: {error}: {message}"),
            Self::Timeout { css, waited } => {
                write!(f, "no element matched {css:?} within {waited:?}")
            }
        }
    }
}

impl std::error::Error for WebDriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ClientError> for WebDriverError {
    fn from(e: ClientError) -> Self {
        Self::Http(e)
    }
}

/// One WebDriver session: where its commands go. Shared by the browser and its elements.
#[derive(Debug)]
struct Session {
    client: HttpClient,
    /// `http://127.0.0.1:PORT/session/ID`
    url: String,
}

impl Session {
    /// Sends one command (`path` below the session URL) and returns the response's `value`.
    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        command(&self.client, method, &format!("{}{path}", self.url), body).await
    }

    async fn find(self: &Arc<Self>, from: &str, css: &str) -> Result<Element, WebDriverError> {
        let value = self
            .command(Method::POST, &format!("{from}/element"), Some(by_css(css)))
            .await?;
        Element::from_reference(self, &value)
    }

    async fn find_all(
        self: &Arc<Self>,
        from: &str,
        css: &str,
    ) -> Result<Vec<Element>, WebDriverError> {
        let value = self
            .command(Method::POST, &format!("{from}/elements"), Some(by_css(css)))
            .await?;
        let Value::Array(references) = value else {
            return Err(WebDriverError::Protocol(format!(
                "find elements answered {value}"
            )));
        };
        references
            .iter()
            .map(|r| Element::from_reference(self, r))
            .collect()
    }
}

/// A headless Chromium with its own ChromeDriver and a fresh profile. [`Browser::close`] ends it;
/// dropping it unclosed (a failed test) does the same, blocking for a moment.
#[derive(Debug)]
pub struct Browser {
    session: Arc<Session>,
    driver: Child,
    port: u16,
    session_id: String,
    closed: bool,
    /// The profile directory; removed when the browser goes.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a session in a fresh profile.
    pub async fn start() -> Result<Browser, WebDriverError> {
        ensure_installed().await?;
        let profile = tempfile::Builder::new()
            .prefix("webdriver-profile-")
            .tempdir()
            .map_err(|e| WebDriverError::DriverStart(format!("profile directory: {e}")))?;
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| WebDriverError::DriverStart(format!("{CHROMEDRIVER}: {e}")))?;
        let stdout = driver.stdout.take().ok_or_else(|| {
            WebDriverError::DriverStart("chromedriver's stdout is not captured".into())
        })?;
        let port = match tokio::time::timeout(DRIVER_START_TIMEOUT, read_port(stdout)).await {
            Ok(port) => port?,
            Err(_) => {
                return Err(WebDriverError::DriverStart(format!(
                    "no {STARTED:?} line within {DRIVER_START_TIMEOUT:?}"
                )));
            }
        };

        let client = HttpClient::plain().with_timeout(COMMAND_TIMEOUT);
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
                }
            }
        });
        let root = format!("http://127.0.0.1:{port}");
        let created = command(
            &client,
            Method::POST,
            &format!("{root}/session"),
            Some(capabilities),
        )
        .await?;
        let id = created
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| WebDriverError::Protocol(format!("new session answered {created}")))?;
        Ok(Browser {
            session: Arc::new(Session {
                client,
                url: format!("{root}/session/{id}"),
            }),
            driver,
            port,
            session_id: id.to_owned(),
            closed: false,
            _profile: profile,
        })
    }

    /// Navigates to `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.session
            .command(Method::POST, "/url", Some(json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// The URL of the page shown (after redirects).
    pub async fn current_url(&self) -> Result<String, WebDriverError> {
        let value = self.session.command(Method::GET, "/url", None).await?;
        string(value, "current url")
    }

    /// The page's `<title>`.
    pub async fn title(&self) -> Result<String, WebDriverError> {
        let value = self.session.command(Method::GET, "/title", None).await?;
        string(value, "title")
    }

    /// The page's DOM serialized as HTML (not the bytes the server sent).
    pub async fn page_source(&self) -> Result<String, WebDriverError> {
        let value = self.session.command(Method::GET, "/source", None).await?;
        string(value, "page source")
    }

    /// Sets the window's size in CSS pixels (headless, the viewport's): a phone is 390 × 844.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<(), WebDriverError> {
        self.session
            .command(
                Method::POST,
                "/window/rect",
                Some(json!({ "width": width, "height": height })),
            )
            .await?;
        Ok(())
    }

    /// A PNG of what the window shows now.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        use base64::Engine as _;
        let value = self
            .session
            .command(Method::GET, "/screenshot", None)
            .await?;
        let encoded = string(value, "screenshot")?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| WebDriverError::Protocol(format!("screenshot: {e}")))
    }

    /// The value of the cookie `name` that the page's site has set (HttpOnly ones too), if any.
    pub async fn cookie(&self, name: &str) -> Result<Option<String>, WebDriverError> {
        let all = self.session.command(Method::GET, "/cookie", None).await?;
        Ok(all.as_array().and_then(|cookies| {
            cookies
                .iter()
                .find(|c| c["name"] == name)
                .and_then(|c| c["value"].as_str())
                .map(str::to_owned)
        }))
    }

    /// Sets the cookie `name` of the page's site to `value` (path `/`), as a resident could.
    pub async fn set_cookie(&self, name: &str, value: &str) -> Result<(), WebDriverError> {
        self.session
            .command(
                Method::POST,
                "/cookie",
                Some(json!({ "cookie": { "name": name, "value": value, "path": "/" } })),
            )
            .await?;
        Ok(())
    }

    /// Runs `script` (a function body; `return` gives the answer) in the page and answers what
    /// it returned. WebDriver's scripts are not the page's: its Content-Security-Policy does not
    /// apply to them.
    pub async fn execute(&self, script: &str) -> Result<Value, WebDriverError> {
        self.session
            .command(
                Method::POST,
                "/execute/sync",
                Some(json!({ "script": script, "args": [] })),
            )
            .await
    }

    /// The first element matching the CSS selector `css`; a `no such element`
    /// [`WebDriverError::Command`] when there is none.
    pub async fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        self.session.find("", css).await
    }

    /// Every element matching `css`, in document order; empty when there is none.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, WebDriverError> {
        self.session.find_all("", css).await
    }

    /// The first element matching `css`, looking again until `timeout` has passed: for what
    /// appears after a navigation, a redirect or a script. Errors other than not finding it are
    /// returned at once.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element, WebDriverError> {
        let found = runtime::testing::within(timeout, || async {
            match self.find_all(css).await {
                Ok(all) => all.into_iter().next().map(Ok),
                Err(e) => Some(Err(e)),
            }
        })
        .await;
        found.unwrap_or_else(|| {
            Err(WebDriverError::Timeout {
                css: css.to_owned(),
                waited: timeout,
            })
        })
    }

    /// Ends the session (Chromium quits), then stops ChromeDriver. The first failure is returned,
    /// but ChromeDriver is stopped in any case.
    pub async fn close(mut self) -> Result<(), WebDriverError> {
        self.closed = true;
        let ended = self.session.command(Method::DELETE, "", None).await;
        let stopped = self.driver.kill().await;
        ended?;
        stopped.map_err(|e| WebDriverError::DriverStart(format!("stopping chromedriver: {e}")))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing ChromeDriver alone would orphan Chromium (it keeps running, profile and all),
        // so an unclosed browser first ends its session the only way Drop can: a blocking
        // request. Best effort: errors are ignored, and ChromeDriver is killed in any case.
        if !self.closed {
            end_session_blocking(self.port, &self.session_id);
        }
        let _ = self.driver.start_kill();
    }
}

/// `DELETE /session/{id}` over a plain blocking socket, waiting (at most [`DROP_TIMEOUT`]) for the
/// first bytes of the answer, which ChromeDriver sends once Chromium has quit.
fn end_session_blocking(port: u16, session_id: &str) {
    let ended = || -> std::io::Result<()> {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = TcpStream::connect_timeout(&address, DROP_TIMEOUT)?;
        stream.set_write_timeout(Some(DROP_TIMEOUT))?;
        stream.set_read_timeout(Some(DROP_TIMEOUT))?;
        write!(
            stream,
            "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let _ = stream.read(&mut [0; 512])?;
        Ok(())
    };
    let _ = ended();
}

/// An element of the page, as WebDriver references it. It goes stale when the page changes.
#[derive(Debug, Clone)]
pub struct Element {
    session: Arc<Session>,
    id: String,
}

impl Element {
    fn from_reference(session: &Arc<Session>, value: &Value) -> Result<Element, WebDriverError> {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                WebDriverError::Protocol(format!("not an element reference: {value}"))
            })?;
        Ok(Element {
            session: Arc::clone(session),
            id: id.to_owned(),
        })
    }

    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// The rendered text, as a user sees it (whitespace collapsed, hidden parts left out).
    pub async fn text(&self) -> Result<String, WebDriverError> {
        let value = self
            .session
            .command(Method::GET, &self.path("/text"), None)
            .await?;
        string(value, "element text")
    }

    /// The HTML attribute as written in the markup; `None` when absent. What a user typed into
    /// an input is its `value` [`property`](Element::property), not its attribute.
    pub async fn attribute(&self, name: &str) -> Result<Option<String>, WebDriverError> {
        let value = self
            .session
            .command(Method::GET, &self.path(&format!("/attribute/{name}")), None)
            .await?;
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(WebDriverError::Protocol(format!(
                "attribute {name} answered {other}"
            ))),
        }
    }

    /// The DOM property `name` (`value`, `checked`, ...); `null` when the element has none.
    pub async fn property(&self, name: &str) -> Result<Value, WebDriverError> {
        self.session
            .command(Method::GET, &self.path(&format!("/property/{name}")), None)
            .await
    }

    /// Clicks the element's centre, scrolling it into view first. A click that submits a form
    /// returns once the next page has started loading; wait for what it shows with
    /// [`Browser::wait_for`].
    pub async fn click(&self) -> Result<(), WebDriverError> {
        self.session
            .command(Method::POST, &self.path("/click"), Some(json!({})))
            .await?;
        Ok(())
    }

    /// Types `text` into the element (focusing it first).
    pub async fn send_keys(&self, text: &str) -> Result<(), WebDriverError> {
        self.session
            .command(
                Method::POST,
                &self.path("/value"),
                Some(json!({ "text": text })),
            )
            .await?;
        Ok(())
    }

    /// The first descendant matching `css`; `no such element` when there is none.
    pub async fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        self.session.find(&self.path(""), css).await
    }

    /// Every descendant matching `css`, in document order.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, WebDriverError> {
        self.session.find_all(&self.path(""), css).await
    }
}

/// Runs `scripts/install-browser` when Chromium or ChromeDriver is missing.
async fn ensure_installed() -> Result<(), WebDriverError> {
    let present = || Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if present() {
        return Ok(());
    }
    let status = Command::new(INSTALL_SCRIPT)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| WebDriverError::BrowserMissing(format!("cannot run {INSTALL_SCRIPT}: {e}")))?;
    if !status.success() || !present() {
        return Err(WebDriverError::BrowserMissing(format!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing and {INSTALL_SCRIPT} failed ({status}); \
             install the Debian packages chromium and chromium-driver"
        )));
    }
    Ok(())
}

/// Reads ChromeDriver's stdout up to the line that names its port. The rest of the output is
/// drained in the background, so ChromeDriver never blocks on a full pipe.
async fn read_port(stdout: impl AsyncRead + Unpin + Send + 'static) -> Result<u16, WebDriverError> {
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| WebDriverError::DriverStart(format!("reading its output: {e}")))?;
        let Some(line) = line else {
            return Err(WebDriverError::DriverStart(format!(
                "it exited after printing {seen:?}"
            )));
        };
        if let Some(port) = parse_started(&line) {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return port;
        }
        seen.push(line);
    }
}

/// The port in `ChromeDriver was started successfully on port 12345.`; `None` for other lines.
fn parse_started(line: &str) -> Option<Result<u16, WebDriverError>> {
    let rest = line.trim_end().strip_prefix(STARTED)?;
    let port = rest.strip_suffix('.').unwrap_or(rest);
    Some(
        port.parse()
            .map_err(|_| WebDriverError::DriverStart(format!("no port in {line:?}"))),
    )
}

/// `{"using":"css selector","value":css}`
fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

/// Sends one WebDriver command to `url` and returns the response's `value`, or the WebDriver
/// error it carries.
async fn command(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WebDriverError> {
    let what = format!("{method} {url}");
    let (headers, body): (&[(&str, &str)], Bytes) = match body {
        Some(body) => (
            &[("content-type", "application/json; charset=utf-8")],
            Bytes::from(body.to_string()),
        ),
        None => (&[], Bytes::new()),
    };
    let response = client.request(method, url, headers, body).await?;
    let mut answer: Value = response.json().map_err(|e| {
        WebDriverError::Protocol(format!(
            "{what}: {} with a body that is not JSON ({e}): {}",
            response.status,
            response.text()
        ))
    })?;
    let value = answer
        .get_mut("value")
        .map(Value::take)
        .ok_or_else(|| WebDriverError::Protocol(format!("{what}: no value in {answer}")))?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(WebDriverError::Command {
            command: what,
            error: error.to_owned(),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    if !response.status.is_success() {
        return Err(WebDriverError::Protocol(format!(
            "{what}: {} without a WebDriver error: {value}",
            response.status
        )));
    }
    Ok(value)
}

/// A `value` that must be a string.
fn string(value: Value, what: &str) -> Result<String, WebDriverError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(WebDriverError::Protocol(format!("{what} answered {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_started_line_gives_the_port() {
        let line = "ChromeDriver was started successfully on port 42013.";
        assert_eq!(parse_started(line).and_then(Result::ok), Some(42013));
        assert!(parse_started("Only local connections are allowed.").is_none());
        assert!(matches!(
            parse_started("ChromeDriver was started successfully on port x."),
            Some(Err(WebDriverError::DriverStart(_)))
        ));
    }
}
