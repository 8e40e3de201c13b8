//! Shared fixtures: a small instance (registry key, anchor, two members each owning one security
//! server), signed request/response records, and plain entries; a second instance, FI,
//! federated with it, for evidence of cross-border exchanges.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bytes::Bytes;
use certs::SigningKey;
use exchange::HashedBody;
use globalconf::testing::ConfBuilder;
use globalconf::{Anchor, InstanceId, SecurityServerId};
use msglog::{Entry, LogOptions, MessageLog};
use prost::Message as _;
use proto::v1 as pb;
use sha2::{Digest as _, Sha256, Sha512};

pub const CLIENT_MEMBER: &str = "JP/MUN/131016";
pub const CLIENT: &str = "JP/MUN/131016/portal";
pub const CLIENT_SERVER: &str = "JP/MUN/131016/ss1";
pub const PROVIDER_MEMBER: &str = "JP/GOV/8000012";
pub const PROVIDER: &str = "JP/GOV/8000012/records";
pub const SERVICE: &str = "JP/GOV/8000012/records/residents/v1";
pub const PROVIDER_SERVER: &str = "JP/GOV/8000012/ss1";
pub const FI_PROVIDER_MEMBER: &str = "FI/GOV/0245437-2";
pub const FI_PROVIDER: &str = "FI/GOV/0245437-2/population";
pub const FI_SERVICE: &str = "FI/GOV/0245437-2/population/persons/v1";
pub const FI_PROVIDER_SERVER: &str = "FI/GOV/0245437-2/ss1";
pub const GENERATED_AT: i64 = 1_800_000_000;
pub const CREATED_AT: i64 = 1_800_000_100;

pub fn options() -> LogOptions {
    LogOptions {
        body_key: Some([0x42; 32]),
        subject_key: [0x17; 32],
        ..LogOptions::default()
    }
}

pub fn open(path: &Path) -> MessageLog {
    MessageLog::open(path, options()).unwrap()
}

/// A record that is not a real exchange (for storage tests): the header bytes are arbitrary.
pub fn plain_entry(i: u64, body: Option<&[u8]>, subject: Option<&str>) -> Entry {
    let body_sha256 = Sha256::digest(body.unwrap_or(b"")).to_vec();
    Entry {
        record: pb::LogRecord {
            kind: pb::LogKind::Request as i32,
            side: pb::LogSide::Client as i32,
            message_id: format!("msg-{i}"),
            client: CLIENT.into(),
            service: SERVICE.into(),
            signed_header: format!("header {i}").into_bytes(),
            signature: vec![0; 64],
            key_id: "00".repeat(16),
            body_sha256,
            body_stored: body.is_some(),
            logged_at_ms: 1_800_000_000_000 + i as i64 * 1000,
            peer: PROVIDER_SERVER.into(),
            error: String::new(),
            sent: false,
        },
        body: body.map(|b| HashedBody::new(Bytes::copy_from_slice(b))),
        data_subject: subject.map(str::to_owned),
    }
}

/// The instance: a registry key, two members with one message-signing key and one server each.
pub struct Instance {
    pub registry: SigningKey,
    pub client_key: SigningKey,
    pub provider_key: SigningKey,
    pub anchor: Anchor,
}

/// The anchor of `instance` whose configurations `registry` signs.
pub fn anchor_of(instance: &str, registry: &SigningKey) -> Anchor {
    let clock = certs::ManualClock::at_unix(GENERATED_AT);
    let ca = certs::CertificateAuthority::generate(
        instance,
        std::time::Duration::from_secs(86_400),
        &clock,
    )
    .unwrap();
    Anchor::new(
        instance.parse::<InstanceId>().unwrap(),
        vec!["https://127.0.0.1:41001".into()],
        ca.certificate_pem(),
        vec![registry.public_key()],
    )
    .unwrap()
}

impl Instance {
    pub fn new() -> Self {
        let registry = SigningKey::from_seed([1; 32]);
        let anchor = anchor_of("JP", &registry);
        Instance {
            registry,
            client_key: SigningKey::from_seed([2; 32]),
            provider_key: SigningKey::from_seed([3; 32]),
            anchor,
        }
    }

    pub fn configuration(&self, serial: u64, generated_at: i64) -> pb::GlobalConfiguration {
        ConfBuilder::new("JP", generated_at)
            .serial(serial)
            .subsystem(CLIENT)
            .named(CLIENT_MEMBER, "Chiyoda City")
            .named(CLIENT, "Portal")
            .key(CLIENT_MEMBER, &self.client_key, 1_700_000_000, 0)
            .subsystem(PROVIDER)
            .named(PROVIDER_MEMBER, "Digital Agency")
            .named(PROVIDER, "Records")
            .key(PROVIDER_MEMBER, &self.provider_key, 1_700_000_000, 0)
            .server_at(CLIENT_SERVER, &["127.0.0.1:5500"], [1; 32], &[CLIENT])
            .server_at(PROVIDER_SERVER, &["127.0.0.1:5501"], [2; 32], &[PROVIDER])
            .proto()
    }

    /// The signed envelope of [`Instance::configuration`].
    pub fn envelope(&self, serial: u64, generated_at: i64) -> Vec<u8> {
        globalconf::signed::sign(&self.configuration(serial, generated_at), &self.registry)
    }

    pub fn server_id(&self) -> SecurityServerId {
        CLIENT_SERVER.parse().unwrap()
    }

    /// A request as the client's server logs it, signed by the client member's key.
    pub fn request(&self, message_id: &str, body: &[u8], subject: Option<&str>) -> Entry {
        self.request_to(SERVICE, PROVIDER_SERVER, message_id, body, subject)
    }

    /// [`Instance::request`] for `service` at the server `target` (of this or another
    /// instance).
    pub fn request_to(
        &self,
        service: &str,
        target: &str,
        message_id: &str,
        body: &[u8],
        subject: Option<&str>,
    ) -> Entry {
        let header = pb::RequestHeader {
            message_id: message_id.into(),
            client: CLIENT.into(),
            service: service.into(),
            method: "GET".into(),
            path: "/residents/1".into(),
            created_at: CREATED_AT,
            body_sha256: Sha256::digest(body).to_vec(),
            signer_key_id: self.client_key.key_id().to_string(),
            target_server: target.into(),
            ..Default::default()
        }
        .encode_to_vec();
        let signature = self.client_key.sign(certs::Domain::RequestHeader, &header);
        Entry {
            record: pb::LogRecord {
                kind: pb::LogKind::Request as i32,
                side: pb::LogSide::Client as i32,
                message_id: message_id.into(),
                client: CLIENT.into(),
                service: service.into(),
                signed_header: header,
                signature: signature.to_vec(),
                key_id: self.client_key.key_id().to_string(),
                body_sha256: Sha256::digest(body).to_vec(),
                body_stored: true,
                logged_at_ms: CREATED_AT * 1000 + 5,
                peer: target.into(),
                error: String::new(),
                sent: false,
            },
            body: Some(HashedBody::new(Bytes::copy_from_slice(body))),
            data_subject: subject.map(str::to_owned),
        }
    }

    /// The response to `request`, signed by the provider member's key; `request_hash` is
    /// SHA-512 of the request's signed header unless `wrong_request_hash`.
    pub fn response(&self, request: &Entry, body: &[u8], wrong_request_hash: bool) -> Entry {
        response_by(
            &self.provider_key,
            PROVIDER_SERVER,
            request,
            body,
            wrong_request_hash,
        )
    }

    /// Signs a checkpoint of the log's current size with the client member's key (the log's
    /// owner), cosigns it as the provider's server, stores it; returns the note text.
    pub fn checkpoint(&self, log: &MessageLog, cosign: bool) -> String {
        let size = log.size().unwrap();
        let root = log.root(size).unwrap();
        let origin = CLIENT_SERVER.to_string();
        let cp = tlog::Checkpoint::new(origin.clone(), size, root).unwrap();
        let signer =
            tlog::NoteSigner::new(tlog::log_key_name(&origin), self.client_key.clone()).unwrap();
        let mut note = tlog::sign_checkpoint(&cp, &signer);
        if cosign {
            let witness = tlog::CosignatureSigner::new(
                tlog::log_key_name(PROVIDER_SERVER),
                self.provider_key.clone(),
            )
            .unwrap();
            note.push_signature(tlog::cosign(&cp, &witness, GENERATED_AT as u64 + 200).unwrap())
                .unwrap();
        }
        let text = note.render();
        log.store_checkpoint(size, &text).unwrap();
        text
    }
}

/// The response to `request` as the client's server logs it, signed with `key` by the provider's
/// server `server` (of any instance); `request_hash` is SHA-512 of the request's signed header
/// unless `wrong_request_hash`.
pub fn response_by(
    key: &SigningKey,
    server: &str,
    request: &Entry,
    body: &[u8],
    wrong_request_hash: bool,
) -> Entry {
    let mut request_hash = Sha512::digest(&request.record.signed_header).to_vec();
    if wrong_request_hash {
        request_hash[0] ^= 1;
    }
    let header = pb::ResponseHeader {
        message_id: request.record.message_id.clone(),
        status: 200,
        created_at: CREATED_AT + 1,
        body_sha256: Sha256::digest(body).to_vec(),
        request_hash,
        signer_key_id: key.key_id().to_string(),
        server: server.into(),
        ..Default::default()
    }
    .encode_to_vec();
    let signature = key.sign(certs::Domain::ResponseHeader, &header);
    Entry {
        record: pb::LogRecord {
            kind: pb::LogKind::Response as i32,
            side: pb::LogSide::Client as i32,
            message_id: request.record.message_id.clone(),
            client: request.record.client.clone(),
            service: request.record.service.clone(),
            signed_header: header,
            signature: signature.to_vec(),
            key_id: key.key_id().to_string(),
            body_sha256: Sha256::digest(body).to_vec(),
            body_stored: true,
            logged_at_ms: (CREATED_AT + 1) * 1000,
            peer: server.into(),
            error: String::new(),
            sent: false,
        },
        body: Some(HashedBody::new(Bytes::copy_from_slice(body))),
        data_subject: None,
    }
}

/// Whether `needle` occurs anywhere in the file.
pub fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The instance FI, federated with [`Instance`]'s JP: its registry key and anchor, one provider
/// member with a message-signing key and a security server.
pub struct Foreign {
    pub registry: SigningKey,
    pub provider_key: SigningKey,
    pub anchor: Anchor,
}

impl Foreign {
    pub fn new() -> Self {
        let registry = SigningKey::from_seed([11; 32]);
        let anchor = anchor_of("FI", &registry);
        Foreign {
            registry,
            provider_key: SigningKey::from_seed([12; 32]),
            anchor,
        }
    }

    pub fn configuration(&self, serial: u64, generated_at: i64) -> pb::GlobalConfiguration {
        ConfBuilder::new("FI", generated_at)
            .serial(serial)
            .subsystem(FI_PROVIDER)
            .named(
                FI_PROVIDER_MEMBER,
                "Digital and Population Data Services Agency",
            )
            .key(FI_PROVIDER_MEMBER, &self.provider_key, 1_700_000_000, 0)
            .server_at(
                FI_PROVIDER_SERVER,
                &["127.0.0.1:5600"],
                [3; 32],
                &[FI_PROVIDER],
            )
            .proto()
    }

    /// `conf`'s envelope, signed by FI's registry.
    pub fn sign(&self, conf: &pb::GlobalConfiguration) -> Vec<u8> {
        globalconf::signed::sign(conf, &self.registry)
    }

    /// The signed envelope of [`Foreign::configuration`].
    pub fn envelope(&self, serial: u64, generated_at: i64) -> Vec<u8> {
        self.sign(&self.configuration(serial, generated_at))
    }
}
