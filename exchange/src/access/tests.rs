use super::*;
use crate::test_support::{CLIENT, GROUP, OTHER, PROVIDER, client_id, conf, sub, verified};

fn service(code: &str) -> ServiceId {
    format!("{PROVIDER}/{code}").parse().unwrap()
}

fn grant(subject: &str, method: Option<Method>, path: Option<&str>) -> Grant {
    Grant {
        service: service("records"),
        subject: subject.parse().unwrap(),
        method,
        path: path.map(str::to_owned),
    }
}

fn allows(rights: &AccessRights, client: &str, method: Method, path: &str) -> bool {
    rights.allows(
        &client_id(client),
        &service("records"),
        &method,
        path,
        &conf(),
    )
}

#[test]
fn deny_by_default() {
    let rights = AccessRights::default();
    assert!(!allows(&rights, CLIENT, Method::GET, ""));
    let rights = AccessRights::new(vec![grant(OTHER, None, None)]);
    assert!(!allows(&rights, CLIENT, Method::GET, ""));
}

#[test]
fn subsystem_grant() {
    let rights = AccessRights::new(vec![grant(CLIENT, None, None)]);
    assert!(allows(&rights, CLIENT, Method::GET, ""));
    assert!(allows(&rights, CLIENT, Method::DELETE, "/anything/at/all"));
    assert!(!allows(&rights, OTHER, Method::GET, ""));
    // Another service of the same provider is not covered.
    assert!(!rights.allows(
        &client_id(CLIENT),
        &service("other"),
        &Method::GET,
        "",
        &conf()
    ));
}

#[test]
fn group_grant() {
    let rights = AccessRights::new(vec![grant(GROUP, None, None)]);
    assert!(
        allows(&rights, CLIENT, Method::GET, "/x"),
        "CLIENT is in the group"
    );
    assert!(!allows(&rights, OTHER, Method::GET, "/x"));
    let rights = AccessRights::new(vec![grant("JP/nobody", None, None)]);
    assert!(!allows(&rights, CLIENT, Method::GET, "/x"));
}

#[test]
fn federated_subsystems_are_granted_by_name_and_groups_stay_per_instance() {
    // A subsystem of a federated instance is granted by its identifier, as any other.
    const FOREIGN: &str = "FI/GOV/0245437-2/population";
    let rights = AccessRights::new(vec![grant(FOREIGN, None, None)]);
    assert!(allows(&rights, FOREIGN, Method::GET, "/x"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/x"));
    // A group is looked up in this instance's configuration: its members only, and another
    // instance's group grants nothing.
    let rights = AccessRights::new(vec![grant(GROUP, None, None)]);
    assert!(!allows(&rights, FOREIGN, Method::GET, "/x"));
    let rights = AccessRights::new(vec![grant("FI/portals", None, None)]);
    assert!(!allows(&rights, FOREIGN, Method::GET, "/x"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/x"));
}

#[test]
fn method_restriction() {
    let rights = AccessRights::new(vec![grant(CLIENT, Some(Method::GET), None)]);
    assert!(allows(&rights, CLIENT, Method::GET, "/x"));
    assert!(!allows(&rights, CLIENT, Method::POST, "/x"));
}

#[test]
fn one_segment_wildcard() {
    let rights = AccessRights::new(vec![grant(CLIENT, None, Some("/records/*"))]);
    assert!(allows(&rights, CLIENT, Method::GET, "/records/1"));
    assert!(allows(&rights, CLIENT, Method::GET, "/records/a%20b"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/records"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/records/"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/records/1/2"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/records/1%2F2"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/records/1%5C2"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/other/1"));
    assert!(!allows(&rights, CLIENT, Method::GET, ""));
}

#[test]
fn remainder_wildcard() {
    let rights = AccessRights::new(vec![grant(CLIENT, None, Some("/records/**"))]);
    for ok in ["/records", "/records/", "/records/1", "/records/1/2/3"] {
        assert!(allows(&rights, CLIENT, Method::GET, ok), "{ok}");
    }
    for no in ["/record", "/recordsx/1", "/", ""] {
        assert!(!allows(&rights, CLIENT, Method::GET, no), "{no}");
    }
}

#[test]
fn literal_segments_compare_decoded() {
    let rights = AccessRights::new(vec![grant(CLIENT, None, Some("/a%20b/c"))]);
    assert!(allows(&rights, CLIENT, Method::GET, "/a b/c"));
    assert!(allows(&rights, CLIENT, Method::GET, "/a%20b/c"));
    assert!(allows(&rights, CLIENT, Method::GET, "/a%20b/%63"));
    assert!(!allows(&rights, CLIENT, Method::GET, "/a%20b/C"));
}

#[test]
fn dot_segments_never_match() {
    let rights = AccessRights::new(vec![
        grant(CLIENT, None, Some("/records/**")),
        grant(CLIENT, Some(Method::PUT), None),
    ]);
    for path in [
        "/records/../admin",
        "/records/%2e%2e/admin",
        "/records/..%2Fadmin",
        "/records/..;x/admin",
        "/records/./1",
        "/records/%zz",
    ] {
        assert!(!allows(&rights, CLIENT, Method::GET, path), "{path}");
        assert!(!allows(&rights, CLIENT, Method::PUT, path), "{path}");
    }
}

#[test]
fn invalid_patterns_never_match() {
    for p in [
        "records",
        "/a/**/b",
        "/a*",
        "/../x",
        "/%2e%2e/**",
        "/a%2Fb",
        "/%zz",
    ] {
        let g = grant(CLIENT, None, Some(p));
        assert!(g.validate().is_err(), "{p}");
        let rights = AccessRights::new(vec![g]);
        assert!(!allows(&rights, CLIENT, Method::GET, "/a/x/b"), "{p}");
    }
    let g = grant(CLIENT, Some(Method::CONNECT), None);
    assert!(matches!(g.validate(), Err(GrantError::Method(_))));
    assert!(!allows(
        &AccessRights::new(vec![g]),
        CLIENT,
        Method::CONNECT,
        ""
    ));
}

#[test]
fn versioned_grants() {
    let mut g = grant(CLIENT, None, None);
    g.service = format!("{PROVIDER}/records/v2").parse().unwrap();
    let rights = AccessRights::new(vec![g]);
    let v2: ServiceId = format!("{PROVIDER}/records/v2").parse().unwrap();
    let v1: ServiceId = format!("{PROVIDER}/records/v1").parse().unwrap();
    assert!(rights.allows(&client_id(CLIENT), &v2, &Method::GET, "", &conf()));
    assert!(!rights.allows(&client_id(CLIENT), &v1, &Method::GET, "", &conf()));
    assert!(
        !allows(&rights, CLIENT, Method::GET, ""),
        "unversioned call"
    );
    // An unversioned grant covers every version.
    let rights = AccessRights::new(vec![grant(CLIENT, None, None)]);
    assert!(rights.allows(&client_id(CLIENT), &v1, &Method::GET, "", &conf()));
}

#[test]
fn add_and_remove() {
    let mut rights = AccessRights::new(vec![grant(CLIENT, None, None), grant(CLIENT, None, None)]);
    assert_eq!(rights.grants().len(), 1);
    assert!(!rights.add(grant(CLIENT, None, None)));
    assert!(rights.add(grant(CLIENT, Some(Method::GET), None)));
    assert_eq!(rights.grants().len(), 2);
    assert!(rights.remove(&grant(CLIENT, None, None)));
    assert!(!rights.remove(&grant(CLIENT, None, None)));
    assert!(!allows(&rights, CLIENT, Method::POST, ""));
    assert!(allows(&rights, CLIENT, Method::GET, ""));
}

#[test]
fn allowed_methods_lists_the_clients_services() {
    let mut other_service = grant(GROUP, Some(Method::POST), Some("/x"));
    other_service.service = service("alpha");
    let mut foreign = grant(CLIENT, None, None);
    foreign.service = format!("{OTHER}/svc").parse().unwrap();
    let rights = AccessRights::new(vec![
        grant(CLIENT, Some(Method::GET), Some("/records/*")),
        grant(GROUP, Some(Method::GET), Some("/records/*")),
        grant(OTHER, None, None),
        grant(CLIENT, None, None),
        other_service,
        foreign,
    ]);
    let list = rights.allowed_methods(&client_id(CLIENT), &sub(PROVIDER), &conf());
    assert_eq!(
        list,
        vec![
            (
                service("alpha"),
                vec![Endpoint {
                    method: Some("POST".into()),
                    path: Some("/x".into())
                }]
            ),
            (
                service("records"),
                vec![
                    Endpoint {
                        method: None,
                        path: None
                    },
                    Endpoint {
                        method: Some("GET".into()),
                        path: Some("/records/*".into())
                    },
                ]
            ),
        ]
    );
    assert!(
        rights
            .allowed_methods(&client_id(OTHER), &sub(PROVIDER), &conf())
            .iter()
            .all(|(s, _)| s == &service("records"))
    );
}

#[test]
fn serde_form() {
    let g = grant(GROUP, Some(Method::GET), Some("/records/*"));
    let json = serde_json::to_value(&g).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "service": format!("{PROVIDER}/records"),
            "subject": GROUP,
            "method": "GET",
            "path": "/records/*",
        })
    );
    assert_eq!(serde_json::from_value::<Grant>(json).unwrap(), g);

    let g: Grant = serde_json::from_value(serde_json::json!({
        "service": format!("{PROVIDER}/records"),
        "subject": CLIENT,
        "method": "get",
    }))
    .unwrap();
    assert_eq!(g.subject, Subject::Subsystem(sub(CLIENT)));
    assert_eq!(g.method, Some(Method::GET));
    assert_eq!(g.path, None);
    let json = serde_json::to_string(&AccessRights::new(vec![g])).unwrap();
    assert!(json.starts_with('['), "{json}");
    assert!(!json.contains("path"), "{json}");

    for bad in [
        serde_json::json!({"service": format!("{PROVIDER}/records"), "subject": "JP/GOV/x/y/z"}),
        serde_json::json!({"service": format!("{PROVIDER}/records"), "subject": CLIENT, "method": "CONNECT"}),
        serde_json::json!({"service": format!("{PROVIDER}/records"), "subject": CLIENT, "extra": 1}),
    ] {
        assert!(
            serde_json::from_value::<Grant>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_grant_to_a_member_covers_the_member_calling_as_itself_and_not_its_subsystems() {
    let member = sub(CLIENT).member().to_string();
    let rights = AccessRights::new(vec![grant(&member, None, None)]);
    let allows = |client: &str| {
        rights.allows(
            &client_id(client),
            &service("records"),
            &Method::GET,
            "",
            &conf(),
        )
    };
    assert!(allows(&member));
    assert!(!allows(CLIENT), "its subsystem is a client of its own");
    // And a grant to the subsystem does not cover the member.
    let rights = AccessRights::new(vec![grant(CLIENT, None, None)]);
    assert!(!rights.allows(
        &client_id(&member),
        &service("records"),
        &Method::GET,
        "",
        &conf()
    ));
}

#[test]
fn authorize_gives_the_proof_only_when_a_grant_allows() {
    let rights = AccessRights::new(vec![grant(CLIENT, Some(Method::GET), Some("/persons/*"))]);
    let request = verified("records", Method::GET, "/persons/1");
    let proof = rights.authorize(&request, &conf()).unwrap();
    assert_eq!(proof.request().message_id(), request.message_id());

    for (method, path) in [(Method::POST, "/persons/1"), (Method::GET, "/other")] {
        let request = verified("records", method, path);
        let e = rights.authorize(&request, &conf()).unwrap_err();
        assert_eq!(e.code, ServerProxyCode::AccessDenied);
        assert_eq!(e.message_id.as_deref(), Some(request.message_id()));
    }
    let e = AccessRights::default()
        .authorize(&verified("records", Method::GET, ""), &conf())
        .unwrap_err();
    assert_eq!(e.code, ServerProxyCode::AccessDenied, "deny by default");
}

#[test]
fn a_grant_of_find_usage_covers_usage_evidence_and_nothing_else() {
    let rights = AccessRights::new(vec![Grant {
        service: service(metaservice::FIND_USAGE),
        subject: CLIENT.parse().unwrap(),
        method: None,
        path: None,
    }]);
    for code in [metaservice::FIND_USAGE, metaservice::USAGE_EVIDENCE] {
        let request = verified(code, Method::GET, "");
        assert!(rights.authorize(&request, &conf()).is_ok(), "{code}");
    }
    let request = verified("records", Method::GET, "");
    assert!(rights.authorize(&request, &conf()).is_err());
    let only_evidence = AccessRights::new(vec![Grant {
        service: service(metaservice::USAGE_EVIDENCE),
        subject: CLIENT.parse().unwrap(),
        method: None,
        path: None,
    }]);
    let request = verified(metaservice::USAGE_EVIDENCE, Method::GET, "");
    assert!(
        only_evidence.authorize(&request, &conf()).is_err(),
        "usageEvidence is granted through findUsage only"
    );
}

#[test]
fn the_provider_sees_the_signed_headers() {
    let rights = AccessRights::new(vec![grant(CLIENT, None, None)]);
    let request = verified("records", Method::GET, "");
    let proof = rights.authorize(&request, &conf()).unwrap();
    let mut map = http::HeaderMap::new();
    map.insert("x-road-client", http::HeaderValue::from_static("forged"));
    proof.provider_request_headers(&mut map).unwrap();
    assert_eq!(map["x-road-client"], CLIENT);
    assert_eq!(map["x-road-data-subject"], "subject-1");
    assert!(map.get("x-road-purpose").is_none());
}
