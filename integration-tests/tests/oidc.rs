//! The resident portal's OpenID Connect login against a real provider: `oidc-provider` from the
//! npm registry (installed by `scripts/install-browser`), run with Debian's Node.js, and a real
//! headless Chromium going through its login and consent screens. Two portal instances share
//! one session key, as behind a load balancer: a resident who logged in on one reads the
//! timeline on the other. A session cookie changed by one character is no session. One resident,
//! many identifiers: the portal knows the resident by the provider's `resident_id` claim
//! (`jp-131016000001`), and asks Chiyoda City, whose records know residents by another
//! identifier, by the login's `sub` (`131016000001`), as its `[[identifiers]]` rule says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::webdriver::Browser;
use resident_portal::{Config, IdentifierRule, LoginConfig, LoginKind};
use sandbox::FederationSpec;
use tokio::io::AsyncBufReadExt as _;

const PORTAL: &str = "JP/GOV/digital-agency/portal";
/// The login name at the provider: its `sub`, and Chiyoda City's identifier of the resident.
const RESIDENT: &str = "131016000001";
/// The provider's `resident_id` claim for that login: the portal's identifier of the resident.
const RESIDENT_ID: &str = "jp-131016000001";
const WAIT: Duration = Duration::from_secs(30);

/// `oidc-provider` on a free loopback port, until dropped.
struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

async fn provider(client_secret: &str, redirect_url: &str) -> Provider {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("js/oidc-provider.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .args(["portal", client_secret, redirect_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/install-browser installs Node.js and oidc-provider)");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let issuer = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(issuer) = line.strip_prefix("issuer ") {
                return issuer.to_owned();
            }
        }
        panic!("the provider stopped before it served");
    })
    .await
    .expect("the provider starts");
    Provider {
        issuer,
        _child: child,
    }
}

/// A portal instance on `listener`, logging residents in at `issuer`.
fn portal_config(
    listener: &tokio::net::TcpListener,
    security_server: String,
    issuer: &str,
    redirect_url: &str,
    dir: &Path,
) -> Config {
    Config {
        listen: listener.local_addr().unwrap(),
        security_server,
        client: Some(PORTAL.parse().unwrap()),
        session_key_file: Some(dir.join("session.key")),
        identifiers: vec![IdentifierRule {
            members: vec!["JP/MUN/131016".parse().unwrap()],
            claim: "sub".into(),
        }],
        login: LoginConfig {
            kind: Some(LoginKind::Oidc),
            issuer: Some(issuer.to_owned()),
            client_id: Some("portal".into()),
            client_secret_file: Some(dir.join("client-secret")),
            redirect_url: Some(redirect_url.to_owned()),
            resident_claim: Some("resident_id".into()),
            scopes: vec!["resident".into()],
            ..LoginConfig::default()
        },
        ..Config::default()
    }
}

/// The resident the page says is logged in.
async fn shown_resident(browser: &Browser) -> String {
    browser
        .find("#resident-id")
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resident_logs_in_through_a_real_openid_provider_and_another_instance_serves_the_session()
{
    let (_fed_dir, f) = integration_tests::start_federation(
        FederationSpec::sandbox(),
        Arc::new(certs::SystemClock),
    )
    .await;
    let security_server = f
        .server("JP/GOV/digital-agency/ss1")
        .unwrap()
        .client_proxy_url()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = "a client secret for the test";
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first_url = format!("http://{}", first.local_addr().unwrap());
    let second_url = format!("http://{}", second.local_addr().unwrap());
    let redirect_url = format!("{first_url}/login/callback");
    let op = provider(secret, &redirect_url).await;

    let (stop, shutdown) = runtime::Shutdown::new();
    let mut instances = Vec::new();
    for listener in [first, second] {
        let config = portal_config(
            &listener,
            security_server.clone(),
            &op.issuer,
            &redirect_url,
            dir.path(),
        );
        let shutdown = shutdown.clone();
        instances.push(tokio::spawn(async move {
            resident_portal::serve(listener, config, shutdown.wait()).await
        }));
    }
    // The session key was made once, private, and both instances read it.
    integration_tests::eventually("the session key file", || async {
        std::fs::metadata(dir.path().join("session.key"))
            .ok()
            .map(drop)
    })
    .await;
    assert_eq!(
        std::fs::metadata(dir.path().join("session.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let browser = Browser::start().await.unwrap();
    browser.goto(&first_url).await.unwrap();
    // No development form and no banner: a button to the identity provider.
    assert!(browser.find_all("#dev-login").await.unwrap().is_empty());
    browser
        .find("a#login")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The provider's own login and consent screens.
    let login = browser.wait_for("input[name=login]", WAIT).await.unwrap();
    assert!(
        browser.current_url().await.unwrap().starts_with(&op.issuer),
        "at the provider"
    );
    login.send_keys(RESIDENT).await.unwrap();
    browser
        .find("input[name=password]")
        .await
        .unwrap()
        .send_keys("any password")
        .await
        .unwrap();
    browser
        .find("button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Consent, when the provider asks for it.
    let consented = runtime::testing::within(WAIT, || async {
        if !browser.find_all("#timeline").await.unwrap().is_empty() {
            return Some(());
        }
        if browser.current_url().await.unwrap().starts_with(&op.issuer)
            && let Some(button) = browser
                .find_all("button[type=submit]")
                .await
                .unwrap()
                .into_iter()
                .next()
        {
            let _ = button.click().await;
        }
        None
    })
    .await;
    assert!(consented.is_some(), "back at the portal with a timeline");
    assert!(browser.current_url().await.unwrap().starts_with(&first_url));
    let shown = shown_resident(&browser).await;
    assert_eq!(shown, RESIDENT_ID, "the resident the provider vouched for");
    assert!(
        !browser
            .page_source()
            .await
            .unwrap()
            .contains("DEVELOPMENT LOGIN")
    );
    // Chiyoda's sample accesses, asked by `sub`: nobody recorded any for `jp-…`.
    let rows = browser.find_all("#timeline tr.access").await.unwrap();
    assert!(
        !rows.is_empty(),
        "the sample accesses of {RESIDENT} at Chiyoda City"
    );

    // The other instance serves the same session: the cookie is the browser's, sealed with
    // the shared key, and nothing of it is held by the first instance.
    browser.goto(&second_url).await.unwrap();
    browser.wait_for("#timeline", WAIT).await.unwrap();
    let shown = shown_resident(&browser).await;
    assert_eq!(shown, RESIDENT_ID);
    assert!(
        !browser
            .find_all("#timeline tr.access")
            .await
            .unwrap()
            .is_empty()
    );

    // A session cookie changed by one character is no session, on either instance.
    let cookie = browser.cookie("portal_session").await.unwrap().unwrap();
    let mut changed: Vec<char> = cookie.chars().collect();
    let i = changed.len() / 2;
    changed[i] = if changed[i] == 'A' { 'B' } else { 'A' };
    browser
        .set_cookie("portal_session", &changed.into_iter().collect::<String>())
        .await
        .unwrap();
    for url in [&first_url, &second_url] {
        browser.goto(url).await.unwrap();
        browser.wait_for("a#login", WAIT).await.unwrap();
        assert!(browser.find_all("#timeline").await.unwrap().is_empty());
    }
    let api = runtime::HttpClient::plain()
        .request(
            http::Method::GET,
            &format!("{first_url}/api/timeline"),
            &[("cookie", &format!("portal_session={cookie}x"))],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(api.status.as_u16(), 401);

    // A callback that this browser did not start is refused.
    browser
        .goto(&format!(
            "{first_url}/login/callback?code=stolen&state=guessed"
        ))
        .await
        .unwrap();
    assert!(browser.find_all("#timeline").await.unwrap().is_empty());
    assert!(
        browser
            .page_source()
            .await
            .unwrap()
            .contains("not started here"),
        "the refusal says why"
    );

    // With the session cookie back, log out: then no session on either instance.
    browser.set_cookie("portal_session", &cookie).await.unwrap();
    browser.goto(&first_url).await.unwrap();
    browser.wait_for("#timeline", WAIT).await.unwrap();
    browser
        .find("#logout")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for("a#login", WAIT).await.unwrap();
    browser.goto(&second_url).await.unwrap();
    browser.wait_for("a#login", WAIT).await.unwrap();
    assert_eq!(browser.cookie("portal_session").await.unwrap(), None);

    browser.close().await.unwrap();
    stop.trigger();
    for instance in instances {
        instance.await.unwrap().unwrap();
    }
    f.stop().await;
}
