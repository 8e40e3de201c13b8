//! Rollover of the configuration-signing key: the next envelope is signed by the new key and
//! carries its announcement, and a rollover cut off between its commit and moving the key files
//! is finished when the registry opens.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use central_registry::ops::{RotateSigningKey, ShowSigningKey};
use central_registry::{DataDir, Registry};
use common::TestRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollover_signs_with_the_new_key_and_survives_a_crash_before_the_files_move() {
    let mut registry = TestRegistry::start().await;
    let first = registry.admin.run(ShowSigningKey).await.unwrap();
    let (_, before) = registry.fetch().await;
    assert_eq!(before.key_generation(), 0);

    let rolled = registry.admin.run(RotateSigningKey).await.unwrap();
    assert_eq!(rolled.generation, 1);
    let (_, after) = registry.fetch().await;
    assert_eq!(after.key_generation(), 1);
    assert!(after.serial() > before.serial());
    assert_eq!(after.signing_keys().len(), 1);
    assert_eq!(after.signing_keys()[0].key_id(), rolled.key_id);
    before.check_successor(&after).unwrap();
    let dir = DataDir::new(&registry.config.data_dir);
    assert!(dir.retired_signing_key(&first.key_id).exists());
    assert!(!dir.next_signing_key().exists());
    let audit = registry.admin.audit(5).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "signing_key.rotate"));
    registry.stop().await;
    let TestRegistry {
        dir: _data,
        config,
        clock,
        admin,
        ..
    } = registry;
    drop(admin);

    // As if the registry stopped after the commit and before moving the files.
    std::fs::rename(dir.signing_key(), dir.next_signing_key()).unwrap();
    std::fs::rename(dir.retired_signing_key(&first.key_id), dir.signing_key()).unwrap();
    let reopened = Registry::open(config, Arc::new(clock)).unwrap();
    let shown = reopened.admin().run(ShowSigningKey).await.unwrap();
    assert_eq!(shown.key_id, rolled.key_id);
    assert_eq!(shown.generation, 1);
    assert!(dir.retired_signing_key(&first.key_id).exists());
    assert!(!dir.next_signing_key().exists());
}
