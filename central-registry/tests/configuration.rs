//! The published configuration: signed under the anchor `init` wrote, valid for the configured
//! time, a strictly increasing serial, and removals that take effect at the next serial.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use certs::{Clock as _, SigningKey};
use common::{Enrollee, TestRegistry, eventually};
use globalconf::{Anchor, GlobalGroupId, MemberId, SubsystemId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_configuration_verifies_under_the_anchor_and_lasts_the_configured_time() {
    let mut registry = TestRegistry::start_with(|c| {
        c.configuration_validity_secs = 86_400;
        c.parameters.witness_count = 3;
    })
    .await;
    let anchor_path = central_registry::DataDir::new(&registry.config.data_dir).anchor();
    let anchor = Anchor::load(&anchor_path).unwrap();
    assert_eq!(anchor.registry_urls(), [registry.public_url.clone()]);

    let (bytes, conf) = common::fetch_from(&registry.https, &registry.public_url, &anchor).await;
    let c = conf.conf();
    assert_eq!(c.instance().as_str(), "JP");
    assert_eq!(c.expires_at() - c.generated_at(), 86_400);
    assert_eq!(c.parameters().witness_count, 3);
    assert_eq!(c.registry_urls(), [registry.public_url.clone()]);
    assert_eq!(
        bytes.as_ref(),
        registry.admin.publication().envelope.as_ref()
    );

    // The anchor and CA are served as init wrote them.
    let served = registry
        .https
        .get(&format!("{}/v1/anchor", registry.public_url), None)
        .await
        .unwrap();
    assert_eq!(Anchor::parse(&served.text()).unwrap(), anchor);
    let ca = registry
        .https
        .get(&format!("{}/v1/ca.pem", registry.public_url), None)
        .await
        .unwrap();
    assert_eq!(ca.text(), anchor.ca_certificates_pem());

    let status = registry.admin.status().await.unwrap();
    assert_eq!(status.serial, conf.serial());
    assert_eq!(status.expires_at, c.expires_at());
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_gets_a_higher_serial_and_removals_take_effect() {
    let mut registry = TestRegistry::start().await;
    let admin = registry.admin.clone();
    let da: MemberId = "JP/GOV/digital-agency".parse().unwrap();
    let mun: MemberId = "JP/MUN/131016".parse().unwrap();
    let portal: SubsystemId = "JP/GOV/digital-agency/portal".parse().unwrap();
    let records: SubsystemId = "JP/MUN/131016/records".parse().unwrap();
    let group: GlobalGroupId = "JP/portals".parse().unwrap();

    let last = std::cell::Cell::new(registry.serial().await);
    let expect_higher = async |what: &str| {
        let serial = registry.serial().await;
        assert!(
            serial > last.get(),
            "{what}: serial {serial} is not above {}",
            last.get()
        );
        last.set(serial);
    };

    admin
        .add_member(da.clone(), "Digital Agency")
        .await
        .unwrap();
    expect_higher("add member").await;
    admin.add_member(mun.clone(), "Chiyoda").await.unwrap();
    expect_higher("add second member").await;
    // What residents read about the member: its names and its privacy contact, published.
    let profile = |names: &[(&str, &str)], contact: Option<&str>| central_registry::ops::Profile {
        names: names
            .iter()
            .map(|(l, n)| ((*l).to_owned(), (*n).to_owned()))
            .collect(),
        privacy_contact: contact.map(str::to_owned),
    };
    admin
        .set_member_profile(
            mun.clone(),
            profile(
                &[("ja", "千代田区"), ("en", "Chiyoda City")],
                Some("mailto:kojinjoho@city.chiyoda.example.jp"),
            ),
        )
        .await
        .unwrap();
    expect_higher("member profile").await;
    let (_, conf) = registry.fetch().await;
    let chiyoda = conf.conf().member(&mun).unwrap();
    assert_eq!(chiyoda.name_in("ja"), "千代田区");
    assert_eq!(chiyoda.name_in("fr"), "Chiyoda");
    assert_eq!(
        chiyoda.privacy_contact.as_deref(),
        Some("mailto:kojinjoho@city.chiyoda.example.jp")
    );
    for (names, contact) in [
        (&[("japanese", "x")][..], None),
        (&[("ja", " ")][..], None),
        (&[][..], Some("javascript:alert(1)")),
        (&[][..], Some("http://plain.example.jp")),
    ] {
        assert!(
            admin
                .set_member_profile(mun.clone(), profile(names, contact))
                .await
                .is_err(),
            "{names:?} {contact:?}"
        );
    }
    admin.add_subsystem(portal.clone(), "Portal").await.unwrap();
    expect_higher("add subsystem").await;
    admin.add_subsystem(records.clone(), "").await.unwrap();
    expect_higher("add another subsystem").await;
    admin
        .set_subsystem_profile(
            records.clone(),
            central_registry::ops::SubsystemProfile {
                names: [("ja".to_owned(), "住民・税務".to_owned())].into(),
            },
        )
        .await
        .unwrap();
    expect_higher("subsystem profile").await;
    let (_, conf) = registry.fetch().await;
    assert_eq!(conf.conf().subsystem_names(&records)["ja"], "住民・税務");
    assert!(
        admin
            .set_subsystem_profile(
                records.clone(),
                central_registry::ops::SubsystemProfile {
                    names: [("JA".to_owned(), "x".to_owned())].into(),
                },
            )
            .await
            .is_err()
    );
    admin.add_group(group.clone(), "Portals").await.unwrap();
    expect_higher("add group").await;
    admin
        .add_group_member(group.clone(), portal.clone())
        .await
        .unwrap();
    expect_higher("add group member").await;

    let ss1 = Enrollee::new("JP/GOV/digital-agency/ss1");
    let token = admin.issue_token(ss1.id.clone()).await.unwrap();
    let now = registry.clock.unix_now();
    let r = registry
        .post_enrollment(ss1.signed(now, &token.token))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    expect_higher("enrol with token").await;
    admin
        .add_hosted_subsystem(ss1.id.clone(), portal.clone())
        .await
        .unwrap();
    // Shared hosting: the agency's server also hosts the municipality's subsystem.
    admin
        .add_hosted_subsystem(ss1.id.clone(), records.clone())
        .await
        .unwrap();
    expect_higher("host subsystems").await;

    let mun_key = SigningKey::generate().unwrap().public_key();
    admin.add_key(mun.clone(), mun_key, None).await.unwrap();
    expect_higher("add key").await;

    let (_, conf) = registry.fetch().await;
    let c = conf.conf();
    assert_eq!(c.servers_hosting(&records), std::slice::from_ref(&ss1.id));
    assert!(c.is_in_group(&group, &portal));
    assert_eq!(c.subsystem_name(&records), Some("records"));
    assert!(c.member_key_at(&mun, &mun_key.key_id(), now + 10).is_some());

    // Retiring sets valid_until; the key no longer certifies later signatures.
    let retire_at = now + 100;
    let view = admin
        .retire_key(mun.clone(), mun_key.key_id(), Some(retire_at))
        .await
        .unwrap();
    assert_eq!(view.valid_until, Some(retire_at));
    expect_higher("retire key").await;
    let (_, conf) = registry.fetch().await;
    let key = &conf.conf().member(&mun).unwrap().signing_keys[0];
    assert_eq!(key.valid_until, Some(retire_at));
    assert!(
        conf.conf()
            .member_key_at(&mun, &mun_key.key_id(), retire_at)
            .is_none()
    );

    // Removing the key takes it out of the next configuration.
    admin
        .remove_key(mun.clone(), mun_key.key_id())
        .await
        .unwrap();
    expect_higher("remove key").await;
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().member(&mun).unwrap().signing_keys.is_empty());

    // Removing a subsystem takes it out of hosting lists and groups.
    admin.remove_subsystem(records.clone()).await.unwrap();
    expect_higher("remove subsystem").await;
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().servers_hosting(&records).is_empty());
    assert_eq!(
        conf.conf().server(&ss1.id).unwrap().hosted,
        std::slice::from_ref(&portal)
    );

    // Removing the server takes it (and what it hosted) out of the next configuration.
    admin.remove_server(ss1.id.clone()).await.unwrap();
    expect_higher("remove server").await;
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().server(&ss1.id).is_none());
    assert!(conf.conf().servers_hosting(&portal).is_empty());

    // A forced publication is a new serial too; a refused change is not.
    admin.publish().await.unwrap();
    expect_higher("publish").await;
    assert!(admin.add_member(da.clone(), "again").await.is_err());
    assert_eq!(registry.serial().await, last.get());

    // Removing a member removes its subsystems and keys with it.
    admin.remove_member(da.clone()).await.unwrap();
    expect_higher("remove member").await;
    let (_, conf) = registry.fetch().await;
    assert!(conf.conf().member(&da).is_none());
    assert!(!conf.conf().has_subsystem(&portal));
    assert!(conf.conf().group(&group).unwrap().members.is_empty());

    // Every change was audited.
    let audit = admin.audit(1000).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in [
        "member.add",
        "member.profile",
        "subsystem.profile",
        "subsystem.add",
        "group.add-member",
        "token.issue",
        "enrollment.approve",
        "key.retire",
        "key.remove",
        "server.remove",
        "publish",
        "member.remove",
    ] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republishes_on_a_timer_before_expiry() {
    let mut registry = TestRegistry::start_with(|c| {
        c.republish_interval_secs = 1;
        c.configuration_validity_secs = 10;
    })
    .await;
    let first = registry.fetch().await.1;
    registry.clock.advance(Duration::from_secs(2));
    let next = eventually("timed republication", || async {
        let (_, conf) = registry.fetch().await;
        (conf.serial() > first.serial()).then_some(conf)
    })
    .await;
    assert!(next.conf().generated_at() > first.conf().generated_at());
    assert!(first.check_successor(&next).is_ok());
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_and_a_stale_configuration_is_resigned() {
    let mut registry = TestRegistry::start().await;
    let da: MemberId = "JP/GOV/digital-agency".parse().unwrap();
    registry
        .admin
        .add_member(da.clone(), "Digital Agency")
        .await
        .unwrap();
    let before = registry.admin.publication();
    registry.stop().await;
    let config = registry.config.clone();
    let clock = registry.clock.clone();
    // Release the database: the handle keeps it open.
    drop(registry.admin);

    // Reopened within the republish interval: the same publication is served.
    let reopened =
        central_registry::Registry::open(config.clone(), std::sync::Arc::new(clock.clone()))
            .unwrap();
    assert_eq!(reopened.publication().envelope, before.envelope);
    drop(reopened);

    // Reopened after the interval: a new serial with the same content.
    clock.advance(Duration::from_secs(config.republish_interval_secs + 1));
    let reopened =
        central_registry::Registry::open(config, std::sync::Arc::new(clock.clone())).unwrap();
    let after = reopened.publication();
    assert_eq!(after.serial, before.serial + 1);
    let conf = globalconf::signed::verify(&after.envelope, reopened.anchor()).unwrap();
    assert_eq!(conf.conf().member(&da).unwrap().name, "Digital Agency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_holds_the_newest_serial_gets_not_modified_without_a_body() {
    let mut registry = TestRegistry::start().await;
    let serial = registry.serial().await;
    let url = format!("{}/v1/global-configuration", registry.public_url);
    let get = |tag: String| {
        let (https, url) = (registry.https.clone(), url.clone());
        async move {
            https
                .request(
                    http::Method::GET,
                    &url,
                    &[("if-none-match", tag.as_str())],
                    bytes::Bytes::new(),
                )
                .await
                .unwrap()
        }
    };

    let r = get(format!("\"{serial}\"")).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty(), "no body when the serial is held");
    assert_eq!(r.headers["etag"], format!("\"{serial}\"").as_str());
    // HTTP compares If-None-Match weakly, and `*` matches whatever is published.
    for tag in [
        format!("W/\"{serial}\""),
        "*".to_owned(),
        format!("\"0\", W/\"{serial}\""),
    ] {
        let r = get(tag.clone()).await;
        assert_eq!(r.status, 304, "{tag}");
        assert!(r.body.is_empty(), "{tag}");
    }

    // An older serial (or a list without the current one) gets the whole configuration.
    let r = get(format!("\"{}\", \"0\"", serial.saturating_sub(1))).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        globalconf::signed::verify(&r.body, &registry.anchor)
            .unwrap()
            .serial(),
        serial
    );
    registry.stop().await;
}
