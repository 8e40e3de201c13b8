//! A small federation for the tests of this crate: three members with their keys and servers,
//! and a request verified end to end.

use certs::SigningKey;
use globalconf::testing::ConfBuilder;
use globalconf::{GlobalConf, SecurityServerId, SubsystemId};
use proto::v1 as pb;

/// The tests' clock.
pub const NOW: i64 = 1_700_000_000;
/// When the ordinary keys became valid.
pub const KEYS_FROM: i64 = 1_600_000_000;
/// The window of the client's short-lived key.
pub const LIMITED_FROM: i64 = NOW - 1000;
pub const LIMITED_UNTIL: i64 = NOW - 10;

pub const CLIENT: &str = "JP/GOV/digital-agency/portal";
pub const CLIENT_SERVER: &str = "JP/GOV/digital-agency/ss1";
pub const PROVIDER: &str = "JP/MUN/131016/records";
pub const PROVIDER_SERVER: &str = "JP/MUN/131016/ss1";
pub const OTHER: &str = "JP/MUN/131024/other";
pub const OTHER_SERVER: &str = "JP/MUN/131024/ss1";
pub const GROUP: &str = "JP/portals";
pub const CLIENT_CERT: [u8; 32] = [1; 32];
pub const PROVIDER_CERT: [u8; 32] = [2; 32];
pub const OTHER_CERT: [u8; 32] = [3; 32];

pub fn client_key() -> SigningKey {
    SigningKey::from_seed([11; 32])
}
/// A second key of the client's member, valid only from LIMITED_FROM to LIMITED_UNTIL.
pub fn limited_key() -> SigningKey {
    SigningKey::from_seed([12; 32])
}
pub fn provider_key() -> SigningKey {
    SigningKey::from_seed([21; 32])
}
pub fn other_key() -> SigningKey {
    SigningKey::from_seed([31; 32])
}

pub fn sub(s: &str) -> SubsystemId {
    s.parse().unwrap()
}

/// A client identifier (a subsystem, or a member when `id` has three parts).
pub fn client_id(id: &str) -> globalconf::ClientId {
    id.parse().unwrap()
}
pub fn server(s: &str) -> SecurityServerId {
    s.parse().unwrap()
}

/// Three members (client, provider, other), one server each, one global group holding the
/// client subsystem.
pub fn proto() -> pb::GlobalConfiguration {
    ConfBuilder::new("JP", NOW - 100)
        .subsystem(CLIENT)
        .key("JP/GOV/digital-agency", &client_key(), KEYS_FROM, 0)
        .key(
            "JP/GOV/digital-agency",
            &limited_key(),
            LIMITED_FROM,
            LIMITED_UNTIL,
        )
        .subsystem(PROVIDER)
        .key("JP/MUN/131016", &provider_key(), KEYS_FROM, 0)
        .subsystem(OTHER)
        .key("JP/MUN/131024", &other_key(), KEYS_FROM, 0)
        .server(CLIENT_SERVER, CLIENT_CERT, &[CLIENT])
        .server(PROVIDER_SERVER, PROVIDER_CERT, &[PROVIDER])
        .server(OTHER_SERVER, OTHER_CERT, &[OTHER])
        .group(GROUP, &[CLIENT])
        .proto()
}

pub fn conf_from(pb: &pb::GlobalConfiguration) -> GlobalConf {
    globalconf::testing::conf_of(pb)
}

pub fn conf() -> GlobalConf {
    conf_from(&proto())
}

/// A request of CLIENT to `PROVIDER/code`, signed by the client's server and verified by
/// the provider's.
#[allow(clippy::unwrap_used)]
pub fn verified(code: &str, method: http::Method, path: &str) -> crate::VerifiedRequest {
    use std::time::Duration;

    let request = crate::rest::ClientRequest {
        message_id: format!("id-{code}-{method}-{path}"),
        client: client_id(CLIENT),
        service: format!("{PROVIDER}/{code}").parse().unwrap(),
        method,
        path: path.into(),
        query: None,
        headers: Vec::new(),
        user_id: None,
        issue: None,
        represented_party: None,
        data_subject: Some("subject-1".into()),
        purpose: None,
        target_server: None,
    };
    let body = crate::HashedBody::new(bytes::Bytes::new());
    let to = server(PROVIDER_SERVER);
    let header = crate::message::build_request_header(
        &request,
        "request-1",
        body.sha256(),
        &client_key().key_id(),
        NOW,
        &to,
    );
    let signed = crate::message::sign_request(&header, &client_key());
    let replay = crate::replay::ReplayCache::new(Duration::from_secs(600), 10);
    let skew = Duration::from_secs(60);
    crate::message::verify_request(
        &signed,
        body.sha256(),
        &conf(),
        &CLIENT_CERT,
        &to,
        NOW,
        skew,
        &replay,
    )
    .unwrap()
}
