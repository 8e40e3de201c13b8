#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Monitoring (docs/monitoring.md): the Grafana dashboard in `monitoring/` asks only for metrics
//! the servers and the registry really expose, every binary answers `/health` in one format,
//! and exchanges are counted by service and client, and kept as operational data.

use std::collections::BTreeSet;
use std::sync::Arc;

use integration_tests::admin;
use integration_tests::load::resident_record;
use sandbox::FederationSpec;
use security_server::admin::ops::QueryOperational;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";

/// The metric names of the dashboard's queries (ours all begin `xroad_` or `process_`).
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../monitoring/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "a dashboard worth the name");
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let mut found = false;
            let bytes = expr.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let starts_name = (expr[i..].starts_with("xroad_")
                    || expr[i..].starts_with("process_"))
                    && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
                if starts_name {
                    let end = expr[i..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(expr.len(), |n| i + n);
                    names.insert(expr[i..end].to_owned());
                    found = true;
                    i = end;
                } else {
                    i += 1;
                }
            }
            assert!(found, "a query without a metric of ours: {expr}");
        }
    }
    names
}

/// The sample names of an exposition text.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_only_for_what_is_exposed_and_health_reads_the_same_everywhere() {
    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    let (_dir, f) = integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    resident_record(&proxy, "monitoring-1").await.unwrap();

    let http = runtime::HttpClient::plain();
    let mut metrics = BTreeSet::new();
    let mut texts = Vec::new();
    let registry_admin = f.description().registry_admin.clone();
    let mut targets: Vec<String> = [MINISTRY, CHIYODA]
        .iter()
        .map(|s| {
            format!(
                "http://{}",
                f.server(s).unwrap().running().unwrap().admin_addr
            )
        })
        .collect();
    targets.push(registry_admin);
    for base in &targets {
        let r = http.get(&format!("{base}/metrics"), None).await.unwrap();
        assert_eq!(r.status, 200, "{base}: {}", r.text());
        assert!(
            r.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/openmetrics-text")),
            "{base}"
        );
        let text = r.text();
        assert!(text.ends_with("# EOF\n"), "{base}");
        metrics.extend(exposed(&text));
        texts.push(text);

        // One health format: JSON with a status, 200 while serving.
        let r = http.get(&format!("{base}/health"), None).await.unwrap();
        assert_eq!(r.status, 200, "{base}: {}", r.text());
        let health: serde_json::Value = r.json().unwrap();
        assert_eq!(health["status"], "ok", "{base}: {health}");
    }
    let wanted = dashboard_metrics();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| {
            !metrics.contains(*name)
                && !["_bucket", "_count", "_sum"].iter().any(|s| {
                    name.strip_suffix(s)
                        .is_some_and(|base| metrics.contains(&format!("{base}_count")))
                })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard asks for {missing:?}, which nothing exposes"
    );
    for needed in [
        "xroad_registry_configuration_serial",
        "xroad_registry_ca_expires_in_seconds",
        "xroad_service_exchanges_total",
        "process_resident_memory_bytes",
    ] {
        assert!(wanted.contains(needed), "the dashboard shows {needed}");
    }

    // The exchange is counted by service and client on both sides.
    for (text, proxy) in texts.iter().zip(["client_proxy", "server_proxy"]) {
        assert!(
            text.lines()
                .any(|l| l.starts_with("xroad_service_exchanges_total{")
                    && l.contains(&format!("proxy=\"{proxy}\""))
                    && l.contains("service=\"JP/MUN/131016/records/residentRecord\"")
                    && l.contains("client=\"JP/GOV/digital-agency/portal\"")
                    && l.contains("outcome=\"ok\"")),
            "{proxy}:\n{text}"
        );
    }
    assert!(texts[2].contains("xroad_build_info{binary=\"central-registry\""));

    // Operational data: the exchange on both sides, with its sizes; a refused one too.
    let osaka = f
        .server("JP/MUN/271004/ss1")
        .unwrap()
        .client_proxy_url()
        .unwrap();
    let refused = runtime::HttpClient::plain()
        .request(
            http::Method::GET,
            &format!("{osaka}/r1/JP/MUN/131016/records/residentRecord/131016000001"),
            &[
                ("X-Road-Client", "JP/MUN/271004/welfare"),
                ("X-Road-Id", "monitoring-denied"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        integration_tests::x_road_error(&refused),
        "Server.ServerProxy.AccessDenied"
    );
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let query = QueryOperational {
        from: now_ms - 600_000,
        to: now_ms + 600_000,
        limit: None,
    };
    for (server, proxy) in [(MINISTRY, "client_proxy"), (CHIYODA, "server_proxy")] {
        let record = integration_tests::eventually("the operational record", || async {
            admin(&f, server)
                .call(&query)
                .await
                .ok()?
                .records
                .into_iter()
                .find(|r| r.message_id == "monitoring-1")
        })
        .await;
        assert_eq!(record.proxy, proxy);
        assert_eq!(record.outcome, "ok");
        assert_eq!(record.client, "JP/GOV/digital-agency/portal");
        assert_eq!(record.service, "JP/MUN/131016/records/residentRecord");
        assert_eq!(record.request_bytes, Some(0));
        assert!(record.response_bytes.is_some_and(|n| n > 100), "{record:?}");
        assert!((now_ms - 600_000..=now_ms).contains(&record.at_ms));
    }
    let denied = integration_tests::eventually("the refused exchange's record", || async {
        admin(&f, CHIYODA)
            .call(&query)
            .await
            .ok()?
            .records
            .into_iter()
            .find(|r| r.message_id == "monitoring-denied")
    })
    .await;
    assert_eq!(denied.outcome, "Server.ServerProxy.AccessDenied");
    assert_eq!(denied.client, "JP/MUN/271004/welfare");
    assert_eq!(denied.response_bytes, None);
    // A range before the exchanges holds none of them.
    let before = admin(&f, CHIYODA)
        .call(&QueryOperational {
            from: 0,
            to: now_ms - 600_000,
            limit: None,
        })
        .await
        .unwrap();
    assert!(before.records.is_empty());

    // The registry's public endpoint and the portal answer health the same way.
    let public = f.description().registries[0].clone();
    let anchor = globalconf::Anchor::load(&f.description().anchor).unwrap();
    let https = runtime::HttpClient::https(
        certs::client_config_trusting(&anchor.ca_certificates_der(), &[]).unwrap(),
    );
    let health: serde_json::Value = https
        .get(&format!("{public}/health"), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["serial"].as_u64().is_some(), "{health}");
    if let Some(portal) = &f.description().portal {
        let health: serde_json::Value = http
            .get(&format!("{portal}/health"), None)
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(health["status"], "ok", "{health}");
    }
    f.stop().await;
}
