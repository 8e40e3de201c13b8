//! The instance CA and its rollover (DESIGN §3, lifecycle). `ca rotate` makes a successor,
//! cross-signed by the current CA, and publishes it first in the configuration's CA list with the
//! old one after it; servers trust that list for HTTPS to the registry and renew their TLS
//! certificates under the new CA by themselves. The registry presents a certificate of the new
//! CA at once, followed by the cross-certificate, so servers that still trust only the old CA
//! keep reaching it. `ca withdraw` ends the rollover once every server presents a certificate of
//! the new CA: the old one is no longer published, and the cross-certificate no longer sent.

use certs::CertificateAuthority;
use globalconf::SecurityServerId;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminOp, Core, PlainEndpoint, audit};
use crate::datadir;
use crate::error::RegistryError;

/// The instance CAs, as `ca show` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaView {
    /// The CA that issues certificates.
    pub issuing: CaCertificate,
    /// During a rollover, the CA it took over from (published until withdrawn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<CaCertificate>,
    /// Servers the configuration lists with a certificate the issuing CA did not issue: the
    /// rollover waits for them to renew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<SecurityServerId>,
}

impl runtime::admin::JsonReply for CaView {}

/// One CA certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCertificate {
    /// SHA-256 (hex) of the certificate.
    pub cert_sha256: String,
    /// When it expires (Unix seconds).
    pub not_after: i64,
}

impl CaCertificate {
    fn of(der: &[u8]) -> Result<Self, RegistryError> {
        Ok(Self {
            cert_sha256: hex::encode(certs::cert_sha256(der)),
            not_after: certs::certificate_info(der)?.not_after,
        })
    }
}

/// Servers with a listed certificate (in use or renewal) that `issuing` did not issue.
fn waiting_for(core: &Core, issuing: &CertificateAuthority) -> Vec<SecurityServerId> {
    core.state
        .servers
        .iter()
        .filter(|(_, r)| {
            std::iter::once(r.tls_certificate_der())
                .chain(r.renewal_certificate_der())
                .any(|der| !issuing.issued(der))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

fn view(core: &Core) -> Result<CaView, RegistryError> {
    Ok(CaView {
        issuing: CaCertificate::of(core.cas.issuing.certificate_der())?,
        previous: core
            .cas
            .previous
            .as_ref()
            .map(|p| CaCertificate::of(&p.cert_der))
            .transpose()?,
        waiting_for: if core.cas.previous.is_some() {
            waiting_for(core, &core.cas.issuing)
        } else {
            Vec::new()
        },
    })
}

fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| unix.to_string())
}

fn text(v: &CaView) -> String {
    let mut text = format!(
        "issuing CA   {}  valid until {}\n",
        v.issuing.cert_sha256,
        date(v.issuing.not_after)
    );
    if let Some(p) = &v.previous {
        text += &format!(
            "previous CA  {}  valid until {}, published until withdrawn\n",
            p.cert_sha256,
            date(p.not_after)
        );
        if v.waiting_for.is_empty() {
            text += "every server presents a certificate of the issuing CA: `ca withdraw` ends the rollover\n";
        }
    }
    for id in &v.waiting_for {
        text += &format!("waiting for {id} to renew its certificate under the issuing CA\n");
    }
    text
}

/// `GET /admin/v1/ca`
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShowCa;

impl PlainEndpoint for ShowCa {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/ca";
    type Response = CaView;
}

impl AdminOp for ShowCa {
    fn apply(self, core: &mut Core, _now: i64) -> Result<CaView, RegistryError> {
        view(core)
    }
    fn text(&self, v: &CaView) -> String {
        text(v)
    }
}

/// `POST /admin/v1/ca/rotate`: makes a successor CA and publishes it beside the current one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RotateCa;

impl PlainEndpoint for RotateCa {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/ca/rotate";
    type Response = CaView;
}

impl AdminOp for RotateCa {
    fn apply(self, core: &mut Core, now: i64) -> Result<CaView, RegistryError> {
        // The files are the record of the CAs: once `rotate_ca` returns, the rollover has
        // happened, and a registry that stops before publishing publishes it when it starts.
        let next = datadir::rotate_ca(&core.data_dir, &core.instance, &core.cas, &*core.clock)?;
        core.cas = next;
        let applied = core.apply_cas();
        let v = view(core)?;
        core.execute(
            Vec::new(),
            audit(
                "ca.rotate",
                json!({
                    "issuing_cert_sha256": v.issuing.cert_sha256,
                    "previous_cert_sha256": v.previous.as_ref().map(|p| &p.cert_sha256),
                }),
            ),
            true,
            now,
        )?;
        applied?;
        tracing::info!(issuing = %v.issuing.cert_sha256, "instance CA rollover started");
        Ok(v)
    }
    fn text(&self, v: &CaView) -> String {
        text(v)
    }
    fn notice(&self, _v: &CaView) -> Option<String> {
        Some(
            "servers renew their certificates under the new CA by themselves; run `ca show` to \
             follow them, and reissue replicas' identities (`issue-replica-identity`) before `ca withdraw`"
                .into(),
        )
    }
}

/// `POST /admin/v1/ca/withdraw`: ends a rollover once no listed server depends on the previous CA.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct WithdrawCa;

impl PlainEndpoint for WithdrawCa {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/ca/withdraw";
    type Response = CaView;
}

impl AdminOp for WithdrawCa {
    fn apply(self, core: &mut Core, now: i64) -> Result<CaView, RegistryError> {
        let previous = core.cas.previous.clone().ok_or_else(|| {
            RegistryError::Conflict("no CA rollover is under way: nothing to withdraw".into())
        })?;
        let waiting = waiting_for(core, &core.cas.issuing);
        if !waiting.is_empty() {
            let ids: Vec<String> = waiting.iter().map(ToString::to_string).collect();
            return Err(RegistryError::Conflict(format!(
                "{} still present a certificate of the previous CA; withdrawing it now would cut \
                 them off from the registry. They renew under the issuing CA by themselves \
                 (`security-server renew` does it at once)",
                ids.join(", ")
            )));
        }
        datadir::withdraw_ca(&core.data_dir, &previous)?;
        core.cas.previous = None;
        let applied = core.apply_cas();
        core.execute(
            Vec::new(),
            audit(
                "ca.withdraw",
                json!({"withdrawn_cert_sha256": hex::encode(certs::cert_sha256(&previous.cert_der))}),
            ),
            true,
            now,
        )?;
        applied?;
        tracing::info!("the previous instance CA is withdrawn");
        view(core)
    }
    fn text(&self, v: &CaView) -> String {
        text(v)
    }
}
