#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The local configuration survives a restart, every change leaves an audit record in the same
//! transaction, and removing a service takes its grants with it.

use std::sync::Arc;

use certs::ManualClock;
use exchange::access::Grant;
use globalconf::ServiceId;
use security_server::serverconf::{ServerConf, ServerConfError, ServiceEntry};

const RECORDS: &str = "JP/MUN/131016/records/residentRecord";
const TAX: &str = "JP/MUN/131016/records/taxRecord";
const PORTAL: &str = "JP/GOV/digital-agency/portal";
const GROUP: &str = "JP/portals";

fn service(id: &str) -> ServiceEntry {
    ServiceEntry {
        id: id.parse().unwrap(),
        url: "http://127.0.0.1:9000/api".into(),
        timeout_secs: 30,
        openapi: Some("{\"openapi\": \"3.0.3\"}".into()),
        names: Default::default(),
    }
}

fn grant(service: &str, subject: &str, method: Option<&str>, path: Option<&str>) -> Grant {
    serde_json::from_value(serde_json::json!({
        "service": service,
        "subject": subject,
        "method": method,
        "path": path,
    }))
    .unwrap()
}

fn id(s: &str) -> ServiceId {
    s.parse().unwrap()
}

#[test]
fn services_and_grants_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serverconf.redb");
    let by_path = grant(RECORDS, PORTAL, Some("GET"), Some("/persons/*"));
    let to_group = grant(TAX, GROUP, None, None);
    {
        let conf = ServerConf::open(&path).unwrap();
        assert!(conf.snapshot().services.is_empty());
        assert!(conf.add_service(service(RECORDS)).unwrap());
        assert!(conf.add_service(service(TAX)).unwrap());
        assert!(conf.grant(by_path.clone()).unwrap());
        assert!(conf.grant(to_group.clone()).unwrap());
        let mut replaced = service(TAX);
        replaced.timeout_secs = 5;
        assert!(!conf.add_service(replaced).unwrap(), "a replacement");
    }

    let conf = ServerConf::open(&path).unwrap();
    let snapshot = conf.snapshot();
    assert_eq!(snapshot.service(&id(RECORDS)), Some(&service(RECORDS)));
    assert_eq!(snapshot.service(&id(TAX)).unwrap().timeout_secs, 5);
    assert_eq!(snapshot.access.grants(), &[by_path, to_group]);
    assert_eq!(conf.audit(100).unwrap().len(), 5);
}

#[test]
fn every_change_is_audited_with_the_injected_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serverconf.redb");
    let clock = ManualClock::at_unix(1_800_000_000);
    let conf = ServerConf::open(&path)
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let g = grant(RECORDS, PORTAL, Some("get"), None);

    conf.add_service(service(RECORDS)).unwrap();
    clock.advance(std::time::Duration::from_secs(10));
    conf.grant(g.clone()).unwrap();
    // Changes that change nothing are not changes: no record.
    assert!(!conf.grant(g.clone()).unwrap());
    assert!(!conf.add_service(service(RECORDS)).unwrap());
    assert!(conf.revoke(&g).unwrap());
    assert!(!conf.revoke(&g).unwrap());
    assert!(conf.remove_service(&id(RECORDS)).unwrap());
    assert!(!conf.remove_service(&id(RECORDS)).unwrap());
    drop(conf);

    let audit = ServerConf::open(&path).unwrap().audit(100).unwrap();
    let actions: Vec<(u64, i64, &str)> = audit
        .iter()
        .map(|e| (e.seq, e.time, e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            (1, 1_800_000_000, "service.add"),
            (2, 1_800_000_010, "access.grant"),
            (3, 1_800_000_010, "access.revoke"),
            (4, 1_800_000_010, "service.remove"),
        ]
    );
    assert_eq!(audit[0].details["id"], RECORDS);
    assert_eq!(audit[0].details["url"], "http://127.0.0.1:9000/api");
    assert_eq!(audit[1].details, serde_json::to_value(&g).unwrap());
    assert_eq!(audit[1].details["method"], "GET");
    assert_eq!(audit[2].details, serde_json::to_value(&g).unwrap());

    // `limit` keeps the newest, oldest first.
    let conf = ServerConf::open(&path).unwrap();
    let newest: Vec<u64> = conf.audit(2).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(newest, vec![3, 4]);
}

#[test]
fn the_in_memory_configuration_audits_too() {
    let conf = ServerConf::in_memory().with_clock(Arc::new(ManualClock::at_unix(7)));
    conf.add_service(service(RECORDS)).unwrap();
    conf.grant(grant(RECORDS, PORTAL, None, None)).unwrap();
    let audit = conf.audit(10).unwrap();
    assert_eq!(
        audit
            .iter()
            .map(|e| (e.seq, e.time, e.action.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, 7, "service.add"), (2, 7, "access.grant")]
    );
    assert_eq!(conf.audit(1).unwrap()[0].seq, 2);
}

#[test]
fn removing_a_service_drops_its_grants_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serverconf.redb");
    let conf = ServerConf::open(&path).unwrap();
    conf.add_service(service(RECORDS)).unwrap();
    conf.add_service(service(TAX)).unwrap();
    let records_whole = grant(RECORDS, PORTAL, None, None);
    let records_path = grant(RECORDS, GROUP, Some("GET"), Some("/persons/**"));
    // Served by the unversioned entry alone, so it goes with it.
    let records_v2 = grant(&format!("{RECORDS}/v2"), PORTAL, None, None);
    let tax = grant(TAX, PORTAL, None, None);
    for g in [&records_whole, &records_path, &records_v2, &tax] {
        assert!(conf.grant(g.clone()).unwrap());
    }

    assert!(conf.remove_service(&id(RECORDS)).unwrap());
    assert_eq!(conf.snapshot().access.grants(), std::slice::from_ref(&tax));
    let audit = conf.audit(1).unwrap();
    assert_eq!(audit[0].action, "service.remove");
    assert_eq!(
        audit[0].details["grants_removed"],
        serde_json::to_value([&records_whole, &records_path, &records_v2]).unwrap()
    );
    drop(conf);

    let conf = ServerConf::open(&path).unwrap();
    assert_eq!(conf.snapshot().access.grants(), &[tax]);
    assert!(conf.snapshot().service(&id(RECORDS)).is_none());
}

#[test]
fn invalid_changes_are_refused_and_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serverconf.redb");
    let conf = ServerConf::open(&path).unwrap();
    for url in [
        "ftp://host/x",
        "http://",
        "not a url",
        "http://host/x?q=1",
        "http://host/x#f",
        "http://user:pw@host/x",
        "/relative",
    ] {
        let mut entry = service(RECORDS);
        entry.url = url.into();
        assert!(
            matches!(conf.add_service(entry), Err(ServerConfError::Invalid(_))),
            "{url}"
        );
    }
    for timeout_secs in [0, 86_401] {
        let mut entry = service(RECORDS);
        entry.timeout_secs = timeout_secs;
        assert!(matches!(
            conf.add_service(entry),
            Err(ServerConfError::Invalid(_))
        ));
    }
    // A grant needs the service, and a valid pattern.
    assert!(matches!(
        conf.grant(grant(RECORDS, PORTAL, None, None)),
        Err(ServerConfError::UnknownService(_))
    ));
    conf.add_service(service(RECORDS)).unwrap();
    assert!(matches!(
        conf.grant(grant(RECORDS, PORTAL, None, Some("/a/**/b"))),
        Err(ServerConfError::Invalid(_))
    ));
    assert!(conf.snapshot().access.grants().is_empty());
    assert_eq!(conf.audit(100).unwrap().len(), 1, "only the service.add");
}

#[test]
fn a_database_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serverconf.redb");
    let _held = ServerConf::open(&path).unwrap();
    let err = ServerConf::open(&path).unwrap_err();
    assert!(matches!(err, ServerConfError::Storage(_)), "{err}");
}
