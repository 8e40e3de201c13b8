//! One function per parser that reads bytes from the network or from disk, each taking any
//! bytes at all. `fuzz/` runs them under libFuzzer (`scripts/fuzz`); `tests/corpus.rs` runs them
//! over the corpus kept in `corpus/<target>/` and over mutations of it on every `cargo test`.
//! A target returns normally for every input; a panic is a bug in the parser it calls.
//! Where it is cheap, a target also checks that what parses prints back to the same value.
//!
//! # Layout
//! Everything is in this file: [`TARGETS`] names each target and its function.
#![forbid(unsafe_code)]

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use globalconf::Anchor;
use globalconf::id::{InstanceId, MemberId, SecurityServerId, ServiceId, SubsystemId};

/// A fuzz target: takes any bytes and returns normally.
pub type Target = fn(&[u8]);

/// Every target: its name (the directory of its corpus, the file under `fuzz/fuzz_targets/`)
/// and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("rest_request", rest_request),
    ("identifiers", identifiers),
    ("anchor", anchor),
    ("checkpoint_note", checkpoint_note),
    ("configuration_envelope", configuration_envelope),
    ("evidence_bundle", evidence_bundle),
    ("enrollment_request", enrollment_request),
    ("renewal_request", renewal_request),
    ("key_request", key_request),
    ("signed_request_header", signed_request_header),
    ("signed_response_header", signed_response_header),
    ("wal_segment", wal_segment),
    ("archive_file", archive_file),
];

/// An X-Road REST request head as the client proxy reads it: the first line is
/// `METHOD URI`, each further line a `name: value` header.
pub fn rest_request(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(2, |b| *b == b' ');
    let method = words.next().unwrap_or_default();
    let uri = words.next().unwrap_or_default();
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let value = line[colon + 1..].trim_ascii();
            builder = builder.header(&line[..colon], value);
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let _ = exchange::rest::parse_request(&parts);
}

/// Identifiers as they arrive in headers, paths and files: each kind that parses prints back
/// to text that parses to the same identifier.
pub fn identifiers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<InstanceId>(text);
    round_trip::<MemberId>(text);
    round_trip::<SubsystemId>(text);
    round_trip::<ServiceId>(text);
    round_trip::<SecurityServerId>(text);
}

fn round_trip<T>(text: &str)
where
    T: FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
{
    if let Ok(id) = text.parse::<T>() {
        let printed = id.to_string();
        let again = printed.parse::<T>().ok();
        assert_eq!(again.as_ref(), Some(&id), "{text:?} printed as {printed:?}");
    }
}

/// A trust anchor file: one that parses saves to TOML that parses to the same anchor.
pub fn anchor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(anchor) = Anchor::parse(text) {
        let saved = anchor.to_toml().expect("a parsed anchor saves");
        let again = Anchor::parse(&saved).expect("a saved anchor parses");
        assert_eq!(again.to_toml().ok(), Some(saved));
    }
}

/// A signed note (a checkpoint with its signatures and cosignatures) and a checkpoint body.
pub fn checkpoint_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tlog::note::parse(text);
    let _ = tlog::note::parse_signature_lines(text);
    let _ = tlog::Checkpoint::parse_body(text);
}

/// A signed global configuration, as downloaded or read back from disk.
pub fn configuration_envelope(data: &[u8]) {
    let _ = globalconf::signed::verify(data, fuzz_anchor());
}

/// An evidence bundle, as an auditor verifies it offline.
pub fn evidence_bundle(data: &[u8]) {
    let _ = msglog::verify(data, fuzz_anchor());
}

/// An enrolment request, as the registry's public endpoint receives it.
pub fn enrollment_request(data: &[u8]) {
    static INSTANCE: OnceLock<InstanceId> = OnceLock::new();
    let instance = INSTANCE.get_or_init(|| InstanceId::from_str("JP").expect("JP is an instance"));
    let _ = central_registry::enrollment::verify_enrollment(data, instance);
}

/// A TLS certificate renewal request, as the registry's public endpoint receives it.
pub fn renewal_request(data: &[u8]) {
    static INSTANCE: OnceLock<InstanceId> = OnceLock::new();
    let instance = INSTANCE.get_or_init(|| InstanceId::from_str("JP").expect("JP is an instance"));
    let _ = central_registry::requests::verify_renewal(data, instance, 1_790_000_000);
}

/// A request to list a new member signing key, as the registry's public endpoint receives it.
pub fn key_request(data: &[u8]) {
    let _ = central_registry::requests::parse_key_request(data, 1_790_000_000);
}

/// A request header as the provider's server receives it in an `Exchange` call. The input is
/// the header's bytes, which the target signs with the client member's key, so that every
/// input gets past the signature to the decoding and the checks after it (the signature itself
/// is Ed25519's, not ours to fuzz).
pub fn signed_request_header(data: &[u8]) {
    let x = fixture();
    let signed = sign(data, certs::Domain::RequestHeader, &x.client_key);
    let replay = exchange::replay::ReplayCache::new(Duration::from_secs(600), 64);
    let _ = exchange::message::verify_request(
        &signed,
        exchange::HashedBody::new(bytes::Bytes::new()).sha256(),
        &x.conf,
        &CLIENT_SERVER_CERT,
        &x.provider_server,
        NOW,
        Duration::from_secs(600),
        &replay,
    );
}

/// A response header as the client's server receives it, signed (as above) with the provider
/// member's key, answering [`request_header_seed`]'s request.
pub fn signed_response_header(data: &[u8]) {
    let x = fixture();
    let signed = sign(data, certs::Domain::ResponseHeader, &x.provider_key);
    let _ = exchange::message::verify_response(
        &signed,
        exchange::HashedBody::new(bytes::Bytes::new()).sha256(),
        &x.conf,
        &x.provider,
        &x.request,
        NOW,
        Duration::from_secs(600),
    );
}

/// A write-ahead segment of the message log, as recovery reads it after a crash.
pub fn wal_segment(data: &[u8]) {
    msglog::fuzzing::wal_segment(data);
}

/// A message log archive file, as it is read back.
pub fn archive_file(data: &[u8]) {
    msglog::fuzzing::archive_file(data);
}

/// The time the signed-header targets check at (Unix seconds).
pub const NOW: i64 = 1_800_000_000;
const CLIENT_SERVER_CERT: [u8; 32] = [1; 32];

/// The instance the signed-header targets check against, made once per process: a client and
/// a provider member with one signing key each, and a security server of each.
struct Fixture {
    conf: globalconf::GlobalConf,
    client_key: certs::SigningKey,
    provider_key: certs::SigningKey,
    provider: SubsystemId,
    provider_server: SecurityServerId,
    /// What the client's server sent, for [`signed_response_header`].
    request: exchange::message::RequestContext,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let client_key = certs::SigningKey::from_seed([11; 32]);
        let provider_key = certs::SigningKey::from_seed([12; 32]);
        let conf = globalconf::testing::ConfBuilder::new("JP", NOW - 60)
            .member("JP/GOV/digital-agency")
            .subsystem("JP/GOV/digital-agency/portal")
            .key("JP/GOV/digital-agency", &client_key, 0, 0)
            .member("JP/MUN/131016")
            .subsystem("JP/MUN/131016/records")
            .key("JP/MUN/131016", &provider_key, 0, 0)
            .server(
                "JP/GOV/digital-agency/ss1",
                CLIENT_SERVER_CERT,
                &["JP/GOV/digital-agency/portal"],
            )
            .server("JP/MUN/131016/ss1", [2; 32], &["JP/MUN/131016/records"])
            .build();
        let provider_server = parse("JP/MUN/131016/ss1");
        let seed = sign(
            &request_header(&client_key),
            certs::Domain::RequestHeader,
            &client_key,
        );
        let request = exchange::message::RequestContext::new("fuzz-1", &seed, &provider_server);
        Fixture {
            conf,
            client_key,
            provider_key,
            provider: parse("JP/MUN/131016/records"),
            provider_server,
            request,
        }
    })
}

/// A renewal request [`renewal_request`] gets through: signed by the new key it names.
pub fn renewal_request_seed() -> Vec<u8> {
    use prost::Message as _;
    let new_key = certs::SigningKey::from_seed([5; 32]);
    let request = proto::v1::RenewalRequest {
        server_id: "JP/GOV/digital-agency/ss1".into(),
        new_tls_public_key_der: new_key.public_key().to_spki_der(),
        created_at: 1_790_000_000,
        in_use: false,
    }
    .encode_to_vec();
    proto::v1::SignedRenewalRequest {
        current_key_signature: fuzz_signing_key()
            .sign(certs::Domain::RenewalRequest, &request)
            .to_vec(),
        new_key_signature: new_key
            .sign(certs::Domain::RenewalRequest, &request)
            .to_vec(),
        request,
    }
    .encode_to_vec()
}

/// A key request [`key_request`] gets through: signed by the new key it names.
pub fn key_request_seed() -> Vec<u8> {
    use prost::Message as _;
    let new_key = certs::SigningKey::from_seed([6; 32]);
    let request = proto::v1::KeyRequest {
        member_id: "JP/GOV/digital-agency".into(),
        new_public_key: new_key.public_key().as_bytes().to_vec(),
        server_id: "JP/GOV/digital-agency/ss1".into(),
        created_at: 1_790_000_000,
        retire_current_after_secs: 604_800,
    }
    .encode_to_vec();
    proto::v1::SignedKeyRequest {
        current_key_id: fuzz_signing_key().key_id().to_string(),
        current_key_signature: fuzz_signing_key()
            .sign(certs::Domain::KeyRequest, &request)
            .to_vec(),
        new_key_signature: new_key.sign(certs::Domain::KeyRequest, &request).to_vec(),
        request,
    }
    .encode_to_vec()
}

/// A request header the provider's server accepts (a seed of [`signed_request_header`]).
pub fn request_header_seed() -> Vec<u8> {
    request_header(&fixture().client_key)
}

fn request_header(client_key: &certs::SigningKey) -> Vec<u8> {
    use prost::Message as _;
    proto::v1::RequestHeader {
        message_id: "fuzz-1".into(),
        request_id: "fuzz-request-1".into(),
        client: "JP/GOV/digital-agency/portal".into(),
        service: "JP/MUN/131016/records/residents".into(),
        method: "GET".into(),
        path: "/residents/131016000001".into(),
        query: "fields=name".into(),
        headers: vec![proto::v1::Header {
            name: "accept".into(),
            value: "application/json".into(),
        }],
        data_subject: "131016000001".into(),
        purpose: "fuzzing".into(),
        created_at: NOW,
        body_sha256: EMPTY_SHA256.to_vec(),
        signer_key_id: client_key.key_id().to_string(),
        target_server: "JP/MUN/131016/ss1".into(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A response header the client's server accepts for it (a seed of [`signed_response_header`]).
pub fn response_header_seed() -> Vec<u8> {
    use prost::Message as _;
    let x = fixture();
    let provider_key = &x.provider_key;
    proto::v1::ResponseHeader {
        message_id: "fuzz-1".into(),
        status: 200,
        headers: vec![proto::v1::Header {
            name: "content-type".into(),
            value: "application/json".into(),
        }],
        created_at: NOW,
        body_sha256: EMPTY_SHA256.to_vec(),
        request_hash: x.request.request_hash.to_vec(),
        signer_key_id: provider_key.key_id().to_string(),
        server: "JP/MUN/131016/ss1".into(),
    }
    .encode_to_vec()
}

/// SHA-256 of the empty body.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

fn sign(header: &[u8], domain: certs::Domain, key: &certs::SigningKey) -> proto::v1::SignedHeader {
    proto::v1::SignedHeader {
        header: header.to_vec(),
        signature: key.sign(domain, header).to_vec(),
        key_id: key.key_id().to_string(),
    }
}

fn parse<T: FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("a fixed identifier")
}

/// The anchor envelopes and bundles are checked against: made once per process, with a fixed
/// signing key (so that a corpus signed with it reaches past the signature check) and a new CA.
pub fn fuzz_anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let ca = certs::CertificateAuthority::generate(
            "JP",
            Duration::from_secs(3650 * 86_400),
            &certs::SystemClock,
        )
        .expect("a CA");
        Anchor::new(
            InstanceId::from_str("JP").expect("JP is an instance"),
            vec!["https://127.0.0.1:1".into()],
            ca.certificate_pem(),
            vec![fuzz_signing_key().public_key()],
        )
        .expect("the fuzzing anchor")
    })
}

/// The configuration-signing key of [`fuzz_anchor`].
pub fn fuzz_signing_key() -> certs::SigningKey {
    certs::SigningKey::from_seed([7; 32])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The seeds of the signed-header targets are accepted, so that the fuzzer starts from
    /// inputs that reach every check.
    #[test]
    fn the_signed_header_seeds_pass_every_check() {
        let x = fixture();
        let empty = exchange::HashedBody::new(bytes::Bytes::new());
        let request = sign(
            &request_header_seed(),
            certs::Domain::RequestHeader,
            &x.client_key,
        );
        let replay = exchange::replay::ReplayCache::new(Duration::from_secs(600), 64);
        exchange::message::verify_request(
            &request,
            empty.sha256(),
            &x.conf,
            &CLIENT_SERVER_CERT,
            &x.provider_server,
            NOW,
            Duration::from_secs(600),
            &replay,
        )
        .unwrap();
        let response = sign(
            &response_header_seed(),
            certs::Domain::ResponseHeader,
            &x.provider_key,
        );
        exchange::message::verify_response(
            &response,
            empty.sha256(),
            &x.conf,
            &x.provider,
            &x.request,
            NOW,
            Duration::from_secs(600),
        )
        .unwrap();
    }
}
