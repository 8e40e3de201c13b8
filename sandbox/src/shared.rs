//! 共同利用方式 in the sandbox: a security server that hosts subsystems of several members (one
//! operator's server for small municipalities). Its client proxy serves HTTPS; each hosted
//! subsystem's information system gets a client certificate of its own, registered for that
//! subsystem alone (`client-auth set … --connection https-cert`), written to
//! `DIR/systems/` for `curl --cert`. At start the sandbox checks, through the real client
//! proxy, that each system is served when it names its own subsystem and refused
//! (`Client.ClientNotAuthenticated`) when it names another member's: one municipality's system
//! cannot act as another's (DESIGN §5.1, docs/configuration.md "Information systems").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certs::Clock;
use globalconf::SubsystemId;
use security_server::client_auth::{ClientAuth, Connection};
use serde::Serialize;

use security_server::serverconf::ServerConf;

/// One hosted subsystem's information system on a shared server: its certificate and key.
#[derive(Debug, Clone, Serialize)]
pub struct SystemIdentity {
    pub subsystem: SubsystemId,
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM PKCS#8 key (0600).
    pub key: PathBuf,
    #[serde(skip)]
    identity: Arc<certs::TlsIdentity>,
}

fn setup(m: impl std::fmt::Display) -> String {
    m.to_string()
}

/// Makes a certificate for each system in `hosts`, writes them to `dir`, and registers each
/// for its subsystem alone in the shared server's `serverconf`.
pub fn issue_system_certificates(
    serverconf: &ServerConf,
    hosts: &[SubsystemId],
    dir: &Path,
    clock: &dyn Clock,
) -> Result<Vec<SystemIdentity>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The systems' own CA, as an organisation's would be: the security server trusts a
    // certificate by its registered hash, not by who issued it.
    let ca = certs::CertificateAuthority::generate(
        "information systems",
        Duration::from_secs(365 * 86_400),
        clock,
    )
    .map_err(setup)?;
    let mut systems = Vec::new();
    for subsystem in hosts {
        let key = certs::SigningKey::generate().map_err(setup)?;
        let cert = ca
            .issue(
                &subsystem.to_string(),
                &key.public_key().to_spki_der(),
                &[],
                Duration::from_secs(365 * 86_400),
                clock,
            )
            .map_err(setup)?;
        let file = subsystem.to_string().replace('/', "_");
        let cert_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        certs::write_file_atomic(&cert_path, certs::cert_to_pem(&cert).as_bytes())
            .map_err(setup)?;
        certs::save_secret_key(&key_path, &key).map_err(setup)?;
        serverconf
            .set_client_auth(ClientAuth {
                subsystem: subsystem.clone().into(),
                connection: Connection::HttpsCert,
                certs: vec![hex::encode(certs::cert_sha256(&cert))],
            })
            .map_err(|e| setup(format!("client-auth rule for {subsystem}: {e}")))?;
        systems.push(SystemIdentity {
            subsystem: subsystem.clone(),
            cert: cert_path,
            key: key_path,
            identity: Arc::new(certs::TlsIdentity::new(vec![cert], key)),
        });
    }
    Ok(systems)
}

/// Calls `url` (the shared server's client proxy, whose TLS certificate has SHA-256
/// `server_cert`) as each system, naming its own subsystem (served) and each other member's
/// (refused with `Client.ClientNotAuthenticated`). An error says which expectation failed.
pub async fn check_systems(
    url: &str,
    server_cert: [u8; 32],
    systems: &[SystemIdentity],
) -> Result<(), String> {
    let pins: Arc<dyn certs::PinPolicy> = Arc::new(certs::PinSet([server_cert].into()));
    for system in systems {
        let tls =
            certs::pinned_client_config(&system.identity, Arc::clone(&pins), &[]).map_err(setup)?;
        let http = runtime::HttpClient::https(tls).with_timeout(Duration::from_secs(30));
        for named in systems {
            let answer = http
                .request(
                    http::Method::GET,
                    url,
                    &[("X-Road-Client", &named.subsystem.to_string())],
                    bytes::Bytes::new(),
                )
                .await
                .map_err(|e| setup(format!("{url}: {e}")))?;
            let error = answer
                .headers
                .get("x-road-error")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let own = named.subsystem == system.subsystem;
            let as_expected = if own {
                answer.is_success()
            } else {
                error == "Client.ClientNotAuthenticated"
            };
            if !as_expected {
                return Err(setup(format!(
                    "the system of {} naming {} at {url}: HTTP {} {error}, expected {}",
                    system.subsystem,
                    named.subsystem,
                    answer.status,
                    if own {
                        "an answer"
                    } else {
                        "Client.ClientNotAuthenticated"
                    }
                )));
            }
        }
    }
    Ok(())
}
