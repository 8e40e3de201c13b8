use super::*;
use crate::HashedBody;
use crate::error::Code;
use crate::test_support::*;
use certs::SigningKey;

fn hashed(body: &[u8]) -> HashedBody {
    HashedBody::new(bytes::Bytes::copy_from_slice(body))
}

const SKEW: Duration = Duration::from_secs(60);
const BODY: &[u8] = b"{\"q\":1}";

fn client_request() -> ClientRequest {
    ClientRequest {
        message_id: "msg-1".into(),
        client: client_id(CLIENT),
        service: format!("{PROVIDER}/residentRecord").parse().unwrap(),
        method: Method::POST,
        path: "/persons/1".into(),
        query: Some("a=b".into()),
        headers: vec![("content-type".into(), "application/json".into())],
        user_id: Some("JP123".into()),
        issue: None,
        represented_party: None,
        data_subject: Some("subject-1".into()),
        purpose: Some("purpose".into()),
        target_server: None,
    }
}

fn header() -> pb::RequestHeader {
    build_request_header(
        &client_request(),
        "request-1",
        hashed(BODY).sha256(),
        &client_key().key_id(),
        NOW,
        &server(PROVIDER_SERVER),
    )
}

fn signed() -> pb::SignedHeader {
    sign_request(&header(), &client_key())
}

fn cache() -> ReplayCache {
    ReplayCache::new(Duration::from_secs(300), 100)
}

fn verify_with(
    signed: &pb::SignedHeader,
    body: &[u8],
    conf: &GlobalConf,
    peer: &[u8; 32],
    now: i64,
    replay: &ReplayCache,
) -> Result<VerifiedRequest, XRoadError> {
    verify_request(
        signed,
        hashed(body).sha256(),
        conf,
        peer,
        &server(PROVIDER_SERVER),
        now,
        SKEW,
        replay,
    )
}

fn verify(signed: &pb::SignedHeader) -> Result<VerifiedRequest, XRoadError> {
    verify_with(signed, BODY, &conf(), &CLIENT_CERT, NOW, &cache())
}

fn code(r: Result<VerifiedRequest, XRoadError>) -> ServerProxyCode {
    match r.unwrap_err().code {
        Code::ServerProxy(c) => c,
        other => panic!("not a server proxy's code: {other}"),
    }
}

/// Re-signs a modified header with `key`, keeping the envelope consistent.
fn resigned(h: &pb::RequestHeader, key: &SigningKey) -> pb::SignedHeader {
    sign_request(h, key)
}

#[test]
fn request_round_trip() {
    let s = signed();
    let v = verify(&s).unwrap();
    assert_eq!(v.client(), &sub(CLIENT));
    assert_eq!(v.service().code(), "residentRecord");
    assert_eq!(v.method(), Method::POST);
    assert_eq!(v.path(), "/persons/1");
    assert_eq!(v.query(), Some("a=b"));
    assert_eq!(v.peer(), &server(CLIENT_SERVER));
    assert_eq!(v.message_id(), "msg-1");
    assert_eq!(v.created_at(), NOW);
    assert_eq!(v.key_id(), &client_key().key_id());
    assert_eq!(v.signed_bytes(), s.header.as_slice());
    assert_eq!(v.signature(), s.signature.as_slice());
    assert_eq!(v.request_hash(), &request_hash(&s.header));
    assert_eq!(v.header().data_subject, "subject-1");
    assert_eq!(v.header().body_sha256, sha2::Sha256::digest(BODY).to_vec());
    assert_eq!(v.header().target_server, PROVIDER_SERVER);
    assert_eq!(s.key_id, client_key().key_id().as_str());
}

#[test]
fn sign_request_sets_the_signer_key_id() {
    let mut h = header();
    h.signer_key_id = "something else".into();
    let s = sign_request(&h, &client_key());
    let decoded = pb::RequestHeader::decode(s.header.as_slice()).unwrap();
    assert_eq!(decoded.signer_key_id, client_key().key_id().as_str());
    verify(&s).unwrap();
}

#[test]
fn request_hash_is_sha512_of_the_signed_bytes() {
    let s = signed();
    let h = request_hash(&s.header);
    assert_eq!(h.as_slice(), Sha512::digest(&s.header).as_slice());
    let b64 = request_hash_b64(&h);
    assert_eq!(BASE64.decode(&b64).unwrap(), h.to_vec());
    assert_eq!(b64.len(), 88);
}

#[test]
fn flipped_header_byte_fails_the_signature() {
    let s = signed();
    for i in 0..s.header.len() {
        let mut bad = s.clone();
        bad.header[i] ^= 0x01;
        assert_eq!(
            code(verify(&bad)),
            ServerProxyCode::InvalidSignature,
            "byte {i}"
        );
    }
}

#[test]
fn flipped_signature_byte_fails() {
    let s = signed();
    let mut bad = s.clone();
    bad.signature[10] ^= 0x80;
    assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
    bad.signature.truncate(63);
    assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
}

#[test]
fn wrong_key_id_in_the_envelope() {
    // The provider's key id: known, but the signature was not made with it.
    let mut bad = signed();
    bad.key_id = provider_key().key_id().into();
    assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
    // An id nobody holds.
    bad.key_id = SigningKey::from_seed([99; 32]).key_id().into();
    assert_eq!(code(verify(&bad)), ServerProxyCode::UnknownSigningKey);
    bad.key_id = "not-a-key-id".into();
    assert_eq!(code(verify(&bad)), ServerProxyCode::UnknownSigningKey);
}

#[test]
fn header_naming_another_key_than_the_envelope() {
    // Signed bytes that claim another key id than the one that signed them.
    let mut h = header();
    h.signer_key_id = limited_key().key_id().into();
    let bytes = h.encode_to_vec();
    let bad = pb::SignedHeader {
        signature: client_key().sign(Domain::RequestHeader, &bytes).to_vec(),
        header: bytes,
        key_id: client_key().key_id().into(),
    };
    assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidMessage);
}

#[test]
fn undecodable_bytes_are_refused_after_the_signature() {
    let bytes = vec![0xff, 0xff, 0xff];
    let bad = pb::SignedHeader {
        signature: client_key().sign(Domain::RequestHeader, &bytes).to_vec(),
        header: bytes,
        key_id: client_key().key_id().into(),
    };
    assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidMessage);
}

#[test]
fn response_signature_is_not_a_request_signature() {
    let h = header();
    let bytes = h.encode_to_vec();
    let bad = pb::SignedHeader {
        signature: client_key().sign(Domain::ResponseHeader, &bytes).to_vec(),
        header: bytes,
        key_id: client_key().key_id().into(),
    };
    assert_eq!(code(verify(&bad)), ServerProxyCode::InvalidSignature);
}

#[test]
fn key_of_another_member() {
    // Validly signed by the other member's key, but claiming our client.
    let s = resigned(&header(), &other_key());
    assert_eq!(code(verify(&s)), ServerProxyCode::SignerNotClient);
}

#[test]
fn key_removed_from_the_configuration() {
    let mut pb = proto();
    pb.members[0].signing_keys.remove(0);
    let conf = conf_from(&pb);
    let r = verify_with(&signed(), BODY, &conf, &CLIENT_CERT, NOW, &cache());
    assert_eq!(code(r), ServerProxyCode::UnknownSigningKey);
}

#[test]
fn key_not_valid_at_created_at() {
    // The limited key is valid [NOW-1000, NOW-10).
    let mut h = header();
    h.created_at = LIMITED_FROM - 1;
    let s = resigned(&h, &limited_key());
    let r = verify_with(&s, BODY, &conf(), &CLIENT_CERT, LIMITED_FROM - 1, &cache());
    assert_eq!(code(r), ServerProxyCode::KeyNotValid, "not yet valid");

    h.created_at = LIMITED_UNTIL;
    let s = resigned(&h, &limited_key());
    assert_eq!(code(verify(&s)), ServerProxyCode::KeyNotValid, "expired");

    h.created_at = LIMITED_UNTIL - 1;
    let s = resigned(&h, &limited_key());
    verify(&s).unwrap();
}

#[test]
fn clock_skew_either_way() {
    for created_at in [NOW - 61, NOW + 61] {
        let mut h = header();
        h.created_at = created_at;
        let s = resigned(&h, &client_key());
        assert_eq!(code(verify(&s)), ServerProxyCode::ClockSkew, "{created_at}");
    }
    for created_at in [NOW - 60, NOW + 60] {
        let mut h = header();
        h.created_at = created_at;
        verify(&resigned(&h, &client_key())).unwrap();
    }
}

#[test]
fn replay_is_refused() {
    let replay = cache();
    let s = signed();
    verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap();
    let r = verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW + 1, &replay);
    let e = r.unwrap_err();
    assert_eq!(e.code, ServerProxyCode::DuplicateMessage);
    assert_eq!(e.message_id.as_deref(), Some("msg-1"));
}

/// The X-Road-Id is the client's to choose and may repeat (X-Road's own proxy tests send one
/// twice): two requests with one X-Road-Id are two requests, each with its own
/// X-Road-Request-Id from the client's server.
#[test]
fn a_repeated_x_road_id_is_not_a_replay() {
    let replay = cache();
    verify_with(&signed(), BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap();
    let mut h = header();
    h.request_id = "request-2".into();
    let again = resigned(&h, &client_key());
    let v = verify_with(&again, BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap();
    assert_eq!(v.message_id(), "msg-1");
    assert_eq!(v.request_id(), "request-2");
    // The first one replayed is still refused.
    let e = verify_with(&signed(), BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap_err();
    assert_eq!(e.code, ServerProxyCode::DuplicateMessage);
}

/// A server of an earlier version sends no X-Road-Request-Id: its requests are keyed on the
/// X-Road-Id, as before.
#[test]
fn without_a_request_id_the_x_road_id_is_the_replay_key() {
    let replay = cache();
    let mut h = header();
    h.request_id.clear();
    let s = resigned(&h, &client_key());
    verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap();
    let e = verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap_err();
    assert_eq!(e.code, ServerProxyCode::DuplicateMessage);
}

#[test]
fn a_malformed_request_id_is_refused() {
    for bad in ["a b", "x\u{7f}", &"r".repeat(300)] {
        let mut h = header();
        h.request_id = bad.to_owned();
        let e = verify(&resigned(&h, &client_key())).unwrap_err();
        assert_eq!(e.code, ServerProxyCode::InvalidMessage, "{bad:?}");
    }
}

#[test]
fn refused_message_does_not_use_up_its_id() {
    let replay = cache();
    let s = signed();
    let r = verify_with(&s, b"tampered", &conf(), &CLIENT_CERT, NOW, &replay);
    assert_eq!(code(r), ServerProxyCode::InvalidBody);
    verify_with(&s, BODY, &conf(), &CLIENT_CERT, NOW, &replay).unwrap();
}

#[test]
fn altered_body() {
    let r = verify_with(
        &signed(),
        b"{\"q\":2}",
        &conf(),
        &CLIENT_CERT,
        NOW,
        &cache(),
    );
    assert_eq!(code(r), ServerProxyCode::InvalidBody);
}

#[test]
fn a_member_calling_as_itself_is_sent_only_by_a_server_it_owns() {
    let mut h = header();
    h.client = "JP/GOV/digital-agency".into();
    let signed = sign_request(&h, &client_key());
    let verified = verify_with(&signed, BODY, &conf(), &CLIENT_CERT, NOW, &cache()).unwrap();
    assert_eq!(verified.client(), &client_id("JP/GOV/digital-agency"));
    // The provider's server is not the member's, though it is a known peer.
    let r = verify_with(&signed, BODY, &conf(), &PROVIDER_CERT, NOW, &cache());
    assert_eq!(code(r), ServerProxyCode::ClientNotHostedByPeer);
    // Another member, signed with this member's key.
    let mut h = header();
    h.client = "JP/GOV/unknown".into();
    let r = verify_with(
        &sign_request(&h, &client_key()),
        BODY,
        &conf(),
        &CLIENT_CERT,
        NOW,
        &cache(),
    );
    assert_eq!(code(r), ServerProxyCode::SignerNotClient);
}

#[test]
fn peer_not_hosting_the_client() {
    let r = verify_with(&signed(), BODY, &conf(), &OTHER_CERT, NOW, &cache());
    assert_eq!(code(r), ServerProxyCode::ClientNotHostedByPeer);
    let r = verify_with(&signed(), BODY, &conf(), &[9; 32], NOW, &cache());
    assert_eq!(code(r), ServerProxyCode::ClientNotHostedByPeer);
}

#[test]
fn client_not_in_the_configuration() {
    let mut h = header();
    h.client = "JP/GOV/digital-agency/unlisted".into();
    let s = resigned(&h, &client_key());
    assert_eq!(code(verify(&s)), ServerProxyCode::UnknownMember);
}

#[test]
fn target_server_mismatch() {
    let mut h = header();
    h.target_server = OTHER_SERVER.into();
    assert_eq!(
        code(verify(&resigned(&h, &client_key()))),
        ServerProxyCode::InvalidSecurityServer
    );
    h.target_server = String::new();
    verify(&resigned(&h, &client_key())).unwrap();
}

#[test]
fn service_not_hosted_here() {
    let mut h = header();
    h.service = format!("{OTHER}/svc");
    assert_eq!(
        code(verify(&resigned(&h, &client_key()))),
        ServerProxyCode::UnknownService
    );
}

#[test]
fn malformed_fields_in_a_signed_header() {
    let cases: [fn(&mut pb::RequestHeader); 7] = [
        |h| h.client = "JP/GOV".into(),
        |h| h.service = "not a service".into(),
        |h| h.method = "CONNECT".into(),
        |h| h.path = "/a/../b".into(),
        |h| h.message_id = String::new(),
        |h| h.target_server = "x".into(),
        |h| {
            h.headers.push(pb::Header {
                name: "bad name".into(),
                value: "v".into(),
            })
        },
    ];
    for (i, f) in cases.iter().enumerate() {
        let mut h = header();
        f(&mut h);
        assert_eq!(
            code(verify(&resigned(&h, &client_key()))),
            ServerProxyCode::InvalidMessage,
            "case {i}"
        );
    }
}

// ----- responses -----

fn verified_request() -> VerifiedRequest {
    verify(&signed()).unwrap()
}

fn response_header(req: &VerifiedRequest) -> pb::ResponseHeader {
    build_response_header(
        req,
        StatusCode::OK,
        &[("content-type".into(), "application/json".into())],
        hashed(b"answer").sha256(),
        &provider_key().key_id(),
        NOW + 1,
        &server(PROVIDER_SERVER),
    )
}

fn context() -> RequestContext {
    RequestContext::new("msg-1", &signed(), &server(PROVIDER_SERVER))
}

fn verify_resp(
    signed: &pb::SignedHeader,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<VerifiedResponse, XRoadError> {
    verify_response(
        signed,
        hashed(body).sha256(),
        &conf(),
        &sub(PROVIDER),
        ctx,
        NOW + 2,
        SKEW,
    )
}

fn resp_code(r: Result<VerifiedResponse, XRoadError>) -> ClientProxyCode {
    let e = r.unwrap_err();
    assert_eq!(e.message_id.as_deref(), Some("msg-1"));
    match e.code {
        Code::ClientProxy(c) => c,
        other => panic!("not a client proxy's code: {other}"),
    }
}

#[test]
fn response_round_trip() {
    let req = verified_request();
    let s = sign_response(&response_header(&req), &provider_key());
    let v = verify_resp(&s, b"answer", &context()).unwrap();
    assert_eq!(v.status(), StatusCode::OK);
    assert_eq!(v.message_id(), "msg-1");
    assert_eq!(v.server(), &server(PROVIDER_SERVER));
    assert_eq!(
        v.headers().collect::<Vec<_>>(),
        [("content-type", "application/json")]
    );
    assert_eq!(v.request_hash_b64(), request_hash_b64(req.request_hash()));
    assert_eq!(v.signed_bytes(), s.header.as_slice());
    assert_eq!(v.key_id(), &provider_key().key_id());
    assert_eq!(v.created_at(), NOW + 1);
}

#[test]
fn response_with_wrong_request_hash() {
    let req = verified_request();
    let mut h = response_header(&req);
    h.request_hash[0] ^= 1;
    let s = sign_response(&h, &provider_key());
    assert_eq!(
        resp_code(verify_resp(&s, b"answer", &context())),
        ClientProxyCode::InvalidRequestHash
    );
    // Also when our own context is of another request.
    let s = sign_response(&response_header(&req), &provider_key());
    let mut ctx = context();
    ctx.request_hash = request_hash(b"another request");
    assert_eq!(
        resp_code(verify_resp(&s, b"answer", &ctx)),
        ClientProxyCode::InvalidRequestHash
    );
}

#[test]
fn response_signed_by_another_member() {
    let req = verified_request();
    let s = sign_response(&response_header(&req), &other_key());
    assert_eq!(
        resp_code(verify_resp(&s, b"answer", &context())),
        ClientProxyCode::SignerNotProvider
    );
}

#[test]
fn response_body_altered() {
    let req = verified_request();
    let s = sign_response(&response_header(&req), &provider_key());
    assert_eq!(
        resp_code(verify_resp(&s, b"answer!", &context())),
        ClientProxyCode::InvalidBody
    );
}

#[test]
fn response_other_failures() {
    let req = verified_request();
    let good = sign_response(&response_header(&req), &provider_key());

    let mut bad = good.clone();
    bad.header[3] ^= 1;
    assert_eq!(
        resp_code(verify_resp(&bad, b"answer", &context())),
        ClientProxyCode::InvalidSignature
    );
    // A request signature never passes as a response signature.
    let bytes = good.header.clone();
    let bad = pb::SignedHeader {
        signature: provider_key().sign(Domain::RequestHeader, &bytes).to_vec(),
        header: bytes,
        key_id: provider_key().key_id().into(),
    };
    assert_eq!(
        resp_code(verify_resp(&bad, b"answer", &context())),
        ClientProxyCode::InvalidSignature
    );

    let mut ctx = context();
    ctx.message_id = "msg-2".into();
    let e = verify_resp(&good, b"answer", &ctx).unwrap_err();
    assert_eq!(e.code, ClientProxyCode::InconsistentResponse);

    let mut ctx = context();
    ctx.server = server(OTHER_SERVER);
    assert_eq!(
        resp_code(verify_resp(&good, b"answer", &ctx)),
        ClientProxyCode::InconsistentResponse
    );

    let r = verify_response(
        &good,
        hashed(b"answer").sha256(),
        &conf(),
        &sub(PROVIDER),
        &context(),
        NOW + 100,
        SKEW,
    );
    assert_eq!(resp_code(r), ClientProxyCode::ClockSkew);

    let mut h = response_header(&req);
    h.status = 1000;
    assert_eq!(
        resp_code(verify_resp(
            &sign_response(&h, &provider_key()),
            b"answer",
            &context()
        )),
        ClientProxyCode::InvalidResponse
    );

    let mut pb = proto();
    pb.members[1].signing_keys.clear();
    let r = verify_response(
        &good,
        hashed(b"answer").sha256(),
        &conf_from(&pb),
        &sub(PROVIDER),
        &context(),
        NOW + 2,
        SKEW,
    );
    assert_eq!(resp_code(r), ClientProxyCode::UnknownSigningKey);
}

#[test]
fn provider_request_headers_come_from_the_verified_header() {
    let v = verified_request();
    let rights = crate::access::AccessRights::new(vec![crate::access::Grant {
        service: v.service().clone(),
        subject: crate::access::Subject::Subsystem(sub(CLIENT)),
        method: None,
        path: None,
    }]);
    let authorized = rights.authorize(&v, &conf()).unwrap();
    let mut map = http::HeaderMap::new();
    authorized.provider_request_headers(&mut map).unwrap();
    assert_eq!(map["content-type"], "application/json");
    assert_eq!(map["x-road-client"], CLIENT);
    assert_eq!(map["x-road-service"], format!("{PROVIDER}/residentRecord"));
    assert_eq!(map["x-road-id"], "msg-1");
    assert_eq!(map["x-road-request-id"], "request-1");
    assert_eq!(map["x-road-userid"], "JP123");
    assert_eq!(map["x-road-data-subject"], "subject-1");
    assert!(map.get("x-road-issue").is_none());
}
