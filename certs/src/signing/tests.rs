use super::*;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

#[test]
fn key_files_are_pkcs8_v1_as_openssl_writes_and_earlier_v2_files_still_load() {
    let k = key(7);
    let pem = k.to_pkcs8_pem().unwrap();
    // RFC 8410's v1 form: version 0, the Ed25519 OID, the seed; no public key.
    let der_prefix = "MC4CAQAwBQYDK2VwBCIEI";
    assert!(
        pem.lines().nth(1).unwrap().starts_with(der_prefix),
        "{}",
        *pem
    );
    assert_eq!(
        SigningKey::from_pkcs8_pem(&pem).unwrap().key_id(),
        k.key_id()
    );
    let v2 = k.soft_key().unwrap().to_pkcs8_pem(LineEnding::LF).unwrap();
    assert!(!v2.contains(der_prefix));
    assert_eq!(
        SigningKey::from_pkcs8_pem(&v2).unwrap().key_id(),
        k.key_id()
    );
}

#[test]
fn signature_verifies_for_same_domain_and_message() {
    let k = key(1);
    let sig = k.sign(Domain::RequestHeader, b"hello");
    k.public_key()
        .verify(Domain::RequestHeader, b"hello", &sig)
        .unwrap();
}

#[test]
fn signature_fails_for_other_domain() {
    let k = key(1);
    let sig = k.sign(Domain::RequestHeader, b"hello");
    for other in [
        Domain::ResponseHeader,
        Domain::GlobalConfiguration,
        Domain::EnrollmentRequest,
        Domain::RenewalRequest,
        Domain::KeyRequest,
        Domain::SigningKeySet,
        Domain::Checkpoint,
        Domain::Other("request-header-x"),
    ] {
        assert!(matches!(
            k.public_key().verify(other, b"hello", &sig),
            Err(Error::Signature)
        ));
    }
}

#[test]
fn signature_fails_for_flipped_message_byte() {
    let k = key(1);
    let msg = b"the quick brown fox".to_vec();
    let sig = k.sign(Domain::Checkpoint, &msg);
    for i in 0..msg.len() {
        let mut bad = msg.clone();
        bad[i] ^= 0x01;
        assert!(
            k.public_key()
                .verify(Domain::Checkpoint, &bad, &sig)
                .is_err()
        );
    }
}

#[test]
fn signature_fails_for_flipped_signature_byte() {
    let k = key(1);
    let sig = k.sign(Domain::Checkpoint, b"m");
    for i in 0..sig.len() {
        let mut bad = sig;
        bad[i] ^= 0x01;
        assert!(
            k.public_key()
                .verify(Domain::Checkpoint, b"m", &bad)
                .is_err()
        );
    }
}

#[test]
fn signature_fails_for_wrong_key() {
    let sig = key(1).sign(Domain::GlobalConfiguration, b"conf");
    assert!(matches!(
        key(2)
            .public_key()
            .verify(Domain::GlobalConfiguration, b"conf", &sig),
        Err(Error::Signature)
    ));
}

#[test]
fn signature_of_wrong_length_is_rejected() {
    let k = key(1);
    let sig = k.sign(Domain::Checkpoint, b"m");
    assert!(matches!(
        k.public_key().verify(Domain::Checkpoint, b"m", &sig[..63]),
        Err(Error::Signature)
    ));
    let mut long = sig.to_vec();
    long.push(0);
    assert!(matches!(
        k.public_key().verify(Domain::Checkpoint, b"m", &long),
        Err(Error::Signature)
    ));
}

#[test]
fn signed_bytes_follow_the_documented_layout() {
    let k = key(3);
    let sig = k.sign(Domain::EnrollmentRequest, b"abc");
    let raw = ed25519_dalek::VerifyingKey::from_bytes(k.public_key().as_bytes()).unwrap();
    raw.verify_strict(
        b"xroad-rs/v1/enrollment-request\0abc",
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .unwrap();
}

#[test]
fn other_domain_with_nul_never_verifies() {
    let k = key(1);
    // Made without the helper (sign debug-asserts) to show verify refuses on its own.
    let forged = k
        .soft_key()
        .unwrap()
        .sign(b"xroad-rs/v1/a\0b\0m")
        .to_bytes();
    assert!(
        k.public_key()
            .verify(Domain::Other("a\0b"), b"m", &forged)
            .is_err()
    );
}

#[test]
fn note_text_signature_is_plain_ed25519() {
    let k = key(4);
    let sig = k.sign_note_text(b"example.com/log\n1\n");
    let raw = ed25519_dalek::VerifyingKey::from_bytes(k.public_key().as_bytes()).unwrap();
    raw.verify_strict(
        b"example.com/log\n1\n",
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .unwrap();
    k.public_key()
        .verify_note_text(b"example.com/log\n1\n", &sig)
        .unwrap();
}

#[test]
fn note_text_signature_rejects_changes() {
    let k = key(4);
    let text = b"origin\n5\n".to_vec();
    let sig = k.sign_note_text(&text);
    for i in 0..text.len() {
        let mut bad = text.clone();
        bad[i] ^= 0x01;
        assert!(k.public_key().verify_note_text(&bad, &sig).is_err());
    }
    for i in 0..sig.len() {
        let mut bad = sig;
        bad[i] ^= 0x01;
        assert!(k.public_key().verify_note_text(&text, &bad).is_err());
    }
    assert!(key(5).public_key().verify_note_text(&text, &sig).is_err());
    assert!(k.public_key().verify_note_text(&text, &sig[..63]).is_err());
}

#[test]
fn note_and_domain_signatures_do_not_cross_verify() {
    let k = key(4);
    let pk = k.public_key();
    for domain in [
        Domain::Checkpoint,
        Domain::RequestHeader,
        Domain::Other("note"),
    ] {
        // A note signature over a message does not pass as a domain signature over it,
        // and vice versa.
        let note_sig = k.sign_note_text(b"m");
        assert!(pk.verify(domain, b"m", &note_sig).is_err());
        let domain_sig = k.sign(domain, b"m");
        assert!(pk.verify_note_text(b"m", &domain_sig).is_err());
        // Over the prefixed bytes the two are the same signature, which is why a note's
        // text must never start with `xroad-rs/v1/` (the tlog crate refuses such notes).
        let prefixed = domain.signed_bytes(b"m").unwrap();
        assert_eq!(k.sign_note_text(&prefixed), domain_sig);
    }
}

#[test]
fn pkcs8_pem_round_trip() {
    let k = SigningKey::generate().unwrap();
    let pem = k.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.public_key(), k.public_key());
    let sig = back.sign(Domain::Checkpoint, b"x");
    k.public_key()
        .verify(Domain::Checkpoint, b"x", &sig)
        .unwrap();
}

#[test]
fn from_pkcs8_pem_rejects_garbage() {
    assert!(matches!(
        SigningKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        ),
        Err(Error::KeyFormat(_))
    ));
}

#[test]
fn generated_keys_differ() {
    let a = SigningKey::generate().unwrap();
    let b = SigningKey::generate().unwrap();
    assert_ne!(a.public_key(), b.public_key());
}

#[test]
fn debug_shows_key_id_not_secret() {
    let k = key(7);
    let debug = format!("{k:?}");
    assert!(debug.contains(k.key_id().as_str()));
    let secret_hex = hex::encode([7u8; 32]);
    assert!(!debug.contains(&secret_hex[..16]));
    assert!(!debug.contains("[7, 7"));
    assert_eq!(
        format!("{:?}", k.public_key()),
        format!("PublicKey({})", k.key_id())
    );
}

#[test]
fn key_id_is_first_16_bytes_of_sha256_in_hex() {
    let pk = key(1).public_key();
    let id = pk.key_id();
    assert_eq!(id.as_str().len(), 32);
    assert_eq!(
        id.as_str(),
        hex::encode(&Sha256::digest(pk.as_bytes())[..16])
    );
    assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
}

#[test]
fn key_id_parse_is_strict() {
    assert!(KeyId::parse("0123456789abcdef0123456789abcdef").is_ok());
    for bad in [
        "",
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "0123456789ABCDEF0123456789abcdef",
        "0123456789abcdef0123456789abcdeg",
    ] {
        assert!(KeyId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn serde_validates_key_ids_and_public_keys() {
    let pk = key(1).public_key();
    let json = serde_json::to_string(&pk.key_id()).unwrap();
    assert_eq!(json, format!("\"{}\"", pk.key_id()));
    assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), pk.key_id());
    assert!(serde_json::from_str::<KeyId>("\"0123456789ABCDEF0123456789abcdef\"").is_err());

    let json = serde_json::to_string(&pk).unwrap();
    assert_eq!(json, format!("\"{}\"", pk.to_base64()));
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
    assert!(serde_json::from_str::<PublicKey>("\"AAAA\"").is_err());
}

#[test]
fn public_key_bytes_and_base64() {
    let pk = key(1).public_key();
    assert_eq!(PublicKey::from_bytes(pk.as_bytes()).unwrap(), pk);
    assert_eq!(PublicKey::from_base64(&pk.to_base64()).unwrap(), pk);
    assert!(PublicKey::from_bytes(&[1u8; 31]).is_err());
    assert!(PublicKey::from_bytes(&[1u8; 33]).is_err());
    assert!(PublicKey::from_base64("not base64!").is_err());
    // The identity point has small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(PublicKey::from_bytes(&identity).is_err());
}

#[test]
fn spki_der_matches_dalek_encoding() {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let k = key(9);
    let expected = k
        .soft_key()
        .unwrap()
        .verifying_key()
        .to_public_key_der()
        .unwrap();
    assert_eq!(k.public_key().to_spki_der(), expected.as_bytes());
}
