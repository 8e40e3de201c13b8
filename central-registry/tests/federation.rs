//! Federation agreements: the registry publishes, in its signed configuration, the other
//! instances it is federated with and their anchors exactly as agreed; adding the same anchor
//! again changes nothing, a new anchor replaces the old one, removal takes effect at the next
//! serial, and what cannot be an agreement is refused.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use central_registry::ops::{AddFederation, ListFederations, RemoveFederation};
use central_registry::{AdminClient, Registry};
use common::{TestRegistry, cli};
use globalconf::{Anchor, InstanceId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_instances_are_published_with_the_agreed_anchor_until_removed() {
    let mut jp = TestRegistry::start().await;
    let mut fi = TestRegistry::start_with(|c| c.instance = "FI".into()).await;
    let fi_id: InstanceId = "FI".parse().unwrap();
    let admin = AdminClient::new(&jp.admin_url, &jp.admin_token);

    // Not federated: the configuration lists no other instance.
    let (_, before) = jp.fetch().await;
    assert_eq!(before.conf().federated_instances().count(), 0);

    // JP's operator adds FI's anchor, as FI's operator handed it over (comments and all).
    let handed_over = format!("# FI's anchor\n{}", fi.anchor.to_toml().unwrap());
    let added = admin
        .call(&AddFederation {
            anchor: handed_over.clone(),
        })
        .await
        .unwrap();
    assert_eq!(added.federation.instance, fi_id);
    assert_eq!(
        added.federation.fingerprint,
        fi.anchor.fingerprint().unwrap()
    );
    assert_eq!(added.federation.registry_urls, fi.anchor.registry_urls());
    assert!(!added.replaced && !added.unchanged);
    let (_, conf) = jp.fetch().await;
    assert!(conf.serial() > before.serial());
    assert_eq!(conf.conf().federated(&fi_id), Some(&fi.anchor));

    // The same anchor again changes nothing, not even the serial.
    let again = admin
        .call(&AddFederation {
            anchor: handed_over,
        })
        .await
        .unwrap();
    assert!(again.unchanged);
    assert_eq!(jp.fetch().await.1.serial(), conf.serial());

    // FI's operator moved its registry: the new anchor replaces the old one.
    let moved = Anchor::new(
        fi_id.clone(),
        vec!["https://registry.fi.example:4443".into()],
        fi.anchor.ca_certificates_pem().to_owned(),
        fi.anchor.signing_keys().to_vec(),
    )
    .unwrap();
    let replaced = admin
        .call(&AddFederation {
            anchor: moved.to_toml().unwrap(),
        })
        .await
        .unwrap();
    assert!(replaced.replaced);
    assert_ne!(
        replaced.federation.fingerprint,
        added.federation.fingerprint
    );
    assert_eq!(jp.fetch().await.1.conf().federated(&fi_id), Some(&moved));
    let listed = admin.call(&ListFederations).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, moved.fingerprint().unwrap());

    // What cannot be an agreement is refused, and changes nothing.
    for (anchor, says) in [
        (jp.anchor.to_toml().unwrap(), "not federated with itself"),
        ("instance = \"EE\"\n".to_owned(), "not a usable anchor"),
    ] {
        let e = admin.call(&AddFederation { anchor }).await.unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
    assert_eq!(jp.fetch().await.1.conf().federated_instances().count(), 1);

    // The agreement outlives a restart of the registry.
    jp.stop().await;
    let TestRegistry {
        dir: _dir,
        config,
        clock,
        admin: registry_admin,
        ..
    } = jp;
    drop(registry_admin);
    let reopened = Registry::open(config, Arc::new(clock)).unwrap();
    let held = reopened.admin().federations().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].instance, fi_id);
    drop(reopened);

    // Removal takes effect at the next serial; removing it again is "not found".
    let mut jp = TestRegistry::start().await;
    let admin = AdminClient::new(&jp.admin_url, &jp.admin_token);
    admin
        .call(&AddFederation {
            anchor: fi.anchor.to_toml().unwrap(),
        })
        .await
        .unwrap();
    let serial = jp.fetch().await.1.serial();
    admin
        .call(&RemoveFederation {
            instance: fi_id.clone(),
        })
        .await
        .unwrap();
    let (_, after) = jp.fetch().await;
    assert!(after.serial() > serial);
    assert_eq!(after.conf().federated(&fi_id), None);
    let e = admin
        .call(&RemoveFederation { instance: fi_id })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not registered"), "{e}");

    jp.stop().await;
    fi.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_compare_the_fingerprints_the_cli_prints() {
    let mut jp = TestRegistry::start().await;
    let mut fi = TestRegistry::start_with(|c| c.instance = "FI".into()).await;
    let jp_config = jp.dir.path().join("registry.toml");
    std::fs::write(&jp_config, jp.config.to_toml().unwrap()).unwrap();
    let fi_config = fi.dir.path().join("registry.toml");
    std::fs::write(&fi_config, fi.config.to_toml().unwrap()).unwrap();
    let fi_anchor = fi.dir.path().join("fi-anchor.toml");
    fi.anchor.save(&fi_anchor).unwrap();

    let run = |config: std::path::PathBuf, args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&config, &args)
        })
        .await
        .unwrap()
    };
    let words = |s: &[&str]| s.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();

    // FI's operator reads out FI's own fingerprint...
    let (ok, theirs, stderr) = run(fi_config.clone(), words(&["federation", "fingerprint"])).await;
    assert!(ok, "{stderr}");
    let fingerprint = fi.anchor.fingerprint().unwrap();
    assert!(theirs.contains(&fingerprint), "{theirs}");
    // ...and JP's operator sees the same one when adding the anchor that travelled.
    let (ok, added, stderr) = run(
        jp_config.clone(),
        vec![
            "federation".into(),
            "add".into(),
            fi_anchor.display().to_string(),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(added.contains("federated with instance FI"), "{added}");
    assert!(added.contains(&fingerprint), "{added}");
    assert!(stderr.contains("Compare the fingerprint"), "{stderr}");
    let (ok, listed, _) = run(jp_config.clone(), words(&["federation", "list"])).await;
    assert!(ok && listed.contains(&fingerprint), "{listed}");
    let (ok, _, stderr) = run(jp_config.clone(), words(&["federation", "remove", "FI"])).await;
    assert!(ok, "{stderr}");
    let (ok, listed, _) = run(jp_config, words(&["federation", "list"])).await;
    assert!(ok && listed.contains("not federated"), "{listed}");

    jp.stop().await;
    fi.stop().await;
}
