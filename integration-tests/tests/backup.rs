#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Backup and restore of a security server (docs/backup.md): a backup taken through the admin
//! API while exchanges go on, restored into another directory, holds every exchange
//! acknowledged before the backup began, and its message log is whole (every record included
//! under the current root, consistent with the newest signed checkpoint). The keys, the
//! services and the access rights come back; another key cannot read the backup.

use std::sync::Arc;

use integration_tests::admin;
use integration_tests::load::Load;
use runtime::backup::BackupError;
use sandbox::FederationSpec;
use security_server::admin::ops::{CreateBackup, ListAccess, ListServices};
use security_server::backup::RestoreError;

const MINISTRY: &str = "JP/GOV/digital-agency/ss1";
const CHIYODA: &str = "JP/MUN/131016/ss1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_elsewhere_with_every_acknowledged_exchange() {
    let mut spec = FederationSpec::sandbox();
    spec.samples.clear();
    let (dir, f) = integration_tests::start_federation(spec, Arc::new(certs::SystemClock)).await;
    let proxy = f.server(MINISTRY).unwrap().client_proxy_url().unwrap();
    let (load, running) = Load::start(proxy);
    load.go_on(20).await;
    // A signed checkpoint exists before the backup (the restored log must carry it).
    integration_tests::export_evidence(&f, CHIYODA, "load-1", 1).await;

    let key = dir.path().join("backup.key");
    let recipient = runtime::backup::generate_key(&key).unwrap();
    let out = dir.path().join("chiyoda.age");
    let acknowledged = {
        let _between = load.between().await;
        load.succeeded()
    };
    let report = admin(&f, CHIYODA)
        .call(&CreateBackup {
            recipient: recipient.clone(),
            out: out.clone(),
        })
        .await
        .unwrap();
    assert_eq!(report.path, out);
    assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
    assert!(
        report.log_records >= 2 * acknowledged as u64,
        "{report:?}, {acknowledged} exchanges"
    );
    // The exchanges never stopped.
    load.go_on(10).await;
    let total = load.stop_with_none_failed(running).await;
    assert!(total >= acknowledged + 10);

    // Refused: a relative path, an existing file, a recipient that is no key.
    for (bad_out, bad_recipient) in [
        (std::path::PathBuf::from("relative.age"), recipient.as_str()),
        (out.clone(), recipient.as_str()),
        (dir.path().join("other.age"), "age1notakey"),
    ] {
        let e = admin(&f, CHIYODA)
            .call(&CreateBackup {
                recipient: bad_recipient.to_owned(),
                out: bad_out.clone(),
            })
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("Admin.BadRequest"),
            "{}: {e}",
            bad_out.display()
        );
    }

    // Restore into another directory while the original server still runs.
    let restored_config = dir.path().join("restored").join("security-server.toml");
    let restored_data = dir.path().join("restored").join("data");
    let wrong_key = dir.path().join("wrong.key");
    runtime::backup::generate_key(&wrong_key).unwrap();
    let refused = security_server::backup::restore(
        &restored_config,
        &out,
        &wrong_key,
        Some(restored_data.clone()),
    );
    assert!(
        matches!(refused, Err(RestoreError::Backup(BackupError::Decrypt(_)))),
        "{refused:?}"
    );
    assert!(!restored_config.exists() && !restored_data.exists());
    let restored =
        security_server::backup::restore(&restored_config, &out, &key, Some(restored_data.clone()))
            .unwrap();
    assert_eq!(restored.manifest.id, CHIYODA);
    assert!(restored.log_records >= report.log_records);
    // Never over what exists.
    let again = security_server::backup::restore(
        &restored_config,
        &out,
        &key,
        Some(dir.path().join("elsewhere")),
    );
    assert!(
        matches!(again, Err(RestoreError::Backup(BackupError::Refused(_)))),
        "{again:?}"
    );

    let original = &f.server(CHIYODA).unwrap().config;
    let config = security_server::Config::load(&restored_config).unwrap();
    assert_eq!(config.data_dir, restored_data);
    assert_eq!(config.server_id, original.server_id);
    for key_file in ["tls.key", "tls.pem", "admin-token", "messagelog-body.key"] {
        assert_eq!(
            std::fs::read(restored_data.join(key_file)).unwrap(),
            std::fs::read(original.data_dir.join(key_file)).unwrap(),
            "{key_file}"
        );
    }
    let serverconf =
        security_server::serverconf::ServerConf::open(&restored_data.join("serverconf.redb"))
            .unwrap();
    let restored_conf = serverconf.snapshot();
    let services = admin(&f, CHIYODA).call(&ListServices).await.unwrap();
    assert!(!services.is_empty());
    assert_eq!(
        restored_conf.services.values().cloned().collect::<Vec<_>>(),
        services
    );
    assert_eq!(
        restored_conf.access.grants(),
        admin(&f, CHIYODA).call(&ListAccess).await.unwrap()
    );
    assert!(!serverconf.audit(10).unwrap().is_empty() || services.is_empty());

    // Every exchange acknowledged before the backup began: request and response.
    let log = security_server::log::open(&config).unwrap();
    for n in 1..=acknowledged {
        let found = log.find_by_message_id(&format!("load-{n}")).unwrap();
        assert!(
            found.len() >= 2,
            "load-{n} is in the restored log: {found:?}"
        );
    }
    // The log is whole: every record under the current root, which is consistent with the
    // newest checkpoint signed before the backup.
    integration_tests::assert_log_whole(&log);
    drop(log);
    f.stop().await;
}
