//! The registry's database (`registry.redb`): one table per kind of record, values as JSON.
//! Every change is one write transaction that also holds its audit entry and, when the change
//! affects the configuration, the newly signed publication, so a crash never leaves a change
//! without its audit record or a configuration that does not match the state.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytes::Bytes;
use certs::KeyId;
use globalconf::{GlobalGroupId, InstanceId, MemberId, SecurityServerId, SubsystemId};
use proto::v1 as pb;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::enrollment::{EnrollmentRecord, TokenRecord};
use crate::state::{
    FederationRecord, GroupRecord, KeyRecord, KeyRequestRecord, MemberRecord, RegistryState,
    ServerRecord, SubsystemRecord,
};
use crate::util::b64;

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

const MEMBERS: Table = TableDefinition::new("members");
const SUBSYSTEMS: Table = TableDefinition::new("subsystems");
const GROUPS: Table = TableDefinition::new("global_groups");
const SERVERS: Table = TableDefinition::new("security_servers");
/// Key: `"MEMBER_ID KEY_ID"` (identifiers never contain a space).
const KEYS: Table = TableDefinition::new("member_signing_keys");
const ENROLLMENTS: Table = TableDefinition::new("enrollments");
/// Key: `"MEMBER_ID KEY_ID"`; made by the first request in databases created before it existed.
const KEY_REQUESTS: Table = TableDefinition::new("key_requests");
/// Key: hex SHA-256 of the token.
const TOKENS: Table = TableDefinition::new("enrollment_tokens");
const META: Table = TableDefinition::new("meta");
/// Federated instances: instance id → `FederationRecord` (absent in databases from before
/// federation).
const FEDERATION: Table = TableDefinition::new("federated_instances");
const AUDIT: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("audit");

const META_PUBLICATION: &str = "publication";
/// The configuration-signing key history (`KeyAnnouncement`s, oldest first, base64 in JSON).
const META_KEY_HISTORY: &str = "signing_key_history";

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the registry database is open in another process (is `central-registry serve` running? \
         then use the admin API, which the CLI subcommands do)"
    )]
    InUse,
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("database record {0} is corrupt: {1}")]
    Corrupt(String, String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse,
            e => StoreError::Db(e.into()),
        }
    }
}

/// The signed configuration the registry currently serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredPublication", into = "StoredPublication")]
pub struct Publication {
    pub serial: u64,
    pub generated_at: i64,
    pub expires_at: i64,
    /// The `SignedConfiguration` bytes.
    pub envelope: Bytes,
}

#[derive(Serialize, Deserialize)]
struct StoredPublication {
    serial: u64,
    generated_at: i64,
    expires_at: i64,
    #[serde(with = "b64")]
    envelope: Vec<u8>,
}

impl From<StoredPublication> for Publication {
    fn from(p: StoredPublication) -> Self {
        Publication {
            serial: p.serial,
            generated_at: p.generated_at,
            expires_at: p.expires_at,
            envelope: Bytes::from(p.envelope),
        }
    }
}

impl From<Publication> for StoredPublication {
    fn from(p: Publication) -> Self {
        StoredPublication {
            serial: p.serial,
            generated_at: p.generated_at,
            expires_at: p.expires_at,
            envelope: p.envelope.to_vec(),
        }
    }
}

/// One recorded admin or enrolment action (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the audit table, assigned on commit.
    #[serde(default)]
    pub seq: u64,
    pub time: i64,
    pub action: String,
    pub details: serde_json::Value,
}

/// One record-level change; the registry applies the same list to memory and to the database.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    PutMember(MemberId, MemberRecord),
    DeleteMember(MemberId),
    PutSubsystem(SubsystemId, SubsystemRecord),
    DeleteSubsystem(SubsystemId),
    PutGroup(GlobalGroupId, GroupRecord),
    DeleteGroup(GlobalGroupId),
    PutServer(SecurityServerId, ServerRecord),
    DeleteServer(SecurityServerId),
    PutKey(MemberId, KeyId, KeyRecord),
    DeleteKey(MemberId, KeyId),
    PutEnrollment(EnrollmentRecord),
    DeleteEnrollment(SecurityServerId),
    PutToken(String, TokenRecord),
    PutKeyRequest(MemberId, KeyId, KeyRequestRecord),
    DeleteKeyRequest(MemberId, KeyId),
    /// The whole configuration-signing key history after a rollover.
    PutKeyHistory(Vec<pb::KeyAnnouncement>),
    PutFederation(InstanceId, FederationRecord),
    DeleteFederation(InstanceId),
}

impl Change {
    /// Whether the change alters the published configuration (and so needs a new serial).
    pub(crate) fn affects_configuration(&self) -> bool {
        !matches!(
            self,
            Change::PutEnrollment(_)
                | Change::DeleteEnrollment(_)
                | Change::PutToken(..)
                | Change::PutKeyRequest(..)
                | Change::DeleteKeyRequest(..)
        )
    }
}

/// Everything the database holds, loaded at start.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub state: RegistryState,
    pub enrollments: BTreeMap<SecurityServerId, EnrollmentRecord>,
    pub tokens: HashMap<String, TokenRecord>,
    pub key_requests: BTreeMap<(MemberId, KeyId), KeyRequestRecord>,
    /// The configuration-signing key history, oldest first.
    pub key_history: Vec<pb::KeyAnnouncement>,
    pub publication: Option<Publication>,
}

#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
}

fn key_key(member: &MemberId, key_id: &KeyId) -> String {
    format!("{member} {key_id}")
}

/// Bytes stored as base64 in JSON.
#[derive(Serialize, Deserialize)]
struct B64(#[serde(with = "b64")] Vec<u8>);

fn parse_key_key(table: &str, key: &str) -> Result<(MemberId, KeyId), StoreError> {
    let (member, key_id) = key
        .split_once(' ')
        .ok_or_else(|| StoreError::Corrupt(table.into(), "key".into()))?;
    let member: MemberId = parse(table, member)?;
    let key_id =
        KeyId::parse(key_id).map_err(|e| StoreError::Corrupt(table.into(), e.to_string()))?;
    Ok((member, key_id))
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(what.to_owned(), e.to_string()))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(what.to_owned(), e.to_string()))
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(what.to_owned(), e.to_string()))
}

/// Every table of the database but [`AUDIT`].
const TABLES: [Table; 10] = [
    MEMBERS,
    SUBSYSTEMS,
    GROUPS,
    SERVERS,
    KEYS,
    ENROLLMENTS,
    TOKENS,
    KEY_REQUESTS,
    META,
    FEDERATION,
];

impl Store {
    /// Creates a new database with all tables (used by `init`).
    pub(crate) fn create(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        for t in TABLES {
            txn.open_table(t)?;
        }
        txn.open_table(AUDIT)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Copies the database, as one read transaction sees it, into a new file at `path`: a
    /// backup's copy (the file itself cannot be copied while it may be written).
    pub(crate) fn snapshot_to(&self, path: &Path) -> Result<(), runtime::backup::BackupError> {
        use runtime::backup::{BackupError, copy_table};
        let db = |e: &dyn std::fmt::Display| BackupError::Database(e.to_string());
        if path.exists() {
            return Err(BackupError::Refused(format!("{} exists", path.display())));
        }
        let from = self.db.begin_read().map_err(|e| db(&e))?;
        let copy = Database::create(path).map_err(|e| db(&e))?;
        let to = copy.begin_write().map_err(|e| db(&e))?;
        for t in TABLES {
            copy_table(&from, &to, t)?;
        }
        copy_table(&from, &to, AUDIT)?;
        to.commit().map_err(|e| db(&e))
    }

    /// Opens the database `init` created.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::open(path)?,
        })
    }

    pub(crate) fn load(&self, instance: &InstanceId) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read()?;
        let mut state = RegistryState::new(instance.clone());

        for row in txn.open_table(MEMBERS)?.iter()? {
            let (k, v) = row?;
            let id: MemberId = parse("members", k.value())?;
            state.members.insert(id, decode("members", v.value())?);
        }
        for row in txn.open_table(SUBSYSTEMS)?.iter()? {
            let (k, v) = row?;
            let id: SubsystemId = parse("subsystems", k.value())?;
            state
                .subsystems
                .insert(id, decode("subsystems", v.value())?);
        }
        for row in txn.open_table(GROUPS)?.iter()? {
            let (k, v) = row?;
            let id: GlobalGroupId = parse("global_groups", k.value())?;
            state.groups.insert(id, decode("global_groups", v.value())?);
        }
        for row in txn.open_table(SERVERS)?.iter()? {
            let (k, v) = row?;
            let id: SecurityServerId = parse("security_servers", k.value())?;
            state
                .servers
                .insert(id, decode("security_servers", v.value())?);
        }
        for row in txn.open_table(KEYS)?.iter()? {
            let (k, v) = row?;
            let (member, key_id) = parse_key_key("member_signing_keys", k.value())?;
            let record: KeyRecord = decode("member_signing_keys", v.value())?;
            state
                .signing_keys
                .entry(member)
                .or_default()
                .insert(key_id, record);
        }
        match txn.open_table(FEDERATION) {
            Ok(table) => {
                for row in table.iter()? {
                    let (k, v) = row?;
                    let id: InstanceId = parse("federated_instances", k.value())?;
                    state
                        .federated
                        .insert(id, decode("federated_instances", v.value())?);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut enrollments = BTreeMap::new();
        for row in txn.open_table(ENROLLMENTS)?.iter()? {
            let (_, v) = row?;
            let record: EnrollmentRecord = decode("enrollments", v.value())?;
            enrollments.insert(record.server_id.clone(), record);
        }
        let mut tokens = HashMap::new();
        for row in txn.open_table(TOKENS)?.iter()? {
            let (k, v) = row?;
            tokens.insert(
                k.value().to_owned(),
                decode("enrollment_tokens", v.value())?,
            );
        }
        let mut key_requests = BTreeMap::new();
        match txn.open_table(KEY_REQUESTS) {
            Ok(table) => {
                for row in table.iter()? {
                    let (k, v) = row?;
                    key_requests.insert(
                        parse_key_key("key_requests", k.value())?,
                        decode("key_requests", v.value())?,
                    );
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let key_history = match txn.open_table(META)?.get(META_KEY_HISTORY)? {
            Some(v) => decode::<Vec<B64>>("meta.signing_key_history", v.value())?
                .into_iter()
                .map(|b| {
                    <pb::KeyAnnouncement as prost::Message>::decode(b.0.as_slice()).map_err(|e| {
                        StoreError::Corrupt("meta.signing_key_history".into(), e.to_string())
                    })
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let publication = match txn.open_table(META)?.get(META_PUBLICATION)? {
            Some(v) => Some(decode("meta.publication", v.value())?),
            None => None,
        };
        Ok(Loaded {
            state,
            enrollments,
            tokens,
            key_requests,
            key_history,
            publication,
        })
    }

    /// Writes changes, their audit entry and a new publication in one transaction.
    pub(crate) fn commit(
        &self,
        changes: &[Change],
        audit: Option<&AuditEntry>,
        publication: Option<&Publication>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut members = txn.open_table(MEMBERS)?;
            let mut subsystems = txn.open_table(SUBSYSTEMS)?;
            let mut groups = txn.open_table(GROUPS)?;
            let mut servers = txn.open_table(SERVERS)?;
            let mut keys = txn.open_table(KEYS)?;
            let mut enrollments = txn.open_table(ENROLLMENTS)?;
            let mut tokens = txn.open_table(TOKENS)?;
            let mut key_requests = txn.open_table(KEY_REQUESTS)?;
            let mut meta = txn.open_table(META)?;
            let mut federation = txn.open_table(FEDERATION)?;
            for change in changes {
                match change {
                    Change::PutMember(id, r) => {
                        members.insert(id.to_string().as_str(), encode("member", r)?.as_slice())?;
                    }
                    Change::DeleteMember(id) => {
                        members.remove(id.to_string().as_str())?;
                    }
                    Change::PutSubsystem(id, r) => {
                        subsystems
                            .insert(id.to_string().as_str(), encode("subsystem", r)?.as_slice())?;
                    }
                    Change::DeleteSubsystem(id) => {
                        subsystems.remove(id.to_string().as_str())?;
                    }
                    Change::PutGroup(id, r) => {
                        groups.insert(id.to_string().as_str(), encode("group", r)?.as_slice())?;
                    }
                    Change::DeleteGroup(id) => {
                        groups.remove(id.to_string().as_str())?;
                    }
                    Change::PutServer(id, r) => {
                        servers.insert(id.to_string().as_str(), encode("server", r)?.as_slice())?;
                    }
                    Change::DeleteServer(id) => {
                        servers.remove(id.to_string().as_str())?;
                    }
                    Change::PutKey(member, key_id, r) => {
                        keys.insert(
                            key_key(member, key_id).as_str(),
                            encode("key", r)?.as_slice(),
                        )?;
                    }
                    Change::DeleteKey(member, key_id) => {
                        keys.remove(key_key(member, key_id).as_str())?;
                    }
                    Change::PutEnrollment(r) => {
                        enrollments.insert(
                            r.server_id.to_string().as_str(),
                            encode("enrollment", r)?.as_slice(),
                        )?;
                    }
                    Change::DeleteEnrollment(id) => {
                        enrollments.remove(id.to_string().as_str())?;
                    }
                    Change::PutToken(hash, r) => {
                        tokens.insert(hash.as_str(), encode("token", r)?.as_slice())?;
                    }
                    Change::PutKeyRequest(member, key_id, r) => {
                        key_requests.insert(
                            key_key(member, key_id).as_str(),
                            encode("key request", r)?.as_slice(),
                        )?;
                    }
                    Change::DeleteKeyRequest(member, key_id) => {
                        key_requests.remove(key_key(member, key_id).as_str())?;
                    }
                    Change::PutKeyHistory(history) => {
                        let history: Vec<B64> = history
                            .iter()
                            .map(|a| B64(prost::Message::encode_to_vec(a)))
                            .collect();
                        meta.insert(
                            META_KEY_HISTORY,
                            encode("signing key history", &history)?.as_slice(),
                        )?;
                    }
                    Change::PutFederation(id, r) => {
                        federation.insert(id.as_str(), encode("federation", r)?.as_slice())?;
                    }
                    Change::DeleteFederation(id) => {
                        federation.remove(id.as_str())?;
                    }
                }
            }
            if let Some(entry) = audit {
                let mut table = txn.open_table(AUDIT)?;
                let seq = match table.last()? {
                    Some((k, _)) => k.value() + 1,
                    None => 1,
                };
                let entry = AuditEntry {
                    seq,
                    ..entry.clone()
                };
                table.insert(seq, encode("audit", &entry)?.as_slice())?;
            }
            if let Some(p) = publication {
                meta.insert(META_PUBLICATION, encode("publication", p)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The newest `limit` audit entries, oldest first.
    pub(crate) fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut entries = Vec::new();
        for row in table.iter()?.rev().take(limit) {
            let (_, v) = row?;
            entries.push(decode("audit", v.value())?);
        }
        entries.reverse();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::EnrollmentStatus;

    #[test]
    fn changes_round_trip_through_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let store = Store::create(&path).unwrap();
        let jp: InstanceId = "JP".parse().unwrap();
        let m: MemberId = "JP/GOV/da".parse().unwrap();
        let key = certs::SigningKey::from_seed([4; 32]).public_key();
        let server = m.server("ss1").unwrap();
        let publication = Publication {
            serial: 3,
            generated_at: 10,
            expires_at: 20,
            envelope: Bytes::from_static(b"env"),
        };
        let audit = AuditEntry {
            seq: 0,
            time: 5,
            action: "member.add".into(),
            details: serde_json::json!({"id": "JP/GOV/da"}),
        };
        store
            .commit(
                &[
                    Change::PutMember(
                        m.clone(),
                        MemberRecord {
                            name: "DA".into(),
                            ..MemberRecord::default()
                        },
                    ),
                    Change::PutKey(
                        m.clone(),
                        key.key_id(),
                        KeyRecord {
                            public_key: key,
                            valid_from: 1,
                            valid_until: Some(2),
                        },
                    ),
                    Change::PutEnrollment(EnrollmentRecord {
                        server_id: server.clone(),
                        status: EnrollmentStatus::Pending,
                        addresses: vec!["a:1".into()],
                        member_key_id: key.key_id(),
                        submitted_at: 1,
                        decided_at: None,
                        signed_request: b"req".to_vec(),
                        certificate_der: None,
                    }),
                ],
                Some(&audit),
                Some(&publication),
            )
            .unwrap();
        store.commit(&[], Some(&audit), None).unwrap();
        drop(store);

        let store = Store::open(&path).unwrap();
        let loaded = store.load(&jp).unwrap();
        assert_eq!(loaded.state.members[&m].name, "DA");
        assert_eq!(
            loaded.state.signing_keys[&m][&key.key_id()].valid_until,
            Some(2)
        );
        assert_eq!(
            loaded.enrollments[&server].status,
            EnrollmentStatus::Pending
        );
        assert_eq!(loaded.publication, Some(publication));
        let audit = store.audit(10).unwrap();
        assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2]);

        // A second opener is refused with a clear error while the first holds the file.
        assert!(matches!(Store::open(&path), Err(StoreError::InUse)));
    }
}
