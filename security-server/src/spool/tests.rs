#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn spool(dir: &Path, in_memory: usize) -> Spool {
    Spool::new(dir, in_memory, 1 << 20, 1 << 30).unwrap()
}

fn parts_of(body: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, String>> {
    let parts: Vec<_> = body
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts)
}

async fn read_back(body: &MessageBody) -> Vec<u8> {
    let mut out = Vec::new();
    let mut parts = body.parts();
    while let Some(part) = parts.next().await {
        out.extend_from_slice(&part.unwrap());
    }
    out
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn a_small_body_stays_in_memory_and_a_large_one_is_spooled_sealed_then_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 1000);
    let small = pattern(1000);
    let body = spool
        .read((None, Room::Wait), parts_of(&small, 300))
        .await
        .unwrap();
    assert!(body.memory().is_some());
    assert_eq!(read_back(&body).await, small);

    let large = pattern(3 * CHUNK + 123);
    let body = spool
        .read((None, Room::Wait), parts_of(&large, 7000))
        .await
        .unwrap();
    assert!(body.memory().is_none());
    assert_eq!(body.len(), large.len() as u64);
    assert_eq!(
        body.sha256(),
        HashedBody::new(large.clone().into()).sha256()
    );
    assert_eq!(read_back(&body).await, large);
    // Read again: the same.
    assert_eq!(read_back(&body).await, large);
    // Nothing with a name is left in the spool directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_spool_file_never_holds_the_body_in_the_clear_and_an_altered_chunk_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 10);
    let secret = b"resident 123 tax record ".repeat(20_000);
    let body = spool
        .read(
            (Some(secret.len() as u64), Room::Wait),
            parts_of(&secret, 4096),
        )
        .await
        .unwrap();
    let Content::Spooled(file) = &body.content else {
        panic!("spooled")
    };
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut file.file.try_clone().unwrap(), &mut raw).unwrap();
    assert!(raw.len() > secret.len());
    assert!(!raw.windows(24).any(|w| w == b"resident 123 tax record "));
    // Flip one byte of the second chunk.
    file.file
        .write_all_at(&[raw[CHUNK + TAG + 5] ^ 1], (CHUNK + TAG + 5) as u64)
        .unwrap();
    let mut parts = body.parts();
    assert!(parts.next().await.unwrap().is_ok());
    let e = parts.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn too_large_lying_and_broken_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(dir.path(), 100, 1 << 20, 5000).unwrap();
    let body = pattern(6000);
    // Announced too large: refused before reading.
    let never = stream::iter([Err::<Bytes, _>("must not be read")]);
    assert!(matches!(
        spool.read((Some(6000), Room::Wait), never).await,
        Err(ReadError::TooLarge(5000))
    ));
    // Not announced, found too large while reading.
    assert!(matches!(
        spool.read((None, Room::Wait), parts_of(&body, 1000)).await,
        Err(ReadError::TooLarge(5000))
    ));
    // Longer or shorter than announced.
    for announced in [1000, 4000] {
        assert!(matches!(
            spool
                .read((Some(announced), Room::Wait), parts_of(&body[..2000], 500))
                .await,
            Err(ReadError::Broken(_))
        ));
    }
    let broken = stream::iter([Ok(Bytes::from_static(b"abc")), Err("reset".to_owned())]);
    assert!(matches!(
        spool.read((None, Room::Wait), broken).await,
        Err(ReadError::Broken(m)) if m.contains("reset")
    ));
}

#[tokio::test]
async fn bodies_in_memory_wait_for_room_in_the_budget_and_spooled_ones_give_theirs_back() {
    let dir = tempfile::tempdir().unwrap();
    // Room for one in-memory body of 64 KiB at a time.
    let spool = Spool::new(dir.path(), 64 * 1024, 64 * 1024, 1 << 30).unwrap();
    let first = spool
        .read((None, Room::Wait), parts_of(&pattern(1000), 1000))
        .await
        .unwrap();
    let small = pattern(1000);
    let second = spool.read((None, Room::Wait), parts_of(&small, 1000));
    let mut second = std::pin::pin!(second);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), &mut second)
            .await
            .is_err(),
        "waits while the first body holds the budget"
    );
    // An answer does not wait: without room it goes to the spool, whole and intact.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        spool.read((None, Room::OrSpool), parts_of(&small, 100)),
    )
    .await
    .expect("an answer never waits for room")
    .unwrap();
    assert!(answer.memory().is_none(), "spooled for want of room");
    assert_eq!(read_back(&answer).await, small);
    drop(first);
    let second = second.await.unwrap();
    drop(second);
    // A body that is spooled gives its room back as soon as it goes to disk.
    let large = spool
        .read((None, Room::Wait), parts_of(&pattern(CHUNK * 2), 10_000))
        .await
        .unwrap();
    assert!(large.memory().is_none());
    let small = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        spool.read((None, Room::Wait), parts_of(&pattern(10), 10)),
    )
    .await
    .expect("room while a spooled body is held")
    .unwrap();
    assert!(small.memory().is_some());
}
