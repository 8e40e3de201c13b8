#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The browser harness tested on itself: a real headless Chromium fills in a form on a tiny app on
//! loopback, follows a 303 redirect with a cookie, and shows a UTF-8 greeting; a second browser
//! started alongside has its own profile and so no cookie.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use integration_tests::webdriver::{Browser, WebDriverError};
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>お名前</title></head>
<body>
<form id="f" method="post" action="/hello">
  <label for="name">Name</label> <input id="name" name="name">
  <button id="submit" type="submit">Send</button>
</form>
</body></html>"#;

/// `GET /` shows the form; `POST /hello` keeps the name in a cookie and redirects (303) to
/// `GET /greeting`, which greets by the cookie's name, or says it knows nobody.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { Html(FORM_PAGE) }))
        .route("/hello", axum::routing::post(hello))
        .route("/greeting", get(greeting))
}

async fn hello(body: Bytes) -> Response {
    // The form field stays percent-encoded in the cookie: cookie values must be ASCII.
    let encoded = form_field(&body, "name").unwrap_or_default();
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/greeting".to_owned()),
            (
                header::SET_COOKIE,
                format!("name={encoded}; Path=/; HttpOnly; SameSite=Lax"),
            ),
        ],
    )
        .into_response()
}

async fn greeting(headers: HeaderMap) -> Html<String> {
    let name = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("name="))
        .map(form_decode);
    let body = match name {
        Some(name) => format!(r#"<p id="greeting">Hello, {}</p>"#, escape(&name)),
        None => r#"<p id="nobody">Who are you?</p>"#.to_owned(),
    };
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Greeting</title></head><body>{body}</body></html>"#
    ))
}

/// The still-encoded value of `field` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], field: &str) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
        .map(str::to_owned)
}

/// A form value's text: `+` is a space (a literal `+` arrives as `%2B`), then percent-decoding.
fn form_decode(encoded: &str) -> String {
    percent_decode_str(&encoded.replace('+', " "))
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_submits_a_form_follows_the_redirect_and_keeps_the_cookie_to_itself() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, shutdown) = runtime::Shutdown::new();
    let server = tokio::spawn(runtime::serve_http(listener, None, app(), shutdown.wait()));

    let browser = Browser::start().await.expect("chromium starts");
    browser.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "お名前");
    let form = browser.find("form#f").await.unwrap();
    assert_eq!(form.find_all("input, button").await.unwrap().len(), 2);
    let input = form.find("#name").await.unwrap();
    assert_eq!(
        input.attribute("name").await.unwrap().as_deref(),
        Some("name")
    );
    assert_eq!(input.attribute("data-missing").await.unwrap(), None);
    assert!(browser.find_all("#greeting").await.unwrap().is_empty());
    match browser.find("#greeting").await {
        Err(WebDriverError::Command { error, .. }) => assert_eq!(error, "no such element"),
        other => panic!("expected no such element, got {other:?}"),
    }

    input.send_keys("山田 太郎").await.unwrap();
    assert_eq!(input.property("value").await.unwrap(), "山田 太郎");
    assert_eq!(input.attribute("value").await.unwrap(), None);
    browser
        .find("#submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let greeting = browser.wait_for("#greeting", WAIT).await.unwrap();
    assert_eq!(greeting.text().await.unwrap(), "Hello, 山田 太郎");
    assert_eq!(
        browser.current_url().await.unwrap(),
        format!("{base}/greeting")
    );
    assert!(browser.page_source().await.unwrap().contains("山田 太郎"));

    // A second browser, while the first is still open: its own profile, so no cookie.
    let stranger = Browser::start().await.expect("a second chromium starts");
    stranger.goto(&format!("{base}/greeting")).await.unwrap();
    let nobody = stranger.wait_for("#nobody", WAIT).await.unwrap();
    assert_eq!(nobody.text().await.unwrap(), "Who are you?");
    assert!(stranger.find_all("#greeting").await.unwrap().is_empty());

    // The first still has it.
    browser.goto(&format!("{base}/greeting")).await.unwrap();
    let again = browser.wait_for("#greeting", WAIT).await.unwrap();
    assert_eq!(again.text().await.unwrap(), "Hello, 山田 太郎");

    stranger.close().await.unwrap();
    browser.close().await.unwrap();
    stop.trigger();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn wait_for_gives_up_with_a_timeout_error() {
    let browser = Browser::start().await.expect("chromium starts");
    browser.goto("about:blank").await.unwrap();
    match browser.wait_for("#never", Duration::from_millis(300)).await {
        Err(WebDriverError::Timeout { css, .. }) => assert_eq!(css, "#never"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    browser.close().await.unwrap();
}
