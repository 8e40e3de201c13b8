#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Information systems authenticated at the client proxy (X-Road's NOSSL / SSLNOAUTH /
//! SSLAUTH): on a server that hosts subsystems of several members (共同利用方式), one member's
//! system cannot name another member's subsystem as the client.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use sandbox::{Federation, FederationSpec};
use security_server::client_auth::{ClientAuth, Connection};

const PORTAL: &str = "JP/GOV/digital-agency/portal";
const WELFARE: &str = "JP/MUN/271004/welfare";
const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const SERVICE: &str = "/r1/JP/MUN/131016/records/residentRecord/131016000001";

/// An information system's TLS identity: a key and a certificate of its own CA.
fn system(name: &str) -> certs::TlsIdentity {
    let clock = certs::SystemClock;
    let ca =
        certs::CertificateAuthority::generate("IS", Duration::from_secs(86_400), &clock).unwrap();
    let key = certs::SigningKey::generate().unwrap();
    let cert = ca
        .issue(
            name,
            &key.public_key().to_spki_der(),
            &[],
            Duration::from_secs(86_400),
            &clock,
        )
        .unwrap();
    certs::TlsIdentity::new(vec![cert], key)
}

/// An HTTPS client of the ministry's client proxy (pinned to its certificate), presenting
/// `identity` when given.
fn client(f: &Federation, identity: Option<&certs::TlsIdentity>) -> runtime::HttpClient {
    let server = security_server::identity::Identity::load(&f.server(MINISTRY).unwrap().config)
        .unwrap()
        .tls;
    let pins: Arc<dyn certs::PinPolicy> =
        Arc::new(certs::PinSet([server.leaf_sha256()].into_iter().collect()));
    let tls = match identity {
        Some(id) => certs::pinned_client_config(id, pins, &[]).unwrap(),
        None => {
            // Without a certificate of its own: a pinned client that presents none.
            let ca = certs::certs_from_pem(
                &std::fs::read_to_string(f.dir().join("registry/data/ca.pem")).unwrap(),
            )
            .unwrap();
            certs::client_config_trusting(&ca, &[]).unwrap()
        }
    };
    runtime::HttpClient::https(tls)
}

/// Calls the ministry's client proxy as `client`: over HTTPS (its `tls_listen`) when the
/// ministry has that listener and `http` is an HTTPS client, else over its plain listener.
async fn call(f: &Federation, http: &runtime::HttpClient, client: &str) -> runtime::Response {
    let server = f.server(MINISTRY).unwrap();
    let base = match (http.is_https(), server.client_proxy_tls_url()) {
        (true, Some(tls)) => tls,
        _ => server.client_proxy_url().unwrap(),
    };
    let url = format!("{base}{SERVICE}");
    http.request(
        Method::GET,
        &url,
        &[
            ("X-Road-Client", client),
            ("X-Road-Data-Subject", "131016000001"),
            ("X-Road-Purpose", "client authentication test"),
        ],
        bytes::Bytes::new(),
    )
    .await
    .unwrap()
}

fn refused(r: &runtime::Response, why: &str) {
    assert_eq!(r.status.as_u16(), 400, "{why}: {}", r.text());
    assert_eq!(
        integration_tests::x_road_error(r),
        "Client.ClientNotAuthenticated",
        "{why}"
    );
}

#[tokio::test]
async fn on_a_shared_server_a_system_acts_only_as_a_subsystem_it_is_registered_for() {
    // The ministry's server also hosts Osaka's welfare office: it serves two members.
    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    spec.servers
        .iter_mut()
        .find(|s| s.id.to_string() == MINISTRY)
        .unwrap()
        .hosts
        .push(WELFARE.parse().unwrap());
    let (_dir, mut f) =
        integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    // Beside its plain HTTP listener, its client proxy serves HTTPS (X-Road's 8443).
    f.server_mut(MINISTRY)
        .unwrap()
        .config
        .client_proxy
        .tls_listen = Some("127.0.0.1:0".parse().unwrap());
    f.restart_server(MINISTRY).await.unwrap();

    let portal_system = system("portal-system");
    let welfare_system = system("welfare-system");
    let as_portal = client(&f, Some(&portal_system));
    let as_welfare = client(&f, Some(&welfare_system));
    let anonymous = client(&f, None);

    // No rules yet: on a shared server every subsystem needs a registered certificate.
    refused(
        &call(&f, &as_portal, PORTAL).await,
        "no certificate registered",
    );
    refused(
        &call(&f, &anonymous, PORTAL).await,
        "no certificate presented",
    );

    let serverconf = f
        .server(MINISTRY)
        .unwrap()
        .running()
        .unwrap()
        .serverconf
        .clone();
    for (subsystem, identity) in [(PORTAL, &portal_system), (WELFARE, &welfare_system)] {
        serverconf
            .set_client_auth(ClientAuth {
                subsystem: subsystem.parse().unwrap(),
                connection: Connection::HttpsCert,
                certs: vec![hex::encode(identity.leaf_sha256())],
            })
            .unwrap();
    }
    let r = call(&f, &as_portal, PORTAL).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    // The welfare office's system cannot act as the ministry's portal, nor the other way.
    refused(
        &call(&f, &as_welfare, PORTAL).await,
        "welfare as the portal",
    );
    refused(
        &call(&f, &as_portal, WELFARE).await,
        "the portal as welfare",
    );
    refused(&call(&f, &anonymous, PORTAL).await, "no certificate");
    let r = call(&f, &as_welfare, PORTAL).await;
    assert!(
        r.text().contains("is not registered for it"),
        "{}",
        r.text()
    );

    // HTTPS without a certificate, when that is the rule.
    serverconf
        .set_client_auth(ClientAuth {
            subsystem: PORTAL.parse().unwrap(),
            connection: Connection::Https,
            certs: Vec::new(),
        })
        .unwrap();
    let r = call(&f, &anonymous, PORTAL).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let plain = runtime::HttpClient::plain();
    refused(
        &call(&f, &plain, PORTAL).await,
        "plain HTTP where HTTPS is the rule",
    );

    // Plain HTTP on the other listener, for a subsystem whose rule allows it; the welfare
    // office still needs its certificate.
    serverconf
        .set_client_auth(ClientAuth {
            subsystem: PORTAL.parse().unwrap(),
            connection: Connection::Http,
            certs: Vec::new(),
        })
        .unwrap();
    let r = call(&f, &plain, PORTAL).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    refused(&call(&f, &plain, WELFARE).await, "welfare over plain HTTP");
    // Every change is in the audit log.
    let actions: Vec<String> = serverconf
        .audit(10)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("client_auth."))
        .collect();
    assert_eq!(actions.len(), 4, "{actions:?}");
    f.stop().await;
}

/// A server of one member keeps serving plain HTTP by default, as before; a rule asking for
/// HTTPS refuses it.
#[tokio::test]
async fn a_server_of_one_member_serves_plain_http_unless_a_rule_says_otherwise() {
    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    let (_dir, f) = integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let plain = runtime::HttpClient::plain();
    let r = call(&f, &plain, PORTAL).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    f.server(MINISTRY)
        .unwrap()
        .running()
        .unwrap()
        .serverconf
        .set_client_auth(ClientAuth {
            subsystem: PORTAL.parse().unwrap(),
            connection: Connection::Https,
            certs: Vec::new(),
        })
        .unwrap();
    refused(
        &call(&f, &plain, PORTAL).await,
        "plain HTTP where HTTPS is the rule",
    );
    f.stop().await;
}

/// The sandbox's shared server (共同利用方式: Tokyo's server for two villages): each village's
/// system, with the certificate and key the sandbox wrote for it, is served as its own village
/// and refused as the other; a system without a certificate is refused as either.
#[tokio::test]
async fn the_sandboxs_shared_server_refuses_one_villages_system_naming_the_others_subsystem() {
    use std::os::unix::fs::PermissionsExt as _;

    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    let (_dir, f) = integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let shared = f
        .description()
        .security_servers
        .iter()
        .find(|s| !s.systems.is_empty())
        .expect("the sandbox has a shared server")
        .clone();
    assert_eq!(shared.systems.len(), 2);
    assert!(shared.client_proxy.starts_with("https://"));
    let server_cert = security_server::identity::Identity::load(
        &f.server(&shared.id.to_string()).unwrap().config,
    )
    .unwrap()
    .tls
    .leaf_sha256();
    let pins: Arc<dyn certs::PinPolicy> = Arc::new(certs::PinSet([server_cert].into()));
    let url = format!("{}{SERVICE}", shared.client_proxy);
    let call = |http: runtime::HttpClient, client: String| {
        let url = url.clone();
        async move {
            http.request(
                Method::GET,
                &url,
                &[
                    ("X-Road-Client", client.as_str()),
                    ("X-Road-Data-Subject", "131016000001"),
                    ("X-Road-Purpose", "転入 (moving in)"),
                ],
                bytes::Bytes::new(),
            )
            .await
            .unwrap()
        }
    };
    for system in &shared.systems {
        let mode = std::fs::metadata(&system.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", system.key.display());
        let identity = certs::TlsIdentity::new(
            certs::certs_from_pem(&std::fs::read_to_string(&system.cert).unwrap()).unwrap(),
            certs::load_secret_key(&system.key).unwrap(),
        );
        let http = runtime::HttpClient::https(
            certs::pinned_client_config(&identity, Arc::clone(&pins), &[]).unwrap(),
        );
        for named in &shared.systems {
            let r = call(http.clone(), named.subsystem.to_string()).await;
            if named.subsystem == system.subsystem {
                assert_eq!(r.status.as_u16(), 200, "{}", r.text());
            } else {
                refused(
                    &r,
                    "a village's system naming the other village's subsystem",
                );
            }
        }
    }
    // Over HTTPS, but without a certificate.
    let ca = certs::certs_from_pem(
        &std::fs::read_to_string(f.dir().join("registry/data/ca.pem")).unwrap(),
    )
    .unwrap();
    let anonymous = runtime::HttpClient::https(certs::client_config_trusting(&ca, &[]).unwrap());
    for named in &shared.systems {
        let r = call(anonymous.clone(), named.subsystem.to_string()).await;
        refused(&r, "a system without a certificate");
    }
    f.stop().await;
}
