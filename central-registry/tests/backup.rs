//! Backup and restore of the registry (docs/backup.md): a backup of a running registry, restored
//! into another directory, opens as the same registry (members, federation agreements, keys, CA,
//! anchor, serial); the backup is refused to another key, and a restore never writes over
//! anything.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use central_registry::ops::{CreateBackup, ListMembers};
use central_registry::{AddMember, DataDir, Registry, RegistryConfig};
use common::TestRegistry;
use runtime::backup::BackupError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_registry_backed_up_restores_as_the_same_registry() {
    let mut registry = TestRegistry::start().await;
    registry
        .admin
        .run(AddMember {
            id: "JP/MUN/131016".parse().unwrap(),
            name: "Chiyoda".into(),
        })
        .await
        .unwrap();
    // A federation agreement with FI, as FI's operator handed over its anchor.
    let fi_ca = certs::CertificateAuthority::generate(
        "FI",
        std::time::Duration::from_secs(86_400),
        &certs::SystemClock,
    )
    .unwrap();
    let fi = globalconf::Anchor::new(
        "FI".parse().unwrap(),
        vec!["https://registry.fi.example:4443".into()],
        fi_ca.certificate_pem(),
        vec![certs::SigningKey::generate().unwrap().public_key()],
    )
    .unwrap();
    registry
        .admin
        .add_federation(fi.to_toml().unwrap())
        .await
        .unwrap();
    let serial = registry.serial().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.key");
    let recipient = runtime::backup::generate_key(&key).unwrap();
    let out = dir.path().join("registry.age");
    let report = registry
        .admin
        .run(CreateBackup {
            recipient: recipient.clone(),
            out: out.clone(),
        })
        .await
        .unwrap();
    assert_eq!(report.serial, serial);
    assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
    // A relative path, an existing file and a recipient that is no key are refused.
    for (bad_out, bad_recipient) in [
        (std::path::PathBuf::from("relative.age"), recipient.as_str()),
        (out.clone(), recipient.as_str()),
        (dir.path().join("other.age"), "age1notakey"),
    ] {
        let e = registry
            .admin
            .run(CreateBackup {
                recipient: bad_recipient.to_owned(),
                out: bad_out,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e, central_registry::RegistryError::BadRequest(_)),
            "{e}"
        );
    }
    registry.stop().await;

    let config_path = dir.path().join("restored").join("central-registry.toml");
    let data = dir.path().join("restored").join("data");
    let other_key = dir.path().join("other.key");
    runtime::backup::generate_key(&other_key).unwrap();
    let refused =
        central_registry::backup::restore(&config_path, &out, &other_key, Some(data.clone()));
    assert!(
        matches!(
            refused,
            Err(central_registry::backup::RestoreError::Backup(
                BackupError::Decrypt(_)
            ))
        ),
        "{refused:?}"
    );
    let restored =
        central_registry::backup::restore(&config_path, &out, &key, Some(data.clone())).unwrap();
    assert_eq!(restored.manifest.id, "JP");
    let again = central_registry::backup::restore(
        &config_path,
        &out,
        &key,
        Some(dir.path().join("elsewhere")),
    );
    assert!(again.is_err(), "never over an existing configuration file");

    // The same registry: its secret keys, CA and anchor byte for byte, and its database.
    let (before, after) = (DataDir::new(&registry.config.data_dir), DataDir::new(&data));
    for (a, b) in [
        (before.signing_key(), after.signing_key()),
        (before.ca_key(), after.ca_key()),
        (before.ca_pem(), after.ca_pem()),
        (before.tls_key(), after.tls_key()),
        (before.anchor(), after.anchor()),
        (before.admin_token(), after.admin_token()),
    ] {
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{}",
            b.display()
        );
    }
    let config = RegistryConfig::load(&config_path).unwrap();
    assert_eq!(config.data_dir, data);
    let reopened = Registry::open(config, Arc::new(registry.clock.clone())).unwrap();
    let members = reopened.admin().run(ListMembers).await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].id.to_string(), "JP/MUN/131016");
    let federations = reopened.admin().federations().await.unwrap();
    assert_eq!(federations.len(), 1, "{federations:?}");
    assert_eq!(federations[0].instance.as_str(), "FI");
    assert_eq!(federations[0].fingerprint, fi.fingerprint().unwrap());
    assert!(
        reopened
            .admin()
            .run(central_registry::ops::Status)
            .await
            .unwrap()
            .serial
            >= serial
    );
}
