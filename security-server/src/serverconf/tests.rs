use super::*;
use crate::usage::SuppressedClient;

fn rule(client: &str, delay_secs: Option<u64>) -> Suppression {
    Suppression {
        client: client.parse().unwrap(),
        delay_secs,
        reason: "investigation".into(),
    }
}

#[test]
fn a_service_whose_openapi_description_is_not_openapi_3_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conf = ServerConf::open(&dir.path().join("serverconf.redb")).unwrap();
    let entry = |openapi: Option<&str>| ServiceEntry {
        id: "JP/MUN/131016/records/residentRecord".parse().unwrap(),
        url: "http://127.0.0.1:1/records".into(),
        timeout_secs: 10,
        openapi: openapi.map(str::to_owned),
        names: Default::default(),
    };
    for bad in ["swagger: '2.0'\n", "{\"openapi\": ", "just text"] {
        let e = conf.add_service(entry(Some(bad))).unwrap_err();
        assert!(e.to_string().contains("OpenAPI description"), "{e}");
    }
    assert!(conf.snapshot().services.is_empty());
    assert!(conf.add_service(entry(Some("openapi: 3.0.3\n"))).unwrap());
    assert!(!conf.add_service(entry(Some("openapi: 3.0.3\n"))).unwrap());
    assert!(!conf.add_service(entry(None)).unwrap());
}

#[test]
fn suppression_rules_persist_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serverconf.redb");
    {
        let conf = ServerConf::open(&path).unwrap();
        assert!(conf.suppress(rule("JP/GOV/npa", None)).unwrap());
        // The same rule again changes nothing and is not audited.
        assert!(!conf.suppress(rule("JP/GOV/npa", None)).unwrap());
        // A rule for the same client replaces the earlier one.
        assert!(!conf.suppress(rule("JP/GOV/npa", Some(86_400))).unwrap());
        assert!(conf.suppress(rule("JP/MUN/271004/welfare", None)).unwrap());
        assert!(conf.suppress(rule("JP/GOV/x", Some(0))).is_err());
    }
    let conf = ServerConf::open(&path).unwrap();
    let rules = conf.snapshot().suppressions.clone();
    assert_eq!(
        rules,
        [
            rule("JP/GOV/npa", Some(86_400)),
            rule("JP/MUN/271004/welfare", None)
        ]
    );
    let npa: SuppressedClient = "JP/GOV/npa".parse().unwrap();
    assert!(conf.unsuppress(&npa).unwrap());
    assert!(!conf.unsuppress(&npa).unwrap());
    let actions: Vec<String> = conf
        .audit(100)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "suppression.add",
            "suppression.add",
            "suppression.add",
            "suppression.remove"
        ]
    );
    let last = conf.audit(1).unwrap().remove(0);
    assert_eq!(last.details["rule"]["client"], "JP/GOV/npa");
    assert_eq!(last.details["rule"]["delay_secs"], 86_400);
}

#[test]
fn find_usage_is_granted_without_a_service_entry_but_other_codes_are_not() {
    let conf = ServerConf::in_memory();
    let grant = |service: &str| Grant {
        service: service.parse().unwrap(),
        subject: "JP/GOV/digital-agency/portal".parse().unwrap(),
        method: None,
        path: None,
    };
    assert!(
        conf.grant(grant("JP/MUN/131016/records/findUsage"))
            .unwrap()
    );
    assert!(matches!(
        conf.grant(grant("JP/MUN/131016/records/residentRecord")),
        Err(ServerConfError::UnknownService(_))
    ));
}

#[test]
fn service_names_are_a_language_code_and_a_short_line() {
    let conf = ServerConf::in_memory();
    let entry = |lang: &str, name: &str| ServiceEntry {
        id: "JP/MUN/131016/records/residentRecord".parse().unwrap(),
        url: "http://127.0.0.1:1/records".into(),
        timeout_secs: 10,
        openapi: None,
        names: [(lang.to_owned(), name.to_owned())].into_iter().collect(),
    };
    assert!(conf.add_service(entry("ja", "住民票")).unwrap());
    assert_eq!(
        conf.snapshot().services.values().next().unwrap().names["ja"],
        "住民票"
    );
    for (lang, name) in [("JA", "x"), ("j", "x"), ("ja", " "), ("ja", "a\nb")] {
        assert!(
            conf.add_service(entry(lang, name)).is_err(),
            "{lang} {name:?}"
        );
    }
    assert!(conf.add_service(entry("en", &"x".repeat(201))).is_err());
}
