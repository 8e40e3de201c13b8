//! Evidence (DESIGN §6, docs/evidence.md): [`export`] packs records, their inclusion proofs, a
//! cosigned checkpoint covering them and the signed configurations that list the keys into an
//! `EvidenceBundle`; [`verify`] checks such a bundle offline, with nothing but the instance
//! anchor: no database, no network, no clock.
//!
//! # Why one long file
//! Export and offline verification are the two sides of one format: each check `verify` makes
//! mirrors a step of `export`, and a reviewer compares them side by side.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certs::{Clock, Domain, KeyId, PublicKey};
use globalconf::{
    Anchor, MemberId, SecurityServerId, ServiceId, SubsystemId, VerifiedConf, signed,
};
use prost::Message as _;
use proto::v1 as pb;
use sha2::{Digest as _, Sha256, Sha512};
use tlog::{Checkpoint, CosignatureVerifier, Hash, Note, NoteVerifier};

pub use crate::report::{
    Check, CheckKind, CheckpointInfo, ConfigurationInfo, RecordInfo, Report, Subject, WitnessInfo,
};
use crate::{EvidenceError, MessageLog};

/// The bundle format this crate writes and reads.
pub const BUNDLE_VERSION: u32 = 1;

/// Exports the records at `indexes` of `log` (the log of `server_id`) as evidence.
///
/// The checkpoint is the stored one that covers the largest index with the most cosignatures
/// ([`MessageLog::checkpoint_covering`]); every inclusion proof is to its size. Bodies go in
/// when `include_bodies` and they were stored. The configurations are those in force when the
/// records were logged, plus the newest ([`MessageLog::configurations_for`]).
/// `progress(done, total)` counts records.
pub fn export(
    log: &MessageLog,
    server_id: &SecurityServerId,
    indexes: &[u64],
    include_bodies: bool,
    clock: &dyn Clock,
    mut progress: impl FnMut(u64, u64),
) -> Result<pb::EvidenceBundle, EvidenceError> {
    let mut indexes = indexes.to_vec();
    indexes.sort_unstable();
    indexes.dedup();
    let Some(&last) = indexes.last() else {
        return Err(EvidenceError::Request("no records selected".into()));
    };
    let size = log.size()?;
    if last >= size {
        return Err(EvidenceError::Request(format!(
            "record {last} does not exist (the log has {size} records)"
        )));
    }
    let Some((cp_size, note_text)) = log.checkpoint_covering(last + 1)? else {
        let latest = log.latest_checkpoint()?.map_or(0, |(s, _)| s);
        return Err(EvidenceError::NotYetCheckpointed {
            last_index: last,
            latest,
        });
    };
    let origin = tlog::note::parse(&note_text)
        .ok()
        .and_then(|n| Checkpoint::parse_body(n.text()).ok())
        .map(|cp| cp.origin().to_owned());
    if origin.as_deref() != Some(server_id.to_string().as_str()) {
        return Err(EvidenceError::Request(format!(
            "the stored checkpoint is of {}, not of {server_id}",
            origin.as_deref().unwrap_or("(unreadable)")
        )));
    }

    let total = indexes.len() as u64;
    let mut records = Vec::with_capacity(indexes.len());
    let mut times = Vec::with_capacity(indexes.len());
    for (done, &index) in indexes.iter().enumerate() {
        let stored = log
            .record(index)?
            .ok_or_else(|| EvidenceError::Request(format!("record {index} does not exist")))?;
        times.push(stored.decode()?.logged_at_ms.div_euclid(1000));
        let proof = log.inclusion_proof(index, cp_size)?;
        let body = stored.body.filter(|_| include_bodies);
        records.push(pb::EvidenceRecord {
            index,
            has_body: body.is_some(),
            body: body.unwrap_or_default(),
            record: stored.record_bytes,
            inclusion_proof: proof.iter().map(|h| h.to_vec()).collect(),
        });
        progress(done as u64 + 1, total);
    }
    let mut configurations = log.configurations_for(&times)?;
    if configurations.is_empty() {
        return Err(EvidenceError::NoConfiguration);
    }
    // A cross-border exchange's records are signed by keys of the other instance too: its
    // configurations of the time go in as well (only for instances the records name, so that
    // an auditor of this instance's exchanges needs no other anchor).
    let own = server_id.owner().instance();
    for instance in records_instances(&records) {
        if instance != own {
            configurations.extend(log.federated_configurations_for(&instance, &times)?);
        }
    }
    Ok(pb::EvidenceBundle {
        version: BUNDLE_VERSION,
        server_id: server_id.to_string(),
        checkpoint: note_text,
        records,
        configurations,
        exported_at: clock.unix_now(),
    })
}

/// The instances the records' client, service and peer belong to (their identifiers' first
/// part).
fn records_instances(records: &[pb::EvidenceRecord]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        // Record bytes that do not decode are exported as they are; verification names them.
        let Ok(record) = pb::LogRecord::decode(r.record.as_slice()) else {
            continue;
        };
        for id in [&record.client, &record.service, &record.peer] {
            if let Some(instance) = id.split('/').next().filter(|i| !i.is_empty())
                && !out.iter().any(|o| o == instance)
            {
                out.push(instance.to_owned());
            }
        }
    }
    out.sort_unstable();
    out
}

/// What verification demands beyond the checks that always run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// How many independent witnesses (security servers of distinct owner members, other than
    /// the log's owner) must have cosigned the checkpoint. Default 1: a checkpoint only its own
    /// server signed does not show that the history was not rewritten since.
    pub require_cosignatures: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            require_cosignatures: 1,
        }
    }
}

/// Verifies an encoded `EvidenceBundle` with the default options: `Ok` with the report when
/// every check passed, [`EvidenceError::Rejected`] with the report when any failed,
/// [`EvidenceError::Malformed`] when it is not a bundle at all.
pub fn verify(bundle_bytes: &[u8], anchor: &Anchor) -> Result<Report, EvidenceError> {
    verify_with(bundle_bytes, anchor, VerifyOptions::default())
}

/// [`verify`] with explicit options.
pub fn verify_with(
    bundle_bytes: &[u8],
    anchor: &Anchor,
    options: VerifyOptions,
) -> Result<Report, EvidenceError> {
    verify_trusting(bundle_bytes, std::slice::from_ref(anchor), options)
}

/// [`verify_with`] trusting several anchors, each for its own instance: the evidence of a
/// cross-border exchange holds configurations of both instances (DESIGN §3, federation), and
/// each is checked under the anchor of the instance it is of. A configuration of an instance
/// none of `anchors` is of is not trusted, and so neither are the signatures only it vouches
/// for.
pub fn verify_trusting(
    bundle_bytes: &[u8],
    anchors: &[Anchor],
    options: VerifyOptions,
) -> Result<Report, EvidenceError> {
    let bundle = pb::EvidenceBundle::decode(bundle_bytes)
        .map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    // prost skips unknown fields: a bundle that is not exactly what we decoded is refused.
    if bundle.encoded_len() != bundle_bytes.len() {
        return Err(EvidenceError::Malformed("unknown or trailing data".into()));
    }
    if bundle.version != BUNDLE_VERSION {
        return Err(EvidenceError::Malformed(format!(
            "bundle version {} (this verifier reads {BUNDLE_VERSION})",
            bundle.version
        )));
    }
    let server_id: SecurityServerId = bundle
        .server_id
        .parse()
        .map_err(|e| EvidenceError::Malformed(format!("server id: {e}")))?;

    let mut report = Report::new(bundle.server_id.clone(), bundle.exported_at);
    check_contents(&bundle, &mut report);
    let confs = check_configurations(&bundle, anchors, &mut report);
    let listed = confs.iter().any(|c| c.conf().server(&server_id).is_some());
    report.check(
        Subject::Bundle,
        CheckKind::ServerListed,
        if listed {
            Ok(format!("{server_id} is a security server of the instance"))
        } else {
            Err(format!("no verified configuration lists {server_id}"))
        },
    );
    let checkpoint = check_checkpoint(&bundle, &server_id, &confs, &options, &mut report);

    let decoded: Vec<Option<pb::LogRecord>> = bundle
        .records
        .iter()
        .map(|r| decode_exact::<pb::LogRecord>(&r.record).ok())
        .collect();
    // The request hashes of the requests in the bundle, for their responses.
    let mut requests: HashMap<&str, Vec<(u64, [u8; 64])>> = HashMap::new();
    for (er, record) in bundle.records.iter().zip(&decoded) {
        if let Some(r) = record
            && r.kind == pb::LogKind::Request as i32
        {
            requests
                .entry(r.message_id.as_str())
                .or_default()
                .push((er.index, Sha512::digest(&r.signed_header).into()));
        }
    }
    for (er, record) in bundle.records.iter().zip(&decoded) {
        check_record(
            er,
            record.as_ref(),
            checkpoint.as_ref(),
            &confs,
            &requests,
            &mut report,
        );
    }

    if report.passed() {
        Ok(report)
    } else {
        Err(EvidenceError::Rejected(Box::new(report)))
    }
}

fn check_contents(bundle: &pb::EvidenceBundle, report: &mut Report) {
    let outcome = if bundle.records.is_empty() {
        Err("the bundle holds no records".into())
    } else if bundle.configurations.is_empty() {
        Err("the bundle holds no configuration".into())
    } else {
        Ok(format!(
            "version {}, {} record(s), {} configuration(s)",
            bundle.version,
            bundle.records.len(),
            bundle.configurations.len()
        ))
    };
    report.check(Subject::Bundle, CheckKind::Contents, outcome);
}

fn check_configurations(
    bundle: &pb::EvidenceBundle,
    anchors: &[Anchor],
    report: &mut Report,
) -> Vec<VerifiedConf> {
    let mut confs = Vec::new();
    for (position, envelope) in bundle.configurations.iter().enumerate() {
        let failed = |report: &mut Report, why: String| {
            report.fail(
                Subject::Configuration {
                    position,
                    serial: None,
                },
                CheckKind::ConfigurationSignature,
                why,
            );
        };
        // Which instance it says it is of picks the anchor; the anchor's check decides.
        let Some(claimed) = claimed_instance(envelope) else {
            failed(report, "not a signed configuration".into());
            continue;
        };
        let Some(anchor) = anchors.iter().find(|a| a.instance().as_str() == claimed) else {
            failed(
                report,
                format!(
                    "a configuration of instance {claimed}, and no anchor of {claimed} was given \
                     to trust it (give the anchors of every instance the exchange crossed)"
                ),
            );
            continue;
        };
        match signed::verify(envelope, anchor) {
            Ok(conf) => {
                report.pass(
                    Subject::Configuration {
                        position,
                        serial: Some(conf.serial()),
                    },
                    CheckKind::ConfigurationSignature,
                    format!(
                        "a configuration of {instance}, signed by a registry key of the anchor \
                         of {instance}, generated at {}",
                        conf.conf().generated_at(),
                        instance = anchor.instance()
                    ),
                );
                report.configurations.push(ConfigurationInfo {
                    instance: anchor.instance().to_string(),
                    serial: conf.serial(),
                    generated_at: conf.conf().generated_at(),
                });
                confs.push(conf);
            }
            Err(e) => failed(report, e.to_string()),
        }
    }
    confs
}

/// The instance a configuration envelope says it is of (unverified: only to pick the anchor).
fn claimed_instance(envelope: &[u8]) -> Option<String> {
    let signed = pb::SignedConfiguration::decode(envelope).ok()?;
    let conf = pb::GlobalConfiguration::decode(signed.configuration.as_slice()).ok()?;
    Some(conf.instance)
}

/// The verified checkpoint, if its signature and origin check out.
fn check_checkpoint(
    bundle: &pb::EvidenceBundle,
    server_id: &SecurityServerId,
    confs: &[VerifiedConf],
    options: &VerifyOptions,
    report: &mut Report,
) -> Option<Checkpoint> {
    let origin = server_id.to_string();
    let log_name = tlog::log_key_name(&origin);
    let mut log_keys: Vec<PublicKey> = Vec::new();
    for conf in confs {
        if let Some(owner) = conf.conf().member(server_id.owner()) {
            for k in &owner.signing_keys {
                if !log_keys.contains(&k.public_key) {
                    log_keys.push(k.public_key);
                }
            }
        }
    }
    let verifiers: Vec<NoteVerifier> = log_keys
        .iter()
        .filter_map(|k| NoteVerifier::new(log_name.clone(), *k).ok())
        .collect();

    let note = match tlog::note::parse(&bundle.checkpoint) {
        Ok(note) => note,
        Err(e) => {
            report.fail(
                Subject::Checkpoint,
                CheckKind::CheckpointSignature,
                format!("not a signed note: {e}"),
            );
            return None;
        }
    };
    if verifiers.is_empty() {
        report.fail(
            Subject::Checkpoint,
            CheckKind::CheckpointSignature,
            format!(
                "no verified configuration lists a signing key of {}, the server's owner",
                server_id.owner()
            ),
        );
        return None;
    }
    if let Err(e) = note.verify(&verifiers) {
        report.fail(
            Subject::Checkpoint,
            CheckKind::CheckpointSignature,
            format!("not validly signed by {}: {e}", server_id.owner()),
        );
        return None;
    }
    let cp = match Checkpoint::parse_body(note.text()) {
        Ok(cp) => cp,
        Err(e) => {
            report.fail(
                Subject::Checkpoint,
                CheckKind::CheckpointSignature,
                format!("signed, but not a checkpoint: {e}"),
            );
            return None;
        }
    };
    report.pass(
        Subject::Checkpoint,
        CheckKind::CheckpointSignature,
        format!(
            "size {}, root {}, signed by a key of {}",
            cp.size(),
            BASE64.encode(cp.root()),
            server_id.owner()
        ),
    );
    report.checkpoint = Some(CheckpointInfo {
        size: cp.size(),
        root: BASE64.encode(cp.root()),
    });
    if !report.check(
        Subject::Checkpoint,
        CheckKind::CheckpointOrigin,
        if cp.origin() == origin {
            Ok(format!("the log of {origin}"))
        } else {
            Err(format!("the log of {:?}, not of {origin}", cp.origin()))
        },
    ) {
        return None;
    }
    check_cosignatures(&cp, &note, server_id, confs, options, report);
    Some(cp)
}

fn check_cosignatures(
    cp: &Checkpoint,
    note: &Note,
    server_id: &SecurityServerId,
    confs: &[VerifiedConf],
    options: &VerifyOptions,
    report: &mut Report,
) {
    // Every other server of the configurations may witness, under its server id, with a key of
    // its owner member.
    let mut witnesses: HashMap<String, SecurityServerId> = HashMap::new();
    let mut seen: HashSet<(String, [u8; 32])> = HashSet::new();
    let mut verifiers = Vec::new();
    for conf in confs {
        for server in conf.conf().servers() {
            if &server.id == server_id {
                continue;
            }
            let Some(owner) = conf.conf().member(server.id.owner()) else {
                continue;
            };
            let name = tlog::log_key_name(&server.id.to_string());
            for k in &owner.signing_keys {
                if seen.insert((name.clone(), *k.public_key.as_bytes()))
                    && let Ok(v) = CosignatureVerifier::new(name.clone(), k.public_key)
                {
                    verifiers.push(v);
                }
            }
            witnesses.insert(name, server.id.clone());
        }
    }
    let cosigned = match tlog::verify_cosignatures(cp, note.signatures(), &verifiers) {
        Ok(c) => c,
        Err(e) => {
            report.fail(Subject::Checkpoint, CheckKind::Cosignatures, e.to_string());
            return;
        }
    };
    // One key can sign for every server its member owns, so witnesses count per owner member,
    // and the log's own member does not count.
    let mut owners: HashSet<&MemberId> = HashSet::new();
    for c in &cosigned {
        if let Some(id) = witnesses.get(&c.cosigner) {
            report.witnesses.push(WitnessInfo {
                server_id: id.to_string(),
                time: c.time,
            });
            if id.owner() != server_id.owner() {
                owners.insert(id.owner());
            }
        }
    }
    let list: Vec<String> = report
        .witnesses
        .iter()
        .map(|w| format!("{} at {}", w.server_id, w.time))
        .collect();
    let outcome = if owners.len() >= options.require_cosignatures {
        Ok(if list.is_empty() {
            "no cosignature (none required)".to_owned()
        } else {
            format!("cosigned by {}", list.join(", "))
        })
    } else {
        Err(format!(
            "{} independent witness(es) cosigned, {} required{}",
            owners.len(),
            options.require_cosignatures,
            if list.is_empty() {
                String::new()
            } else {
                format!(" ({})", list.join(", "))
            }
        ))
    };
    report.check(Subject::Checkpoint, CheckKind::Cosignatures, outcome);
}

fn check_record(
    er: &pb::EvidenceRecord,
    record: Option<&pb::LogRecord>,
    checkpoint: Option<&Checkpoint>,
    confs: &[VerifiedConf],
    requests: &HashMap<&str, Vec<(u64, [u8; 64])>>,
    report: &mut Report,
) {
    let subject = Subject::Record { index: er.index };

    // Inclusion: the exact record bytes are leaf `index` of the checkpointed tree.
    let inclusion = match checkpoint {
        None => Err("no verified checkpoint to prove inclusion against".to_owned()),
        Some(cp) => er
            .inclusion_proof
            .iter()
            .map(|h| Hash::try_from(h.as_slice()))
            .collect::<Result<Vec<Hash>, _>>()
            .map_err(|_| "a proof hash is not 32 bytes".to_owned())
            .and_then(|proof| {
                tlog::verify_inclusion(
                    &tlog::leaf_hash(&er.record),
                    er.index,
                    cp.size(),
                    &proof,
                    cp.root(),
                )
                .map(|()| format!("leaf {} of the tree of size {}", er.index, cp.size()))
                .map_err(|e| e.to_string())
            }),
    };
    report.check(subject.clone(), CheckKind::InclusionProof, inclusion);

    let Some(record) = record else {
        report.fail(
            subject,
            CheckKind::RecordDecode,
            "the record bytes are not a LogRecord",
        );
        return;
    };
    let kind = match pb::LogKind::try_from(record.kind) {
        Ok(k @ (pb::LogKind::Request | pb::LogKind::Response)) => k,
        Ok(pb::LogKind::Failure) => return check_failure(er, record, subject, report),
        _ => {
            report.fail(
                subject,
                CheckKind::RecordDecode,
                format!(
                    "record kind {} is not a request, a response or a failure",
                    record.kind
                ),
            );
            return;
        }
    };
    let kind_name = if kind == pb::LogKind::Request {
        "request"
    } else {
        "response"
    };
    let mut info = record_info(er, record, kind_name);

    check_signed_header(record, kind, confs, requests, &subject, &mut info, report);
    check_body(er, record, &subject, report);
    report.records.push(info);
}

/// A failure record: the client's server's own note, vouched for only by its place in the tree.
fn check_failure(
    er: &pb::EvidenceRecord,
    record: &pb::LogRecord,
    subject: Subject,
    report: &mut Report,
) {
    let client_side = record.side == pb::LogSide::Client as i32;
    let signs_nothing =
        record.signed_header.is_empty() && record.signature.is_empty() && record.key_id.is_empty();
    let bodiless = !record.body_stored && !er.has_body && er.body.is_empty();
    let outcome = if !client_side {
        Err("a failure record not logged by the client's side".to_owned())
    } else if !signs_nothing || !bodiless {
        Err("a failure record with a signed header or a body".to_owned())
    } else if record.error.is_empty() {
        Err("a failure record that names no error".to_owned())
    } else {
        Ok(format!(
            "the client got {} ({})",
            record.error,
            if record.sent {
                "after the request was sent: the provider's log may hold the exchange"
            } else {
                "before the request reached the provider's server"
            }
        ))
    };
    report.check(subject, CheckKind::FailureNote, outcome);
    report.records.push(RecordInfo {
        error: Some(record.error.clone()),
        sent: Some(record.sent),
        ..record_info(er, record, "failure")
    });
}

/// What the report says of a record before its header is looked at.
fn record_info(er: &pb::EvidenceRecord, record: &pb::LogRecord, kind: &str) -> RecordInfo {
    RecordInfo {
        index: er.index,
        kind: kind.into(),
        side: match pb::LogSide::try_from(record.side) {
            Ok(pb::LogSide::Client) => "client",
            Ok(pb::LogSide::Server) => "server",
            _ => "unspecified",
        }
        .into(),
        message_id: record.message_id.clone(),
        client: record.client.clone(),
        service: record.service.clone(),
        peer: record.peer.clone(),
        logged_at_ms: record.logged_at_ms,
        created_at: None,
        status: None,
        body_included: er.has_body,
        error: None,
        sent: None,
        signer: None,
        signer_instance: None,
    }
}

/// The signed header: its signature, its signer, and what the record and other records say
/// about it.
fn check_signed_header(
    record: &pb::LogRecord,
    kind: pb::LogKind,
    confs: &[VerifiedConf],
    requests: &HashMap<&str, Vec<(u64, [u8; 64])>>,
    subject: &Subject,
    info: &mut RecordInfo,
    report: &mut Report,
) {
    // The signature over the exact header bytes, before the header is decoded.
    let domain = if kind == pb::LogKind::Request {
        Domain::RequestHeader
    } else {
        Domain::ResponseHeader
    };
    let Some((key_id, public_key)) = find_key(confs, &record.key_id) else {
        // Whose it should be (the record's word, unsigned): to say which anchor may be missing.
        let claimed = if kind == pb::LogKind::Request {
            &record.client
        } else {
            &record.service
        };
        let instance = claimed.split('/').next().unwrap_or_default();
        let hint = if confs
            .iter()
            .any(|c| c.conf().instance().as_str() == instance)
        {
            String::new()
        } else {
            format!(
                "; no configuration of {instance}, whose member had to sign, verified (verify \
                 with {instance}'s anchor too)"
            )
        };
        report.fail(
            subject.clone(),
            CheckKind::HeaderSignature,
            format!(
                "key {:?} is not listed in any verified configuration of the bundle{hint}",
                record.key_id
            ),
        );
        return;
    };
    if public_key
        .verify(domain, &record.signed_header, &record.signature)
        .is_err()
    {
        report.fail(
            subject.clone(),
            CheckKind::HeaderSignature,
            format!("the signature does not verify under key {key_id}"),
        );
        return;
    }
    report.pass(
        subject.clone(),
        CheckKind::HeaderSignature,
        format!("verifies under key {key_id}"),
    );

    let header = match kind {
        pb::LogKind::Request => {
            decode_exact::<pb::RequestHeader>(&record.signed_header).map(Header::Request)
        }
        _ => decode_exact::<pb::ResponseHeader>(&record.signed_header).map(Header::Response),
    };
    let header = match header {
        Ok(h) => h,
        Err(e) => {
            report.fail(
                subject.clone(),
                CheckKind::RecordDecode,
                format!("the signed header does not decode: {e}"),
            );
            return;
        }
    };
    info.created_at = Some(header.created_at());
    if let Header::Response(h) = &header {
        info.status = Some(h.status);
    }

    info.signer = check_signer(&header, record, &key_id, confs, subject, report);
    info.signer_instance = info
        .signer
        .as_deref()
        .and_then(|s| s.split('/').next())
        .map(str::to_owned);
    report.check(
        subject.clone(),
        CheckKind::RecordMatchesHeader,
        record_matches_header(&header, record),
    );
    report.check(
        subject.clone(),
        CheckKind::BodyHash,
        if header.body_sha256() == record.body_sha256.as_slice() {
            Ok("the signed header carries the record's body hash".into())
        } else {
            Err("the signed header's body hash differs from the record's".into())
        },
    );
    if let Header::Response(h) = &header
        && let Some(candidates) = requests.get(record.message_id.as_str())
    {
        let outcome = match candidates
            .iter()
            .find(|(_, hash)| hash.as_slice() == h.request_hash.as_slice())
        {
            Some((index, _)) => Ok(format!("answers the request in record {index}")),
            None => Err(format!(
                "is not SHA-512 of the signed header of the request with this X-Road-Id \
                 (record(s) {})",
                candidates
                    .iter()
                    .map(|(i, _)| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        report.check(subject.clone(), CheckKind::RequestHash, outcome);
    }
}

fn check_body(
    er: &pb::EvidenceRecord,
    record: &pb::LogRecord,
    subject: &Subject,
    report: &mut Report,
) {
    if !er.has_body {
        if !er.body.is_empty() {
            report.fail(
                subject.clone(),
                CheckKind::Body,
                "body bytes are present but has_body is false",
            );
        }
        return;
    }
    let outcome = if !record.body_stored {
        Err("a body is included, but the record says none was stored".into())
    } else if Sha256::digest(&er.body).as_slice() == record.body_sha256.as_slice() {
        Ok(format!("{} bytes, SHA-256 as recorded", er.body.len()))
    } else {
        Err("the included body does not hash to the record's body SHA-256".into())
    };
    report.check(subject.clone(), CheckKind::Body, outcome);
}

/// The key a record names, from whichever verified configuration lists it. Which member it
/// vouches for is [`check_signer`]'s question, answered by the signer's own instance.
fn find_key(confs: &[VerifiedConf], key_id: &str) -> Option<(KeyId, PublicKey)> {
    let key_id = KeyId::parse(key_id).ok()?;
    confs.iter().find_map(|c| {
        c.conf()
            .signing_key(&key_id)
            .map(|(_, key)| (key_id.clone(), key.public_key))
    })
}

/// The key belongs to the member that had to sign (the client's for a request, the service
/// provider's for a response): a configuration of the bundle of that member's instance lists it
/// as the member's, valid when the header was made. Answers the signer.
fn check_signer(
    header: &Header,
    record: &pb::LogRecord,
    key_id: &KeyId,
    confs: &[VerifiedConf],
    subject: &Subject,
    report: &mut Report,
) -> Option<String> {
    let signer: Result<MemberId, String> = match header {
        Header::Request(h) => h
            .client
            .parse::<SubsystemId>()
            .map(|c| c.member().clone())
            .map_err(|e| format!("the header's client: {e}")),
        Header::Response(_) => record
            .service
            .parse::<ServiceId>()
            .map(|s| s.subsystem().member().clone())
            .map_err(|e| format!("the record's service: {e}")),
    };
    let created_at = header.created_at();
    let outcome = signer.as_ref().map_err(Clone::clone).and_then(|signer| {
        let instance = signer.instance();
        // Only the signer's instance's configurations say whose a key is.
        let theirs: Vec<&VerifiedConf> = confs
            .iter()
            .filter(|c| c.conf().instance().as_str() == instance)
            .collect();
        if theirs.is_empty() {
            return Err(format!(
                "{signer} had to sign, and no configuration of instance {instance} verified \
                 (is the anchor of {instance} among those given?)"
            ));
        }
        if let Some(c) = theirs
            .iter()
            .find(|c| c.conf().member_key_at(signer, key_id, created_at).is_some())
        {
            return Ok(format!(
                "key {key_id} of {signer} (instance {instance}), valid at {created_at} \
                 (configuration serial {} of {instance})",
                c.serial()
            ));
        }
        match theirs.iter().find_map(|c| c.conf().signing_key(key_id)) {
            Some((owner, _)) if owner != signer => Err(format!(
                "key {key_id} belongs to {owner}, but {signer} had to sign"
            )),
            _ => Err(format!(
                "no configuration of instance {instance} in the bundle lists key {key_id} of \
                 {signer} as valid at {created_at}"
            )),
        }
    });
    let passed = report.check(subject.clone(), CheckKind::SignerKey, outcome);
    signer.ok().filter(|_| passed).map(|s| s.to_string())
}

fn record_matches_header(header: &Header, record: &pb::LogRecord) -> Result<String, String> {
    let mut differ = Vec::new();
    let (message_id, signer_key_id) = match header {
        Header::Request(h) => {
            if h.client != record.client {
                differ.push("client");
            }
            if h.service != record.service {
                differ.push("service");
            }
            (&h.message_id, &h.signer_key_id)
        }
        Header::Response(h) => (&h.message_id, &h.signer_key_id),
    };
    if *message_id != record.message_id {
        differ.push("X-Road-Id");
    }
    if *signer_key_id != record.key_id {
        differ.push("signing key id");
    }
    if differ.is_empty() {
        Ok(format!("X-Road-Id {}", record.message_id))
    } else {
        Err(format!(
            "the record's {} differ(s) from the signed header's",
            differ.join(", ")
        ))
    }
}

// One lives briefly per record checked: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Header {
    Request(pb::RequestHeader),
    Response(pb::ResponseHeader),
}

impl Header {
    fn created_at(&self) -> i64 {
        match self {
            Header::Request(h) => h.created_at,
            Header::Response(h) => h.created_at,
        }
    }
    fn body_sha256(&self) -> &[u8] {
        match self {
            Header::Request(h) => &h.body_sha256,
            Header::Response(h) => &h.body_sha256,
        }
    }
}

/// Decodes and refuses bytes that carry more than the message (unknown fields, trailing data).
fn decode_exact<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, String> {
    let m = M::decode(bytes).map_err(|e| e.to_string())?;
    if m.encoded_len() != bytes.len() {
        return Err("unknown fields or trailing data".into());
    }
    Ok(m)
}
