#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::os::unix::fs::PermissionsExt as _;

use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::json;

use super::*;

const ISSUER: &str = "http://127.0.0.1:9";

fn login(dir: &std::path::Path) -> OidcLogin {
    let secret = dir.join("secret");
    std::fs::write(&secret, "s").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = Config::from_str(&format!(
        r#"
        security_server = "http://127.0.0.1:1"
        client = "JP/GOV/digital-agency/portal"
        [login]
        kind = "oidc"
        issuer = "{ISSUER}"
        client_id = "portal"
        client_secret_file = "{}"
        redirect_url = "http://127.0.0.1:8200/login/callback"
        "#,
        secret.display()
    ))
    .unwrap();
    OidcLogin::new(&config, Sealer::ephemeral().unwrap()).unwrap()
}

/// A signing key of the provider and its JWK under `kid`.
fn provider_key(kid: &str) -> (EncodingKey, jsonwebtoken::jwk::Jwk) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
        "x": B64.encode(pair.public_key().as_ref()),
    }))
    .unwrap();
    (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk)
}

fn token(key: &EncodingKey, kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn claims() -> serde_json::Value {
    let now = now_secs();
    json!({
        "iss": ISSUER, "aud": "portal", "sub": "131016000001", "nonce": "n-1",
        "iat": now, "exp": now + 300,
    })
}

#[tokio::test]
async fn only_a_signed_fresh_token_for_this_client_and_login_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let login = login(dir.path());
    let (key, jwk) = provider_key("k1");
    let (other_key, _) = provider_key("k1");
    *login.keys.lock().unwrap() = Some(Keys {
        set: JwkSet { keys: vec![jwk] },
        fetched: Instant::now(),
    });
    let good = login
        .verify(&token(&key, "k1", &claims()), "n-1")
        .await
        .unwrap();
    assert_eq!(good["sub"], "131016000001");

    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims();
        c[field] = value;
        c
    };
    let now = now_secs();
    let refused = [
        ("another nonce", token(&key, "k1", &claims()), "n-2"),
        (
            "another audience",
            token(&key, "k1", &with("aud", json!("other"))),
            "n-1",
        ),
        (
            "another issuer",
            token(&key, "k1", &with("iss", json!("http://evil"))),
            "n-1",
        ),
        (
            "expired",
            token(&key, "k1", &with("exp", json!(now - 3600))),
            "n-1",
        ),
        (
            "issued in the future",
            token(&key, "k1", &with("iat", json!(now + 3600))),
            "n-1",
        ),
        (
            "several audiences, no azp",
            token(&key, "k1", &with("aud", json!(["portal", "other"]))),
            "n-1",
        ),
        ("another key", token(&other_key, "k1", &claims()), "n-1"),
        ("an unknown kid", token(&key, "k2", &claims()), "n-1"),
        (
            "a shared-secret algorithm",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims(),
                &EncodingKey::from_secret(b"s"),
            )
            .unwrap(),
            "n-1",
        ),
        ("not a token", "a.b.c".to_owned(), "n-1"),
    ];
    for (what, token, nonce) in refused {
        assert!(
            matches!(login.verify(&token, nonce).await, Err(OidcError::Token(_))),
            "{what} was accepted"
        );
    }
}

#[test]
fn a_session_cookie_holds_until_it_expires_and_only_as_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let login = login(dir.path());
    let cookie = |value: String| {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("{SESSION_COOKIE}={value}").parse().unwrap(),
        );
        h
    };
    let live = Session {
        resident: "131016000001".into(),
        exp: now_secs() + 60,
        ids: BTreeMap::from([("juki".to_owned(), "J-77".to_owned())]),
    };
    let sealed = login.seal(SESSION_COOKIE, &live).unwrap();
    let resident = login.session(&cookie(sealed)).unwrap();
    assert_eq!(resident.id.as_str(), "131016000001");
    assert_eq!(resident.claims["juki"].as_str(), "J-77");
    let expired = Session {
        resident: "131016000001".into(),
        exp: now_secs() - 1,
        ids: BTreeMap::new(),
    };
    assert!(
        login
            .session(&cookie(login.seal(SESSION_COOKIE, &expired).unwrap()))
            .is_none()
    );
    // A login in progress is not a session.
    let pending = login.seal(LOGIN_COOKIE, &live).unwrap();
    assert!(login.session(&cookie(pending)).is_none());
}
