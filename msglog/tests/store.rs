#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The log's storage: durability, group commit, the Merkle tree, bodies at rest, the indexes,
//! checkpoints, witness state and the configuration history.
//! One file, because the cases share the fixture in `common` and read as one tour of the store.

mod common;

use std::sync::Arc;

use common::{file_contains, open, options, plain_entry};
use msglog::{LogError, LogOptions, MessageLog};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use tlog::{MemoryTree, NodeSource as _};

const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
const NODES: TableDefinition<(u8, u64), &[u8; 32]> = TableDefinition::new("merkle_nodes");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");

async fn append_n(log: &MessageLog, n: u64) -> Vec<Vec<u8>> {
    let mut leaves = Vec::new();
    for i in 0..n {
        let body = format!("body number {i}");
        let idx = log
            .append(plain_entry(i, Some(body.as_bytes()), None))
            .await
            .unwrap();
        assert_eq!(idx, i);
        leaves.push(log.record(i).unwrap().unwrap().record_bytes);
    }
    leaves
}

#[tokio::test]
async fn appended_records_survive_reopening_with_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let log = open(&path);
    append_n(&log, 37).await;
    let root = log.root(37).unwrap();
    let before: Vec<_> = (0..37).map(|i| log.record(i).unwrap().unwrap()).collect();
    drop(log);

    let log = open(&path);
    assert_eq!(log.size().unwrap(), 37);
    assert_eq!(log.root(37).unwrap(), root);
    for (i, stored) in before.iter().enumerate() {
        assert_eq!(&log.record(i as u64).unwrap().unwrap(), stored);
    }
    // Appends continue at the next index, on the same tree.
    assert_eq!(log.append(plain_entry(37, None, None)).await.unwrap(), 37);
    let mut tree = MemoryTree::new();
    for stored in &before {
        tree.append(&stored.record_bytes);
    }
    tree.append(&log.record(37).unwrap().unwrap().record_bytes);
    assert_eq!(log.root(38).unwrap(), tree.root());
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused_while_the_first_is_alive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let log = open(&path);
    let clone = log.clone();
    assert!(matches!(
        MessageLog::open(&path, options()),
        Err(LogError::InUse)
    ));
    drop(log);
    // A clone keeps it open.
    assert!(matches!(
        MessageLog::open(&path, options()),
        Err(LogError::InUse)
    ));
    drop(clone);
    open(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("messagelog.redb"));
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let log = log.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let entry = plain_entry(i, Some(&[i as u8; 100]), None);
            barrier.wait().await;
            log.append(entry).await.unwrap()
        }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        indexes.push(t.await.unwrap());
    }
    indexes.sort_unstable();
    assert_eq!(indexes, (0..200).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!(stats.entries_committed, 200);
    assert!(
        stats.batches_committed <= 40,
        "200 concurrent appends took {} commits",
        stats.batches_committed
    );
    assert_eq!(log.size().unwrap(), 200);
}

#[tokio::test]
async fn a_batch_is_appended_at_consecutive_indexes_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("messagelog.redb"));
    log.append(plain_entry(0, None, None)).await.unwrap();
    let entries = (1..=50).map(|i| plain_entry(i, None, None)).collect();
    assert_eq!(log.append_batch(entries).await.unwrap(), 1..51);
    assert_eq!(log.stats().batches_committed, 2);
    assert_eq!(
        log.record(50)
            .unwrap()
            .unwrap()
            .decode()
            .unwrap()
            .message_id,
        "msg-50"
    );
}

#[tokio::test]
async fn roots_and_proofs_equal_those_of_an_in_memory_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let log = open(&path);
    let leaves = append_n(&log, 70).await;
    let mut tree = MemoryTree::new();
    for size in 1..=70u64 {
        tree.append(&leaves[size as usize - 1]);
        assert_eq!(log.root(size).unwrap(), tree.root(), "root at {size}");
        for index in [0, size / 3, size / 2, size - 1] {
            assert_eq!(
                log.inclusion_proof(index, size).unwrap(),
                tlog::inclusion_proof(&tree, index, size).unwrap(),
                "inclusion of {index} in {size}"
            );
        }
        for old in [1, size / 2, size - 1, size] {
            assert_eq!(
                log.consistency_proof(old, size).unwrap(),
                tlog::consistency_proof(&tree, old, size).unwrap(),
                "consistency {old} -> {size}"
            );
        }
    }
    assert_eq!(log.root(0).unwrap(), tlog::empty_root());
    assert_eq!(tree.node(0, 69).unwrap(), tlog::leaf_hash(&leaves[69]));
    assert!(matches!(log.root(71), Err(LogError::OutOfRange { .. })));
    assert!(matches!(
        log.inclusion_proof(70, 70),
        Err(LogError::OutOfRange { .. })
    ));
    drop(log);

    // The table holds the leaves and the nodes of every fourth level only: 70 leaves and the
    // 4 complete subtrees of 16 (the other levels are hashed from those when asked for).
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let nodes = txn.open_table(NODES).unwrap();
        let levels: Vec<u8> = nodes
            .iter()
            .unwrap()
            .map(|row| row.unwrap().0.value().0)
            .collect();
        assert_eq!(levels.iter().filter(|&&l| l == 0).count(), 70);
        assert_eq!(levels.iter().filter(|&&l| l == 4).count(), 4);
        assert_eq!(levels.len(), 74);
    }

    // Reopened, the log goes on from the stored nodes: 60 more records make 130, past a
    // subtree of 128 (level 7, hashed from level 4).
    let log = open(&path);
    for i in 70..130u64 {
        log.append(plain_entry(i, Some(b"more"), None))
            .await
            .unwrap();
        tree.append(&log.record(i).unwrap().unwrap().record_bytes);
    }
    assert_eq!(log.root(130).unwrap(), tree.root());
    for (index, size) in [(0, 130), (127, 128), (129, 130), (64, 100)] {
        assert_eq!(
            log.inclusion_proof(index, size).unwrap(),
            tlog::inclusion_proof(&tree, index, size).unwrap(),
            "inclusion of {index} in {size}"
        );
    }
    for (old, size) in [(70, 130), (128, 130), (1, 129)] {
        assert_eq!(
            log.consistency_proof(old, size).unwrap(),
            tlog::consistency_proof(&tree, old, size).unwrap(),
            "consistency {old} -> {size}"
        );
    }
}

#[tokio::test]
async fn bodies_are_encrypted_at_rest_and_decrypt_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let plaintext = b"PLAINTEXT-BODY resident record: Taro Yamada, 1-1 Chiyoda";
    let log = open(&path);
    log.append(plain_entry(0, Some(plaintext), None))
        .await
        .unwrap();
    assert_eq!(log.record(0).unwrap().unwrap().body.unwrap(), plaintext);
    drop(log);
    assert!(!file_contains(&path, plaintext));
    assert!(!wal_contains(&path, plaintext));
    assert_eq!(
        open(&path).record(0).unwrap().unwrap().body.unwrap(),
        plaintext
    );

    // The same scan finds a body stored without a key: the scan does see stored bodies.
    let plain_path = dir.path().join("plain.redb");
    let plain = MessageLog::open(
        &plain_path,
        LogOptions {
            body_key: None,
            ..options()
        },
    )
    .unwrap();
    plain
        .append(plain_entry(0, Some(plaintext), None))
        .await
        .unwrap();
    drop(plain);
    assert!(wal_contains(&plain_path, plaintext));
    // Written to the disk once: the database holds where in the segment the body lies.
    assert!(!file_contains(&plain_path, plaintext));
}

/// Whether any write-ahead segment of the log at `path` holds `needle`.
fn wal_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    let mut dir = path.as_os_str().to_owned();
    dir.push("-wal");
    let segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!segments.is_empty(), "the log keeps its current segment");
    segments.iter().any(|p| file_contains(p, needle))
}

/// The state a crash leaves: the database as it was before some appends (their index
/// transaction never ran), and the write-ahead segments that acknowledged them.
#[tokio::test]
async fn records_only_in_the_write_ahead_log_are_applied_when_the_log_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let wal = dir.path().join("messagelog.redb-wal");
    let log = open(&path);
    append_n(&log, 5).await;
    // Reads apply everything acknowledged, so the database now holds 5 records.
    assert_eq!(log.size().unwrap(), 5);
    let before_crash = std::fs::read(&path).unwrap();
    let mut expected = Vec::new();
    for i in 5..12 {
        let body = format!("acknowledged body {i}");
        log.append(plain_entry(i, Some(body.as_bytes()), Some("JP-1")))
            .await
            .unwrap();
        expected.push(body);
    }
    let segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.clone(), std::fs::read(p).unwrap())
        })
        .collect();
    let root = log.root(12).unwrap();
    drop(log);

    std::fs::write(&path, before_crash).unwrap();
    std::fs::remove_dir_all(&wal).unwrap();
    std::fs::create_dir(&wal).unwrap();
    for (p, bytes) in &segments {
        std::fs::write(p, bytes).unwrap();
    }
    let log = open(&path);
    assert_eq!(log.size().unwrap(), 12);
    assert_eq!(log.root(12).unwrap(), root);
    for (i, body) in (5..12).zip(&expected) {
        let stored = log.record(i).unwrap().unwrap();
        assert_eq!(stored.body.unwrap(), body.as_bytes());
        assert_eq!(
            log.find_by_message_id(&format!("msg-{i}")).unwrap(),
            vec![i]
        );
    }
    assert_eq!(
        log.find_by_subject("JP-1").unwrap(),
        (5..12).collect::<Vec<_>>()
    );
    // Recovered once: reopening again changes nothing, and appends go on after them.
    drop(log);
    let log = open(&path);
    assert_eq!(log.size().unwrap(), 12);
    assert_eq!(
        log.append(plain_entry(12, Some(b"next"), None))
            .await
            .unwrap(),
        12
    );
    assert_eq!(log.record(12).unwrap().unwrap().body.unwrap(), b"next");
    assert_eq!(
        log.record(6).unwrap().unwrap().body.unwrap(),
        expected[1].as_bytes()
    );
}

/// Where the `records` table says record `index` lies: its write-ahead segment file, and the
/// entry's offset and length in it (`docs/evidence.md`, Storage).
fn entry_location(path: &std::path::Path, index: u64) -> (std::path::PathBuf, u64, u64) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let value = txn
        .open_table(RECORDS)
        .unwrap()
        .get(index)
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!((value[0], value.len()), (0, 25), "an entry location");
    let be = |at: usize| u64::from_be_bytes(value[at..at + 8].try_into().unwrap());
    let mut wal = path.as_os_str().to_owned();
    wal.push(format!("-wal/{:020}.wal", be(1)));
    (wal.into(), be(9), be(17))
}

/// The write-ahead entry the `records` table points at for record `index`: `record length u32
/// | record | flags u8 | [subject HMAC (32)] | [stored body length u32 | stored body]`. Returns
/// the segment file, the record bytes and, when the entry has a body, the body's offset in the
/// segment and its bytes.
fn read_entry(path: &std::path::Path, index: u64) -> StoredEntryParts {
    let (wal, offset, len) = entry_location(path, index);
    let bytes = std::fs::read(&wal).unwrap();
    let entry = &bytes[offset as usize..(offset + len) as usize];
    let record_len = u32::from_le_bytes(entry[..4].try_into().unwrap()) as usize;
    let record = entry[4..4 + record_len].to_vec();
    let flags = entry[4 + record_len];
    let body = (flags & 2 == 2).then(|| {
        let body_at = 4 + record_len + 1 + if flags & 1 == 1 { 32 } else { 0 } + 4;
        let body_len = u32::from_le_bytes(entry[body_at - 4..body_at].try_into().unwrap());
        assert_eq!(
            body_at + body_len as usize,
            entry.len(),
            "the body ends the entry"
        );
        (offset + body_at as u64, entry[body_at..].to_vec())
    });
    StoredEntryParts { wal, record, body }
}

struct StoredEntryParts {
    wal: std::path::PathBuf,
    record: Vec<u8>,
    body: Option<(u64, Vec<u8>)>,
}

/// Flips a bit of byte `byte` of the stored body of record `index`, in its write-ahead segment.
fn tamper_body_in_segment(path: &std::path::Path, index: u64, byte: u64) {
    let entry = read_entry(path, index);
    let (body_at, body) = entry.body.expect("the entry has a body");
    assert!((byte as usize) < body.len());
    let mut bytes = std::fs::read(&entry.wal).unwrap();
    bytes[(body_at + byte) as usize] ^= 0x01;
    std::fs::write(&entry.wal, bytes).unwrap();
}

#[tokio::test]
async fn records_stored_as_earlier_versions_stored_them_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let opts = LogOptions {
        body_key: Some([7u8; 32]),
        ..options()
    };
    let log = MessageLog::open(&path, opts.clone()).unwrap();
    for i in 0..4u64 {
        let body = format!("body number {i}");
        log.append(plain_entry(i, (i > 0).then_some(body.as_bytes()), None))
            .await
            .unwrap();
    }
    let before: Vec<_> = (0..4).map(|i| log.record(i).unwrap().unwrap()).collect();
    drop(log);

    // Record 0 as the record bytes alone; record 1 with its sealed body in `bodies`; record 2
    // with a body location (format 3) in `bodies`; record 3 stays an entry location.
    let entries: Vec<_> = (0..3).map(|i| read_entry(&path, i)).collect();
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut records = txn.open_table(RECORDS).unwrap();
        let mut bodies = txn.open_table(BODIES).unwrap();
        for (i, entry) in entries.iter().enumerate() {
            records.insert(i as u64, entry.record.as_slice()).unwrap();
        }
        let (_, sealed) = entries[1].body.clone().unwrap();
        bodies.insert(1, sealed.as_slice()).unwrap();
        let (at, sealed) = entries[2].body.clone().unwrap();
        let segment: u64 = entries[2]
            .wal
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut location = vec![3];
        location.extend_from_slice(&segment.to_be_bytes());
        location.extend_from_slice(&at.to_be_bytes());
        location.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
        bodies.insert(2, location.as_slice()).unwrap();
        // As earlier versions marked their logs.
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("format", [1u8].as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let log = MessageLog::open(&path, opts).unwrap();
    let after: Vec<_> = (0..4).map(|i| log.record(i).unwrap().unwrap()).collect();
    assert_eq!(after, before);
    assert_eq!(after[2].body.as_deref(), Some(b"body number 2".as_slice()));
    drop(log);
    // Marked as this version's format, which earlier versions refuse to open.
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    assert_eq!(
        meta.get("format").unwrap().unwrap().value(),
        [2u8].as_slice()
    );
}

#[tokio::test]
async fn a_body_altered_in_storage_is_an_error_not_a_missing_body() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body_key) in [("sealed.redb", Some([9u8; 32])), ("plain.redb", None)] {
        let path = dir.path().join(name);
        let opts = LogOptions {
            body_key,
            ..options()
        };
        let log = MessageLog::open(&path, opts.clone()).unwrap();
        log.append(plain_entry(0, Some(b"0123456789"), None))
            .await
            .unwrap();
        log.append(plain_entry(1, Some(b"abcdefghij"), None))
            .await
            .unwrap();
        drop(log);
        tamper_body_in_segment(&path, 1, 5);
        let log = MessageLog::open(&path, opts).unwrap();
        assert!(log.record(0).unwrap().unwrap().body.is_some());
        match log.record(1) {
            Err(LogError::BodyIntegrity { index: 1, .. }) => {}
            other => panic!("{name}: expected a body integrity error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_different_body_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    drop(open(&path));
    let wrong = LogOptions {
        body_key: Some([0x43; 32]),
        ..options()
    };
    assert!(matches!(
        MessageLog::open(&path, wrong),
        Err(LogError::WrongBodyKey)
    ));
}

#[tokio::test]
async fn the_subject_index_finds_records_without_storing_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let alice = "JP-SUBJECT-ALICE-123456789012";
    let bob = "JP-SUBJECT-BOB-999999999999";
    let log = open(&path);
    for i in 0..20u64 {
        let subject = match i % 3 {
            0 => Some(alice),
            1 => Some(bob),
            _ => None,
        };
        log.append(plain_entry(i, None, subject)).await.unwrap();
    }
    let alices: Vec<u64> = (0..20).filter(|i| i % 3 == 0).collect();
    assert_eq!(log.find_by_subject(alice).unwrap(), alices);
    assert_eq!(
        log.find_by_subject(bob).unwrap(),
        (0..20).filter(|i| i % 3 == 1).collect::<Vec<_>>()
    );
    assert!(log.find_by_subject("JP-NOBODY").unwrap().is_empty());
    // Newest first, paged.
    assert_eq!(log.subject_page(alice, 0, 3).unwrap(), vec![18, 15, 12]);
    assert_eq!(log.subject_page(alice, 3, 3).unwrap(), vec![9, 6, 3]);
    assert_eq!(log.subject_page(alice, 6, 3).unwrap(), vec![0]);
    assert!(log.subject_page(alice, 7, 3).unwrap().is_empty());
    // Another subject key finds nothing: the index is keyed.
    let hash = log.subject_hash(alice);
    drop(log);
    let other = MessageLog::open(
        &path,
        LogOptions {
            subject_key: [0x18; 32],
            ..options()
        },
    )
    .unwrap();
    assert_ne!(other.subject_hash(alice), hash);
    assert!(other.find_by_subject(alice).unwrap().is_empty());
    drop(other);

    assert!(!file_contains(&path, alice.as_bytes()));
    assert!(!file_contains(&path, bob.as_bytes()));
    assert!(file_contains(&path, &hash));
}

#[tokio::test]
async fn message_id_and_time_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("messagelog.redb"));
    for i in 0..10u64 {
        log.append(plain_entry(i, None, None)).await.unwrap();
    }
    // A response to msg-3.
    let mut response = plain_entry(3, None, None);
    response.record.kind = proto::v1::LogKind::Response as i32;
    log.append(response).await.unwrap();
    assert_eq!(log.find_by_message_id("msg-3").unwrap(), vec![3, 10]);
    assert_eq!(log.find_by_message_id("msg-1").unwrap(), vec![1]);
    assert!(log.find_by_message_id("msg-").unwrap().is_empty());
    // plain_entry(i) is logged at 1_800_000_000_000 + i s.
    let t = |i: i64| 1_800_000_000_000 + i * 1000;
    assert_eq!(log.find_by_time(t(2), t(5)).unwrap(), vec![2, 3, 4, 10]);
    assert_eq!(log.find_by_time(t(9), t(100)).unwrap(), vec![9]);
    assert!(log.find_by_time(t(5), t(5)).unwrap().is_empty());
}

#[tokio::test]
async fn inconsistent_entries_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("messagelog.redb"));
    let mut flag = plain_entry(0, Some(b"body"), None);
    flag.record.body_stored = false;
    assert!(matches!(
        log.append(flag).await,
        Err(LogError::InvalidEntry(_))
    ));
    let mut hash = plain_entry(0, Some(b"body"), None);
    hash.body = Some(exchange::HashedBody::new(bytes::Bytes::from_static(
        b"other body",
    )));
    assert!(matches!(
        log.append(hash).await,
        Err(LogError::InvalidEntry(_))
    ));
    let batch = vec![plain_entry(0, None, None), {
        let mut e = plain_entry(1, Some(b"x"), None);
        e.body = None;
        e
    }];
    assert!(log.append_batch(batch).await.is_err());
    assert_eq!(log.size().unwrap(), 0);
    assert_eq!(log.stats().batches_committed, 0);
}

#[tokio::test]
async fn checkpoints_are_checked_stored_and_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("messagelog.redb"));
    append_n(&log, 10).await;
    let instance = common::Instance::new();
    assert_eq!(log.latest_checkpoint().unwrap(), None);

    // Size 4, not cosigned; size 7, cosigned; size 10, not cosigned.
    let sizes_and_cosigned = [(4u64, false), (7, true), (10, false)];
    let mut notes = Vec::new();
    for (size, cosign) in sizes_and_cosigned {
        let root = log.root(size).unwrap();
        let cp = tlog::Checkpoint::new(common::CLIENT_SERVER, size, root).unwrap();
        let signer = tlog::NoteSigner::new(
            tlog::log_key_name(common::CLIENT_SERVER),
            instance.client_key.clone(),
        )
        .unwrap();
        let mut note = tlog::sign_checkpoint(&cp, &signer);
        if cosign {
            let w = tlog::CosignatureSigner::new(
                tlog::log_key_name(common::PROVIDER_SERVER),
                instance.provider_key.clone(),
            )
            .unwrap();
            note.push_signature(tlog::cosign(&cp, &w, 1).unwrap())
                .unwrap();
        }
        log.store_checkpoint(size, &note.render()).unwrap();
        notes.push(note);
    }
    assert_eq!(log.latest_checkpoint().unwrap().unwrap().0, 10);
    // Covering 3 records: the cosigned one of size 7 wins over the smaller and the newer.
    assert_eq!(log.checkpoint_covering(3).unwrap().unwrap().0, 7);
    assert_eq!(log.checkpoint_covering(8).unwrap().unwrap().0, 10);
    assert_eq!(log.checkpoint_covering(11).unwrap(), None);

    // Cosignatures added later: the note grows, the size-10 one now wins for 3 records too.
    let cp10 = tlog::Checkpoint::parse_body(notes[2].text()).unwrap();
    let w = tlog::CosignatureSigner::new(
        tlog::log_key_name(common::PROVIDER_SERVER),
        instance.provider_key.clone(),
    )
    .unwrap();
    let sig = tlog::cosign(&cp10, &w, 2).unwrap();
    let text = log.add_cosignatures(10, &[sig.clone(), sig]).unwrap();
    assert_eq!(tlog::note::parse(&text).unwrap().signatures().len(), 2);
    assert_eq!(log.checkpoint(10).unwrap().unwrap(), text);
    assert_eq!(log.checkpoint_covering(3).unwrap().unwrap().0, 10);

    // A checkpoint whose root is not the log's, or beyond the log, is refused.
    let wrong = tlog::Checkpoint::new(common::CLIENT_SERVER, 5, [0; 32]).unwrap();
    let signer = tlog::NoteSigner::new("x", instance.client_key.clone()).unwrap();
    let wrong_text = tlog::sign_checkpoint(&wrong, &signer).render();
    assert!(matches!(
        log.store_checkpoint(5, &wrong_text),
        Err(LogError::InvalidCheckpoint(_))
    ));
    assert!(matches!(
        log.store_checkpoint(4, &wrong_text),
        Err(LogError::InvalidCheckpoint(_))
    ));
    let beyond = tlog::sign_checkpoint(
        &tlog::Checkpoint::new(common::CLIENT_SERVER, 11, [0; 32]).unwrap(),
        &signer,
    );
    assert!(matches!(
        log.store_checkpoint(11, &beyond.render()),
        Err(LogError::OutOfRange { .. })
    ));
}

#[tokio::test]
async fn witness_state_is_compare_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let log = open(&path);
    let origin = "JP/GOV/8000012/ss1";
    let state = |size: u64, b: u8| tlog::WitnessState {
        origin: origin.into(),
        size,
        root: [b; 32],
    };
    assert_eq!(log.witness_state(origin).unwrap(), None);
    // Expecting a state that is not there fails; expecting none succeeds once.
    assert!(
        !log.witness_update(origin, Some(&state(1, 1)), state(5, 5))
            .unwrap()
    );
    assert!(log.witness_update(origin, None, state(5, 5)).unwrap());
    assert!(!log.witness_update(origin, None, state(6, 6)).unwrap());
    assert_eq!(log.witness_state(origin).unwrap(), Some(state(5, 5)));
    assert!(
        !log.witness_update(origin, Some(&state(5, 4)), state(9, 9))
            .unwrap()
    );
    assert!(
        log.witness_update(origin, Some(&state(5, 5)), state(9, 9))
            .unwrap()
    );
    assert!(log.witness_update("JP/X/1/ss", None, state(1, 1)).is_err());

    // Two threads racing from the same state: exactly one wins.
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let log = log.clone();
                s.spawn(move || {
                    usize::from(
                        log.witness_update(origin, Some(&state(9, 9)), state(10 + u64::from(t), t))
                            .unwrap(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);

    assert_eq!(log.witnessed_size("JP/GOV/8000012/ss1").unwrap(), 0);
    log.set_witnessed_size("JP/GOV/8000012/ss1", 42).unwrap();
    drop(log);
    let log = open(&path);
    assert_eq!(log.witnessed_size("JP/GOV/8000012/ss1").unwrap(), 42);
    assert_eq!(log.witness_state(origin).unwrap().unwrap().origin, origin);
}

#[tokio::test]
async fn configurations_in_force_at_given_times() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("messagelog.redb"));
    assert!(log.configurations_for(&[1000]).unwrap().is_empty());
    log.store_configuration(1, 1000, b"conf-1").unwrap();
    log.store_configuration(2, 2000, b"conf-2").unwrap();
    log.store_configuration(3, 3000, b"conf-3").unwrap();
    // Idempotent; a different envelope under a stored serial is refused.
    log.store_configuration(2, 2000, b"conf-2").unwrap();
    assert!(matches!(
        log.store_configuration(2, 2000, b"conf-2b"),
        Err(LogError::ConfigurationConflict(2))
    ));
    let got = |times: &[i64]| log.configurations_for(times).unwrap();
    assert_eq!(got(&[1500]), vec![b"conf-1".to_vec(), b"conf-3".to_vec()]);
    assert_eq!(
        got(&[2000, 2999, 1000]),
        vec![b"conf-1".to_vec(), b"conf-2".to_vec(), b"conf-3".to_vec()]
    );
    assert_eq!(got(&[3500]), vec![b"conf-3".to_vec()]);
    // Before the first one: only the newest.
    assert_eq!(got(&[10]), vec![b"conf-3".to_vec()]);
}

#[tokio::test]
async fn federated_instances_configurations_are_kept_apart_and_exported_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let log = open(&path);
    log.store_configuration(1, 1000, b"jp-1").unwrap();
    log.store_configuration(2, 3000, b"jp-2").unwrap();
    // Another instance's serials are its own: serial 1 of FI is not JP's serial 1.
    log.store_federated_configuration("FI", 1, 900, b"fi-1")
        .unwrap();
    log.store_federated_configuration("FI", 7, 2500, b"fi-7")
        .unwrap();
    log.store_federated_configuration("EE", 1, 100, b"ee-1")
        .unwrap();
    log.store_federated_configuration("FI", 7, 2500, b"fi-7")
        .unwrap();
    assert!(matches!(
        log.store_federated_configuration("FI", 7, 2500, b"fi-7b"),
        Err(LogError::ConfigurationConflict(7))
    ));
    // Each instance's apart: the one in force at each time, and the newest.
    assert_eq!(
        log.configurations_for(&[2000]).unwrap(),
        vec![b"jp-1".to_vec(), b"jp-2".to_vec()]
    );
    let fi = |log: &MessageLog, times: &[i64]| log.federated_configurations_for("FI", times);
    assert_eq!(
        fi(&log, &[2000]).unwrap(),
        vec![b"fi-1".to_vec(), b"fi-7".to_vec()]
    );
    assert_eq!(fi(&log, &[10]).unwrap(), vec![b"fi-7".to_vec()]);
    assert_eq!(
        log.federated_configurations_for("EE", &[2000]).unwrap(),
        vec![b"ee-1".to_vec()]
    );
    assert!(
        log.federated_configurations_for("SE", &[2000])
            .unwrap()
            .is_empty()
    );
    // They outlive a reopening, and a backup copies them.
    drop(log);
    let log = open(&path);
    assert_eq!(fi(&log, &[3000]).unwrap(), vec![b"fi-7".to_vec()]);
    let copy = dir.path().join("copy.redb");
    let snapshot = log.snapshot(&copy).unwrap();
    drop(snapshot);
    drop(log);
    let restored = open(&copy);
    assert_eq!(
        fi(&restored, &[1000]).unwrap(),
        vec![b"fi-1".to_vec(), b"fi-7".to_vec()]
    );
}

#[tokio::test]
async fn records_table_points_at_the_exact_record_bytes_in_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let log = open(&path);
    let entry = plain_entry(0, None, None);
    let expected = prost::Message::encode_to_vec(&entry.record);
    log.append(entry).await.unwrap();
    assert_eq!(log.record(0).unwrap().unwrap().record_bytes, expected);
    assert_eq!(log.record(1).unwrap(), None);
    drop(log);
    // The entry is the record's length, the record, and flags (no subject, no body).
    let (wal, offset, len) = entry_location(&path, 0);
    let bytes = std::fs::read(wal).unwrap();
    let entry = &bytes[offset as usize..(offset + len) as usize];
    assert_eq!(entry.len(), 4 + expected.len() + 1);
    assert_eq!(entry[..4], (expected.len() as u32).to_le_bytes());
    assert_eq!(&entry[4..4 + expected.len()], expected.as_slice());
    assert_eq!(entry[4 + expected.len()], 0);
}

#[tokio::test]
async fn old_checkpoints_are_thinned_to_the_best_one_per_bucket_and_evidence_still_exports() {
    use msglog::history::Thinning;

    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir.path().join("messagelog.redb"));
    let instance = common::Instance::new();
    // A checkpoint after every record, sizes 1..=20; those of sizes 6 and 9 are cosigned.
    for i in 0..20u64 {
        log.append(instance.request(&format!("m-{i}"), b"body", None))
            .await
            .unwrap();
        instance.checkpoint(&log, i + 1 == 6 || i + 1 == 9);
    }
    let thinning = Thinning {
        keep_recent: 5,
        bucket_records: 4,
    };
    // Sizes 16..=20 are the recent five. The buckets wholly below the newest older one (15)
    // are [0,4), [4,8) and [8,12); each keeps its most cosigned checkpoint, the largest on a
    // tie.
    assert_eq!(log.thin_checkpoints(thinning).unwrap(), 2 + 3 + 3);
    let kept: Vec<u64> = (1..=20)
        .filter(|&s| log.checkpoint(s).unwrap().is_some())
        .collect();
    assert_eq!(kept, vec![3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    // Nothing more to do until more checkpoints arrive; thinned buckets are not read again.
    assert_eq!(log.thin_checkpoints(thinning).unwrap(), 0);

    // Every record still has a covering checkpoint, and its evidence verifies (the records
    // covered by a kept cosigned checkpoint with the default rule).
    log.store_configuration(
        1,
        common::GENERATED_AT,
        &instance.envelope(1, common::GENERATED_AT),
    )
    .unwrap();
    let clock = certs::ManualClock::at_unix(common::CREATED_AT + 1000);
    for i in [0u64, 3, 4, 8, 10, 19] {
        let (size, _) = log.checkpoint_covering(i + 1).unwrap().unwrap();
        assert!(size > i);
        let bundle =
            msglog::export(&log, &instance.server_id(), &[i], true, &clock, |_, _| {}).unwrap();
        let bytes = prost::Message::encode_to_vec(&bundle);
        let options = msglog::VerifyOptions {
            require_cosignatures: usize::from(i < 9),
        };
        msglog::verify_with(&bytes, &instance.anchor, options)
            .unwrap_or_else(|e| panic!("record {i}: {e}"));
    }

    // Later checkpoints: only buckets that are now wholly old are thinned.
    for i in 20..28u64 {
        log.append(instance.request(&format!("m-{i}"), b"body", None))
            .await
            .unwrap();
        instance.checkpoint(&log, false);
    }
    assert_eq!(log.thin_checkpoints(thinning).unwrap(), 3 + 3);
    let kept: Vec<u64> = (1..=28)
        .filter(|&s| log.checkpoint(s).unwrap().is_some())
        .collect();
    assert_eq!(
        kept,
        vec![3, 6, 9, 15, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28]
    );
}

#[tokio::test]
async fn a_frame_cut_short_by_a_crash_does_not_stop_later_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messagelog.redb");
    let log = open(&path);
    append_n(&log, 3).await;
    assert_eq!(log.size().unwrap(), 3);
    drop(log);
    // A crash in the middle of writing the next frame: its start is on the disk, its end not.
    let segment = dir
        .path()
        .join("messagelog.redb-wal/00000000000000000000.wal");
    let bytes = std::fs::read(&segment).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mut torn = bytes.clone();
    torn[end..end + 12].copy_from_slice(b"XRWL\x40\0\0\0\0\0\0\0");
    std::fs::write(&segment, torn).unwrap();

    // The open after the crash drops the torn frame and starts a new segment; later opens,
    // with or without appends in between, do not hold the torn frame against the log.
    drop(open(&path));
    let log = open(&path);
    assert_eq!(log.size().unwrap(), 3);
    drop(log);
    let log = open(&path);
    for i in 3..5 {
        let entry = plain_entry(i, Some(b"after".as_slice()), None);
        assert_eq!(log.append(entry).await.unwrap(), i);
    }
    drop(log);
    let log = open(&path);
    assert_eq!(log.size().unwrap(), 5);
    assert!(log.record(4).unwrap().is_some());
}
