#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The message log (DESIGN §6): group-committed appends, and offline evidence verification.
//!
//! `cargo bench -p bench --bench msglog` prints:
//! 1. appends/s for 64 concurrent appenders of records with 1 KiB bodies (encrypted at rest,
//!    half of them indexed by data subject) for a few seconds, with the commit count and the
//!    latency percentiles of one append (durable = fsync'd group commit); once with
//!    time-ordered X-Road-Ids (as the client proxy makes them) and once with random ones (as a
//!    client system may send them);
//! 2. the time to build a log of 1,000,000 records (large batches), to export evidence for one
//!    record of it, and to verify that bundle (min / median / max).
//!
//! The log lives in a temporary directory on the disk that holds `$TMPDIR` (default /tmp).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certs::SigningKey;
use exchange::HashedBody;
use globalconf::Anchor;
use globalconf::testing::ConfBuilder;
use msglog::{Entry, LogOptions, MessageLog, tlog};
use prost::Message as _;
use proto::v1 as pb;
use sha2::{Digest as _, Sha256};

const APPENDERS: usize = 64;
const APPEND_SECONDS: u64 = 5;
const BIG_LOG: u64 = 1_000_000;
const BUILD_BATCH: usize = 20_000;
const VERIFY_RUNS: usize = 200;

const CLIENT: &str = "JP/MUN/131016/portal";
const SERVICE: &str = "JP/GOV/8000012/records/residents/v1";
const CLIENT_SERVER: &str = "JP/MUN/131016/ss1";
const PROVIDER_SERVER: &str = "JP/GOV/8000012/ss1";
const NOW: i64 = 1_800_000_000;

fn options() -> LogOptions {
    LogOptions {
        body_key: Some([0x42; 32]),
        subject_key: [0x17; 32],
        ..LogOptions::default()
    }
}

/// A record shaped like a real one: a ~300-byte signed request header and its signature.
fn template(body: &[u8]) -> pb::LogRecord {
    pb::LogRecord {
        kind: pb::LogKind::Request as i32,
        side: pb::LogSide::Client as i32,
        message_id: String::new(),
        client: CLIENT.into(),
        service: SERVICE.into(),
        signed_header: vec![0x5a; 300],
        signature: vec![0xa5; 64],
        key_id: "0123456789abcdef0123456789abcdef".into(),
        body_sha256: Sha256::digest(body).to_vec(),
        body_stored: true,
        logged_at_ms: NOW * 1000,
        peer: PROVIDER_SERVER.into(),
        error: String::new(),
        sent: false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// How the appended records' X-Road-Ids are made: their order decides how many pages of the
/// message-id index one commit rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ids {
    /// As the client proxy generates them (UUID v7): increasing, appended at the index's end.
    TimeOrdered,
    /// As a client information system may send them (e.g. UUID v4): scattered over the index.
    Random,
}

fn message_id(ids: Ids, seq: u64, appender: usize, n: u64) -> String {
    match ids {
        Ids::TimeOrdered => format!("{seq:016x}-{appender:02}"),
        // A cheap, well-mixed 64-bit value (splitmix64) stands in for random bits.
        Ids::Random => {
            let mut z = (appender as u64) << 40 ^ n;
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("{:016x}-{appender:02}", z ^ (z >> 31))
        }
    }
}

fn appends(rt: &tokio::runtime::Runtime, ids: Ids) {
    let dir = tempfile::tempdir().unwrap();
    let log = MessageLog::open(&dir.path().join("messagelog.redb"), options()).unwrap();
    let body = HashedBody::new(Bytes::from(vec![0x61u8; 1024]));
    let record = template(body.bytes());
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let start = Instant::now();
    let latencies: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for a in 0..APPENDERS {
            let (log, body, record, stop, seq) = (
                log.clone(),
                body.clone(),
                record.clone(),
                Arc::clone(&stop),
                Arc::clone(&seq),
            );
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut record = record.clone();
                    let next = seq.fetch_add(1, Ordering::Relaxed);
                    record.message_id = message_id(ids, next, a, n);
                    let entry = Entry {
                        record,
                        body: Some(body.clone()),
                        data_subject: n.is_multiple_of(2).then(|| format!("JP-{:012}", n % 1000)),
                    };
                    let t = Instant::now();
                    log.append(entry).await.unwrap();
                    latencies.push(t.elapsed());
                    n += 1;
                }
                latencies
            }));
        }
        tokio::time::sleep(Duration::from_secs(APPEND_SECONDS)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = start.elapsed();
    // Acknowledged appends are durable in the write-ahead log; the database tables follow. A
    // read waits for them, so this is how far behind the indexer was when the load stopped.
    let caught_up = Instant::now();
    log.size().unwrap();
    let catch_up = caught_up.elapsed();
    let mut latencies = latencies;
    latencies.sort();
    let stats = log.stats();
    let n = latencies.len();
    println!(
        "appends ({ids:?} X-Road-Ids): {APPENDERS} appenders, 1 KiB bodies (encrypted), {:.1} s: \
         {n} appends, {:.0} appends/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "         {} group commits ({:.1} records each); latency p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        stats.batches_committed,
        stats.entries_committed as f64 / stats.batches_committed.max(1) as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[n - 1],
    );
    println!(
        "         {} database transactions ({:.1} ms each); the tables caught up {:.1?} after \
         the last append: {:.0} records/s into the tables, sustained",
        stats.index_commits,
        stats.index_time.as_secs_f64() * 1e3 / stats.index_commits.max(1) as f64,
        catch_up,
        n as f64 / (elapsed + catch_up).as_secs_f64()
    );
    // The segments hold the bodies (and the records once more) until they are archived.
    let size = std::fs::metadata(log.path()).unwrap().len();
    let mut wal_dir = log.path().as_os_str().to_owned();
    wal_dir.push("-wal");
    let wal_size: u64 = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "         database file {:.1} MiB, write-ahead segments {:.1} MiB (zeros ahead of the \
         last frame included); {:.0} bytes per record in all",
        size as f64 / 1_048_576.0,
        wal_size as f64 / 1_048_576.0,
        (size + wal_size) as f64 / n as f64
    );
}

fn big_log_evidence(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let log = MessageLog::open(&dir.path().join("messagelog.redb"), options()).unwrap();
    let registry = SigningKey::from_seed([1; 32]);
    let client_key = SigningKey::from_seed([2; 32]);
    let provider_key = SigningKey::from_seed([3; 32]);

    // 1,000,000 records in large batches (no bodies: the verified record's does not matter).
    let start = Instant::now();
    let empty = template(b"");
    rt.block_on(async {
        let mut next = 0u64;
        while next < BIG_LOG - 1 {
            let n = (BIG_LOG - 1 - next).min(BUILD_BATCH as u64);
            let entries = (next..next + n)
                .map(|i| {
                    let mut record = empty.clone();
                    record.message_id = format!("filler-{i}");
                    record.body_stored = false;
                    Entry {
                        record,
                        body: None,
                        data_subject: None,
                    }
                })
                .collect();
            log.append_batch(entries).await.unwrap();
            next += n;
        }
    });
    let build = start.elapsed();
    // Until the tables hold them all (a read waits for the indexer).
    let filler = log.size().unwrap();
    let indexed = start.elapsed();
    assert_eq!(filler, BIG_LOG - 1);

    // The last record is a real signed request.
    let body = vec![0x62u8; 1024];
    let header = pb::RequestHeader {
        message_id: "the-one".into(),
        client: CLIENT.into(),
        service: SERVICE.into(),
        method: "GET".into(),
        path: "/residents/1".into(),
        created_at: NOW,
        body_sha256: Sha256::digest(&body).to_vec(),
        signer_key_id: client_key.key_id().to_string(),
        target_server: PROVIDER_SERVER.into(),
        ..Default::default()
    }
    .encode_to_vec();
    let signature = client_key
        .sign(certs::Domain::RequestHeader, &header)
        .to_vec();
    let index = rt
        .block_on(log.append(Entry {
            record: pb::LogRecord {
                message_id: "the-one".into(),
                signed_header: header,
                signature,
                key_id: client_key.key_id().to_string(),
                ..template(&body)
            },
            body: Some(HashedBody::new(Bytes::from(body))),
            data_subject: Some("JP-000000000001".into()),
        }))
        .unwrap();
    assert_eq!(index, BIG_LOG - 1);
    println!(
        "big log: {BIG_LOG} records durable in {:.1} s and in the tables after {:.1} s ({:.0} \
         records/s in batches of {BUILD_BATCH}), file {:.0} MiB",
        build.as_secs_f64(),
        indexed.as_secs_f64(),
        BIG_LOG as f64 / indexed.as_secs_f64(),
        std::fs::metadata(log.path()).unwrap().len() as f64 / 1_048_576.0
    );

    // The configuration, a checkpoint signed by the owner, cosigned by the other server.
    let conf = configuration(&client_key, &provider_key);
    let envelope = globalconf::signed::sign(&conf, &registry);
    log.store_configuration(conf.serial, conf.generated_at, &envelope)
        .unwrap();
    let size = log.size().unwrap();
    let cp = tlog::Checkpoint::new(CLIENT_SERVER, size, log.root(size).unwrap()).unwrap();
    let signer = tlog::NoteSigner::new(tlog::log_key_name(CLIENT_SERVER), client_key).unwrap();
    let mut note = tlog::sign_checkpoint(&cp, &signer);
    let witness =
        tlog::CosignatureSigner::new(tlog::log_key_name(PROVIDER_SERVER), provider_key).unwrap();
    note.push_signature(tlog::cosign(&cp, &witness, NOW as u64).unwrap())
        .unwrap();
    log.store_checkpoint(size, &note.render()).unwrap();

    let server = CLIENT_SERVER.parse().unwrap();
    let clock = certs::ManualClock::at_unix(NOW + 60);
    let start = Instant::now();
    let bundle = msglog::export(&log, &server, &[index], true, &clock, |_, _| {}).unwrap();
    let export = start.elapsed();
    let bytes = bundle.encode_to_vec();

    let anchor = anchor(&registry);
    let mut samples = Vec::with_capacity(VERIFY_RUNS);
    for _ in 0..VERIFY_RUNS {
        let start = Instant::now();
        let report = msglog::verify(std::hint::black_box(&bytes), &anchor).unwrap();
        samples.push(start.elapsed());
        assert!(report.passed());
    }
    samples.sort();
    println!(
        "evidence: export of 1 record {:.2?}; bundle {} bytes ({} proof hashes)",
        export,
        bytes.len(),
        bundle.records[0].inclusion_proof.len()
    );
    println!(
        "          verify (offline): min {:.2?}  median {:.2?}  max {:.2?}  ({VERIFY_RUNS} runs)",
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
}

fn configuration(client: &SigningKey, provider: &SigningKey) -> pb::GlobalConfiguration {
    const PROVIDER: &str = "JP/GOV/8000012/records";
    ConfBuilder::new("JP", NOW - 3600)
        .expires_at(NOW + 7 * 86_400)
        .subsystem(CLIENT)
        .key("JP/MUN/131016", client, 1_700_000_000, 0)
        .subsystem(PROVIDER)
        .key("JP/GOV/8000012", provider, 1_700_000_000, 0)
        .server_at(CLIENT_SERVER, &["127.0.0.1:5500"], [1; 32], &[CLIENT])
        .server_at(PROVIDER_SERVER, &["127.0.0.1:5500"], [2; 32], &[PROVIDER])
        .proto()
}

fn anchor(registry: &SigningKey) -> Anchor {
    let ca = certs::CertificateAuthority::generate(
        "JP",
        Duration::from_secs(86_400),
        &certs::ManualClock::at_unix(NOW),
    )
    .unwrap();
    Anchor::new(
        "JP".parse().unwrap(),
        vec!["https://127.0.0.1:41001".into()],
        ca.certificate_pem(),
        vec![registry.public_key()],
    )
    .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    appends(&rt, Ids::TimeOrdered);
    appends(&rt, Ids::Random);
    big_log_evidence(&rt);
}
