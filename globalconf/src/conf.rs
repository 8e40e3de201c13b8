//! The typed, validated view of a global configuration (DESIGN §4).
//!
//! Built only from bytes whose signature was verified (see [`crate::signed`]); every identifier is
//! parsed, every reference checked, and the look-ups the security servers need are indexed once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use certs::{KeyId, PublicKey};
use proto::v1 as pb;

use crate::id::{
    ClientId, GlobalGroupId, IdError, InstanceId, MemberId, SecurityServerId, SubsystemId,
};

/// Why a (correctly signed) configuration is still unusable.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConf {
    #[error("bad identifier: {0}")]
    Id(#[from] IdError),
    #[error("{0}")]
    Inconsistent(String),
}

fn inconsistent(msg: String) -> InvalidConf {
    InvalidConf::Inconsistent(msg)
}

/// A member's message-signing key as the configuration certifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKey {
    pub key_id: KeyId,
    pub public_key: PublicKey,
    pub valid_from: i64,
    /// `None`: valid until removed.
    pub valid_until: Option<i64>,
}

impl MemberKey {
    pub fn is_valid_at(&self, unix: i64) -> bool {
        unix >= self.valid_from && self.valid_until.is_none_or(|until| unix < until)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: MemberId,
    pub name: String,
    /// The name per language (`ja`, `en`, …), for residents; `name` stands in for others.
    pub names: BTreeMap<String, String>,
    /// Where residents ask about the member's use of their data (`https:` or `mailto:`).
    pub privacy_contact: Option<String>,
    pub subsystems: Vec<SubsystemId>,
    pub signing_keys: Vec<MemberKey>,
}

impl MemberInfo {
    /// The name for readers of `lang`: its own, else `name`.
    pub fn name_in(&self, lang: &str) -> &str {
        self.names
            .get(lang)
            .map_or(self.name.as_str(), String::as_str)
    }
}

/// Whether `url` may be published as a privacy contact: `https://…` or `mailto:…`, printable,
/// at most 512 bytes.
pub fn is_contact_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("mailto:"))
        && url.len() <= 512
        && url.len() > "mailto:".len()
        && !url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '<' || c == '>')
}

/// Whether `tag` is a language tag the configuration uses for names: 2 or 3 lower-case letters.
pub fn is_language(tag: &str) -> bool {
    (2..=3).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_lowercase())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: SecurityServerId,
    pub addresses: Vec<String>,
    pub tls_cert_sha256: [u8; 32],
    /// A certificate issued to renew the one above, while the server moves to it.
    pub renewal_tls_cert_sha256: Option<[u8; 32]>,
    pub hosted: Vec<SubsystemId>,
}

impl ServerInfo {
    /// Every certificate (SHA-256) the server may present: peers accept any of them.
    pub fn pins(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        std::iter::once(self.tls_cert_sha256).chain(self.renewal_tls_cert_sha256)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: GlobalGroupId,
    pub description: String,
    pub members: Vec<SubsystemId>,
}

/// Another instance this one is federated with, and the anchor its operator handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedInstance {
    pub instance: InstanceId,
    pub anchor: crate::Anchor,
}

/// Instance parameters, with the defaults an unset (zero) field stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameters {
    pub poll_interval: Duration,
    pub checkpoint_interval: Duration,
    pub witness_count: u32,
    pub max_clock_skew: Duration,
}

impl Parameters {
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_WITNESS_COUNT: u32 = 2;
    pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

    fn from_proto(p: Option<&pb::InstanceParameters>) -> Self {
        let secs = |v: u32, default: Duration| {
            if v == 0 {
                default
            } else {
                Duration::from_secs(u64::from(v))
            }
        };
        let p = p.cloned().unwrap_or_default();
        Self {
            poll_interval: secs(p.poll_interval_secs, Self::DEFAULT_POLL_INTERVAL),
            checkpoint_interval: secs(
                p.checkpoint_interval_secs,
                Self::DEFAULT_CHECKPOINT_INTERVAL,
            ),
            witness_count: if p.witness_count == 0 {
                Self::DEFAULT_WITNESS_COUNT
            } else {
                p.witness_count
            },
            max_clock_skew: secs(p.max_clock_skew_secs, Self::DEFAULT_MAX_CLOCK_SKEW),
        }
    }
}

/// A validated global configuration.
#[derive(Debug, Clone)]
pub struct GlobalConf {
    instance: InstanceId,
    serial: u64,
    generated_at: i64,
    expires_at: i64,
    members: BTreeMap<MemberId, MemberInfo>,
    subsystems: BTreeMap<SubsystemId, String>,
    /// Subsystem names per language (only of subsystems that published some).
    subsystem_names: BTreeMap<SubsystemId, BTreeMap<String, String>>,
    servers: BTreeMap<SecurityServerId, ServerInfo>,
    hosting: HashMap<SubsystemId, Vec<SecurityServerId>>,
    by_cert: HashMap<[u8; 32], SecurityServerId>,
    key_owner: HashMap<KeyId, MemberId>,
    groups: BTreeMap<GlobalGroupId, GroupInfo>,
    registry_urls: Vec<String>,
    /// The instance CAs, the issuing one first (empty: the anchor's are in force).
    ca_certificates: Vec<Vec<u8>>,
    parameters: Parameters,
    /// The federated instances, by identifier.
    federated: BTreeMap<InstanceId, FederatedInstance>,
}

impl GlobalConf {
    /// Validates a decoded configuration. `instance` is the anchor's: a configuration of another
    /// instance is refused.
    pub fn from_proto(
        c: &pb::GlobalConfiguration,
        instance: &InstanceId,
    ) -> Result<Self, InvalidConf> {
        let conf_instance: InstanceId = c.instance.parse()?;
        if &conf_instance != instance {
            return Err(inconsistent(format!(
                "configuration is for instance {conf_instance}, the anchor for {instance}"
            )));
        }
        if c.expires_at <= c.generated_at {
            return Err(inconsistent("expires before it was generated".into()));
        }
        let own = |what: &str, id_instance: &str| {
            if id_instance == instance.as_str() {
                Ok(())
            } else {
                Err(inconsistent(format!("{what} belongs to another instance")))
            }
        };

        let mut members = BTreeMap::new();
        let mut subsystems = BTreeMap::new();
        let mut subsystem_names = BTreeMap::new();
        for m in &c.members {
            let id: MemberId = m.id.parse()?;
            own(&m.id, id.instance())?;
            let mut subs = Vec::with_capacity(m.subsystems.len());
            for s in &m.subsystems {
                let sid: SubsystemId = s.id.parse()?;
                if sid.member() != &id {
                    return Err(inconsistent(format!(
                        "subsystem {sid} listed under member {id}"
                    )));
                }
                if subsystems.insert(sid.clone(), s.name.clone()).is_some() {
                    return Err(inconsistent(format!("subsystem {sid} listed twice")));
                }
                if !s.names.is_empty() {
                    if s.names
                        .iter()
                        .any(|(lang, name)| !is_language(lang) || name.trim().is_empty())
                    {
                        return Err(inconsistent(format!(
                            "subsystem {sid} has a name that is not of a language or is empty"
                        )));
                    }
                    subsystem_names.insert(sid.clone(), s.names.clone());
                }
                subs.push(sid);
            }
            let mut keys = Vec::with_capacity(m.signing_keys.len());
            for k in &m.signing_keys {
                let public_key = PublicKey::from_bytes(&k.public_key)
                    .map_err(|e| inconsistent(format!("signing key of {id}: {e}")))?;
                let key_id = KeyId::parse(&k.key_id)
                    .map_err(|e| inconsistent(format!("signing key of {id}: {e}")))?;
                if public_key.key_id() != key_id {
                    return Err(inconsistent(format!(
                        "key id {key_id} of {id} does not match its key"
                    )));
                }
                keys.push(MemberKey {
                    key_id,
                    public_key,
                    valid_from: k.valid_from,
                    valid_until: (k.valid_until != 0).then_some(k.valid_until),
                });
            }
            for (lang, name) in &m.names {
                if !is_language(lang) || name.trim().is_empty() {
                    return Err(inconsistent(format!(
                        "member {id} has a name for {lang:?} that is not a language or is empty"
                    )));
                }
            }
            if !m.privacy_contact.is_empty() && !is_contact_url(&m.privacy_contact) {
                return Err(inconsistent(format!(
                    "member {id}'s privacy contact is not an https: or mailto: URL"
                )));
            }
            let info = MemberInfo {
                id: id.clone(),
                name: m.name.clone(),
                names: m
                    .names
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                privacy_contact: (!m.privacy_contact.is_empty()).then(|| m.privacy_contact.clone()),
                subsystems: subs,
                signing_keys: keys,
            };
            if members.insert(id.clone(), info).is_some() {
                return Err(inconsistent(format!("member {id} listed twice")));
            }
        }

        let mut key_owner = HashMap::new();
        for m in members.values() {
            for k in &m.signing_keys {
                if key_owner.insert(k.key_id.clone(), m.id.clone()).is_some() {
                    return Err(inconsistent(format!(
                        "signing key {} listed twice",
                        k.key_id
                    )));
                }
            }
        }

        let mut servers = BTreeMap::new();
        let mut hosting: HashMap<SubsystemId, Vec<SecurityServerId>> = HashMap::new();
        let mut by_cert = HashMap::new();
        for s in &c.security_servers {
            let id: SecurityServerId = s.id.parse()?;
            if !members.contains_key(id.owner()) {
                return Err(inconsistent(format!("server {id} has an unknown owner")));
            }
            let tls_cert_sha256: [u8; 32] =
                s.tls_cert_sha256.as_slice().try_into().map_err(|_| {
                    inconsistent(format!("server {id}: certificate hash is not 32 bytes"))
                })?;
            let renewal_tls_cert_sha256: Option<[u8; 32]> = match s.renewal_tls_cert_sha256.len() {
                0 => None,
                _ => Some(
                    s.renewal_tls_cert_sha256
                        .as_slice()
                        .try_into()
                        .map_err(|_| {
                            inconsistent(format!(
                                "server {id}: renewal certificate hash is not 32 bytes"
                            ))
                        })?,
                ),
            };
            for pin in std::iter::once(tls_cert_sha256).chain(renewal_tls_cert_sha256) {
                if by_cert.insert(pin, id.clone()).is_some() {
                    return Err(inconsistent(format!(
                        "server {id} reuses a certificate listed before"
                    )));
                }
            }
            let mut hosted = Vec::with_capacity(s.hosted_subsystems.len());
            for h in &s.hosted_subsystems {
                let sid: SubsystemId = h.parse()?;
                if !subsystems.contains_key(&sid) {
                    return Err(inconsistent(format!(
                        "server {id} hosts unknown subsystem {sid}"
                    )));
                }
                hosting.entry(sid.clone()).or_default().push(id.clone());
                hosted.push(sid);
            }
            let info = ServerInfo {
                id: id.clone(),
                addresses: s.addresses.clone(),
                tls_cert_sha256,
                renewal_tls_cert_sha256,
                hosted,
            };
            if servers.insert(id.clone(), info).is_some() {
                return Err(inconsistent(format!("server {id} listed twice")));
            }
        }

        let mut groups = BTreeMap::new();
        for g in &c.global_groups {
            let id: GlobalGroupId = g.id.parse()?;
            own(&g.id, id.instance())?;
            let members = g
                .members
                .iter()
                .map(|m| m.parse::<SubsystemId>())
                .collect::<Result<Vec<_>, _>>()?;
            let info = GroupInfo {
                id: id.clone(),
                description: g.description.clone(),
                members,
            };
            if groups.insert(id.clone(), info).is_some() {
                return Err(inconsistent(format!("group {id} listed twice")));
            }
        }
        let mut federated = BTreeMap::new();
        for f in &c.federated_instances {
            let id: InstanceId = f.instance.parse()?;
            if &id == instance {
                return Err(inconsistent(format!(
                    "instance {id} is listed as federated with itself"
                )));
            }
            let anchor = crate::Anchor::parse(&f.anchor)
                .map_err(|e| inconsistent(format!("the anchor of federated instance {id}: {e}")))?;
            if anchor.instance() != &id {
                return Err(inconsistent(format!(
                    "federated instance {id} has an anchor of instance {}",
                    anchor.instance()
                )));
            }
            let entry = FederatedInstance {
                instance: id.clone(),
                anchor,
            };
            if federated.insert(id.clone(), entry).is_some() {
                return Err(inconsistent(format!(
                    "federated instance {id} listed twice"
                )));
            }
        }
        for der in &c.ca_certificates {
            certs::certificate_info(der)
                .map_err(|e| inconsistent(format!("instance CA certificate: {e}")))?;
        }

        Ok(Self {
            instance: conf_instance,
            serial: c.serial,
            generated_at: c.generated_at,
            expires_at: c.expires_at,
            members,
            subsystems,
            subsystem_names,
            servers,
            hosting,
            by_cert,
            key_owner,
            groups,
            registry_urls: c.registry_urls.clone(),
            ca_certificates: c.ca_certificates.clone(),
            parameters: Parameters::from_proto(c.parameters.as_ref()),
            federated,
        })
    }

    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }
    pub fn serial(&self) -> u64 {
        self.serial
    }
    pub fn generated_at(&self) -> i64 {
        self.generated_at
    }
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
    /// An expired configuration must not be used for exchanges (DESIGN §4 (c)).
    pub fn is_expired(&self, unix_now: i64) -> bool {
        unix_now >= self.expires_at
    }
    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }
    pub fn registry_urls(&self) -> &[String] {
        &self.registry_urls
    }

    /// The instance CA certificates (DER) this configuration lists, the one that issues new
    /// certificates first. Empty in configurations from before CA rollover.
    pub fn ca_certificates(&self) -> &[Vec<u8>] {
        &self.ca_certificates
    }

    /// The CAs to trust for HTTPS to the registry: this configuration's, or `anchor`'s when it
    /// lists none.
    pub fn trusted_cas(&self, anchor: &crate::Anchor) -> Vec<Vec<u8>> {
        if self.ca_certificates.is_empty() {
            anchor.ca_certificates_der()
        } else {
            self.ca_certificates.clone()
        }
    }
    /// The instances this one is federated with, by identifier.
    pub fn federated_instances(&self) -> impl Iterator<Item = &FederatedInstance> {
        self.federated.values()
    }
    /// The anchor of a federated instance, if this configuration lists it.
    pub fn federated(&self, instance: &InstanceId) -> Option<&crate::Anchor> {
        self.federated.get(instance).map(|f| &f.anchor)
    }
    pub fn members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.values()
    }
    pub fn member(&self, id: &MemberId) -> Option<&MemberInfo> {
        self.members.get(id)
    }
    /// The subsystem's name, if the configuration lists it.
    pub fn subsystem_name(&self, id: &SubsystemId) -> Option<&str> {
        self.subsystems.get(id).map(String::as_str)
    }
    /// The subsystem's names per language, as it published them (empty when none).
    pub fn subsystem_names(&self, id: &SubsystemId) -> BTreeMap<String, String> {
        self.subsystem_names.get(id).cloned().unwrap_or_default()
    }
    pub fn has_subsystem(&self, id: &SubsystemId) -> bool {
        self.subsystems.contains_key(id)
    }
    /// Whether the configuration lists the client: its subsystem, or the member itself.
    pub fn has_client(&self, id: &ClientId) -> bool {
        match id {
            ClientId::Member(m) => self.members.contains_key(m),
            ClientId::Subsystem(s) => self.has_subsystem(s),
        }
    }
    /// Whether `server` sends requests for `client`: it hosts the client's subsystem, or, for a
    /// member calling without a subsystem, the member owns it (as in X-Road, where a server's
    /// owner is always one of its clients).
    pub fn hosts_client(&self, server: &SecurityServerId, client: &ClientId) -> bool {
        match client {
            ClientId::Member(m) => server.owner() == m && self.servers.contains_key(server),
            ClientId::Subsystem(s) => self.servers_hosting(s).contains(server),
        }
    }
    pub fn subsystems(&self) -> impl Iterator<Item = (&SubsystemId, &str)> {
        self.subsystems.iter().map(|(k, v)| (k, v.as_str()))
    }
    pub fn servers(&self) -> impl Iterator<Item = &ServerInfo> {
        self.servers.values()
    }
    pub fn server(&self, id: &SecurityServerId) -> Option<&ServerInfo> {
        self.servers.get(id)
    }
    /// The servers that host a subsystem, in configuration order.
    pub fn servers_hosting(&self, subsystem: &SubsystemId) -> &[SecurityServerId] {
        self.hosting
            .get(subsystem)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    /// The server whose TLS certificate has this SHA-256, if any (certificate pinning).
    pub fn server_by_cert(&self, sha256: &[u8; 32]) -> Option<&ServerInfo> {
        self.by_cert.get(sha256).and_then(|id| self.servers.get(id))
    }
    pub fn groups(&self) -> impl Iterator<Item = &GroupInfo> {
        self.groups.values()
    }
    pub fn group(&self, id: &GlobalGroupId) -> Option<&GroupInfo> {
        self.groups.get(id)
    }
    pub fn is_in_group(&self, group: &GlobalGroupId, subsystem: &SubsystemId) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.members.contains(subsystem))
    }
    /// The member that holds the signing key with this id, and the key (whatever its validity).
    pub fn signing_key(&self, key_id: &KeyId) -> Option<(&MemberId, &MemberKey)> {
        let member = self.key_owner.get(key_id)?;
        let key = self
            .members
            .get(member)?
            .signing_keys
            .iter()
            .find(|k| &k.key_id == key_id)?;
        Some((member, key))
    }

    /// The member's key with this id, if it was valid at `unix` (a signature's created-at).
    pub fn member_key_at(
        &self,
        member: &MemberId,
        key_id: &KeyId,
        unix: i64,
    ) -> Option<&MemberKey> {
        self.members
            .get(member)?
            .signing_keys
            .iter()
            .find(|k| &k.key_id == key_id && k.is_valid_at(unix))
    }
}
