//! What the registry knows about the instance, as plain in-memory values, and the pure function
//! that turns it into a global configuration. No I/O: the store loads and saves these values,
//! and a benchmark can build a [`RegistryState`] directly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use certs::{KeyId, PublicKey};
use globalconf::{GlobalGroupId, InstanceId, MemberId, SecurityServerId, SubsystemId};
use proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::util::{b64, b64_opt};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub name: String,
    /// The name per language, for residents (`ja` → `千代田区`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
    /// Where residents ask about the member's use of their data (`https:` or `mailto:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_contact: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsystemRecord {
    pub name: String,
    /// The name per language, for residents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub description: String,
    pub members: BTreeSet<SubsystemId>,
}

/// An approved security server. The certificate hashes are computed once, when the record is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredServer", into = "StoredServer")]
pub struct ServerRecord {
    /// `host:port` of its server proxy, in order of preference.
    pub addresses: Vec<String>,
    /// Subsystems it hosts (its owner's or, for shared hosting, other members').
    pub hosted: BTreeSet<SubsystemId>,
    tls_certificate_der: Vec<u8>,
    tls_cert_sha256: [u8; 32],
    /// A certificate issued to renew the one above, until the server says it uses it.
    renewal: Option<(Vec<u8>, [u8; 32])>,
}

impl ServerRecord {
    pub fn new(
        addresses: Vec<String>,
        tls_certificate_der: Vec<u8>,
        hosted: BTreeSet<SubsystemId>,
    ) -> Self {
        let tls_cert_sha256 = certs::cert_sha256(&tls_certificate_der);
        Self {
            addresses,
            hosted,
            tls_certificate_der,
            tls_cert_sha256,
            renewal: None,
        }
    }

    /// DER of the TLS certificate the registry's CA issued for it.
    pub fn tls_certificate_der(&self) -> &[u8] {
        &self.tls_certificate_der
    }

    /// The pin peers check.
    pub fn tls_cert_sha256(&self) -> &[u8; 32] {
        &self.tls_cert_sha256
    }

    /// DER of the certificate issued to renew the current one, while the server moves to it.
    pub fn renewal_certificate_der(&self) -> Option<&[u8]> {
        self.renewal.as_ref().map(|(der, _)| der.as_slice())
    }

    /// The pin of the renewal certificate, which peers accept too.
    pub fn renewal_cert_sha256(&self) -> Option<&[u8; 32]> {
        self.renewal.as_ref().map(|(_, sha)| sha)
    }

    /// The record with `der` as the renewal certificate (replacing any earlier one).
    pub fn with_renewal(mut self, der: Vec<u8>) -> Self {
        let sha = certs::cert_sha256(&der);
        self.renewal = Some((der, sha));
        self
    }

    /// The record once the server uses its renewal certificate: it is the only one listed.
    pub fn renewed(mut self) -> Self {
        if let Some((der, sha)) = self.renewal.take() {
            self.tls_certificate_der = der;
            self.tls_cert_sha256 = sha;
        }
        self
    }
}

#[derive(Serialize, Deserialize)]
struct StoredServer {
    addresses: Vec<String>,
    hosted: BTreeSet<SubsystemId>,
    #[serde(with = "b64")]
    tls_certificate_der: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    renewal_certificate_der: Option<Vec<u8>>,
}

impl From<StoredServer> for ServerRecord {
    fn from(s: StoredServer) -> Self {
        let record = ServerRecord::new(s.addresses, s.tls_certificate_der, s.hosted);
        match s.renewal_certificate_der {
            Some(der) => record.with_renewal(der),
            None => record,
        }
    }
}

impl From<ServerRecord> for StoredServer {
    fn from(s: ServerRecord) -> Self {
        StoredServer {
            addresses: s.addresses,
            hosted: s.hosted,
            tls_certificate_der: s.tls_certificate_der,
            renewal_certificate_der: s.renewal.map(|(der, _)| der),
        }
    }
}

/// A member's message-signing key. Its key id is the map key it is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub public_key: PublicKey,
    pub valid_from: i64,
    /// `None`: valid until removed.
    pub valid_until: Option<i64>,
}

/// A security server's request to list a new signing key of a member (key rotation), waiting for
/// the operator. Stored under the member and the new key's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequestRecord {
    pub public_key: PublicKey,
    /// The server that holds the key and asked.
    pub server_id: SecurityServerId,
    pub submitted_at: i64,
    /// The member's key that signed the request.
    pub current_key_id: KeyId,
    /// How long after the new key becomes valid the signing key stops being valid (0: never).
    pub retire_current_after_secs: u64,
}

/// An agreement to federate with another instance: its anchor, as its operator handed it over
/// (stored in canonical form, what `globalconf::Anchor::to_toml` writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationRecord {
    pub anchor: String,
    pub added_at: i64,
}

/// Everything that goes into the global configuration, keyed and sorted by identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryState {
    pub instance: InstanceId,
    pub members: BTreeMap<MemberId, MemberRecord>,
    pub subsystems: BTreeMap<SubsystemId, SubsystemRecord>,
    pub signing_keys: BTreeMap<MemberId, BTreeMap<KeyId, KeyRecord>>,
    pub servers: BTreeMap<SecurityServerId, ServerRecord>,
    pub groups: BTreeMap<GlobalGroupId, GroupRecord>,
    /// The instances this one is federated with.
    pub federated: BTreeMap<InstanceId, FederationRecord>,
}

impl RegistryState {
    pub fn new(instance: InstanceId) -> Self {
        Self {
            instance,
            members: BTreeMap::new(),
            subsystems: BTreeMap::new(),
            signing_keys: BTreeMap::new(),
            servers: BTreeMap::new(),
            groups: BTreeMap::new(),
            federated: BTreeMap::new(),
        }
    }

    /// The subsystems of one member, in order.
    pub fn subsystems_of<'a>(
        &'a self,
        member: &'a MemberId,
    ) -> impl Iterator<Item = (&'a SubsystemId, &'a SubsystemRecord)> + 'a {
        self.subsystems
            .iter()
            .filter(move |(id, _)| id.member() == member)
    }

    /// The member that lists this signing key, if any.
    pub fn key_owner(&self, key_id: &KeyId) -> Option<&MemberId> {
        self.signing_keys
            .iter()
            .find(|(_, keys)| keys.contains_key(key_id))
            .map(|(member, _)| member)
    }
}

/// What a publication needs besides the state: the instance-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationSettings {
    pub validity: Duration,
    pub parameters: pb::InstanceParameters,
    pub registry_urls: Vec<String>,
    /// The instance CA certificates (DER), the issuing one first.
    pub ca_certificates: Vec<Vec<u8>>,
}

/// Builds the global configuration for `serial`, deterministically: members, subsystems, keys,
/// servers and groups in identifier order. References to things the state does not hold (a
/// subsystem of an unknown member, a server of an unknown owner, an unknown hosted or grouped
/// subsystem) are left out, so the result always passes `GlobalConf::from_proto`.
pub fn build_configuration(
    state: &RegistryState,
    serial: u64,
    generated_at: i64,
    settings: &PublicationSettings,
) -> pb::GlobalConfiguration {
    let validity = i64::try_from(settings.validity.as_secs()).unwrap_or(i64::MAX);

    // Both maps are ordered by member first, so one merge walk groups subsystems under members.
    let mut subsystems = state.subsystems.iter().peekable();
    let mut members = Vec::with_capacity(state.members.len());
    for (id, record) in &state.members {
        while subsystems.next_if(|(sid, _)| sid.member() < id).is_some() {}
        let mut subs = Vec::new();
        while let Some((sid, s)) = subsystems.next_if(|(sid, _)| sid.member() == id) {
            subs.push(pb::Subsystem {
                id: sid.to_string(),
                name: s.name.clone(),
                names: s.names.clone(),
            });
        }
        let signing_keys = state
            .signing_keys
            .get(id)
            .map(|keys| {
                keys.iter()
                    .map(|(key_id, k)| pb::MemberSigningKey {
                        key_id: key_id.to_string(),
                        public_key: k.public_key.as_bytes().to_vec(),
                        valid_from: k.valid_from,
                        valid_until: k.valid_until.unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.push(pb::Member {
            id: id.to_string(),
            name: record.name.clone(),
            subsystems: subs,
            signing_keys,
            names: record.names.clone(),
            privacy_contact: record.privacy_contact.clone().unwrap_or_default(),
        });
    }

    // Listed in the configuration: the subsystem exists and so does its member.
    let known = |s: &&SubsystemId| {
        state.subsystems.contains_key(*s) && state.members.contains_key(s.member())
    };
    let security_servers = state
        .servers
        .iter()
        .filter(|(id, _)| state.members.contains_key(id.owner()))
        .map(|(id, s)| pb::SecurityServer {
            id: id.to_string(),
            addresses: s.addresses.clone(),
            tls_cert_sha256: s.tls_cert_sha256().to_vec(),
            renewal_tls_cert_sha256: s
                .renewal_cert_sha256()
                .map(|sha| sha.to_vec())
                .unwrap_or_default(),
            hosted_subsystems: s
                .hosted
                .iter()
                .filter(known)
                .map(ToString::to_string)
                .collect(),
        })
        .collect();

    let global_groups = state
        .groups
        .iter()
        .map(|(id, g)| pb::GlobalGroup {
            id: id.to_string(),
            description: g.description.clone(),
            members: g
                .members
                .iter()
                .filter(known)
                .map(ToString::to_string)
                .collect(),
        })
        .collect();

    pb::GlobalConfiguration {
        instance: state.instance.to_string(),
        serial,
        generated_at,
        expires_at: generated_at.saturating_add(validity),
        members,
        security_servers,
        global_groups,
        registry_urls: settings.registry_urls.clone(),
        ca_certificates: settings.ca_certificates.clone(),
        parameters: Some(settings.parameters),
        federated_instances: state
            .federated
            .iter()
            .map(|(instance, f)| pb::FederatedInstance {
                instance: instance.to_string(),
                anchor: f.anchor.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certs::SigningKey;

    fn sample() -> RegistryState {
        let mut s = RegistryState::new("JP".parse().unwrap());
        let da: MemberId = "JP/GOV/digital-agency".parse().unwrap();
        let mun: MemberId = "JP/MUN/131016".parse().unwrap();
        for (m, name) in [(&mun, "Chiyoda"), (&da, "Digital Agency")] {
            s.members.insert(
                m.clone(),
                MemberRecord {
                    name: name.into(),
                    ..MemberRecord::default()
                },
            );
        }
        let portal = da.subsystem("portal").unwrap();
        let records = mun.subsystem("records").unwrap();
        let orphan: SubsystemId = "JP/GOV/nobody/x".parse().unwrap();
        for sid in [&portal, &records, &orphan] {
            s.subsystems.insert(
                sid.clone(),
                SubsystemRecord {
                    name: sid.code().into(),
                    ..SubsystemRecord::default()
                },
            );
        }
        let key = SigningKey::from_seed([7; 32]).public_key();
        s.signing_keys.entry(da.clone()).or_default().insert(
            key.key_id(),
            KeyRecord {
                public_key: key,
                valid_from: 10,
                valid_until: None,
            },
        );
        s.servers.insert(
            da.server("ss1").unwrap(),
            ServerRecord::new(
                vec!["127.0.0.1:5000".into()],
                b"cert".to_vec(),
                [portal.clone(), records.clone(), orphan.clone()].into(),
            ),
        );
        s.servers.insert(
            "JP/GOV/nobody/ss9".parse().unwrap(),
            ServerRecord::new(vec!["x:1".into()], b"other".to_vec(), BTreeSet::new()),
        );
        s.groups.insert(
            "JP/portals".parse().unwrap(),
            GroupRecord {
                description: "portals".into(),
                members: [portal, orphan].into(),
            },
        );
        s
    }

    fn settings() -> PublicationSettings {
        PublicationSettings {
            validity: Duration::from_secs(600),
            parameters: crate::config::ParametersConfig::default().to_proto(),
            registry_urls: vec!["https://127.0.0.1:41001".into()],
            ca_certificates: Vec::new(),
        }
    }

    #[test]
    fn builds_a_valid_sorted_configuration_without_dangling_references() {
        let state = sample();
        let conf = build_configuration(&state, 5, 1000, &settings());
        assert_eq!(conf.serial, 5);
        assert_eq!(conf.expires_at - conf.generated_at, 600);
        let ids: Vec<_> = conf.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["JP/GOV/digital-agency", "JP/MUN/131016"]);
        assert_eq!(conf.members[0].subsystems.len(), 1);
        assert_eq!(conf.members[1].subsystems[0].id, "JP/MUN/131016/records");
        assert_eq!(conf.members[0].signing_keys.len(), 1);
        assert_eq!(conf.security_servers.len(), 1);
        assert_eq!(conf.security_servers[0].hosted_subsystems.len(), 2);
        assert_eq!(
            conf.global_groups[0].members,
            ["JP/GOV/digital-agency/portal"]
        );
        let checked = globalconf::GlobalConf::from_proto(&conf, &state.instance).unwrap();
        assert_eq!(checked.servers().count(), 1);
        // Deterministic: the same state gives the same bytes.
        let again = build_configuration(&state, 5, 1000, &settings());
        assert_eq!(
            prost::Message::encode_to_vec(&conf),
            prost::Message::encode_to_vec(&again)
        );
    }

    #[test]
    fn server_record_round_trips_with_its_hash() {
        let r = ServerRecord::new(vec!["a:1".into()], b"der".to_vec(), BTreeSet::new());
        let json = serde_json::to_string(&r).unwrap();
        let back: ServerRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.tls_cert_sha256(), &certs::cert_sha256(b"der"));
    }
}
