#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 4, end to end: a real exchange is in both servers' logs under a checkpoint that peer
//! witnesses cosigned; its evidence verifies offline with only the anchor and fails on each kind
//! of alteration; a witness refuses a forked or rolled-back checkpoint.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prost::Message as _;
use proto::v1 as pb;
use sandbox::{Federation, FederationSpec};

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";
const OSAKA: &str = "JP/MUN/271004/ss1";
const PORTAL: &str = "JP/GOV/digital-agency/portal";

async fn start() -> (tempfile::TempDir, Federation) {
    let mut spec = FederationSpec::sandbox();
    spec.poll_interval_secs = 3600;
    integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await
}

/// Evidence for one X-Road-Id, once a checkpoint with at least one cosignature covers it.
async fn export(f: &Federation, server: &str, message_id: &str) -> Vec<u8> {
    integration_tests::export_evidence(f, server, message_id, 2).await
}

fn verify(
    bundle: &[u8],
    anchor: &globalconf::Anchor,
) -> Result<msglog::Report, msglog::EvidenceError> {
    msglog::verify(bundle, anchor)
}

#[tokio::test]
async fn evidence_of_a_real_exchange_verifies_offline_and_any_alteration_fails() {
    let (_dir, f) = start().await;
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    let r = runtime::HttpClient::plain()
        .request(
            Method::GET,
            &format!("{proxy}/r1/JP/MUN/131016/records/residentRecord/131016000001"),
            &[
                ("X-Road-Client", PORTAL),
                ("X-Road-Id", "evidence-1"),
                ("X-Road-Data-Subject", "131016000001"),
                ("X-Road-Purpose", "児童手当の認定"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let anchor = globalconf::Anchor::load(&f.description().anchor).unwrap();

    for server in [MINISTRY, CHIYODA] {
        let bundle = export(&f, server, "evidence-1").await;
        let report = verify(&bundle, &anchor).unwrap_or_else(|e| panic!("{server}: {e:?}"));
        assert!(report.passed(), "{server}: {report}");
        let decoded = pb::EvidenceBundle::decode(bundle.as_slice()).unwrap();
        assert_eq!(decoded.server_id, server);
        assert_eq!(
            decoded.records.len(),
            2,
            "request and response of the exchange"
        );
        assert!(
            decoded.records.iter().all(|r| r.has_body),
            "bodies are exported"
        );
    }

    // Every kind of alteration of the provider's bundle is detected.
    let original =
        pb::EvidenceBundle::decode(export(&f, CHIYODA, "evidence-1").await.as_slice()).unwrap();
    let mut cases: Vec<(&str, pb::EvidenceBundle)> = Vec::new();
    let mut b = original.clone();
    let n = b.records[0].record.len();
    b.records[0].record[n / 2] ^= 1;
    cases.push(("record", b));
    let mut b = original.clone();
    b.records[1].body.push(b'!');
    cases.push(("body", b));
    let mut b = original.clone();
    if let Some(h) = b.records[0].inclusion_proof.first_mut() {
        h[0] ^= 1;
    } else {
        b.records[0].inclusion_proof.push(vec![0; 32]);
    }
    cases.push(("inclusion proof", b));
    let mut b = original.clone();
    let size_line = b.checkpoint.lines().nth(1).unwrap().to_owned();
    b.checkpoint = b.checkpoint.replacen(
        &format!("\n{size_line}\n"),
        &format!("\n{}\n", size_line.parse::<u64>().unwrap() + 1),
        1,
    );
    cases.push(("checkpoint", b));
    let mut b = original.clone();
    let lines: Vec<&str> = b.checkpoint.lines().collect();
    let last = lines.last().unwrap().to_string();
    let mut chars: Vec<char> = last.chars().collect();
    let i = chars.len() - 3;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    b.checkpoint = b
        .checkpoint
        .replace(&last, &chars.into_iter().collect::<String>());
    cases.push(("cosignature or checkpoint signature", b));
    let mut b = original.clone();
    let n = b.configurations[0].len();
    b.configurations[0][n / 2] ^= 1;
    cases.push(("configuration", b));
    for (what, altered) in cases {
        match verify(&altered.encode_to_vec(), &anchor) {
            Ok(report) => panic!("an altered {what} verified:\n{report}"),
            Err(msglog::EvidenceError::Rejected(report)) => {
                assert!(!report.passed());
                assert!(
                    report.failures().next().is_some(),
                    "{what}: the report names what failed"
                );
            }
            Err(_) => {}
        }
    }
    f.stop().await;
}

#[tokio::test]
async fn a_witness_refuses_a_forked_or_rolled_back_checkpoint() {
    let (_dir, f) = start().await;
    // Give Chiyoda's log a few records and let Osaka witness them.
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    for i in 0..3 {
        let r = runtime::HttpClient::plain()
            .request(
                Method::GET,
                &format!("{proxy}/r1/JP/MUN/131016/records/residentRecord/131016000002"),
                &[
                    ("X-Road-Client", PORTAL),
                    ("X-Road-Id", &format!("fork-{i}")),
                ],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 200);
    }
    export(&f, CHIYODA, "fork-2").await;

    // Chiyoda's own keys: a server that tries to rewrite its history.
    let chiyoda = f.server(CHIYODA).unwrap();
    let identity = security_server::identity::Identity::load(&chiyoda.config).unwrap();
    let owner_key = identity
        .signing_keys
        .iter()
        .find(|(m, _)| m.to_string() == "JP/MUN/131016")
        .unwrap()
        .1
        .clone();
    let log = &chiyoda.running().unwrap().log;
    let size = log.size().unwrap();
    let osaka_state = f
        .server(OSAKA)
        .unwrap()
        .running()
        .unwrap()
        .log
        .witness_state(CHIYODA)
        .unwrap()
        .expect("Osaka witnessed Chiyoda");
    let pool = security_server::peer::PeerPool::new(
        certs::LiveIdentity::new(identity.tls, Arc::new(certs::SystemClock)).unwrap(),
        Duration::from_secs(2),
        1 << 20,
    );
    let conf = chiyoda.running().unwrap().conf.current().unwrap();
    let osaka = conf.conf().server(&OSAKA.parse().unwrap()).unwrap().clone();
    let mut client = pool.connect(&osaka, &osaka.addresses[0]).await.unwrap();
    let signer = tlog::NoteSigner::new(tlog::log_key_name(CHIYODA), owner_key).unwrap();
    let submit = |size: u64, root: tlog::Hash, old: u64| {
        let cp = tlog::Checkpoint::new(CHIYODA.to_string(), size, root).unwrap();
        pb::AddCheckpointRequest {
            old_size: old,
            consistency_proof: vec![],
            checkpoint: tlog::sign_checkpoint(&cp, &signer).render(),
        }
    };

    // Same size as witnessed, another root: a fork.
    let err = client
        .add_checkpoint(submit(osaka_state.size, [7; 32], osaka_state.size))
        .await
        .unwrap_err();
    let e = security_server::peer::status_to_error(&err).expect("an X-Road error");
    assert_eq!(e.error_type(), "Server.ServerProxy.CheckpointRefused");
    assert!(
        e.message.contains("another root"),
        "a fork is named: {}",
        e.message
    );
    // Smaller than witnessed: a rollback.
    let err = client
        .add_checkpoint(submit(
            osaka_state.size - 1,
            log.root(osaka_state.size - 1).unwrap(),
            osaka_state.size,
        ))
        .await
        .unwrap_err();
    let e = security_server::peer::status_to_error(&err).expect("an X-Road error");
    assert_eq!(e.error_type(), "Server.ServerProxy.CheckpointRefused");
    // What the witness holds did not change.
    let after = f
        .server(OSAKA)
        .unwrap()
        .running()
        .unwrap()
        .log
        .witness_state(CHIYODA)
        .unwrap()
        .unwrap();
    assert_eq!(after, osaka_state);
    assert!(size >= osaka_state.size);
    f.stop().await;
}
