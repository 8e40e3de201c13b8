#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The configuration a security server accepts is exactly the one an anchor key signed, for the
//! anchor's instance, and never older than the one it holds.

use certs::SigningKey;
use globalconf::testing::ConfBuilder;
use globalconf::{Anchor, ConfError, InstanceId, Succession, signed};
use proto::v1 as pb;

fn ca_pem() -> String {
    let clock = certs::ManualClock::at_unix(1_800_000_000);
    certs::CertificateAuthority::generate("JP", std::time::Duration::from_secs(86_400), &clock)
        .unwrap()
        .certificate_pem()
}

fn anchor_for(keys: &[&SigningKey]) -> Anchor {
    Anchor::new(
        "JP".parse::<InstanceId>().unwrap(),
        vec!["https://127.0.0.1:41001".into()],
        ca_pem(),
        keys.iter().map(|k| k.public_key()).collect(),
    )
    .unwrap()
}

fn configuration(serial: u64) -> pb::GlobalConfiguration {
    let member_key = SigningKey::from_seed([7; 32]);
    ConfBuilder::new("JP", 1_800_000_000)
        .serial(serial)
        .subsystem("JP/MUN/131016/records")
        .named("JP/MUN/131016", "Chiyoda City")
        .named("JP/MUN/131016/records", "Resident records")
        .key("JP/MUN/131016", &member_key, 1_700_000_000, 0)
        .server_at(
            "JP/MUN/131016/ss1",
            &["127.0.0.1:5500"],
            [1; 32],
            &["JP/MUN/131016/records"],
        )
        .proto()
}

#[test]
fn a_signed_configuration_verifies_and_decodes() {
    let key = SigningKey::from_seed([1; 32]);
    let envelope = signed::sign(&configuration(5), &key);
    let verified = signed::verify(&envelope, &anchor_for(&[&key])).unwrap();
    assert_eq!(verified.serial(), 5);
    assert_eq!(verified.envelope(), envelope.as_slice());
    let sub = "JP/MUN/131016/records".parse().unwrap();
    assert_eq!(verified.conf().servers_hosting(&sub).len(), 1);
}

#[test]
fn every_single_byte_alteration_is_rejected() {
    let key = SigningKey::from_seed([1; 32]);
    let anchor = anchor_for(&[&key]);
    let envelope = signed::sign(&configuration(5), &key);
    for i in 0..envelope.len() {
        for flip in [0x01u8, 0x80] {
            let mut altered = envelope.clone();
            altered[i] ^= flip;
            assert!(
                signed::verify(&altered, &anchor).is_err(),
                "byte {i} flipped with {flip:#x} was accepted"
            );
        }
    }
    let mut longer = envelope.clone();
    longer.extend_from_slice(&[0x2a, 0x00]);
    assert!(matches!(
        signed::verify(&longer, &anchor),
        Err(ConfError::Malformed(_))
    ));
}

#[test]
fn a_key_not_in_the_anchor_is_rejected() {
    let registry = SigningKey::from_seed([1; 32]);
    let intruder = SigningKey::from_seed([2; 32]);
    let envelope = signed::sign(&configuration(5), &intruder);
    assert!(matches!(
        signed::verify(&envelope, &anchor_for(&[&registry])),
        Err(ConfError::UnknownSigner(_))
    ));
}

#[test]
fn any_anchor_key_may_sign() {
    let old = SigningKey::from_seed([1; 32]);
    let new = SigningKey::from_seed([3; 32]);
    let envelope = signed::sign(&configuration(5), &new);
    assert!(signed::verify(&envelope, &anchor_for(&[&old, &new])).is_ok());
}

#[test]
fn an_older_serial_is_a_rollback_and_a_forked_serial_a_conflict() {
    let key = SigningKey::from_seed([1; 32]);
    let anchor = anchor_for(&[&key]);
    let v5 = signed::verify(&signed::sign(&configuration(5), &key), &anchor).unwrap();
    let v6 = signed::verify(&signed::sign(&configuration(6), &key), &anchor).unwrap();
    assert_eq!(v5.check_successor(&v6).unwrap(), Succession::Newer);
    assert_eq!(v6.check_successor(&v6.clone()).unwrap(), Succession::Same);
    assert!(matches!(
        v6.check_successor(&v5),
        Err(ConfError::Rollback {
            held: 6,
            offered: 5
        })
    ));
    let mut fork = configuration(6);
    fork.members[0].name = "Someone else".into();
    let fork = signed::verify(&signed::sign(&fork, &key), &anchor).unwrap();
    assert!(matches!(
        v6.check_successor(&fork),
        Err(ConfError::SerialConflict(6))
    ));
}

#[test]
fn a_configuration_of_another_instance_is_rejected() {
    let key = SigningKey::from_seed([1; 32]);
    let mut other = configuration(5);
    other.instance = "EE".into();
    let envelope = signed::sign(&other, &key);
    assert!(matches!(
        signed::verify(&envelope, &anchor_for(&[&key])),
        Err(ConfError::Invalid(_))
    ));
}

#[test]
fn member_keys_are_valid_only_in_their_window() {
    let key = SigningKey::from_seed([1; 32]);
    let mut c = configuration(5);
    c.members[0].signing_keys[0].valid_until = 1_800_000_000;
    let v = signed::verify(&signed::sign(&c, &key), &anchor_for(&[&key])).unwrap();
    let member = "JP/MUN/131016".parse().unwrap();
    let kid = SigningKey::from_seed([7; 32]).key_id();
    assert!(
        v.conf()
            .member_key_at(&member, &kid, 1_799_999_999)
            .is_some()
    );
    assert!(
        v.conf()
            .member_key_at(&member, &kid, 1_800_000_000)
            .is_none()
    );
    assert!(
        v.conf()
            .member_key_at(&member, &kid, 1_600_000_000)
            .is_none()
    );
}

#[test]
fn a_renewal_certificate_identifies_its_server_too() {
    let key = SigningKey::from_seed([1; 32]);
    let anchor = anchor_for(&[&key]);
    let server = "JP/MUN/131016/ss1";
    let renewing = ConfBuilder::from_proto(configuration(5))
        .renewing(server, [2; 32])
        .proto();
    let v = signed::verify(&signed::sign(&renewing, &key), &anchor).unwrap();
    for pin in [[1; 32], [2; 32]] {
        assert_eq!(
            v.conf().server_by_cert(&pin).map(|s| s.id.to_string()),
            Some(server.to_owned())
        );
    }
    let info = v.conf().server_by_cert(&[2; 32]).unwrap();
    assert_eq!(info.pins().collect::<Vec<_>>(), vec![[1; 32], [2; 32]]);
    assert!(v.conf().server_by_cert(&[3; 32]).is_none());

    // A renewal certificate may not be another server's, nor a malformed hash.
    let stolen = ConfBuilder::from_proto(configuration(6))
        .server_at("JP/MUN/131016/ss2", &["127.0.0.1:5501"], [3; 32], &[])
        .renewing("JP/MUN/131016/ss2", [1; 32])
        .proto();
    assert!(signed::verify(&signed::sign(&stolen, &key), &anchor).is_err());
    let mut short = renewing.clone();
    short.security_servers[0].renewal_tls_cert_sha256 = vec![2; 31];
    assert!(signed::verify(&signed::sign(&short, &key), &anchor).is_err());
}

#[test]
fn anchor_round_trips_through_its_file_form() {
    let key = SigningKey::from_seed([1; 32]);
    let anchor = anchor_for(&[&key]);
    let parsed = Anchor::parse(&anchor.to_toml().unwrap()).unwrap();
    assert_eq!(parsed, anchor);
    let tampered = anchor.to_toml().unwrap().replace("https://", "http://");
    assert!(Anchor::parse(&tampered).is_err());
}

#[test]
fn a_configuration_lists_federated_instances_with_their_anchors() {
    let key = SigningKey::from_seed([1; 32]);
    let fi_key = SigningKey::from_seed([9; 32]);
    let fi = Anchor::new(
        "FI".parse::<InstanceId>().unwrap(),
        vec!["https://127.0.0.1:42001".into()],
        ca_pem(),
        vec![fi_key.public_key()],
    )
    .unwrap();
    let anchor = anchor_for(&[&key]);
    let listed = ConfBuilder::from_proto(configuration(3))
        .federated(&fi)
        .proto();
    let verified = signed::verify(&signed::sign(&listed, &key), &anchor).unwrap();
    let fi_id: InstanceId = "FI".parse().unwrap();
    assert_eq!(verified.conf().federated(&fi_id), Some(&fi));
    assert_eq!(verified.conf().federated_instances().count(), 1);
    assert_eq!(verified.conf().federated(&"EE".parse().unwrap()), None);

    // The fingerprint is of what is trusted, not of the file's layout.
    let reformatted = format!("# from FI's operator\n{}", fi.to_toml().unwrap());
    assert_eq!(
        Anchor::parse(&reformatted).unwrap().fingerprint().unwrap(),
        fi.fingerprint().unwrap()
    );
    assert_ne!(fi.fingerprint().unwrap(), anchor.fingerprint().unwrap());

    // Federated with itself, twice, or under an anchor of another instance: refused.
    let with_itself = ConfBuilder::from_proto(configuration(3))
        .federated(&anchor)
        .proto();
    assert!(signed::verify(&signed::sign(&with_itself, &key), &anchor).is_err());
    let twice = ConfBuilder::from_proto(configuration(3))
        .federated(&fi)
        .federated(&fi)
        .proto();
    assert!(signed::verify(&signed::sign(&twice, &key), &anchor).is_err());
    let mut mislabelled = ConfBuilder::from_proto(configuration(3))
        .federated(&fi)
        .proto();
    mislabelled.federated_instances[0].instance = "EE".into();
    assert!(signed::verify(&signed::sign(&mislabelled, &key), &anchor).is_err());
    let mut garbled = ConfBuilder::from_proto(configuration(3))
        .federated(&fi)
        .proto();
    garbled.federated_instances[0].anchor = "instance = ".into();
    assert!(signed::verify(&signed::sign(&garbled, &key), &anchor).is_err());
}

#[test]
fn servers_follow_a_signing_key_rollover_and_refuse_the_retired_key() {
    let k0 = SigningKey::from_seed([1; 32]);
    let k1 = SigningKey::from_seed([2; 32]);
    let k2 = SigningKey::from_seed([3; 32]);
    let anchor = anchor_for(&[&k0]);
    let gen1 = signed::announce("JP", 1, &[k1.public_key()], &k0);
    let gen2 = signed::announce("JP", 2, &[k2.public_key()], &k1);

    let held = signed::verify(&signed::sign(&configuration(5), &k0), &anchor).unwrap();
    assert_eq!(held.key_generation(), 0);
    // Signed by the next key, carrying its announcement: followed from the anchor alone.
    let rolled = signed::verify(
        &signed::sign_with_history(&configuration(6), &k1, std::slice::from_ref(&gen1)),
        &anchor,
    )
    .unwrap();
    assert_eq!(rolled.key_generation(), 1);
    assert_eq!(rolled.signing_keys(), &[k1.public_key()]);
    assert_eq!(held.check_successor(&rolled).unwrap(), Succession::Newer);
    // A server offline through two rollovers follows both.
    let twice = signed::verify(
        &signed::sign_with_history(&configuration(9), &k2, &[gen1.clone(), gen2.clone()]),
        &anchor,
    )
    .unwrap();
    assert_eq!(held.check_successor(&twice).unwrap(), Succession::Newer);
    assert_eq!(rolled.check_successor(&twice).unwrap(), Succession::Newer);

    // The retired key: without the history it verifies against the anchor alone, but a server
    // that followed the rollover refuses it; with the history it is not a signer at all.
    let by_retired = signed::verify(&signed::sign(&configuration(10), &k0), &anchor).unwrap();
    assert!(matches!(
        rolled.check_successor(&by_retired),
        Err(ConfError::KeyHistory(_))
    ));
    assert!(matches!(
        signed::verify(
            &signed::sign_with_history(&configuration(10), &k0, std::slice::from_ref(&gen1)),
            &anchor
        ),
        Err(ConfError::UnknownSigner(_))
    ));
    // A history forged with the retired key does not extend the one followed.
    let evil = SigningKey::from_seed([9; 32]);
    let forged = signed::announce("JP", 1, &[evil.public_key()], &k0);
    let forked = signed::verify(
        &signed::sign_with_history(&configuration(11), &evil, &[forged]),
        &anchor,
    )
    .unwrap();
    assert!(matches!(
        rolled.check_successor(&forked),
        Err(ConfError::KeyHistory(_))
    ));

    // Announcements that break the chain are refused: signed by a key not in the set before,
    // for another instance, or out of order.
    for (what, history, signer) in [
        ("skips a generation", vec![gen2.clone()], &k2),
        (
            "signed by a key outside the set",
            vec![signed::announce("JP", 1, &[k1.public_key()], &evil)],
            &k1,
        ),
        (
            "another instance",
            vec![signed::announce("FI", 1, &[k1.public_key()], &k0)],
            &k1,
        ),
        (
            "a wrong generation",
            vec![signed::announce("JP", 2, &[k1.public_key()], &k0)],
            &k1,
        ),
        (
            "an empty set",
            vec![signed::announce("JP", 1, &[], &k0)],
            &k1,
        ),
    ] {
        let r = signed::verify(
            &signed::sign_with_history(&configuration(12), signer, &history),
            &anchor,
        );
        assert!(matches!(r, Err(ConfError::KeyHistory(_))), "{what}: {r:?}");
    }
}
