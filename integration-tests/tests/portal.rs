//! The resident portal (DESIGN §7) in the sandbox federation: a real headless Chromium logs in
//! as a resident and sees the accesses the sample exchanges made; the evidence of one entry
//! verifies offline; a member whose server is down is shown as unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use integration_tests::webdriver::Browser;
use integration_tests::{eventually, portal_login};
use sandbox::{Federation, FederationSpec};

const OSAKA: &str = "JP/MUN/271004/ss1";
const RECORDS: &str = "JP/MUN/131016/records";
const WELFARE: &str = "JP/MUN/271004/welfare";

async fn start() -> (tempfile::TempDir, Federation) {
    integration_tests::start_federation(FederationSpec::sandbox(), Arc::new(certs::SystemClock))
        .await
}

/// Fills in the development login form and waits for the timeline.
async fn log_in(browser: &Browser, resident: &str) {
    browser
        .find("#resident")
        .await
        .unwrap()
        .send_keys(resident)
        .await
        .unwrap();
    browser.find("#login").await.unwrap().click().await.unwrap();
    browser
        .wait_for("#timeline", Duration::from_secs(30))
        .await
        .unwrap();
}

/// Logs out and waits for the login form.
async fn log_out(browser: &Browser) {
    browser
        .find("#logout")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#dev-login", Duration::from_secs(10))
        .await
        .unwrap();
}

/// (who, what, why) of each timeline row, top to bottom.
async fn rows(browser: &Browser) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for row in browser.find_all("#timeline tr.access").await.unwrap() {
        out.push((
            row.find("td.who").await.unwrap().text().await.unwrap(),
            row.find("td.what").await.unwrap().text().await.unwrap(),
            row.find("td.why .purpose")
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        ));
    }
    out
}

/// The serious and critical accessibility problems axe-core finds on the page shown, one line
/// each (rule, impact, help, how many elements).
async fn accessibility_problems(browser: &Browser) -> Vec<String> {
    let axe = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("js/node_modules/axe-core/axe.min.js"),
    )
    .expect("axe-core (scripts/install-browser installs it)");
    let found = browser
        .execute(&format!(
            "{axe}\nreturn axe.run(document).then(r => ({{passes: r.passes.length, \
             violations: r.violations.map(v => ({{id: v.id, impact: v.impact, help: v.help, \
             nodes: v.nodes.map(n => n.target.join(' '))}}))}}));"
        ))
        .await
        .unwrap();
    // axe ran its rules: some passed.
    assert!(found["passes"].as_u64().unwrap_or(0) > 0, "{found}");
    found["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| {
            format!(
                "{} ({}): {} at {}",
                v["id"], v["impact"], v["help"], v["nodes"]
            )
        })
        .collect()
}

/// Opens `url` and fails with what axe-core found if anything is serious or critical.
async fn assert_accessible(browser: &Browser, url: &str) {
    browser.goto(url).await.unwrap();
    let problems = accessibility_problems(browser).await;
    assert!(problems.is_empty(), "{url}:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resident_logs_in_with_a_real_browser_and_sees_who_accessed_their_data() {
    let (_dir, mut f) = start().await;
    let portal = f.portal_url().unwrap().to_owned();
    // federation.json names the portal (DESIGN §10).
    let description: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.dir().join("federation.json")).unwrap()).unwrap();
    assert_eq!(description["portal"], portal.as_str());

    let browser = Browser::start().await.unwrap();
    // The login page and an error page are accessible in both languages.
    for lang in ["ja", "en"] {
        assert_accessible(&browser, &format!("{portal}/?lang={lang}")).await;
        assert_fits_a_phone(&browser, &format!("{portal}/?lang={lang}"), "login").await;
        assert_accessible(&browser, &format!("{portal}/no-such-page?lang={lang}")).await;
    }
    browser.goto(&format!("{portal}/?lang=en")).await.unwrap();
    // The development login says what it is.
    let banner = browser
        .find("#dev-banner")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(banner.contains("DEVELOPMENT LOGIN"), "{banner}");
    log_in(&browser, "131016000001").await;
    assert_eq!(
        browser
            .find("#resident-id")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "131016000001"
    );

    // Newest first: Osaka's welfare office read a tax certificate, after the Digital Agency's
    // benefits system read the resident record; each with the purpose its client signed.
    let seen = rows(&browser).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (who, what, why) = &seen[0];
    // Organisations as they name themselves in the page's language.
    assert!(
        who.contains("Osaka City") && !who.contains("大阪市"),
        "{who}"
    );
    assert!(
        who.contains("Welfare office") && !who.contains("福祉事務所"),
        "{who}"
    );
    // Services as their provider names them for residents.
    assert!(what.contains("Tax certificate"), "{what}");
    assert!(
        what.contains("Chiyoda City") && !what.contains("千代田区"),
        "{what}"
    );
    assert_eq!(why, "生活保護の要否判定 (public assistance assessment)");
    let (who, what, why) = &seen[1];
    assert!(
        who.contains("Digital Agency") && !who.contains("デジタル庁"),
        "{who}"
    );
    assert!(
        who.contains("Public benefits system") && !who.contains("給付"),
        "{who}"
    );
    assert!(what.contains("Resident record"), "{what}");
    assert_eq!(why, "児童手当の認定 (child allowance eligibility)");
    // Each entry says whom to ask about it (the contact the member published in the global
    // configuration) and what purpose and legal basis mean.
    let contacts = browser.find_all("#timeline a.contact").await.unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(
        contacts[0].attribute("href").await.unwrap().as_deref(),
        Some("https://www.city.osaka.example.jp/privacy")
    );
    assert_eq!(
        contacts[1].attribute("href").await.unwrap().as_deref(),
        Some("https://www.digital.example.jp/privacy")
    );
    assert_eq!(
        browser.find_all("#timeline a.explain").await.unwrap().len(),
        2
    );
    // Each entry offers its evidence.
    let links = browser.find_all("#timeline a.evidence").await.unwrap();
    assert_eq!(links.len(), 2);
    let href = links[0].attribute("href").await.unwrap().unwrap();
    assert!(href.contains("/evidence?"), "{href}");
    let verify = browser.find("#verify").await.unwrap().text().await.unwrap();
    assert!(verify.contains("evidence verify"), "{verify}");
    // Every member answered.
    for source in browser.find_all("#sources li.source").await.unwrap() {
        let class = source.attribute("class").await.unwrap().unwrap();
        assert!(
            class.contains("ok"),
            "{class}: {}",
            source.text().await.unwrap()
        );
    }

    // Not another resident's accesses: 131016000002's only access is the benefits system's
    // income check.
    let page = browser.page_source().await.unwrap();
    assert!(!page.contains("給付金の所得確認"));

    // The same page in Japanese.
    browser.goto(&format!("{portal}/?lang=ja")).await.unwrap();
    let html_lang = browser
        .find("html")
        .await
        .unwrap()
        .attribute("lang")
        .await
        .unwrap();
    assert_eq!(html_lang.as_deref(), Some("ja"));
    let japanese = rows(&browser).await;
    assert_eq!(japanese.len(), seen.len());
    for ((who, what, why), (en_who, en_what, en_why)) in japanese.iter().zip(&seen) {
        assert_eq!(why, en_why);
        assert_ne!(who, en_who);
        assert!(
            ["大阪市", "デジタル庁"].iter().any(|n| who.contains(n))
                && !who.contains("Osaka")
                && !who.contains("Digital Agency"),
            "{who}"
        );
        assert!(
            what.contains("保有機関: 千代田区") && !what.contains("Chiyoda"),
            "{what}"
        );
        // Who accessed what, on the Japanese page: no English.
        for cell in [who, what] {
            assert!(
                !cell.chars().any(|c| c.is_ascii_alphabetic()),
                "English on the Japanese page: {cell}"
            );
        }
        let japanese_name = match en_what.lines().next() {
            Some("Tax certificate") => "課税証明書",
            Some("Resident record") => "住民票",
            other => panic!("{other:?}"),
        };
        assert_eq!(what.lines().next(), Some(japanese_name));
    }
    // The organisations asked, by their Japanese names too.
    for source in browser.find_all("#sources li.source").await.unwrap() {
        let name = source.find(".org").await.unwrap().text().await.unwrap();
        let system = source
            .find(".subsystem")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for text in [&name, &system] {
            assert!(
                !text.chars().any(|c| c.is_ascii_alphabetic()),
                "English on the Japanese page: {text}"
            );
        }
    }

    // The timeline is accessible and fits a phone, in both languages; so is the explanation
    // of purpose and legal basis.
    for lang in ["ja", "en"] {
        let url = format!("{portal}/?lang={lang}");
        assert_accessible(&browser, &url).await;
        assert_fits_a_phone(&browser, &url, "timeline").await;
        let about = format!("{portal}/about?lang={lang}");
        assert_accessible(&browser, &about).await;
        assert_fits_a_phone(&browser, &about, "about").await;
        browser.find("#about").await.unwrap();
    }

    // Logging out ends the session; another resident sees only theirs.
    browser.goto(&portal).await.unwrap();
    log_out(&browser).await;
    log_in(&browser, "131016000002").await;
    let seen = rows(&browser).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.contains("Digital Agency"));
    assert_eq!(
        seen[0].2,
        "給付金の所得確認 (income check for a benefit payment)"
    );

    // A resident nobody accessed, and then a provider that does not answer: both screens are
    // accessible and fit a phone too.
    log_out(&browser).await;
    log_in(&browser, "131016999999").await;
    browser.find("#no-accesses").await.unwrap();
    for lang in ["ja", "en"] {
        let url = format!("{portal}/?lang={lang}");
        assert_accessible(&browser, &url).await;
        assert_fits_a_phone(&browser, &url, "no-accesses").await;
    }
    f.stop_server("JP/MUN/131016/ss1").await;
    for lang in ["ja", "en"] {
        let url = format!("{portal}/?lang={lang}");
        browser.goto(&url).await.unwrap();
        browser.find("#incomplete").await.unwrap();
        assert_accessible(&browser, &url).await;
        assert_fits_a_phone(&browser, &url, "provider-down").await;
    }
    browser.close().await.unwrap();
    f.stop().await;
}

/// Opens `url` 390 px wide (a phone) and checks that nothing scrolls sideways and that an
/// evidence link, if there is one, is one line rather than a character a line.
/// Where the browser tests leave screenshots for reviewers: `target/tmp/screenshots/`.
fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves what the browser shows as `NAME.png` for reviewers, and checks it is a PNG.
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Checks that `url` fits a 390 px phone; leaves screenshots of it, desktop and phone, named
/// `portal-SCREEN-LANG-…` after `screen` and the URL's `lang`.
async fn assert_fits_a_phone(browser: &Browser, url: &str, screen: &str) {
    browser.set_window_size(1280, 900).await.unwrap();
    browser.goto(url).await.unwrap();
    let lang = url.rsplit("lang=").next().unwrap_or("default");
    let name = format!("portal-{screen}-{lang}");
    // Screens for reviewers, desktop then phone; a page shown twice keeps its last state.
    screenshot(browser, &format!("{name}-desktop")).await;
    browser.set_window_size(390, 844).await.unwrap();
    browser.goto(url).await.unwrap();
    screenshot(browser, &format!("{name}-phone")).await;
    let layout = browser
        .execute(
            "const link = document.querySelector('#timeline a.evidence');
             const style = link && getComputedStyle(link);
             return {
               viewport: window.innerWidth,
               document: document.documentElement.scrollWidth,
               link_height: link ? link.getBoundingClientRect().height : 0,
               line_height: link ? (parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.5) : 1,
             };",
        )
        .await
        .unwrap();
    browser.set_window_size(1280, 900).await.unwrap();
    let number = |k: &str| {
        layout[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {layout}"))
    };
    assert!(number("viewport") <= 400.0, "{url}: {layout}");
    assert!(
        number("document") <= number("viewport"),
        "{url}: the page is wider than the phone: {layout}"
    );
    assert!(
        number("link_height") < 1.8 * number("line_height"),
        "{url}: the evidence link wraps: {layout}"
    );
}

async fn get(url: &str, cookie: &str) -> runtime::Response {
    runtime::HttpClient::plain()
        .request(
            http::Method::GET,
            url,
            &[("cookie", cookie)],
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
}

/// The logged-in resident's timeline as JSON.
async fn timeline_of(portal: &str, cookie: &str) -> serde_json::Value {
    get(&format!("{portal}/api/timeline"), cookie)
        .await
        .json()
        .unwrap()
}

/// The portal's evidence download at `url`, once a checkpoint seals the record (until then the
/// portal answers 503).
async fn evidence_once_sealed(url: &str, cookie: &str) -> Vec<u8> {
    eventually(
        &format!("{url}: the record sealed in a checkpoint"),
        || async {
            let r = get(url, cookie).await;
            if r.status.as_u16() == 200 {
                return Some(r.body.to_vec());
            }
            assert_eq!(r.status.as_u16(), 503, "{url}: {}", r.text());
            None
        },
    )
    .await
}

#[tokio::test]
async fn evidence_from_the_portal_verifies_and_a_member_that_is_down_is_shown_unavailable() {
    let (_dir, mut f) = start().await;
    let portal = f.portal_url().unwrap().to_owned();
    let cookie = portal_login(&portal, "131016000003").await;
    let timeline: serde_json::Value = timeline_of(&portal, &cookie).await;
    let entries = timeline["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{timeline}");
    let id = entries[0]["message_id"].as_str().unwrap().to_owned();
    assert_eq!(entries[0]["provider"], RECORDS);
    assert_eq!(entries[0]["client"], WELFARE);

    // The entry's evidence, once a checkpoint seals it, verifies with the anchor alone.
    let url = format!("{portal}/evidence?provider={RECORDS}&id={id}");
    let bundle = evidence_once_sealed(&url, &cookie).await;
    assert!(integration_tests::verify_offline(&f, &bundle).passed());
    // Another resident cannot fetch it through the portal.
    let other = portal_login(&portal, "131016000001").await;
    assert_eq!(get(&url, &other).await.status.as_u16(), 404);

    // Osaka City's server goes down: its subsystem is shown as unavailable, never dropped,
    // and Chiyoda's records are still there.
    f.stop_server(OSAKA).await;
    let timeline: serde_json::Value = timeline_of(&portal, &cookie).await;
    assert_eq!(
        timeline["entries"].as_array().unwrap().len(),
        1,
        "{timeline}"
    );
    let sources = timeline["sources"].as_array().unwrap();
    let state_of = |provider: &str| {
        sources
            .iter()
            .find(|s| s["id"] == provider)
            .unwrap_or_else(|| panic!("{provider} not in {timeline}"))["state"]
            .clone()
    };
    assert_eq!(state_of(WELFARE), "unavailable", "{timeline}");
    assert_eq!(state_of(RECORDS), "ok", "{timeline}");
    let html = get(&format!("{portal}/?lang=en"), &cookie).await.text();
    assert!(
        html.contains(&format!(
            r#"class="source unavailable" data-provider="{WELFARE}""#
        )),
        "{html}"
    );
    f.stop().await;
}

/// A subsystem hosted by two servers: each logs only the exchanges it served, so the portal
/// asks each of them (the servers come from `listClients`), shows every access, and fetches
/// each one's evidence from the server that holds it. With one of the two down, what the other
/// holds still shows and the subsystem is marked unavailable, naming the server.
#[tokio::test]
async fn accesses_served_by_either_server_of_a_subsystem_all_show_with_their_evidence() {
    const CHIYODA: &str = "JP/MUN/131016/ss1";
    const CHIYODA2: &str = "JP/MUN/131016/ss2";
    const BENEFITS: &str = "JP/GOV/digital-agency/benefits";
    const RESIDENT: &str = "131016000009";
    let mut spec = FederationSpec::sandbox();
    spec.servers.push(sandbox::ServerSpec {
        id: CHIYODA2.parse().unwrap(),
        hosts: vec![RECORDS.parse().unwrap()],
        system_certificates: false,
    });
    let (_dir, mut f) =
        integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;

    // One access served by each of Chiyoda's servers.
    let client_proxy = f.client_proxy_of(&BENEFITS.parse().unwrap()).unwrap();
    for server in [CHIYODA, CHIYODA2] {
        let r = runtime::HttpClient::plain()
            .request(
                http::Method::GET,
                &format!("{client_proxy}/r1/{RECORDS}/residentRecord/{RESIDENT}"),
                &[
                    ("x-road-client", BENEFITS),
                    ("x-road-data-subject", RESIDENT),
                    ("x-road-purpose", "児童手当の認定"),
                    ("x-road-security-server", server),
                ],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        assert_eq!(r.headers["x-road-security-server"], server);
    }

    let portal = f.portal_url().unwrap().to_owned();
    let cookie = portal_login(&portal, RESIDENT).await;
    let timeline: serde_json::Value = timeline_of(&portal, &cookie).await;
    let entries = timeline["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{timeline}");
    let mut servers: Vec<&str> = entries
        .iter()
        .map(|e| {
            assert_eq!(e["provider"], RECORDS, "{timeline}");
            assert_eq!(e["client"], BENEFITS, "{timeline}");
            e["server"].as_str().unwrap()
        })
        .collect();
    servers.sort_unstable();
    assert_eq!(servers, [CHIYODA, CHIYODA2], "{timeline}");
    let records_state = |timeline: &serde_json::Value| {
        timeline["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == RECORDS)
            .unwrap()
            .clone()
    };
    assert_eq!(records_state(&timeline)["state"], "ok", "{timeline}");

    // Each entry's evidence comes from the server that holds it, and verifies offline.
    for entry in entries {
        let id = entry["message_id"].as_str().unwrap();
        let server = entry["server"].as_str().unwrap();
        let url = format!("{portal}/evidence?provider={RECORDS}&id={id}&server={server}");
        let bundle = evidence_once_sealed(&url, &cookie).await;
        assert!(integration_tests::verify_offline(&f, &bundle).passed());
    }

    // The second server goes down: the first one's access still shows.
    f.stop_server(CHIYODA2).await;
    let timeline: serde_json::Value = timeline_of(&portal, &cookie).await;
    let entries = timeline["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{timeline}");
    assert_eq!(entries[0]["server"], CHIYODA, "{timeline}");
    let state = records_state(&timeline);
    assert_eq!(state["state"], "unavailable", "{timeline}");
    assert!(
        state["reason"].as_str().unwrap().starts_with(CHIYODA2),
        "{timeline}"
    );
    assert_eq!(state["partial_records"], 1, "{timeline}");
    f.stop().await;
}
