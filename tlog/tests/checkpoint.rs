#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Checkpoints: the exact body format, strict parsing, signing and opening.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certs::SigningKey;
use tlog::checkpoint::{
    Checkpoint, CheckpointError, log_key_name, open_checkpoint, sign_checkpoint,
};
use tlog::merkle::{Hash, empty_root, leaf_hash};
use tlog::note::{self, Note, NoteError, NoteSigner};

const ORIGIN: &str = "JP/MUN/131016/ss1";

fn log_signer(seed: u8) -> NoteSigner {
    NoteSigner::new(log_key_name(ORIGIN), SigningKey::from_seed([seed; 32])).unwrap()
}

fn root() -> Hash {
    leaf_hash(b"root")
}

#[test]
fn body_is_origin_size_root_and_extensions() {
    let cp = Checkpoint::new(ORIGIN, 1234, root()).unwrap();
    assert_eq!(
        cp.body(),
        format!("{ORIGIN}\n1234\n{}\n", BASE64.encode(root()))
    );
    let cp = cp
        .with_extensions(vec!["ext one".into(), "— two".into()])
        .unwrap();
    assert_eq!(
        cp.body(),
        format!(
            "{ORIGIN}\n1234\n{}\next one\n— two\n",
            BASE64.encode(root())
        )
    );
    assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);
    assert_eq!(cp.origin(), ORIGIN);
    assert_eq!(cp.size(), 1234);
    assert_eq!(cp.root(), &root());
    assert_eq!(cp.extensions(), ["ext one", "— two"]);
}

#[test]
fn parses_the_spec_example() {
    let body =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse_body(body).unwrap();
    assert_eq!(cp.origin(), "example.com/behind-the-sofa");
    assert_eq!(cp.size(), 20852163);
    assert_eq!(
        BASE64.encode(cp.root()),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    assert!(cp.extensions().is_empty());
    assert_eq!(cp.body(), body);
}

#[test]
fn sizes_at_the_edges() {
    for size in [0, 1, 10, u64::MAX] {
        let cp = Checkpoint::new(ORIGIN, size, empty_root()).unwrap();
        assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap().size(), size);
    }
}

#[test]
fn malformed_bodies_are_rejected() {
    let r = BASE64.encode(root());
    let bad = [
        format!("{ORIGIN}\n5\n{r}"),
        format!("{ORIGIN}\n5\n"),
        format!("{ORIGIN}\n"),
        String::new(),
        format!("\n5\n{r}\n"),
        format!("{ORIGIN}\n\n{r}\n"),
        format!("{ORIGIN}\n05\n{r}\n"),
        format!("{ORIGIN}\n00\n{r}\n"),
        format!("{ORIGIN}\n+5\n{r}\n"),
        format!("{ORIGIN}\n-5\n{r}\n"),
        format!("{ORIGIN}\n 5\n{r}\n"),
        format!("{ORIGIN}\n5a\n{r}\n"),
        format!("{ORIGIN}\n0x5\n{r}\n"),
        format!("{ORIGIN}\n18446744073709551616\n{r}\n"),
        format!("{ORIGIN}\n5\n{}\n", BASE64.encode([0u8; 31])),
        format!("{ORIGIN}\n5\n{}\n", BASE64.encode([0u8; 33])),
        format!("{ORIGIN}\n5\n{}\n", r.trim_end_matches('=')),
        // Non-zero padding bits: the last character of 32 base64-encoded bytes carries two
        // bits that must be zero, and "B" sets one.
        format!("{ORIGIN}\n5\n{}B=\n", &r[..42]),
        format!("{ORIGIN}\n5\n{r}\n\n"),
        format!("{ORIGIN}\n5\n{r}\next\n\n"),
        format!("{ORIGIN}\r\n5\n{r}\n"),
        format!("{ORIGIN}\t\n5\n{r}\n"),
        format!("xroad-rs/v1/checkpoint\n5\n{r}\n"),
    ];
    for body in bad {
        assert!(
            matches!(
                Checkpoint::parse_body(&body),
                Err(CheckpointError::Malformed(_))
            ),
            "accepted {body:?}"
        );
    }
    // The canonical counterpart of the trailing-bits case parses.
    Checkpoint::parse_body(&format!("{ORIGIN}\n5\n{r}\n")).unwrap();
}

#[test]
fn fields_are_checked_on_construction() {
    for origin in ["", "a\nb", "a\rb", "xroad-rs/v1/x"] {
        assert!(Checkpoint::new(origin, 1, root()).is_err(), "{origin:?}");
    }
    // The spec only recommends a URL without spaces or '+'; X-Road ids may hold '+'.
    Checkpoint::new("JP/MUN/a+b/ss 1", 1, root()).unwrap();
    let cp = Checkpoint::new(ORIGIN, 1, root()).unwrap();
    for ext in ["", "a\nb", "a\u{1b}b"] {
        assert!(
            cp.clone().with_extensions(vec![ext.into()]).is_err(),
            "{ext:?}"
        );
    }
}

#[test]
fn signed_checkpoints_open_with_the_log_key() {
    let signer = log_signer(1);
    let cp = Checkpoint::new(ORIGIN, 42, root()).unwrap();
    let note = sign_checkpoint(&cp, &signer);
    assert_eq!(note.text(), cp.body());
    assert_eq!(note.signatures().len(), 1);
    assert_eq!(note.signatures()[0].name(), ORIGIN);

    let (opened, opened_note) = open_checkpoint(&note.render(), &signer.verifier()).unwrap();
    assert_eq!(opened, cp);
    assert_eq!(opened_note, note);

    // Extension lines are signed too.
    let cp = cp.with_extensions(vec!["x".into()]).unwrap();
    let note = sign_checkpoint(&cp, &signer);
    assert_eq!(
        open_checkpoint(&note.render(), &signer.verifier())
            .unwrap()
            .0,
        cp
    );
}

#[test]
fn opening_requires_a_valid_log_signature() {
    let signer = log_signer(1);
    let cp = Checkpoint::new(ORIGIN, 42, root()).unwrap();
    let rendered = sign_checkpoint(&cp, &signer).render();

    // Another key under the same name: its signature is not the log's.
    assert!(matches!(
        open_checkpoint(&rendered, &log_signer(2).verifier()),
        Err(CheckpointError::Note(NoteError::NoTrustedSignature))
    ));
    // A changed size or root.
    for changed in [
        rendered.replacen("\n42\n", "\n43\n", 1),
        rendered.replacen(&BASE64.encode(root()), &BASE64.encode(empty_root()), 1),
        rendered.replacen(ORIGIN, "JP/MUN/131016/ss2", 1),
    ] {
        assert_ne!(changed, rendered);
        assert!(matches!(
            open_checkpoint(&changed, &signer.verifier()),
            Err(CheckpointError::Note(NoteError::BadSignature { .. }))
        ));
    }
    // Not a note at all.
    assert!(matches!(
        open_checkpoint(&cp.body(), &signer.verifier()),
        Err(CheckpointError::Note(NoteError::Malformed(_)))
    ));
    // Other signatures around the log's are ignored.
    let mut note = note::parse(&rendered).unwrap();
    let other = NoteSigner::new("other.example/key", SigningKey::from_seed([9; 32])).unwrap();
    let extra = other.sign(&note);
    note.push_signature(extra).unwrap();
    open_checkpoint(&note.render(), &signer.verifier()).unwrap();
}

#[test]
fn a_validly_signed_non_checkpoint_is_refused() {
    let signer = log_signer(1);
    let mut n = Note::new(format!("{ORIGIN}\n42\n")).unwrap();
    n.push_signature(signer.sign(&n)).unwrap();
    assert!(matches!(
        open_checkpoint(&n.render(), &signer.verifier()),
        Err(CheckpointError::Malformed(_))
    ));
}

#[test]
fn log_key_names_are_valid_and_distinct() {
    assert_eq!(log_key_name(ORIGIN), ORIGIN);
    assert_eq!(log_key_name("JP/MUN/a+b/ss1"), "JP/MUN/a%2Bb/ss1");
    assert_eq!(log_key_name("JP/MUN/a%2Bb/ss1"), "JP/MUN/a%252Bb/ss1");
    assert_eq!(log_key_name("a b\u{3000}c"), "a%20b%E3%80%80c");
    let origins = ["a+b", "a%2Bb", "a b", "a%20b", "a\u{3000}b", "a+", "a%2B"];
    let names: Vec<String> = origins.iter().map(|o| log_key_name(o)).collect();
    for (i, name) in names.iter().enumerate() {
        NoteSigner::new(name.as_str(), SigningKey::from_seed([1; 32])).unwrap();
        for other in &names[i + 1..] {
            assert_ne!(name, other);
        }
    }
}
