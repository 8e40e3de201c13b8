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
