#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Evidence: exported from a log of real signed exchanges, verified offline with only the
//! anchor; every kind of alteration is rejected and named.

mod common;

use base64::Engine as _;
use common::{CLIENT_SERVER, CREATED_AT, GENERATED_AT, Instance, PROVIDER_SERVER, open};
use msglog::evidence::{CheckKind, Subject};
use msglog::{EvidenceError, MessageLog, Report, VerifyOptions};
use prost::Message as _;
use proto::v1 as pb;

struct Setup {
    _dir: tempfile::TempDir,
    instance: Instance,
    log: MessageLog,
}

/// A log with: 0 request A, 1 response A, 2 request B, 3 response B whose request hash is
/// wrong, 4..=9 filler; a configuration; a cosigned checkpoint of size 10.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let instance = Instance::new();
    let log = open(&dir.path().join("messagelog.redb"));
    log.store_configuration(1, GENERATED_AT, &instance.envelope(1, GENERATED_AT))
        .unwrap();
    let req_a = instance.request("id-A", b"{\"query\":\"A\"}", Some("JP-SUBJECT-1"));
    let resp_a = instance.response(&req_a, b"{\"answer\":\"A\"}", false);
    let req_b = instance.request("id-B", b"{\"query\":\"B\"}", None);
    let resp_b = instance.response(&req_b, b"{\"answer\":\"B\"}", true);
    for entry in [req_a, resp_a, req_b, resp_b] {
        log.append(entry).await.unwrap();
    }
    for i in 4..10 {
        let req = instance.request(&format!("id-{i}"), b"x", None);
        log.append(req).await.unwrap();
    }
    Setup {
        _dir: dir,
        instance,
        log,
    }
}

fn export(s: &Setup, indexes: &[u64]) -> pb::EvidenceBundle {
    let clock = certs::ManualClock::at_unix(CREATED_AT + 1000);
    msglog::export(
        &s.log,
        &s.instance.server_id(),
        indexes,
        true,
        &clock,
        |_, _| {},
    )
    .unwrap()
}

fn rejected(bundle: &pb::EvidenceBundle, s: &Setup) -> Report {
    match msglog::verify(&bundle.encode_to_vec(), &s.instance.anchor) {
        Err(EvidenceError::Rejected(report)) => *report,
        Ok(report) => panic!("accepted:\n{report}"),
        Err(e) => panic!("not rejected but {e}"),
    }
}

fn assert_fails(report: &Report, subject: Subject, kind: CheckKind) {
    assert!(
        report.failed(&subject, kind),
        "expected {subject} ({kind}) to fail; report:\n{report}"
    );
}

#[tokio::test]
async fn an_exported_bundle_verifies_offline() {
    let s = setup().await;
    // Not yet checkpointed: a clear error.
    let clock = certs::ManualClock::at_unix(CREATED_AT + 1000);
    let server = s.instance.server_id();
    match msglog::export(&s.log, &server, &[0, 1], true, &clock, |_, _| {}) {
        Err(e @ EvidenceError::NotYetCheckpointed { .. }) => {
            assert!(e.to_string().contains("retry"), "{e}");
        }
        other => panic!("expected NotYetCheckpointed, got {other:?}"),
    }
    s.instance.checkpoint(&s.log, true);

    let mut progress = Vec::new();
    let bundle = msglog::export(&s.log, &server, &[1, 0], true, &clock, |d, t| {
        progress.push((d, t))
    })
    .unwrap();
    assert_eq!(progress, vec![(1, 2), (2, 2)]);
    assert_eq!(bundle.server_id, CLIENT_SERVER);
    assert_eq!(bundle.records.len(), 2);
    assert!(bundle.records.iter().all(|r| r.has_body));
    assert_eq!(bundle.configurations.len(), 1);

    let report = msglog::verify(&bundle.encode_to_vec(), &s.instance.anchor).unwrap();
    assert!(report.passed());
    assert_eq!(report.checkpoint.as_ref().unwrap().size, 10);
    assert_eq!(report.witnesses.len(), 1);
    assert_eq!(report.witnesses[0].server_id, PROVIDER_SERVER);
    assert_eq!(report.witnesses[0].time, GENERATED_AT as u64 + 200);
    assert_eq!(report.records.len(), 2);
    assert_eq!(report.records[1].kind, "response");
    assert_eq!(report.records[1].status, Some(200));
    // The response was checked against its request.
    assert!(report.checks.iter().any(|c| c.passed
        && c.kind == CheckKind::RequestHash
        && c.subject == Subject::Record { index: 1 }));
    let text = report.to_string();
    assert!(text.contains("✓ record 1: request hash"), "{text}");
    assert!(text.ends_with(&format!("VALID: all {} checks passed", report.checks.len())));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["witnesses"][0]["server_id"], PROVIDER_SERVER);

    // Without bodies, the bundle still verifies (the signature covers the body hash).
    let without = msglog::export(&s.log, &server, &[0], false, &clock, |_, _| {}).unwrap();
    assert!(!without.records[0].has_body);
    msglog::verify(&without.encode_to_vec(), &s.instance.anchor).unwrap();
}

#[tokio::test]
async fn a_checkpoint_without_cosignature_is_not_enough_by_default() {
    let s = setup().await;
    s.instance.checkpoint(&s.log, false);
    let bundle = export(&s, &[0]);
    let report = rejected(&bundle, &s);
    assert_fails(&report, Subject::Checkpoint, CheckKind::Cosignatures);
    assert_eq!(report.failures().count(), 1, "{report}");
    let relaxed = VerifyOptions {
        require_cosignatures: 0,
    };
    msglog::verify_with(&bundle.encode_to_vec(), &s.instance.anchor, relaxed).unwrap();
}

#[tokio::test]
async fn every_kind_of_alteration_is_rejected_and_named() {
    let s = setup().await;
    s.instance.checkpoint(&s.log, true);
    let good = export(&s, &[0, 1]);
    msglog::verify(&good.encode_to_vec(), &s.instance.anchor).unwrap();
    let record0 = Subject::Record { index: 0 };
    let record1 = Subject::Record { index: 1 };

    // A record byte (inside the signed header: every check on the bytes fails).
    for offset in [0, 10, good.records[0].record.len() - 1] {
        let mut b = good.clone();
        b.records[0].record[offset] ^= 0x01;
        let report = rejected(&b, &s);
        assert_fails(&report, record0.clone(), CheckKind::InclusionProof);
    }

    // A body byte.
    let mut b = good.clone();
    b.records[1].body[3] ^= 0x01;
    let report = rejected(&b, &s);
    assert_fails(&report, record1.clone(), CheckKind::Body);
    assert_eq!(report.failures().count(), 1, "{report}");

    // An inclusion proof byte, a missing proof hash.
    let mut b = good.clone();
    b.records[1].inclusion_proof[1][7] ^= 0x01;
    assert_fails(
        &rejected(&b, &s),
        record1.clone(),
        CheckKind::InclusionProof,
    );
    let mut b = good.clone();
    b.records[1].inclusion_proof.pop();
    assert_fails(
        &rejected(&b, &s),
        record1.clone(),
        CheckKind::InclusionProof,
    );

    // The checkpoint text: its size, its root.
    let mut b = good.clone();
    b.checkpoint = b.checkpoint.replacen("\n10\n", "\n11\n", 1);
    assert_ne!(b.checkpoint, good.checkpoint);
    let report = rejected(&b, &s);
    assert_fails(&report, Subject::Checkpoint, CheckKind::CheckpointSignature);
    assert_fails(&report, record0.clone(), CheckKind::InclusionProof);
    let mut b = good.clone();
    let note = tlog::note::parse(&good.checkpoint).unwrap();
    let root_line = note.text().lines().nth(2).unwrap();
    let mut root = base64::engine::general_purpose::STANDARD
        .decode(root_line)
        .unwrap();
    root[0] ^= 0x01;
    let altered_root = base64::engine::general_purpose::STANDARD.encode(root);
    b.checkpoint = b.checkpoint.replacen(root_line, &altered_root, 1);
    assert_fails(
        &rejected(&b, &s),
        Subject::Checkpoint,
        CheckKind::CheckpointSignature,
    );

    // The checkpoint's signature (the log's own line), a cosignature byte.
    let alter_signature = |which: usize| {
        let note = tlog::note::parse(&good.checkpoint).unwrap();
        let mut altered = tlog::Note::new(note.text()).unwrap();
        for (i, sig) in note.signatures().iter().enumerate() {
            let mut bytes = sig.signature().to_vec();
            if i == which {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x01;
            }
            altered
                .push_signature(
                    tlog::NoteSignature::new(sig.name(), sig.key_hash(), bytes).unwrap(),
                )
                .unwrap();
        }
        let mut b = good.clone();
        b.checkpoint = altered.render();
        b
    };
    assert_eq!(note.signatures()[0].name(), CLIENT_SERVER);
    assert_eq!(note.signatures()[1].name(), PROVIDER_SERVER);
    let report = rejected(&alter_signature(0), &s);
    assert_fails(&report, Subject::Checkpoint, CheckKind::CheckpointSignature);
    let report = rejected(&alter_signature(1), &s);
    assert_fails(&report, Subject::Checkpoint, CheckKind::Cosignatures);
    assert_eq!(report.failures().count(), 1, "{report}");

    // A configuration byte: the configuration is refused, and with it every key it listed.
    for offset in [
        5,
        good.configurations[0].len() / 2,
        good.configurations[0].len() - 1,
    ] {
        let mut b = good.clone();
        b.configurations[0][offset] ^= 0x01;
        let report = rejected(&b, &s);
        assert_fails(
            &report,
            Subject::Configuration {
                position: 0,
                serial: None,
            },
            CheckKind::ConfigurationSignature,
        );
    }

    // The record's signature over its header.
    let mut b = good.clone();
    let mut record = pb::LogRecord::decode(b.records[0].record.as_slice()).unwrap();
    record.signature[0] ^= 0x01;
    b.records[0].record = record.encode_to_vec();
    let report = rejected(&b, &s);
    assert_fails(&report, record0.clone(), CheckKind::HeaderSignature);
    assert_fails(&report, record0.clone(), CheckKind::InclusionProof);

    // An unknown field appended to the bundle.
    let mut bytes = good.encode_to_vec();
    bytes.extend_from_slice(&[0xf8, 0x01, 0x01]);
    assert!(matches!(
        msglog::verify(&bytes, &s.instance.anchor),
        Err(EvidenceError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_response_whose_request_hash_does_not_match_its_request_is_rejected() {
    let s = setup().await;
    s.instance.checkpoint(&s.log, true);
    // Records 2 and 3: the response is validly signed, but answers another request.
    let bundle = export(&s, &[2, 3]);
    let report = rejected(&bundle, &s);
    assert_fails(
        &report,
        Subject::Record { index: 3 },
        CheckKind::RequestHash,
    );
    assert_eq!(report.failures().count(), 1, "{report}");
    // Alone, the response has no request in the bundle to be checked against.
    let alone = export(&s, &[3]);
    msglog::verify(&alone.encode_to_vec(), &s.instance.anchor).unwrap();
}

#[tokio::test]
async fn a_signer_who_is_not_the_client_is_rejected() {
    let s = setup().await;
    // A request claiming to be from the client but signed with the provider's key.
    let mut forged = s.instance.request("id-forged", b"q", None);
    let mut header = pb::RequestHeader::decode(forged.record.signed_header.as_slice()).unwrap();
    header.signer_key_id = s.instance.provider_key.key_id().to_string();
    forged.record.signed_header = header.encode_to_vec();
    forged.record.signature = s
        .instance
        .provider_key
        .sign(certs::Domain::RequestHeader, &forged.record.signed_header)
        .to_vec();
    forged.record.key_id = s.instance.provider_key.key_id().to_string();
    let index = s.log.append(forged).await.unwrap();
    s.instance.checkpoint(&s.log, true);
    let report = rejected(&export(&s, &[index]), &s);
    assert_fails(&report, Subject::Record { index }, CheckKind::SignerKey);
    assert_eq!(report.failures().count(), 1, "{report}");
}

#[tokio::test]
async fn archived_records_export_and_verify() {
    let s = setup().await;
    s.instance.checkpoint(&s.log, true);
    let archive = s._dir.path().join("archive");
    let report = s.log.archive_before(i64::MAX, &archive, |_, _| {}).unwrap();
    assert_eq!(report.records, 10);
    let bundle = export(&s, &[0, 1, 9]);
    assert!(bundle.records[0].has_body);
    msglog::verify(&bundle.encode_to_vec(), &s.instance.anchor).unwrap();
}

#[tokio::test]
async fn a_record_altered_in_storage_is_detected_by_verification() {
    let s = setup().await;
    s.instance.checkpoint(&s.log, true);
    let clean = export(&s, &[2]);
    assert!(msglog::verify(&clean.encode_to_vec(), &s.instance.anchor).is_ok());

    // Rewrite the message id of record 2 wherever it occurs in the stored log (the database
    // file with its index, and the write-ahead segments that hold the record), as someone
    // editing the stored log would.
    let path = s.log.path().to_owned();
    let Setup {
        _dir,
        instance,
        log,
    } = s;
    drop(log);
    let mut wal_dir = path.as_os_str().to_owned();
    wal_dir.push("-wal");
    let mut files = vec![path.clone()];
    for entry in std::fs::read_dir(&wal_dir).unwrap() {
        files.push(entry.unwrap().path());
    }
    let mut changed = 0;
    for file in files {
        let mut bytes = std::fs::read(&file).unwrap();
        for i in 0..bytes.len().saturating_sub(4) {
            if &bytes[i..i + 4] == b"id-B" {
                bytes[i + 3] = b'C';
                changed += 1;
            }
        }
        std::fs::write(&file, &bytes).unwrap();
    }
    assert!(changed > 0, "the message id is in the stored log");

    // Either the storage layer notices, or the exported record no longer matches the signed
    // checkpoint: never a bundle that verifies.
    let log = open(&path);
    let clock = certs::ManualClock::at_unix(CREATED_AT + 1000);
    match msglog::export(&log, &instance.server_id(), &[2], true, &clock, |_, _| {}) {
        Err(e) => eprintln!("detected by the storage layer: {e}"),
        Ok(bundle) => match msglog::verify(&bundle.encode_to_vec(), &instance.anchor) {
            Ok(report) => panic!("an altered record verified:\n{report}"),
            Err(EvidenceError::Rejected(report)) => {
                assert_fails(
                    &report,
                    Subject::Record { index: 2 },
                    CheckKind::InclusionProof,
                );
            }
            Err(_) => {}
        },
    }
}
