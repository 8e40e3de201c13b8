//! The registry's `/metrics` (OpenMetrics text, on the admin listener without the token, like
//! a security server's): what it publishes and until when, what waits for the operator, when
//! its CA and TLS certificates expire, and the build and process metrics every binary has.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::RegistryError;
use crate::ops::Core;

/// The gauges, set from the registry's state at each scrape.
#[derive(Debug)]
pub(crate) struct RegistryMetrics {
    registry: Registry,
    process: runtime::metrics::ProcessMetrics,
    serial: Gauge,
    age: Gauge,
    expires_in: Gauge,
    members: Gauge,
    subsystems: Gauge,
    servers: Gauge,
    pending_enrollments: Gauge,
    pending_key_requests: Gauge,
    ca_expires_in: Gauge,
    tls_expires_in: Gauge,
}

impl RegistryMetrics {
    pub(crate) fn new() -> RegistryMetrics {
        let mut registry = Registry::default();
        let process = runtime::metrics::ProcessMetrics::register(
            &mut registry,
            "central-registry",
            env!("CARGO_PKG_VERSION"),
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let serial = gauge(
            "xroad_registry_configuration_serial",
            "Serial of the configuration the registry serves.",
        );
        let age = gauge(
            "xroad_registry_configuration_age_seconds",
            "Seconds since the served configuration was signed.",
        );
        let expires_in = gauge(
            "xroad_registry_configuration_expires_in_seconds",
            "Seconds until the served configuration expires (the registry republishes before).",
        );
        let members = gauge("xroad_registry_members", "Members of the instance.");
        let subsystems = gauge("xroad_registry_subsystems", "Subsystems of the instance.");
        let servers = gauge(
            "xroad_registry_security_servers",
            "Approved security servers.",
        );
        let pending_enrollments = gauge(
            "xroad_registry_pending_enrollments",
            "Enrolment requests waiting for the operator.",
        );
        let pending_key_requests = gauge(
            "xroad_registry_pending_key_requests",
            "Member signing keys servers asked to list, waiting for the operator.",
        );
        let ca_expires_in = gauge(
            "xroad_registry_ca_expires_in_seconds",
            "Seconds until the issuing instance CA expires: roll it over well before.",
        );
        let tls_expires_in = gauge(
            "xroad_tls_certificate_expires_in_seconds",
            "Seconds until the TLS certificate the registry presents expires (it renews itself).",
        );
        RegistryMetrics {
            registry,
            process,
            serial,
            age,
            expires_in,
            members,
            subsystems,
            servers,
            pending_enrollments,
            pending_key_requests,
            ca_expires_in,
            tls_expires_in,
        }
    }

    /// The exposition text, with the gauges set from `core` at `now`.
    pub(crate) fn render(&self, core: &Core, now: i64) -> Result<String, RegistryError> {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let status = core.status()?;
        self.serial
            .set(i64::try_from(status.serial).unwrap_or(i64::MAX));
        self.age.set(now.saturating_sub(status.generated_at));
        self.expires_in.set(status.expires_at.saturating_sub(now));
        self.members.set(count(status.members));
        self.subsystems.set(count(status.subsystems));
        self.servers.set(count(status.servers));
        self.pending_enrollments
            .set(count(status.pending_enrollments));
        self.pending_key_requests
            .set(count(core.key_requests.len()));
        let not_after = |der: &[u8]| {
            certs::certificate_info(der)
                .map(|info| info.not_after)
                .map_err(|e| RegistryError::Internal(e.to_string()))
        };
        self.ca_expires_in
            .set(not_after(core.cas.issuing.certificate_der())?.saturating_sub(now));
        let tls = core.tls_identity.current();
        if let Some(leaf) = tls.cert_chain.first() {
            self.tls_expires_in
                .set(not_after(leaf)?.saturating_sub(now));
        }
        self.process.refresh();
        let mut out = String::new();
        encode(&mut out, &self.registry)
            .map_err(|e| RegistryError::Internal(format!("cannot render the metrics: {e}")))?;
        Ok(out)
    }
}
