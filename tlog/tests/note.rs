#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Signed notes: the published golang.org/x/mod/sumdb/note vectors (an independent
//! implementation of the same format), strict parsing, and the verification rules.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certs::SigningKey;
use sha2::{Digest as _, Sha256};
use tlog::note::{
    self, MAX_SIGNATURES, Note, NoteError, NoteSignature, NoteSigner, NoteVerifier,
    parse_signature_lines,
};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
/// The private key of the vector, base64(0x01 ‖ Ed25519 seed).
const PETER_SKEY: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_signer() -> NoteSigner {
    let raw = BASE64.decode(PETER_SKEY).unwrap();
    assert_eq!(raw[0], 0x01);
    let seed: [u8; 32] = raw[1..].try_into().unwrap();
    NoteSigner::new("PeterNeumann", SigningKey::from_seed(seed)).unwrap()
}

fn peter() -> NoteVerifier {
    NoteVerifier::from_vkey(PETER_VKEY).unwrap()
}

fn enoch() -> NoteVerifier {
    NoteVerifier::from_vkey(ENOCH_VKEY).unwrap()
}

fn signed(sigs: &[&str]) -> String {
    format!("{TEXT}\n{}", sigs.concat())
}

#[test]
fn signing_reproduces_the_published_vector() {
    let signer = peter_signer();
    assert_eq!(signer.key_hash(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(signer.verifier(), peter());
    assert_eq!(signer.verifier().to_vkey(), PETER_VKEY);
    let mut n = Note::new(TEXT).unwrap();
    let sig = signer.sign(&n);
    assert_eq!(format!("{}\n", sig.to_line()), PETER_SIG);
    n.push_signature(sig).unwrap();
    assert_eq!(n.render(), signed(&[PETER_SIG]));
    assert_eq!(n.to_string(), signed(&[PETER_SIG]));
}

#[test]
fn key_hash_is_sha256_of_name_newline_type_key() {
    let key = SigningKey::from_seed([9; 32]).public_key();
    let v = NoteVerifier::new("example.com/log", key).unwrap();
    let mut h = Sha256::new();
    h.update(b"example.com/log\n\x01");
    h.update(key.as_bytes());
    assert_eq!(v.key_hash(), h.finalize()[..4]);
}

#[test]
fn verification_follows_the_spec() {
    let both = signed(&[PETER_SIG, ENOCH_SIG]);
    let n = note::parse(&both).unwrap();
    assert_eq!(n.text(), TEXT);
    assert_eq!(n.signatures().len(), 2);

    // One trusted key: the other signature is ignored.
    let v = n.verify(&[peter()]).unwrap();
    assert_eq!(v.names().collect::<Vec<_>>(), ["PeterNeumann"]);
    assert!(v.contains(&peter()));
    assert!(!v.contains(&enoch()));

    // Both trusted.
    let v = n.verify(&[enoch(), peter()]).unwrap();
    assert_eq!(v.names().collect::<Vec<_>>(), ["PeterNeumann", "EnochRoot"]);

    // None trusted.
    assert_eq!(n.verify(&[]), Err(NoteError::NoTrustedSignature));

    // A trusted key listed twice is ambiguous only when a signature uses it.
    assert!(matches!(
        n.verify(&[enoch(), peter(), enoch()]),
        Err(NoteError::AmbiguousKey { .. })
    ));
    note::parse(&signed(&[PETER_SIG]))
        .unwrap()
        .verify(&[enoch(), peter(), enoch()])
        .unwrap();

    // Repeated signatures are fine and the signer is listed once.
    let v = note::parse(&signed(&[PETER_SIG, PETER_SIG]))
        .unwrap()
        .verify(&[peter()])
        .unwrap();
    assert_eq!(v.names().count(), 1);
}

#[test]
fn a_bad_signature_by_a_trusted_key_rejects_the_note() {
    let n = note::parse(&signed(&[PETER_SIG])).unwrap();
    let sig = &n.signatures()[0];
    for i in 0..sig.signature().len() {
        let mut bytes = sig.signature().to_vec();
        bytes[i] ^= 0x10;
        let bad = NoteSignature::new(sig.name(), sig.key_hash(), bytes).unwrap();
        let mut forged = Note::new(TEXT).unwrap();
        forged.push_signature(bad.clone()).unwrap();
        assert!(matches!(
            forged.verify(&[peter()]),
            Err(NoteError::BadSignature { .. })
        ));
        // Even next to a good one.
        forged.push_signature(sig.clone()).unwrap();
        assert!(matches!(
            forged.verify(&[peter()]),
            Err(NoteError::BadSignature { .. })
        ));
    }
    // A changed text fails the same way.
    let other = format!("{}\n{PETER_SIG}", TEXT.replace("problem", "question"));
    assert!(matches!(
        note::parse(&other).unwrap().verify(&[peter()]),
        Err(NoteError::BadSignature { .. })
    ));
    // A signature of the wrong length cannot verify either.
    let short = NoteSignature::new(sig.name(), sig.key_hash(), sig.signature()[..63].to_vec());
    let mut forged = Note::new(TEXT).unwrap();
    forged.push_signature(short.unwrap()).unwrap();
    assert!(matches!(
        forged.verify(&[peter()]),
        Err(NoteError::BadSignature { .. })
    ));
}

#[test]
fn signatures_sharing_only_name_or_only_key_hash_are_ignored() {
    let n = note::parse(&signed(&[PETER_SIG])).unwrap();
    // Same name, another key (so another key hash).
    let impostor =
        NoteVerifier::new("PeterNeumann", SigningKey::from_seed([1; 32]).public_key()).unwrap();
    assert_eq!(n.verify(&[impostor]), Err(NoteError::NoTrustedSignature));
    // Same key hash under another name.
    let sig = &n.signatures()[0];
    let renamed = NoteSignature::new("CarmenSandiego", sig.key_hash(), sig.signature().to_vec());
    let mut other = Note::new(TEXT).unwrap();
    other.push_signature(renamed.unwrap()).unwrap();
    assert_eq!(other.verify(&[peter()]), Err(NoteError::NoTrustedSignature));
}

#[test]
fn parse_and_render_round_trip() {
    for s in [
        signed(&[PETER_SIG]),
        signed(&[PETER_SIG, ENOCH_SIG]),
        format!("a\n\nb\n\n{PETER_SIG}"),
        format!("\n\n{PETER_SIG}"),
        format!("a\n\n\n{PETER_SIG}"),
        format!("— x AAAAAAA=\n\n{PETER_SIG}"),
    ] {
        let n = note::parse(&s).unwrap();
        assert_eq!(n.render(), s);
        assert_eq!(s.parse::<Note>().unwrap(), n);
    }
    // The text is everything before the last blank line.
    let n = note::parse(&format!("a\n\nb\n\n{PETER_SIG}")).unwrap();
    assert_eq!(n.text(), "a\n\nb\n");
    let n = note::parse(&format!("a\n\n\n{PETER_SIG}")).unwrap();
    assert_eq!(n.text(), "a\n\n");
}

#[test]
fn malformed_notes_are_rejected() {
    let sig_b64 = &PETER_SIG["— PeterNeumann ".len()..PETER_SIG.len() - 1];
    let bad = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        signed(&[PETER_SIG]).trim_end_matches('\n').to_owned(),
        format!("\x01{}", signed(&[PETER_SIG])),
        format!("a\rb\n\n{PETER_SIG}"),
        format!("a\tb\n\n{PETER_SIG}"),
        signed(&[PETER_SIG]).replace("\n— ", "\n— \x7f"),
        format!("{}Unexpected line.\n", signed(&[PETER_SIG])),
        signed(&[&format!("— Bad Name {sig_b64}\n")]),
        signed(&[&format!("— Bad+Name {sig_b64}\n")]),
        signed(&[&format!("—  {sig_b64}\n")]),
        signed(&[&format!("- PeterNeumann {sig_b64}\n")]),
        signed(&[&format!("—PeterNeumann {sig_b64}\n")]),
        signed(&[&format!("— PeterNeumann {sig_b64} \n")]),
        signed(&[&format!("— PeterNeumann  {sig_b64}\n")]),
        signed(&[&format!(
            "— PeterNeumann {}\n",
            sig_b64.trim_end_matches('=')
        )]),
        signed(&[&format!("— PeterNeumann {sig_b64}=\n")]),
        signed(&[&format!("— PeterNeumann {}\n", BASE64.encode([1, 2, 3, 4]))]),
        // Base64 with non-zero trailing bits ("AQIDBAU=" is canonical).
        signed(&[&format!("— PeterNeumann {}\n", "AQIDBAV=")]),
        signed(&[PETER_SIG, "\n"]),
        signed(&[&PETER_SIG.repeat(MAX_SIGNATURES + 1)]),
        format!("xroad-rs/v1/checkpoint\0x\n\n{PETER_SIG}"),
        format!("xroad-rs/v1/x\n\n{PETER_SIG}"),
    ];
    for s in bad {
        assert!(note::parse(&s).is_err(), "accepted {s:?}");
    }
}

#[test]
fn shortest_canonical_signature_is_accepted() {
    // The counterpart of the non-canonical case above: key hash and one signature byte.
    let n = note::parse(&signed(&["— PeterNeumann AQIDBAU=\n"])).unwrap();
    assert_eq!(n.signatures()[0].key_hash(), [1, 2, 3, 4]);
    assert_eq!(n.signatures()[0].signature(), [5]);
}

#[test]
fn up_to_max_signatures_are_accepted() {
    for count in [1, 16, MAX_SIGNATURES] {
        let n = note::parse(&signed(&[&PETER_SIG.repeat(count)])).unwrap();
        assert_eq!(n.signatures().len(), count);
        n.verify(&[peter()]).unwrap();
    }
    let mut n = note::parse(&signed(&[&PETER_SIG.repeat(MAX_SIGNATURES)])).unwrap();
    let extra = n.signatures()[0].clone();
    assert!(matches!(
        n.push_signature(extra),
        Err(NoteError::Malformed(_))
    ));
}

#[test]
fn note_text_rules() {
    Note::new("a\n").unwrap();
    Note::new("\n").unwrap();
    Note::new("ünï\u{7f}code\n").unwrap();
    for bad in ["", "a", "a\n\rb\n", "\u{0}\n", "xroad-rs/v1/a\n"] {
        assert!(
            matches!(Note::new(bad), Err(NoteError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn signature_lines() {
    let sig = NoteSignature::from_line(PETER_SIG.trim_end_matches('\n')).unwrap();
    assert_eq!(sig.name(), "PeterNeumann");
    assert_eq!(sig.key_hash(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(sig.signature().len(), 64);
    assert_eq!(format!("{}\n", sig.to_line()), PETER_SIG);

    let block = format!("{PETER_SIG}{ENOCH_SIG}");
    let sigs = parse_signature_lines(&block).unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[1].name(), "EnochRoot");
    for bad in [
        String::new(),
        "\n".to_owned(),
        PETER_SIG.trim_end_matches('\n').to_owned(),
        format!("{PETER_SIG}\n{ENOCH_SIG}"),
        PETER_SIG.repeat(MAX_SIGNATURES + 1),
    ] {
        assert!(parse_signature_lines(&bad).is_err(), "{bad:?}");
    }

    assert!(matches!(
        NoteSignature::new("a b", [0; 4], vec![1]),
        Err(NoteError::InvalidKeyName(_))
    ));
    assert!(matches!(
        NoteSignature::new("a", [0; 4], vec![]),
        Err(NoteError::Malformed(_))
    ));
}

#[test]
fn verifier_keys_round_trip_and_reject_manglings() {
    for vkey in [PETER_VKEY, ENOCH_VKEY] {
        assert_eq!(NoteVerifier::from_vkey(vkey).unwrap().to_vkey(), vkey);
    }
    let signer = NoteSigner::new("JP/MUN/131016/ss1", SigningKey::from_seed([3; 32])).unwrap();
    let vkey = signer.verifier().to_vkey();
    assert!(vkey.starts_with("JP/MUN/131016/ss1+"));
    assert_eq!(NoteVerifier::from_vkey(&vkey).unwrap(), signer.verifier());

    // Every proper substring and every single-byte change fails.
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if (i, j) != (0, b.len()) {
                let s = std::str::from_utf8(&b[i..j]).unwrap();
                assert!(NoteVerifier::from_vkey(s).is_err(), "{s:?}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        let s = String::from_utf8(m).unwrap();
        assert!(NoteVerifier::from_vkey(&s).is_err(), "{s:?}");
    }

    let key = SigningKey::from_seed([3; 32]).public_key();
    let with = |name: &str, typ: u8, key: &[u8], hash: Option<&str>| {
        let mut raw = vec![typ];
        raw.extend_from_slice(key);
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([b'\n']);
        h.update(&raw);
        let digest = h.finalize();
        let hash = hash.map_or_else(|| hex::encode(&digest[..4]), str::to_owned);
        format!("{name}+{hash}+{}", BASE64.encode(raw))
    };
    NoteVerifier::from_vkey(&with("a", 0x01, key.as_bytes(), None)).unwrap();
    for bad in [
        with("a", 0x04, key.as_bytes(), None),
        with("a", 0x01, &key.as_bytes()[..31], None),
        with("a", 0x01, &[key.as_bytes().as_slice(), &[0]].concat(), None),
        with("a b", 0x01, key.as_bytes(), None),
        with("", 0x01, key.as_bytes(), None),
        with("a", 0x01, key.as_bytes(), Some("00000000")),
        PETER_VKEY.replace("c74f20a3", "C74F20A3"),
        format!("{}+", with("a", 0x01, key.as_bytes(), None)),
    ] {
        assert!(NoteVerifier::from_vkey(&bad).is_err(), "{bad:?}");
    }
    assert!(matches!(
        NoteVerifier::from_vkey(&with("a", 0x04, key.as_bytes(), None)),
        Err(NoteError::InvalidVerifierKey(_))
    ));
}

#[test]
fn signer_and_verifier_names_are_checked() {
    let key = SigningKey::from_seed([3; 32]);
    for bad in ["", "a b", "a+b", "a\u{3000}b", "a\nb"] {
        assert!(NoteSigner::new(bad, key.clone()).is_err(), "{bad:?}");
        assert!(NoteVerifier::new(bad, key.public_key()).is_err(), "{bad:?}");
    }
}

#[test]
fn signed_notes_verify_and_fail_after_any_change() {
    let signer = NoteSigner::new("example.com/log", SigningKey::from_seed([5; 32])).unwrap();
    let mut n = Note::new("line one\nline two\n").unwrap();
    n.push_signature(signer.sign(&n)).unwrap();
    let rendered = n.render();
    note::parse(&rendered)
        .unwrap()
        .verify(&[signer.verifier()])
        .unwrap();
    let text_len = n.text().len();
    for i in 0..text_len {
        let mut bytes = rendered.clone().into_bytes();
        if bytes[i] == b'\n' {
            continue;
        }
        bytes[i] ^= 0x01;
        let changed = String::from_utf8(bytes).unwrap();
        assert!(
            note::parse(&changed)
                .and_then(|n| n.verify(&[signer.verifier()]))
                .is_err()
        );
    }
}
