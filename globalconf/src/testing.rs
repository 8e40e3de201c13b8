//! A builder of global configurations for tests (feature `testing`): the one way the workspace's
//! tests make a configuration by hand, instead of each spelling out the protobuf message.
//!
//! ```
//! # use globalconf::testing::ConfBuilder;
//! let conf = ConfBuilder::new("JP", 1_700_000_000)
//!     .subsystem("JP/GOV/digital-agency/portal")
//!     .server("JP/GOV/digital-agency/ss1", [1; 32], &["JP/GOV/digital-agency/portal"])
//!     .build();
//! assert_eq!(conf.members().count(), 1);
//! ```

use certs::SigningKey;
use proto::v1 as pb;

use crate::GlobalConf;

/// Builds a [`pb::GlobalConfiguration`]: serial 1, generated at the given time, valid 7 days,
/// one registry URL; members are added as their subsystems, keys or servers name them.
#[derive(Debug, Clone)]
pub struct ConfBuilder {
    pb: pb::GlobalConfiguration,
}

impl ConfBuilder {
    pub fn new(instance: &str, generated_at: i64) -> Self {
        Self {
            pb: pb::GlobalConfiguration {
                instance: instance.into(),
                serial: 1,
                generated_at,
                expires_at: generated_at + 7 * 86_400,
                members: Vec::new(),
                security_servers: Vec::new(),
                global_groups: Vec::new(),
                registry_urls: vec!["https://127.0.0.1:1".into()],
                ca_certificates: Vec::new(),
                parameters: None,
                federated_instances: Vec::new(),
            },
        }
    }

    /// Goes on from a configuration built before.
    pub fn from_proto(pb: pb::GlobalConfiguration) -> Self {
        Self { pb }
    }

    pub fn serial(mut self, serial: u64) -> Self {
        self.pb.serial = serial;
        self
    }

    pub fn expires_at(mut self, expires_at: i64) -> Self {
        self.pb.expires_at = expires_at;
        self
    }

    pub fn parameters(mut self, parameters: pb::InstanceParameters) -> Self {
        self.pb.parameters = Some(parameters);
        self
    }

    /// The member `INSTANCE/CLASS/CODE`, named after its code unless [`Self::named`] says
    /// otherwise; added once.
    pub fn member(mut self, id: &str) -> Self {
        self.member_mut(id);
        self
    }

    /// Gives the member or subsystem `id` (added before) its display name.
    pub fn named(mut self, id: &str, name: &str) -> Self {
        for m in &mut self.pb.members {
            if m.id == id {
                m.name = name.into();
            }
            for s in &mut m.subsystems {
                if s.id == id {
                    s.name = name.into();
                }
            }
        }
        self
    }

    /// The subsystem `INSTANCE/CLASS/CODE/SUBSYSTEM` (and its member).
    pub fn subsystem(mut self, id: &str) -> Self {
        let code = id.rsplit('/').next().unwrap_or(id).to_owned();
        let member = self.member_mut(parent(id));
        if !member.subsystems.iter().any(|s| s.id == id) {
            member.subsystems.push(pb::Subsystem {
                id: id.into(),
                name: code,
                ..pb::Subsystem::default()
            });
        }
        self
    }

    /// A signing key of `member`, valid from `valid_from` until `valid_until` (0: no end).
    pub fn key(
        mut self,
        member: &str,
        key: &SigningKey,
        valid_from: i64,
        valid_until: i64,
    ) -> Self {
        self.member_mut(member)
            .signing_keys
            .push(pb::MemberSigningKey {
                key_id: key.key_id().to_string(),
                public_key: key.public_key().as_bytes().to_vec(),
                valid_from,
                valid_until,
            });
        self
    }

    /// A security server at `127.0.0.1:1` with the TLS certificate hash `cert_sha256`, hosting
    /// `hosts`.
    pub fn server(self, id: &str, cert_sha256: [u8; 32], hosts: &[&str]) -> Self {
        self.server_at(id, &["127.0.0.1:1"], cert_sha256, hosts)
    }

    /// A security server with its addresses.
    pub fn server_at(
        mut self,
        id: &str,
        addresses: &[&str],
        cert_sha256: [u8; 32],
        hosts: &[&str],
    ) -> Self {
        self.member_mut(parent(id));
        self.pb.security_servers.push(pb::SecurityServer {
            id: id.into(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            tls_cert_sha256: cert_sha256.to_vec(),
            hosted_subsystems: hosts.iter().map(|h| (*h).to_owned()).collect(),
            renewal_tls_cert_sha256: Vec::new(),
        });
        self
    }

    /// Lists `cert_sha256` as the renewal certificate of the server `id` (added before).
    pub fn renewing(mut self, id: &str, cert_sha256: [u8; 32]) -> Self {
        for s in &mut self.pb.security_servers {
            if s.id == id {
                s.renewal_tls_cert_sha256 = cert_sha256.to_vec();
            }
        }
        self
    }

    /// The global group `INSTANCE/CODE` holding `members` (subsystems).
    pub fn group(mut self, id: &str, members: &[&str]) -> Self {
        self.pb.global_groups.push(pb::GlobalGroup {
            id: id.into(),
            description: id.rsplit('/').next().unwrap_or(id).into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        });
        self
    }

    /// Lists another instance as federated with this one, under `anchor`.
    pub fn federated(mut self, anchor: &crate::Anchor) -> Self {
        self.pb.federated_instances.push(pb::FederatedInstance {
            instance: anchor.instance().to_string(),
            anchor: anchor.to_toml().unwrap_or_default(),
        });
        self
    }

    /// The protobuf message, to sign or to change further.
    pub fn proto(self) -> pb::GlobalConfiguration {
        self.pb
    }

    /// The validated view.
    ///
    /// # Panics
    /// When the configuration is not valid: a test's fixture is wrong.
    pub fn build(self) -> GlobalConf {
        conf_of(&self.pb)
    }

    fn member_mut(&mut self, id: &str) -> &mut pb::Member {
        let at = match self.pb.members.iter().position(|m| m.id == id) {
            Some(at) => at,
            None => {
                self.pb.members.push(pb::Member {
                    id: id.into(),
                    name: id.rsplit('/').next().unwrap_or(id).into(),
                    subsystems: Vec::new(),
                    signing_keys: Vec::new(),
                    ..pb::Member::default()
                });
                self.pb.members.len() - 1
            }
        };
        &mut self.pb.members[at]
    }
}

/// The validated view of a test configuration.
///
/// # Panics
/// When the configuration is not valid: a test's fixture is wrong.
#[allow(clippy::expect_used)]
pub fn conf_of(pb: &pb::GlobalConfiguration) -> GlobalConf {
    let instance = pb
        .instance
        .parse()
        .expect("the test configuration's instance");
    GlobalConf::from_proto(pb, &instance).expect("a valid test configuration")
}

/// `A/B/C/D` → `A/B/C`.
fn parent(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(p, _)| p)
}
