#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Retention: records move to hash-linked archive files and stay readable and provable.

mod common;

use common::{options, plain_entry};
use msglog::{LogError, LogOptions, MessageLog, verify_archive_chain};

/// plain_entry(i) is logged at this + i seconds.
const T0: i64 = 1_800_000_000_000;

async fn log_with(path: &std::path::Path, n: u64, per_file: u64) -> MessageLog {
    let log = MessageLog::open(
        path,
        LogOptions {
            archive_file_records: per_file,
            ..options()
        },
    )
    .unwrap();
    for i in 0..n {
        let body = format!("body {i}");
        let subject = (i % 2 == 0).then_some("JP-SUBJECT-1");
        log.append(plain_entry(i, Some(body.as_bytes()), subject))
            .await
            .unwrap();
    }
    log
}

#[tokio::test]
async fn archived_records_stay_readable_and_provable() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let log = log_with(&dir.path().join("messagelog.redb"), 40, 8).await;
    let before: Vec<_> = (0..40).map(|i| log.record(i).unwrap().unwrap()).collect();
    let root = log.root(40).unwrap();

    let mut calls = Vec::new();
    let report = log
        .archive_before(T0 + 20_000, &archive_dir, |done, total| {
            calls.push((done, total))
        })
        .unwrap();
    assert_eq!(report.records, 20);
    let ranges: Vec<_> = report.files.iter().map(|f| (f.first, f.last)).collect();
    assert_eq!(ranges, vec![(0, 7), (8, 15), (16, 19)]);
    assert_eq!(calls.last(), Some(&(20, 20)));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        report.files[0]
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("archive-0-7")
    );

    // Nothing is lost: every record reads back the same, archived or not; size and root stay.
    assert_eq!(log.size().unwrap(), 40);
    assert_eq!(log.root(40).unwrap(), root);
    for (i, stored) in before.iter().enumerate() {
        assert_eq!(
            &log.record(i as u64).unwrap().unwrap(),
            stored,
            "record {i}"
        );
    }
    // Proofs for archived records still verify; the indexes still find them.
    for i in [0u64, 7, 19] {
        let proof = log.inclusion_proof(i, 40).unwrap();
        tlog::verify_inclusion(
            &tlog::leaf_hash(&before[i as usize].record_bytes),
            i,
            40,
            &proof,
            &root,
        )
        .unwrap();
    }
    assert_eq!(log.find_by_message_id("msg-3").unwrap(), vec![3]);
    assert_eq!(log.find_by_subject("JP-SUBJECT-1").unwrap().len(), 20);

    // The chain verifies; a second run continues it.
    let chain = verify_archive_chain(&archive_dir, |_, _| {}).unwrap();
    assert_eq!(chain.len(), 3);
    let second = log
        .archive_before(T0 + 30_000, &archive_dir, |_, _| {})
        .unwrap();
    assert_eq!(
        second
            .files
            .iter()
            .map(|f| (f.first, f.last))
            .collect::<Vec<_>>(),
        vec![(20, 27), (28, 29)]
    );
    let verification = log.verify_archives(&archive_dir, |_, _| {}).unwrap();
    assert_eq!(verification.files.len(), 5);
    assert_eq!(verification.records, 30);
    assert!(verification.unregistered.is_empty());
    // Nothing older than the cutoff is left: another run does nothing.
    assert_eq!(
        log.archive_before(T0 + 30_000, &archive_dir, |_, _| {})
            .unwrap()
            .records,
        0
    );

    // Reopened, archived records still read back.
    let path = log.path().to_owned();
    drop(log);
    let log = MessageLog::open(&path, options()).unwrap();
    assert_eq!(log.record(25).unwrap().unwrap(), before[25]);
}

#[tokio::test]
async fn one_altered_byte_in_an_archive_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let path = dir.path().join("messagelog.redb");
    let log = log_with(&path, 30, 10).await;
    let report = log
        .archive_before(T0 + 25_000, &archive_dir, |_, _| {})
        .unwrap();
    assert_eq!(report.files.len(), 3);
    drop(log);

    let middle = &report.files[1].path;
    let original = std::fs::read(middle).unwrap();
    for offset in [0, 20, 60, original.len() / 2, original.len() - 1] {
        let mut altered = original.clone();
        altered[offset] ^= 0x01;
        std::fs::write(middle, &altered).unwrap();

        let log = MessageLog::open(&path, options()).unwrap();
        match log.record(12) {
            Err(LogError::Archive { .. }) => {}
            other => panic!("byte {offset}: reading an altered archive gave {other:?}"),
        }
        assert!(
            log.verify_archives(&archive_dir, |_, _| {}).is_err(),
            "byte {offset}"
        );
        // The chain alone (no database) catches it too: the next file's link breaks, or the
        // file no longer parses.
        assert!(
            verify_archive_chain(&archive_dir, |_, _| {}).is_err(),
            "byte {offset}"
        );
        drop(log);
    }
    std::fs::write(middle, &original).unwrap();
    let log = MessageLog::open(&path, options()).unwrap();
    log.verify_archives(&archive_dir, |_, _| {}).unwrap();
    assert!(log.record(12).unwrap().is_some());

    // A missing file is detected too.
    std::fs::remove_file(&report.files[2].path).unwrap();
    assert!(log.verify_archives(&archive_dir, |_, _| {}).is_err());
    assert!(matches!(log.record(21), Err(LogError::Io { .. })));
}

#[tokio::test]
async fn a_file_left_by_an_interrupted_run_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().join("archive");
    let log = log_with(&dir.path().join("messagelog.redb"), 20, 100).await;
    log.archive_before(T0 + 5_000, &archive_dir, |_, _| {})
        .unwrap();
    // A crash after writing archive-5-9 but before the database dropped records 5..=9.
    let leftover = archive_dir.join("archive-5-9.xlog");
    std::fs::write(&leftover, b"partial garbage").unwrap();
    let verification = log.verify_archives(&archive_dir, |_, _| {});
    assert!(verification.is_err(), "garbage does not parse");
    std::fs::write(&leftover, b"").unwrap();

    let report = log
        .archive_before(T0 + 12_000, &archive_dir, |_, _| {})
        .unwrap();
    assert_eq!(report.files.len(), 1);
    assert_eq!((report.files[0].first, report.files[0].last), (5, 11));
    assert!(!leftover.exists());
    let verification = log.verify_archives(&archive_dir, |_, _| {}).unwrap();
    assert_eq!(verification.records, 12);
}

/// The write-ahead segments of the log at `path`, by their first index.
fn segments(path: &std::path::Path) -> Vec<u64> {
    let mut dir = path.as_os_str().to_owned();
    dir.push("-wal");
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(".wal")?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test]
async fn bodies_stay_in_the_write_ahead_segments_until_archived() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    // Each open begins a new segment: segments 0, 10 and 20.
    drop(log_with(&path, 10, 100).await);
    let log = MessageLog::open(&path, options()).unwrap();
    for i in 10..20 {
        log.append(plain_entry(i, Some(format!("body {i}").as_bytes()), None))
            .await
            .unwrap();
    }
    drop(log);
    let log = MessageLog::open(&path, options()).unwrap();
    assert_eq!(segments(&path), [0, 10, 20]);
    // Bodies applied before the last open are read from their segments.
    for i in [0, 9, 10, 19] {
        let body = log.record(i).unwrap().unwrap().body.unwrap();
        assert_eq!(body, format!("body {i}").as_bytes());
    }

    // Archiving records 0 to 14 frees segment 0 only: segment 10 still holds 15 to 19.
    let archive_dir = dir.path().join("archive");
    log.archive_before(T0 + 15_000, &archive_dir, |_, _| {})
        .unwrap();
    assert_eq!(segments(&path), [10, 20]);
    log.archive_before(T0 + 20_000, &archive_dir, |_, _| {})
        .unwrap();
    assert_eq!(segments(&path), [20], "the newest segment always stays");
    for i in 0..20 {
        let body = log.record(i).unwrap().unwrap().body.unwrap();
        assert_eq!(body, format!("body {i}").as_bytes(), "record {i}");
    }
}
