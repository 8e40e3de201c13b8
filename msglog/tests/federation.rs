#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Evidence across instances (DESIGN §3, federation): a JP server's log of an exchange with an
//! FI provider carries both instances' configurations, verifies with both anchors, fails with
//! only one, and checks each signature under its signer's instance only.

mod common;

use certs::SigningKey;
use common::{
    CLIENT_MEMBER, CLIENT_SERVER, CREATED_AT, FI_PROVIDER_MEMBER, FI_PROVIDER_SERVER, FI_SERVICE,
    Foreign, GENERATED_AT, Instance, open, response_by,
};
use globalconf::Anchor;
use globalconf::testing::ConfBuilder;
use msglog::evidence::{CheckKind, Subject};
use msglog::{EvidenceError, MessageLog, Report, VerifyOptions};
use prost::Message as _;
use proto::v1 as pb;

struct Setup {
    _dir: tempfile::TempDir,
    jp: Instance,
    fi: Foreign,
    log: MessageLog,
}

/// The log of JP's client server: 0 a request to an FI service signed by the JP client's key,
/// 1 its response signed by the FI provider's key, 2 a request within JP; JP's configuration
/// (listing FI as federated) and FI's, both serial 1; a checkpoint cosigned by JP's provider
/// server.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let jp = Instance::new();
    let fi = Foreign::new();
    let log = open(&dir.path().join("messagelog.redb"));
    let jp_conf = ConfBuilder::from_proto(jp.configuration(1, GENERATED_AT))
        .federated(&fi.anchor)
        .proto();
    log.store_configuration(
        1,
        GENERATED_AT,
        &globalconf::signed::sign(&jp_conf, &jp.registry),
    )
    .unwrap();
    log.store_federated_configuration("FI", 1, GENERATED_AT, &fi.envelope(1, GENERATED_AT))
        .unwrap();
    let request = jp.request_to(FI_SERVICE, FI_PROVIDER_SERVER, "id-X", b"{\"q\":1}", None);
    let response = response_by(
        &fi.provider_key,
        FI_PROVIDER_SERVER,
        &request,
        b"{\"a\":1}",
        false,
    );
    log.append(request).await.unwrap();
    log.append(response).await.unwrap();
    log.append(jp.request("id-JP", b"x", None)).await.unwrap();
    Setup {
        _dir: dir,
        jp,
        fi,
        log,
    }
}

fn export(s: &Setup, indexes: &[u64]) -> pb::EvidenceBundle {
    let clock = certs::ManualClock::at_unix(CREATED_AT + 1000);
    msglog::export(&s.log, &s.jp.server_id(), indexes, true, &clock, |_, _| {}).unwrap()
}

fn verify(bundle: &pb::EvidenceBundle, anchors: &[Anchor]) -> Result<Report, EvidenceError> {
    msglog::verify_trusting(&bundle.encode_to_vec(), anchors, VerifyOptions::default())
}

fn rejected(bundle: &pb::EvidenceBundle, anchors: &[Anchor]) -> Report {
    match verify(bundle, anchors) {
        Err(EvidenceError::Rejected(report)) => *report,
        Ok(report) => panic!("accepted:\n{report}"),
        Err(e) => panic!("not rejected but {e}"),
    }
}

fn detail<'r>(report: &'r Report, subject: &Subject, kind: CheckKind) -> &'r str {
    report
        .checks
        .iter()
        .find(|c| &c.subject == subject && c.kind == kind)
        .map(|c| c.detail.as_str())
        .unwrap_or_else(|| panic!("no {kind} check of {subject}:\n{report}"))
}

#[tokio::test]
async fn evidence_of_a_cross_border_exchange_verifies_with_both_anchors() {
    let s = setup().await;
    s.jp.checkpoint(&s.log, true);
    let bundle = export(&s, &[0, 1]);
    assert_eq!(bundle.configurations.len(), 2, "JP's and FI's");

    let both = [s.jp.anchor.clone(), s.fi.anchor.clone()];
    let report = verify(&bundle, &both).unwrap_or_else(|e| panic!("{e:?}"));
    // The anchors' order does not matter.
    verify(&bundle, &[s.fi.anchor.clone(), s.jp.anchor.clone()]).unwrap();

    let instances: Vec<(&str, u64)> = report
        .configurations
        .iter()
        .map(|c| (c.instance.as_str(), c.serial))
        .collect();
    assert_eq!(instances, [("JP", 1), ("FI", 1)]);
    let signers: Vec<(Option<&str>, Option<&str>)> = report
        .records
        .iter()
        .map(|r| (r.signer.as_deref(), r.signer_instance.as_deref()))
        .collect();
    assert_eq!(
        signers,
        [
            (Some(CLIENT_MEMBER), Some("JP")),
            (Some(FI_PROVIDER_MEMBER), Some("FI"))
        ]
    );
    let response = Subject::Record { index: 1 };
    assert!(
        detail(&report, &response, CheckKind::SignerKey).contains("(instance FI)"),
        "{report}"
    );
    assert!(
        detail(&report, &response, CheckKind::SignerKey).contains("serial 1 of FI"),
        "{report}"
    );
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.passed && c.kind == CheckKind::RequestHash && c.subject == response)
    );
    let text = report.to_string();
    assert!(text.contains("a configuration of FI"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["records"][1]["signer_instance"], "FI");
    assert_eq!(json["configurations"][1]["instance"], "FI");
}

#[tokio::test]
async fn with_only_one_anchor_the_evidence_fails_and_names_the_missing_one() {
    let s = setup().await;
    s.jp.checkpoint(&s.log, true);
    let bundle = export(&s, &[0, 1]);
    let fi_conf = Subject::Configuration {
        position: 1,
        serial: None,
    };
    let response = Subject::Record { index: 1 };

    // Only JP's: FI's configuration is not trusted, nor the FI signature it would certify.
    let report = rejected(&bundle, std::slice::from_ref(&s.jp.anchor));
    assert!(report.failed(&fi_conf, CheckKind::ConfigurationSignature));
    assert!(
        detail(&report, &fi_conf, CheckKind::ConfigurationSignature)
            .contains("no anchor of FI was given"),
        "{report}"
    );
    assert!(report.failed(&response, CheckKind::HeaderSignature));
    assert!(
        detail(&report, &response, CheckKind::HeaderSignature).contains("FI's anchor"),
        "{report}"
    );
    assert_eq!(report.failures().count(), 2, "{report}");
    assert!(report.configurations.iter().all(|c| c.instance == "JP"));
    // The one-anchor convenience says the same.
    assert!(matches!(
        msglog::verify(&bundle.encode_to_vec(), &s.jp.anchor),
        Err(EvidenceError::Rejected(_))
    ));

    // Only FI's: the log's own instance is not trusted, so neither its checkpoint nor the
    // JP client's signature.
    let report = rejected(&bundle, std::slice::from_ref(&s.fi.anchor));
    assert!(report.failed(&Subject::Bundle, CheckKind::ServerListed));
    assert!(report.failed(&Subject::Checkpoint, CheckKind::CheckpointSignature));
    assert!(report.failed(&Subject::Record { index: 0 }, CheckKind::HeaderSignature));
    assert!(
        detail(
            &report,
            &Subject::Configuration {
                position: 0,
                serial: None
            },
            CheckKind::ConfigurationSignature
        )
        .contains("no anchor of JP was given"),
        "{report}"
    );

    // An anchor of FI's name with another registry key does not do either.
    let impostor = common::anchor_of("FI", &SigningKey::from_seed([99; 32]));
    let report = rejected(&bundle, &[s.jp.anchor.clone(), impostor]);
    assert!(report.failed(&fi_conf, CheckKind::ConfigurationSignature));
    assert!(report.failed(&response, CheckKind::HeaderSignature));
}

#[tokio::test]
async fn a_foreign_configuration_does_not_certify_keys_for_our_members() {
    let s = setup().await;
    // A request claiming to be from the JP client, signed with a key only FI's registry lists.
    let rogue = SigningKey::from_seed([66; 32]);
    let mut forged =
        s.jp.request_to(FI_SERVICE, FI_PROVIDER_SERVER, "id-F", b"q", None);
    let mut header = pb::RequestHeader::decode(forged.record.signed_header.as_slice()).unwrap();
    header.signer_key_id = rogue.key_id().to_string();
    forged.record.signed_header = header.encode_to_vec();
    forged.record.signature = rogue
        .sign(certs::Domain::RequestHeader, &forged.record.signed_header)
        .to_vec();
    forged.record.key_id = rogue.key_id().to_string();
    let index = s.log.append(forged).await.unwrap();
    s.jp.checkpoint(&s.log, true);
    let forged = Subject::Record { index };
    let both = [s.jp.anchor.clone(), s.fi.anchor.clone()];

    // FI's registry lists the key under one of its own members: a valid FI configuration, but
    // one that says nothing about JP's members.
    let fi_lists_rogue = s.fi.sign(
        &ConfBuilder::from_proto(s.fi.configuration(2, GENERATED_AT + 10))
            .key("FI/GOV/rogue", &rogue, 1_700_000_000, 0)
            .proto(),
    );
    let mut bundle = export(&s, &[index]);
    bundle.configurations.push(fi_lists_rogue);
    let report = rejected(&bundle, &both);
    assert_eq!(
        report.configurations.len(),
        3,
        "every configuration verified"
    );
    // The key verifies the signature, but only JP's configurations say whose a key of a JP
    // member is, and none lists it.
    assert!(report.failed(&forged, CheckKind::SignerKey));
    assert!(
        detail(&report, &forged, CheckKind::SignerKey)
            .contains("no configuration of instance JP in the bundle lists key"),
        "{report}"
    );
    assert_eq!(report.failures().count(), 1, "{report}");

    // FI's registry lists the key under the JP client's member itself: refused outright, as a
    // configuration of FI naming a member of another instance.
    let fi_claims_jp_member = s.fi.sign(
        &ConfBuilder::from_proto(s.fi.configuration(3, GENERATED_AT + 20))
            .key(CLIENT_MEMBER, &rogue, 1_700_000_000, 0)
            .proto(),
    );
    let mut bundle = export(&s, &[index]);
    bundle.configurations.push(fi_claims_jp_member);
    let report = rejected(&bundle, &both);
    let position = bundle.configurations.len() - 1;
    assert!(report.failed(
        &Subject::Configuration {
            position,
            serial: None
        },
        CheckKind::ConfigurationSignature
    ));
    assert!(report.failed(&forged, CheckKind::HeaderSignature));
    assert!(
        !report
            .checks
            .iter()
            .any(|c| c.subject == forged && c.passed && c.kind == CheckKind::HeaderSignature)
    );
}

#[tokio::test]
async fn evidence_of_one_instance_verifies_with_its_anchor_alone_or_among_others() {
    let dir = tempfile::tempdir().unwrap();
    let jp = Instance::new();
    let fi = Foreign::new();
    // A log that never held a federated configuration.
    let log = open(&dir.path().join("messagelog.redb"));
    log.store_configuration(1, GENERATED_AT, &jp.envelope(1, GENERATED_AT))
        .unwrap();
    let request = jp.request("id-A", b"q", None);
    let response = jp.response(&request, b"a", false);
    log.append(request).await.unwrap();
    log.append(response).await.unwrap();
    jp.checkpoint(&log, true);
    let clock = certs::ManualClock::at_unix(CREATED_AT + 1000);
    let bundle = msglog::export(&log, &jp.server_id(), &[0, 1], true, &clock, |_, _| {}).unwrap();
    assert_eq!(bundle.configurations.len(), 1);
    assert_eq!(bundle.server_id, CLIENT_SERVER);

    let report = msglog::verify(&bundle.encode_to_vec(), &jp.anchor).unwrap();
    assert!(
        report
            .records
            .iter()
            .all(|r| r.signer_instance.as_deref() == Some("JP"))
    );
    verify(&bundle, &[fi.anchor.clone(), jp.anchor.clone()]).unwrap();
    // No anchor at all: nothing is trusted.
    let report = rejected(&bundle, &[]);
    assert!(report.failed(
        &Subject::Configuration {
            position: 0,
            serial: None
        },
        CheckKind::ConfigurationSignature
    ));
}
