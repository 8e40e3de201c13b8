#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Build+sign and verify+decode of a national-size global configuration: 2,000 members,
//! 10,000 subsystems, 3,000 security servers, one signing key per member.
//!
//! `cargo bench -p bench --bench globalconf` prints the size and the timings (min / median / max
//! over the iterations).

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use central_registry::{
    KeyRecord, MemberRecord, PublicationSettings, RegistryState, ServerRecord, SubsystemRecord,
    build_configuration,
};
use certs::SigningKey;
use globalconf::{Anchor, InstanceId, MemberId};
use proto::v1 as pb;

const MEMBERS: usize = 2_000;
const SUBSYSTEMS_PER_MEMBER: usize = 5;
const SERVERS: usize = 3_000;
const ITERATIONS: usize = 20;

fn national_state() -> RegistryState {
    let instance: InstanceId = "JP".parse().unwrap();
    let mut state = RegistryState::new(instance);
    let mut member_ids = Vec::new();
    for m in 0..MEMBERS {
        let (class, name) = if m < 1_741 {
            ("MUN", format!("Municipality {m:04}"))
        } else {
            ("GOV", format!("National body {m:04}"))
        };
        let id: MemberId = format!("JP/{class}/{:06}", 100_000 + m).parse().unwrap();
        state.members.insert(
            id.clone(),
            MemberRecord {
                name,
                ..MemberRecord::default()
            },
        );
        for s in 0..SUBSYSTEMS_PER_MEMBER {
            state.subsystems.insert(
                id.subsystem(&format!("system{s}")).unwrap(),
                SubsystemRecord {
                    name: format!("Information system {s}"),
                    ..SubsystemRecord::default()
                },
            );
        }
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(m as u64).to_le_bytes());
        let key = SigningKey::from_seed(seed);
        state.signing_keys.insert(
            id.clone(),
            BTreeMap::from([(
                key.key_id(),
                KeyRecord {
                    public_key: key.public_key(),
                    valid_from: 1_700_000_000,
                    valid_until: None,
                },
            )]),
        );
        member_ids.push(id);
    }
    for s in 0..SERVERS {
        let owner = &member_ids[s % MEMBERS];
        let id = owner.server(&format!("ss{}", s / MEMBERS + 1)).unwrap();
        // A realistic certificate size; only its hash goes into the configuration.
        let mut cert = vec![0u8; 620];
        cert[..8].copy_from_slice(&(s as u64).to_le_bytes());
        let hosted: BTreeSet<_> = (0..SUBSYSTEMS_PER_MEMBER)
            .map(|i| owner.subsystem(&format!("system{i}")).unwrap())
            .collect();
        state.servers.insert(
            id,
            ServerRecord::new(vec![format!("ss{s}.example.jp:5500")], cert, hosted),
        );
    }
    state
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<22} min {:>9.2?}  median {:>9.2?}  max {:>9.2?}  ({} runs)",
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
        samples.len()
    );
}

fn main() {
    let state = national_state();
    let key = SigningKey::from_seed([42; 32]);
    let settings = PublicationSettings {
        validity: Duration::from_secs(7 * 86_400),
        parameters: pb::InstanceParameters::default(),
        registry_urls: vec!["https://registry.example.jp:41001".into()],
        ca_certificates: Vec::new(),
    };
    let ca = certs::CertificateAuthority::generate(
        "JP",
        Duration::from_secs(86_400),
        &certs::SystemClock,
    )
    .unwrap();
    let anchor = Anchor::new(
        "JP".parse().unwrap(),
        settings.registry_urls.clone(),
        ca.certificate_pem(),
        vec![key.public_key()],
    )
    .unwrap();

    let mut build_sign = Vec::new();
    let mut envelope = Vec::new();
    for i in 0..ITERATIONS {
        let start = Instant::now();
        let conf = build_configuration(&state, i as u64 + 1, 1_800_000_000, &settings);
        envelope = globalconf::signed::sign(&conf, &key);
        build_sign.push(start.elapsed());
        black_box(&envelope);
    }
    let mut verify_decode = Vec::new();
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        let verified = globalconf::signed::verify(black_box(&envelope), &anchor).unwrap();
        verify_decode.push(start.elapsed());
        assert_eq!(verified.conf().servers().count(), SERVERS);
        assert_eq!(
            verified.conf().subsystems().count(),
            MEMBERS * SUBSYSTEMS_PER_MEMBER
        );
    }

    println!(
        "national configuration: {MEMBERS} members, {} subsystems, {SERVERS} servers, {MEMBERS} keys",
        MEMBERS * SUBSYSTEMS_PER_MEMBER
    );
    println!(
        "signed envelope size   {} bytes ({:.2} MiB)",
        envelope.len(),
        envelope.len() as f64 / 1_048_576.0
    );
    report("build + sign", build_sign);
    report("verify + decode", verify_decode);
}
