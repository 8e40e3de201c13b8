#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The short fuzzing pass CI runs: every target over every file of its corpus
//! (`corpus/<target>/`), and over about 3,000 deterministic mutations of the files. The long
//! passes are `scripts/fuzz`'s (docs/fuzzing.md); files they find worth keeping are added to
//! the corpus, so this pass runs them from then on.

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// A small deterministic generator (xorshift64), so that every run tries the same mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

/// `seed` with a few bytes flipped, inserted, removed, or a slice duplicated or cut off.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, (rng.next() & 0xff) as u8),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => {
                let end = (at + rng.below(16)).min(out.len());
                let slice = out[at..end].to_vec();
                out.splice(at..at, slice);
            }
            4 => out.truncate(at),
            _ => {
                let special = [b'\n', b'/', b'.', b'%', b':', b' ', 0, 0xff];
                out.insert(at, special[rng.below(special.len())]);
            }
        }
    }
    out
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    for (target, run) in fuzz_targets::TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "{target} has a corpus");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // About 3,000 mutations a target, however large its corpus grows.
        let per_file = (3000 / files.len()).clamp(10, 300);
        for (path, bytes) in &files {
            let caught = std::panic::catch_unwind(|| run(bytes));
            assert!(caught.is_ok(), "{target} panicked on {}", path.display());
            for _ in 0..per_file {
                let mutated = mutate(bytes, &mut rng);
                let caught = std::panic::catch_unwind(|| run(&mutated));
                assert!(
                    caught.is_ok(),
                    "{target} panicked on a mutation of {}: {mutated:02x?}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_target_has_a_libfuzzer_entry() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (target, _) in fuzz_targets::TARGETS {
        let file = dir.join(format!("{target}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("fuzz_targets::{target}(")),
            "{} calls its target",
            file.display()
        );
    }
}

/// Writes the seeds that need keys or encoders to make (`cargo test -p fuzz-targets --
/// --ignored`); the hand-written ones are plain files beside them.
#[test]
#[ignore = "writes the corpus; run by hand when the formats change"]
fn write_generated_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let anchor = fuzz_targets::fuzz_anchor();
    write(
        "anchor",
        "fuzz-anchor.toml",
        anchor.to_toml().unwrap().as_bytes(),
    );
    let conf = globalconf::testing::ConfBuilder::new("JP", 1_790_000_000)
        .serial(7)
        .member("JP/GOV/digital-agency")
        .subsystem("JP/GOV/digital-agency/portal")
        .proto();
    let envelope = globalconf::signed::sign(&conf, &fuzz_targets::fuzz_signing_key());
    write(
        "configuration_envelope",
        "signed-by-the-fuzz-key.bin",
        &envelope,
    );
    // With the instance CAs listed (a CA rollover under way: two certificates).
    let mut with_cas = conf.clone();
    for _ in 0..2 {
        let ca = certs::CertificateAuthority::generate(
            "JP",
            std::time::Duration::from_secs(86_400),
            &certs::SystemClock,
        )
        .unwrap();
        with_cas.ca_certificates.push(ca.certificate_der().to_vec());
    }
    write(
        "configuration_envelope",
        "with-instance-cas.bin",
        &globalconf::signed::sign(&with_cas, &fuzz_targets::fuzz_signing_key()),
    );
    let next = certs::SigningKey::from_seed([7; 32]);
    let history = [globalconf::signed::announce(
        "JP",
        1,
        &[next.public_key()],
        &fuzz_targets::fuzz_signing_key(),
    )];
    write(
        "configuration_envelope",
        "signed-after-a-rollover.bin",
        &globalconf::signed::sign_with_history(&conf, &next, &history),
    );
    write(
        "renewal_request",
        "signed-by-the-new-key.bin",
        &fuzz_targets::renewal_request_seed(),
    );
    write(
        "key_request",
        "signed-by-the-new-key.bin",
        &fuzz_targets::key_request_seed(),
    );
    write(
        "signed_request_header",
        "accepted.bin",
        &fuzz_targets::request_header_seed(),
    );
    write(
        "signed_response_header",
        "accepted.bin",
        &fuzz_targets::response_header_seed(),
    );

    // A real write-ahead segment (its preallocated zeros cut off) and a real archive file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let log = msglog::MessageLog::open(&path, msglog::LogOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..3u8 {
        let body = exchange::HashedBody::new(bytes::Bytes::from(vec![i; 40]));
        let record = proto::v1::LogRecord {
            kind: proto::v1::LogKind::Request as i32,
            message_id: format!("seed-{i}"),
            body_sha256: body.sha256().to_vec(),
            body_stored: true,
            logged_at_ms: 1_000 + i64::from(i),
            ..Default::default()
        };
        let entry = msglog::Entry {
            record,
            body: Some(body),
            data_subject: Some("131016000001".into()),
        };
        runtime.block_on(log.append(entry)).unwrap();
    }
    let archives = dir.path().join("archive");
    log.archive_before(10_000, &archives, |_, _| {}).unwrap();
    drop(log);
    let segment = std::fs::read_dir(dir.path().join("log.redb-wal"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .find(|bytes| bytes.iter().any(|&b| b != 0))
        .unwrap();
    let end = segment.iter().rposition(|&b| b != 0).unwrap() + 1;
    write("wal_segment", "three-entries.bin", &segment[..end]);
    let archive = std::fs::read_dir(&archives)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none_or(|e| e != "tmp"))
        .unwrap();
    write(
        "archive_file",
        "three-entries.bin",
        &std::fs::read(archive).unwrap(),
    );
}

#[test]
fn the_request_seeds_get_past_their_signature_checks() {
    let instance = "JP".parse().unwrap();
    let renewal = fuzz_targets::renewal_request_seed();
    let verified =
        central_registry::requests::verify_renewal(&renewal, &instance, 1_790_000_000).unwrap();
    assert_eq!(verified.server_id.to_string(), "JP/GOV/digital-agency/ss1");
    let key = fuzz_targets::key_request_seed();
    let parsed = central_registry::requests::parse_key_request(&key, 1_790_000_000).unwrap();
    assert_eq!(parsed.member.to_string(), "JP/GOV/digital-agency");
    // One byte more and they are refused, not misread.
    for mut bytes in [renewal, key] {
        bytes.push(0);
        assert!(
            central_registry::requests::verify_renewal(&bytes, &instance, 1_790_000_000).is_err()
        );
        assert!(central_registry::requests::parse_key_request(&bytes, 1_790_000_000).is_err());
    }
}
