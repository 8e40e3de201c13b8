use super::*;

fn parts(method: &str, uri: &str, headers: &[(&str, &[u8])]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, HeaderValue::from_bytes(v).unwrap());
    }
    b.body(()).unwrap().into_parts().0
}

const CLIENT: (&str, &[u8]) = ("X-Road-Client", b"JP/GOV/digital-agency/portal");
const SERVICE_URL: &str = "/r1/JP/MUN/131016/records/residentRecord";

fn ok(method: &str, uri: &str, headers: &[(&str, &[u8])]) -> ClientRequest {
    parse_request(&parts(method, uri, headers)).unwrap()
}

fn err(method: &str, uri: &str, headers: &[(&str, &[u8])]) -> XRoadError {
    parse_request(&parts(method, uri, headers)).unwrap_err()
}

#[test]
fn parses_a_service_call() {
    let r = ok(
        "POST",
        "/r1/JP/MUN/131016/records/residentRecord/v1/persons/123?x=1&y=%20",
        &[
            CLIENT,
            ("x-road-id", b"abc-123"),
            ("X-Road-UserId", b"JP123"),
            ("X-Road-Issue", b"case 7"),
            ("X-Road-Security-Server", b"JP/MUN/131016/ss1"),
            ("X-Road-Represented-Party", b"GOV/0001"),
            ("X-Road-Data-Subject", "住民123".as_bytes()),
            ("X-Road-Purpose", "住民基本台帳法第30条".as_bytes()),
            ("Content-Type", b"application/json"),
        ],
    );
    assert_eq!(r.message_id, "abc-123");
    assert_eq!(r.client.to_string(), "JP/GOV/digital-agency/portal");
    assert_eq!(
        r.service.to_string(),
        "JP/MUN/131016/records/residentRecord"
    );
    assert_eq!(r.service.version(), None);
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/v1/persons/123");
    assert_eq!(r.query.as_deref(), Some("x=1&y=%20"));
    assert_eq!(r.user_id.as_deref(), Some("JP123"));
    assert_eq!(r.issue.as_deref(), Some("case 7"));
    assert_eq!(r.represented_party.as_deref(), Some("GOV/0001"));
    assert_eq!(r.data_subject.as_deref(), Some("住民123"));
    assert_eq!(r.purpose.as_deref(), Some("住民基本台帳法第30条"));
    assert_eq!(r.target_server.unwrap().to_string(), "JP/MUN/131016/ss1");
    assert_eq!(
        r.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
}

#[test]
fn path_after_the_service_code() {
    assert_eq!(ok("GET", SERVICE_URL, &[CLIENT]).path, "");
    assert_eq!(ok("GET", &format!("{SERVICE_URL}/"), &[CLIENT]).path, "/");
    let r = ok("GET", &format!("{SERVICE_URL}/a%2Fb/c%20d"), &[CLIENT]);
    assert_eq!(r.path, "/a%2Fb/c%20d", "kept percent-encoded as received");
    assert_eq!(r.query, None);
}

#[test]
fn identifier_parts_are_percent_decoded_one_by_one() {
    let r = ok(
        "GET",
        "/r1/JP/MUN/%31%33%31016/rec%3Fords/code%28x%29",
        &[("X-Road-Client", b"JP/GOV/digital%2Dagency/portal")],
    );
    assert_eq!(r.service.subsystem().member().code(), "131016");
    assert_eq!(r.service.subsystem().code(), "rec?ords");
    assert_eq!(r.service.code(), "code(x)");
    assert_eq!(r.client.member().code(), "digital-agency");
}

#[test]
fn bad_identifiers_in_the_url() {
    for uri in [
        "/r1/JP/MUN/131016/records/bar%2Fservice", // decodes to a '/', not allowed in a part
        "/r1/JP/MUN/131016/rec%20ords/svc",
        "/r1/JP/MUN/13%ZZ/records/svc",
        "/r1/JP/MUN/%E3%81%82/records/svc", // UTF-8 but outside the strict rule
        "/r1/JP/MUN/%FF/records/svc",       // not UTF-8
        "/r1/JP//131016/records/svc",
        "/r1/JP/../MUN/131016/records/svc", // a dot segment is no identifier
        "/r1/JP/MUN/131016/records/..",
        "/r1/JP/MUN/131016/%2e%2E/svc",
    ] {
        let e = err("GET", uri, &[CLIENT]);
        assert_eq!(e.code, ClientCode::InvalidServiceIdentifier, "{uri}");
        assert_eq!(e.error_type(), "Client.InvalidServiceIdentifier");
    }
    let long = "a".repeat(256);
    let e = err("GET", &format!("/r1/JP/MUN/{long}/records/svc"), &[CLIENT]);
    assert_eq!(e.code, ClientCode::InvalidServiceIdentifier);
}

#[test]
fn not_the_rest_url_form() {
    for uri in [
        "/",
        "/r1",
        "/r1/JP/MUN/131016/records",
        "/rest/JP/MUN/131016/records/svc",
        "/JP/MUN/131016/records/svc/x",
    ] {
        assert_eq!(
            err("GET", uri, &[CLIENT]).code,
            ClientCode::BadRequest,
            "{uri}"
        );
    }
    let e = err("GET", "/r2/JP/MUN/131016/records/svc", &[CLIENT]);
    assert_eq!(e.code, ClientCode::InvalidProtocolVersion);
}

#[test]
fn dot_segments_in_the_path_are_refused() {
    for tail in [
        "/..",
        "/a/../b",
        "/./a",
        "/%2e%2E/x",
        "/.%2e",
        "/..%2Fadmin",
        "/a/..%5cadmin",
        "/..;jsessionid=1/x",
        "/a/%zz",
    ] {
        let e = err("GET", &format!("{SERVICE_URL}{tail}"), &[CLIENT]);
        assert_eq!(e.code, ClientCode::BadRequest, "{tail}");
    }
    // Dots inside a name are fine.
    assert_eq!(
        ok("GET", &format!("{SERVICE_URL}/a..b/.x/..."), &[CLIENT]).path,
        "/a..b/.x/..."
    );
}

#[test]
fn unsupported_method() {
    let e = err("CONNECT", SERVICE_URL, &[CLIENT]);
    assert_eq!(e.code, ClientCode::InvalidHttpMethod);
    let e = err("FOO", SERVICE_URL, &[CLIENT]);
    assert_eq!(e.code, ClientCode::InvalidHttpMethod);
}

#[test]
fn x_road_client_is_required_once_and_well_formed() {
    let e = err("GET", SERVICE_URL, &[]);
    assert_eq!(e.code, ClientCode::InvalidClientIdentifier);
    assert!(e.message_id.is_some(), "errors carry the generated id");

    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("x-road-client", b"JP/GOV/other/portal")],
    );
    assert_eq!(e.code, ClientCode::DuplicateHeaderField);

    for bad in [
        &b"JP/GOV/../portal"[..],
        b"JP/GOV/digital-agency/.",
        b"JP/GOV",
        b"JP/GOV/digital-agency/portal/extra",
        b"JP/GOV/digital agency/portal",
        b"JP/GOV//portal",
        b"",
        b"JP/GOV/a%2Fb/portal",
    ] {
        let e = err("GET", SERVICE_URL, &[("X-Road-Client", bad)]);
        assert_eq!(
            e.code,
            ClientCode::InvalidClientIdentifier,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Case-insensitive name, surrounding whitespace ignored.
    let r = ok(
        "GET",
        SERVICE_URL,
        &[("X-ROAD-CLIENT", b" JP/GOV/digital-agency/portal\t")],
    );
    assert_eq!(r.client.subsystem().unwrap().code(), "portal");
    // PR-REST: the subsystem is optional; a member calls as itself.
    let r = ok(
        "GET",
        SERVICE_URL,
        &[("X-Road-Client", b"JP/GOV/digital-agency")],
    );
    assert_eq!(
        r.client,
        globalconf::ClientId::Member("JP/GOV/digital-agency".parse().unwrap())
    );
}

#[test]
fn generated_message_id_is_a_time_ordered_uuid_v7() {
    let r = ok("GET", SERVICE_URL, &[CLIENT]);
    let id = r.message_id;
    assert_eq!(id.len(), 36);
    for (i, c) in id.chars().enumerate() {
        if [8, 13, 18, 23].contains(&i) {
            assert_eq!(c, '-');
        } else {
            assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
        }
    }
    assert_eq!(&id[14..15], "7", "version 7: {id}");
    assert!("89ab".contains(&id[19..20]), "RFC 9562 variant: {id}");
    assert_ne!(new_message_id(), new_message_id());
    // The time is in front, so later ids sort later whatever their random bits.
    let at = |ms: u64, random: [u8; 10]| {
        uuid::Builder::from_unix_timestamp_millis(ms, &random)
            .into_uuid()
            .to_string()
    };
    let early = at(1_795_338_000_000, [0xff; 10]);
    let later = at(1_795_338_000_001, [0; 10]);
    assert!(early < later, "{early} {later}");
}

#[test]
fn message_id_rules() {
    let e = err("GET", SERVICE_URL, &[CLIENT, ("X-Road-Id", b"has space")]);
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
    let long = "x".repeat(256);
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Id", long.as_bytes())],
    );
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
    let e = err("GET", SERVICE_URL, &[CLIENT, ("X-Road-Id", "ü".as_bytes())]);
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Id", b"a"), ("X-Road-Id", b"b")],
    );
    assert_eq!(e.code, ClientCode::DuplicateHeaderField);
    let max = "x".repeat(255);
    assert_eq!(
        ok("GET", SERVICE_URL, &[CLIENT, ("X-Road-Id", max.as_bytes())]).message_id,
        max
    );
    // Later errors carry the client's id.
    let e = err(
        "GET",
        SERVICE_URL,
        &[("X-Road-Id", b"my-id"), ("X-Road-Client", b"bad")],
    );
    assert_eq!(e.message_id.as_deref(), Some("my-id"));
}

#[test]
fn other_x_road_headers() {
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Security-Server", b"JP/MUN/131016")],
    );
    assert_eq!(e.code, ClientCode::InvalidSecurityServer);
    let r = ok(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Represented-Party", b"0001")],
    );
    assert_eq!(r.represented_party.as_deref(), Some("0001"));
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Represented-Party", b"JP/GOV/0001")],
    );
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
    let long = "x".repeat(1025);
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Purpose", long.as_bytes())],
    );
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Data-Subject", "a\u{85}b".as_bytes())],
    );
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-UserId", b"\xff\xfe")],
    );
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
    let e = err(
        "GET",
        SERVICE_URL,
        &[CLIENT, ("X-Road-Issue", b"a"), ("x-road-issue", b"b")],
    );
    assert_eq!(e.code, ClientCode::DuplicateHeaderField);
    let r = ok("GET", SERVICE_URL, &[CLIENT, ("X-Road-Purpose", b"")]);
    assert_eq!(r.purpose, None);
    // A non-UTF-8 pass-through header is refused, not mangled.
    let e = err("GET", SERVICE_URL, &[CLIENT, ("X-Custom", b"\xff")]);
    assert_eq!(e.code, ClientCode::InvalidHeaderField);
}

#[test]
fn header_filtering() {
    let mut map = HeaderMap::new();
    for (n, v) in [
        ("connection", "close, X-Secret-Hop"),
        ("x-secret-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic x"),
        ("proxy-authenticate", "Basic"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("trailer", "x"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("host", "ss.example"),
        ("user-agent", "curl"),
        ("server", "nginx"),
        ("content-length", "3"),
        ("expect", "100-continue"),
        ("x-road-client", "JP/GOV/digital-agency/portal"),
        ("x-road-request-hash", "abc"),
        ("x-road-error", "Server.ServerProxy.Foo"),
        ("content-type", "application/json"),
        ("accept", "application/xml"),
        ("cache-control", "no-cache"),
        ("pragma", "no-cache"),
        ("authorization", "Bearer t"),
        ("x-custom", "a"),
        ("x-custom", "b"),
        ("x-road-my-extension", "kept"),
        ("date", "Thu, 21 Mar 2019 12:36:39 GMT"),
    ] {
        map.append(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    let kept = filter_headers(&map).unwrap();
    let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "content-type",
            "accept",
            "cache-control",
            "pragma",
            "authorization",
            "x-custom",
            "x-custom",
            "x-road-my-extension",
            "date"
        ]
    );
    assert!(kept.contains(&("x-custom".into(), "b".into())));

    let mut bad = HeaderMap::new();
    bad.insert("x-bin", HeaderValue::from_bytes(b"\xff").unwrap());
    assert_eq!(filter_headers(&bad).unwrap_err().name, "x-bin");
}

#[test]
fn apply_headers_skips_what_may_not_pass() {
    let mut map = HeaderMap::new();
    apply_headers(
        &mut map,
        [
            ("content-type", "text/plain"),
            ("Host", "evil"),
            ("transfer-encoding", "chunked"),
            ("x-road-client", "JP/X/y/z"),
            ("x-a", "1"),
            ("x-a", "2"),
        ],
    )
    .unwrap();
    assert_eq!(map.len(), 3);
    assert_eq!(map.get_all("x-a").iter().count(), 2);
    assert!(map.get("host").is_none());
    assert!(apply_headers(&mut map, [("bad name", "x")]).is_err());
    assert!(apply_headers(&mut map, [("x-b", "a\r\nb")]).is_err());
}

#[test]
fn response_headers() {
    let mut map = HeaderMap::new();
    map.insert("x-road-id", HeaderValue::from_static("forged"));
    map.insert("x-road-error", HeaderValue::from_static("forged"));
    let meta = ResponseMeta {
        message_id: "id-1".into(),
        request_id: Some("req-1".into()),
        client: "JP/GOV/digital-agency/portal".parse().unwrap(),
        service: "JP/MUN/131016/records/residentRecord".parse().unwrap(),
        request_hash_b64: "AAAA".into(),
        security_server: "JP/MUN/131016/ss1".parse().unwrap(),
    };
    write_response_headers(&mut map, &meta).unwrap();
    assert_eq!(map["x-road-client"], "JP/GOV/digital-agency/portal");
    assert_eq!(
        map["x-road-service"],
        "JP/MUN/131016/records/residentRecord"
    );
    assert_eq!(map["x-road-id"], "id-1");
    assert_eq!(map["x-road-request-id"], "req-1");
    assert_eq!(map["x-road-request-hash"], "AAAA");
    assert_eq!(map["x-road-security-server"], "JP/MUN/131016/ss1");
    assert!(map.get("x-road-error").is_none());
    assert_eq!(map.get_all("x-road-id").iter().count(), 1);
}

#[test]
fn metaservices_are_recognised() {
    let call = |m: &str, uri: &str, h: &[(&str, &[u8])]| parse_call(&parts(m, uri, h));

    assert_eq!(
        call("GET", "/listClients", &[]).unwrap(),
        ClientCall::ListClients { instance: None }
    );
    assert_eq!(
        call("GET", "/listClients?xRoadInstance=JP", &[]).unwrap(),
        ClientCall::ListClients {
            instance: Some("JP".parse().unwrap())
        }
    );
    assert_eq!(
        call("GET", "/listClients?xRoadInstance=JP&xRoadInstance=EE", &[])
            .unwrap_err()
            .code,
        ClientCode::BadRequest
    );
    assert_eq!(
        call("POST", "/listClients", &[]).unwrap_err().code,
        ClientCode::InvalidHttpMethod
    );

    // A subsystem's metaservices travel as service calls, checked first.
    for uri in [
        "/r1/JP/MUN/131016/records/listMethods",
        "/r1/JP/MUN/131016/records/allowedMethods",
        "/r1/JP/MUN/131016/records/getOpenAPI?serviceCode=resident%52ecord",
    ] {
        match call("GET", uri, &[CLIENT]).unwrap() {
            ClientCall::Service(r) => assert_eq!(r.client.subsystem().unwrap().code(), "portal"),
            other => panic!("{other:?}"),
        }
    }
    let e = call("GET", "/r1/JP/MUN/131016/records/getOpenAPI", &[CLIENT]).unwrap_err();
    assert_eq!(e.code, ClientCode::BadRequest);
    assert!(e.message_id.is_some(), "errors carry the message's id");
    let e = call(
        "GET",
        "/r1/JP/MUN/131016/records/getOpenAPI?serviceCode=a%20b",
        &[CLIENT],
    )
    .unwrap_err();
    assert_eq!(e.code, ClientCode::InvalidServiceIdentifier);
    // Metaservices travel as X-Road calls: X-Road-Client is required.
    let e = call("GET", "/r1/JP/MUN/131016/records/listMethods", &[]).unwrap_err();
    assert_eq!(e.code, ClientCode::InvalidClientIdentifier);
    let e = call("POST", "/r1/JP/MUN/131016/records/listMethods", &[CLIENT]).unwrap_err();
    assert_eq!(e.code, ClientCode::InvalidHttpMethod);
    let e = call("GET", "/r1/JP/MUN/131016/records/listMethods/x", &[CLIENT]).unwrap_err();
    assert_eq!(e.code, ClientCode::BadRequest);
    let e = call("GET", "/r1/JP/MUN/131016/records/findUsage", &[CLIENT]).unwrap_err();
    assert_eq!(e.code, ClientCode::BadRequest, "no data subject");

    assert!(matches!(
        call("GET", SERVICE_URL, &[CLIENT]).unwrap(),
        ClientCall::Service(_)
    ));
}
