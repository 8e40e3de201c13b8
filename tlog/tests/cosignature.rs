#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Witness cosignatures: the signed message and line layout, what fails to verify, and
//! collecting cosignatures from a checkpoint note.

use certs::SigningKey;
use sha2::{Digest as _, Sha256};
use tlog::checkpoint::{Checkpoint, log_key_name, open_checkpoint, sign_checkpoint};
use tlog::cosignature::{
    CosignatureError, CosignatureSigner, CosignatureVerifier, Cosigned, MAX_TIMESTAMP, cosign,
    verify_cosignature, verify_cosignatures,
};
use tlog::merkle::leaf_hash;
use tlog::note::{self, NoteError, NoteSignature, NoteSigner, NoteVerifier};

const ORIGIN: &str = "JP/MUN/131016/ss1";
const TIME: u64 = 1_679_315_147;

fn checkpoint() -> Checkpoint {
    Checkpoint::new(ORIGIN, 20852163, leaf_hash(b"root")).unwrap()
}

fn witness(name: &str, seed: u8) -> CosignatureSigner {
    CosignatureSigner::new(name, SigningKey::from_seed([seed; 32])).unwrap()
}

#[test]
fn cosignature_layout_follows_the_spec() {
    let w = witness("JP/GOV/digital-agency/ss1", 7);
    let cp = checkpoint();
    let sig = cosign(&cp, &w, TIME).unwrap();
    assert_eq!(sig.name(), "JP/GOV/digital-agency/ss1");
    assert_eq!(sig.key_hash(), w.key_hash());
    // 8-byte big-endian timestamp, then the Ed25519 signature...
    assert_eq!(sig.signature().len(), 72);
    assert_eq!(sig.signature()[..8], TIME.to_be_bytes());
    // ...over the header line, the time line and the body, with no other prefix.
    let message = format!(
        "cosignature/v1\ntime 1679315147\n{ORIGIN}\n20852163\n{}\n",
        base64_of(cp.root())
    );
    w.verifier()
        .public_key()
        .verify_note_text(message.as_bytes(), &sig.signature()[8..])
        .unwrap();
    assert_eq!(verify_cosignature(&cp, &sig, &w.verifier()), Ok(TIME));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn key_hash_uses_signature_type_4() {
    let w = witness("witness.example/w1", 7);
    let key = w.verifier().public_key().to_owned();
    let mut h = Sha256::new();
    h.update(b"witness.example/w1\n\x04");
    h.update(key.as_bytes());
    assert_eq!(w.key_hash(), h.finalize()[..4]);
    assert_eq!(w.verifier().key_hash(), w.key_hash());
    // The same name and key as a note key: another key hash.
    let as_note_key = NoteVerifier::new("witness.example/w1", key).unwrap();
    assert_ne!(as_note_key.key_hash(), w.key_hash());
    assert_eq!(
        CosignatureVerifier::new("witness.example/w1", key).unwrap(),
        w.verifier()
    );
}

#[test]
fn cosignatures_bind_the_whole_checkpoint_and_time() {
    let w = witness("w1", 7);
    let cp = checkpoint();
    let sig = cosign(&cp, &w, TIME).unwrap();
    let bad = |cp: &Checkpoint, sig: &NoteSignature| {
        matches!(
            verify_cosignature(cp, sig, &w.verifier()),
            Err(CosignatureError::BadSignature { .. })
        )
    };
    let others = [
        Checkpoint::new(ORIGIN, cp.size() + 1, *cp.root()).unwrap(),
        Checkpoint::new(ORIGIN, cp.size(), leaf_hash(b"other")).unwrap(),
        Checkpoint::new("JP/MUN/131016/ss2", cp.size(), *cp.root()).unwrap(),
        cp.clone().with_extensions(vec!["ext".into()]).unwrap(),
    ];
    for other in &others {
        assert!(bad(other, &sig));
    }
    for i in 0..72 {
        let mut bytes = sig.signature().to_vec();
        bytes[i] ^= if i == 0 { 0x01 } else { 0x80 };
        let changed = NoteSignature::new(sig.name(), sig.key_hash(), bytes).unwrap();
        assert!(bad(&cp, &changed), "byte {i}");
    }
    // Extension lines are part of the cosigned message.
    let with_ext = others[3].clone();
    let sig = cosign(&with_ext, &w, TIME).unwrap();
    assert_eq!(verify_cosignature(&with_ext, &sig, &w.verifier()), Ok(TIME));
    assert!(bad(&cp, &sig));
}

#[test]
fn other_keys_and_malformed_cosignatures() {
    let w = witness("w1", 7);
    let cp = checkpoint();
    let sig = cosign(&cp, &w, TIME).unwrap();
    // Another key under the same name, and the same key under another name.
    for other in [witness("w1", 8).verifier(), witness("w2", 7).verifier()] {
        assert!(matches!(
            verify_cosignature(&cp, &sig, &other),
            Err(CosignatureError::OtherKey { .. })
        ));
    }
    for len in [0usize, 8, 71, 73] {
        let mut bytes = sig.signature().to_vec();
        bytes.resize(len.max(1), 0);
        let odd = NoteSignature::new("w1", w.key_hash(), bytes).unwrap();
        assert!(
            matches!(
                verify_cosignature(&cp, &odd, &w.verifier()),
                Err(CosignatureError::Malformed(_))
            ),
            "length {len}"
        );
    }
    // A timestamp above 2^63 - 1 is malformed, even with a valid signature over it.
    let too_late = MAX_TIMESTAMP + 1;
    let message = format!("cosignature/v1\ntime {too_late}\n{}", cp.body());
    let key = SigningKey::from_seed([7; 32]);
    let mut bytes = too_late.to_be_bytes().to_vec();
    bytes.extend_from_slice(&key.sign_note_text(message.as_bytes()));
    let forged = NoteSignature::new("w1", w.key_hash(), bytes).unwrap();
    assert!(matches!(
        verify_cosignature(&cp, &forged, &w.verifier()),
        Err(CosignatureError::Malformed(_))
    ));
}

#[test]
fn timestamps_up_to_2_pow_63_minus_1() {
    let w = witness("w1", 7);
    let cp = checkpoint();
    for time in [0, 1, MAX_TIMESTAMP] {
        let sig = cosign(&cp, &w, time).unwrap();
        assert_eq!(verify_cosignature(&cp, &sig, &w.verifier()), Ok(time));
    }
    assert_eq!(
        cosign(&cp, &w, MAX_TIMESTAMP + 1),
        Err(CosignatureError::TimestampOutOfRange(MAX_TIMESTAMP + 1))
    );
    assert_eq!(MAX_TIMESTAMP, (1 << 63) - 1);
}

#[test]
fn a_log_signature_is_not_a_cosignature_and_vice_versa() {
    // One key used both ways under one name (which the spec allows only with domain
    // separation, as the cosignature header line gives).
    let key = SigningKey::from_seed([7; 32]);
    let as_log = NoteSigner::new("k", key.clone()).unwrap();
    let as_witness = CosignatureSigner::new("k", key).unwrap();
    let cp = checkpoint();
    let log_note = sign_checkpoint(&cp, &as_log);

    // The log's signature line has another key hash: not a cosignature by this key.
    assert!(matches!(
        verify_cosignature(&cp, &log_note.signatures()[0], &as_witness.verifier()),
        Err(CosignatureError::OtherKey { .. })
    ));
    // Relabelled with the cosignature key hash and a timestamp, it still does not verify.
    let mut bytes = TIME.to_be_bytes().to_vec();
    bytes.extend_from_slice(log_note.signatures()[0].signature());
    let relabelled = NoteSignature::new("k", as_witness.key_hash(), bytes).unwrap();
    assert!(matches!(
        verify_cosignature(&cp, &relabelled, &as_witness.verifier()),
        Err(CosignatureError::BadSignature { .. })
    ));
    // And a cosignature is not a log signature: the note verifier ignores its line.
    let mut cosigned_only = note::parse(&log_note.render()).unwrap();
    cosigned_only = {
        let mut n = tlog::note::Note::new(cosigned_only.text()).unwrap();
        n.push_signature(cosign(&cp, &as_witness, TIME).unwrap())
            .unwrap();
        n
    };
    assert_eq!(
        cosigned_only.verify(&[as_log.verifier()]),
        Err(NoteError::NoTrustedSignature)
    );
}

#[test]
fn verifier_keys_use_type_4() {
    let w = witness("witness.example/w1", 7);
    let vkey = w.verifier().to_vkey();
    assert!(vkey.starts_with("witness.example/w1+"));
    assert_eq!(CosignatureVerifier::from_vkey(&vkey).unwrap(), w.verifier());
    // A note key's vkey is not a cosigner's, and the other way round.
    let note_key = NoteSigner::new("witness.example/w1", SigningKey::from_seed([7; 32]))
        .unwrap()
        .verifier()
        .to_vkey();
    assert!(matches!(
        CosignatureVerifier::from_vkey(&note_key),
        Err(CosignatureError::Key(NoteError::InvalidVerifierKey(_)))
    ));
    assert!(NoteVerifier::from_vkey(&vkey).is_err());
    assert!(CosignatureSigner::new("a b", SigningKey::from_seed([1; 32])).is_err());
}

#[test]
fn cosigned_checkpoint_notes() {
    let log = NoteSigner::new(log_key_name(ORIGIN), SigningKey::from_seed([1; 32])).unwrap();
    let (w1, w2, w3) = (witness("w1", 11), witness("w2", 12), witness("w3", 13));
    let cp = checkpoint();
    let mut n = sign_checkpoint(&cp, &log);
    n.push_signature(cosign(&cp, &w1, TIME).unwrap()).unwrap();
    n.push_signature(cosign(&cp, &w3, TIME + 5).unwrap())
        .unwrap();
    n.push_signature(cosign(&cp, &w2, TIME + 1).unwrap())
        .unwrap();
    n.push_signature(cosign(&cp, &w1, TIME + 9).unwrap())
        .unwrap();
    // An older cosignature after a newer one does not lower the time.
    n.push_signature(cosign(&cp, &w1, TIME + 2).unwrap())
        .unwrap();
    let rendered = n.render();

    // The log's signature still opens it; cosignature lines are ignored there.
    let (opened, note) = open_checkpoint(&rendered, &log.verifier()).unwrap();
    assert_eq!(opened, cp);

    // Trusted cosigners, once each with their newest time; w3 is not trusted.
    let cosigned =
        verify_cosignatures(&opened, note.signatures(), &[w2.verifier(), w1.verifier()]).unwrap();
    assert_eq!(
        cosigned,
        [
            Cosigned {
                cosigner: "w1".into(),
                time: TIME + 9
            },
            Cosigned {
                cosigner: "w2".into(),
                time: TIME + 1
            },
        ]
    );
    assert!(
        verify_cosignatures(&opened, note.signatures(), &[])
            .unwrap()
            .is_empty()
    );

    // A bad cosignature by a trusted witness fails the check.
    let mut forged = note.clone();
    let good = cosign(&cp, &w2, TIME).unwrap();
    let mut bytes = good.signature().to_vec();
    bytes[20] ^= 1;
    forged
        .push_signature(NoteSignature::new("w2", good.key_hash(), bytes).unwrap())
        .unwrap();
    assert!(matches!(
        verify_cosignatures(
            &opened,
            forged.signatures(),
            &[w1.verifier(), w2.verifier()]
        ),
        Err(CosignatureError::BadSignature { .. })
    ));
    // ...but not when w2 is not trusted.
    verify_cosignatures(&opened, forged.signatures(), &[w1.verifier()]).unwrap();

    // Two trusted keys with one name and key hash are ambiguous.
    assert!(matches!(
        verify_cosignatures(&opened, note.signatures(), &[w1.verifier(), w1.verifier()]),
        Err(CosignatureError::Key(NoteError::AmbiguousKey { .. }))
    ));

    // Cosignatures of another checkpoint do not count for this one.
    let other = Checkpoint::new(ORIGIN, cp.size() + 1, *cp.root()).unwrap();
    assert!(matches!(
        verify_cosignatures(&other, note.signatures(), &[w1.verifier()]),
        Err(CosignatureError::BadSignature { .. })
    ));
}
